"""Training data for the refiner: fixed-length runs of objects cut from std and catch beatmaps.

Beatmaps come from the same folders as the generator's (the train split; audio is not needed, so
a folder of bare .osu files can be added too). Every example is seeded by (seed, epoch, index), so
a resumed run sees the examples the killed run would have seen.
"""
from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from osuT5.sources import find_beatmaps
from tokenizer.check import star_rating
from tokenizer.encode import beatmap_to_groups
from tokenizer.events import ContextType
from tokenizer.osu_file import BeatmapError, read_beatmap
from tokenizer.vocabulary import TokenizerConfig

from .model import ClassLayout
from .objects import WIDTH, HEIGHT, object_sequence

log = logging.getLogger(__name__)
HELD_OUT_LIST = "same_song_as_train_val.csv"  # a text-only folder's list of files that belong to other splits


@dataclass
class MapRecord:
    """One beatmap's object arrays and metadata."""
    positions: np.ndarray
    times: np.ndarray
    distances: np.ndarray
    types: np.ndarray
    fixed: np.ndarray
    stars: float | None
    mapper: str | None
    descriptors: tuple[str, ...]
    cs: float


def beatmap_paths(root: str, split: str, modes: list[int], text_only_root: str | None) -> list[tuple[Path, str | None, tuple[str, ...]]]:
    """(path, mapper, descriptors) for the split's beatmaps under `root` and, for the train split,
    every .osu under `text_only_root` except those its held-out list assigns to another split."""
    found = [(e.osu_path, str(e.mapper_id) if e.mapper_id is not None else None, tuple(e.descriptors))
             for e in find_beatmaps(root, split=split, modes=modes)]
    if text_only_root and split == "train":
        folder = Path(text_only_root)
        held_out = set()
        if (folder / HELD_OUT_LIST).exists():
            with open(folder / HELD_OUT_LIST, encoding="utf-8") as f:
                held_out = {row["zip_path"] for row in csv.DictReader(f) if row.get("split") != "train"}
        found += [(p, None, ()) for p in sorted(folder.rglob("*.osu")) if p.relative_to(folder).as_posix() not in held_out]
    return found


def load_maps(paths, modes: list[int], tokenizer_config: TokenizerConfig) -> list[MapRecord]:
    """Parse each beatmap of the given modes into a MapRecord; unreadable ones are skipped and counted."""
    records, skipped = [], Counter()
    for path, mapper, descriptors in paths:
        try:
            beatmap = read_beatmap(path)
        except (BeatmapError, OSError):
            skipped["unreadable"] += 1
            continue
        if beatmap.mode not in modes:
            continue
        seq = object_sequence(beatmap_to_groups(beatmap, tokenizer_config)[ContextType.MAP], beatmap.timing,
                              beatmap.slider_multiplier)
        if len(seq) < 2:
            skipped["fewer than two objects"] += 1
            continue
        try:
            stars = star_rating(beatmap)
        except Exception:  # rosu-pp rejects some odd maps; their difficulty is then unknown
            stars = None
        records.append(MapRecord(seq.positions.astype(np.float32), seq.times, seq.distances.astype(np.float32),
                                 seq.types, seq.fixed, stars, mapper or beatmap.metadata.get("Creator") or None,
                                 descriptors, beatmap.cs))
    if skipped:
        log.warning("skipped %s", ", ".join(f"{n} {why}" for why, n in skipped.items()))
    log.info("%d beatmaps, %d objects", len(records), sum(len(r.times) for r in records))
    return records


def class_layout(records: list[MapRecord], descriptors: list[str], min_mapper_maps: int) -> ClassLayout:
    """Mapper classes for every mapper with at least `min_mapper_maps` training maps."""
    counts = Counter(r.mapper for r in records if r.mapper)
    return ClassLayout(mappers=sorted(m for m, n in counts.items() if n >= min_mapper_maps), descriptors=list(descriptors))


@dataclass
class Augment:
    dt_prob: float = 0.5
    dt_speed: float = 1.5
    flip_prob: float = 0.5
    distance_noise: float = 0.1  # distances × 2^N(0, this)
    max_time_offset: float = 1e6  # times re-based to a random offset in [0, this) ms
    class_dropout: float = 0.2  # per field: difficulty, mapper, descriptors, CS


class SequenceDataset(Dataset):
    """Runs of `length` objects every `stride` objects; shorter maps give one padded run.

    With augmentation the runs come in an order shuffled by (seed, epoch): call `plan_epoch` first
    (not named `set_epoch`, which accelerate would call with its own count of iterators).
    """

    def __init__(self, records: list[MapRecord], layout: ClassLayout, length: int, stride: int,
                 augment: Augment | None, seed: int):
        self.records, self.layout, self.length, self.augment, self.seed = records, layout, length, augment, seed
        self.slots = [(r, s) for r, rec in enumerate(records)
                      for s in range(0, max(len(rec.times) - length, 0) + 1, stride)]
        self.order = np.arange(len(self.slots))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.slots)

    def plan_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = np.random.default_rng((self.seed, epoch)).permutation(len(self.slots))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(self.order[index]) if self.augment is not None else index
        r, start = self.slots[index]
        rec = self.records[r]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        cut = slice(start, start + self.length)
        positions, times, distances = rec.positions[cut].copy(), rec.times[cut] - rec.times[start], rec.distances[cut].copy()
        types, fixed = rec.types[cut], rec.fixed[cut]
        stars, classes_unknown = rec.stars, []
        a = self.augment
        if a is not None:
            if rng.random() < a.dt_prob:
                times = times / a.dt_speed
                stars = None  # the DT star rating is not the map's
            if rng.random() < a.flip_prob:
                positions[:, 0] = WIDTH - positions[:, 0]
            if rng.random() < a.flip_prob:
                positions[:, 1] = HEIGHT - positions[:, 1]
            distances = distances * np.exp2(rng.normal(0, a.distance_noise, len(distances))).astype(np.float32)
            times = times + rng.uniform(0, a.max_time_offset)
            classes_unknown = [f for f in range(4) if rng.random() < a.class_dropout]
        classes = self.layout.vector(stars, rec.mapper, rec.descriptors, rec.cs)
        n = len(times)
        pad = self.length - n
        return {
            "positions": torch.from_numpy(np.pad(positions, ((0, pad), (0, 0)))),
            "times": torch.from_numpy(np.pad(times, (0, pad)).astype(np.float32)),
            "distances": torch.from_numpy(np.pad(distances, (0, pad))),
            "types": torch.from_numpy(np.pad(types, (0, pad))),
            "loss_mask": torch.from_numpy(np.pad(~fixed, (0, pad))),
            "padding": torch.from_numpy(np.arange(self.length) >= n),
            "classes": self.layout.unknown(classes, classes_unknown),
        }

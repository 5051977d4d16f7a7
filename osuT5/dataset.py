"""Training examples: (audio window, decoder tokens) pairs cut from beatmaps and their audio.

An epoch is a plan, a shuffled list of (beatmap, window) slots decided only by (seed, epoch), so every
process agrees on it, DataLoader workers need no coordination, and a run resumes at the exact batch.
All randomness of an example (speed, offset, flips, template, dropout, jitter) is seeded the same way.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from tokenizer.encode import beatmap_to_groups, groups_to_events
from tokenizer.events import ContextType, EventType, Group
from tokenizer.check import star_rating
from tokenizer.osu_file import Beatmap, BeatmapError, read_beatmap
from tokenizer.vocabulary import PAD, Tokenizer

from .audio import AudioCache, AudioError, change_speed
from .model import IGNORE_INDEX, pad_to_window
from .sequence import BeatmapMetadata, Context, beatmap_metadata, build_sequence, metadata_events
from .sources import BeatmapEntry

log = logging.getLogger(__name__)
T = EventType
PLAYFIELD = (512.0, 384.0)
RESAMPLE_MARGIN = 256  # samples kept on each side of a window while resampling, then cut off


@dataclass
class DatasetOptions:
    """How windows are cut and augmented; the defaults are the plain, deterministic validation setting."""
    seed: int = 0
    context_weights: dict[str, float] = field(default_factory=lambda: {"none": 1.0})
    frame_offset_prob: float = 0.0
    dt_prob: float = 0.0
    dt_range: tuple[float, float] = (1.25, 1.5)
    flip_prob: float = 0.0
    lookback_prob: float = 0.0
    lookback: float = 0.2
    timing_jitter: int = 0
    metadata_dropout: dict[str, float] = field(default_factory=dict)
    max_windows: int | None = None  # an evenly spread subset, for quick validation
    shuffle: bool = False
    batch_size: int = 1
    length_buckets: int = 0  # sort each run of this many batches by length, so padding stays small (0: off)


@dataclass
class BeatmapRecord:
    """A parsed training beatmap with what every window of it needs."""
    entry: BeatmapEntry
    beatmap: Beatmap
    mapper: str | None
    duration_ms: float
    partners: list[int] = field(default_factory=list)  # other difficulties on the same audio (GD context)


@dataclass(frozen=True)
class _Choice:
    """Per beatmap and epoch: the augmentations shared by all its windows."""
    speed: float
    offset_ms: float
    template: dict
    flip_x: bool
    flip_y: bool
    partner: int | None


def load_records(entries: list[BeatmapEntry], audio: AudioCache) -> list[BeatmapRecord]:
    """Parse every beatmap and decode (cache) every audio file once; broken ones are skipped and counted."""
    records: list[BeatmapRecord] = []
    skipped: Counter[str] = Counter()
    durations: dict[str, float | None] = {}
    for entry in entries:
        try:
            beatmap = read_beatmap(entry.osu_path)
        except (BeatmapError, OSError) as error:
            skipped["unreadable beatmap"] += 1
            log.debug("skipping %s: %s", entry.osu_path, error)
            continue
        key = str(entry.audio_path)
        if key not in durations:
            try:
                durations[key] = len(audio.load(entry.audio_path)) * 1000 / audio.sample_rate
            except AudioError as error:
                durations[key] = None
                log.debug("skipping audio %s: %s", entry.audio_path, error)
        if not durations[key]:
            skipped["unreadable or empty audio"] += 1
            continue
        mapper = str(entry.mapper_id) if entry.mapper_id is not None else beatmap.metadata.get("Creator") or None
        records.append(BeatmapRecord(entry, beatmap, mapper, durations[key]))
    by_audio: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_audio.setdefault(str(record.entry.audio_path), []).append(i)
    for members in by_audio.values():
        for i in members:
            records[i].partners = [j for j in members if j != i]
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items())
        log.warning("skipped %d of %d beatmaps: %s", sum(skipped.values()), len(entries), reasons)
    log.info("%d beatmaps, %.1f minutes of audio", len(records), sum(r.duration_ms for r in records) / 60000)
    return records


def mapper_index(records: list[BeatmapRecord]) -> dict[str, int]:
    """Mapper class ids for a tokenizer, in first-seen order of the training data."""
    index: dict[str, int] = {}
    for record in records:
        if record.mapper is not None and record.mapper not in index:
            index[record.mapper] = len(index)
    return index


class WindowDataset(Dataset):
    """Map-style dataset over one epoch's plan; call `plan_epoch` before each epoch."""

    def __init__(self, records: list[BeatmapRecord], tokenizer: Tokenizer, options: DatasetOptions,
                 audio: AudioCache, tgt_seq_len: int):
        self.records, self.tokenizer, self.options, self.audio = records, tokenizer, options, audio
        self.tgt_seq_len = tgt_seq_len
        config = tokenizer.config
        self.window_ms = config.window_ms
        self.window_samples = (config.src_seq_len - 1) * config.hop_length
        self.sample_rate = config.sample_rate
        self._group_cache: dict[int, dict[ContextType, tuple[list[Group], list[float]]]] = {}
        self._metadata_cache: dict[tuple[int, float], BeatmapMetadata] = {}
        self.epoch = 0
        self.plan = self._plan(0)

    def plan_epoch(self, epoch: int) -> None:
        """Switch to another epoch's plan (not named set_epoch: accelerate would call that with its own count)."""
        self.epoch = epoch
        self.plan = self._plan(epoch)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> dict:
        b, w = self.plan[index]
        return self.example(self.epoch, b, w)

    # -- the plan -----------------------------------------------------------------------------------
    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.options.seed, *keys])

    def _choice(self, epoch: int, b: int) -> _Choice:
        o, record = self.options, self.records[b]
        rng = self._rng(epoch, b)
        speed = 1.0
        if rng.random() < o.dt_prob:
            low, high = o.dt_range
            speed = low + (high - low) * math.sqrt(rng.random())
        offset = 0.0
        if rng.random() < o.frame_offset_prob:
            offset = float(rng.integers(0, self.tokenizer.config.src_seq_len)) * self.window_ms / self.tokenizer.config.src_seq_len
        names = list(o.context_weights)
        weights = np.array([o.context_weights[n] for n in names], dtype=float)
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        partner = None
        if name == "gd":
            if record.partners:
                partner = record.partners[rng.integers(len(record.partners))]
            else:
                name = "none"  # a single-difficulty set has no guest difficulty to show
        template = next((t for t in self.tokenizer.config.context_templates if name in t.get("in", [])),
                        self.tokenizer.config.context_templates[0])
        mode = record.beatmap.mode
        flip_x = mode in (0, 2) and rng.random() < o.flip_prob
        flip_y = mode == 0 and rng.random() < o.flip_prob
        return _Choice(speed, offset, template, flip_x, flip_y, partner)

    def _plan(self, epoch: int) -> list[tuple[int, int]]:
        plan = []
        for b, record in enumerate(self.records):
            choice = self._choice(epoch, b)
            length = record.duration_ms / choice.speed - choice.offset_ms
            plan += [(b, w) for w in range(max(1, math.ceil(length / self.window_ms)))]
        if self.options.shuffle:
            rng = self._rng(epoch)
            plan = [plan[i] for i in rng.permutation(len(plan))]
            if self.options.length_buckets:
                plan = self._bucket_by_length(plan, epoch, rng)
        if self.options.max_windows and len(plan) > self.options.max_windows:
            picks = np.linspace(0, len(plan) - 1, self.options.max_windows).round().astype(int)
            plan = [plan[i] for i in picks]
        return plan

    def _bucket_by_length(self, plan: list[tuple[int, int]], epoch: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Batches of similar length (cheaply estimated from group counts), in shuffled order."""
        size = self.options.batch_size
        chunk = size * self.options.length_buckets
        out: list[tuple[int, int]] = []
        for first in range(0, len(plan), chunk):
            part = sorted(plan[first:first + chunk], key=lambda slot: self._estimated_length(epoch, *slot))
            batches = [part[i:i + size] for i in range(0, len(part), size)]
            for i in rng.permutation(len(batches)):
                out += batches[i]
        return out

    def _estimated_length(self, epoch: int, b: int, w: int) -> int:
        choice = self._choice(epoch, b)
        start = (choice.offset_ms + w * self.window_ms) * choice.speed
        end = start + self.window_ms * choice.speed
        count = 0
        for groups, times in self._groups(b).values():
            count += int(np.searchsorted(times, end) - np.searchsorted(times, start))
        return count

    # -- one example ----------------------------------------------------------------------------------
    def _groups(self, b: int) -> dict[ContextType, tuple[list[Group], list[float]]]:
        """Every context stream of beatmap b with its sorted times, computed once per process."""
        if b not in self._group_cache:
            groups = beatmap_to_groups(self.records[b].beatmap, self.tokenizer.config)
            self._group_cache[b] = {context: (g, [x.time for x in g]) for context, g in groups.items()}
        return self._group_cache[b]

    def _metadata(self, b: int, speed: float) -> BeatmapMetadata:
        if (b, speed) not in self._metadata_cache:
            self._metadata_cache[b, speed] = self._compute_metadata(b, speed)
        return self._metadata_cache[b, speed]

    def _compute_metadata(self, b: int, speed: float) -> BeatmapMetadata:
        record = self.records[b]
        beatmap, entry = record.beatmap, record.entry
        stars = entry.star_rating if speed == 1.0 and entry.star_rating is not None else star_rating(beatmap, speed)
        return beatmap_metadata(beatmap, stars, record.duration_ms / speed, mapper=record.mapper, year=entry.year,
                                descriptors=list(entry.descriptors) or None)

    def _window_groups(self, b: int, context: ContextType, start: float, choice: _Choice) -> list[Group]:
        """The context's groups inside [start, start + window) of the sped-up song, with times and flips applied."""
        groups, times = self._groups(b)[context]
        s = choice.speed
        lo = np.searchsorted(times, start * s, side="left")
        hi = np.searchsorted(times, (start + self.window_ms) * s, side="left")
        out = []
        for g in groups[lo:hi]:
            changes = {"time": g.time / s}
            if g.x is not None and choice.flip_x:
                changes["x"] = PLAYFIELD[0] - g.x
            if g.y is not None and choice.flip_y:
                changes["y"] = PLAYFIELD[1] - g.y
            out.append(dataclasses.replace(g, **changes))
        return out

    def _last_before(self, b: int, context: ContextType, time: float) -> Group | None:
        groups, times = self._groups(b)[context]
        i = np.searchsorted(times, time, side="left")
        return groups[i - 1] if i > 0 else None

    def _audio_window(self, b: int, start_ms: float, speed: float) -> np.ndarray:
        audio = self.audio.load(self.records[b].entry.audio_path)
        first = round(start_ms * speed * self.sample_rate / 1000)
        if speed == 1.0:
            piece = np.array(audio[max(first, 0):first + self.window_samples], dtype=np.float32)
        else:
            margin = RESAMPLE_MARGIN
            lo = max(first - margin, 0)
            raw = np.asarray(audio[lo:first + math.ceil(self.window_samples * speed) + margin], dtype=np.float32)
            piece = change_speed(raw, speed, self.sample_rate)[round((first - lo) / speed):]
        return pad_to_window(torch.from_numpy(piece), self.window_samples).numpy()

    def example(self, epoch: int, b: int, w: int) -> dict:
        o, tok = self.options, self.tokenizer
        choice = self._choice(epoch, b)
        rng = self._rng(epoch, b, w)
        start = choice.offset_ms + w * self.window_ms
        meta = self._metadata(b, round(choice.speed, 6))
        meta = dataclasses.replace(meta, **{name: None for name, p in o.metadata_dropout.items() if rng.random() < p})

        lookback_end = start + o.lookback * self.window_ms if rng.random() < o.lookback_prob else start
        out_contexts = []
        for name in choice.template["out"]:
            context = ContextType(name)
            groups = self._window_groups(b, context, start, choice)
            events, labelled = [], []
            for g in groups:
                group_events = groups_to_events([g], tok, start)
                events += group_events
                labelled += [g.time >= lookback_end] * len(group_events)
            out_contexts.append(Context(context, events, labelled=labelled))

        in_contexts = []
        for name in choice.template.get("in", []):
            context = ContextType(name)
            if context == ContextType.NO_HS:
                groups = self._window_groups(b, ContextType.MAP, start, choice)
                in_contexts.append(Context(context, groups_to_events(groups, tok, start, hitsounds=False)))
            elif context == ContextType.GD and choice.partner is not None:
                groups = self._window_groups(choice.partner, ContextType.MAP, start, choice)
                partner_meta = self._metadata(choice.partner, round(choice.speed, 6))
                in_contexts.append(Context(context, groups_to_events(groups, tok, start),
                                           specials=[tok.difficulty_event(partner_meta.star_rating)]))
            else:
                in_contexts.append(Context(ContextType.NONE))

        kiai = self._last_before(b, ContextType.KIAI, start * choice.speed)
        sv = self._last_before(b, ContextType.SV, start * choice.speed)
        metadata = metadata_events(tok, meta, start, last_kiai=kiai.value if kiai else 0,
                                   last_scroll_speed=sv.scroll_speed if sv and sv.scroll_speed else 1.0)
        ids, targets = build_sequence(tok, in_contexts, metadata, out_contexts)
        ids, targets = ids[:self.tgt_seq_len + 1], targets[:self.tgt_seq_len + 1]

        inputs = np.array(ids[:-1], dtype=np.int64)
        labels = np.where(np.array(targets[1:]), np.array(ids[1:], dtype=np.int64), IGNORE_INDEX)
        if o.timing_jitter:
            first_out = targets.index(True) if True in targets else len(inputs)
            lo, hi = tok.event_start[T.TIME_SHIFT], tok.event_end[T.TIME_SHIFT]
            is_time = (inputs >= lo) & (inputs < hi) & (np.arange(len(inputs)) >= first_out)
            noise = rng.integers(-o.timing_jitter, o.timing_jitter + 1, size=len(inputs))
            inputs = np.where(is_time, np.clip(inputs + noise, lo, hi - 1), inputs)
        return {
            "audio": self._audio_window(b, start, choice.speed),
            "decoder_input_ids": inputs,
            "labels": labels,
            "slot": np.array([epoch, b, w], dtype=np.int64),
        }


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack audio; right-pad tokens to the longest sequence in the batch."""
    length = max(len(e["decoder_input_ids"]) for e in examples)
    inputs = torch.full((len(examples), length), PAD, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["decoder_input_ids"])
        inputs[i, :n] = torch.from_numpy(e["decoder_input_ids"])
        labels[i, :n] = torch.from_numpy(e["labels"])
        mask[i, :n] = 1
    return {
        "audio": torch.from_numpy(np.stack([e["audio"] for e in examples])),
        "decoder_input_ids": inputs,
        "decoder_attention_mask": mask,
        "labels": labels,
        "slot": torch.from_numpy(np.stack([e["slot"] for e in examples])),
    }


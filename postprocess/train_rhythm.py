"""Train the tick scorer (postprocess/rhythm.py): `python postprocess/train_rhythm.py [data_root=PATH]`.

Each map of the train split becomes the 1/4 ticks of its song's audio timing (the timing inference
uses by default) between its first and last object, labelled by whether a human object starts within
`label_tolerance_ms`. Minutes on a CPU. Then, on the val split, the top-K ticks by the model and by onset
strength alone (K: the reference's onset count) are scored against the human onsets at that tolerance.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from evaluation.metrics import nearest_distance, onset_score, onsets
from osuT5.audio import DEFAULT_SAMPLE_RATE, AudioError, load_audio
from osuT5.sources import SourceError, find_beatmaps
from postprocess.rhythm import NEIGHBOURS, RhythmModel, SongOnsets, save_rhythm_model, tick_features
from postprocess.tempo import estimate_redline, follow_tempo, start_bars
from tokenizer.osu_file import BeatmapError, read_beatmap
from tokenizer.timing import Timing

log = logging.getLogger("train_rhythm")


def map_ticks(cfg: DictConfig, split: str) -> list[dict]:
    """Per map of `split`: its ticks, their features, labels and the human onsets."""
    entries = find_beatmaps(cfg.data_root, split, list(cfg.gamemodes), cfg.extract_dir)
    songs: dict[Path, tuple[SongOnsets, Timing] | None] = {}
    maps = []
    for entry in entries:
        if entry.audio_path not in songs:
            songs[entry.audio_path] = _song(entry.audio_path)
        song = songs[entry.audio_path]
        try:
            beatmap = read_beatmap(entry.osu_path)
        except BeatmapError as error:
            log.warning("skipped %s: %s", entry.osu_path.name, error)
            continue
        reference = onsets(beatmap)
        if song is None or len(reference) < 2:
            continue
        onset_envelope, timing = song
        ticks = timing.ticks(4, reference[0], reference[-1])
        nearest = nearest_distance(reference, ticks)
        song_seconds = onset_envelope.whole.times[-1] / 1000
        maps.append({"mode": beatmap.mode, "ticks": ticks, "reference": reference,
                     "features": tick_features(onset_envelope, timing, ticks, len(beatmap.hit_objects) / song_seconds, beatmap.mode),
                     "labels": (nearest <= cfg.label_tolerance_ms).astype(np.float32)})
    log.info("%s: %d maps, %d ticks", split, len(maps), sum(len(m["ticks"]) for m in maps))
    return maps


def _song(path: Path) -> tuple[SongOnsets, Timing] | None:
    """The song's onsets and its audio timing, as inference computes them (None: unreadable or no tempo)."""
    try:
        audio = load_audio(path, DEFAULT_SAMPLE_RATE)
    except AudioError as error:
        log.warning("skipped %s: %s", path, error)
        return None
    song = SongOnsets.of(audio, DEFAULT_SAMPLE_RATE)
    redline = estimate_redline(song.whole, song.phase)
    if redline is None:
        return None
    redline = start_bars(redline, song.kick)
    return song, Timing(follow_tempo(song.whole, [redline], len(audio) * 1000 / DEFAULT_SAMPLE_RATE))


def fit(cfg: DictConfig, maps: list[dict]) -> RhythmModel:
    """The model after `epochs` passes of Adam over every tick, shuffled."""
    torch.manual_seed(cfg.seed)
    features = torch.from_numpy(np.concatenate([m["features"] for m in maps]))
    labels = torch.from_numpy(np.concatenate([m["labels"] for m in maps]))
    model = RhythmModel(int(cfg.hidden), tuple(sorted({m["mode"] for m in maps})))
    model.mean.copy_(features.mean(0))
    model.scale.copy_(features.std(0).clamp(min=1e-6))
    optimizer = torch.optim.Adam(model.net.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
    for epoch in range(int(cfg.epochs)):
        order, total = torch.randperm(len(labels)), 0.0
        for first in range(0, len(labels), int(cfg.batch_size)):
            batch = order[first:first + int(cfg.batch_size)]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        log.info("epoch %d: loss %.4f", epoch + 1, total / len(labels))
    return model.eval()


def top_k_f1(maps: list[dict], score, tolerance_ms: float) -> dict[int, float]:
    """Mean F1 per mode of each map's top-K ticks by `score(map)`, K its reference onset count."""
    by_mode: dict[int, list[float]] = {}
    for m in maps:
        chosen = np.sort(m["ticks"][np.argsort(-score(m), kind="stable")[:len(m["reference"])]])
        by_mode.setdefault(m["mode"], []).append(onset_score(chosen, m["reference"], tolerance_ms).f1)
    return {mode: float(np.mean(f1)) for mode, f1 in sorted(by_mode.items())}


def train(cfg: DictConfig) -> Path:
    torch.set_num_threads(int(cfg.threads))
    model = fit(cfg, map_ticks(cfg, cfg.train_split))
    notes = {"label_tolerance_ms": cfg.label_tolerance_ms,
             "trained_on": f"{cfg.data_root} split {cfg.train_split}"}
    if cfg.val_split:
        val = map_ticks(cfg, cfg.val_split)
        tolerance = float(cfg.label_tolerance_ms)
        learned = top_k_f1(val, lambda m: model.probability(m["features"]), tolerance)
        strength = top_k_f1(val, lambda m: m["features"][:, NEIGHBOURS.index(0)], tolerance)  # the strength on the tick
        notes["val_top_k_f1"] = {str(k): {"model": round(learned[k], 3), "onset_strength": round(strength[k], 3)}
                                    for k in learned}
        for mode in learned:
            log.info("val mode %d: top-K F1@%g model %.3f, onset strength %.3f", mode, tolerance, learned[mode], strength[mode])
    save_rhythm_model(model, cfg.output_dir, notes)
    log.info("saved the rhythm model to %s", cfg.output_dir)
    return Path(cfg.output_dir)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train_rhythm")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except (SourceError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

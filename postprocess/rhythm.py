"""Which beat ticks a mapper plays: a small learned score per tick, from the song's onsets around it.

The small generator puts its objects on the beat, but often not on the beats a mapper would play, and
the onset strength on a tick alone picks those only a little better. This model looks wider: for each
tick, the onset strength on it and on its neighbours up to two beats away, the strength in four
frequency bands around it, its place in the bar, how loud and busy that part of the song is, and how
many objects a beat the map wants. A 2-layer MLP (57 -> 64 -> 64 -> 1, 8 k parameters) gives the
probability that a human object starts within 20 ms, trained on the train split's maps over the
audio's own timing, the timing inference uses (postprocess/train_rhythm.py). On the val split, the
top-K of each map's 1/4 ticks (K: the human onset count) score F1@20 osu! 0.653, taiko 0.743, mania
0.716 by this model, 0.549, 0.705, 0.657 by onset strength.
Onset snapping and onset fill rank ticks, and pick the circles to take out, by this score.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from osuT5.audio import ONSET_HOP_MS
from tokenizer.timing import Timing

from .tempo import KICK_BAND_HZ, PHASE_BAND_HZ, WHOLE_BAND_HZ, OnsetEnvelope

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
BANDS_HZ = (KICK_BAND_HZ, (200.0, 1000.0), (1000.0, 4000.0), (4000.0, 8000.0))  # the first also places the bars
NEIGHBOURS = (-8, -4, -3, -2, -1, 0, 1, 2, 3, 4, 8)  # quarter beats around a tick whose whole-band strength is a feature
BAND_NEIGHBOURS = (-2, -1, 0, 1, 2)  # ... and whose band strengths are
SECTION_QUARTERS = 32  # the song's busyness around a tick: mean strength over +-8 beats of quarter ticks
BAR_QUARTERS = 16  # place in a 4/4 bar, in quarter beats from the redline
LOUDNESS_MS = 400.0
LOUDNESS_PERCENTILE = 95.0
MODES = 4
FEATURES = len(NEIGHBOURS) + 1 + len(BANDS_HZ) * len(BAND_NEIGHBOURS) + 1 + BAR_QUARTERS + 2 + MODES + 2


TickScore = Callable[[np.ndarray], np.ndarray]  # times (ms) -> how much each is worth an object


def onset_share(onsets: OnsetEnvelope) -> TickScore:
    """The score by onset strength alone: the peak on each time over the song's strong onset (the peak itself
    where under 1% of the song's frames hold an onset)."""
    scale = onsets.strong if onsets.strong > 0 else 1.0
    return lambda times: onsets.peak_near(times) / scale


class RhythmModelError(Exception):
    """A rhythm model folder that cannot be used; the message is one sentence fit to show a user."""


@dataclass
class SongOnsets:
    """What the features read from a song: whole-band and per-band onset strength and loudness, per 5 ms frame;
    and the `PHASE_BAND_HZ` onset strength that places the audio tempo's beats."""
    whole: OnsetEnvelope
    bands: OnsetEnvelope
    loudness: np.ndarray
    phase: OnsetEnvelope

    @classmethod
    def of(cls, audio: np.ndarray, sample_rate: int) -> "SongOnsets":
        hop = max(int(round(sample_rate * ONSET_HOP_MS / 1000)), 1)
        power = np.asarray(audio, dtype=np.float64) ** 2
        frames = len(power) // hop + 1
        per_frame = np.add.reduceat(power, np.arange(0, len(power), hop))[:frames] / hop if len(power) else np.zeros(1)
        radius = max(int(LOUDNESS_MS / ONSET_HOP_MS / 2), 1)
        rms = np.sqrt(np.convolve(per_frame, np.ones(2 * radius + 1) / (2 * radius + 1), mode="same"))
        loud = np.percentile(rms, LOUDNESS_PERCENTILE)
        onsets = OnsetEnvelope.of(audio, sample_rate, (WHOLE_BAND_HZ,) + BANDS_HZ + (PHASE_BAND_HZ,))  # one STFT for all
        times, values = onsets.times, onsets.values
        return cls(OnsetEnvelope(times, values[:, 0]), OnsetEnvelope(times, values[:, 1:-1]),
                   rms / loud if loud > 0 else rms, OnsetEnvelope(times, values[:, -1]))

    @property
    def kick(self) -> OnsetEnvelope:
        """The lowest band's onset strength (`KICK_BAND_HZ`), where tempo.start_bars looks for the downbeats."""
        return OnsetEnvelope(self.bands.times, self.bands.values[:, 0])


def tick_features(song: SongOnsets, timing: Timing, times: np.ndarray, objects_per_s: float, mode: int) -> np.ndarray:
    """One row of FEATURES per time (a tick of `timing`, or an object on one), float32."""
    times = np.asarray(times, dtype=float)
    if not len(times):
        return np.zeros((0, FEATURES), dtype=np.float32)
    redlines = [timing.redline_at(t) for t in times]
    beat = np.array([r.clamped_beat_length for r in redlines])
    quarter = beat / 4
    place = np.mod(np.rint((times - np.array([r.time for r in redlines])) / quarter).astype(int), BAR_QUARTERS)

    def strength(envelope: OnsetEnvelope, offsets: np.ndarray) -> np.ndarray:
        at = (times[:, None] + offsets[None, :] * quarter[:, None]).ravel()
        strong = np.asarray(envelope.strong)
        return (envelope.peak_near(at) / np.where(strong > 0, strong, 1.0)).reshape(len(times), len(offsets), -1)

    around = strength(song.whole, np.arange(-SECTION_QUARTERS, SECTION_QUARTERS + 1))[..., 0]
    whole, section = around[:, np.array(NEIGHBOURS) + SECTION_QUARTERS], around.mean(axis=1)
    bands = strength(song.bands, np.array(BAND_NEIGHBOURS)).reshape(len(times), -1)
    frames = np.clip(np.rint(times / ONSET_HOP_MS).astype(int), 0, len(song.loudness) - 1)
    on_tick = whole[:, NEIGHBOURS.index(0)]
    near = [NEIGHBOURS.index(k) for k in (-2, -1, 1, 2)]
    return np.column_stack([
        whole, section, bands, song.loudness[frames], np.eye(BAR_QUARTERS)[place],
        np.log(max(objects_per_s, 1e-3) * beat / 1000), np.log(beat), np.tile(np.eye(MODES)[mode], (len(times), 1)),
        (on_tick >= whole[:, near].max(axis=1)).astype(float), on_tick / (section + 1e-3),
    ]).astype(np.float32)


class RhythmModel(nn.Module):
    """Features -> the logit that a mapper puts an object on the tick; inputs standardised by stored statistics."""

    def __init__(self, hidden: int = 64, gamemodes: tuple[int, ...] = (0, 1, 3)):
        super().__init__()
        self.hidden, self.gamemodes = hidden, tuple(gamemodes)  # the modes it was trained on
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("scale", torch.ones(FEATURES))
        self.net = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.scale).squeeze(-1)

    @torch.no_grad()
    def probability(self, features: np.ndarray) -> np.ndarray:
        return torch.sigmoid(self(torch.from_numpy(features))).numpy().astype(float)


class RhythmScorer:
    """The probability a mapper plays each time, for one song, timing, target density and mode."""

    def __init__(self, model: RhythmModel, song: SongOnsets, timing: Timing, objects_per_s: float, mode: int):
        self.model, self.song, self.timing, self.objects_per_s, self.mode = model, song, timing, objects_per_s, mode

    def __call__(self, times: np.ndarray) -> np.ndarray:
        return self.model.probability(tick_features(self.song, self.timing, times, self.objects_per_s, self.mode))


def save_rhythm_model(model: RhythmModel, folder: str | os.PathLike, notes: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    config = {"hidden": model.hidden, "gamemodes": list(model.gamemodes), "features": FEATURES, "bands_hz": BANDS_HZ, **notes}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_rhythm_model(folder: str | os.PathLike) -> RhythmModel:
    """The model in `folder`, or RhythmModelError saying why it cannot be used."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise RhythmModelError(f"rhythm_model_path {folder} holds no rhythm model ({CONFIG_FILE} and {WEIGHTS_FILE}); "
                               f"train one with postprocess/train_rhythm.py, or set rhythm_model_path=null")
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("features") != FEATURES or [tuple(b) for b in config.get("bands_hz", [])] != list(BANDS_HZ):
        raise RhythmModelError(f"the rhythm model in {folder} was trained on other features than this version computes; "
                               f"train it again with postprocess/train_rhythm.py")
    model = RhythmModel(int(config["hidden"]), tuple(config["gamemodes"]))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.eval()


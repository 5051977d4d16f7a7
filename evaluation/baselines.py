"""The two rhythm baselines every evaluation report shows next to the model.

- Spectral flux: onsets picked from the audio alone, thinned to the reference's onset count (an
  oracle density), so it scores what plain onset detection gets with the density given away.
- Half-beat grid: every 1/2 tick of the reference's own timing between its first and last object,
  so it scores what a perfect timer that places an object on every half beat gets.
"""
from __future__ import annotations

import numpy as np

from osuT5.audio import ONSET_HOP_MS, ONSET_LATENCY_MS
from tokenizer.timing import Timing

PEAK_RADIUS_MS = 30.0  # a peak is the highest frame within this distance


def flux_onsets(times: np.ndarray, strength: np.ndarray, count: int) -> np.ndarray:
    """The `count` strongest local peaks of the onset strength, in time order."""
    if count <= 0 or len(strength) == 0:
        return np.zeros(0)
    radius = max(int(round(PEAK_RADIUS_MS / ONSET_HOP_MS)), 1)
    padded = np.pad(strength, radius, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    peaks = np.flatnonzero((strength >= windows.max(axis=1)) & (strength > 0))
    strongest = peaks[np.argsort(-strength[peaks], kind="stable")[:count]]
    return np.sort(times[strongest]) - ONSET_LATENCY_MS


def half_beat_grid(timing: Timing, start_ms: float, end_ms: float) -> np.ndarray:
    """Every 1/2-beat tick of `timing` from `start_ms` to `end_ms`, in ms."""
    return timing.ticks(2, start_ms, end_ms)

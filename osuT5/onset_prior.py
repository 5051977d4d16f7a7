"""Steering the map pass's times toward the audio's onsets (shallow fusion with an onset detector).

The small generator hears roughly where the music's onsets are, but its times scatter tens of ms
around them. After an object's type token, the logit of each time gets `weight` x the onset strength
there (the song's strong onsets scaled to 1): a time on an onset becomes likelier. The model still
chooses which onsets to map and how many; the prior only sharpens where.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from postprocess.tempo import PHASE_LATENCY_MS, OnsetEnvelope
from tokenizer.decode import TIME_STEP_MS

from .audio import ONSET_HOP_MS


@dataclass
class OnsetPrior:
    """Per 5 ms frame: the onset strength within half a time step, scaled to [0, 1]; `weight` in logits."""
    times: np.ndarray
    strength: np.ndarray
    weight: float

    @classmethod
    def of(cls, envelope: OnsetEnvelope, weight: float) -> OnsetPrior:
        values = envelope.values
        radius = max(int(round(TIME_STEP_MS / 2 / ONSET_HOP_MS)), 1)
        padded = np.pad(values, radius)
        pooled = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1).max(axis=1)
        strong = envelope.strong
        scaled = np.clip(pooled / strong, 0.0, 1.0) if strong > 0 else np.zeros_like(pooled)
        return cls(envelope.times, scaled, float(weight))

    def window_bias(self, start_ms: float, steps: int) -> torch.Tensor:
        """The bias on the `steps` time values of a window starting at `start_ms` (value v is the
        10 ms step from start + 10 v; the onset strength peaks PHASE_LATENCY_MS after a mapped time)."""
        if not len(self.strength):
            return torch.zeros(steps)
        centres = start_ms + TIME_STEP_MS * (np.arange(steps) + 0.5) + PHASE_LATENCY_MS
        frames = np.round(np.interp(centres, self.times, np.arange(len(self.times)))).astype(int)
        values = self.strength[frames]
        return torch.from_numpy(self.weight * values).float()

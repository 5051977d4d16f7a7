"""Timing from the audio alone: one redline (BPM and offset) for a song the model could not time,
and a score of how well the audio backs any timing, to choose between the two.

The spectral-flux onset strength is autocorrelated to pick the tempo (weighted by a log-normal prior
around osu!'s usual BPMs), then the beat length is refined by folding the whole song's onset strength
over it: the right beat length stacks every beat into one sharp phase peak, a slightly wrong one
smears them. The peak's phase is the offset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from osuT5.audio import ONSET_HOP_MS, onset_strength
from tokenizer.timing import TimingPoint

from .timing import BPM_STEPS

LOCAL_MEAN_MS = 400.0  # the onset strength minus its local mean: peaks, not loudness
PRIOR_WIDTH_OCTAVES = 0.6
COARSE_BPM_STEP = 0.25
REFINE_STEPS = ((3e-3, 1e-4), (1e-4, 5e-6))  # (relative half-width, relative step) after the coarse 0.25 BPM
PHASE_BIN_MS = 1.0
PHASE_SMOOTH_MS = 6.0
MIN_SONG_MS = 4000.0
PHASE_LATENCY_MS = 10.0  # the folded peak trails the mapped beats by 9.6 ms (median over the train songs)


BEAT_WINDOW_MS = 20.0  # onset strength this close to a beat counts as on it
PEAK_WINDOW_MS = (-10.0, 15.0)  # onset strength this far before and after a tick counts for it (peaks trail by ~8 ms)
STRONG_PERCENTILE = 99.0  # onset strength at this percentile of the song's frames is a strong onset


@dataclass
class OnsetEnvelope:
    """Onset strength above its local mean, per 5 ms frame."""
    times: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, audio: np.ndarray, sample_rate: int) -> "OnsetEnvelope":
        times, strength = onset_strength(audio, sample_rate)
        radius = max(int(LOCAL_MEAN_MS / ONSET_HOP_MS / 2), 1)
        kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
        return cls(times, np.maximum(strength - np.convolve(strength, kernel, mode="same"), 0.0))

    @property
    def strong(self) -> float:
        """The strength of a strong onset in this song (0 for silence): what onset strengths are scaled by."""
        return float(np.percentile(self.values, STRONG_PERCENTILE)) if len(self.values) else 0.0

    def peak_near(self, ticks: np.ndarray) -> np.ndarray:
        """The strongest onset from 10 ms before to 15 ms after each tick (0 outside the song)."""
        hop = self.times[1] - self.times[0] if len(self.times) > 1 else ONSET_HOP_MS
        before, after = PEAK_WINDOW_MS
        offsets = np.arange(math.ceil(before / hop), math.floor(after / hop) + 1)
        frames = np.rint((np.asarray(ticks, dtype=float) - self.times[0]) / hop).astype(int)[:, None] + offsets
        inside = (frames >= 0) & (frames < len(self.values))
        return np.where(inside, self.values[np.clip(frames, 0, len(self.values) - 1)], 0.0).max(axis=1)


def estimate_redline(onsets: OnsetEnvelope, min_bpm: float = 60.0, max_bpm: float = 300.0,
                     prior_bpm: float = 170.0, leniency_ms: float = 3.0) -> TimingPoint | None:
    """The song's main tempo as one redline, or None when the audio is too short or has no onsets."""
    times, envelope = onsets.times, onsets.values
    if len(times) * ONSET_HOP_MS < MIN_SONG_MS or not envelope.any():
        return None
    bpm = _coarse_bpm(envelope, min_bpm, max_bpm, prior_bpm)
    for half_width, step in REFINE_STEPS:
        candidates = bpm * (1 + np.arange(-half_width, half_width + step / 2, step))
        bpm = max(candidates, key=lambda b: _fold(times, envelope, 60000.0 / b)[0])
    beat_length = _round(60000.0 / bpm, times[-1], leniency_ms)
    offset = _fold(times, envelope, beat_length)[1] - PHASE_LATENCY_MS
    return TimingPoint(float(round(offset % beat_length)), beat_length)  # whole ms, as postprocess.timing


def beat_support(onsets: OnsetEnvelope, redlines: list[TimingPoint]) -> float:
    """How much more onset strength lies within 10 ms of the redlines' beats (where music's onset strength
    peaks: `PHASE_LATENCY_MS` after them) than on average (1: chance)."""
    times, envelope = onsets.times, onsets.values
    if not redlines or not envelope.any():
        return 0.0
    starts = [-np.inf] + [r.time for r in redlines[1:]]
    section = np.searchsorted(starts, times, side="right") - 1
    on_beat = np.zeros(len(times), dtype=bool)
    for k, redline in enumerate(redlines):
        beat = max(redline.beat_length, 1.0)
        phase = np.mod(times[section == k] - redline.time - PHASE_LATENCY_MS, beat)
        on_beat[section == k] = np.minimum(phase, beat - phase) <= BEAT_WINDOW_MS
    if not on_beat.any():
        return 0.0
    return float(envelope[on_beat].mean() / envelope.mean())


def _coarse_bpm(envelope: np.ndarray, min_bpm: float, max_bpm: float, prior_bpm: float) -> float:
    """Autocorrelation at each candidate beat length, with half and double beats, times the tempo prior."""
    size = 1 << math.ceil(math.log2(2 * len(envelope)))
    spectrum = np.fft.rfft(envelope - envelope.mean(), size)
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), size)[:len(envelope)]
    autocorrelation /= autocorrelation[0] or 1.0
    bpms = np.arange(min_bpm, max_bpm + COARSE_BPM_STEP / 2, COARSE_BPM_STEP)
    lags = 60000.0 / bpms / ONSET_HOP_MS
    salience = sum(weight * np.interp(lags * factor, np.arange(len(autocorrelation)), autocorrelation)
                   for factor, weight in ((1, 1.0), (2, 0.5), (0.5, 0.5)))
    prior = np.exp(-0.5 * (np.log2(bpms / prior_bpm) / PRIOR_WIDTH_OCTAVES) ** 2)
    return float(bpms[np.argmax(salience * prior)])


def _fold(times: np.ndarray, envelope: np.ndarray, beat_length: float) -> tuple[float, float]:
    """(peak sharpness, peak phase ms) of the onset strength folded over one beat."""
    bins = max(int(round(beat_length / PHASE_BIN_MS)), 1)
    phase = np.mod(times, beat_length) * (bins / beat_length)
    histogram = np.bincount(phase.astype(int) % bins, envelope, minlength=bins)
    width = max(int(round(PHASE_SMOOTH_MS / PHASE_BIN_MS)), 1)
    smooth = np.convolve(np.concatenate([histogram[-width:], histogram, histogram[:width]]),
                         np.ones(2 * width + 1), mode="same")[width:width + bins]
    peak = int(np.argmax(smooth))
    return float(smooth[peak] / (smooth.mean() or 1.0)), (peak + 0.5) * beat_length / bins


def _round(beat_length: float, song_ms: float, leniency_ms: float) -> float:
    """The coarsest rounded BPM whose grid stays within `leniency_ms` of the estimate over half the song."""
    beats = song_ms / beat_length / 2
    bpm = 60000.0 / beat_length
    for step in BPM_STEPS:
        rounded = 60000.0 / (round(bpm / step) * step)
        if abs(rounded - beat_length) * beats <= leniency_ms:
            return rounded
    return beat_length

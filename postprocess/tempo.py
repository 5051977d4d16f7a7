"""Timing from the audio alone: one redline (BPM and offset) for a song the model could not time,
and a score of how well the audio backs any timing, to choose between the two.

The spectral-flux onset strength is autocorrelated to pick the tempo (weighted by a log-normal prior
around osu!'s usual BPMs), then the beat length is refined by folding the whole song's onset strength
over it: the right beat length stacks every beat into one sharp phase peak, a slightly wrong one
smears them. Mappers time most songs at a whole BPM (106 of this corpus's 114 sets), so a whole BPM whose
fold is as sharp replaces the estimate: a 0.02 BPM error drifts the beats by 20 ms over a 3-minute song. The offset is
where the 200-2000 Hz onsets fold to a peak, and `start_bars` then puts the bar lines where the kick drum is.

Whatever the redlines' source, `follow_tempo` then adds redlines where the song speeds up or slows
down and its beats drift away from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from osuT5.audio import ONSET_HOP_MS, onset_strength
from tokenizer.events import EventType
from tokenizer.timing import TimingPoint

from .timing import BPM_STEPS, markers_to_timing_points

LOCAL_MEAN_MS = 400.0  # the onset strength minus its local mean: peaks, not loudness
PRIOR_WIDTH_OCTAVES = 0.6
COARSE_BPM_STEP = 0.25
REFINE_STEPS = ((3e-3, 1e-4), (1e-4, 5e-6))  # (relative half-width, relative step) after the coarse 0.25 BPM
PHASE_BIN_MS = 1.0
PHASE_SMOOTH_MS = 6.0
MIN_SONG_MS = 4000.0
WHOLE_BPM_SHARPNESS = 0.95  # a whole BPM replaces the estimate when its folded peak is 95% as sharp (train: flat from 0.9 to 0.99)
PHASE_LATENCY_MS = 10.0  # the folded peak trails the mapped beats by 9.6 ms (whole band), 10.7 ms (PHASE_BAND_HZ): train medians
WHOLE_BAND_HZ = (0.0, math.inf)  # every bin: the same strength as no bands, from the same STFT as the bands
KICK_BAND_HZ = (0.0, 200.0)  # a kick drum's onsets mark the bars' first beats
PHASE_BAND_HZ = (200.0, 2000.0)  # these onsets' folded peak places the beats (train: 85% of songs within 10 ms, whole band 78%)
BAR_LEAD = 1.32  # the song's first beat starts the bars unless another beat of four holds 1.32x its kick (train split fit)


BEAT_WINDOW_MS = 20.0  # onset strength this close to a beat counts as on it
PEAK_WINDOW_MS = (-10.0, 15.0)  # onset strength this far before and after a tick counts for it (peaks trail by ~8 ms)
STRONG_PERCENTILE = 99.0  # onset strength at this percentile of the song's frames is a strong onset

FOLLOW_WINDOW_BEATS = 8  # beats whose onset strength places the grid at once
FOLLOW_HOP_BEATS = 4
FOLLOW_MIN_PEAK = 1.5  # a window counts when its best phase holds 1.5x the mean over its phases
FOLLOW_PERIOD_GAIN = 0.25  # share of a window's phase error per beat that goes into the tracked beat length
FOLLOW_MAX_CHANGE = 0.1  # the tracked beat length stays within 10% of the redline's
FOLLOW_MARGIN = 1.25  # new redlines must put 1.25x the old grid's onset strength on their beats


@dataclass
class OnsetEnvelope:
    """Onset strength above its local mean, per 5 ms frame: (frames,), or (frames, bands) by frequency band."""
    times: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, audio: np.ndarray, sample_rate: int, bands_hz: Sequence[tuple[float, float]] | None = None) -> "OnsetEnvelope":
        times, strength = onset_strength(audio, sample_rate, bands_hz)
        radius = max(int(LOCAL_MEAN_MS / ONSET_HOP_MS / 2), 1)
        kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
        local_mean = np.apply_along_axis(np.convolve, 0, strength, kernel, mode="same")
        return cls(times, np.maximum(strength - local_mean, 0.0))

    @property
    def strong(self) -> float | np.ndarray:
        """The strength of a strong onset in this song (0 for silence), per band: what onset strengths are scaled by."""
        if not len(self.values):
            return 0.0
        strong = np.percentile(self.values, STRONG_PERCENTILE, axis=0)
        return float(strong) if strong.ndim == 0 else strong

    def peak_near(self, ticks: np.ndarray) -> np.ndarray:
        """The strongest onset from 10 ms before to 15 ms after each tick (0 outside the song), per band."""
        hop = self.times[1] - self.times[0] if len(self.times) > 1 else ONSET_HOP_MS
        before, after = PEAK_WINDOW_MS
        offsets = np.arange(math.ceil(before / hop), math.floor(after / hop) + 1)
        frames = np.rint((np.asarray(ticks, dtype=float) - self.times[0]) / hop).astype(int)[:, None] + offsets
        inside = (frames >= 0) & (frames < len(self.values))
        if self.values.ndim == 2:
            inside = inside[..., None]
        return np.where(inside, self.values[np.clip(frames, 0, len(self.values) - 1)], 0.0).max(axis=1)


def estimate_redline(onsets: OnsetEnvelope, phase_onsets: OnsetEnvelope, min_bpm: float = 60.0, max_bpm: float = 300.0,
                     prior_bpm: float = 170.0, leniency_ms: float = 3.0) -> TimingPoint | None:
    """The song's main tempo as one redline, or None when the audio is too short or has no onsets: the BPM from
    the whole band's `onsets`, the offset from `phase_onsets` (the `PHASE_BAND_HZ` band's)."""
    times, envelope = onsets.times, onsets.values
    if len(times) * ONSET_HOP_MS < MIN_SONG_MS or not envelope.any():
        return None
    bpm = _coarse_bpm(envelope, min_bpm, max_bpm, prior_bpm)
    for half_width, step in REFINE_STEPS:
        candidates = bpm * (1 + np.arange(-half_width, half_width + step / 2, step))
        bpm = max(candidates, key=lambda b: _fold(times, envelope, 60000.0 / b)[0])
    bpm = _whole_if_as_sharp(times, envelope, bpm)
    beat_length = _round(60000.0 / bpm, times[-1], leniency_ms)
    phase = phase_onsets if phase_onsets.values.any() else onsets  # a song with nothing in the band
    offset = _fold(phase.times, phase.values, beat_length)[1] - PHASE_LATENCY_MS
    return TimingPoint(float(round(offset % beat_length)), beat_length)  # whole ms, as postprocess.timing


def start_bars(redline: TimingPoint, kick: OnsetEnvelope) -> TimingPoint:
    """The redline moved on by whole beats so that its bars start on the beat (of each `meter`) holding the most
    low-frequency onset strength (`kick`: the `KICK_BAND_HZ` envelope) over the song, where a kick drum marks the
    downbeat. Songs mostly start on a bar, so that beat must hold `BAR_LEAD` times the first beat's. The beats stay
    where they are; the bar lines, and the place in the bar the tick scorer reads, move. On the songs whose BPM the
    estimate gets, the bars start on the mapper's 48% of the time on train (the first beat: 39%), 61% on val (50%)."""
    beat, meter = redline.beat_length, max(redline.meter, 1)
    count = int((kick.times[-1] - redline.time) / beat) if len(kick.times) else 0
    if count < 2 * meter:
        return redline
    strength = np.ravel(kick.peak_near(redline.time + beat * np.arange(count)))
    per_place = np.array([strength[k::meter].mean() for k in range(meter)])
    best = int(np.argmax(per_place))
    if per_place[best] <= BAR_LEAD * per_place[0]:
        return redline
    return replace(redline, time=float(round(redline.time + best * beat)))


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


def follow_tempo(onsets: OnsetEnvelope, redlines: list[TimingPoint], end_ms: float,
                 leniency_ms: float = 10.0) -> list[TimingPoint]:
    """The redlines, plus new ones where the song's beats drift away from them.

    A small model (or the one-redline audio estimate) often times a song by its first minute and misses
    that it speeds up later: every object after that lands off the music. So each redline's beats are
    tracked through the onset strength eight at a time, the tracked beats are fitted like generated
    markers (one tempo, or several where that explains them much better), and the new redlines are
    kept when their beats hold at least `FOLLOW_MARGIN` times the onset strength the old grid holds
    over the same stretch; each is then phased so that its stretch's onsets sit against its beats as the old
    stretch's sit against the old beats. A song that keeps its tempo keeps its redlines exactly.
    """
    followed = []
    for k, redline in enumerate(redlines):
        stop = redlines[k + 1].time if k + 1 < len(redlines) else end_ms
        followed += [redline] + _drifted(onsets, redline, stop, leniency_ms)
    return followed


def _drifted(onsets: OnsetEnvelope, redline: TimingPoint, stop: float, leniency_ms: float) -> list[TimingPoint]:
    """New redlines for the stretches before `stop` where the audio's beats leave `redline`'s grid."""
    tracked = _track_beats(onsets, redline, stop)
    if len(tracked) < 2 * FOLLOW_WINDOW_BEATS:
        return []
    kinds = [EventType.TIMING_POINT] + [EventType.MEASURE if n % redline.meter == 0 else EventType.BEAT
                                        for n, _ in tracked[1:]]
    fitted = markers_to_timing_points([(time, kind) for (_, time), kind in zip(tracked, kinds)], leniency_ms)
    if len(fitted) < 2:
        return []
    # Music's onsets trail its beats by a song-dependent latency; keep the old grid's phase against them.
    numbers, times = np.array(tracked).T
    early = times < fitted[1].time
    shift = float(np.median(redline.time + numbers[early] * redline.beat_length - times[early])) if early.any() else 0.0
    new, start = [], redline.time
    for point in fitted[1:]:
        # onto the nearest downbeat, so the bars keep their place (a redline starts a bar)
        into_bar = int(numbers[np.argmin(np.abs(times - point.time))]) % redline.meter
        to_downbeat = -into_bar if into_bar <= redline.meter / 2 else redline.meter - into_bar
        time = float(round(point.time + shift + to_downbeat * point.beat_length))
        new.append(replace(point, time=time if time > start else float(round(point.time + shift))))
        start = new[-1].time
    inside = (onsets.times >= new[0].time) & (onsets.times < stop)
    stretch = OnsetEnvelope(onsets.times[inside], onsets.values[inside])
    if beat_support(stretch, new) < FOLLOW_MARGIN * beat_support(stretch, [redline]):
        return []
    return _phased_like(onsets, redline, new, stop)


def _phased_like(onsets: OnsetEnvelope, redline: TimingPoint, new: list[TimingPoint], stop: float) -> list[TimingPoint]:
    """The `new` redlines after `redline`, each moved by under half a beat so that its section's onset strength,
    folded over its beat, peaks as far after its beats as `redline`'s section's does after its own: the tracked
    beats they were fitted to scatter by several ms (13 ms on a val song that speeds up three times)."""
    old_latency = _latency(onsets, redline, new[0].time)
    if old_latency is None:
        return new
    stops = [point.time for point in new[1:]] + [stop]
    phased = []
    for point, end in zip(new, stops):
        latency = _latency(onsets, point, end)
        move = 0.0 if latency is None else _wrapped(latency - old_latency, point.beat_length)
        phased.append(replace(point, time=float(round(point.time + move))))
    return phased if all(a.time < b.time for a, b in zip([redline] + phased, phased)) else new


def _latency(onsets: OnsetEnvelope, redline: TimingPoint, stop: float) -> float | None:
    """Signed ms from `redline`'s beats to where the onset strength up to `stop`, folded over its beat, peaks
    (None for under `FOLLOW_WINDOW_BEATS` beats, or silence)."""
    inside = (onsets.times >= redline.time) & (onsets.times < stop)
    if (stop - redline.time) / redline.beat_length < FOLLOW_WINDOW_BEATS or not onsets.values[inside].any():
        return None
    peak = _fold(onsets.times[inside], onsets.values[inside], redline.beat_length)[1]
    return _wrapped(peak - redline.time, redline.beat_length)


def _wrapped(ms: float, beat_length: float) -> float:
    """`ms` as the nearest signed offset from a beat: within half a beat either side."""
    return (ms + beat_length / 2) % beat_length - beat_length / 2


def _track_beats(onsets: OnsetEnvelope, redline: TimingPoint, stop: float) -> list[tuple[int, float]]:
    """(beat number on `redline`'s grid, tracked time) of the beats before `stop` that the audio places.

    A window of eight beats slides four beats at a time; it moves to the phase (within a quarter beat)
    where its beats hold the most onset strength, and that phase error nudges the beat length (by at most
    `FOLLOW_MAX_CHANGE`: a bigger tempo change is a new section the timing pass has to mark)."""
    values = np.convolve(onsets.values, np.ones(3) / 3, mode="same")
    shifts = np.arange(-redline.beat_length / 4, redline.beat_length / 4 + 0.5, 1.0)
    middle = range((FOLLOW_WINDOW_BEATS - FOLLOW_HOP_BEATS) // 2, (FOLLOW_WINDOW_BEATS + FOLLOW_HOP_BEATS) // 2)
    anchor, beat_length, number = redline.time, redline.beat_length, 0
    tracked = []
    while anchor + FOLLOW_WINDOW_BEATS * beat_length <= stop:
        beats = anchor + beat_length * np.arange(FOLLOW_WINDOW_BEATS) + PHASE_LATENCY_MS
        strength = np.interp(beats[None, :] + shifts[:, None], onsets.times, values).sum(axis=1)
        best = int(np.argmax(strength))
        if strength[best] > FOLLOW_MIN_PEAK * strength.mean():  # never in silence
            anchor += shifts[best]
            beat_length = float(np.clip(beat_length + FOLLOW_PERIOD_GAIN * shifts[best] / FOLLOW_HOP_BEATS,
                                        (1 - FOLLOW_MAX_CHANGE) * redline.beat_length,
                                        (1 + FOLLOW_MAX_CHANGE) * redline.beat_length))
            tracked += [(number + i, anchor + i * beat_length) for i in middle]  # the window's best-placed beats
        anchor += FOLLOW_HOP_BEATS * beat_length
        number += FOLLOW_HOP_BEATS
    return tracked


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


def _whole_if_as_sharp(times: np.ndarray, envelope: np.ndarray, bpm: float) -> float:
    """The nearest whole BPM where the onset strength folds over it nearly as sharply as over `bpm`, else `bpm`."""
    whole = float(round(bpm))
    if whole == bpm or whole <= 0:
        return bpm
    sharpness = _fold(times, envelope, 60000.0 / bpm)[0]
    return whole if _fold(times, envelope, 60000.0 / whole)[0] >= WHOLE_BPM_SHARPNESS * sharpness else bpm


def _round(beat_length: float, song_ms: float, leniency_ms: float) -> float:
    """The coarsest rounded BPM whose grid stays within `leniency_ms` of the estimate over half the song."""
    beats = song_ms / beat_length / 2
    bpm = 60000.0 / beat_length
    for step in BPM_STEPS:
        rounded = 60000.0 / (round(bpm / step) * step)
        if abs(rounded - beat_length) * beats <= leniency_ms:
            return rounded
    return beat_length

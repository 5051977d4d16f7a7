"""Timing from generated markers: beat, measure and timing-point times -> osu! redlines (reference notes §4.7).

Decoded markers sit on a 10 ms grid, so no two markers give a tempo: each section between
timing-point markers gets a least-squares fit, and its BPM is rounded as far as the fitted grid
allows. "Super timing" first averages several timing passes into one set of markers.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tokenizer.events import EventType
from tokenizer.timing import TimingPoint

T = EventType
Marker = tuple[float, EventType]
RANK = {T.BEAT: 0, T.MEASURE: 1, T.TIMING_POINT: 2}  # the stronger label wins when markers merge
DEDUPE_MS = 10.0
MIN_BPM, MAX_BPM = 30.0, 1000.0
DEFAULT_BEAT_LENGTH = 500.0  # 120 BPM, for a lone marker
BPM_STEPS = (1.0, 0.5, 0.1, 0.01, 0.001)
MIN_SPLIT_MARKERS = 4
SPLIT_GAIN = 0.25  # a split must cut the squared error 4x: a tempo change, not decoding noise
DEFAULT_METER, MAX_METER = 4, 16
PEAK_DISTANCE_MS = 50
VOTE_WEIGHT = {T.BEAT: 1.0, T.MEASURE: 1.0, T.TIMING_POINT: 2.0}


@dataclass
class _Section:
    """One redline's worth of markers and the grid fitted to them."""
    kinds: list[EventType]
    beats: np.ndarray  # beat index of each marker, 0 at the first
    offset: float
    beat_length: float
    meter: int


def markers_to_timing_points(markers: list[Marker], leniency: float = 3.0) -> list[TimingPoint]:
    """osu! redlines for beat/measure/timing-point marker times.

    A redline starts at each timing-point marker; a section that one tempo cannot explain is split
    where a second redline explains it best. Each BPM is rounded to the coarsest step whose grid
    stays within `leniency` ms of the least-squares grid at every marker (measured against the fit,
    not the markers, since decoding alone moves markers by up to 5 ms).
    """
    markers = _dedupe(markers)
    if not markers:
        return []
    sections = []
    for part in _marked_sections(markers):
        times = np.array([time for time, _ in part])
        sections += _fit_sections(times, [kind for _, kind in part], leniency)
    _align_first_downbeat(sections[0])
    # Whole-ms redlines: objects are written in whole ms, and one snapped onto a redline at x.4 ms would
    # be written just before it, off the grid of the section it then belongs to.
    return [TimingPoint(float(round(s.offset)), s.beat_length, s.meter) for s in _merge(sections, leniency)]


def _dedupe(markers: list[Marker]) -> list[Marker]:
    """Markers in time order, those closer than 10 ms to the one kept before merged into it."""
    kept: list[Marker] = []
    for time, kind in sorted(markers, key=lambda m: m[0]):
        if kept and time - kept[-1][0] < DEDUPE_MS:
            if RANK[kind] > RANK[kept[-1][1]]:
                kept[-1] = (kept[-1][0], kind)
            continue
        kept.append((time, kind))
    return kept


def _marked_sections(markers: list[Marker]) -> list[list[Marker]]:
    """Markers cut at every timing-point marker; a lone marker (no tempo of its own) joins its neighbour."""
    sections: list[list[Marker]] = []
    for marker in markers:
        if marker[1] == T.TIMING_POINT or not sections:
            sections.append([])
        sections[-1].append(marker)
    joined: list[list[Marker]] = []
    for section in sections:
        if joined and (len(section) < 2 or len(joined[-1]) < 2):
            joined[-1] += section
        else:
            joined.append(section)
    return joined


def _fit_sections(times: np.ndarray, kinds: list[EventType], leniency: float) -> list[_Section]:
    """One fitted section, or several when a tempo change inside it clearly explains the markers better."""
    beats = _beat_indices(times)
    _, beat_length, residuals = _line_fit(beats, times)
    if np.abs(residuals).max() > leniency:
        split = _best_split(times, beats, float(residuals @ residuals))
        if split is not None:  # the marker at `split` ends one section and starts the next
            return (_fit_sections(times[:split + 1], kinds[:split + 1], leniency)
                    + _fit_sections(times[split:], kinds[split:], leniency))
    beat_length = _humanise(beats, beat_length, leniency)
    offset = float(np.mean(times - beat_length * beats))
    return [_Section(kinds, beats, offset, beat_length, _meter(beats, kinds))]


def _beat_indices(times: np.ndarray) -> np.ndarray:
    """Beat number of each marker: gaps divided by the median gap, rounded, so skipped beats count."""
    if len(times) < 2:
        return np.zeros(len(times))
    gaps = np.diff(times)
    interval = float(np.median(gaps))
    while interval > 60000 / MIN_BPM:
        interval /= 2
    while interval < 60000 / MAX_BPM:
        interval *= 2
    return np.concatenate(([0.0], np.cumsum(np.maximum(np.round(gaps / interval), 1))))


def _line_fit(beats: np.ndarray, times: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares offset and beat length of times = offset + beat_length * beats, and the residuals."""
    if len(times) < 2:
        return float(times[0]), DEFAULT_BEAT_LENGTH, np.zeros(len(times))
    beat_length, offset = np.polyfit(beats, times, 1)
    beat_length = min(max(float(beat_length), 60000 / MAX_BPM), 60000 / MIN_BPM)
    return float(offset), beat_length, times - (offset + beat_length * beats)


def _best_split(times: np.ndarray, beats: np.ndarray, error: float) -> int | None:
    """The marker where a new redline cuts the squared error the most, if it cuts it at least 4x."""
    best, best_error = None, SPLIT_GAIN * error
    for k in range(MIN_SPLIT_MARKERS - 1, len(times) - MIN_SPLIT_MARKERS + 1):
        left = _line_fit(beats[:k + 1], times[:k + 1])[2]
        right = _line_fit(beats[k:], times[k:])[2]
        split_error = float(left @ left + right @ right)
        if split_error < best_error:
            best, best_error = k, split_error
    return best


def _humanise(beats: np.ndarray, beat_length: float, leniency: float) -> float:
    """Beat length of the coarsest rounded BPM whose grid stays within `leniency` ms of the fitted grid."""
    centred = beats - beats.mean()  # the offset is refitted, so drift grows from the section's middle
    bpm = 60000 / beat_length
    for step in BPM_STEPS:
        rounded = 60000 / min(max(round(round(bpm / step) * step, 3), MIN_BPM), MAX_BPM)
        if np.abs((rounded - beat_length) * centred).max() <= leniency:
            return rounded
    return beat_length


def _meter(beats: np.ndarray, kinds: list[EventType]) -> int:
    """Median number of beats between measure (or timing-point) markers."""
    downbeats = [b for b, kind in zip(beats, kinds) if kind != T.BEAT]
    if len(downbeats) < 2:
        return DEFAULT_METER
    return int(min(max(round(float(np.median(np.diff(downbeats)))), 1), MAX_METER))


def _align_first_downbeat(section: _Section) -> None:
    """Move the first redline back by whole beats so the usual measure phase falls on its downbeats."""
    phases = [int(b) % section.meter for b, kind in zip(section.beats, section.kinds) if kind != T.BEAT]
    if phases:
        phase = Counter(phases).most_common(1)[0][0]
        section.offset -= (section.meter - phase) % section.meter * section.beat_length


def _merge(sections: list[_Section], leniency: float) -> list[_Section]:
    """Drop redlines that repeat the one before them: same BPM and meter, on its beat and bar grid."""
    kept = [sections[0]]
    for section in sections[1:]:
        last = kept[-1]
        beats = (section.offset - last.offset) / last.beat_length
        same = (abs(section.beat_length - last.beat_length) < 1e-6 and section.meter == last.meter
                and abs(beats - round(beats)) * last.beat_length <= leniency and round(beats) % last.meter == 0)
        if not same:
            kept.append(section)
    return kept


def consensus_markers(passes: list[list[Marker]], sigma_ms: float = 10.0, min_support: float = 0.5) -> list[Marker]:
    """Super timing: the markers that enough timing passes agree on, each at their weighted mean time.

    Votes go into a 1 ms histogram (timing points count double), smoothed with a Gaussian; peaks
    at least 50 ms apart that at least `min_support` of the passes back within 2 sigma become markers.
    """
    entries = [(time, kind, i) for i, markers in enumerate(passes) for time, kind in markers]
    if not entries:
        return []
    times = np.array([time for time, _, _ in entries])
    weights = np.array([VOTE_WEIGHT[kind] for _, kind, _ in entries])
    radius = math.ceil(4 * sigma_ms)
    origin = math.floor(times.min()) - radius
    signal = np.bincount((times - origin).astype(int), weights, minlength=int(times.max() - origin) + radius + 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_ms) ** 2)
    smooth = np.convolve(signal, kernel, mode="same")
    markers = []
    for peak in sorted(_peaks(smooth)):
        near = np.flatnonzero(np.abs(times - (origin + peak + 0.5)) <= 2 * sigma_ms)
        if len({entries[j][2] for j in near}) < min_support * len(passes):
            continue
        time = float(np.average(times[near], weights=weights[near]))
        markers.append((time, _label(Counter(entries[j][1] for j in near))))
    return markers


def _peaks(signal: np.ndarray) -> list[int]:
    """Local maxima, highest first, skipping any within 50 ms of a higher one already taken."""
    inner = signal[1:-1]
    candidates = np.flatnonzero((inner > 0) & (inner >= signal[:-2]) & (inner > signal[2:])) + 1
    blocked = np.zeros(len(signal), dtype=bool)
    taken = []
    for peak in candidates[np.argsort(-signal[candidates], kind="stable")]:
        if not blocked[peak]:
            taken.append(int(peak))
            blocked[max(peak - PEAK_DISTANCE_MS + 1, 0):peak + PEAK_DISTANCE_MS] = True
    return taken


def _label(votes: Counter) -> EventType:
    total = sum(votes.values())
    if votes[T.TIMING_POINT] > total / 2:
        return T.TIMING_POINT
    if votes[T.MEASURE] + votes[T.TIMING_POINT] >= total / 2:
        return T.MEASURE
    return T.BEAT

"""Timing points and the lookups every stage needs: active point, slider velocity, snapping, beats."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

MIN_BEAT_LENGTH = 6.0  # osu! clamps redline beat lengths to [6, 60000] ms
MAX_BEAT_LENGTH = 60000.0
DEFAULT_BEAT_LENGTH = 1000.0  # what osu! assumes when a map has no redline

# For each divisor, the coarser divisors whose ticks a resnap must avoid, so an object
# tagged 1/d lands on a tick that is exactly 1/d (reference notes §6, step 3).
EXCLUDED_DIVISORS: dict[int, tuple[int, ...]] = {
    1: (), 2: (1,), 3: (1,), 4: (2,), 5: (1,), 6: (2, 3), 7: (1,), 8: (4,), 9: (3,),
    10: (2, 5), 11: (1,), 12: (4, 6), 13: (1,), 14: (2, 7), 15: (3, 5), 16: (8,),
}


@dataclass
class TimingPoint:
    time: float
    beat_length: float
    meter: int = 4
    sample_set: int = 0
    sample_index: int = 0
    volume: int = 100
    uninherited: bool = True
    effects: int = 0

    @property
    def kiai(self) -> bool:
        return bool(self.effects & 1)

    @property
    def omit_first_barline(self) -> bool:
        return bool(self.effects & 8)

    @property
    def slider_velocity(self) -> float:
        """SV multiplier of an inherited point (1 for redlines), clamped as osu! does."""
        if self.uninherited or math.isnan(self.beat_length) or self.beat_length >= 0:
            return 1.0
        return min(max(-100.0 / self.beat_length, 0.1), 10.0)

    @property
    def clamped_beat_length(self) -> float:
        return min(max(self.beat_length, MIN_BEAT_LENGTH), MAX_BEAT_LENGTH)


class Timing:
    """Lookups over a beatmap's timing points, kept in stable time order."""

    def __init__(self, points: Sequence[TimingPoint]):
        self.points = sorted(points, key=lambda p: p.time)
        self.times = [p.time for p in self.points]
        self.redlines = [p for p in self.points if p.uninherited]
        if not self.redlines:
            self.redlines = [TimingPoint(0.0, DEFAULT_BEAT_LENGTH)]
        self.redline_times = [p.time for p in self.redlines]

    def point_at(self, time: float) -> TimingPoint | None:
        """The last timing point at or before `time` (osu! lets the later of equal times win)."""
        i = bisect.bisect_right(self.times, time) - 1
        return self.points[i] if i >= 0 else (self.points[0] if self.points else None)

    def redline_at(self, time: float) -> TimingPoint:
        """The governing uninherited point; objects before the first redline use the first one."""
        i = bisect.bisect_right(self.redline_times, time) - 1
        return self.redlines[max(i, 0)]

    def redline_index(self, time: float) -> int:
        return max(bisect.bisect_right(self.redline_times, time) - 1, 0)

    def slider_velocity_at(self, time: float) -> float:
        point = self.point_at(time)
        if point is None or point.uninherited or point.time < self.redline_at(time).time:
            return 1.0
        return point.slider_velocity

    def beat_length_at(self, time: float) -> float:
        return self.redline_at(time).clamped_beat_length

    def snap_divisor(self, time: float, max_divisor: int = 16, leniency: float = 2.0) -> int:
        """Smallest divisor d whose 1/d tick of the governing redline lies within `leniency` ms; 0 if none."""
        redline = self.redline_at(time)
        beat = redline.clamped_beat_length
        for divisor in range(1, max_divisor + 1):
            step = beat / divisor
            ticks = (time - redline.time) / step
            if abs(ticks - round(ticks)) * step <= leniency:
                return divisor
        return 0

    def resnap(self, time: float, divisor: int, margin: float = 20.0, exact: bool = True) -> float:
        """Move `time` to the nearest tick that is exactly 1/divisor of a nearby redline (`exact`:
        the tag of a real map), or any tick of the 1/divisor grid, coarser ones included.

        Candidates come from the redline governing `time` and from the neighbouring redlines
        whose sections reach within `margin` ms, so times decoded near a redline change can
        still land on the right side of it. Returns the tick rounded to whole ms.
        """
        if divisor <= 0:
            return time
        i = self.redline_index(time)
        best = None
        for j in (i - 1, i, i + 1):
            if not 0 <= j < len(self.redlines):
                continue
            redline = self.redlines[j]
            start = redline.time if j > 0 else -math.inf
            end = self.redlines[j + 1].time if j + 1 < len(self.redlines) else math.inf
            if not start - margin <= time <= end + margin:
                continue
            for tick in _nearest_ticks(redline, time, divisor, exact):
                if best is None or abs(tick - time) < abs(best - time):
                    best = tick
        return time if best is None else float(round(best))

    def ticks(self, divisor: int, start: float, end: float) -> np.ndarray:
        """Every 1/divisor tick of each redline's section from `start` to `end` (both included), in whole ms."""
        ticks = []
        for k, redline in enumerate(self.redlines):
            section_end = self.redlines[k + 1].time if k + 1 < len(self.redlines) else np.inf
            step = redline.clamped_beat_length / divisor
            first = max(start, redline.time if k > 0 else -np.inf)
            last = min(end, section_end - 1)
            if last < first:
                continue
            n0 = np.ceil((first - redline.time) / step - 1e-6)
            n1 = np.floor((last - redline.time) / step + 1e-6)
            ticks.append(redline.time + np.arange(n0, n1 + 1) * step)
        return np.round(np.concatenate(ticks)) if ticks else np.zeros(0)

    def beats(self, end_time: float) -> Iterator[tuple[int, int, int]]:
        """(time, beat index within the redline, meter) for every beat up to `end_time`.

        Each redline runs until 10 ms before the next one; beat k sits at int(offset + k*beat).
        """
        for j, redline in enumerate(self.redlines):
            stop = self.redlines[j + 1].time - 10 if j + 1 < len(self.redlines) else end_time
            beat = redline.clamped_beat_length
            k = 0
            while redline.time + k * beat <= stop:
                yield int(redline.time + k * beat), k, max(redline.meter, 1)
                k += 1

    def median_beat_length(self, end_time: float) -> float:
        """The beat length that lasts longest up to `end_time` (osu!'s "main BPM")."""
        durations: dict[float, float] = {}
        for j, redline in enumerate(self.redlines):
            stop = self.redlines[j + 1].time if j + 1 < len(self.redlines) else max(end_time, redline.time)
            start = redline.time if j > 0 else min(redline.time, 0.0)
            beat = round(redline.clamped_beat_length, 3)
            durations[beat] = durations.get(beat, 0.0) + max(stop - start, 0.0)
        return max(durations, key=lambda b: (durations[b], -b))


def _nearest_ticks(redline: TimingPoint, time: float, divisor: int, exact: bool) -> list[float]:
    """The ticks of `divisor` on either side of `time`; if `exact`, not those that are also ticks of a
    coarser excluded divisor."""
    step = redline.clamped_beat_length / divisor
    excluded = EXCLUDED_DIVISORS.get(divisor, (1,)) if exact else ()
    k0 = math.floor((time - redline.time) / step)
    ticks = []
    for k in range(k0 - 2, k0 + 4):
        if any(k * d % divisor == 0 for d in excluded):
            continue
        ticks.append(redline.time + k * step)
    return ticks

"""Steering the map pass toward the requested difficulty's object density.

The small generator barely reads its difficulty token: its density follows its own lookback, so a
1* request came out as dense as a 7* one. Human maps' density follows their star rating closely
(log objects/s ~ a + b * stars, correlation 0.86-0.92 per mode on the train split), so the map pass
holds objects apart: a time less than a minimum gap after the previous object is ruled out
(osuT5.logits.spacing), like a mapper who keeps an Easy to 1/1 rhythms: the gap is a whole snap
division of the song's beat (a gap in ms would push objects off the grid). It starts at a share of
1 / target and, after each window, grows while the recent density is above the target and shrinks
while it is below, by more than human maps of that star rating stray from the fit (its residual).
The model still chooses every time; it is thinned, never made to invent objects.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from tokenizer.events import EventType, Group

T = EventType
# Group types that start a hit object (their time is the object's time; ends and anchors are not counted).
OBJECT_TYPES = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.SPINNER, T.HOLD_NOTE, T.DRUMROLL, T.DENDEN})
SNAP_FRACTIONS = (2, 1, 1 / 2, 1 / 3, 1 / 4, 1 / 6, 1 / 8)  # of a beat: the rhythms a minimum gap may be
SNAP_SLACK_MS = 15.0  # generated times are 10 ms steps that resnapping moves onto the ticks


def from_stars(stars: float, fit: tuple[float, float]) -> float:
    """What human maps of this star rating have (objects/s, jump px/ms), from a log-linear fit: exp(a + b * stars)."""
    a, b = fit
    return math.exp(a + b * stars)


@dataclass
class DensityControl:
    """The minimum gap between objects, share / target, scaled by an integral of the log density error."""
    target: float  # objects per second
    share: float = 0.5  # the starting minimum gap, as a share of the target's mean gap
    horizon_ms: float = 8000.0  # the recent stretch the density is measured over
    gain: float = 0.1  # change of the log gap scale per window for a density e times the target
    tolerance: float = 0.0  # log density error left alone: how far human maps stray from the fit
    max_scale: float = 4.0  # the gap stays within [1/4, 4] x its start
    beat_ms: float | None = None  # the song's main beat: the gap is cut to whole snap divisions of it
    log_scale: float = 0.0

    @property
    def min_gap_ms(self) -> float:
        """share / target, scaled; with a beat, cut down to the longest of 2, 1, 1/2, ... 1/8 beats that
        fits, less SNAP_SLACK_MS, so the next allowed time is a tick the model can still hit."""
        gap = 1000 * self.share * math.exp(self.log_scale) / self.target
        if self.beat_ms is None:
            return gap
        ticks = [self.beat_ms * fraction for fraction in SNAP_FRACTIONS if self.beat_ms * fraction <= gap]
        return max(ticks) - SNAP_SLACK_MS if ticks else gap

    def update(self, object_times: list[float], now_ms: float) -> None:
        """Rescale the gap from the sorted times of every object so far and the time written up to."""
        if not object_times:
            return
        start = max(now_ms - self.horizon_ms, object_times[0])
        span_s = max(now_ms - start, 1.0) / 1000
        count = len(object_times) - bisect.bisect_left(object_times, start)
        error = math.log((count + 0.5) / (self.target * span_s + 0.5))
        error = math.copysign(max(abs(error) - self.tolerance, 0.0), error)
        limit = math.log(self.max_scale)
        self.log_scale = min(max(self.log_scale + self.gain * error, -limit), limit)


def object_times(groups: list[Group]) -> list[float]:
    """The sorted start times of the hit objects among `groups`."""
    return sorted(g.time for g in groups if g.type in OBJECT_TYPES)

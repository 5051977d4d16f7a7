"""Steering the map pass toward the requested difficulty's object density.

The small generator barely reads its difficulty token: its density follows its own lookback, so a
1* request came out as dense as a 7* one. Human maps' density follows their star rating closely
(log objects/s ~ a + b * stars, correlation 0.86-0.92 per mode on the train split), so the map pass
holds objects apart: a time less than a minimum gap after the previous object is ruled out
(osuT5.logits.spacing), like a mapper who keeps an Easy to 1/1 rhythms. The gap starts at a share of
1 / target and, after each window, grows while the recent density is above the target and shrinks
while it is below. The model still chooses every time; it is thinned, never made to invent objects.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from tokenizer.events import EventType, Group

T = EventType
# Group types that start a hit object (their time is the object's time; ends and anchors are not counted).
OBJECT_TYPES = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.SPINNER, T.HOLD_NOTE, T.DRUMROLL, T.DENDEN})


def target_density(stars: float, fit: tuple[float, float]) -> float:
    """Objects per second that human maps of this star rating have: exp(a + b * stars)."""
    a, b = fit
    return math.exp(a + b * stars)


@dataclass
class DensityControl:
    """The minimum gap between objects, share / target, scaled by an integral of the log density error."""
    target: float  # objects per second
    share: float = 0.5  # the starting minimum gap, as a share of the target's mean gap
    horizon_ms: float = 8000.0  # the recent stretch the density is measured over
    gain: float = 0.1  # change of the log gap scale per window for a density e times the target
    max_scale: float = 4.0  # the gap stays within [1/4, 4] x its start
    log_scale: float = 0.0

    @property
    def min_gap_ms(self) -> float:
        return 1000 * self.share * math.exp(self.log_scale) / self.target

    def update(self, object_times: list[float], now_ms: float) -> None:
        """Rescale the gap from the sorted times of every object so far and the time written up to."""
        if not object_times:
            return
        start = max(now_ms - self.horizon_ms, object_times[0])
        span_s = max(now_ms - start, 1.0) / 1000
        count = len(object_times) - bisect.bisect_left(object_times, start)
        error = math.log((count + 0.5) / (self.target * span_s + 0.5))
        limit = math.log(self.max_scale)
        self.log_scale = min(max(self.log_scale + self.gain * error, -limit), limit)


def object_times(groups: list[Group]) -> list[float]:
    """The sorted start times of the hit objects among `groups`."""
    return sorted(g.time for g in groups if g.type in OBJECT_TYPES)

"""Partial remapping: splice generated objects for a time range into a reference beatmap (reference notes §4.8)."""
from __future__ import annotations

import copy

from tokenizer.osu_file import Beatmap
from tokenizer.timing import Timing, TimingPoint


def merge_partial(reference: Beatmap, generated: Beatmap, start_ms: float, end_ms: float) -> Beatmap:
    """A copy of `reference` whose objects starting in [start_ms, end_ms] are the generated ones.

    Objects outside the range are untouched copies, and so are the reference's redlines. Greenlines
    in the range come from `generated`. Where the range is entered or left with a different SV,
    volume, kiai or sample set than the side it belongs to, a greenline restores that side's state:
    at the first generated object (or start_ms) and at the first reference object after the range
    (or 1 ms after end_ms). Neither input is changed.
    """
    def inside(time: float) -> bool:
        return start_ms <= time <= end_ms

    merged = copy.deepcopy(reference)
    new_objects = [copy.deepcopy(o) for o in generated.hit_objects if inside(o.time)]
    merged.hit_objects = sorted([o for o in merged.hit_objects if not inside(o.time)] + new_objects,
                                key=lambda o: o.time)
    points = [p for p in merged.timing_points if p.uninherited or not inside(p.time)]
    points += [copy.copy(p) for p in generated.timing_points if not p.uninherited and inside(p.time)]
    entry = min((o.time for o in new_objects), default=start_ms)
    leave = min((o.time for o in reference.hit_objects if o.time > end_ms), default=end_ms + 1)
    points = _with_state_of(generated.timing, entry, _sorted(points))
    merged.timing_points = _with_state_of(reference.timing, leave, points)
    merged.compute_end_times()
    return merged


def _sorted(points: list[TimingPoint]) -> list[TimingPoint]:
    """Time order, a redline before a greenline at the same time (the later point wins in osu!)."""
    return sorted(points, key=lambda p: (p.time, not p.uninherited))


def _state(timing: Timing, time: float) -> tuple | None:
    point = timing.point_at(time)
    if point is None:
        return None
    return round(timing.slider_velocity_at(time), 6), point.volume, point.kiai, point.sample_set, point.sample_index


def _with_state_of(source: Timing, time: float, points: list[TimingPoint]) -> list[TimingPoint]:
    """`points` plus, if they give `time` another state than `source` does, a greenline restoring it."""
    wanted = _state(source, time)
    merged = Timing(points)
    if wanted is None or _state(merged, time) == wanted:
        return points
    sv, volume, kiai, sample_set, sample_index = wanted
    green = TimingPoint(float(time), -100.0 / sv, merged.redline_at(time).meter, sample_set, sample_index, volume,
                        False, int(kiai))
    return _sorted([*points, green])

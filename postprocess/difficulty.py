"""Bringing a generated osu!, catch or mania map to the requested star rating.

Density control (osuT5.density) gives a map human density, which is what taiko and mania star
ratings follow. osu! and catch star ratings also come from movement, which the small model gets
wrong: its osu! maps still rated about 3* over the request, and a 2.1* catch request came out at
4.5*. Catch movement is horizontal only, so there every distance is along x. When rosu-pp rates a
map more than `tolerance` over the request:

1. jumps are shortened: each object moves along its jump from the previous object's end until the
   jump is at most a speed limit (px/ms), lowered by bisection, but never below the median jump speed
   of human maps at the requested stars (`floor`). Times do not change, so the rhythm stays;
2. if that is not enough, objects are removed, as few as it takes, at most `max_share` of them, the
   way a mapper simplifies a difficulty: those off the whole and half beats first, then those on half
   beats, then those on whole beats; within each, the hardest to play (fastest movement in and out).
   The small model's objects on 1/4 ticks match a human's 8% of the time (whole beats 63%), so this
   also drops its likeliest mistakes (54 val osu! maps: F1@20 0.431 -> 0.465 at the same stars).
   Spinners and the first object stay.

Taiko and mania have no movement, and their star ratings follow density, which is fitted to human
maps at the requested stars (osuT5.density). That fit is log-linear and overshoots easy maps: val
mania requests under 1.2* came out at 2-3 times the human density and 0.5-0.8* over. So a mania map
over the request loses notes instead (`weakest_first_order`): chords' extra notes first, then single
notes, the weakest first: where the tick scorer (postprocess/rhythm.py) says a mapper is least
likely to play. Taiko can be fitted the same way, but its star rating also follows rhythm changes,
and on val the notes that fitting removed were too often a human's.

A map more than `tolerance` under the request gets objects instead (`raise_star_rating`): as many as
keep it at most at the request, placed by the caller (onset fill: circles on the best-scored free
ticks). Hard mania requests came out sparse and under the request (val: a 2.92* Rabbit Hole request
rated 2.66*, at 79% of the human density).

Before either, a mania map with more chords than human maps at the requested stars has its weakest chords'
extra notes moved onto free ticks (`spread_chords`).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np

from tokenizer.check import star_rating
from tokenizer.osu_file import SLIDER, SPINNER, Beatmap, HitObject

from .rhythm import TickScore
from .validate import HEIGHT, MAX_DIVISOR, SNAP_LENIENCY_MS, WIDTH, object_in_playfield, object_points

CATCH = 2
BISECTIONS = 10
REMOVAL_RANK = {1: 2, 2: 1}  # beat divisor -> rank; lower ranks go first, every other divisor is rank 0


def removal_order(beatmap: Beatmap) -> list[int]:
    """Indices of the removable hit objects (sorted by time): those on the finest beat fractions first
    (off whole and half beats, then half beats, then whole beats), within each the hardest to play: the
    fastest movement into and out of them (px/ms; for a slider also its ball's own speed). The first
    object and spinners are kept."""
    objects, catch, timing = beatmap.hit_objects, beatmap.mode == CATCH, beatmap.timing
    ends = [o.end_position for o in objects]
    keys = []
    for i in range(1, len(objects)):
        o = objects[i]
        if o.kind == SPINNER:
            continue
        speed = _speed(ends[i - 1], objects[i - 1].finish, (o.x, o.y), o.time, catch)
        if i + 1 < len(objects):
            speed += _speed(ends[i], o.finish, (objects[i + 1].x, objects[i + 1].y), objects[i + 1].time, catch)
        if o.kind == SLIDER and not catch:
            speed += o.path().length * o.slides / max(o.finish - o.time, 1.0)
        keys.append((REMOVAL_RANK.get(timing.snap_divisor(o.time, MAX_DIVISOR, SNAP_LENIENCY_MS), 0), -speed, i))
    return [i for *_, i in sorted(keys)]


def raise_star_rating(beatmap: Beatmap, target: float, tolerance: float,
                      add: Callable[[Beatmap, int], Beatmap]) -> Beatmap:
    """The map with objects added when it rates more than `tolerance` under `target`: `add(map, count)` gives
    a copy with up to `count` objects, and the largest count whose map still rates at most `target` is
    found by bisection (stars rise with every added object; at most twice the objects)."""
    count = len(beatmap.hit_objects)
    if not count or star_rating(beatmap) >= target - tolerance:
        return beatmap
    low, high, best = count, 2 * count, beatmap
    while low < high:  # the largest count whose map rates at most `target`
        middle = (low + high + 1) // 2
        trial = add(copy.copy(beatmap), middle)
        if star_rating(trial) <= target:
            low, best = middle, trial
        else:
            high = middle - 1
    return best


def weakest_first_order(beatmap: Beatmap, score: TickScore) -> list[int]:
    """Indices of the removable notes (sorted by time): every chord's notes but one first, then the single
    notes; within each, those on the ticks `score` rates lowest first. The first note stays."""
    objects = beatmap.hit_objects
    scores = score(np.array([o.time for o in objects], dtype=float))
    first_at_time: dict[float, int] = {}
    keys = []
    for i, o in enumerate(objects):
        kept_longest = first_at_time.setdefault(o.time, i) == i
        if i > 0:
            keys.append((kept_longest, float(scores[i]), i))
    return [i for *_, i in sorted(keys)]


def spread_chords(beatmap: Beatmap, notes_per_time: float, score: TickScore,
                  add: Callable[[Beatmap, int], Beatmap]) -> Beatmap:
    """A mania map with more notes per distinct time than `notes_per_time` (human maps' at the requested stars)
    without its weakest chords' extra notes down to that, and with as many notes back from `add(map, count)`
    (onset fill: single notes on the best free ticks). The small model chords where a mapper plays more
    rhythm: its val maps with more chords than the human ones reached the stars on 0.63-0.89 times their
    distinct times."""
    notes, times = len(beatmap.hit_objects), len({o.time for o in beatmap.hit_objects})
    extras = min(max(0, math.ceil(notes - notes_per_time * times)), notes - times)
    if not extras:
        return beatmap
    return add(without(beatmap, set(weakest_first_order(beatmap, score)[:extras])), notes)


def cap_jumps(beatmap: Beatmap, max_speed: float) -> Beatmap:
    """A copy whose objects (sorted by time) each move along their jump from the previous object's end
    until the jump is at most `max_speed` px/ms (catch: sideways only); a slider moves whole and is
    shifted back onto the playfield."""
    objects, catch = [copy.copy(o) for o in beatmap.hit_objects], beatmap.mode == CATCH
    previous = None  # (end position, end time) of the previous object; a spinner resets it
    for o in objects:
        if o.kind == SPINNER:
            previous = None
            continue
        if previous is not None:
            (px, py), end_time = previous
            if catch:
                py = o.y
            reach = max_speed * max(o.time - end_time, 1.0)
            distance = math.dist((px, py), (o.x, o.y))
            if distance > reach:
                scale = reach / distance
                _move(o, px + (o.x - px) * scale - o.x, py + (o.y - py) * scale - o.y)
        previous = (o.end_position, o.finish)
    capped = copy.copy(beatmap)
    capped.hit_objects = objects
    return capped


def _move(o: HitObject, dx: float, dy: float) -> None:
    """Move an object; a slider with its control points, then back inside the playfield if it left it.
    A slider that cannot fit there after the move stays where it was."""
    if o.kind != SLIDER:
        o.x, o.y = o.x + dx, o.y + dy
        return
    original = (o.x, o.y, o.curve_points)
    _translate(o, dx, dy)
    points = object_points(o)
    _translate(o, max(0.0, -points[:, 0].min()) - max(0.0, points[:, 0].max() - WIDTH),
               max(0.0, -points[:, 1].min()) - max(0.0, points[:, 1].max() - HEIGHT))
    if not object_in_playfield(o):
        o.x, o.y, o.curve_points = original


def _translate(o: HitObject, dx: float, dy: float) -> None:
    o.x, o.y = o.x + dx, o.y + dy
    o.curve_points = [(x + dx, y + dy) for x, y in o.curve_points]


def _jump_speeds(beatmap: Beatmap) -> list[float]:
    objects, catch = [o for o in beatmap.hit_objects if o.kind != SPINNER], beatmap.mode == CATCH
    return [_speed(a.end_position, a.finish, (b.x, b.y), b.time, catch) for a, b in zip(objects, objects[1:])]


def _speed(start: tuple[float, float], start_time: float, end: tuple[float, float], end_time: float,
           catch: bool) -> float:
    distance = abs(end[0] - start[0]) if catch else math.dist(start, end)
    return distance / max(end_time - start_time, 1.0)


def without(beatmap: Beatmap, removed: set[int]) -> Beatmap:
    """A copy of `beatmap` without the hit objects at `removed`; a removed new combo moves to the next object."""
    kept: list[HitObject] = []
    carry = False
    for i, o in enumerate(beatmap.hit_objects):
        if i in removed:
            carry = carry or o.new_combo
            continue
        if carry:
            o = copy.copy(o)
            o.new_combo, carry = True, False
        kept.append(o)
    thinned = copy.copy(beatmap)
    thinned.hit_objects = kept
    return thinned


def fit_star_rating(beatmap: Beatmap, target: float, tolerance: float, floor: float | None, max_share: float,
                    order: Callable[[Beatmap], list[int]] = removal_order) -> Beatmap:
    """The map brought to at most target + tolerance stars, as far as the jump speed `floor` (None: jumps
    stay) and `max_share` allow, removing objects in `order`. Stars fall (nearly) monotonically with the
    speed limit and with each removed object, so both are found by bisection."""
    beatmap = copy.copy(beatmap)
    beatmap.hit_objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    goal = target + tolerance
    if not beatmap.hit_objects or star_rating(beatmap) <= goal:
        return beatmap
    fast, slow = max(_jump_speeds(beatmap), default=0.0), floor
    if slow is not None and fast > slow:
        best = cap_jumps(beatmap, slow)
        if star_rating(best) > goal:
            beatmap = best
        else:
            for _ in range(BISECTIONS):  # the fastest limit that still rates at most `goal`
                middle = (fast + slow) / 2
                capped = cap_jumps(beatmap, middle)
                if star_rating(capped) > goal:
                    fast = middle
                else:
                    slow, best = middle, capped
            return best
    removable = order(beatmap)
    low, high = 0, min(len(removable), int(max_share * len(beatmap.hit_objects)))
    while low < high:  # the smallest count whose map rates at most `goal` (high if none does)
        middle = (low + high) // 2
        if star_rating(without(beatmap, set(removable[:middle]))) <= goal:
            high = middle
        else:
            low = middle + 1
    return without(beatmap, set(removable[:high]))

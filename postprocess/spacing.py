"""Even spacing for osu! maps: jumps that grow with the time between objects, and no accidental overlaps.

Mappers space objects by time: within a map, a jump a half beat long is about half of a one-beat jump (distance
snapping), and objects a half beat or more apart do not overlap unless stacked on purpose. The small model's
positions are near chance: on the val split 25% of its objects a half beat after the previous one overlapped it
(human maps 6%), 34% at one beat (9-15%), and its one-beat jumps ranged from 0.2 to 2.8 times its own typical
spacing (human 1.1 to 2.1 half-beat jumps, 10th to 90th percentile of the train split).

`even_spacing` walks the map in time order and places each object (a slider with its whole body) along the model's
own jump to it, from wherever the previous object now ends, stretched or shortened until the jump lies within `low`
to `high` times a spacing for that gap and at least a circle's width. So a moved object carries the pattern after it
along, and the model's turns stay. The spacing is that of human maps at the requested star rating where one is asked
for (px per ms of gap, fitted on the train split), else the map's own median. Where a jump would leave the playfield,
it and the rest of the pattern mirror off that wall, as a mapper's pattern bounces; where no mirror image fits (long
sliders) it turns, a little at a time. Placing each object from the one before alone had moved it out and the next
one back: a third of the val maps' turns reversed the jump before (human 15%), and objects kept to the middle of the
playfield (x/y standard deviation 101/79 px, human 126/97; now 117/91). Times do not change, so the rhythm stays;
star fitting runs after it. Stacks (objects as close as `beatmap.OVERLAP_PX`, which building the map snaps
together) and 1/4-beat streams keep their shape.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from tokenizer.osu_file import SPINNER, Beatmap, HitObject
from tokenizer.timing import Timing

from .beatmap import OVERLAP_PX as STACK_PX  # objects this close are a stack, which mappers place on purpose
from .validate import object_in_playfield

MIN_GAP_BEATS = 0.375  # closer objects (1/4-beat streams) overlap in human maps too, and stay as they are
MAX_GAP_BEATS = 2.0  # a longer pause spaces like two beats
SCALE_GAPS_BEATS = (0.45, 1.05)  # the gaps (1/2 to 1 beat) whose jumps measure the map's spacing
MIN_SCALE_JUMPS = 8  # fewer such jumps: the map is left as it is
TURN_STEP_DEGREES = 15.0


def even_spacing(beatmap: Beatmap, low: float, high: float, per_ms: float | None = None) -> Beatmap:
    """A copy whose objects a `MIN_GAP_BEATS` or more after the previous one's end jump `low` to `high` times
    `per_ms` (px per ms; None: the map's median over its 1/2- to 1-beat jumps) times the gap (at most `MAX_GAP_BEATS`),
    and no less than a circle's diameter, in the direction of the model's jump; stacks and streams keep the model's
    jumps, and spinners stay. Without `per_ms`, a map with too few jumps to measure is unchanged."""
    objects = sorted((copy.copy(o) for o in beatmap.hit_objects), key=lambda o: o.time)
    timing = beatmap.timing
    scale = per_ms if per_ms is not None else _median_spacing(objects, timing)
    spaced = copy.copy(beatmap)
    spaced.hit_objects = objects
    if scale is None:
        return spaced
    diameter = 2 * circle_radius(beatmap.cs)
    previous: HitObject | None = None
    previous_end = None  # the previous object's end where the model put it
    mirror = np.ones(2)  # the model's jumps are mirrored from the wall they last bounced off
    for o in objects:
        if o.kind == SPINNER:
            previous = None
            continue
        end = np.array(o.end_position)
        if previous is not None:
            beat = timing.beat_length_at(o.time)
            gap = o.time - previous.finish
            jump = (np.array([o.x, o.y]) - previous_end) * mirror  # the model's own jump, wherever the previous object went
            distance = float(np.hypot(*jump))
            if gap >= MIN_GAP_BEATS * beat and distance >= STACK_PX:
                shortest = max(low * scale * min(gap, MAX_GAP_BEATS * beat), diameter)
                longest = max(high * scale * min(gap, MAX_GAP_BEATS * beat), shortest)
                distance = min(max(distance, shortest), longest)
            mirror *= _place(o, np.array(previous.end_position), jump, distance)
        previous, previous_end = o, end
    return spaced


def spacing_pairs(objects: list[HitObject], timing: Timing) -> np.ndarray:
    """(gap in beats, jump in px, beat length in ms) from each object's end to the next one's head, in time order;
    spinners break the chain."""
    rows = []
    for a, b in zip(objects, objects[1:]):
        if a.kind != SPINNER and b.kind != SPINNER:
            beat = timing.beat_length_at(b.time)
            rows.append(((b.time - a.finish) / beat, math.dist(a.end_position, (b.x, b.y)), beat))
    return np.array(rows, dtype=float).reshape(-1, 3)


def _median_spacing(objects: list[HitObject], timing: Timing) -> float | None:
    """The median px per ms of the jumps over 1/2- to 1-beat gaps (stacks left out), or None with too few."""
    pairs = spacing_pairs(objects, timing)
    lo, hi = SCALE_GAPS_BEATS
    measured = pairs[(pairs[:, 0] >= lo) & (pairs[:, 0] <= hi) & (pairs[:, 1] >= STACK_PX)]
    if len(measured) < MIN_SCALE_JUMPS:
        return None
    return float(np.median(measured[:, 1] / (measured[:, 0] * measured[:, 2])))


def _place(o: HitObject, start: np.ndarray, jump: np.ndarray, distance: float) -> np.ndarray:
    """Move `o` (a slider whole) to `distance` from `start` along `jump`, or where that leaves the playfield, along its
    mirror image off the wall (x, y or both), else the nearest turn of it that stays on; where none does, it stays.
    Returns the mirroring used ((1, 1): none)."""
    x, y, points = o.x, o.y, o.curve_points
    angle = math.atan2(jump[1], jump[0])
    mirrors = [np.array(m, dtype=float) for m in ((1, 1), (-1, 1), (1, -1), (-1, -1))]
    turns = [sign * k * TURN_STEP_DEGREES for k in range(1, int(180 / TURN_STEP_DEGREES) + 1) for sign in (1, -1)]
    headings = [(math.atan2(m[1] * jump[1], m[0] * jump[0]), m) for m in mirrors]
    headings += [(angle + math.radians(turn), mirrors[0]) for turn in turns]
    for heading, mirror in headings:
        dx, dy = start[0] + distance * math.cos(heading) - x, start[1] + distance * math.sin(heading) - y
        o.x, o.y = x + dx, y + dy
        o.curve_points = [(px + dx, py + dy) for px, py in points]
        if object_in_playfield(o):
            return mirror
    o.x, o.y, o.curve_points = x, y, points
    return mirrors[0]


def circle_radius(cs: float) -> float:
    """osu!'s hit circle radius in playfield pixels at circle size `cs`."""
    return 54.4 - 4.48 * cs

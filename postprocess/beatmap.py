"""Generated groups -> a playable beatmap (reference notes §6).

`groups_to_beatmap` turns groups into hit objects and greenlines; this module first makes the
groups playable (times on the timing, a position for every object, sliders that fit their path
and the playfield, no stacked duplicates) and afterwards moves volumes to timing points.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import random

import numpy as np

from tokenizer.curves import SliderPath, trim_to_length
from tokenizer.decode import groups_to_beatmap, resnap_groups
from tokenizer.events import ANCHOR_TYPES, EventType, Group
from tokenizer.osu_file import SLIDER, Beatmap, HitObject
from tokenizer.timing import Timing, TimingPoint

from .rhythm import TickScore
from .validate import HEIGHT, MAX_DIVISOR, SNAP_LENIENCY_MS, WIDTH, inside_playfield, object_in_playfield

T = EventType
CENTRE = (256.0, 192.0)
DEFAULT_BEAT_LENGTH = 500.0  # 120 BPM, when the template has no redline
TICK_DIVISORS = (12, 16)  # their ticks are those of 1/1, 1/2, 1/3, 1/4, 1/6, 1/8, 1/12 and 1/16
OVERLAP_PX, OVERLAP_WINDOW_MS = 3.8, 1000.0
CIRCLE_ANGLES = 500
LENGTH_SLACK = 1.5  # a path this much shorter than the slider needs gets a lower SV instead of a stretch
MIN_SV, SV_STEP = 0.1, 0.05
SHRINK, MAX_FIT_STEPS = 0.8, 40
MAX_PATH_EXCESS = 1.5  # a path up to this many times its slider's length keeps its anchors: mappers' files run past
# the end (the editor snaps the length down) by a median 1.09x, 1.45x at the 95th percentile; the model's by 3.2x
MIN_SLIDER_DIVISOR = 16  # a slider's span is at least 1/16 beat: mappers' shortest (0.04% of train sliders under 1/8)
SEPARATE_MS = 20.0  # starts generated this far apart are two objects, even where they snap to one tick

STARTS = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.SPINNER, T.HOLD_NOTE, T.DRUMROLL, T.DENDEN})
ENDS = {T.SLIDER_END: T.SLIDER_HEAD, T.SPINNER_END: T.SPINNER, T.HOLD_NOTE_END: T.HOLD_NOTE,
        T.DRUMROLL_END: T.DRUMROLL, T.DENDEN_END: T.DENDEN}  # end type -> the start it closes
OBJECT_PARTS = STARTS | set(ENDS) | set(ANCHOR_TYPES) | {T.LAST_ANCHOR}
POSITIONED = frozenset({T.CIRCLE, T.SLIDER_HEAD, *ANCHOR_TYPES, T.LAST_ANCHOR, T.SLIDER_END})
OVERLAP_TYPES = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END})


def build_beatmap(groups: list[Group], template: Beatmap, *, seed: int = 0, snap_overlaps: bool = True,
                  resnap: bool = True, exact_snaps: bool = True, separate_finest: int = 0,
                  onset_score: TickScore | None = None, onset_snap_beats: float = 0.0) -> Beatmap:
    """The playable beatmap for generated map (+ kiai + sv) groups, with `template`'s settings and redlines.

    Deterministic for a given seed; the inputs are not changed. With `resnap` off, times stay as
    generated (for groups that are already on the timing); `exact_snaps` off lets a group tagged
    1/d land on any tick of the 1/d grid, coarser ones included (Timing.resnap). With `separate_finest` (a snap
    divisor; 0: off), objects that resnapping puts on one tick are spread over free finer ticks, no finer than
    1/`separate_finest`, rather than dropped (_separate_starts).
    With `onset_score` and `onset_snap_beats`, tagged objects first move to the best-scored tick (the song's
    strongest onset, or the likeliest played) on their tag's grid within that many beats (_snap_to_onsets).
    """
    template = _with_redline(template)
    timing = template.timing
    groups = sorted(copy.deepcopy(groups), key=lambda g: g.time)
    objects = _hit_objects(groups)  # paired in generated order, before snapping moves anything
    if resnap:
        generated = {id(parts[0]): parts[0].time for parts in objects}  # the starts' times before resnapping
        if onset_score is not None and onset_snap_beats > 0:
            _snap_to_onsets(objects, timing, onset_score, onset_snap_beats)
        resnap_groups(groups, timing, exact=exact_snaps)
        _snap_starts(groups, timing)
        if separate_finest:
            _separate_starts(objects, generated, timing, separate_finest, mania=template.mode == 3)
    _follow_starts(objects)
    groups.sort(key=lambda g: g.time)
    objects = _drop_duplicates(sorted(objects, key=lambda parts: parts[0].time), template)
    kept = {id(g) for parts in objects for g in parts}
    groups = [g for g in groups if g.type not in OBJECT_PARTS or id(g) in kept]
    if template.mode in (0, 2):
        if snap_overlaps:
            _snap_overlaps(groups)
        _fill_positions(groups, random.Random(seed))
        unfit = [parts for parts in objects if parts[0].type == T.SLIDER_HEAD and not _fix_slider(parts, template)]
        groups = _as_circles(unfit, groups)
    beatmap = _trimmed_beatmap(groups, template)
    while outside := {round(o.time) for o in beatmap.hit_objects if o.kind == SLIDER and not object_in_playfield(o)}:
        # Last resort, as above: decoding the whole map can pair a slider's parts differently from the
        # per-slider build (overlapping sliders), and turning one into a circle can re-pair the next,
        # so check the result again until no slider is left outside.
        heads = [parts for parts in objects if parts[0].type == T.SLIDER_HEAD and round(parts[0].time) in outside]
        if not heads:
            break
        groups = _as_circles(heads, groups)
        beatmap = _trimmed_beatmap(groups, template)
    points = sorted(beatmap.timing_points, key=lambda p: (p.time, not p.uninherited))
    if template.mode != 3:  # mania keeps volumes on its notes
        points = _volumes_on_timing_points(beatmap.hit_objects, points)
    first_redline = next(p.time for p in points if p.uninherited)
    beatmap.timing_points = [p for p in points if p.uninherited or p.time >= first_redline]
    beatmap.hit_objects.sort(key=lambda o: o.time)
    beatmap.compute_end_times()
    return beatmap


def with_whole_pixels(beatmap: Beatmap) -> Beatmap:
    """The beatmap with every position and slider control point rounded to a whole osu! pixel.

    osu! reads them as integers (it drops the fraction), as mappers' files have them; jump easing and the
    refiner leave fractions, which would be cut off in the game and be 17-digit numbers in the file.
    """
    beatmap = copy.deepcopy(beatmap)
    for o in beatmap.hit_objects:
        points = [(o.x, o.y), *o.curve_points]
        whole = [(float(round(x)), float(round(y))) for x, y in points]
        # a point rounded onto the one before it would read as a red anchor (a corner): it goes instead
        kept = [0, *(i for i in range(1, len(points)) if whole[i] != whole[i - 1] or points[i] == points[i - 1])]
        if len(kept) == 1 and len(points) > 1:  # a slider keeps a control point, even on its head
            kept.append(len(points) - 1)
        (o.x, o.y), *o.curve_points = [whole[i] for i in kept]
        if o.kind == SLIDER and not object_in_playfield(o):  # a tight arc can swing out once rounded: keep it as it was
            (o.x, o.y), *o.curve_points = points
    return beatmap


def _with_redline(template: Beatmap) -> Beatmap:
    """The template, or a copy of it with a 120 BPM redline at 0 when it has none (osu! needs one)."""
    if any(p.uninherited for p in template.timing_points):
        return template
    template = copy.copy(template)
    template.timing_points = [*template.timing_points, TimingPoint(0.0, DEFAULT_BEAT_LENGTH)]
    return template


def _snap_starts(groups: list[Group], timing: Timing) -> None:
    """Put object starts on the timing: untagged ones, and tagged ones a resnap left off their redline's grid."""
    for g in groups:
        if g.type in STARTS and (not g.snap or not timing.snap_divisor(g.time, MAX_DIVISOR, SNAP_LENIENCY_MS)):
            g.time = _nearest_tick(g.time, timing)


def _snap_to_onsets(objects: list[list[Group]], timing: Timing, score: TickScore, radius_beats: float) -> None:
    """Each object with a snap tag moves, whole, to the free tick of its tag's grid within `radius_beats`
    of its start that `score` rates highest (the nearest of equals).

    The small model's times are no closer to human objects than random ones (15% within 20 ms on the
    osu! val maps, random 14%): its rhythm lives in the tags, and nearest-tick resnapping puts a
    tagged rhythm on the wrong ticks wherever the time is off by one. The audio knows which ticks are
    played. A tick an earlier object took (in mania: in its column) is not free, so no object is lost.
    """
    candidates = {}  # object index -> the ticks of its tag's grid within reach
    for k, parts in enumerate(objects):
        start = parts[0]
        if not start.snap:
            continue
        redline = timing.redline_at(start.time)
        beat = redline.clamped_beat_length
        step = beat / start.snap
        first = math.ceil((start.time - radius_beats * beat - redline.time) / step)
        last = math.floor((start.time + radius_beats * beat - redline.time) / step)
        candidates[k] = [float(round(redline.time + i * step)) for i in range(first, last + 1)]
    every = sorted({t for ticks in candidates.values() for t in ticks})
    scores = dict(zip(every, score(np.array(every)))) if every else {}  # one call: a learned score is slow per call
    taken: set[tuple[int | None, float]] = set()
    for k, ticks in candidates.items():
        start = objects[k][0]
        free = np.array([t for t in ticks if (start.column, t) not in taken])
        if len(free) == 0:
            continue
        best = free[np.lexsort((np.abs(free - start.time), -np.array([scores[t] for t in free])))[0]]
        shift = best - start.time
        for g in objects[k]:
            g.time += shift
        taken.add((start.column, best))


def _nearest_tick(time: float, timing: Timing) -> float:
    """The nearest 1/12 or 1/16 tick (so any of 1/1..1/4, 1/6, 1/8) of the governing redline, or the next redline."""
    return _ticks_around(time, timing, TICK_DIVISORS)[0]


def _ticks_around(time: float, timing: Timing, divisors: tuple[int, ...]) -> list[float]:
    """The ticks of `divisors` on either side of `time` on the governing redline, and the next redline,
    nearest first, in whole ms."""
    i = timing.redline_index(time)
    redline = timing.redlines[i]
    following = timing.redline_times[i + 1] if i + 1 < len(timing.redlines) else math.inf
    ticks = [following] if following < math.inf else []
    for divisor in divisors:
        step = redline.clamped_beat_length / divisor
        k = math.floor((time - redline.time) / step)
        ticks += [t for t in (redline.time + k * step, redline.time + (k + 1) * step) if t < following]
    return [float(round(t)) for t in sorted(ticks, key=lambda t: abs(t - time))]


def _separate_starts(objects: list[list[Group]], generated: dict[int, float], timing: Timing, finest: int,
                     mania: bool) -> None:
    """Starts that resnapping put on one tick (in mania: of one column) become one object each again.

    The small model's times are noisy (about +-60 ms) and most of its snap tags say 1/1, so two
    objects it wrote a half beat apart often snap to the same beat, and one was dropped as a
    duplicate: hard maps lost up to 40% of their objects. The start that moved least keeps the tick;
    each other one goes to the nearest free tick of its tag's grid halved, then quartered (no finer than
    1/`finest`), around its generated time; with none free it stays a duplicate. Starts generated less than
    `SEPARATE_MS` apart are one object written twice, and stay duplicates.
    """
    taken: dict[tuple[int | None, float], float] = {}  # (column, tick) -> generated time of its holder
    for start in sorted((parts[0] for parts in objects), key=lambda g: abs(g.time - generated[id(g)])):
        column, time = (start.column if mania else None), generated[id(start)]
        holder = taken.get((column, round(start.time)))
        if holder is not None and abs(holder - time) >= SEPARATE_MS and start.snap:
            divisors = tuple(d for d in (2 * start.snap, 4 * start.snap) if d <= finest)
            free = [t for t in _ticks_around(time, timing, divisors) if (column, t) not in taken] if divisors else []
            start.time = free[0] if free else start.time
        taken.setdefault((column, round(start.time)), time)


def _hit_objects(groups: list[Group]) -> list[list[Group]]:
    """The groups of each hit object, start first, in time order (paired as groups_to_beatmap pairs them)."""
    objects: list[list[Group]] = []
    open_objects: list[list[Group]] = []
    for g in groups:
        if g.type in STARTS:
            _unfinished_sliders_to_circles(open_objects)
            objects.append([g])
            if g.type != T.CIRCLE:
                open_objects.append(objects[-1])
            continue
        owner = _owner(g, open_objects)
        if owner is not None:
            owner.append(g)
            if g.type in ENDS:
                open_objects.remove(owner)
    _unfinished_sliders_to_circles(open_objects)
    return objects


def _unfinished_sliders_to_circles(open_objects: list[list[Group]]) -> None:
    """A slider still open when the next object starts never got its end (the model moved on): its head
    becomes a circle, so the onset stays, instead of taking a later slider's end across everything between."""
    for parts in [p for p in open_objects if p[0].type == T.SLIDER_HEAD]:
        parts[0].type = T.CIRCLE
        del parts[1:]
        open_objects.remove(parts)


def _owner(g: Group, open_objects: list[list[Group]]) -> list[Group] | None:
    """The open object a group continues: anchors join the newest slider, ends close the oldest start."""
    if g.type in ANCHOR_TYPES:
        candidates = [p for p in open_objects if p[0].type == T.SLIDER_HEAD][::-1]
    elif g.type == T.LAST_ANCHOR:
        candidates = [p for p in open_objects if p[0].type == T.SLIDER_HEAD and p[-1].type != T.LAST_ANCHOR]
    elif g.type == T.SLIDER_END:
        candidates = [p for p in open_objects if p[-1].type == T.LAST_ANCHOR]
    elif g.type == T.HOLD_NOTE_END:  # a newer hold in the same column replaces an unfinished one
        candidates = [p for p in open_objects if p[0].type == T.HOLD_NOTE and p[0].column == g.column][::-1]
    elif g.type in ENDS:
        candidates = [p for p in open_objects if p[0].type == ENDS[g.type]]
    else:
        return None
    return candidates[0] if candidates else None


def _follow_starts(objects: list[list[Group]]) -> None:
    """Anchors take their head's time and no part precedes its start: resnapping moves a head, not its anchors."""
    for start, *rest in objects:
        for g in rest:
            g.time = start.time if g.type in ANCHOR_TYPES else max(g.time, start.time)


def _drop_duplicates(objects: list[list[Group]], template: Beatmap) -> list[list[Group]]:
    """Finished objects, keeping the first of any that start at the same ms.

    In mania the rule is per column, and a note may not start inside a hold of its column.
    """
    mania, keys = template.mode == 3, template.keycount
    kept, taken, hold_ends = [], set(), {}
    for parts in objects:
        start = parts[0]
        if start.type != T.CIRCLE and parts[-1].type not in ENDS:
            continue  # never finished: groups_to_beatmap would drop it too
        time = round(start.time)
        column = min(max(start.column or 0, 0), keys - 1) if mania else None
        key = (column, time)
        if key in taken or (mania and time <= hold_ends.get(column, -math.inf)):
            continue
        taken.add(key)
        if start.type == T.HOLD_NOTE:
            hold_ends[column] = round(parts[-1].time)
        kept.append(parts)
    return kept


def _snap_overlaps(groups: list[Group]) -> None:
    """Objects within 3.8 px of an earlier one (1 s back at most) take its exact position: a stack, not a near miss."""
    recent: list[Group] = []
    for g in groups:
        if g.type not in OVERLAP_TYPES or g.x is None:
            continue
        recent = [r for r in recent if g.time - r.time <= OVERLAP_WINDOW_MS]
        nearest = min(recent, key=lambda r: math.dist((r.x, r.y), (g.x, g.y)), default=None)
        if nearest is not None and math.dist((nearest.x, nearest.y), (g.x, g.y)) < OVERLAP_PX:
            g.x, g.y = nearest.x, nearest.y
        recent.append(g)


def _fill_positions(groups: list[Group], rng: random.Random) -> None:
    """Give every positioned group a point on the playfield.

    A distance without a position becomes a seeded random point at that distance from the
    previous object; no distance either keeps the previous position. Spinners recentre.
    """
    previous = CENTRE
    for g in groups:
        if g.type in (T.SPINNER, T.SPINNER_END):
            previous = CENTRE
        if g.type not in POSITIONED:
            continue
        if g.x is None:
            g.x, g.y = previous if g.distance is None else _point_at_distance(previous, g.distance, rng)
        g.x, g.y = min(max(g.x, 0.0), WIDTH), min(max(g.y, 0.0), HEIGHT)
        previous = (g.x, g.y)


def _point_at_distance(previous: tuple[float, float], distance: float, rng: random.Random) -> tuple[float, float]:
    """One of 500 directions at `distance` px that stays on the playfield, picked by `rng`; else a corner."""
    px, py = previous
    circle = [(px + distance * math.cos(a), py + distance * math.sin(a))
              for a in (2 * math.pi * k / CIRCLE_ANGLES for k in range(CIRCLE_ANGLES))]
    inside = [(x, y) for x, y in circle if 0 <= x <= WIDTH and 0 <= y <= HEIGHT]
    if inside:
        return rng.choice(inside)
    return (WIDTH, HEIGHT) if px + py > (WIDTH + HEIGHT) / 2 else (0.0, 0.0)


def _fix_slider(parts: list[Group], template: Beatmap) -> bool:
    """Make the path as long as the slider's SV and duration need, then keep the ball inside the playfield.

    Length needed = SV * span * 100 / beat length * SM (what groups_to_beatmap writes). A path
    far too short gets a lower SV; one up to 1.5x too short gets its control points stretched.
    False when the parts make no slider, when resnapping put its end (nearly) on its head (under 1/16 beat a
    span: a slider of a pixel or less, a circle with a tail on top of it), or when it cannot fit on the
    playfield even at the lowest SV.
    """
    head = parts[0]
    placed = head.x, head.y
    slider = _built_slider(parts, template)
    end = next((g.time for g in reversed(parts) if g.type == T.SLIDER_END), None)
    if slider is None:
        return False
    shortest_span = template.timing.beat_length_at(head.time) / MIN_SLIDER_DIVISOR - 1
    if end is not None and (end - head.time) / slider.slides < shortest_span:
        return False
    curve = slider.path().calculated_length
    if curve > 0 and slider.length > LENGTH_SLACK * curve:
        head.scroll_speed = _scaled_sv(head, curve / slider.length, round)
        slider = _built_slider(parts, template)
    if curve > 0 and slider.length > curve:
        _scale_control_points(parts, slider.length / curve)
    _keep_inside(parts, template)
    slider = _built_slider(parts, template)
    if slider is not None and object_in_playfield(_trimmed(slider)):
        return True
    head.x, head.y = placed  # where the model put it, for the circle that replaces it
    return False


def _as_circles(sliders: list[list[Group]], groups: list[Group]) -> list[Group]:
    """Turn each slider into a circle at its head, dropping its other parts."""
    dropped = set()
    for parts in sliders:
        head = parts[0]
        head.type = T.CIRCLE
        dropped.update(id(g) for g in parts[1:])
    return [g for g in groups if id(g) not in dropped]


def _scaled_sv(head: Group, factor: float, rounding) -> float:
    """The head's SV times `factor`, rounded (by `rounding`) to the 0.05 steps mappers use, at least 0.1."""
    return max(round(rounding((head.scroll_speed or 1.0) * factor / SV_STEP + 1e-9) * SV_STEP, 2), MIN_SV)


def _built_slider(parts: list[Group], template: Beatmap) -> HitObject | None:
    """The slider groups_to_beatmap makes from one finished slider's groups (None if they make none)."""
    objects = groups_to_beatmap(parts, template).hit_objects
    return objects[0] if objects and objects[0].kind == SLIDER else None


def _trimmed(slider: HitObject) -> HitObject:
    """The slider with its control points ending where its ball path ends (trim_to_length), where its path runs
    further past the end than mappers' do."""
    if slider.path().calculated_length <= MAX_PATH_EXCESS * slider.length:
        return slider
    slider.curve_type, points = trim_to_length(slider.curve_type, [(slider.x, slider.y), *slider.curve_points],
                                               slider.length)
    slider.curve_points = points[1:]
    return slider


def _trimmed_beatmap(groups: list[Group], template: Beatmap) -> Beatmap:
    """groups_to_beatmap, with every slider trimmed: the anchors past its end are not written."""
    beatmap = groups_to_beatmap(groups, template)
    for o in beatmap.hit_objects:
        if o.kind == SLIDER:
            _trimmed(o)
    return beatmap


def _scale_control_points(parts: list[Group], factor: float) -> None:
    """Scale the anchors and last anchor about the head: the path length scales by the same factor."""
    hx, hy = parts[0].x, parts[0].y
    for g in parts[1:]:
        if g.type in ANCHOR_TYPES or g.type == T.LAST_ANCHOR:
            g.x, g.y = hx + (g.x - hx) * factor, hy + (g.y - hy) * factor


def _keep_inside(parts: list[Group], template: Beatmap) -> None:
    """Shrink the control points toward the head until those up to the ball's end and the ball path stay on
    the playfield (anchors past the end are not written).

    When the curve is inside but osu!'s straight extension of a too-short path is not, the SV
    comes down so the ball stops on the curve; at the lowest SV the whole slider moves back in.
    """
    head = parts[0]
    for _ in range(MAX_FIT_STEPS):
        slider = _built_slider(parts, template)
        if slider is None:
            return
        slider = _trimmed(slider)
        points = [(slider.x, slider.y), *slider.curve_points]
        curve = SliderPath(slider.curve_type, points)
        ball = slider.path().polyline
        if not inside_playfield(np.vstack((points, curve.polyline))):
            _scale_control_points(parts, SHRINK)
        elif inside_playfield(ball):
            return
        elif (head.scroll_speed or 1.0) > MIN_SV:
            head.scroll_speed = _scaled_sv(head, curve.calculated_length / slider.length, math.floor)
        else:
            low, high = ball.min(axis=0), ball.max(axis=0)
            dx = max(-low[0], 0.0) + min(WIDTH - high[0], 0.0)
            dy = max(-low[1], 0.0) + min(HEIGHT - high[1], 0.0)
            for g in parts:
                g.x, g.y = g.x + dx, g.y + dy
            return


def _volumes_on_timing_points(objects: list[HitObject], points: list[TimingPoint]) -> list[TimingPoint]:
    """Move each object's sample volume onto the timing point governing it, where std/taiko/catch maps keep it.

    A greenline copying the current SV and kiai is added at the object when the volume changes;
    objects before the first timing point keep their own volume.
    """
    result: list[TimingPoint] = []
    i = 0
    for obj in sorted(objects, key=lambda o: o.time):
        while i < len(points) and points[i].time <= obj.time:
            result.append(copy.copy(points[i]))
            i += 1
        if not result:
            continue
        volume, obj.sample.volume = obj.sample.volume, 0
        active = result[-1]
        if volume <= 0 or volume == active.volume:
            continue
        if not active.uninherited and active.time == obj.time:
            active.volume = volume
        else:
            result.append(dataclasses.replace(active, time=float(obj.time), uninherited=False, volume=volume,
                                              beat_length=-100.0 if active.uninherited else active.beat_length,
                                              effects=active.effects & 1))
    return result + [copy.copy(p) for p in points[i:]]

"""Circles on the beats a mapper would play: where the model left them empty, and instead of circles on silence.

The small generator knows where the beats are better than which of them a mapper plays. On the 54
val osu! maps its circles on ticks where the song is silent (onset strength under 0.05 of a strong
onset) match a human object within 20 ms 13% of the time (all its objects: 52%), while the empty
1/2-beat ticks with a strong onset (0.3 and up) match 37-43% of the time. A map scores better, and
follows the music more closely, with the second kind than the first.

So every time gets a score (postprocess/rhythm.py: the rhythm model's chance that a mapper plays it,
or the onset strength on it over a strong onset's). Circles scoring under `drop_below` are taken out,
then every tick of the map's 1/`divisor` grid between its first and last object is a candidate (only
whole beats where the target is under `whole_beats_below` objects a beat, as easy maps are): the best
scored of at least `floor` get a circle first, each at least `min_gap_ms` from every object and
outside sliders and spinners (mania: only notes' starts), until the map has its old number of objects
or `target` objects per second, whichever is more. Where too few ticks are free, the best scored
circles taken out come back (those not within `min_gap_ms` of a new one).
Sliders, spinners and holds are never moved: their shape is the model's.

A new circle goes on the straight line from the previous object's end to the next object's start, as
far along as it is in time (a taiko don; a mania note in the column free longest); a circle taken out
whose own tick is chosen again comes back as it was.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from tokenizer.osu_file import CIRCLE, Beatmap, HitObject, column_x, mania_column

from .rhythm import TickScore


@dataclass
class OnsetFill:
    """How far to fill: `target` objects/s over the song; candidates every 1/`divisor` beat."""
    target: float
    min_gap_ms: float = 100.0
    floor: float = 0.3
    divisor: int = 2
    drop_below: float = 0.0  # circles on ticks weaker than this are taken out first (their number is filled again)
    whole_beats_below: float = 0.0  # at fewer target objects a beat than this, candidates are whole beats only


def fill_onsets(beatmap: Beatmap, score: TickScore, fill: OnsetFill, song_ms: float, count: int | None = None) -> Beatmap:
    """`beatmap` with circles added on its best-scored unmapped ticks (changed in place and returned), up to
    `count` objects (default: `fill.target` objects/s over the song).

    With `fill.drop_below`, circles on weaker ticks are taken out first and as many strong ticks are
    filled again; where too few strong ticks are free, the strongest of those circles come back.
    """
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    if len(objects) < 2:
        return beatmap
    wanted = max(math.floor(fill.target * song_ms / 1000) if count is None else count, len(objects))
    on_tick = score(np.array([o.time for o in objects]))
    weak = [(s, o) for s, o in zip(on_tick, objects) if o.kind == CIRCLE and s < fill.drop_below]
    kept = [o for s, o in zip(on_tick, objects) if not (o.kind == CIRCLE and s < fill.drop_below)]
    if len(kept) < 2:
        kept, weak = objects, []
    span = (objects[0].time, max(o.finish for o in objects))
    taken = _strong_free_ticks(beatmap, score, kept, span, wanted - len(kept), fill)
    free = [o for _, o in sorted(weak, key=lambda pair: -pair[0]) if not _near(taken, o.time, fill.min_gap_ms)]
    back = free[:max(wanted - len(kept) - len(taken), 0)]
    kept_times = [o.time for o in kept]
    own_tick = {o.time: o for _, o in weak}  # a circle whose own tick wins again returns as itself (its place, its column)
    added = [own_tick.get(t) or _circle(beatmap, kept, kept_times, t, fill.min_gap_ms) for t in taken]
    beatmap.hit_objects = sorted(kept + back + [o for o in added if o is not None], key=lambda o: o.time)
    times = [o.time for o in beatmap.hit_objects]
    returned = {id(o) for o in back + added}
    for _, o in weak:  # a combo that began on a circle taken out begins on the next object
        i = bisect.bisect_right(times, o.time)
        if o.new_combo and id(o) not in returned and i < len(times):
            beatmap.hit_objects[i].new_combo = True
    return beatmap


def fill_chords(beatmap: Beatmap, score: TickScore, count: int, min_gap_ms: float) -> Beatmap:
    """A mania `beatmap` with a second note at the times of its single notes, best scored first, up to `count`
    objects (changed in place and returned): each in the column free longest, of those with no note from
    `min_gap_ms` before to `min_gap_ms` after it. Hard human mania maps reach their star rating with chords as
    much as with faster rhythm."""
    keys = beatmap.keycount
    starts: list[list[float]] = [[] for _ in range(keys)]  # per column, sorted (a column's notes never overlap)
    ends: list[list[float]] = [[] for _ in range(keys)]
    for o in sorted(beatmap.hit_objects, key=lambda o: o.time):
        starts[mania_column(o.x, keys)].append(o.time)
        ends[mania_column(o.x, keys)].append(o.finish)
    unique, counts = np.unique([o.time for o in beatmap.hit_objects], return_counts=True)
    single = unique[counts == 1]
    added = []
    for time in single[np.argsort(-score(single), kind="stable")] if len(single) else []:
        if len(beatmap.hit_objects) + len(added) >= count:
            break
        column = _chord_column(starts, ends, float(time), min_gap_ms)
        if column is not None:
            i = bisect.bisect_right(starts[column], time)
            starts[column].insert(i, float(time))
            ends[column].insert(i, float(time))
            added.append(HitObject(column_x(column, keys), 192.0, float(time), CIRCLE))
    beatmap.hit_objects = sorted(beatmap.hit_objects + added, key=lambda o: o.time)
    return beatmap


def _chord_column(starts: list[list[float]], ends: list[list[float]], time: float, gap: float) -> int | None:
    """The column whose last note ended longest before `time`, of those with no note within `gap` of it."""
    best, best_end = None, math.inf
    for column, (column_starts, column_ends) in enumerate(zip(starts, ends)):
        i = bisect.bisect_right(column_starts, time + gap)  # the last note starting up to `gap` after
        last_end = column_ends[i - 1] if i else -math.inf
        if last_end <= time - gap and last_end < best_end:
            best, best_end = column, last_end
    return best


def _strong_free_ticks(beatmap: Beatmap, score: TickScore, objects: list[HitObject], span: tuple[float, float], count: int,
                       fill: OnsetFill) -> list[float]:
    """Up to `count` ticks in `span` (the map's, before any circle was taken out), best scored first, that score at least
    `fill.floor` and `fill.min_gap_ms` away from the objects and each other; sorted."""
    if count <= 0:
        return []
    per_beat = fill.target * beatmap.timing.median_beat_length(span[1]) / 1000
    divisor = 1 if per_beat < fill.whole_beats_below else fill.divisor
    ticks = beatmap.timing.ticks(divisor, *span)
    scores = score(ticks)
    mania = beatmap.mode == 3  # a hold keeps only its own column busy
    busy = _union([(o.time - fill.min_gap_ms, (o.time if mania else o.finish) + fill.min_gap_ms) for o in objects])
    taken: list[float] = []
    for k in np.argsort(-scores, kind="stable"):
        if len(taken) == count or scores[k] < fill.floor:
            break
        tick = float(ticks[k])
        if not _inside(busy, tick) and not _near(taken, tick, fill.min_gap_ms):
            bisect.insort(taken, tick)
    return taken


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The sorted, disjoint spans covering the same times (mania holds overlap other columns' notes)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _inside(spans: list[tuple[float, float]], time: float) -> bool:
    """Whether `time` lies in one of the sorted, disjoint (start, end) spans."""
    i = bisect.bisect_right(spans, (time, math.inf))
    return i > 0 and time <= spans[i - 1][1]


def _near(times: list[float], time: float, gap: float) -> bool:
    i = bisect.bisect_left(times, time)
    return any(abs(times[j] - time) < gap for j in (i - 1, i) if 0 <= j < len(times))


def _circle(beatmap: Beatmap, objects: list[HitObject], times: list[float], time: float, gap: float) -> HitObject | None:
    """A plain circle at `time` between the objects around it (see the module's docstring), or on the nearest
    one's position before the first or after the last; in mania None when every column is held or was
    released less than `gap` ago."""
    if beatmap.mode == 3:
        x = _free_column_x(beatmap, objects, time, gap)
        return None if x is None else HitObject(x, 192.0, time, CIRCLE)
    i = bisect.bisect_left(times, time)
    if i == 0:
        return HitObject(objects[0].x, objects[0].y, time, CIRCLE)
    if i == len(objects):
        return HitObject(*objects[-1].end_position, time, CIRCLE)
    before, after = objects[i - 1], objects[i]
    x0, y0 = before.end_position
    share = (time - before.finish) / max(after.time - before.finish, 1.0)
    return HitObject(float(round(x0 + share * (after.x - x0))), float(round(y0 + share * (after.y - y0))), time, CIRCLE)


def _free_column_x(beatmap: Beatmap, objects: list[HitObject], time: float, gap: float) -> float | None:
    """The x of the mania column whose last note ended longest before `time`, at least `gap` before it."""
    keys = beatmap.keycount
    last_end = [-math.inf] * keys
    for o in objects:
        if o.time > time:
            break
        column = mania_column(o.x, keys)
        last_end[column] = max(last_end[column], o.finish)
    column = min(range(keys), key=lambda c: last_end[c])
    return column_x(column, keys) if last_end[column] <= time - gap else None

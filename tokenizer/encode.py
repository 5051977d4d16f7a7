"""Beatmap -> events, for all four modes (reference notes §2.6, v29 conventions).

A beatmap becomes per-context lists of Groups with absolute times (timing, kiai, map, sv); a
window of groups becomes events with TIME_SHIFT relative to the window start, types first.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterator

from .events import ContextType, Event, EventType, Group
from .osu_file import HOLD, SLIDER, SPINNER, Beatmap, HitObject, mania_column
from .timing import Timing
from .vocabulary import Tokenizer, TokenizerConfig

PLAYFIELD_CENTRE = (256.0, 192.0)
SAMPLE_LOOKUP_LEAD_MS = 5  # osu! reads an object's sample settings 5 ms after it
SAMPLE_SETS = {"normal": 1, "soft": 2, "drum": 3}
SCROLL_SPEED_EPSILON = 1e-3
T = EventType


def beatmap_to_groups(beatmap: Beatmap, config: TokenizerConfig) -> dict[ContextType, list[Group]]:
    """Every context stream of a beatmap, each sorted by time (stable: same-time groups keep order)."""
    timing = beatmap.timing
    end = song_end(beatmap)
    return {
        ContextType.TIMING: timing_groups(timing, end, config),
        ContextType.KIAI: _kiai_groups(beatmap, timing),
        ContextType.MAP: _MapEncoder(beatmap, timing, config).encode(),
        ContextType.SV: _sv_groups(beatmap, timing, end) if beatmap.mode == 3 else [],
    }


def song_end(beatmap: Beatmap) -> float:
    return max((o.finish for o in beatmap.hit_objects), default=0.0)


def groups_to_events(groups: list[Group], tokenizer: Tokenizer, window_start: float, hitsounds: bool = True) -> list[Event]:
    """Serialise groups (already cut to one window) types first, times relative to `window_start`."""
    has = tokenizer.event_range.__contains__
    events: list[Event] = []
    for g in groups:
        events.append(Event(g.type, g.value))
        events.append(tokenizer.clip(T.TIME_SHIFT, int((g.time - window_start) * 0.1)))
        if g.snap is not None:
            events.append(Event(T.SNAPPING, g.snap))
        if g.distance is not None and has(T.DISTANCE):
            events.append(tokenizer.clip(T.DISTANCE, g.distance))
        if g.x is not None and tokenizer.config.add_positions:
            events += tokenizer.position_events(g.x, g.y)
        if g.column is not None and has(T.COLUMN):
            events.append(tokenizer.clip(T.COLUMN, g.column))
        if g.new_combo:
            events.append(Event(T.NEW_COMBO))
        if g.scroll_speed is not None and has(T.SCROLL_SPEED):
            events.append(tokenizer.clip(T.SCROLL_SPEED, round(min(max(g.scroll_speed, 0.01), 10.0) * 100)))
        if hitsounds:
            for value, volume in g.hitsounds:
                events += [Event(T.HITSOUND, value), tokenizer.clip(T.VOLUME, volume)]
    return events


def tokenize_windows(beatmap: Beatmap, tokenizer: Tokenizer) -> Iterator[tuple[ContextType, float, list[int]]]:
    """(context, window start, ids) for consecutive, non-overlapping windows over every context stream."""
    window = tokenizer.config.window_ms
    for context, groups in beatmap_to_groups(beatmap, tokenizer.config).items():
        if not groups:
            continue
        times = [g.time for g in groups]
        start = math.floor(times[0] / window) * window
        while start <= times[-1]:
            events = groups_to_events(window_slice(groups, times, start, start + window), tokenizer, start)
            yield context, start, tokenizer.encode_many(events)
            start += window


def window_slice(groups: list[Group], times: list[float], start: float, end: float) -> list[Group]:
    """The groups with start <= time < end; `times` is [g.time for g in groups], sorted."""
    return groups[bisect.bisect_left(times, start):bisect.bisect_left(times, end)]


def hitsound_value(hitsound: int, normal_set: int, addition_set: int) -> int:
    """Whistle/finish/clap bits and the two sample sets (1-3) in one 0..72 value."""
    normal_set = normal_set if 1 <= normal_set <= 3 else 1
    addition_set = addition_set if 1 <= addition_set <= 3 else 1
    return (hitsound & 14) // 2 + 8 * (normal_set - 1) + 24 * (addition_set - 1)


# -- conditioning statistics ----------------------------------------------------------------------
def is_hitsounded(beatmap: Beatmap) -> bool:
    return any(o.hitsound & 14 or any(s & 14 for s in o.edge_sounds) for o in beatmap.hit_objects)


def hold_note_ratio(beatmap: Beatmap) -> float:
    return sum(o.kind == HOLD for o in beatmap.hit_objects) / len(beatmap.hit_objects)


def scroll_speed_ratio(beatmap: Beatmap) -> float:
    """Scroll-speed changes per distinct object time (BPM-normalised for mania)."""
    timing = beatmap.timing
    if beatmap.mode == 3:
        changes = len(_sv_groups(beatmap, timing, song_end(beatmap)))
    else:
        speeds = [timing.slider_velocity_at(t) for t in sorted({o.time for o in beatmap.hit_objects})]
        changes = sum(abs(a - b) > SCROLL_SPEED_EPSILON for a, b in zip(speeds, speeds[1:]))
    return changes / len({o.time for o in beatmap.hit_objects})


# -- streams ----------------------------------------------------------------------------------------
def timing_groups(timing: Timing, end: float, config: TokenizerConfig) -> list[Group]:
    groups = []
    for time, k, meter in timing.beats(end):
        kind = T.TIMING_POINT if k == 0 and config.add_timing_points else T.MEASURE if k % meter == 0 else T.BEAT
        groups.append(Group(kind, time))
    return groups


def _kiai_groups(beatmap: Beatmap, timing: Timing) -> list[Group]:
    state_at: dict[float, bool] = {}
    for point in timing.points:  # the last point at a time decides
        state_at[point.time] = point.kiai
    groups, kiai = [], False
    for time, state in state_at.items():
        if state != kiai:
            kiai = state
            groups.append(Group(T.KIAI, time, value=int(state), snap=timing.snap_divisor(time)))
    return groups


def mania_scroll_speeds(timing: Timing, end: float) -> list[tuple[float, float]]:
    """(time, BPM-normalised scroll speed) at each timing-point time."""
    median = timing.median_beat_length(end)
    times = sorted({p.time for p in timing.points})
    return [(t, timing.slider_velocity_at(t) * median / timing.beat_length_at(t)) for t in times]


def _sv_groups(beatmap: Beatmap, timing: Timing, end: float) -> list[Group]:
    groups, speed = [], 1.0
    for time, new_speed in mania_scroll_speeds(timing, end):
        if abs(new_speed - speed) > SCROLL_SPEED_EPSILON:
            speed = new_speed
            groups.append(Group(T.SCROLL_SPEED_CHANGE, time, snap=timing.snap_divisor(time), scroll_speed=speed))
    return groups


class _MapEncoder:
    """Hit objects -> groups, tracking the previous position for distances."""

    def __init__(self, beatmap: Beatmap, timing: Timing, config: TokenizerConfig):
        self.beatmap, self.timing, self.config = beatmap, timing, config
        self.mode = beatmap.mode
        self.default_set = SAMPLE_SETS.get(beatmap.general.get("SampleSet", "Normal").lower(), 1)
        self.previous = PLAYFIELD_CENTRE
        self.groups: list[Group] = []

    def encode(self) -> list[Group]:
        for obj in sorted(self.beatmap.hit_objects, key=lambda o: o.time):
            if obj.kind == SLIDER:
                self._slider(obj)
            elif obj.kind == SPINNER:
                self._spinner(obj)
            elif obj.kind == HOLD:
                self._hold(obj)
            else:
                self._circle(obj)
        self.groups.sort(key=lambda g: g.time)
        return self.groups

    def _add(self, kind: EventType, time: float, obj: HitObject | None = None, position: tuple[float, float] | None = None,
             snap: bool = True, new_combo: bool = False, scroll_speed: float | None = None,
             hitsounds: list[list[int]] | None = None) -> Group:
        time = round(time)  # osu! times are whole ms; float slider ends must not sort after a same-ms head
        group = Group(kind, time, snap=self.timing.snap_divisor(time) if snap else None,
                      new_combo=new_combo and self.mode in (0, 2), scroll_speed=scroll_speed, hitsounds=hitsounds or [])
        if obj is not None and self.mode == 3:
            group.column = mania_column(obj.x, self.beatmap.keycount)
        if position is not None and self.mode in (0, 2):
            group.x, group.y = position
            group.distance = min(round(math.dist(position, self.previous)), 640)
            self.previous = position
        self.groups.append(group)
        return group

    def _sound(self, time: float, bits: int, normal_set: int, addition_set: int, volume: int) -> list[int]:
        """[hitsound value, volume] with osu!'s fallbacks: object sets, then the timing point, then [General]."""
        point = self.timing.point_at(time + SAMPLE_LOOKUP_LEAD_MS)
        normal = normal_set or (point.sample_set if point else 0) or self.default_set
        addition = addition_set or normal
        volume = volume or (point.volume if point else 100)
        return [hitsound_value(bits, normal, addition), min(max(volume, 0), 100)]

    def _object_sound(self, obj: HitObject, time: float) -> list[int]:
        s = obj.sample
        return self._sound(time, obj.hitsound, s.normal_set, s.addition_set, s.volume)

    def _taiko_speed(self, time: float) -> float | None:
        return self.timing.slider_velocity_at(time) if self.mode == 1 else None

    def _circle(self, obj: HitObject) -> None:
        self._add(T.CIRCLE, obj.time, obj, (obj.x, obj.y), new_combo=obj.new_combo,
                  scroll_speed=self._taiko_speed(obj.time), hitsounds=[self._object_sound(obj, obj.time)])

    def _spinner(self, obj: HitObject) -> None:
        if self.mode == 1:
            self._add(T.DENDEN, obj.time, scroll_speed=self._taiko_speed(obj.time), hitsounds=[self._object_sound(obj, obj.time)])
            self._add(T.DENDEN_END, obj.end_time)
            return
        self._add(T.SPINNER, obj.time, new_combo=obj.new_combo)
        self._add(T.SPINNER_END, obj.end_time, hitsounds=[self._object_sound(obj, obj.end_time)])
        self.previous = PLAYFIELD_CENTRE

    def _hold(self, obj: HitObject) -> None:
        self._add(T.HOLD_NOTE, obj.time, obj, hitsounds=[self._object_sound(obj, obj.time)])
        self._add(T.HOLD_NOTE_END, obj.end_time, obj)

    def _edge_sound(self, obj: HitObject, edge: int, time: float) -> list[int]:
        normal, addition = obj.edge_sets[edge]
        s = obj.sample
        return self._sound(time, obj.edge_sounds[edge], normal or s.normal_set, addition or s.addition_set, s.volume)

    def _slider(self, obj: HitObject) -> None:
        if self.mode == 1:
            self._add(T.DRUMROLL, obj.time, scroll_speed=self._taiko_speed(obj.time), hitsounds=[self._object_sound(obj, obj.time)])
            self._add(T.DRUMROLL_END, obj.end_time)
            return
        span = obj.span_duration
        sv = self.timing.slider_velocity_at(obj.time) if self.config.add_sv else None
        self._add(T.SLIDER_HEAD, obj.time, obj, (obj.x, obj.y), new_combo=obj.new_combo, scroll_speed=sv,
                  hitsounds=[self._edge_sound(obj, 0, obj.time)])
        points = [(obj.x, obj.y), *obj.curve_points]
        anchors = slider_anchors(obj.curve_type, points)
        for kind, point in anchors:  # at the head's time, so they stay next to it after sorting
            self._add(kind, obj.time, obj, point, snap=False)
        body = self._object_sound(obj, obj.time + 1)
        repeats = [self._edge_sound(obj, edge, obj.time + edge * span) for edge in range(1, obj.slides)]
        self._add(T.LAST_ANCHOR, obj.time + span, obj, points[-1], hitsounds=[body, *repeats])
        tail = obj.path().position_at(1.0)
        self._add(T.SLIDER_END, obj.end_time, obj, tail, hitsounds=[self._edge_sound(obj, obj.slides, obj.end_time)])


def slider_anchors(curve_type: str, points: list[tuple[float, float]]) -> list[tuple[EventType, tuple[float, float]]]:
    """Anchor type and position for each interior control point (head and last point excluded).

    Linear curves give red anchors, catmull and perfect give their own types; in a bezier a
    point repeated by the next one is a red anchor (its second copy is dropped), others bezier.
    """
    anchors = []
    for i in range(1, len(points) - 1):
        point, before, after = points[i], points[i - 1], points[i + 1]
        if curve_type == "L":
            kind = T.RED_ANCHOR
        elif curve_type == "C":
            kind = T.CATMULL_ANCHOR
        elif curve_type == "P" and len(points) == 3:
            kind = T.PERFECT_ANCHOR
        elif point == before:
            continue
        else:
            kind = T.RED_ANCHOR if point == after else T.BEZIER_ANCHOR
        anchors.append((kind, point))
    return anchors

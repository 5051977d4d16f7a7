"""Events -> beatmap: regroup decoded events and rebuild playable hit objects and timing points.

Times decode to window start + 10*v + 5 ms (the half step removes truncation bias) and are then
resnapped to their SNAPPING divisor on the given redlines (reference notes §2.8 and §6).
"""
from __future__ import annotations

import copy
import math

from .encode import song_end
from .events import ANCHOR_TYPES, GROUP_TYPES, Event, EventType, Group
from .osu_file import CIRCLE, HOLD, SLIDER, SPINNER, Beatmap, HitObject, HitSample, column_x
from .timing import Timing, TimingPoint
from .vocabulary import Tokenizer

T = EventType
TIME_STEP_MS = 10
HALF_STEP_MS = 5
CHANGE_ORDER = {"kiai": 0, "redline": 1, "speed": 2}  # at one time: a greenline must follow the redline it overrides
CURVE_LETTERS = {T.BEZIER_ANCHOR: "B", T.PERFECT_ANCHOR: "P", T.CATMULL_ANCHOR: "C", T.RED_ANCHOR: "B"}


def events_to_groups(events: list[Event], tokenizer: Tokenizer, window_start: float) -> list[Group]:
    """Regroup one window's events (types first); attributes before the first type token are ignored."""
    groups: list[Group] = []
    group = None
    for event in events:
        kind, value = event.type, event.value
        if kind in GROUP_TYPES:
            group = Group(kind, value=value)
            groups.append(group)
        elif group is None:
            continue
        elif kind == T.TIME_SHIFT:
            group.time = window_start + TIME_STEP_MS * value + HALF_STEP_MS
        elif kind == T.SNAPPING:
            group.snap = value
        elif kind == T.DISTANCE:
            group.distance = value
        elif kind == T.POS:
            group.x, group.y = tokenizer.cell_position(value)
        elif kind == T.POS_X:
            group.x = value * tokenizer.config.position_precision
        elif kind == T.POS_Y:
            group.y = value * tokenizer.config.position_precision
        elif kind == T.POS_REFINE and group.x is not None:
            group.x, group.y = tokenizer.refined_position(group.x, group.y, value)
        elif kind == T.COLUMN:
            group.column = value
        elif kind == T.NEW_COMBO:
            group.new_combo = True
        elif kind == T.SCROLL_SPEED:
            group.scroll_speed = max(value, 1) / 100
        elif kind == T.HITSOUND:
            group.hitsounds.append([value, 0])
        elif kind == T.VOLUME and group.hitsounds:
            group.hitsounds[-1][1] = value
    previous_time = window_start
    for group in groups:  # a group the model left untimed sits with the one before it
        group.time = previous_time if group.time is None else group.time
        previous_time = group.time
    return groups


def resnap_groups(groups: list[Group], timing: Timing, exact: bool = True) -> None:
    """Move each group with a snap divisor onto its tick (`exact`: see Timing.resnap); anchors carry
    their head's time and move with it."""
    head_move = None  # (time before, time after) of the last slider head
    for group in groups:
        if group.type in ANCHOR_TYPES and head_move is not None and group.time == head_move[0]:
            group.time = head_move[1]
        elif group.snap:
            before = group.time
            group.time = timing.resnap(group.time, group.snap, exact=exact)
            if group.type == T.SLIDER_HEAD:
                head_move = (before, group.time)


def decode_hitsound(value: int) -> tuple[int, int, int]:
    """(hitsound bits, normal set, addition set) of a HITSOUND value."""
    return (value % 8) * 2, (value // 8) % 3 + 1, (value // 24) % 3 + 1


def groups_to_beatmap(groups: list[Group], template: Beatmap) -> Beatmap:
    """A beatmap with `template`'s settings and redlines, and objects and greenlines from `groups`.

    Groups must already be resnapped. Slider lengths come from their SV and span duration;
    SV, taiko/mania scroll speeds and kiai become greenlines.
    """
    redlines = [p for p in template.timing_points if p.uninherited]
    beatmap = copy.copy(template)
    beatmap.timing_points, beatmap.hit_objects, beatmap.warnings = redlines, [], []
    builder = _ObjectBuilder(beatmap, Timing(redlines))
    for group in sorted(groups, key=lambda g: g.time):
        builder.add(group)
    beatmap.hit_objects = sorted(builder.objects, key=lambda o: o.time)
    beatmap.timing_points = _with_greenlines(redlines, builder.speed_requests, builder.kiai_toggles, beatmap)
    beatmap.compute_end_times()
    return beatmap


class _ObjectBuilder:
    def __init__(self, beatmap: Beatmap, timing: Timing):
        self.beatmap, self.timing, self.mode = beatmap, timing, beatmap.mode
        self.objects: list[HitObject] = []
        self.speed_requests: list[tuple[float, float]] = []
        self.kiai_toggles: list[tuple[float, bool]] = []
        self.previous = (256.0, 192.0)
        self.sliders: list[list[Group]] = []  # open sliders (2B maps overlap them): head, anchors, last anchor
        self.open: dict[EventType, list[Group]] = {T.SPINNER: [], T.DRUMROLL: [], T.DENDEN: []}  # starts awaiting an end
        self.holds: dict[int, Group] = {}

    def add(self, g: Group) -> None:
        kind = g.type
        if kind in (T.BEAT, T.MEASURE, T.TIMING_POINT):
            return
        if kind == T.KIAI:
            self.kiai_toggles.append((g.time, bool(g.value)))
        elif kind == T.SCROLL_SPEED_CHANGE and g.scroll_speed is not None:
            self.speed_requests.append((g.time, g.scroll_speed))
        elif kind == T.CIRCLE:
            self._request_speed(g)
            self.objects.append(self._object(CIRCLE, g))
        elif kind in (T.SPINNER, T.DRUMROLL, T.DENDEN):
            self._request_speed(g)
            self.open[kind].append(g)
        elif kind in (T.SPINNER_END, T.DENDEN_END):
            self._spinner(self._close(T.SPINNER if kind == T.SPINNER_END else T.DENDEN), g)
        elif kind == T.DRUMROLL_END:
            self._drumroll(self._close(T.DRUMROLL), g)
        elif kind == T.HOLD_NOTE and g.column is not None:
            self.holds[g.column] = g
        elif kind == T.HOLD_NOTE_END and g.column in self.holds:
            start = self.holds.pop(g.column)
            self.objects.append(self._object(HOLD, start, end_time=g.time))
        elif kind == T.SLIDER_HEAD:
            self.sliders.append([g])
        elif kind in ANCHOR_TYPES and self.sliders:
            self.sliders[-1].append(g)  # anchors follow their own head
        elif kind == T.LAST_ANCHOR:
            parts = self._owner(g, [s for s in self.sliders if s[-1].type != T.LAST_ANCHOR and s[0].time <= g.time])
            if parts is not None:
                parts.append(g)
        elif kind == T.SLIDER_END:
            parts = self._owner(g, [s for s in self.sliders if s[-1].type == T.LAST_ANCHOR])
            if parts is not None:
                self.sliders.remove(parts)
                self._slider(parts, g)

    def _close(self, kind: EventType) -> Group | None:
        """The oldest open start of this kind (spinners can overlap in odd maps)."""
        return self.open[kind].pop(0) if self.open[kind] else None

    @staticmethod
    def _owner(g: Group, candidates: list[list[Group]]) -> list[Group] | None:
        """The open slider a last anchor or end belongs to when sliders overlap.

        DISTANCE is measured from the slider's own previous point, so the candidate whose last
        point lies at that distance from this group's position wins; the oldest one on a tie.
        """
        if len(candidates) <= 1 or g.distance is None or g.x is None:
            return candidates[0] if candidates else None

        def mismatch(parts: list[Group]) -> float:
            previous = parts[-1]
            if previous.x is None:
                return math.inf
            return abs(math.dist((previous.x, previous.y), (g.x, g.y)) - g.distance)

        return min(candidates, key=mismatch)

    def _position(self, g: Group) -> tuple[float, float]:
        if self.mode == 1:
            return 256.0, 192.0
        if self.mode == 3:
            return column_x(g.column or 0, self.beatmap.keycount), 192.0
        if g.x is not None:
            self.previous = (g.x, g.y)
        return self.previous  # no position token: stay where the last object was

    def _object(self, kind: str, g: Group, end_time: float | None = None, sound: list[int] | None = None) -> HitObject:
        x, y = self._position(g)
        value, volume = sound or (g.hitsounds[0] if g.hitsounds else [0, 0])
        bits, normal, addition = decode_hitsound(value)
        return HitObject(x=x, y=y, time=round(g.time), kind=kind, new_combo=g.new_combo or kind == SPINNER, hitsound=bits,
                         sample=HitSample(normal, addition, 0, volume),
                         end_time=None if end_time is None else round(end_time))

    def _request_speed(self, g: Group) -> None:
        if g.scroll_speed is not None:
            self.speed_requests.append((g.time, g.scroll_speed))

    def _spinner(self, start: Group | None, end: Group) -> None:
        if start is None:
            return
        sound = (start.hitsounds or end.hitsounds or [[0, 0]])[0]
        spinner = self._object(SPINNER, start, end_time=max(end.time, start.time), sound=sound)
        spinner.x, spinner.y = 256.0, 192.0
        self.objects.append(spinner)
        self.previous = (256.0, 192.0)

    def _drumroll(self, start: Group | None, end: Group) -> None:
        """A taiko slider whose zig-zag path along y = 192 is long enough for its duration."""
        if start is None:
            return
        roll = self._object(SLIDER, start)
        duration = max(end.time - start.time, 1.0)
        roll.length = self._slider_length(start, duration)
        turns = max(math.ceil(roll.length / 512), 1)
        roll.x, roll.y, roll.curve_type = 0.0, 192.0, "L"
        roll.curve_points = [(512.0 if i % 2 == 0 else 0.0, 192.0) for i in range(turns)]
        roll.edge_sounds, roll.edge_sets = [roll.hitsound] * 2, [(roll.sample.normal_set, roll.sample.addition_set)] * 2
        self.objects.append(roll)

    def _slider_length(self, head: Group, span: float) -> float:
        """Pixel length that a slider of this SV covers in `span` ms: SV * 100 * SM * span / beat length."""
        sv = head.scroll_speed or 1.0
        return sv * 100 * self.beatmap.slider_multiplier * span / self.timing.beat_length_at(head.time)

    def _slider(self, parts: list[Group], end: Group) -> None:
        head, anchors = parts[0], [g for g in parts[1:] if g.type in ANCHOR_TYPES]
        last = next((g for g in parts[1:] if g.type == T.LAST_ANCHOR), None)
        if last is None:
            return
        if head.scroll_speed is not None:
            self.speed_requests.append((head.time, head.scroll_speed))
        slider = self._object(SLIDER, head)
        slider.curve_type, slider.curve_points = slider_curve([(a.type, self._position(a)) for a in anchors],
                                                              self._position(last))
        self._position(end)
        span = last.time - head.time
        if span <= 0:
            span = max(end.time - head.time, 1.0)
        slider.slides = max(1, round((end.time - head.time) / span))
        slider.length = self._slider_length(head, span)
        sounds = [head.hitsounds[0] if head.hitsounds else [0, 0]]
        sounds += (last.hitsounds[1:] + [sounds[0]] * slider.slides)[:slider.slides - 1]
        sounds.append(end.hitsounds[0] if end.hitsounds else sounds[0])
        decoded = [decode_hitsound(value) for value, _ in sounds]
        slider.edge_sounds = [bits for bits, _, _ in decoded]
        slider.edge_sets = [(normal, addition) for _, normal, addition in decoded]
        if last.hitsounds:  # the body sound lives on the object itself
            slider.hitsound, normal, addition = decode_hitsound(last.hitsounds[0][0])
            slider.sample = HitSample(normal, addition, 0, sounds[0][1])
        self.objects.append(slider)


def slider_curve(anchors: list[tuple[EventType, tuple[float, float]]],
                 last: tuple[float, float]) -> tuple[str, list[tuple[float, float]]]:
    """Curve letter and control points after the head, from the anchors' types and points and the last point.

    The letter comes from the first anchor; all-red (or no) anchors make a straight 'L' slider; in a
    bezier a red anchor is a repeated point.
    """
    kinds = [kind for kind, _ in anchors]
    if all(kind == T.RED_ANCHOR for kind in kinds):
        letter = "L"
    elif kinds[0] == T.PERFECT_ANCHOR and len(kinds) != 1:
        letter = "B"
    else:
        letter = CURVE_LETTERS[kinds[0]]
    points: list[tuple[float, float]] = []
    for kind, point in anchors:
        points += [point, point] if kind == T.RED_ANCHOR else [point]
    points.append(last)
    if letter == "L":
        points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    return letter, points


def _with_greenlines(redlines: list[TimingPoint], speed_requests: list[tuple[float, float]],
                     kiai_toggles: list[tuple[float, bool]], beatmap: Beatmap) -> list[TimingPoint]:
    """Redlines plus the greenlines that give every object its requested SV and every kiai toggle.

    A redline resets SV to 1 in osu!, so a speed request after one may need a new greenline even
    if the speed did not change. Mania speeds are BPM-normalised in events and undone here.
    """
    timing = Timing(redlines)
    if beatmap.mode == 3:
        median = timing.median_beat_length(song_end(beatmap))
        speed_requests = [(t, s * timing.beat_length_at(t) / median) for t, s in speed_requests]
    changes = sorted([(t, "speed", s) for t, s in speed_requests] + [(t, "kiai", k) for t, k in kiai_toggles]
                     + [(p.time, "redline", p) for p in redlines], key=lambda c: (c[0], CHANGE_ORDER[c[1]]))
    points: list[TimingPoint] = []
    speed, kiai = 1.0, False
    for time, kind, value in changes:
        if kind == "redline":
            point = copy.copy(value)
            point.effects = (point.effects & ~1) | int(kiai)
            points.append(point)
            speed = 1.0
            continue
        if kind == "kiai":
            if value == kiai:
                continue
            kiai = value
        elif abs(value - speed) < 1e-6:
            continue
        else:
            speed = value
        volume = timing.redline_at(time).volume
        green = TimingPoint(float(round(time)), -100.0 / speed, timing.redline_at(time).meter, 0, 0, volume, False, int(kiai))
        if points and not points[-1].uninherited and points[-1].time == green.time:
            points[-1] = green
        else:
            points.append(green)
    return points

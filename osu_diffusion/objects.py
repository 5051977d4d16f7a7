"""Per-object sequences for the refiner: map groups -> arrays of positions, times, distances, types.

Every positioned map group (circle, slider head, anchor, last anchor, slider end) and every spinner
start/end becomes one object, in time order (reference notes §5.1). Sliders are tracked so that
sampling can put each slider end where the slider's required length falls along its path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tokenizer.curves import SliderPath
from tokenizer.decode import slider_curve
from tokenizer.events import EventType, Group
from tokenizer.timing import Timing

T = EventType
WIDTH, HEIGHT = 512.0, 384.0
CENTRE = (256.0, 192.0)
NUM_TYPES = 16
ANCHOR_INDEX = {T.BEZIER_ANCHOR: 6, T.PERFECT_ANCHOR: 7, T.CATMULL_ANCHOR: 8, T.RED_ANCHOR: 9}
REFINED_TYPES = frozenset({T.CIRCLE, T.SLIDER_HEAD, *ANCHOR_INDEX, T.LAST_ANCHOR, T.SLIDER_END})
SEQUENCE_TYPES = REFINED_TYPES | {T.SPINNER, T.SPINNER_END}


@dataclass
class Slider:
    """Indices (into the object sequence) of one slider's parts and the pixel length it must have."""
    head: int
    anchors: list[int] = field(default_factory=list)
    anchor_types: list[EventType] = field(default_factory=list)
    last_anchor: int | None = None
    end: int | None = None
    required_length: float | None = None

    def path(self, positions: np.ndarray, first: int = 0) -> SliderPath:
        """The slider's path through its head, anchors and last anchor, cut or extended to the required
        length, built the way decoding builds it; `positions` are rows `first`, `first + 1`, ... of the map."""
        at = lambda i: tuple(positions[i - first])
        letter, points = slider_curve([(kind, at(i)) for kind, i in zip(self.anchor_types, self.anchors)], at(self.last_anchor))
        return SliderPath(letter, [at(self.head), *points], self.required_length)


@dataclass
class ObjectSequence:
    """The refiner's view of a map: one row per object, positions in osu! pixels."""
    groups: list[Group]  # the map groups the rows come from (positions are written back into them)
    positions: np.ndarray  # (n, 2) float
    times: np.ndarray  # (n,) ms; anchors interpolated between their head and last anchor
    distances: np.ndarray  # (n,) px to the previous object
    types: np.ndarray  # (n,) int in [0, NUM_TYPES)
    fixed: np.ndarray  # (n,) bool: spinners, never moved
    sliders: list[Slider]

    def __len__(self) -> int:
        return len(self.groups)

    def write_back(self, positions: np.ndarray) -> None:
        """Store refined positions in the groups (rounded to whole pixels, as the .osu writes them)."""
        for group, (x, y), fixed in zip(self.groups, positions, self.fixed):
            if not fixed:
                group.x, group.y = float(round(x)), float(round(y))


def object_sequence(groups: list[Group], timing: Timing, slider_multiplier: float) -> ObjectSequence:
    """The object sequence of a map's groups (any order; same-time groups keep their order)."""
    kept = sorted((g for g in groups if g.type in SEQUENCE_TYPES and g.time is not None), key=lambda g: g.time)
    n = len(kept)
    positions = np.zeros((n, 2))
    times = np.array([float(g.time) for g in kept])
    types = np.zeros(n, dtype=np.int64)
    fixed = np.zeros(n, dtype=bool)
    sliders = _pair_sliders(kept)
    for i, g in enumerate(kept):
        fixed[i] = g.type in (T.SPINNER, T.SPINNER_END) or g.x is None
        positions[i] = CENTRE if fixed[i] else (g.x, g.y)
    for slider in sliders:
        _slider_types_and_times(slider, kept, types, times, timing, slider_multiplier)
    for i, g in enumerate(kept):
        if g.type == T.CIRCLE:
            types[i] = 1 if g.new_combo else 0
        elif g.type == T.SLIDER_HEAD:
            types[i] = 5 if g.new_combo else 4
        elif g.type == T.SPINNER:
            types[i] = 2
        elif g.type == T.SPINNER_END:
            types[i] = 3
        elif g.type in ANCHOR_INDEX:
            types[i] = ANCHOR_INDEX[g.type]
        elif g.type == T.LAST_ANCHOR:
            types[i] = 10
    distances = np.array([_distance(kept, positions, i) for i in range(n)], dtype=np.float64)
    return ObjectSequence(kept, positions, times, distances, types, fixed, sliders)


def _distance(groups: list[Group], positions: np.ndarray, i: int) -> float:
    """The group's DISTANCE when it has one, else measured from the previous object (the centre first)."""
    if groups[i].distance is not None:
        return float(groups[i].distance)
    previous = positions[i - 1] if i else CENTRE
    return float(math.dist(positions[i], previous))


def _pair_sliders(groups: list[Group]) -> list[Slider]:
    """Each head takes the anchors that follow it, then the oldest open slider takes the next last
    anchor and the oldest with a last anchor the next end, so overlapping sliders pair in order."""
    sliders: list[Slider] = []
    building: Slider | None = None
    for i, g in enumerate(groups):
        if g.type == T.SLIDER_HEAD:
            building = Slider(i)
            sliders.append(building)
            continue
        if g.type in ANCHOR_INDEX and building is not None and building.last_anchor is None:
            building.anchors.append(i)
            building.anchor_types.append(g.type)
            continue
        building = None
        if g.type == T.LAST_ANCHOR:
            slider = next((s for s in sliders if s.last_anchor is None), None)
            if slider is not None:
                slider.last_anchor = i
        elif g.type == T.SLIDER_END:
            slider = next((s for s in sliders if s.last_anchor is not None and s.end is None), None)
            if slider is not None:
                slider.end = i
    return [s for s in sliders if s.last_anchor is not None and s.end is not None]


def _slider_types_and_times(slider: Slider, groups: list[Group], types: np.ndarray, times: np.ndarray,
                            timing: Timing, slider_multiplier: float) -> None:
    """Slider-end type by its number of spans, anchor times spread over the first span, and the
    required length: SV × span × 100 / beat length × slider multiplier."""
    head, last = groups[slider.head], groups[slider.last_anchor]
    span = float(last.time - head.time)
    spans = round((groups[slider.end].time - head.time) / span) if span > 0 else 1
    types[slider.end] = 11 + min(spans, 3) - 1 if spans <= 3 else (14 if spans % 2 == 0 else 15)
    for k, i in enumerate(slider.anchors, start=1):
        times[i] = head.time + span * k / (len(slider.anchors) + 1)
    sv = head.scroll_speed if head.scroll_speed is not None else timing.slider_velocity_at(head.time)
    if span > 0:
        slider.required_length = sv * span * 100.0 / timing.beat_length_at(head.time) * slider_multiplier

"""Is a beatmap playable? The generation acceptance checks, one sentence for each that fails.

rosu-pp accepts garbage silently, so a map is also checked against our own reader and for the
properties osu! and mappers take for granted: timing, order, playfield and snapping.
"""
from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import rosu_pp_py

from tokenizer.osu_file import SLIDER, Beatmap, BeatmapError, HitObject, format_beatmap, parse_beatmap, read_beatmap
from tokenizer.timing import Timing, TimingPoint

WIDTH, HEIGHT = 512.0, 384.0
TOLERANCE_PX = 1.0
MAX_DIVISOR, SNAP_LENIENCY_MS = 16, 2.0
ROSU_ERRORS = (rosu_pp_py.ParseError, rosu_pp_py.ConvertError, rosu_pp_py.ArgsError)


def validity_problems(beatmap: Beatmap) -> list[str]:
    """Every failed check as one human-readable sentence; empty when the beatmap is valid."""
    return _timing_problems(beatmap.timing_points) + _object_problems(beatmap) + _reader_problems(beatmap)


def validity_problems_file(path: str | os.PathLike) -> list[str]:
    """The problems of a written .osu file (a file our reader rejects is one problem)."""
    try:
        beatmap = read_beatmap(path)
    except BeatmapError as e:
        return [str(e)]
    return validity_problems(beatmap)


def _timing_problems(points: list[TimingPoint]) -> list[str]:
    problems = []
    if not any(p.uninherited for p in points):
        problems.append("There is no uninherited (red) timing point.")
    backwards = [b for a, b in zip(points, points[1:]) if b.time < a.time]
    if backwards:
        problems.append(f"Timing points go back in time {len(backwards)} time(s) (first at {backwards[0].time:g} ms).")
    broken = [p for p in points if not _valid_point(p)]
    if broken:
        problems.append(f"{len(broken)} timing point(s) have a non-finite time or an impossible beat length "
                        f"(first at {broken[0].time:g} ms: {broken[0].beat_length:g}).")
    return problems


def _valid_point(p: TimingPoint) -> bool:
    """Redlines need a positive finite beat length, greenlines a negative finite one (-100 / SV)."""
    return math.isfinite(p.time) and math.isfinite(p.beat_length) and (p.beat_length > 0) == p.uninherited


def _object_problems(beatmap: Beatmap) -> list[str]:
    objects = beatmap.hit_objects
    checks = [
        ("start before the object listed ahead of them", [b for a, b in zip(objects, objects[1:]) if b.time < a.time]),
        ("end before they start", [o for o in objects if o.end_time is not None and o.end_time < o.time]),
        ("lie (or have slider points) outside the 512x384 playfield", [o for o in objects if not object_in_playfield(o)]),
    ]
    valid_points = [p for p in beatmap.timing_points if _valid_point(p)]  # broken ones are reported once, above
    if any(p.uninherited for p in valid_points):
        timing = Timing(valid_points)
        checks.append(("are not within 2 ms of a 1/1 to 1/16 tick of their redline",
                       [o for o in objects if timing.snap_divisor(o.time, MAX_DIVISOR, SNAP_LENIENCY_MS) == 0]))
    if beatmap.mode != 3:
        starts = Counter(o.time for o in objects)
        checks.append(("start at the same time as another object", [o for o in objects if starts[o.time] > 1]))
    return [f"{len(bad)} hit object(s) {what} (first at {bad[0].time:g} ms)." for what, bad in checks if bad]


def object_points(o: HitObject) -> np.ndarray:
    """The (x, y) rows that must stay on the playfield: the object, and a slider's control points and ball path."""
    points = np.array([(o.x, o.y), *o.curve_points])
    return np.vstack((points, o.path().polyline)) if o.kind == SLIDER else points


def object_in_playfield(o: HitObject) -> bool:
    """Whether the object (and a slider's control points and ball path) stays on the playfield, within 1 px."""
    return inside_playfield(object_points(o), TOLERANCE_PX)


def inside_playfield(points: np.ndarray, tolerance: float = 0.0) -> bool:
    """Whether every (x, y) row lies in the 512x384 playfield, give or take `tolerance` px."""
    x, y = points[:, 0], points[:, 1]
    return bool(((x >= -tolerance) & (x <= WIDTH + tolerance) & (y >= -tolerance) & (y <= HEIGHT + tolerance)).all())


def _reader_problems(beatmap: Beatmap) -> list[str]:
    """The written text must read back in our reader and in rosu-pp with every object."""
    text = format_beatmap(beatmap)
    count = len(beatmap.hit_objects)
    problems = []
    try:
        again = parse_beatmap(text, "the written beatmap")
        if len(again.hit_objects) != count:
            problems.append(f"Our reader reads back {len(again.hit_objects)} of {count} hit objects.")
    except BeatmapError as e:
        problems.append(f"Our reader rejects the written beatmap: {e}.")
    try:
        rosu_map = rosu_pp_py.Beatmap(content=text)
        stars = rosu_pp_py.Difficulty().calculate(rosu_map).stars
        if rosu_map.n_objects != count or not math.isfinite(stars):
            problems.append(f"rosu-pp reads {rosu_map.n_objects} of {count} hit objects and rates them {stars} stars.")
    except ROSU_ERRORS as e:
        problems.append(f"rosu-pp cannot read or rate the beatmap: {e}.")
    return problems

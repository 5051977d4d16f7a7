"""`python -m tokenizer check PATH...`: how well .osu files survive the reader, writer and token round trip."""
from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field

import numpy as np
import rosu_pp_py

from .decode import events_to_groups, groups_to_beatmap, resnap_groups
from .encode import tokenize_windows
from .osu_file import Beatmap, BeatmapError, HitObject, format_beatmap, parse_beatmap, read_beatmap
from .vocabulary import Tokenizer

MATCH_WINDOW_MS = 50.0  # objects further apart than this are counted as lost + extra, not paired


def token_round_trip(beatmap: Beatmap, tokenizer: Tokenizer) -> Beatmap:
    """Beatmap -> events -> ids -> events -> beatmap, window by window, on the map's own redlines."""
    decoded = []
    for _, start, ids in tokenize_windows(beatmap, tokenizer):
        decoded += events_to_groups(tokenizer.decode_many(ids), tokenizer, start)
    resnap_groups(decoded, beatmap.timing)
    return groups_to_beatmap(decoded, beatmap)


def file_round_trip_difference(beatmap: Beatmap) -> str | None:
    """None when write -> read gives the same objects, timing points and settings; else what differs."""
    text = format_beatmap(beatmap)
    again = parse_beatmap(text, beatmap.source)
    for name in ("general", "editor", "metadata", "difficulty", "colours", "hit_objects", "breaks", "background", "video"):
        if name == "difficulty":
            same = {**beatmap.difficulty, "ApproachRate": again.difficulty.get("ApproachRate")} == again.difficulty
        else:
            same = getattr(beatmap, name) == getattr(again, name)
        if not same:
            return f"{name} differ after write and read"
    if format_beatmap(again) != text:
        return "timing points differ after write and read"
    return None


def star_rating(beatmap: Beatmap, clock_rate: float = 1.0) -> float:
    """rosu-pp stars; a clock rate above 1 is DT-style speed-up."""
    return rosu_pp_py.Difficulty(clock_rate=clock_rate).calculate(rosu_pp_py.Beatmap(content=format_beatmap(beatmap))).stars


@dataclass
class FileReport:
    path: str
    error: str | None = None
    mode: int = 0
    objects: int = 0
    lost: int = 0
    extra: int = 0
    time_errors: list[float] = field(default_factory=list)
    snapped_within_1ms: int = 0
    snapped: int = 0
    position_errors: list[float] = field(default_factory=list)
    outside_cell: int = 0
    wrong_column: int = 0
    file_difference: str | None = None
    file_stars_difference: float = 0.0
    stars_before: float = 0.0
    stars_after: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def stars_change(self) -> float:
        return (self.stars_after - self.stars_before) / self.stars_before if self.stars_before > 0 else 0.0

    def line(self) -> str:
        if self.error:
            return f"FAILED  {self.error}"  # the reader's message names the file and line
        t = np.asarray(self.time_errors or [0.0])
        p = max(self.position_errors, default=0.0)
        snapped = 100.0 * self.snapped_within_1ms / self.snapped if self.snapped else 100.0
        file_rt = "exact" if self.file_difference is None else self.file_difference
        return (f"ok      mode={self.mode} objects={self.objects} lost={self.lost} extra={self.extra} "
                f"time_err max={t.max():.1f} p99={np.percentile(t, 99):.1f} ms snapped<=1ms={snapped:.1f}% "
                f"pos_err max={p:.1f} px outside_cell={self.outside_cell} wrong_column={self.wrong_column} "
                f"stars {self.stars_before:.3f}->{self.stars_after:.3f} ({100 * self.stars_change:+.1f}%) "
                f"file_rt={file_rt} | {self.path}")


def check_file(path: str, tokenizer: Tokenizer) -> FileReport:
    report = FileReport(path)
    try:
        beatmap = read_beatmap(path)
    except BeatmapError as e:
        report.error = str(e)
        return report
    report.warnings = beatmap.warnings
    report.mode, report.objects = beatmap.mode, len(beatmap.hit_objects)
    report.file_difference = file_round_trip_difference(beatmap)
    report.stars_before = star_rating(beatmap)
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        original_stars = rosu_pp_py.Difficulty().calculate(rosu_pp_py.Beatmap(content=f.read())).stars
    report.file_stars_difference = abs(original_stars - report.stars_before)
    rebuilt = token_round_trip(beatmap, tokenizer)
    report.stars_after = star_rating(rebuilt)
    _compare_objects(beatmap, rebuilt, tokenizer, report)
    return report


def _compare_objects(original: Beatmap, rebuilt: Beatmap, tokenizer: Tokenizer, report: FileReport) -> None:
    timing = original.timing
    precision = tokenizer.config.position_precision
    keys = original.keycount
    if original.mode == 3:
        place = lambda o: min(max(int(o.x / 512 * keys), 0), keys - 1)  # the mania column
    else:
        place = lambda o: (math.floor(o.x / precision), math.floor(o.y / precision))  # the position cell
    for a, b in _pair_objects(original.hit_objects, rebuilt.hit_objects, place, report):
        error = abs(a.time - b.time)
        report.time_errors.append(error)
        if timing.snap_divisor(a.time):
            report.snapped += 1
            report.snapped_within_1ms += error <= 1.0
        if original.mode in (0, 2):
            report.position_errors.append(math.dist((a.x, a.y), (b.x, b.y)))
            report.outside_cell += place(a) != place(b)
        if original.mode == 3:
            report.wrong_column += place(a) != place(b)


def _pair_objects(original: list[HitObject], rebuilt: list[HitObject], place, report: FileReport) -> list[tuple[HitObject, HitObject]]:
    """Pair each original object with the nearest unpaired rebuilt one of the same kind.

    Candidates lie within MATCH_WINDOW_MS; a candidate within 5 ms beats a later one, then one in
    the same place (position cell or mania column), then the nearest in space. Unpaired originals
    are lost, unpaired rebuilt objects extra.
    """
    pairs = []
    for kind in {o.kind for o in original} | {o.kind for o in rebuilt}:
        a = sorted((o for o in original if o.kind == kind), key=lambda o: o.time)
        b = sorted((o for o in rebuilt if o.kind == kind), key=lambda o: o.time)
        used = [False] * len(b)
        first = 0
        for obj in a:
            while first < len(b) and b[first].time < obj.time - MATCH_WINDOW_MS:
                first += 1
            best, best_cost = None, None
            for j in range(first, len(b)):
                if b[j].time > obj.time + MATCH_WINDOW_MS:
                    break
                if not used[j]:
                    dt = abs(b[j].time - obj.time)
                    cost = (dt > 5, place(obj) != place(b[j]), math.dist((obj.x, obj.y), (b[j].x, b[j].y)), dt)
                    if best_cost is None or cost < best_cost:
                        best, best_cost = j, cost
            if best is None:
                report.lost += 1
            else:
                used[best] = True
                pairs.append((obj, b[best]))
        report.extra += used.count(False)
    return pairs


def osu_files(paths: list[str]) -> list[str]:
    """The .osu files named or found (recursively, sorted) under the given paths."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                found += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(".osu")]
        else:
            found.append(path)
    return found


def summary(reports: list[FileReport]) -> str:
    parsed = [r for r in reports if not r.error]
    times = np.asarray([e for r in parsed for e in r.time_errors] or [0.0])
    snapped = sum(r.snapped for r in parsed)
    within = sum(r.snapped_within_1ms for r in parsed)
    positions = [e for r in parsed for e in r.position_errors]
    osu_catch = [r for r in parsed if r.mode in (0, 2) and r.stars_before > 0]
    other = [r for r in parsed if r.mode in (1, 3) and r.stars_before > 0]
    osu_ok = sum(abs(r.stars_change) <= 0.10 for r in osu_catch)
    other_ok = sum(abs(r.stars_change) <= 0.02 for r in other)
    exact = sum(r.file_difference is None for r in parsed)
    return (f"TOTAL files={len(reports)} parsed={len(parsed)} failed={len(reports) - len(parsed)} "
            f"file_rt_exact={exact}/{len(parsed)} objects={sum(r.objects for r in parsed)} "
            f"lost={sum(r.lost for r in parsed)} extra={sum(r.extra for r in parsed)} "
            f"time_err max={times.max():.1f} p99={np.percentile(times, 99):.1f} ms "
            f"snapped<=1ms={100 * within / max(snapped, 1):.2f}% "
            f"pos_err max={max(positions, default=0):.1f} px outside_cell={sum(r.outside_cell for r in parsed)} "
            f"wrong_column={sum(r.wrong_column for r in parsed)} "
            f"stars osu/catch<=10%={osu_ok}/{len(osu_catch)} taiko/mania<=2%={other_ok}/{len(other)} "
            f"median_abs_change={100 * statistics.median([abs(r.stars_change) for r in parsed] or [0]):.2f}%")

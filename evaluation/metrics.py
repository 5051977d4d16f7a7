"""How close a generated beatmap is to a human one: onsets, columns, timing, rhythm, osu! layout.

Onsets are the start times of circles, slider heads and hold heads (spinners have no rhythm to
match), one per distinct time, so a mania chord counts once; `notes` keeps every mania note with
its column for the column-aware score. Matching is greedy and one-to-one: the closest pair within
the tolerance is matched first, then the next closest among the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from postprocess.spacing import MAX_GAP_BEATS, MIN_GAP_BEATS, STACK_PX, circle_radius, spacing_pairs
from postprocess.validate import HEIGHT, WIDTH
from tokenizer.osu_file import SPINNER, Beatmap, mania_column
from tokenizer.timing import Timing

# A tick's coarsest snap divisor names its rhythm (a 1/4 tick that is also 1/2 is 1/2); sixths count with thirds.
RHYTHM_NAMES = {1: "1/1", 2: "1/2", 3: "1/3", 4: "1/4", 6: "1/3"}
RHYTHMS = ("1/1", "1/2", "1/4", "1/3", "other")
LONG_COMBO = 12  # objects; 0.9% of the train split's osu! combos are longer
EDGE_PX = (64.0, 48.0)  # an eighth of the playfield's width and height: "near an edge"
RHYTHM_TOLERANCE_MS = 3.0  # .osu times are whole ms, so a fractional beat length puts ticks up to 1 ms off


@dataclass
class OnsetScore:
    precision: float
    recall: float
    f1: float
    matched_offsets: np.ndarray  # generated minus reference time of each match, ms

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


def onsets(beatmap: Beatmap) -> np.ndarray:
    """Distinct object start times in ms, sorted (spinners left out)."""
    times = [o.time for o in beatmap.hit_objects if o.kind != SPINNER]
    return np.unique(np.round(np.asarray(times, dtype=float)))


def nearest_distance(sorted_points: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The distance (ms) from each of `times` to the nearest of `sorted_points` (two or more)."""
    after = np.clip(np.searchsorted(sorted_points, times), 1, len(sorted_points) - 1)
    return np.minimum(np.abs(sorted_points[after] - times), np.abs(sorted_points[after - 1] - times))


def notes(beatmap: Beatmap) -> tuple[np.ndarray, np.ndarray]:
    """Every mania note's start time and column."""
    keys = max(beatmap.keycount, 1)
    times = np.asarray([o.time for o in beatmap.hit_objects], dtype=float)
    columns = np.asarray([mania_column(o.x, keys) for o in beatmap.hit_objects], dtype=int)
    return times, columns


def match(generated: np.ndarray, reference: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching within `tolerance` ms: indices into generated and reference."""
    generated, reference = np.asarray(generated, dtype=float), np.asarray(reference, dtype=float)
    order = np.argsort(reference, kind="stable")
    sorted_reference = reference[order]
    lo = np.searchsorted(sorted_reference, generated - tolerance, side="left")
    hi = np.searchsorted(sorted_reference, generated + tolerance, side="right")
    pairs = [(abs(g - sorted_reference[j]), i, order[j])
             for i, g in enumerate(generated) for j in range(lo[i], hi[i])]
    pairs.sort()
    used_generated, used_reference = set(), set()
    matched_generated, matched_reference = [], []
    for _, i, j in pairs:
        if i not in used_generated and j not in used_reference:
            used_generated.add(i)
            used_reference.add(j)
            matched_generated.append(i)
            matched_reference.append(j)
    return np.asarray(matched_generated, dtype=int), np.asarray(matched_reference, dtype=int)


def onset_score(generated: np.ndarray, reference: np.ndarray, tolerance: float) -> OnsetScore:
    """Precision, recall and F1 of generated onsets against reference onsets."""
    i, j = match(generated, reference, tolerance)
    return _score(len(i), len(generated), len(reference), np.asarray(generated)[i] - np.asarray(reference)[j])


def column_score(generated: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                 tolerance: float) -> OnsetScore:
    """Onset score where a match must also be in the same mania column."""
    (gen_times, gen_columns), (ref_times, ref_columns) = generated, reference
    offsets = []
    for column in np.union1d(gen_columns, ref_columns):
        g, r = gen_times[gen_columns == column], ref_times[ref_columns == column]
        i, j = match(g, r, tolerance)
        offsets.append(g[i] - r[j])
    offsets = np.concatenate(offsets) if offsets else np.zeros(0)
    return _score(len(offsets), len(gen_times), len(ref_times), offsets)


def _score(matches: int, generated: int, reference: int, offsets: np.ndarray) -> OnsetScore:
    precision = matches / generated if generated else 0.0
    recall = matches / reference if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return OnsetScore(precision, recall, f1, offsets)


def main_bpm(beatmap: Beatmap, end_ms: float) -> float:
    """The BPM that lasts longest up to `end_ms`."""
    return 60000.0 / Timing(beatmap.timing_points).median_beat_length(end_ms)


def beat_phase_error(generated: Beatmap, reference: Beatmap, at_ms: float) -> float:
    """Signed ms from the reference's beat nearest `at_ms` to the generated beat nearest that one."""
    reference_beat = _nearest_beat(Timing(reference.timing_points), at_ms)
    return _nearest_beat(Timing(generated.timing_points), reference_beat) - reference_beat


def rhythm_shares(beatmap: Beatmap) -> dict[str, float]:
    """The share of onsets on whole beats, 1/2, 1/4 and 1/3 (or 1/6) beats of the map's own timing, and off them.

    A model can raise onset F1 by putting every object on a beat (most human objects are there); these
    shares show when it does.
    """
    times = onsets(beatmap)
    counts = dict.fromkeys(RHYTHMS, 0)
    timing = beatmap.timing
    for time in times:
        counts[RHYTHM_NAMES.get(timing.snap_divisor(time, max(RHYTHM_NAMES), RHYTHM_TOLERANCE_MS), "other")] += 1
    return {name: count / max(len(times), 1) for name, count in counts.items()}


def rhythm_distance(shares: dict[str, float], reference: dict[str, float]) -> float:
    """Total variation distance: 0 for the same mix of beat fractions, 1 when no fraction is shared."""
    return 0.5 * sum(abs(shares[name] - reference[name]) for name in RHYTHMS)


def layout_shares(beatmap: Beatmap) -> dict[str, float] | None:
    """osu! maps, how they are laid out. Over the jumps from one object's end to the next one's head a 3/8 beat or more
    later (not stacks): the share whose circles overlap, and the spread of their px per beat (90th over 10th
    percentile; gaps over two beats count as two). Over the combos: the share longer than 12 objects, and of one
    object. Over the objects' heads: the share within `EDGE_PX` of an edge, and their median distance from the
    playfield's centre. Human maps space evenly and rarely overlap (val: 0.07 at 1/2 beat); under 1% of their combos
    run past 12 objects (train). None for other modes or under 2 such jumps."""
    if beatmap.mode != 0:
        return None
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    pairs = spacing_pairs(objects, beatmap.timing)
    jumps = pairs[(pairs[:, 0] >= MIN_GAP_BEATS) & (pairs[:, 1] >= STACK_PX)]
    if len(jumps) < 2:
        return None
    per_beat = jumps[:, 1] / np.minimum(jumps[:, 0], MAX_GAP_BEATS)
    low, high = np.percentile(per_beat, [10, 90])
    combos = np.diff([i for i, o in enumerate(objects) if i == 0 or o.new_combo] + [len(objects)])
    heads = np.array([(o.x, o.y) for o in objects if o.kind != SPINNER], dtype=float)
    margin = np.minimum(heads, np.array([WIDTH, HEIGHT]) - heads)
    return {"overlapping": float(np.mean(jumps[:, 1] < 2 * circle_radius(beatmap.cs))), "spread": float(high / max(low, 1.0)),
            "long_combos": float(np.mean(combos > LONG_COMBO)), "single_combos": float(np.mean(combos == 1)),
            "near_edges": float(np.mean((margin < np.array(EDGE_PX)).any(axis=1))),
            "centre_px": float(np.median(np.hypot(*(heads - np.array([WIDTH / 2, HEIGHT / 2])).T)))}


def _nearest_beat(timing: Timing, time: float) -> float:
    redline = timing.redline_at(time)
    beat = redline.clamped_beat_length
    return redline.time + round((time - redline.time) / beat) * beat

"""Does MaiMod find a planted mistake? One defect per copy of a val map, then where it lands in the report.

    python bench/mai_mod_defects.py --data ../shared/beatmaps --maps 20 --threads 1 [key=value ...]

Val maps are spread over the modes (evaluate.py's selection). Each gets, in its own copy, written to a
temporary folder and read back: an object moved off the beat by 1/8 of a beat (all modes); an object
moved 150 px (osu!: any direction, catch: sideways); a new combo removed (osu!, catch); a redline
moved 15 ms later (all modes). A defect counts as found when a suggestion lies within --tolerance-ms
of its time (the moved object's new time, the redline's new time). Reported per defect: found among the
10 most severe suggestions of the whole map, found anywhere in the printed report (top_n per
category), the same two checks on the unchanged map at the same time (what chance and the map's own
quirks give), and the median rank of the first suggestion at the defect. Extra key=value pairs
override configs/mai_mod.yaml (e.g. min_surprisal=3).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluate import select  # noqa: E402
from osuT5.critic import Critic, Review, reviewed_metadata  # noqa: E402
from osuT5.pipeline import load_generator, load_song, pick_device, pick_precision  # noqa: E402
from osuT5.sources import find_beatmaps  # noqa: E402
from osuT5.suggestions import Suggestion, suggestions, top_per_category  # noqa: E402
from tokenizer.osu_file import CIRCLE, Beatmap, read_beatmap, write_beatmap  # noqa: E402

DEFECTS = ("off-beat object", "object moved 150 px", "new combo removed", "redline moved 15 ms")
OVERALL_TOP = 10


def off_beat(beatmap: Beatmap, rng: np.random.Generator) -> float | None:
    """A lone object on a 1/1, 1/2 or 1/4 tick moved 1/8 beat later; its new time."""
    timing, objects = beatmap.timing, beatmap.hit_objects
    candidates = []
    for i in range(1, len(objects) - 1):
        o, eighth = objects[i], timing.beat_length_at(objects[i].time) / 8
        clear = objects[i - 1].time < o.time - eighth - 20 and objects[i + 1].time > o.time + 2 * eighth + 20
        if o.kind == CIRCLE and clear and timing.snap_divisor(o.time) in (1, 2, 4):
            candidates.append(i)
    if not candidates:
        return None
    o = objects[candidates[rng.integers(len(candidates))]]
    o.time = round(o.time + timing.beat_length_at(o.time) / 8)
    return o.time


def moved(beatmap: Beatmap, rng: np.random.Generator) -> float | None:
    """A circle (not the first object) moved 150 px, staying on the playfield; its time."""
    if beatmap.mode not in (0, 2):
        return None
    circles = [o for o in beatmap.hit_objects[1:] if o.kind == CIRCLE]
    for o in rng.permutation(circles):
        for angle in rng.permutation(16) * math.pi / 8 if beatmap.mode == 0 else (0.0, math.pi):
            x, y = o.x + 150 * math.cos(angle), o.y + 150 * math.sin(angle)
            if 0 <= x <= 512 and 0 <= y <= 384:
                o.x, o.y = round(x), round(y)
                return o.time
    return None


def combo_removed(beatmap: Beatmap, rng: np.random.Generator) -> float | None:
    """The new combo of an object that is not the first one removed; its time."""
    if beatmap.mode not in (0, 2):
        return None
    combos = [o for o in beatmap.hit_objects[1:] if o.new_combo]
    if not combos:
        return None
    o = combos[rng.integers(len(combos))]
    o.new_combo = False
    return o.time


def redline_moved(beatmap: Beatmap, rng: np.random.Generator) -> float | None:
    """A redline (the map's only one, or any) moved 15 ms later; its new time."""
    redlines = [p for p in beatmap.timing_points if p.uninherited]
    point = redlines[rng.integers(len(redlines))]
    point.time += 15
    return point.time


PLANTERS = dict(zip(DEFECTS, (off_beat, moved, combo_removed, redline_moved)))


def report(critic: Critic, beatmap: Beatmap, path: Path, song_ms: float, cfg) -> tuple[list[Suggestion], list[Suggestion]]:
    """(the whole report ranked by severity, the printed report) for one map."""
    scores = critic.score(beatmap, reviewed_metadata(beatmap, song_ms))
    review = Review(path, beatmap, critic.tokenizer, scores, critic.unscored_tokens, 0.0)
    found = suggestions(review, float(cfg.min_surprisal), float(cfg.time_tolerance_ms))
    printed = [s for items in top_per_category(found, int(cfg.top_n)).values() for s in items]
    return sorted(found, key=lambda s: -s.severity), printed


def rank_at(ranked: list[Suggestion], when: float, tolerance: float) -> int | None:
    return next((k + 1 for k, s in enumerate(ranked) if abs(s.time_ms - when) <= tolerance), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/beatmaps")
    parser.add_argument("--maps", type=int, default=20)
    parser.add_argument("--tolerance-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="configs/mai_mod.yaml overrides, key=value")
    args = parser.parse_args()
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "configs" / "mai_mod.yaml"), OmegaConf.from_dotlist(args.overrides))
    torch.set_num_threads(args.threads)
    device = pick_device(str(cfg.device))
    precision = pick_precision(str(cfg.precision), device)
    model, tokenizer = load_generator(cfg, device, precision)
    entries = find_beatmaps(args.data, split="val", modes=[0, 1, 2, 3])
    per_mode = 1  # as many of each mode as gives --maps in all (catch has only a couple of val maps)
    while len(select(entries, per_mode)) < args.maps and per_mode < len(entries):
        per_mode += 1
    chosen = sorted(select(entries, per_mode), key=lambda e: (e.mode, str(e.osu_path)))[:args.maps]
    rows = {d: [] for d in DEFECTS}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for n, entry in enumerate(chosen, 1):
            rng = np.random.default_rng([args.seed, n])
            clean = read_beatmap(entry.osu_path)
            audio = load_song(entry.audio_path, model.config.sample_rate)
            song_ms = len(audio) * 1000 / model.config.sample_rate
            critic = Critic(model, tokenizer, audio, float(cfg.lookback), float(cfg.lookahead), int(cfg.batch_size),
                            autocast=torch.bfloat16 if precision == "amp" else None, progress=False)
            clean_ranked, clean_printed = report(critic, clean, entry.osu_path, song_ms, cfg)
            found_line = []
            for defect, plant in PLANTERS.items():
                broken = copy.deepcopy(clean)
                when = plant(broken, rng)
                if when is None:
                    continue
                path = Path(folder) / f"{n:02d} {defect}.osu"
                write_beatmap(broken, path)
                ranked, printed = report(critic, read_beatmap(path), path, song_ms, cfg)
                rank = rank_at(ranked, when, args.tolerance_ms)
                rows[defect].append({
                    "rank": rank, "top": rank is not None and rank <= OVERALL_TOP,
                    "printed": rank_at(printed, when, args.tolerance_ms) is not None,
                    "clean_top": (rank_at(clean_ranked, when, args.tolerance_ms) or OVERALL_TOP + 1) <= OVERALL_TOP,
                    "clean_printed": rank_at(clean_printed, when, args.tolerance_ms) is not None,
                })
                found_line.append(f"{defect}: {'rank ' + str(rank) if rank else 'not found'}")
            print(f"[{n}/{len(chosen)}] mode {entry.mode} {entry.osu_path.name}: {'; '.join(found_line)} "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)
    print(f"\ntolerance ±{args.tolerance_ms:g} ms, min_surprisal {cfg.min_surprisal}, top_n {cfg.top_n}, "
          f"model {cfg.model_path}, {args.threads} thread(s), {time.perf_counter() - began:.0f} s\n")
    print("| defect | maps | in the top 10 | in the printed report | unchanged map: top 10 / report | median rank |")
    print("|---|---|---|---|---|---|")
    for defect, results in rows.items():
        if not results:
            continue
        share = lambda key: f"{sum(r[key] for r in results) / len(results):.0%}"
        ranks = [r["rank"] for r in results if r["rank"] is not None]
        median = f"{statistics.median(ranks):g} ({len(ranks)} found)" if ranks else "-"
        print(f"| {defect} | {len(results)} | {share('top')} | {share('printed')} | "
              f"{share('clean_top')} / {share('clean_printed')} | {median} |")


if __name__ == "__main__":
    main()

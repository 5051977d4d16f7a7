"""How much the refiner recovers of human positions: `python -m osu_diffusion.benchmark PATH...`.

Each std/catch map's human positions are snapped to the centres of the generator's 32-px cells (as
the generator writes them; its DISTANCE tokens keep the human distances), refined, and compared
with the human positions: mean distance, spacing error (|distance to the previous object| against
the human one) and the slider-end length error (distance from each slider end to the point at the
slider's required length along its refined path). One line per map, the totals last.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from osuT5.sources import SourceError, find_beatmaps
from tokenizer.encode import beatmap_to_groups
from tokenizer.events import ContextType
from tokenizer.osu_file import BeatmapError, read_beatmap
from tokenizer.vocabulary import Tokenizer, TokenizerConfig

from .objects import ObjectSequence, object_sequence
from .refine import RefineOptions, Refiner, RefinerError


def beatmap_files(paths: list[str], split: str | None, modes: list[int]) -> list[Path]:
    """A corpus folder (index.csv) gives its split's maps of `modes`; any other folder every .osu under it."""
    files = []
    for path in map(Path, paths):
        if (path / "index.csv").exists():
            files += [e.osu_path for e in find_beatmaps(path, split=split, modes=modes)]
        elif path.is_dir():
            files += sorted(path.rglob("*.osu"))
        elif path.suffix == ".osu":
            files.append(path)
        else:
            raise SourceError(f"{path} is neither a folder nor an .osu file")
    return files


def quantise(positions: np.ndarray, tokenizer: Tokenizer) -> np.ndarray:
    """Each position's POS cell, decoded as the generator's output is (the cell centre, kept on the playfield)."""
    return np.array([tokenizer.cell_position(tokenizer.position_events(x, y)[0].value) for x, y in positions])


def slider_end_errors(seq: ObjectSequence, positions: np.ndarray) -> np.ndarray:
    """Per slider: px between its end and the point at its required length along its path."""
    errors = []
    for s in seq.sliders:
        if s.required_length:
            errors.append(float(np.hypot(*(np.array(s.path(positions).position_at(1.0)) - positions[s.end]))))
    return np.array(errors)


def spacing_errors(seq: ObjectSequence, positions: np.ndarray, human: np.ndarray) -> np.ndarray:
    """| |p_i - p_(i-1)| - |h_i - h_(i-1)| | over consecutive pairs with a movable object."""
    movable = ~(seq.fixed[1:] & seq.fixed[:-1])
    spacing = np.hypot(*np.diff(positions, axis=0).T)
    human_spacing = np.hypot(*np.diff(human, axis=0).T)
    return np.abs(spacing - human_spacing)[movable]


def measure(seq: ObjectSequence, refined: np.ndarray, quantised: np.ndarray, human: np.ndarray) -> dict[str, np.ndarray]:
    movable = ~seq.fixed
    return {
        "before": np.hypot(*(quantised - human)[movable].T), "after": np.hypot(*(refined - human)[movable].T),
        "spacing_before": spacing_errors(seq, quantised, human), "spacing_after": spacing_errors(seq, refined, human),
        "slider_end": slider_end_errors(seq, refined),
    }


def report(name: str, m: dict[str, np.ndarray], seconds: float) -> str:
    ends = m["slider_end"]
    change = m["after"].mean() / m["before"].mean() - 1 if m["before"].mean() else 0.0
    ends_text = f"max {ends.max():.2f} px, {np.mean(ends <= 1):.1%} within 1 px" if len(ends) else "no sliders"
    return (f"{name}: {len(m['before'])} objects, distance {m['before'].mean():.2f} -> {m['after'].mean():.2f} px "
            f"({change:+.1%}), spacing error {m['spacing_before'].mean():.2f} -> {m['spacing_after'].mean():.2f} px, "
            f"slider ends {ends_text}, {seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osu_diffusion.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="folders of .osu files (a corpus folder with index.csv uses --split)")
    parser.add_argument("--model", default="weights/refiner", help="refiner folder (default: weights/refiner)")
    parser.add_argument("--split", default="val", help="split of a corpus folder with index.csv (default: val)")
    parser.add_argument("--modes", default="0,2", help="game modes to refine: 0 osu!, 2 catch (default: both)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many maps")
    parser.add_argument("--start-step", type=int, default=RefineOptions.start_step)
    parser.add_argument("--cfg-scale", type=float, default=RefineOptions.cfg_scale)
    parser.add_argument("--distance-passes", type=int, default=RefineOptions.distance_passes)
    parser.add_argument("--free", action="store_true", help="do not keep objects inside their 32-px cell")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    modes = [int(m) for m in args.modes.split(",")]
    if not set(modes) <= {0, 2}:
        print(f"error: --modes may hold 0 (osu!) and 2 (catch), not {args.modes}", file=sys.stderr)
        return 1
    options = RefineOptions(start_step=args.start_step, cfg_scale=args.cfg_scale, distance_passes=args.distance_passes,
                            cell_size=None if args.free else RefineOptions.cell_size)
    try:
        refiner = Refiner.load(args.model, options)
        files = beatmap_files(args.paths, args.split, modes)[:args.limit]
    except (RefinerError, SourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    tokenizer = Tokenizer(TokenizerConfig.from_yaml("v29"))
    totals: dict[str, list[np.ndarray]] = {}
    maps, seconds = 0, 0.0
    for path in files:
        try:
            beatmap = read_beatmap(path)
        except (BeatmapError, OSError) as error:
            print(f"{path.name}: skipped: {error}")
            continue
        if beatmap.mode not in modes:
            continue
        seq = object_sequence(beatmap_to_groups(beatmap, tokenizer.config)[ContextType.MAP], beatmap.timing,
                              beatmap.slider_multiplier)
        if len(seq) < 2:
            continue
        human = seq.positions.copy()
        seq.positions = np.where(seq.fixed[:, None], human, quantise(human, tokenizer))
        began = time.perf_counter()
        classes = refiner.classes(None, beatmap.metadata.get("Creator"), [], beatmap.cs)
        refined = refiner.refine(seq, classes)
        took = time.perf_counter() - began
        m = measure(seq, refined, seq.positions, human)
        print(report(path.name, m, took), flush=True)
        for key, values in m.items():
            totals.setdefault(key, []).append(values)
        maps, seconds = maps + 1, seconds + took
    if not maps:
        print("error: no std or catch beatmaps found", file=sys.stderr)
        return 1
    print(report(f"total ({maps} maps)", {k: np.concatenate(v) for k, v in totals.items()}, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

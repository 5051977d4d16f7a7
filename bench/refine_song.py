"""Seconds the position refiner takes for a 3-minute osu! map on this machine.

    python bench/refine_song.py MAP.osu --model weights/refiner --repeats 3 [--seconds 180] [--threads 2]

The map's objects in its first --seconds are snapped to the generator's 32-px cells and refined
with inference's default options; prints one line per run and the median.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from osu_diffusion.benchmark import quantise  # noqa: E402
from osu_diffusion.objects import object_sequence  # noqa: E402
from osu_diffusion.refine import RefineOptions, Refiner  # noqa: E402
from tokenizer.encode import beatmap_to_groups  # noqa: E402
from tokenizer.events import ContextType  # noqa: E402
from tokenizer.osu_file import read_beatmap  # noqa: E402
from tokenizer.vocabulary import Tokenizer, TokenizerConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("map", help="an osu! or catch .osu file")
    parser.add_argument("--model", default=str(ROOT / "weights" / "refiner"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = Tokenizer(TokenizerConfig.from_yaml("v29"))
    beatmap = read_beatmap(args.map)
    groups = [g for g in beatmap_to_groups(beatmap, tokenizer.config)[ContextType.MAP] if g.time < args.seconds * 1000]
    refiner = Refiner.load(args.model, RefineOptions())
    runs = []
    for k in range(args.repeats):
        seq = object_sequence(groups, beatmap.timing, beatmap.slider_multiplier)
        seq.positions = np.where(seq.fixed[:, None], seq.positions, quantise(seq.positions, tokenizer))
        began = time.perf_counter()
        refiner.refine(seq, refiner.classes(None, None, [], beatmap.cs))
        runs.append(time.perf_counter() - began)
        print(f"run {k + 1}: {runs[-1]:.2f} s for {len(seq)} objects", flush=True)
    print(f"{args.seconds:.0f} s of map, {len(seq)} objects ({len(seq.sliders)} sliders): median {statistics.median(runs):.2f} s "
          f"({', '.join(f'{r:.2f}' for r in runs)}), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()

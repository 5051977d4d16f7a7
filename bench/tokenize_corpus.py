"""Benchmark: read + tokenize every .osu of a corpus index (default ../shared/beatmaps/index.csv).

Reports files/s for reading alone and for reading + all context streams + window events + ids,
as the median of several repeats.

    python bench/tokenize_corpus.py [--data ../shared/beatmaps] [--repeats 5]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tokenizer.encode import tokenize_windows  # noqa: E402
from tokenizer.osu_file import read_beatmap  # noqa: E402
from tokenizer.vocabulary import Tokenizer, TokenizerConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join("..", "shared", "beatmaps"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    index = os.path.join(args.data, "index.csv")
    if not os.path.exists(index):
        sys.exit(f"error: {index} not found; pass --data pointing at a corpus folder with index.csv")
    with open(index, encoding="utf-8") as f:
        paths = [os.path.join(args.data, row["osu_path"]) for row in csv.DictReader(f)]
    tokenizer = Tokenizer(TokenizerConfig.from_yaml("v29"))

    read_rates, token_rates, tokens = [], [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        for path in paths:
            read_beatmap(path)
        read_rates.append(len(paths) / (time.perf_counter() - start))
        start = time.perf_counter()
        tokens = sum(len(ids) for path in paths for _, _, ids in tokenize_windows(read_beatmap(path), tokenizer))
        token_rates.append(len(paths) / (time.perf_counter() - start))
    print(f"files={len(paths)} tokens={tokens} repeats={args.repeats} python={platform.python_version()} cpus={os.cpu_count()}")
    print(f"read:            median {statistics.median(read_rates):.1f} files/s  (runs: {', '.join(f'{r:.1f}' for r in read_rates)})")
    print(f"read + tokenize: median {statistics.median(token_rates):.1f} files/s  (runs: {', '.join(f'{r:.1f}' for r in token_rates)})")


if __name__ == "__main__":
    main()

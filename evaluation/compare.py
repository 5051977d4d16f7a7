"""Two evaluate.py runs map by map: `python -m evaluation.compare BEFORE_DIR AFTER_DIR`.

A change to generation or post-processing moves some maps up and some down; the means of two runs
hide how consistent that is. On the maps both runs scored, this prints per mode the mean of each
map's difference with its standard error, how many maps went up and down, and the means beside it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .report import MODE_NAMES, NoEvaluationError, read_rows


def _stars_error(row: dict) -> float | None:
    return None if row.get("achieved_stars") is None else row["achieved_stars"] - row["requested_stars"]


# (label, value of a row or None, paired): paired lines get the per-map difference and its spread.
MEASURES = [
    *[(f"F1@{t}", lambda r, t=t: r["model"].get(t, {}).get("f1"), True) for t in ("10", "20", "50")],
    ("P@20", lambda r: r["model"].get("20", {}).get("precision"), True),
    ("R@20", lambda r: r["model"].get("20", {}).get("recall"), True),
    ("objects/s", lambda r: r.get("objects_per_s"), False),
    ("stars error, signed", _stars_error, False),
    ("rhythm distance", lambda r: r.get("rhythm_distance"), False),
]


def compare(before: dict[tuple[str, str], dict], after: dict[tuple[str, str], dict]) -> list[str]:
    """The report's lines: one block per mode with maps in both runs."""
    lines = []
    shared = [key for key in after if key in before]
    for mode in sorted({after[key]["mode"] for key in shared}):
        keys = [key for key in shared if after[key]["mode"] == mode]
        lines.append(f"{MODE_NAMES.get(mode, mode)}: {len(keys)} maps in both runs")
        for label, value, paired in MEASURES:
            pairs = [(value(before[k]), value(after[k])) for k in keys]
            pairs = np.array([p for p in pairs if None not in p], dtype=float).reshape(-1, 2)
            if not len(pairs):
                continue
            line = f"  {label:19s} {pairs[:, 0].mean():7.3f} -> {pairs[:, 1].mean():7.3f}"
            if paired:
                diff = pairs[:, 1] - pairs[:, 0]
                spread = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
                line += (f"   per map {diff.mean():+.3f} ± {spread:.3f}, "
                         f"{int((diff > 0).sum())} up, {int((diff < 0).sum())} down")
            lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m evaluation.compare BEFORE_DIR AFTER_DIR", file=sys.stderr)
        return 1
    try:
        before, after = read_rows(Path(argv[0])), read_rows(Path(argv[1]))
    except NoEvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    lines = compare(before, after)
    if not lines:
        print("error: the two runs share no scored map", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

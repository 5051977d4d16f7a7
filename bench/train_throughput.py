"""Training throughput: windows/s, tokens/s and peak memory of `osuT5/train.py` on a beatmap folder.

    python bench/train_throughput.py --data ../shared/beatmaps --config train_tiny --steps 60

Runs real training (data loading, augmentation, length bucketing, optimizer) for --steps steps with a
log line every --log-every steps, drops the first reading (start-up) and reports the median of the rest.
"""
from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"step (\d+) \| loss ([\d.]+) \| lr \S+ \| ([\d.]+) windows/s \| ([\d.]+) tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="beatmap folder (data.root)")
    parser.add_argument("--config", default="train_tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. optim.batch_size=8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(REPO / "osuT5" / "train.py"), "-cn", args.config, f"data.root={args.data}",
                   f"hydra.run.dir={out}", f"optim.max_steps={args.steps}", f"log_every={args.log_every}",
                   "data.val_split=null", f"checkpoint_every={args.steps * 10}", *args.overrides]
        run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if run.returncode != 0:
        sys.exit(f"training failed:\n{run.stderr[-3000:]}")
    readings = [(float(w), float(t)) for _, _, w, t in STEP_LINE.findall(run.stderr + run.stdout)][1:]
    if not readings:
        sys.exit("no step lines in the training log")
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    windows = statistics.median(w for w, _ in readings)
    tokens = statistics.median(t for _, t in readings)
    print(f"{args.config} {' '.join(args.overrides)}: median of {len(readings)} readings: {windows:.2f} windows/s, "
          f"{tokens:.0f} tokens/s, peak RSS {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()

"""Generate a map per (mode, val song) and check every file: the validity acceptance of the generation issue.

    python bench/generation_validity.py --data ../shared/beatmaps --model MODEL --songs 5 [key=value ...]

Each written file must parse in rosu-pp-py and in our reader, keep every object in the playfield,
never go back in time, have no two objects at one time (osu!/taiko/catch), keep every object within
2 ms of the written timing, and have an uninherited timing point (postprocess.validate). Prints one
line per file and a total; exits 1 when any run fails or any file has a problem.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from osuT5.pipeline import InferenceError, run  # noqa: E402
from postprocess.validate import validity_problems_file  # noqa: E402


def val_songs(data: Path, count: int) -> list[Path]:
    """The first `count` distinct audio files of the val split, in index order."""
    with open(data / "index.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    songs: list[Path] = []
    for row in rows:
        path = data / row["audio_path"]
        if path not in songs:
            songs.append(path)
    return songs[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--songs", type=int, default=5)
    parser.add_argument("--modes", default="0,1,2,3")
    parser.add_argument("overrides", nargs="*", help="inference config overrides, key=value")
    args = parser.parse_args()

    failures = total = 0
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for song in val_songs(args.data, args.songs):
            for mode in (int(m) for m in args.modes.split(",")):
                total += 1
                cfg = compose("inference_v29", overrides=[
                    f"model_path={args.model}", f"audio_path={song}", f"output_path={out}", f"gamemode={mode}",
                    "difficulty=4", "seed=0", "progress=false", *args.overrides])
                try:
                    result = run(cfg)
                except InferenceError as e:
                    failures += 1
                    print(f"mode {mode} {song.parent.name}: FAILED: {e}", flush=True)
                    continue
                problems = validity_problems_file(result.osu_path)
                failures += bool(problems)
                print(f"mode {mode} {song.parent.name}: {len(result.beatmap.hit_objects)} objects, {result.stars:.2f}*, "
                      f"{result.bpm:g} BPM, {result.seconds:.1f} s: {'; '.join(problems) or 'valid'}", flush=True)
    print(f"{total - failures} of {total} files valid")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

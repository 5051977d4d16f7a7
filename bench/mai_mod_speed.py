"""Seconds for MaiMod to review a 3-minute beatmap: the whole command in-process, median of --repeats.

    python bench/mai_mod_speed.py --osu MAP.osu --seconds 180 --repeats 3 threads=1 [key=value ...]

The map and its song are cut to their first --seconds (objects that end later are dropped) and written to
a temporary folder; extra key=value pairs go to configs/mai_mod.yaml. Each run loads the model, reads the
map and the song, scores every window and builds the report (printed to nowhere).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mai_mod import mai_mod  # noqa: E402
from osuT5.audio import DEFAULT_SAMPLE_RATE, load_audio  # noqa: E402
from tokenizer.osu_file import read_beatmap, write_beatmap  # noqa: E402


def cut(osu: Path, seconds: float, folder: Path) -> Path:
    """The map and its song up to `seconds`, in `folder`."""
    beatmap = read_beatmap(osu)
    audio = load_audio(osu.parent / beatmap.general["AudioFilename"].strip())
    soundfile.write(folder / "audio.wav", audio[:int(seconds * DEFAULT_SAMPLE_RATE)], DEFAULT_SAMPLE_RATE)
    end = seconds * 1000
    beatmap.hit_objects = [o for o in beatmap.hit_objects if o.finish < end]
    beatmap.general["AudioFilename"] = "audio.wav"
    path = folder / "map.osu"
    write_beatmap(beatmap, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--osu", required=True, help="a beatmap with its audio next to it")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="configs/mai_mod.yaml overrides, key=value")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder, initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        path = cut(Path(args.osu), args.seconds, Path(folder))
        objects = len(read_beatmap(path).hit_objects)
        cfg = compose("mai_mod", overrides=[f"beatmap_path={path}", "output=json", "progress=false", *args.overrides])
        for k in range(args.repeats):
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = mai_mod(cfg)
            runs.append(time.perf_counter() - began)
            tokens = json.loads(out.getvalue())["scored_tokens"] if code == 0 else "-"
            print(f"run {k + 1}: {runs[-1]:.1f} s ({objects} objects, {tokens} tokens scored)", flush=True)
    print(f"median {statistics.median(runs):.1f} s over {args.repeats} runs for {args.seconds:g} s of audio "
          f"({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()

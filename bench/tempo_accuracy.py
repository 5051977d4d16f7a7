"""How often the audio-only tempo estimate (postprocess.tempo) agrees with the mappers' timing, per song.

    python bench/tempo_accuracy.py ../shared/beatmaps --split val

One reference per set (its first difficulty): its main BPM (the one that lasts longest) against the
estimate. "Octave" counts an estimate at 1/4, 1/2, 2/3, 3/2, 2 or 4 times the BPM (same grid, other
beat level). "Phase" is the estimate's beat nearest the song's middle minus the mapper's nearest beat.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.metrics import main_bpm  # noqa: E402
from osuT5.audio import DEFAULT_SAMPLE_RATE, load_audio  # noqa: E402
from osuT5.sources import find_beatmaps  # noqa: E402
from postprocess.tempo import OnsetEnvelope, estimate_redline  # noqa: E402
from tokenizer.osu_file import read_beatmap  # noqa: E402
from tokenizer.timing import Timing  # noqa: E402

OCTAVES = (0.25, 0.5, 2 / 3, 1.5, 2.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a corpus folder with index.csv")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    firsts = {}
    for entry in find_beatmaps(args.root, split=args.split):
        firsts.setdefault(entry.set_key, entry)
    exact = octave = on_beat = 0
    phases, seconds = [], []
    for key, entry in sorted(firsts.items()):
        audio = load_audio(entry.audio_path, DEFAULT_SAMPLE_RATE)
        song_ms = len(audio) * 1000 / DEFAULT_SAMPLE_RATE
        reference = read_beatmap(entry.osu_path)
        began = time.perf_counter()
        redline = estimate_redline(OnsetEnvelope.of(audio, DEFAULT_SAMPLE_RATE))
        seconds.append(time.perf_counter() - began)
        human = main_bpm(reference, song_ms)
        if redline is None:
            print(f"{key}: human {human:.2f} BPM, no estimate")
            continue
        bpm = 60000 / redline.beat_length
        mine = redline.time + round((song_ms / 2 - redline.time) / redline.beat_length) * redline.beat_length
        human_redline = Timing(reference.timing_points).redline_at(mine)
        beat = human_redline.clamped_beat_length
        phase = mine - (human_redline.time + round((mine - human_redline.time) / beat) * beat)
        verdict = "same" if abs(bpm - human) <= 1 else "octave" if any(abs(bpm / human - f) < 0.01 for f in OCTAVES) else "wrong"
        exact += verdict == "same"
        octave += verdict == "octave"
        if verdict == "same":
            phases.append(phase)
            on_beat += abs(phase) <= 10
        print(f"{key}: human {human:.2f} BPM, estimate {bpm:.3f} ({verdict}), phase {phase:+.1f} ms")
    n = len(firsts)
    print(f"{args.split}: {n} songs; BPM within 1: {exact}/{n}; another beat level: {octave}/{n}; "
          f"wrong: {n - exact - octave}/{n}; same BPM and phase within 10 ms: {on_beat}/{n}; "
          f"median phase (same BPM) {statistics.median(phases):+.1f} ms; "
          f"median {statistics.median(seconds):.2f} s per song")


if __name__ == "__main__":
    main()

"""How often the audio-only tempo estimate (postprocess.tempo) agrees with the mappers' timing, per song.

    python bench/tempo_accuracy.py ../shared/beatmaps --split val

One reference per set (its first difficulty): its main BPM (the one that lasts longest) against the
estimate. "Octave" counts an estimate at 1/4, 1/2, 2/3, 3/2, 2 or 4 times the BPM (same grid, other
beat level). "Phase" is the estimate's beat nearest the song's middle minus the mapper's nearest beat.
"On ticks" is what a map snapped to the timing inference uses (the estimate, then `follow_tempo`) can reach
over the whole song: the share of the reference's onsets within 10 and 20 ms of its 1/4 ticks, against the
same share on the mapper's own timing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from evaluation.metrics import main_bpm, nearest_distance, onsets  # noqa: E402
from osuT5.audio import DEFAULT_SAMPLE_RATE, load_audio  # noqa: E402
from osuT5.sources import find_beatmaps  # noqa: E402
from postprocess.rhythm import SongOnsets  # noqa: E402
from postprocess.tempo import estimate_redline, follow_tempo  # noqa: E402
from tokenizer.osu_file import read_beatmap  # noqa: E402
from tokenizer.timing import Timing  # noqa: E402

OCTAVES = (0.25, 0.5, 2 / 3, 1.5, 2.0, 4.0)
TOLERANCES_MS = (10, 20)


def on_ticks(timing: Timing, times: np.ndarray, tolerance_ms: float) -> float:
    """The share of `times` within `tolerance_ms` of a 1/4 tick of `timing`."""
    return float(np.mean(nearest_distance(timing.ticks(4, times[0] - 1000, times[-1] + 1000), times) <= tolerance_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a corpus folder with index.csv")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    firsts = {}
    for entry in find_beatmaps(args.root, split=args.split):
        firsts.setdefault(entry.set_key, entry)
    exact = octave = on_beat = 0
    phases, seconds, shares = [], [], []
    for key, entry in sorted(firsts.items()):
        audio = load_audio(entry.audio_path, DEFAULT_SAMPLE_RATE)
        song_ms = len(audio) * 1000 / DEFAULT_SAMPLE_RATE
        reference = read_beatmap(entry.osu_path)
        began = time.perf_counter()
        song = SongOnsets.of(audio, DEFAULT_SAMPLE_RATE)
        envelope = song.whole
        redline = estimate_redline(envelope, song.phase)
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
        times = np.array(onsets(reference), dtype=float)
        followed = Timing(follow_tempo(envelope, [redline], song_ms))
        shares.append([on_ticks(timing, times, t) for timing in (followed, Timing(reference.timing_points)) for t in TOLERANCES_MS])
        print(f"{key}: human {human:.2f} BPM, estimate {bpm:.3f} ({verdict}), phase {phase:+.1f} ms, "
              f"on ticks {shares[-1][0]:.0%} / {shares[-1][1]:.0%}")
    n = len(firsts)
    estimate_10, estimate_20, mapper_10, mapper_20 = np.mean(shares, axis=0)
    print(f"{args.split}: {n} songs; BPM within 1: {exact}/{n}; another beat level: {octave}/{n}; "
          f"wrong: {n - exact - octave}/{n}; same BPM and phase within 10 ms: {on_beat}/{n}; "
          f"median phase (same BPM) {statistics.median(phases):+.1f} ms; onsets on the 1/4 ticks within 10 / 20 ms: "
          f"{estimate_10:.3f} / {estimate_20:.3f} (the mapper's timing: {mapper_10:.3f} / {mapper_20:.3f}); "
          f"median {statistics.median(seconds):.2f} s per song")

if __name__ == "__main__":
    main()

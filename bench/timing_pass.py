"""The model's timing pass against the audio's own tempo estimate, per song: which beats do the song's onsets back?

    python bench/timing_pass.py ../shared/beatmaps --split train --songs 22 [key=value ...]

One osu! or mania reference per set (its first difficulty, requested at its star rating, seed 0). For
each: the redlines of the timing pass (`timing_source=model`) and of the audio estimate, their
`beat_support` (onset strength on their beats over the song's mean: 1 is chance), the main BPM and
the phase of their beat nearest the mapper's at the song's middle, and which one `timing_source=auto`
would keep. Extra key=value pairs go to configs/inference_v29.yaml (e.g. model_path=RUN/model).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.metrics import beat_phase_error, main_bpm  # noqa: E402
from osuT5.audio import DEFAULT_SAMPLE_RATE  # noqa: E402
from osuT5.generate import ContextPlan  # noqa: E402
from osuT5.pipeline import build_generator, load_song, resolve  # noqa: E402
from osuT5.sources import find_beatmaps  # noqa: E402
from postprocess.tempo import beat_support, estimate_redline  # noqa: E402
from postprocess.timing import markers_to_timing_points  # noqa: E402
from tokenizer.events import ContextType, EventType  # noqa: E402
from tokenizer.osu_file import Beatmap, read_beatmap  # noqa: E402
from tokenizer.timing import TimingPoint  # noqa: E402

BEAT_EVENTS = (EventType.BEAT, EventType.MEASURE, EventType.TIMING_POINT)


def describe(redlines: list[TimingPoint], reference: Beatmap, song_ms: float) -> str:
    """Main BPM and the phase (ms) of the beat nearest the mapper's beat at the song's middle."""
    timed = replace(reference, timing_points=redlines)
    return f"{main_bpm(timed, song_ms):6.1f} BPM, phase {beat_phase_error(timed, reference, song_ms / 2):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a corpus folder with index.csv")
    parser.add_argument("--split", default="train")
    parser.add_argument("--songs", type=int, default=22)
    parser.add_argument("overrides", nargs="*", help="inference config overrides, key=value")
    args = parser.parse_intermixed_args()
    firsts = {}
    for entry in find_beatmaps(args.root, split=args.split, modes=[0, 3]):
        firsts.setdefault(entry.set_key, entry)
    model_support, audio_support, auto_model = [], [], 0
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for key, entry in sorted(firsts.items())[:args.songs]:
            reference = read_beatmap(entry.osu_path)
            cfg = compose("inference_v29", overrides=[f"audio_path={entry.audio_path}", f"gamemode={reference.mode}",
                                                      f"difficulty={entry.star_rating}", "seed=0", "progress=false",
                                                      *args.overrides])
            request = resolve(cfg)
            generator = build_generator(request, load_song(request.audio_path, DEFAULT_SAMPLE_RATE))
            plan = ContextPlan(in_contexts=[(ContextType.NONE, [], [])], finished={}, metadata=request.metadata)
            groups = generator.generate_context(ContextType.TIMING, generator.windows(), plan)
            generated = markers_to_timing_points([(g.time, g.type) for g in groups if g.type in BEAT_EVENTS],
                                                 leniency=float(cfg.timing_leniency))
            estimated = estimate_redline(generator.onsets, generator.song_onsets.phase, float(cfg.min_bpm), float(cfg.max_bpm))
            if not generated or estimated is None:
                print(f"{key}: {'no generated beats' if not generated else 'no audio estimate'}")
                continue
            supports = beat_support(generator.onsets, generated), beat_support(generator.onsets, [estimated])
            keeps_model = supports[0] * float(cfg.audio_timing_margin) >= supports[1]
            model_support.append(supports[0])
            audio_support.append(supports[1])
            auto_model += keeps_model
            song_ms = generator.song_ms
            print(f"{key} mode {reference.mode}: human {main_bpm(reference, song_ms):6.1f} BPM | "
                  f"model {len(generated)} redlines, {describe(generated, reference, song_ms)}, support {supports[0]:.2f} | "
                  f"audio {describe([estimated], reference, song_ms)}, support {supports[1]:.2f} | "
                  f"auto keeps {'the model' if keeps_model else 'the audio'}", flush=True)
    if model_support:
        print(f"{len(model_support)} songs: model support {min(model_support):.2f}-{max(model_support):.2f}, "
              f"audio {min(audio_support):.2f}-{max(audio_support):.2f}; auto keeps the model's timing on {auto_model}")


if __name__ == "__main__":
    main()

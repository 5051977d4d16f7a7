"""Rank the likely mistakes in a beatmap: `python mai_mod.py beatmap_path="path/to/map.osu"`.

The generator reads the map and its song (osuT5/critic.py) and the tokens that surprise it most become
suggestions for the mapper (osuT5/suggestions.py). All parameters are in configs/mai_mod.yaml. The
beatmap is only read. Bad input ends with one sentence and exit code 1.
"""
from __future__ import annotations

import os
import sys
import warnings

import hydra
from omegaconf import DictConfig

from osuT5.audio import AudioError, AudioWarning
from osuT5.cli import check_command_line
from osuT5.critic import review
from osuT5.pipeline import InferenceError
from osuT5.suggestions import check_options, print_rich, render_json, render_text, suggestions, top_per_category
from tokenizer.osu_file import BeatmapError

CONFIG = "mai_mod"  # configs/mai_mod.yaml


def mai_mod(cfg: DictConfig) -> int:
    """Review one beatmap and print the report; the exit code (0 or 1)."""
    try:
        check_options(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("always", AudioWarning)
            warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
            result = review(cfg)
    except (InferenceError, AudioError, BeatmapError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    top = top_per_category(suggestions(result, float(cfg.min_surprisal), float(cfg.time_tolerance_ms)), int(cfg.top_n))
    try:
        if cfg.output == "json":
            print(render_json(result, top, cfg))
        elif cfg.output == "text":
            print(render_text(result, top, float(cfg.likely_issue), float(cfg.subjective)))
        else:
            print_rich(result, top, float(cfg.likely_issue), float(cfg.subjective))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped early: nothing more to say
        sys.stdout = open(os.devnull, "w")
    return 0


@hydra.main(version_base="1.3", config_path="configs", config_name=CONFIG)
def main(cfg: DictConfig) -> None:
    code = mai_mod(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    sys.argv = check_command_line(sys.argv, CONFIG)
    main()

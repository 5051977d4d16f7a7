"""Turn a song into a beatmap: `python inference.py audio_path=song.mp3 gamemode=0 difficulty=5.5`.

All parameters are in configs/inference_v29.yaml. Bad input ends with one sentence and exit code 1.
"""
from __future__ import annotations

import sys
import warnings

import hydra
from omegaconf import DictConfig

from osuT5.audio import AudioError, AudioWarning
from osuT5.cli import check_command_line
from osuT5.pipeline import InferenceError, run
from tokenizer.osu_file import BeatmapError

CONFIG = "inference_v29"  # configs/inference_v29.yaml


def generate(cfg: DictConfig) -> int:
    """Run one request and print its summary; the exit code (0 or 1)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AudioWarning)
            warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
            result = run(cfg)
    except (InferenceError, AudioError, BeatmapError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


@hydra.main(version_base="1.3", config_path="configs", config_name=CONFIG)
def main(cfg: DictConfig) -> None:
    code = generate(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    sys.argv = check_command_line(sys.argv, CONFIG)
    main()

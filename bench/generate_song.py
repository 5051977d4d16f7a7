"""Seconds to generate a beatmap for a 3-minute song with inference.py's pipeline, tokens/s and peak memory.

    python bench/generate_song.py --model outputs/train/tiny_main/model --audio song.ogg --repeats 3 [key=value ...]

The audio is cut (or looped) to --seconds and written to a temporary wav; extra key=value pairs go to
configs/inference_v29.yaml (e.g. precision=fp32 gamemode=3). Prints one line per run and the medians.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from osuT5.audio import load_audio  # noqa: E402
from osuT5.generate import WindowRules, decode_window  # noqa: E402
from osuT5.logits import SamplingConfig, TokenKinds  # noqa: E402
from osuT5.model import Mapperatorinator, pad_to_window  # noqa: E402
from osuT5.pipeline import InferenceError, load_generator, pick_precision, run  # noqa: E402
from tokenizer.vocabulary import SOS, Tokenizer  # noqa: E402


def sustained_decode_rate(model: Mapperatorinator, tokenizer: Tokenizer, audio: np.ndarray, tokens: int = 256) -> float:
    """Tokens/s of the KV-cached decode loop when nothing stops it (batch 1): what a dense map costs per token.
    Decoding on a CPU runs without autocast, as in the pipeline, so `amp` measures as fp32."""
    window = pad_to_window(torch.from_numpy(audio[:model.config.window_samples]), model.config.window_samples)
    rules = WindowRules(eos_ids=frozenset(), max_new_tokens=tokens)
    with torch.no_grad():
        states = model.encode(window[None])
        began = time.perf_counter()
        out = decode_window(model, states, [[tokenizer.context_sos["none"], tokenizer.context_eos["none"], SOS]],
                            TokenKinds(tokenizer), rules, SamplingConfig(do_sample=False))
    return len(out) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--audio", required=True, help="any song; it is cut or looped to --seconds")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="inference config overrides, key=value")
    args = parser.parse_args()

    audio = load_audio(args.audio)
    samples = int(args.seconds * 16000)
    audio = np.tile(audio, int(np.ceil(samples / len(audio))))[:samples]
    with tempfile.TemporaryDirectory() as folder, initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        song = Path(folder) / "song.wav"
        soundfile.write(song, audio, 16000)
        overrides = [f"model_path={args.model}", f"audio_path={song}", "progress=false", "threads=2", *args.overrides]
        seconds, rates = [], []
        for repeat in range(args.repeats):
            cfg = compose("inference_v29", overrides=overrides + [f"seed={repeat}"])
            began = time.perf_counter()
            try:
                result = run(cfg)
                tokens, outcome = result.tokens, f"{len(result.beatmap.hit_objects)} objects"
            except InferenceError as e:  # an undertrained model may write nothing: the passes still ran
                tokens, outcome = 0, f"refused: {e}"
            elapsed = time.perf_counter() - began
            seconds.append(elapsed)
            rates.append(tokens / elapsed)
            print(f"run {repeat + 1}: {elapsed:.1f} s, {tokens} tokens, {tokens / elapsed:.0f} tokens/s, {outcome}", flush=True)
    torch.set_num_threads(2)
    precision = pick_precision(str(cfg.precision), torch.device("cpu"))  # what the runs above used
    model, tokenizer = load_generator(cfg, torch.device("cpu"), precision)
    sustained = sustained_decode_rate(model, tokenizer, audio)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.seconds:g} s of audio: median {statistics.median(seconds):.1f} s "
          f"({', '.join(f'{s:.1f}' for s in seconds)}), median {statistics.median(rates):.0f} tokens/s, "
          f"peak RSS {peak_gib:.2f} GiB; sustained decoding {sustained:.0f} tokens/s at batch 1")


if __name__ == "__main__":
    main()

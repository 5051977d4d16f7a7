"""Make a lean, shippable model folder from a trained one or a checkpoint.

    python -m osuT5.export outputs/train/RUN/checkpoints/checkpoint-2000 weights/generator --dtype bf16

Weights are stored in half precision (half the size; inference casts them back to its own precision),
with the config and tokenizer.json next to them. An existing destination is never overwritten.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .model import load_model, save_model

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def export(source: Path, destination: Path, dtype: torch.dtype) -> int:
    """Write `source`'s model in `dtype` to `destination`; the size of the weights file in bytes."""
    model, tokenizer = load_model(source)
    save_model(model.to(dtype), tokenizer, destination)
    return (destination / "model.safetensors").stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a model folder or a training checkpoint")
    parser.add_argument("destination", type=Path, help="a new folder")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    args = parser.parse_args(argv)
    if args.destination.exists():
        print(f"error: {args.destination} already exists; remove it or pick another folder", file=sys.stderr)
        return 1
    try:
        size = export(args.source, args.destination, DTYPES[args.dtype])
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.destination}: {size / 2**20:.1f} MiB of {args.dtype} weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: `python -m tokenizer check PATH...` round-trips .osu files and reports the losses."""
from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from .check import check_file, osu_files, summary
from .vocabulary import Tokenizer, TokenizerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenizer")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="round-trip .osu files through events and token ids")
    check.add_argument("paths", nargs="+", help=".osu files or folders (searched recursively)")
    check.add_argument("--config", default="v29", help="tokenizer config name in configs/tokenizer (default v29)")
    check.add_argument("--warnings", action="store_true", help="also print the reader's warnings")
    args = parser.parse_args(argv)

    try:
        tokenizer = Tokenizer(TokenizerConfig.from_yaml(args.config))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        print(f"error: {missing[0]} does not exist", file=sys.stderr)
        return 2
    files = osu_files(args.paths)
    if not files:
        print("error: no .osu files found under the given paths", file=sys.stderr)
        return 2
    reports = []
    for path in tqdm(files, desc="checking", unit="file", disable=len(files) < 20, file=sys.stderr):
        report = check_file(path, tokenizer)
        reports.append(report)
        tqdm.write(report.line())
        if args.warnings:
            for warning in report.warnings:
                tqdm.write(f"  warning: {warning}")
    print(summary(reports))
    return 1 if any(r.error for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())

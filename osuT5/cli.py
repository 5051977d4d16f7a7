"""Command-line help shared by the entry points (inference.py, mai_mod.py, evaluate.py)."""
from __future__ import annotations

import re

# Keys whose values are file or folder paths, matched on the last part of a dotted key.
PATH_KEYS = frozenset({"audio_path", "beatmap_path", "output_path", "model_path", "diff_model_path", "background",
                       "generated_path", "rhythm_model_path", "data_root", "output_dir", "replay"})


def hydra_quote(value: str) -> str:
    """`value` as a single-quoted Hydra string that parses back to exactly `value`.

    Inside quotes Hydra keeps backslashes, except that a run of them before a quote (or the closing
    quote) halves: so quotes are escaped and such runs doubled (Windows paths keep working).
    """
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def quote_paths(argv: list[str]) -> list[str]:
    """Quote unquoted path values for Hydra, whose override syntax reads the brackets, parentheses,
    commas and apostrophes of osu! file names ("Artist - Title (Mapper) [Hard].osu") as its own. `null` stays
    Hydra's null, which turns an optional path off."""
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~").rsplit(".", 1)[-1] in PATH_KEYS and value and value[0] not in "'\"" and value != "null":
            arg = f"{key}={hydra_quote(value)}"
        quoted.append(arg)
    return quoted

"""Command-line help shared by the entry points (inference.py, mai_mod.py, evaluate.py)."""
from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import ListConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

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


def override_error(arg: str, config: dict) -> str | None:
    """One sentence on why the command-line setting `arg` cannot apply to `config` (the entry point's
    config file as plain dicts and lists, interpolations unresolved), or None: an unknown key (with the
    nearest known one), a comma (Hydra's sweep) or a value of the wrong kind for a key whose default is
    true/false or a number. Keys whose default is null are checked where they are used."""
    if "=" not in arg:
        return None
    try:
        override = OverridesParser.create().parse_overrides([arg])[0]
    except OverrideParseException as e:
        return f"cannot read the setting {arg}: {str(e).splitlines()[0]}"
    key = override.key_or_group
    if override.is_add() or override.is_force_add() or override.is_delete() or key.split(".")[0] == "hydra":
        return None
    node, known = config, ""
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            choices = [str(k) for k in node] if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, choices, n=1)
            if close:
                return f"there is no setting {key} (did you mean {known}{close[0]}?)"
            return f"there is no setting {key}" + (f" (new ones are added with +{key}=VALUE)" if known else "")
        node, known = node[part], f"{known}{part}."
    if override.is_sweep_override():
        how = "a list goes in brackets: [a,b]" if isinstance(node, list) else \
            "decimals are written with a dot (5.5), text with commas goes in quotes"
        return f"{key} takes one value, not {arg.partition('=')[2]} ({how})"
    return value_error(key, node, override.value())


def value_error(key: str, default, value) -> str | None:
    """One sentence if `value` is the wrong kind for `key`, judged by its `default`: true/false or a
    number; lists are left to the setting's user (settings given once or per mode take both)."""
    if isinstance(value, (list, ListConfig)):
        return None
    if isinstance(default, bool) and not isinstance(value, bool):
        return f"{key} must be true or false, not {value}"
    if is_number(default) and not is_number(value):
        return f"{key} must be a number, not {value}"
    return None


def check_command_line(argv: list[str], config_name: str) -> list[str]:
    """`argv` with its paths quoted for Hydra (`quote_paths`); a setting that cannot apply ends the program
    with one sentence and exit code 1 instead of Hydra's multi-line message or a TypeError deep inside."""
    argv = quote_paths(argv)
    if any(arg.startswith("-") for arg in argv[1:]):
        return argv  # Hydra's own flags (--help, -cn NAME, --multirun): the settings are Hydra's to check
    config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), resolve=False)
    for arg in argv[1:]:
        error = override_error(arg, config)
        if error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
    return argv


def is_number(value) -> bool:
    """An int or float, not a bool (YAML's true is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)

"""A generation saved before post-processing: the model's groups, its redlines and the mode.

Post-processing (snapping, separation, onset snapping, star fitting) takes seconds; generation takes
minutes. With the groups saved (`save_generated=true`) any post-processing setting can be tried
again on the same generation (`generated_path=`), and evaluate.py can rescore a whole run (`replay=`).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizer.events import EventType, Group
from tokenizer.timing import TimingPoint

FORMAT = 1
SUFFIX = ".generated.json"


class GeneratedError(ValueError):
    """A saved generation that cannot be read."""


@dataclass
class Generation:
    """What the model wrote for one song, before post-processing: every pass's groups and the redlines."""
    mode: int
    redlines: list[TimingPoint]
    groups: list[Group]


def write_generated(path: Path, generation: Generation) -> None:
    """Save a generation as JSON, written whole or not at all."""
    data = {"format": FORMAT, "mode": generation.mode,
            "redlines": [dataclasses.asdict(p) for p in generation.redlines],
            "groups": [{**dataclasses.asdict(g), "type": g.type.value} for g in generation.groups]}
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def read_generated(path: Path) -> Generation:
    """The saved generation, or GeneratedError saying why there is none."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise GeneratedError(f"cannot read the saved generation {path}: {e.strerror or e}") from None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GeneratedError(f"{path} is not a saved generation (save_generated=true writes them)")
    try:
        return Generation(int(data["mode"]), [TimingPoint(**p) for p in data["redlines"]],
                          [Group(**{**g, "type": EventType(g["type"])}) for g in data["groups"]])
    except (ValueError, KeyError, TypeError) as e:
        raise GeneratedError(f"{path} is a damaged saved generation ({type(e).__name__}: {e})") from None

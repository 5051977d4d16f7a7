"""Per-mode summaries of evaluation rows, and the report: metrics.json, report.md and its plots."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

from .metrics import RHYTHMS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODE_NAMES = {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}
SYSTEMS = ("model", "flux", "grid")
SYSTEM_NAMES = {"model": "model", "flux": "spectral flux (oracle count)", "grid": "1/2-beat grid (reference timing)"}
STAR_RANGE = (2.0, 6.0)  # osu! star-rating acceptance range
LAYOUTS = ("overlapping", "spread", "long_combos", "single_combos", "near_edges", "centre_px")


class NoEvaluationError(ValueError):
    """A folder without an evaluation's metrics.json."""


def read_rows(run_dir: Path) -> dict[tuple[str, str], dict]:
    """(set, reference file name) -> that map's row in an earlier evaluation's metrics.json."""
    try:
        rows = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))["maps"]
        return {(row["set"], row["osu"]): row for row in rows}
    except (OSError, ValueError, KeyError, TypeError):
        raise NoEvaluationError(f"{run_dir} holds no evaluation (metrics.json)") from None


def primary_tolerance(tolerances: list[int]) -> str:
    """The tolerance the plots and precision/recall columns use: 20 ms when evaluated, else the middle one."""
    return str(20 if 20 in tolerances else sorted(tolerances)[len(tolerances) // 2])


def summarize(rows: list[dict], tolerances: list[int]) -> dict:
    """Means over maps per mode and overall (failed generations count as F1 0 and as invalid)."""
    groups = {MODE_NAMES[m]: [r for r in rows if r["mode"] == m] for m in sorted({r["mode"] for r in rows})}
    groups["overall"] = rows
    return {name: _summary(group, tolerances) for name, group in groups.items() if group}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _stars(rows: list[dict]) -> dict:
    errors = [r["achieved_stars"] - r["requested_stars"] for r in rows if r["achieved_stars"] is not None]
    return {"maps": len(errors), "signed_mean": _mean(errors),
            "rmse": float(np.sqrt(np.mean(np.square(errors)))) if errors else None}


def _summary(rows: list[dict], tolerances: list[int]) -> dict:
    written = [r for r in rows if r["error"] is None]
    summary = {
        "maps": len(rows),
        "failed": len(rows) - len(written),
        "validity_rate": sum(r["valid"] for r in rows) / len(rows),
        "onsets": {system: {str(t): {k: _mean(r[system][str(t)][k] for r in rows) for k in ("precision", "recall", "f1")}
                            for t in tolerances} for system in SYSTEMS},
        "median_offset_ms": _median(r["median_offset_ms"] for r in rows),
        "stars": _stars(rows),
        "bpm_abs_error_median": _median(abs(r["bpm_error"]) for r in written if r["bpm_error"] is not None),
        "bpm_within_1": _mean(abs(r["bpm_error"]) <= 1 for r in written if r["bpm_error"] is not None),
        "phase_abs_error_ms_median": _median(abs(r["phase_error_ms"]) for r in written if r["phase_error_ms"] is not None),
        "objects_per_s": _mean(r["objects_per_s"] for r in written),
        "reference_objects_per_s": _mean(r["reference_objects_per_s"] for r in rows),
        "rhythm": {name: _mean(r["rhythm"][name] for r in written) for name in RHYTHMS},
        "reference_rhythm": {name: _mean(r["reference_rhythm"][name] for r in rows) for name in RHYTHMS},
        "rhythm_distance": _mean(r["rhythm_distance"] for r in written),
        "layout": {name: _mean(r["layout"][name] for r in written if r.get("layout")) for name in LAYOUTS},
        "reference_layout": {name: _mean(r["reference_layout"][name] for r in rows if r.get("reference_layout"))
                             for name in LAYOUTS},
        "seconds_per_audio_minute": sum(r["seconds"] for r in rows) / max(sum(r["audio_s"] for r in rows) / 60, 1e-9),
    }
    if all(r["mode"] == 0 for r in rows):
        low, high = STAR_RANGE
        summary["stars_2_to_6"] = _stars([r for r in rows if low <= r["requested_stars"] <= high])
    if all("columns" in r for r in rows):
        summary["columns"] = {str(t): {k: _mean(r["columns"][str(t)][k] for r in rows) for k in ("precision", "recall", "f1")}
                              for t in tolerances}
    return summary


def write_report(folder: Path, rows: list[dict], skipped: list[dict], summary: dict, tolerances: list[int],
                 config: dict, onset_plot: dict | None) -> Path:
    """metrics.json (config, summary, rows, skipped references), report.md and the PNG plots; the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"config": config, "summary": summary, "maps": rows,
                                                     "skipped": skipped}, indent=1))
    plots = _plots(folder, rows, onset_plot)
    lines = [f"# Evaluation: {config['generation'].get('model_path')}", "",
             f"{len(rows)} reference maps from {config['data_root']} ({config['split']} split), seed {config['seed']}. "
             "Means over maps; a failed generation counts as F1 0 and as invalid.", ""]
    lines += [f"Skipped: {s['osu']}: {s['reason']}." for s in skipped] + ([""] if skipped else [])
    lines += _onset_table(summary, tolerances)
    lines += _other_table(summary)
    lines += _rhythm_table(summary)
    lines += _layout_lines(summary)
    lines += [f"![{name}]({name}.png)" for name in plots]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _onset_table(summary: dict, tolerances: list[int]) -> list[str]:
    middle = primary_tolerance(tolerances)
    header = "| mode | system | " + " | ".join(f"F1@{t}" for t in tolerances) + f" | P@{middle} | R@{middle} |"
    lines = ["## Onsets (circles, slider heads, hold heads)", "", header, "|" + "---|" * (len(tolerances) + 4)]
    for mode, s in summary.items():
        for system in SYSTEMS:
            scores = s["onsets"][system]
            lines.append(f"| {mode} | {SYSTEM_NAMES[system]} | " + " | ".join(_number(scores[str(t)]["f1"]) for t in tolerances)
                         + f" | {_number(scores[middle]['precision'])} | {_number(scores[middle]['recall'])} |")
        if "columns" in s:
            lines.append(f"| {mode} | model, column-aware | " + " | ".join(_number(s["columns"][str(t)]["f1"]) for t in tolerances)
                         + f" | {_number(s['columns'][middle]['precision'])} | {_number(s['columns'][middle]['recall'])} |")
    return lines + [""]


def _other_table(summary: dict) -> list[str]:
    lines = ["## Stars, timing, density, validity, speed", "",
             "| mode | maps | failed | valid | stars signed mean | stars RMSE | median offset ms | |BPM err| median | "
             "BPM within 1 | |phase err| ms median | objects/s (ref) | s per audio min |",
             "|" + "---|" * 12]
    for mode, s in summary.items():
        lines.append(
            f"| {mode} | {s['maps']} | {s['failed']} | {s['validity_rate']:.0%} | {_number(s['stars']['signed_mean'], 2)} | "
            f"{_number(s['stars']['rmse'], 2)} | {_number(s['median_offset_ms'], 1)} | {_number(s['bpm_abs_error_median'], 2)} | "
            f"{_number(s['bpm_within_1'], 2)} | {_number(s['phase_abs_error_ms_median'], 1)} | "
            f"{_number(s['objects_per_s'], 2)} ({_number(s['reference_objects_per_s'], 2)}) | {s['seconds_per_audio_minute']:.1f} |")
    if "stars_2_to_6" in summary.get("osu!", {}):
        stars = summary["osu!"]["stars_2_to_6"]
        lines += ["", f"osu! maps requested at 2-6*: {stars['maps']} maps, signed mean error {_number(stars['signed_mean'], 2)}*, "
                      f"RMSE {_number(stars['rmse'], 2)}*."]
    return lines + [""]


def _rhythm_table(summary: dict) -> list[str]:
    lines = ["## Rhythm: share of onsets on each beat fraction of the map's own timing, model (human)", "",
             "| mode | " + " | ".join(RHYTHMS) + " | distance to the human mix |", "|" + "---|" * (len(RHYTHMS) + 2)]
    for mode, s in summary.items():
        lines.append(f"| {mode} | " + " | ".join(f"{_number(s['rhythm'][name], 2)} ({_number(s['reference_rhythm'][name], 2)})"
                                                 for name in RHYTHMS) + f" | {_number(s['rhythm_distance'], 2)} |")
    return lines + ["", "The distance is the total variation between a map's mix and its reference's (0: the same, "
                        "1: nothing shared), averaged over maps.", ""]


def _layout_lines(summary: dict) -> list[str]:
    s = summary.get("osu!")
    if s is None or s["layout"]["overlapping"] is None:
        return []
    model, human = s["layout"], s["reference_layout"]
    return ["## Layout (osu!): model (human), means over maps", "",
            f"Jumps of a 3/8 beat or more whose circles overlap (stacks apart): {_number(model['overlapping'], 2)} "
            f"({_number(human['overlapping'], 2)}); spread of their px per beat, 90th over 10th percentile: "
            f"{_number(model['spread'], 2)} ({_number(human['spread'], 2)}). Combos over 12 objects: "
            f"{_number(model['long_combos'], 3)} ({_number(human['long_combos'], 3)}); of one object: "
            f"{_number(model['single_combos'], 3)} ({_number(human['single_combos'], 3)}). Objects within 64 px (x) or 48 px "
            f"(y) of an edge: {_number(model['near_edges'], 2)} ({_number(human['near_edges'], 2)}); their median distance "
            f"from the playfield's centre: {_number(model['centre_px'], 0)} ({_number(human['centre_px'], 0)}) px.", ""]


def _plots(folder: Path, rows: list[dict], onset_plot: dict | None) -> list[str]:
    names = []
    key = primary_tolerance([int(k) for k in rows[0]["model"]])
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in sorted({r["mode"] for r in rows}):
        mine = [r for r in rows if r["mode"] == mode]
        ax.scatter([r["requested_stars"] for r in mine], [r["model"][key]["f1"] for r in mine], label=MODE_NAMES[mode], s=16)
    ax.set(xlabel="requested star rating", ylabel=f"onset F1 @ {key} ms", ylim=(0, 1), title="F1 by requested difficulty")
    ax.legend()
    names.append(_save(fig, folder, "f1_by_difficulty"))

    fig, ax = plt.subplots(figsize=(5, 5))
    done = [r for r in rows if r["achieved_stars"] is not None]
    for mode in sorted({r["mode"] for r in done}):
        mine = [r for r in done if r["mode"] == mode]
        ax.scatter([r["requested_stars"] for r in mine], [r["achieved_stars"] for r in mine], label=MODE_NAMES[mode], s=16)
    top = max([r["requested_stars"] for r in rows] + [r["achieved_stars"] for r in done] + [1])
    ax.plot([0, top], [0, top], color="grey", linewidth=1)
    ax.set(xlabel="requested star rating", ylabel="achieved star rating", title="Requested vs achieved stars")
    if done:
        ax.legend()
    names.append(_save(fig, folder, "stars"))

    if onset_plot is not None:
        fig, ax = plt.subplots(figsize=(12, 3.5))
        times, strength = onset_plot["times"] / 1000, onset_plot["strength"]
        ax.plot(times, strength / max(strength.max(), 1e-9), color="grey", linewidth=0.6, label="onset strength")
        ax.vlines(onset_plot["reference"] / 1000, 1.05, 1.25, color="tab:blue", label="human")
        ax.vlines(onset_plot["generated"] / 1000, 1.3, 1.5, color="tab:orange", label="generated")
        ax.set(xlabel="seconds", yticks=[], xlim=(times[0], times[-1]), title=onset_plot["title"])
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the plot, off the ticks
        names.append(_save(fig, folder, "onsets"))
    return names


def _save(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=110)
    plt.close(fig)
    return name

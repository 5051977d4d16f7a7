"""Measure the generator against human maps: `python evaluate.py [generation.model_path=...]`.

For each reference beatmap (default: the val split of ../shared/beatmaps) one map is generated from
its audio with the reference's mode, star rating, CS/keycount and a fixed seed, then scored
(evaluation/). Writes metrics.json, report.md with plots, and the generated maps and their saved
generations to output_dir. `replay=DIR` post-processes DIR's saved generations again instead of
running the model: minutes become seconds when only post-processing settings change.
All parameters are in configs/evaluate.yaml. Bad input ends with one sentence and exit code 1.
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from evaluation.metrics import onsets
from evaluation.report import NoEvaluationError, primary_tolerance, read_rows, summarize, write_report
from evaluation.scoring import score_map
from osuT5.audio import DEFAULT_SAMPLE_RATE, AudioError, load_audio, onset_strength
from osuT5.cli import check_command_line, is_number, value_error
from osuT5.model import load_model
from osuT5.pipeline import EmptyMapError, InferenceError, run
from osuT5.sources import BeatmapEntry, SourceError, find_beatmaps
from postprocess.validate import validity_problems_file
from tokenizer.check import star_rating
from tokenizer.osu_file import Beatmap, BeatmapError, read_beatmap

ROOT = Path(__file__).resolve().parent
CONFIG = "evaluate"  # configs/evaluate.yaml
PLOT_SECONDS = 12.0  # length of the onset plot's excerpt


def select(entries: list[BeatmapEntry], per_mode: int | None) -> list[BeatmapEntry]:
    """At most `per_mode` maps of each mode: round-robin over sets, each set's maps from its ends inward."""
    if per_mode is None:
        return entries
    chosen = []
    for mode in sorted({e.mode for e in entries}):
        by_set = defaultdict(list)
        for entry in entries:
            if entry.mode == mode:
                by_set[entry.set_key].append(entry)
        queues = []
        for maps in by_set.values():
            maps.sort(key=lambda e: e.star_rating or 0.0)
            queues.append([maps[i // 2] if i % 2 == 0 else maps[-1 - i // 2] for i in range(len(maps))])
        picked = []
        while len(picked) < per_mode and any(queues):
            for queue in queues:
                if queue and len(picked) < per_mode:
                    picked.append(queue.pop(0))
        chosen += picked
    return chosen


def _check_settings(cfg: DictConfig) -> None:
    """The evaluation's own settings; the generation settings are checked with each map's request."""
    modes, tolerances = cfg.gamemodes, cfg.tolerances
    if not OmegaConf.is_list(modes) or not modes or any(m not in (0, 1, 2, 3) or isinstance(m, bool) for m in modes):
        raise InferenceError(f"gamemodes must be a list of modes 0-3 such as [0,3], not {modes}")
    if not OmegaConf.is_list(tolerances) or not tolerances or not all(is_number(t) and t > 0 for t in tolerances):
        raise InferenceError(f"tolerances must be a list of ms above 0 such as [10,20,50], not {tolerances}")
    per_mode = cfg.max_per_mode
    if per_mode is not None and not (is_number(per_mode) and per_mode >= 1):
        raise InferenceError(f"max_per_mode must be a number of maps, 1 or more, or null (all), not {per_mode}")


def generation_config(cfg: DictConfig) -> DictConfig:
    """configs/inference_v29.yaml with the evaluation's `generation` settings on top."""
    base = OmegaConf.load(ROOT / "configs" / "inference_v29.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    for key, value in cfg.generation.items():
        if key not in base:
            raise InferenceError(f"generation.{key} is not a setting of configs/inference_v29.yaml")
        error = value_error(f"generation.{key}", base[key], value)
        if error:
            raise InferenceError(error)
    return OmegaConf.merge(base, cfg.generation)


def map_request(base: DictConfig, reference: Beatmap, entry: BeatmapEntry, stars: float, seed: int, out: Path,
                generated: Path | None = None) -> DictConfig:
    """The generation settings for one reference: its audio, mode, stars, CS or keycount, names; the generation
    is saved, or with `generated` read from there."""
    meta = reference.metadata
    request = {"audio_path": str(entry.audio_path), "output_path": str(out), "gamemode": reference.mode,
               "difficulty": round(stars, 2), "seed": seed, "progress": False, "save_generated": True,
               "generated_path": str(generated) if generated else None,
               "title": meta.get("Title", entry.audio_path.stem), "artist": meta.get("Artist", "Unknown Artist"),
               "version": f"{meta.get('Version', 'map')} (AI)"}
    request["keycount" if reference.mode == 3 else "circle_size"] = reference.keycount if reference.mode == 3 else reference.cs
    return OmegaConf.merge(base, request)


def evaluate(cfg: DictConfig) -> int:
    """Generate and score every selected reference, write the report; the exit code."""
    try:
        _check_settings(cfg)
        base = generation_config(cfg)
        replays = _saved_generations(Path(str(cfg.replay))) if cfg.replay else None
        if replays is None:
            load_model(str(base.model_path))  # a bad model folder fails here, not once per map
        entries = find_beatmaps(str(cfg.data_root), split=cfg.split, modes=list(cfg.gamemodes), extract_dir=cfg.extract_dir)
    except (InferenceError, SourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: generation.model_path {base.model_path}: {e}", file=sys.stderr)
        return 1
    entries = select(entries, cfg.max_per_mode)
    out = Path(str(cfg.output_dir))
    tolerances = [int(t) for t in cfg.tolerances]
    key = primary_tolerance(tolerances)
    rows, skipped, strengths, onset_plot = [], [], {}, None
    for number, entry in enumerate(entries, 1):
        try:
            row, plot = _evaluate_map(cfg, base, entry, out, tolerances, strengths, replays)
        except (InferenceError, AudioError, BeatmapError) as e:  # this reference cannot be used: say so, go on
            print(f"[{number}/{len(entries)}] {entry.osu_path.name}: skipped: {e}", file=sys.stderr, flush=True)
            skipped.append({"osu": entry.osu_path.name, "reason": str(e)})
            continue
        rows.append(row)
        if onset_plot is None and plot is not None and (cfg.plot_song in (None, entry.set_key)):
            onset_plot = plot
        print(f"[{number}/{len(entries)}] {row['osu']}: F1@{key} {row['model'][key]['f1']:.3f}, "
              f"{row['requested_stars']:.2f}* -> {row['achieved_stars'] or 0:.2f}*, "
              f"{'valid' if row['valid'] else row['error'] or '; '.join(row['problems'])}, {row['seconds']:.1f} s", flush=True)
    if not rows:
        print("error: no reference map could be evaluated" if entries else "error: no reference maps match the selection",
              file=sys.stderr)
        return 1
    summary = summarize(rows, tolerances)
    config = OmegaConf.to_container(cfg, resolve=True)
    report = write_report(out, rows, skipped, summary, tolerances, config, onset_plot)
    for mode, s in summary.items():
        scores = s["onsets"]
        print(f"{mode}: {s['maps']} maps, F1@{key} model {scores['model'][key]['f1']:.3f} / flux {scores['flux'][key]['f1']:.3f} "
              f"/ grid {scores['grid'][key]['f1']:.3f}, valid {s['validity_rate']:.0%}")
    print(f"report: {report}")
    return 0


def _saved_generations(run_dir: Path) -> dict[tuple[str, str], Path]:
    """(set, reference file name) -> the generation an earlier evaluation saved for it."""
    try:
        rows = read_rows(run_dir)
    except NoEvaluationError as e:
        raise InferenceError(f"replay: {e}") from None
    return {key: run_dir / row["generated"] for key, row in rows.items() if row.get("generated")}


def _evaluate_map(cfg: DictConfig, base: DictConfig, entry: BeatmapEntry, out: Path, tolerances: list[int],
                  strengths: dict, replays: dict[tuple[str, str], Path] | None) -> tuple[dict, dict | None]:
    reference = read_beatmap(entry.osu_path)
    saved = None
    if replays is not None:
        saved = replays.get((entry.set_key, entry.osu_path.name))
        if saved is None:
            raise InferenceError(f"replay: {cfg.replay} saved no generation for this map")
    stars = star_rating(reference)
    if entry.audio_path not in strengths:
        audio = load_audio(entry.audio_path, DEFAULT_SAMPLE_RATE)
        strengths[entry.audio_path] = (onset_strength(audio, DEFAULT_SAMPLE_RATE), len(audio) * 1000 / DEFAULT_SAMPLE_RATE)
    strength, song_ms = strengths[entry.audio_path]
    began = time.perf_counter()
    try:
        result = run(map_request(base, reference, entry, stars, int(cfg.seed), out / "maps", saved))
        generated, problems, error = read_beatmap(result.osu_path), validity_problems_file(result.osu_path), None
        generation = f"maps/{result.generated_path.name}"
    except EmptyMapError as e:
        generated, problems, error, generation = None, [], str(e), None
    row = score_map(reference, generated, strength, song_ms, tolerances)
    row.update(set=entry.set_key, osu=entry.osu_path.name, mode=reference.mode, requested_stars=stars,
               audio_s=song_ms / 1000, seconds=time.perf_counter() - began, error=error, problems=problems,
               valid=error is None and not problems, generated=generation)
    plot = None
    if reference.mode == 0 and generated is not None:
        plot = _onset_excerpt(strength, reference, generated, f"{entry.osu_path.stem}: human vs generated objects")
    return row, plot


def _onset_excerpt(strength: tuple[np.ndarray, np.ndarray], reference: Beatmap, generated: Beatmap, title: str) -> dict:
    """PLOT_SECONDS around the middle of the reference's objects."""
    times, values = strength
    reference_onsets, generated_onsets = onsets(reference), onsets(generated)
    middle = float(np.median(reference_onsets)) if len(reference_onsets) else float(times[len(times) // 2])
    start, end = middle - PLOT_SECONDS * 500, middle + PLOT_SECONDS * 500
    keep = (times >= start) & (times <= end)
    return {"times": times[keep], "strength": values[keep], "title": title,
            "reference": reference_onsets[(reference_onsets >= start) & (reference_onsets <= end)],
            "generated": generated_onsets[(generated_onsets >= start) & (generated_onsets <= end)]}


@hydra.main(version_base="1.3", config_path="configs", config_name=CONFIG)
def main(cfg: DictConfig) -> None:
    code = evaluate(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    sys.argv = check_command_line(sys.argv, CONFIG)
    main()

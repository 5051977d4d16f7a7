"""evaluate.py and evaluation/: matching, baselines, timing errors, and a whole report on a synthetic corpus."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO_ROOT, circle, click_track, mania_note, osu_text, replay_maps
from evaluate import evaluate, select
from evaluation.baselines import flux_onsets, half_beat_grid
from evaluation.compare import main as compare_main
from evaluation.metrics import (beat_phase_error, column_score, match, nearest_distance, notes, onset_score, onsets,
                                rhythm_distance, rhythm_shares)
from evaluation.scoring import score_map
from osuT5.audio import onset_strength
from osuT5.sources import BeatmapEntry
from tokenizer.osu_file import Beatmap, parse_beatmap, read_beatmap
from tokenizer.timing import Timing, TimingPoint


def test_nearest_distance_reaches_past_both_ends():
    grid = np.array([0.0, 250.0, 500.0])
    assert nearest_distance(grid, np.array([-40.0, 10.0, 130.0, 260.0, 520.0])).tolist() == [40.0, 10.0, 120.0, 10.0, 20.0]


def test_matching_is_greedy_closest_first_and_one_to_one():
    generated, reference = np.array([0.0, 12.0, 30.0]), np.array([5.0, 10.0, 100.0])
    i, j = match(generated, reference, 20)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (1, 1)]  # 12->10 first (2 ms), then 0->5; 30 finds 10 taken
    score = onset_score(generated, reference, 20)
    assert (score.precision, score.recall) == pytest.approx((2 / 3, 2 / 3))
    assert sorted(score.matched_offsets.tolist()) == [-5.0, 2.0]
    i, j = match(np.array([10.0]), np.array([0.0, 12.0]), 20)
    assert j.tolist() == [1]


def test_scores_of_empty_sides_are_zero():
    assert onset_score(np.zeros(0), np.array([1.0]), 20).f1 == 0
    assert onset_score(np.array([1.0]), np.zeros(0), 20).f1 == 0


def test_onsets_count_a_chord_once_and_skip_spinners_while_notes_keep_columns():
    beatmap = parse_beatmap(osu_text(3, [mania_note(0, 4, 1000), mania_note(2, 4, 1000), mania_note(3, 4, 1500)]))
    assert onsets(beatmap).tolist() == [1000, 1500]
    times, columns = notes(beatmap)
    assert times.tolist() == [1000, 1000, 1500] and columns.tolist() == [0, 2, 3]
    spinner = parse_beatmap(osu_text(0, [circle(100, 100, 500), "256,192,1000,12,0,3000,0:0:0:0:"]))
    assert onsets(spinner).tolist() == [500]


def test_column_score_needs_the_same_column():
    reference = (np.array([1000.0, 1000.0]), np.array([0, 1]))
    assert column_score((np.array([1000.0, 1000.0]), np.array([0, 1])), reference, 20).f1 == 1
    swapped = column_score((np.array([1000.0, 1000.0]), np.array([2, 3])), reference, 20)
    assert swapped.f1 == 0
    assert onset_score(np.array([1000.0]), np.array([1000.0]), 20).f1 == 1


def test_half_beat_grid_follows_every_redline():
    timing = Timing([TimingPoint(100, 500), TimingPoint(1100, 400)])
    assert half_beat_grid(timing, 100, 1900).tolist() == [100, 350, 600, 850, 1100, 1300, 1500, 1700, 1900]
    assert half_beat_grid(timing, 400, 700).tolist() == [600]


def test_flux_onsets_find_clicks_and_keep_the_strongest():
    audio = click_track(4.0, bpm=120, offset_ms=250)  # clicks at 250, 750, ... 3750 ms
    audio[int(2.25 * 16000):] *= 0.3  # the last three clicks are quieter
    times, strength = onset_strength(audio, 16000)
    found = flux_onsets(times, strength, count=8)
    clicks = np.arange(250, 4000, 500)
    # A click after silence is seen as soon as it enters the 64 ms analysis window, so within half of it.
    assert len(found) == 8 and np.abs(found - clicks).max() <= 32
    assert np.abs(flux_onsets(times, strength, count=5) - clicks[:5]).max() <= 32


def test_beat_phase_error_is_signed_distance_to_the_nearest_generated_beat():
    reference = parse_beatmap(osu_text(0, [circle(100, 100, 1000)], ["0,500,4,2,0,60,1,0"]))
    late = parse_beatmap(osu_text(0, [circle(100, 100, 1000)], ["20,500,4,2,0,60,1,0"]))
    early = parse_beatmap(osu_text(0, [circle(100, 100, 1000)], ["-30,500,4,2,0,60,1,0"]))
    assert beat_phase_error(late, reference, 5000) == pytest.approx(20)
    assert beat_phase_error(early, reference, 5000) == pytest.approx(-30)


def test_rhythm_shares_sort_onsets_by_the_beat_fraction_of_the_maps_own_timing():
    redlines = ["1000,500,4,2,0,60,1,0", "3000,400,4,2,0,60,1,0"]  # 120 BPM, then 150 BPM from 3000 ms
    times = [1000, 1500,  # whole beats
             1250,  # a half
             1125, 1625,  # quarters
             1167, 1083,  # a third and a sixth (1000 + 166.7 and + 83.3, written as whole ms)
             1040,  # off the grid
             3200]  # a half beat of the second redline (4.4 beats after the first)
    beatmap = parse_beatmap(osu_text(0, [circle(100, 100, t) for t in times], redlines))
    shares = rhythm_shares(beatmap)
    assert shares == pytest.approx({"1/1": 2 / 9, "1/2": 2 / 9, "1/4": 2 / 9, "1/3": 2 / 9, "other": 1 / 9})
    assert rhythm_distance(shares, shares) == 0
    on_beats = parse_beatmap(osu_text(0, [circle(100, 100, 1000 + 500 * k) for k in range(4)], redlines[:1]))
    on_halves = parse_beatmap(osu_text(0, [circle(100, 100, 1250 + 500 * k) for k in range(4)], redlines[:1]))
    assert rhythm_shares(on_beats)["1/1"] == 1 and rhythm_distance(rhythm_shares(on_beats), rhythm_shares(on_halves)) == 1
    assert rhythm_shares(Beatmap(timing_points=on_beats.timing_points)) == dict.fromkeys(shares, 0.0)


def test_score_map_of_the_reference_itself_is_perfect_and_a_failure_scores_zero():
    objects = [circle(64 + k * 10, 100, 1000 + 250 * k) for k in range(20)]
    reference = parse_beatmap(osu_text(0, objects, ["500,500,4,2,0,60,1,0"]))
    strength = onset_strength(click_track(8.0, offset_ms=500), 16000)
    row = score_map(reference, reference, strength, 8000, [10, 20, 50])
    assert row["model"]["10"]["f1"] == 1 and row["grid"]["20"]["recall"] == 1
    assert row["bpm_error"] == 0 and row["phase_error_ms"] == 0 and row["median_offset_ms"] == 0
    assert row["achieved_stars"] > 0 and row["objects_per_s"] == pytest.approx(20 / 8)
    assert row["rhythm"] == row["reference_rhythm"] == pytest.approx({"1/1": 0.5, "1/2": 0.5, "1/4": 0, "1/3": 0, "other": 0})
    assert row["rhythm_distance"] == 0
    failed = score_map(reference, None, strength, 8000, [10, 20, 50])
    assert failed["model"]["20"]["f1"] == 0 and failed["achieved_stars"] is None
    assert failed["rhythm"] is None and failed["rhythm_distance"] is None


def write_run(folder: Path, f1s: dict[str, float], stars: float = 4.0) -> Path:
    """A minimal evaluation folder: one osu! row per map name with its F1@20."""
    folder.mkdir()
    rows = [{"set": "S1", "osu": name, "mode": 0, "model": {"20": {"precision": f1, "recall": f1, "f1": f1}},
             "objects_per_s": 2.0, "achieved_stars": stars, "requested_stars": 4.0, "rhythm_distance": None}
            for name, f1 in f1s.items()]
    (folder / "metrics.json").write_text(json.dumps({"maps": rows}))
    return folder


def test_compare_pairs_the_maps_both_runs_scored(tmp_path, capsys):
    before = write_run(tmp_path / "before", {"a.osu": 0.4, "b.osu": 0.5, "c.osu": 0.6, "only_before.osu": 0.0})
    after = write_run(tmp_path / "after", {"a.osu": 0.5, "b.osu": 0.5, "c.osu": 0.8}, stars=4.5)
    assert compare_main([str(before), str(after)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "osu!: 3 maps in both runs"
    f1 = next(line for line in lines if "F1@20" in line).split()
    assert f1[1:4] == ["0.500", "->", "0.600"] and f1[6:] == ["+0.100", "±", "0.058,", "2", "up,", "0", "down"]
    assert any(line.split()[-3:] == ["0.000", "->", "0.500"] for line in lines if "stars error" in line)
    assert not any("rhythm" in line for line in lines)  # no map has it
    assert compare_main([str(before), str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'} holds no evaluation (metrics.json)"


def test_select_spreads_over_sets_and_difficulties(tmp_path):
    entries = [BeatmapEntry(tmp_path / f"{s}{k}.osu", tmp_path / "a.ogg", s, "val", 0, star_rating=float(k))
               for s in ("A", "B") for k in range(4)]
    picked = select(entries, 3)
    assert [(e.set_key, e.star_rating) for e in picked] == [("A", 0.0), ("B", 0.0), ("A", 3.0)]
    assert select(entries, None) == entries


@pytest.fixture
def copying_model(monkeypatch, tokenizer, synthetic_corpus):
    """A model that writes back the val reference of the requested mode."""
    references = {mode: read_beatmap(synthetic_corpus / "sets" / "S2" / f"set2_mode{mode}.osu") for mode in (0, 3)}
    replay_maps(monkeypatch, tokenizer, references.__getitem__)


def evaluation_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def test_evaluate_writes_a_report_where_a_copying_model_is_perfect(synthetic_corpus, model_dir, copying_model, tmp_path):
    out = tmp_path / "report"
    cfg = evaluation_config(f"data_root={synthetic_corpus}", f"output_dir={out}", f"generation.model_path={model_dir}",
                            "generation.threads=1", "+generation.max_new_tokens=24", "+generation.timing_source=model")
    assert evaluate(cfg) == 0
    assert {"metrics.json", "report.md", "f1_by_difficulty.png", "stars.png", "onsets.png", "maps"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["mode"] for m in metrics["maps"]] == [0, 3] and metrics["skipped"] == []
    for mode in ("osu!", "mania", "overall"):
        summary = metrics["summary"][mode]
        assert summary["validity_rate"] == 1 and summary["failed"] == 0
        assert summary["onsets"]["model"]["20"]["f1"] >= 0.95
        assert summary["onsets"]["model"]["20"]["f1"] > summary["onsets"]["flux"]["20"]["f1"] - 0.05
        assert summary["bpm_abs_error_median"] < 0.5
    assert metrics["summary"]["mania"]["columns"]["20"]["f1"] >= 0.95
    report = (out / "report.md").read_text()
    assert "spectral flux" in report and "1/2-beat grid" in report and "![stars](stars.png)" in report
    assert metrics["summary"]["overall"]["rhythm_distance"] <= 0.05 and "## Rhythm" in report


def test_replay_rescores_the_saved_generations_without_the_model(synthetic_corpus, model_dir, copying_model, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    common = [f"data_root={synthetic_corpus}", "generation.threads=1", "+generation.max_new_tokens=24",
              "+generation.timing_source=model"]
    assert evaluate(evaluation_config(*common, f"output_dir={first}", f"generation.model_path={model_dir}")) == 0
    # No model at all: the replay reads the generations the first run saved beside its maps.
    assert evaluate(evaluation_config(*common, f"output_dir={again}", f"replay={first}",
                                      f"generation.model_path={tmp_path / 'no_model'}")) == 0
    rows = [json.loads((out / "metrics.json").read_text())["maps"] for out in (first, again)]
    assert [r["generated"] for r in rows[0]] == [r["generated"] for r in rows[1]]
    assert all((first / r["generated"]).is_file() for r in rows[0])
    assert [(r["osu"], r["model"], r["achieved_stars"]) for r in rows[0]] == [(r["osu"], r["model"], r["achieved_stars"]) for r in rows[1]]


def test_replay_of_a_folder_without_an_evaluation_is_one_sentence(synthetic_corpus, tmp_path, capsys):
    assert evaluate(evaluation_config(f"data_root={synthetic_corpus}", f"output_dir={tmp_path / 'out'}",
                                      f"replay={tmp_path}")) == 1
    assert capsys.readouterr().err.strip() == f"error: replay: {tmp_path} holds no evaluation (metrics.json)"


def test_a_model_that_writes_nothing_scores_zero_and_counts_as_invalid(synthetic_corpus, model_dir, tokenizer,
                                                                       monkeypatch, tmp_path):
    replay_maps(monkeypatch, tokenizer, lambda mode: Beatmap())
    out = tmp_path / "report"
    cfg = evaluation_config(f"data_root={synthetic_corpus}", f"output_dir={out}", f"generation.model_path={model_dir}",
                            "generation.threads=1", "+generation.max_new_tokens=24", "gamemodes=[3]")
    assert evaluate(cfg) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    [row] = metrics["maps"]
    assert row["error"].startswith("the model wrote no hit objects") and not row["valid"]
    summary = metrics["summary"]["mania"]
    assert summary["failed"] == 1 and summary["validity_rate"] == 0 and summary["onsets"]["model"]["20"]["f1"] == 0
    # The baselines are still scored: notes on every beat, so the half-beat grid has twice the onsets (F1 2/3).
    assert summary["onsets"]["grid"]["20"]["f1"] == pytest.approx(2 / 3, abs=0.02)
    assert summary["onsets"]["flux"]["50"]["f1"] > 0.5
    assert summary["stars"]["maps"] == 0 and summary["stars"]["rmse"] is None


def test_evaluate_refuses_bad_input_in_one_sentence(tmp_path, capsys):
    assert evaluate(evaluation_config(f"data_root={tmp_path / 'missing'}", f"output_dir={tmp_path / 'out'}")) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert evaluate(evaluation_config("+generation.tempo=2", f"output_dir={tmp_path / 'out'}")) == 1
    assert "generation.tempo is not a setting" in capsys.readouterr().err
    assert evaluate(evaluation_config(f"generation.model_path={tmp_path / 'nomodel'}", f"output_dir={tmp_path / 'out'}")) == 1
    assert "is not a model folder" in capsys.readouterr().err
    for setting, sentence in (("+generation.temperature=hot", "generation.temperature must be a number, not hot"),
                              ("gamemodes=[7]", "gamemodes must be a list of modes 0-3 such as [0,3], not [7]"),
                              ("tolerances=[0,20]", "tolerances must be a list of ms above 0 such as [10,20,50], not [0, 20]"),
                              ("max_per_mode=some", "max_per_mode must be a number of maps, 1 or more, or null (all), not some")):
        assert evaluate(evaluation_config(setting, f"output_dir={tmp_path / 'out'}")) == 1
        assert capsys.readouterr().err.strip() == f"error: {sentence}"
    assert not (tmp_path / "out").exists()

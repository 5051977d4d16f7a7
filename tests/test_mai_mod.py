"""MaiMod: the scoring math, region filtering, the filters, categories and wording, the report, bad input,
and one review per mode with a tiny random model on synthetic audio."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO_ROOT, TINY_BACKBONE, TINY_MEL, click_track, mania_note, osu_text
from mai_mod import mai_mod
from osuT5.critic import Critic, TokenScore, reviewed_metadata, token_statistics
from osuT5.model import Mapperatorinator, load_model, model_config, save_model
from osuT5.suggestions import CATEGORIES, Suggestion, advice, timestamp, top_per_category
from test_inference import human_map_text
from tokenizer.encode import groups_to_events
from tokenizer.events import ContextType, Event, EventType, Group
from tokenizer.osu_file import parse_beatmap
from tokenizer.timing import Timing, TimingPoint
from tokenizer.vocabulary import Tokenizer, TokenizerConfig

T = EventType
TIMING = Timing([TimingPoint(0.0, 500.0)])  # 120 BPM from 0


# -- the math -------------------------------------------------------------------------------------
def test_surprisal_and_entropy_are_in_bits_and_the_argmax_is_the_fix():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [1.0, 1e-12, 1e-12]]))
    surprisal, entropy, best = token_statistics(logits, torch.tensor([1, 2, 0]))
    assert surprisal.tolist() == pytest.approx([2.0, 1.0, 0.0], abs=1e-5)
    assert entropy.tolist() == pytest.approx([1.5, 1.5, 0.0], abs=1e-5)
    assert best.tolist() == [0, 2, 0]
    uniform_s, uniform_h, _ = token_statistics(torch.zeros(1, 8), torch.tensor([3]))
    assert uniform_s.item() == pytest.approx(3.0) and uniform_h.item() == pytest.approx(3.0)


def score(real: Event, expected: Event | None, group: Group, context: ContextType = ContextType.MAP,
          surprisal: float = 8.0, entropy: float = 1.0, window_start: float = 0.0) -> TokenScore:
    return TokenScore(context, group, real, expected, surprisal, entropy, window_start)


def test_relative_surprisal_is_s_over_h_and_the_severity_is_s_minus_h():
    group = Group(T.CIRCLE, 1000.0)
    assert score(Event(T.CIRCLE), None, group, surprisal=6.0, entropy=1.5).relative_surprisal == 4.0
    assert score(Event(T.CIRCLE), None, group, surprisal=6.0, entropy=0.0).relative_surprisal == 0.0
    assert score(Event(T.CIRCLE), None, group, surprisal=6.0, entropy=1.5).excess_surprisal == 4.5


# -- filters, categories and wording --------------------------------------------------------------
def words(s: TokenScore, tokenizer, mode: int = 0):
    return advice(s, mode, tokenizer, TIMING, 10.0)


def test_time_disagreements_of_at_most_10_ms_are_dropped(tokenizer):
    circle = Group(T.CIRCLE, 1000.0)
    assert words(score(Event(T.TIME_SHIFT, 100), Event(T.TIME_SHIFT, 101), circle), tokenizer) is None
    assert words(score(Event(T.TIME_SHIFT, 100), Event(T.TIME_SHIFT, 99), circle), tokenizer) is None
    # two steps off: the model's 10 ms step (1120-1130 ms) is centred and moved onto the 1/4 tick at 1125 ms
    assert words(score(Event(T.TIME_SHIFT, 100), Event(T.TIME_SHIFT, 112), circle), tokenizer) == (
        "Rhythm", "Expected circle at 00:01:125 instead of 00:01:000")


def test_beats_are_timing_suggestions_and_keep_the_model_s_own_time(tokenizer):
    beat = Group(T.BEAT, 1500.0)
    assert words(score(Event(T.TIME_SHIFT, 150), Event(T.TIME_SHIFT, 153), beat, ContextType.TIMING), tokenizer) == (
        "Timing", "Expected beat at 00:01:535 instead of 00:01:500")
    assert words(score(Event(T.BEAT), Event(T.TIMING_POINT), beat, ContextType.TIMING), tokenizer) == (
        "Timing", "Expected a timing point instead of a beat")
    assert words(score(Event(T.TIMING_POINT), None, Group(T.TIMING_POINT, 0.0), ContextType.TIMING), tokenizer) == (
        "Timing", "Unexpected timing point")


@pytest.mark.parametrize("mode, real, expected, group, result", [
    (0, Event(T.HITSOUND, 0), Event(T.NEW_COMBO), Group(T.CIRCLE, 0.0), ("New Combos", "Expected a new combo")),
    (0, Event(T.NEW_COMBO), Event(T.HITSOUND, 0), Group(T.CIRCLE, 0.0), ("New Combos", "Unexpected new combo")),
    (3, Event(T.COLUMN, 1), Event(T.COLUMN, 2), Group(T.CIRCLE, 0.0), ("Compose", "Expected column 3 instead of 2")),
    (1, Event(T.HITSOUND, 8), Event(T.HITSOUND, 9), Group(T.CIRCLE, 0.0, hitsounds=[[8, 100]]),
     ("Compose", "Expected a kat instead of a don")),
    (1, Event(T.HITSOUND, 9), Event(T.HITSOUND, 11), Group(T.CIRCLE, 0.0, hitsounds=[[9, 100]]),
     ("Compose", "Expected a big kat instead of a kat")),
    (0, Event(T.HITSOUND, 8), Event(T.HITSOUND, 9), Group(T.CIRCLE, 0.0),
     ("Hit Sounds", "Expected hitsound soft:normal whistle instead of soft:normal no additions")),
    (0, Event(T.VOLUME, 100), Event(T.VOLUME, 60), Group(T.CIRCLE, 0.0), ("Hit Sounds", "Expected volume 60% instead of 100%")),
    (0, Event(T.DISTANCE, 270), Event(T.DISTANCE, 120), Group(T.CIRCLE, 0.0),
     ("Compose", "Expected distance 120 px to the previous object instead of 270 px")),
    (0, Event(T.DISTANCE, 270), Event(T.DISTANCE, 120), Group(T.SLIDER_END, 0.0), None),  # slider ends: dropped
    (0, Event(T.SNAPPING, 8), Event(T.SNAPPING, 2), Group(T.CIRCLE, 0.0), ("Rhythm", "Expected 1/2 snapping instead of 1/8")),
    (0, Event(T.SNAPPING, 0), Event(T.SNAPPING, 4), Group(T.CIRCLE, 0.0),
     ("Rhythm", "This circle is not snapped to the beat (expected 1/4)")),
    (0, Event(T.SCROLL_SPEED, 100), Event(T.SCROLL_SPEED, 150), Group(T.SLIDER_HEAD, 0.0),
     ("Sliders", "Expected slider velocity x1.50 instead of x1.00")),
    (1, Event(T.SCROLL_SPEED, 100), Event(T.SCROLL_SPEED, 150), Group(T.CIRCLE, 0.0),
     ("Scroll Speeds", "Expected scroll speed x1.50 instead of x1.00")),
    (0, Event(T.CIRCLE), Event(T.SLIDER_HEAD), Group(T.CIRCLE, 0.0), ("Rhythm", "Expected a slider instead of a circle")),
    (2, Event(T.CIRCLE), Event(T.SLIDER_HEAD), Group(T.CIRCLE, 0.0), ("Rhythm", "Expected a juice stream instead of a fruit")),
    (0, Event(T.LAST_ANCHOR), Event(T.RED_ANCHOR), Group(T.LAST_ANCHOR, 0.0),
     ("Sliders", "Expected additional anchors (a more curved slider)")),
    (0, Event(T.SLIDER_END), Event(T.CIRCLE), Group(T.SLIDER_END, 0.0), None),  # would break the slider apart
    (0, Event(T.HITSOUND, 0), Event(T.SLIDER_END), Group(T.LAST_ANCHOR, 0.0), ("Rhythm", "Expected fewer slider repeats")),
    (0, Event(T.DISTANCE, 30), Event(T.SNAPPING, 1), Group(T.RED_ANCHOR, 0.0), None),  # anchors have no snapping
    (0, Event(T.HITSOUND, 0), Event(T.SCROLL_SPEED, 100), Group(T.CIRCLE, 0.0), None),  # nor circles a velocity
    (0, Event(T.KIAI, 1), None, Group(T.KIAI, 0.0, value=1), ("Kiai", "Unexpected kiai start")),
    (3, Event(T.HOLD_NOTE), None, Group(T.HOLD_NOTE, 0.0), ("Rhythm", "Unexpected hold note")),
    (0, Event(T.HITSOUND, 0), None, Group(T.CIRCLE, 0.0), None),  # an attribute cannot end a context
])
def test_categories_and_wording(tokenizer, mode, real, expected, group, result):
    assert words(score(real, expected, group), tokenizer, mode) == result


def test_positions_name_the_cell_and_catch_looks_at_x_only(tokenizer):
    pos = lambda x, y: tokenizer.position_events(x, y)[0]
    circle = Group(T.CIRCLE, 0.0, x=100.0, y=100.0)
    assert words(score(pos(100, 100), pos(300, 200), circle), tokenizer) == (
        "Compose", "Expected position x:304 y:208 instead of x:100 y:100")
    assert words(score(pos(100, 100), pos(100, 300), circle), tokenizer, mode=2) is None
    assert words(score(pos(100, 100), pos(300, 100), circle), tokenizer, mode=2) == ("Compose", "Expected x:304 instead of x:100")
    assert words(score(pos(100, 100), pos(300, 200), Group(T.SLIDER_END, 0.0, x=100.0, y=100.0)), tokenizer) is None


# -- the report -------------------------------------------------------------------------------------
def test_timestamps_and_editor_links():
    assert timestamp(62345) == "01:02:345" and timestamp(0) == "00:00:000" and timestamp(-20) == "00:00:000"
    assert timestamp(3723456.4) == "62:03:456"
    assert Suggestion(62345, "Rhythm", "Circle", "x", 1.0, 1.0, 1.0).link == "osu://edit/01:02:345"


def test_top_n_keeps_the_most_severe_of_each_category_in_time_order():
    found = [Suggestion(1000.0 * k, "Rhythm", "Circle", f"r{k}", severity=float(k), surprisal=1, entropy=1) for k in range(12)]
    found += [Suggestion(500.0, "Kiai", "Kiai start", "k", 3.0, 1, 1), Suggestion(100.0, "Compose", "Circle", "c", 2.0, 1, 1)]
    top = top_per_category(found, 10)
    assert list(top) == ["Rhythm", "Compose", "Kiai"]  # CATEGORIES order
    assert list(top) == [c for c in CATEGORIES if c in top]
    assert [s.severity for s in top["Rhythm"]] == [float(k) for k in range(2, 12)]  # the two mildest are cut
    assert [s.time_ms for s in top["Rhythm"]] == sorted(s.time_ms for s in top["Rhythm"])


# -- the critic on real windows -----------------------------------------------------------------------
def test_every_token_of_the_map_is_scored_exactly_once(model_dir, tokenizer):
    model, tok = load_model(model_dir)
    audio = click_track(20.0, 120.0)
    beatmap = parse_beatmap(osu_text(3, [mania_note(k % 4, 4, 500 + 500 * k) for k in range(36)],
                                     ["0,500,4,2,0,60,1,0", "6000,500,4,2,0,60,1,1", "9000,500,4,2,0,60,1,0"]))
    critic = Critic(model, tok, audio, progress=False)
    scores = critic.score(beatmap, reviewed_metadata(beatmap, 20000.0))
    plan = critic.plan(beatmap, reviewed_metadata(beatmap, 20000.0))
    assert list(plan.finished) == [ContextType.TIMING, ContextType.KIAI, ContextType.MAP, ContextType.SV]
    key = lambda context, g: (context, g.type, g.time, g.column)
    expected = Counter()
    for context, groups in plan.finished.items():
        for group in groups:
            expected[key(context, group)] += len(groups_to_events([group], tok, 0.0))
    assert critic.unscored_tokens == 0 and sum(expected.values()) > 200
    assert Counter(key(s.context, s.group) for s in scores) == expected
    windows = critic.generator.windows()
    for s in scores:  # each token comes from the window whose generation region holds its group
        window = next(w for w in windows if w.start_ms == s.window_start_ms)
        assert window.region_start_ms <= s.group.time < window.region_end_ms
    assert all(s.surprisal >= 0 and s.entropy >= 0 for s in scores)


def test_sv_is_scored_for_mania_only(model_dir, tokenizer):
    model, tok = load_model(model_dir)
    critic = Critic(model, tok, click_track(10.0), progress=False)
    beatmap = parse_beatmap(human_map_text(0))
    assert ContextType.SV not in critic.plan(beatmap, reviewed_metadata(beatmap, 10000.0)).finished


# -- the command ----------------------------------------------------------------------------------
@pytest.fixture
def map_folder(tmp_path) -> Path:
    folder = tmp_path / "song"
    folder.mkdir()
    soundfile.write(folder / "audio.ogg", click_track(12.0, 120.0, offset_ms=250.0), 16000)
    return folder


def write_map(folder: Path, mode: int, name: str = "map.osu") -> Path:
    path = folder / name
    path.write_text(human_map_text(mode), encoding="utf-8")
    return path


def config(model_dir: Path, *overrides: str):
    base = [f"model_path={model_dir}", "progress=false", "threads=1"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("mai_mod", overrides=base + list(overrides))


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_mode_gets_a_report_and_the_map_is_never_touched(model_dir, map_folder, capsys, mode):
    path = write_map(map_folder, mode)
    before, files = path.read_bytes(), sorted(map_folder.iterdir())
    assert mai_mod(config(model_dir, f"beatmap_path={path}", "output=text", "min_surprisal=0")) == 0
    out = capsys.readouterr().out
    name = {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}[mode]
    assert out.startswith(f"MaiMod: map.osu ({name}), ")
    lines = [line for line in out.splitlines() if line.startswith("  (")]
    assert lines and all("osu://edit/" in line for line in lines)
    assert path.read_bytes() == before and sorted(map_folder.iterdir()) == files


def test_json_report_shape(model_dir, map_folder, capsys):
    path = write_map(map_folder, 3)
    assert mai_mod(config(model_dir, f"beatmap_path={path}", "output=json", "min_surprisal=0", "top_n=3")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["beatmap"] == str(path) and report["mode"] == 3 and report["top_n"] == 3
    assert report["scored_tokens"] > 0 and report["unscored_tokens"] == 0
    assert report["categories"] and set(report["categories"]) <= set(CATEGORIES)
    for category, items in report["categories"].items():
        assert 1 <= len(items) <= 3
        assert [i["time_ms"] for i in items] == sorted(i["time_ms"] for i in items)
        for item in items:
            assert set(item) == {"time_ms", "timestamp", "link", "category", "subject", "message", "severity",
                                 "surprisal", "entropy", "relative_surprisal"}
            assert item["category"] == category and item["link"] == f"osu://edit/{item['timestamp']}"
            assert math.isclose(item["severity"], item["surprisal"] - item["entropy"], abs_tol=1e-9)
            assert math.isclose(item["relative_surprisal"], item["surprisal"] / item["entropy"], rel_tol=1e-9)


def model_without_taiko(folder: Path, v29_config) -> Path:
    config = TokenizerConfig(**{**v29_config.__dict__, "gamemodes": [0, 3]})
    tokenizer = Tokenizer(config)
    torch.manual_seed(0)
    save_model(Mapperatorinator(model_config(TINY_BACKBONE, TINY_MEL, tokenizer, 256, 3.0, True)), tokenizer, folder)
    return folder


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("broken", "is not a usable beatmap"),
    ("no_audio", "audio file audio.ogg is not next to it"),
    ("untrained", "this model was not trained for taiko maps (gamemode 1)"),
    ("format", "output must be one of rich, text, json"),
])
def test_bad_input_gets_one_sentence(model_dir, map_folder, tmp_path, v29_config, capsys, case, message):
    path = write_map(map_folder, 1 if case == "untrained" else 0)
    overrides = [f"beatmap_path={path}"]
    if case == "missing":
        overrides = [f"beatmap_path={map_folder / 'nothing.osu'}"]
    elif case == "broken":
        path.write_bytes(b"\x00\xffnot a beatmap at all")
    elif case == "no_audio":
        (map_folder / "audio.ogg").unlink()
    elif case == "untrained":
        model_dir = model_without_taiko(tmp_path / "osu_mania_model", v29_config)
    elif case == "format":
        overrides.append("output=html")
    assert mai_mod(config(model_dir, *overrides)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "mai_mod.py", f"beatmap_path={tmp_path / 'missing.osu'}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and run.stderr.strip() == f"error: beatmap_path {tmp_path / 'missing.osu'} does not exist"

"""inference.py end to end with a tiny random model on synthetic audio: files, .osz, partial remaps, bad input."""
from __future__ import annotations

import math
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO_ROOT, circle, click_track, mania_hold, mania_note, osu_text, replay_maps
from inference import generate
from osuT5.cli import hydra_quote
from osuT5.pipeline import InferenceError, _density_control, _negative, pick_precision, resolve, run
from osuT5.sequence import BeatmapMetadata
from postprocess.validate import validity_problems
from tokenizer.check import star_rating
from tokenizer.osu_file import HOLD, parse_beatmap, read_beatmap

@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song" / "audio.ogg"
    path.parent.mkdir()
    soundfile.write(path, click_track(12.0, 120.0, offset_ms=250.0), 16000)
    return path


@pytest.fixture
def human_model(monkeypatch, tokenizer):
    """Replace the passes by what a perfect model would write: a human map of the requested mode on the click track."""
    replay_maps(monkeypatch, tokenizer, lambda mode: parse_beatmap(human_map_text(mode)))


def human_map_text(mode: int) -> str:
    """12 s at 120 BPM from 250 ms: circles (osu!/catch: also sliders and a spinner), mania notes and holds, a kiai."""
    beat, times = 500, range(750, 11000, 250)
    if mode == 3:
        objects = [mania_hold(k % 4, 4, t, t + 500) if k % 5 == 0 else mania_note(k % 4, 4, t) for k, t in enumerate(times)]
    else:
        objects = [circle(64 + (k * 37) % 384, 64 + (k * 53) % 256, t, new_combo=k % 8 == 0, hitsound=2 * (k % 3))
                   for k, t in enumerate(times) if t < 9000]
        objects += ["100,100,9000,2,0,B|200:100|300:150,1,140", "256,192,10000,12,0,10750,0:0:0:0:"]
    timing = [f"250,{beat},4,2,0,60,1,0", "4250,-100,4,2,0,80,0,1", "6250,-100,4,2,0,60,0,0"]
    return osu_text(mode, objects, timing, general={"AudioFilename": "audio.ogg"})


def config(model_dir: Path, *overrides: str):
    base = [f"model_path={model_dir}", "max_new_tokens=24", "progress=false", "seed=1", "threads=2"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("inference_v29", overrides=base + list(overrides))


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_mode_writes_a_valid_beatmap(model_dir, song, human_model, mode):
    # timing_source=model: the replayed human timing, not the audio's (on clicks the latency tuned on music reads early).
    result = run(config(model_dir, f"audio_path={song}", f"gamemode={mode}", "difficulty=4.5", "timing_source=model"))
    assert result.osu_path.parent == song.parent and result.osu_path.suffix == ".osu"
    beatmap = read_beatmap(result.osu_path)
    assert beatmap.mode == mode
    assert validity_problems(beatmap) == []
    assert any(p.uninherited for p in beatmap.timing_points)
    tags = beatmap.metadata["Tags"].split()
    assert {f"gamemode={mode}", "difficulty=4.5", "seed=1", "temperature=0.9"} <= set(tags)
    assert beatmap.general["AudioFilename"] == "audio.ogg"
    assert "objects" in result.summary() and str(result.osu_path) in result.summary()
    assert len(beatmap.hit_objects) >= 30 and result.bpm == 120
    assert beatmap.timing_points[0].time == pytest.approx(250, abs=10)
    assert any(p.kiai for p in beatmap.timing_points)


def test_the_real_model_path_runs_and_an_empty_map_is_refused(model_dir, song, capsys):
    # A random model writes almost no groups: the whole pipeline runs, then refuses to save an empty map.
    assert generate(config(model_dir, f"audio_path={song}")) == 1
    assert "wrote no hit objects" in capsys.readouterr().err
    assert files(song.parent) == {"audio.ogg"}


def test_a_second_run_never_replaces_the_first_file(model_dir, song, human_model):
    first = run(config(model_dir, f"audio_path={song}"))
    before = first.osu_path.read_bytes()
    second = run(config(model_dir, f"audio_path={song}", "seed=2"))
    assert second.osu_path != first.osu_path and second.osu_path.stem.endswith("(2)")
    assert first.osu_path.read_bytes() == before


def test_export_osz_holds_the_osu_and_the_audio(model_dir, song, human_model, tmp_path):
    out = tmp_path / "out"
    result = run(config(model_dir, f"audio_path={song}", f"output_path={out}", "export_osz=true"))
    assert result.osz_path is not None and result.osz_path.parent == out
    with zipfile.ZipFile(result.osz_path) as z:
        assert sorted(z.namelist()) == sorted([result.osu_path.name, "audio.ogg"])
        assert z.read("audio.ogg") == song.read_bytes()
        assert z.read(result.osu_path.name).decode("utf-8") == result.osu_path.read_text(encoding="utf-8")


def write_reference(folder: Path, mode: int = 0) -> Path:
    times = range(500, 12000, 500)
    objects = [mania_note(k % 4, 4, t) for k, t in enumerate(times)] if mode == 3 else \
        [circle(64 + (k * 37) % 384, 64 + (k * 53) % 256, t, new_combo=k % 4 == 0) for k, t in enumerate(times)]
    text = osu_text(mode, objects, ["250,500,4,2,0,60,1,0"], general={"AudioFilename": "audio.ogg"},
                    metadata={"Title": "Reference Song", "Version": "Hard"}, difficulty={"CircleSize": "4"})
    path = folder / "reference.osu"
    path.write_text(text, encoding="utf-8")
    return path


def object_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines[lines.index("[HitObjects]") + 1:] if line.strip()]


def test_partial_remap_leaves_everything_outside_the_range_untouched(model_dir, song, human_model):
    reference = write_reference(song.parent)
    before = reference.read_bytes()
    result = run(config(model_dir, f"beatmap_path={reference}", "add_to_beatmap=true", "start_time=4000", "end_time=8000"))
    assert reference.read_bytes() == before and result.osu_path != reference
    time_of = lambda line: int(line.split(",")[2])
    outside = [line for line in object_lines(reference) if not 4000 <= time_of(line) <= 8000]
    assert [line for line in object_lines(result.osu_path) if not 4000 <= time_of(line) <= 8000] == outside
    remapped = read_beatmap(result.osu_path)
    assert [p.time for p in remapped.timing_points if p.uninherited] == [250.0]
    assert remapped.metadata["Title"] == "Reference Song" and validity_problems(remapped) == []


def test_partial_remap_writes_into_the_reference_only_when_asked(model_dir, song, human_model):
    reference = write_reference(song.parent)
    result = run(config(model_dir, f"beatmap_path={reference}", "add_to_beatmap=true", "start_time=4000",
                        "end_time=8000", "overwrite_reference_beatmap=true"))
    assert result.osu_path == reference
    assert files(song.parent) == {"audio.ogg", "reference.osu"}


def test_a_reference_fills_the_unset_settings(model_dir, song, human_model):
    reference = write_reference(song.parent, mode=3)
    result = run(config(model_dir, f"beatmap_path={reference}", "hp_drain_rate=7"))
    beatmap = read_beatmap(result.osu_path)
    assert beatmap.mode == 3 and beatmap.keycount == 4 and beatmap.hp == 7.0
    assert beatmap.metadata["Title"] == "Reference Song" and beatmap.metadata["Version"] == "Hard (AI)"
    assert all(o.kind != HOLD or o.end_time > o.time for o in beatmap.hit_objects)


def test_an_unset_difficulty_aims_at_a_typical_map_of_the_mode_and_says_so(model_dir, song, human_model):
    assert [resolve(config(model_dir, f"audio_path={song}", f"gamemode={mode}")).metadata.star_rating
            for mode in range(4)] == [3.9, 3.3, 3.2, 2.8]
    result = run(config(model_dir, f"audio_path={song}", "gamemode=3", "timing_source=model"))
    assert read_beatmap(result.osu_path).metadata["Version"] == "AI 2.8*"
    assert result.summary().splitlines()[1] == (
        "(no difficulty was given, so it aimed at 2.8*, a typical human map; difficulty=N chooses)")
    # An asked difficulty, or a reference map's, wins; null leaves it unknown to the model and unfitted.
    assert resolve(config(model_dir, f"audio_path={song}", "difficulty=5")).metadata.star_rating == 5
    reference = write_reference(song.parent, mode=3)
    from_reference = resolve(config(model_dir, f"beatmap_path={reference}"))
    assert from_reference.metadata.star_rating == pytest.approx(star_rating(read_beatmap(reference)))
    assert not from_reference.difficulty_defaulted
    unknown = run(config(model_dir, f"audio_path={song}", "gamemode=3", "timing_source=model", "default_difficulty=null"))
    assert read_beatmap(unknown.osu_path).metadata["Version"] == "AI" and len(unknown.summary().splitlines()) == 1


def test_a_saved_generation_is_post_processed_again_without_the_model(model_dir, song, human_model, tmp_path):
    first = run(config(model_dir, f"audio_path={song}", "difficulty=3", "save_generated=true"))
    saved = first.generated_path
    assert saved == first.osu_path.with_name(first.osu_path.stem + ".generated.json")
    assert files(song.parent) == {"audio.ogg", first.osu_path.name, saved.name}

    def replayed(*overrides: str):
        # A missing model folder: only the saved generation is read.
        return run(config(tmp_path / "no_model", f"audio_path={song}", f"generated_path={hydra_quote(str(saved))}",
                          f"output_path={tmp_path / 'out'}", *overrides))

    again = replayed("difficulty=3")
    assert again.tokens == 0 and again.osu_path.parent == tmp_path / "out" and "tokens/s" not in again.summary()
    assert object_lines(again.osu_path) == object_lines(first.osu_path)
    # Post-processing settings do apply: a lower target removes objects, no fitting keeps them all.
    assert len(replayed("difficulty=1").beatmap.hit_objects) < len(replayed("fit_stars=false").beatmap.hit_objects)
    with pytest.raises(InferenceError, match="the saved generation is for gamemode 0, not the requested 3"):
        replayed("gamemode=3")


# -- bad input ----------------------------------------------------------------------------------------
def bad_inputs(folder: Path, song: Path) -> dict[str, tuple[list[str], str]]:
    (folder / "noise.mp3").write_bytes(b"this is not audio" * 100)
    (folder / "song.txt").write_text("la la la")
    soundfile.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    soundfile.write(folder / "silent.wav", np.zeros(16000 * 5, dtype=np.float32), 16000)
    (folder / "not_a_map.osu").write_text("hello, I am a shopping list\neggs\nmilk\n")
    (folder / "a_file").write_text("")
    return {
        "missing audio": ([f"audio_path={folder / 'nope.mp3'}"], "does not exist"),
        "unreadable audio": ([f"audio_path={folder / 'noise.mp3'}"], "noise.mp3"),
        "unsupported format": ([f"audio_path={folder / 'song.txt'}"], "not a supported audio format"),
        "empty audio": ([f"audio_path={folder / 'empty.wav'}"], "empty"),
        "silent audio": ([f"audio_path={folder / 'silent.wav'}"], "silent"),
        "not a beatmap": ([f"beatmap_path={folder / 'not_a_map.osu'}", f"audio_path={song}"], "not_a_map.osu"),
        "gamemode 7": ([f"audio_path={song}", "gamemode=7"], "gamemode must be"),
        "difficulty -1": ([f"audio_path={song}", "difficulty=-1"], "difficulty must be"),
        "difficulty a word": ([f"audio_path={song}", "difficulty=hard"], "difficulty must be a number, not hard"),
        "default difficulty 30": ([f"audio_path={song}", "default_difficulty=30"],
                                  "default_difficulty must be null or a star rating from 0 to 20"),
        "seed a word": ([f"audio_path={song}", "seed=lucky"], "seed must be a number, not lucky"),
        "audio is a folder": ([f"audio_path={folder}"], "is a folder, not a file"),
        "keycount 0": ([f"audio_path={song}", "gamemode=3", "keycount=0"], "keycount must be"),
        "hold share 2": ([f"audio_path={song}", "gamemode=3", "mania_hold_share=2"], "mania_hold_share must be from 0 to 1, not 2"),
        "cfg_scale 0": ([f"audio_path={song}", "cfg_scale=0"], "cfg_scale must be"),
        "cfg_difficulty maybe": ([f"audio_path={song}", "cfg_difficulty=maybe"], "cfg_difficulty must be"),
        "output is a file": ([f"audio_path={song}", f"output_path={folder / 'a_file'}"], "is a file"),
        "output cannot be made": ([f"audio_path={song}", f"output_path={folder / 'a_file' / 'inside'}"], "cannot write"),
        "missing model": ([f"audio_path={song}", f"model_path={folder / 'no_model'}"], "is not a model folder"),
        "missing refiner": ([f"audio_path={song}", "generate_positions=true", f"diff_model_path={folder / 'none'}"],
                            "holds no refiner"),
        "missing rhythm model": ([f"audio_path={song}", f"rhythm_model_path={folder / 'none'}"], "holds no rhythm model"),
        "missing generation": ([f"audio_path={song}", f"generated_path={folder / 'none.generated.json'}"],
                               "cannot read the saved generation"),
        "not a generation": ([f"audio_path={song}", f"generated_path={folder / 'not_a_map.osu'}"],
                             "is not a saved generation"),
    }


@pytest.mark.parametrize("case", ["missing audio", "unreadable audio", "unsupported format", "empty audio", "silent audio",
                                  "not a beatmap", "gamemode 7", "difficulty -1", "difficulty a word", "default difficulty 30", "seed a word",
                                  "audio is a folder", "keycount 0", "hold share 2", "cfg_scale 0",
                                  "cfg_difficulty maybe", "output is a file", "output cannot be made", "missing model", "missing refiner",
                                  "missing rhythm model", "missing generation", "not a generation"])
def test_bad_input_gets_one_sentence_and_writes_nothing(model_dir, song, tmp_path, capsys, case):
    folder = tmp_path / "inputs"
    folder.mkdir()
    overrides, message = bad_inputs(folder, song)[case]
    before = {p: files(p) for p in (folder, song.parent)}
    assert generate(config(model_dir, *overrides)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert {p: files(p) for p in before} == before


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path):
    run_ = subprocess.run([sys.executable, "inference.py", f"audio_path={tmp_path / 'missing.mp3'}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert run_.returncode == 1
    assert "Traceback" not in run_.stderr and run_.stderr.strip().startswith("error: audio file")
    assert not (REPO_ROOT / "inference.log").exists() and not (REPO_ROOT / ".hydra").exists()


def test_auto_precision_uses_int8_decoding_only_where_the_cpu_has_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    assert pick_precision("fp32", cpu) == "fp32" and pick_precision("bf16", cpu) == "bf16"
    for kind in ("avx512_bf16", "amx_tile"):
        monkeypatch.setattr(torch.cpu, f"_is_{kind}_supported", lambda: False)
    assert pick_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert pick_precision("auto", cpu) == "int8"


@pytest.mark.parametrize("mode", [0, 2])
def test_generate_positions_refines_inside_the_written_cells_and_stays_valid(model_dir, song, human_model, tokenizer,
                                                                             tmp_path, mode):
    from osu_diffusion.model import DiT, DiTConfig, save_dit

    torch.manual_seed(0)
    refiner = DiT(DiTConfig(hidden=32, depth=1, heads=2, position_dim=16, context_dim=16, attention_band=8))
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_dit(refiner, tmp_path / "refiner")
    common = [f"audio_path={song}", f"gamemode={mode}", "difficulty=4.5", "snap_near_perfect_overlaps=false",
              "even_spacing=null"]  # the refiner's positions alone: spacing would move them on from there
    plain = read_beatmap(run(config(model_dir, *common, f"output_path={tmp_path / 'plain'}")).osu_path)
    refined = read_beatmap(run(config(model_dir, *common, "generate_positions=true", f"diff_model_path={tmp_path / 'refiner'}",
                                      f"output_path={tmp_path / 'refined'}")).osu_path)
    assert validity_problems(refined) == []
    assert [o.time for o in refined.hit_objects] == [o.time for o in plain.hit_objects]
    circles = [(a, b) for a, b in zip(plain.hit_objects, refined.hit_objects) if a.kind == "circle"]
    assert sum((a.x, a.y) != (b.x, b.y) for a, b in circles) > len(circles) // 2
    for a, b in circles:  # cell centres in, positions inside the same 32-px cell out
        assert abs(b.x - a.x) <= 16 and abs(b.y - a.y) <= 16


@pytest.mark.parametrize("name", ["Artist - Title (Mapper) [Hard].osu", "newtoniorock8's Salad, v2 [x].osu",
                                  r"C:\Songs\it's\ ", "plain.osu"])
def test_path_values_reach_the_config_verbatim_whatever_hydra_syntax_they_hold(name):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from osuT5.cli import quote_paths

    argv = ["inference.py", f"beatmap_path={name}", f"+generation.model_path={name}", "gamemode=0", "tags='[a]'"]
    quoted = quote_paths(argv)
    assert quoted[0] == "inference.py" and quoted[3:] == ["gamemode=0", "tags='[a]'"]
    parser = OverridesParser.create()
    assert [parser.parse_override(a).value() for a in quoted[1:3]] == [name, name]
    assert quote_paths(["x.py", "beatmap_path='already quoted'"]) == ["x.py", "beatmap_path='already quoted'"]
    assert quote_paths(["rhythm_model_path=null"]) == ["rhythm_model_path=null"]  # Hydra's null: the path is off


@pytest.mark.parametrize("script", ["inference.py", "mai_mod.py"])
def test_the_command_line_takes_an_osu_file_name_unquoted(tmp_path, script):
    folder = tmp_path / "Artist - Title (Mapper)"
    folder.mkdir()
    missing = folder / "Artist - Title (Mapper) [Hard].osu"
    done = subprocess.run([sys.executable, script, f"beatmap_path={missing}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == f"error: beatmap_path {missing} does not exist"


@pytest.fixture
def fast_song(tmp_path):
    path = tmp_path / "fast" / "audio.ogg"
    path.parent.mkdir()
    soundfile.write(path, click_track(12.0, 150.0, offset_ms=100.0), 16000)
    return path


def redlines(result):
    return [p for p in read_beatmap(result.osu_path).timing_points if p.uninherited]


# On click tracks the audio tempo reads up to 35 ms early (tests/test_tempo.py: CLICKS_READ_EARLY).
def test_inference_times_from_the_audio_when_asked(model_dir, fast_song, human_model):
    # The replayed human timing says 120 BPM; the song is at 150.
    red = redlines(run(config(model_dir, f"audio_path={fast_song}", "timing_source=audio")))
    assert len(red) == 1 and red[0].beat_length == pytest.approx(400)
    assert -35 <= (red[0].time - 100 + 200) % 400 - 200 <= 0


def test_the_default_timing_comes_from_the_audio_without_a_timing_pass(model_dir, fast_song, human_model, monkeypatch):
    """The shipped model's own beats are at chance (configs/inference_v29.yaml), so by default no window
    is spent on them: the kiai and map passes run on the audio's tempo."""
    from osuT5.generate import Generator
    passes = []
    real = Generator.generate_context
    monkeypatch.setattr(Generator, "generate_context", lambda self, context, *a, **k: passes.append(context) or real(self, context, *a, **k))
    red = redlines(run(config(model_dir, f"audio_path={fast_song}", "gamemode=0")))
    assert [c.value for c in passes] == ["kiai", "map"]
    assert len(red) == 1 and red[0].beat_length == pytest.approx(400)  # the clicks' 150 BPM, not the replayed 120


def test_auto_takes_the_timing_the_onsets_back(model_dir, fast_song, human_model):
    red = redlines(run(config(model_dir, f"audio_path={fast_song}", "timing_source=auto")))
    assert red[0].beat_length == pytest.approx(400)  # the generated 120 BPM misses the 150 BPM clicks
    red = redlines(run(config(model_dir, f"audio_path={fast_song}", "timing_source=model")))
    assert red[0].beat_length == pytest.approx(500)


def test_a_forced_bpm_is_the_only_redline(model_dir, fast_song, human_model):
    red = redlines(run(config(model_dir, f"audio_path={fast_song}", "bpm=180", "offset=50")))
    assert [(p.time, round(p.beat_length, 6)) for p in red] == [(50.0, round(60000 / 180, 6))]


@pytest.mark.parametrize("overrides, words", [(["timing_source=beats"], "timing_source must be one of"),
                                              (["bpm=10"], "bpm must be from 30 to 1000"),
                                              (["min_bpm=200", "max_bpm=150"], "min_bpm and max_bpm"),
                                              (["audio_timing_margin=0"], "audio_timing_margin must be above 0")])
def test_bad_timing_settings_are_one_sentence(model_dir, fast_song, overrides, words):
    with pytest.raises(InferenceError, match=words):
        run(config(model_dir, f"audio_path={fast_song}", *overrides))


def test_the_map_pass_aims_at_the_requested_stars_density_a_given_one_or_none(model_dir):
    mania = BeatmapMetadata(mode=3, star_rating=1.5)
    auto = _density_control(config(model_dir), mania)
    assert auto.target == pytest.approx(math.exp(0.770 + 0.384 * 1.5))  # configs/inference_v29.yaml: density_fit
    assert auto.min_gap_ms == pytest.approx(600 / auto.target)  # density_min_gap: 0.6 of the mean gap for mania
    assert _density_control(config(model_dir, "target_density=3"), mania).target == 3.0
    assert _density_control(config(model_dir), BeatmapMetadata(mode=3)) is None  # no difficulty asked for
    assert _density_control(config(model_dir, "target_density=null"), mania) is None


@pytest.mark.parametrize("value", ["0", "-2", "dense"])
def test_a_bad_target_density_is_one_sentence(model_dir, fast_song, value):
    with pytest.raises(InferenceError, match="target_density must be auto, null"):
        run(config(model_dir, f"audio_path={fast_song}", f"target_density={value}"))


@pytest.mark.parametrize("setting, words", [("onset_fill_gap=-5", "onset_fill_gap must be ms, 0 or more"),
                                            ("onset_fill_strength=loud", "onset_fill_strength must be a tick score, 0 or more"),
                                            ("onset_fill_divisor=0", "onset_fill_divisor must be a snap divisor from 1 to 16"),
                                            ("onset_fill_divisor=2.5", "onset_fill_divisor must be a snap divisor"),
                                            ("onset_fill_whole_beats=-1", "onset_fill_whole_beats must be objects a beat, 0 or more"),
                                            ("mania_raise_gap=-5", "mania_raise_gap must be ms, 0 or more"),
                                            ("mania_raise_divisor=17", "mania_raise_divisor must be a snap divisor from 1 to 16, or 0"),
                                            ("fit_stars=[true,false]", "fit_stars must be true or false, once or for each mode"),
                                            ("fit_stars=often", "fit_stars must be true or false"),
                                            ("star_tolerance=-1", "star_tolerance must be stars, 0 or more"),
                                            ("star_tolerance=[0.25,0.25,0.25]", "star_tolerance must be stars")])
def test_bad_onset_fill_and_star_fitting_settings_are_one_sentence(model_dir, fast_song, setting, words):
    with pytest.raises(InferenceError, match=words):
        run(config(model_dir, f"audio_path={fast_song}", setting))


@pytest.mark.parametrize("scorer", [["rhythm_model_path=null", "onset_fill_strength=0.1"],  # synthetic clicks peak late
                                    []])  # the shipped rhythm model
def test_onset_fill_puts_circles_on_the_clicks_a_sparse_map_skipped(model_dir, song, monkeypatch, tokenizer, scorer):
    every_other_beat = [circle(100 + 20 * k, 200, 750 + 1000 * k) for k in range(10)]  # the clicks are every 500 ms from 250
    sparse = osu_text(0, every_other_beat, ["250,500,4,2,0,60,1,0"], general={"AudioFilename": "audio.ogg"})
    replay_maps(monkeypatch, tokenizer, lambda mode: parse_beatmap(sparse))
    settings = [f"audio_path={song}", "gamemode=0", "timing_source=model", "target_density=2", "fit_stars=false"]
    plain = [o.time for o in read_beatmap(run(config(model_dir, *settings, "onset_fill=0")).osu_path).hit_objects]
    filling = ["onset_fill=1", *scorer, "output_path=" + str(song.parent / "filled")]
    result = run(config(model_dir, *settings, *filling))
    filled = read_beatmap(result.osu_path)
    added = sorted({o.time for o in filled.hit_objects} - set(plain))
    off_click = lambda t: abs((t - 250 + 250) % 500 - 250)  # ms to the nearest click (the timing is the model's: within 10)
    assert len(plain) == 10 and max(abs(t - (750 + 1000 * k)) for k, t in enumerate(plain)) <= 10
    assert len(added) == 9 and max(map(off_click, added)) <= 10  # every click between the first and last object
    assert validity_problems(filled) == []


@pytest.mark.parametrize("mode, stars, free_above, tolerance", [(0, 1.5, 2.5, 0.25), (2, 0.5, 1.0, 0.25), (3, 0.8, 0.9, 0.0)])
def test_osu_catch_and_mania_maps_are_fitted_to_the_requested_stars_unless_asked_not_to(model_dir, song, human_model, mode,
                                                                                        stars, free_above, tolerance):
    settings = [f"audio_path={song}", f"gamemode={mode}", "timing_source=model", "target_density=null", f"difficulty={stars}"]
    free = run(config(model_dir, *settings, "fit_stars=false"))
    fitted = run(config(model_dir, *settings))
    assert free.stars > free_above and fitted.stars <= stars + tolerance
    assert {o.time for o in fitted.beatmap.hit_objects} <= {o.time for o in free.beatmap.hit_objects}
    assert validity_problems(read_beatmap(fitted.osu_path)) == []


def test_a_mania_map_under_the_request_gets_notes_on_the_clicks_it_skipped_then_chords(model_dir, song, monkeypatch, tokenizer):
    every_other_beat = [mania_note(k % 4, 4, 750 + 1000 * k) for k in range(10)]  # the clicks are every 500 ms from 250
    sparse = osu_text(3, every_other_beat, ["250,500,4,2,0,60,1,0"], general={"AudioFilename": "audio.ogg"},
                      difficulty={"CircleSize": "4"})
    replay_maps(monkeypatch, tokenizer, lambda mode: parse_beatmap(sparse))
    # onset fill itself adds and moves nothing (a tenth of the target density, no drop); the map rates far under the request
    settings = [f"audio_path={song}", "gamemode=3", "timing_source=model", "target_density=2", "onset_fill=0.1",
                "onset_fill_drop=0", "difficulty=4"]
    free = run(config(model_dir, *settings, "fit_stars=false"))
    raised = run(config(model_dir, *settings, "mania_raise_divisor=0", "output_path=" + str(song.parent / "raised")))
    plain, notes = [o.time for o in free.beatmap.hit_objects], read_beatmap(raised.osu_path).hit_objects
    added = sorted({o.time for o in notes} - set(plain))
    assert len(plain) == 10 and free.stars < raised.stars <= 4
    assert len(added) == 9 and len(notes) == 19
    assert max(abs((t - 250 + 250) % 500 - 250) for t in added) <= 10  # on the clicks between
    assert validity_problems(read_beatmap(raised.osu_path)) == []
    # still under the request, it then gets chord notes on those 19 times (its 1/4 ticks are silent: none there)
    chorded = run(config(model_dir, *settings, "output_path=" + str(song.parent / "chorded")))
    notes = read_beatmap(chorded.osu_path).hit_objects
    assert raised.stars < chorded.stars <= 4 and {o.time for o in notes} == set(plain + added) and len(notes) > 19
    assert validity_problems(read_beatmap(chorded.osu_path)) == []


def test_mania_maps_get_the_asked_share_of_holds_else_the_default_one(model_dir, song, monkeypatch, tokenizer):
    every_other_beat = [mania_note(k % 4, 4, 750 + 1000 * k) for k in range(10)]
    sparse = osu_text(3, every_other_beat, ["250,500,4,2,0,60,1,0"], general={"AudioFilename": "audio.ogg"},
                      difficulty={"CircleSize": "4"})
    replay_maps(monkeypatch, tokenizer, lambda mode: parse_beatmap(sparse))
    settings = [f"audio_path={song}", "gamemode=3", "timing_source=model", "target_density=null", "fit_stars=false"]

    def holds(*overrides: str, folder: str) -> list[tuple[float, float]]:
        result = run(config(model_dir, *settings, *overrides, f"output_path={song.parent / folder}"))
        beatmap = read_beatmap(result.osu_path)
        assert validity_problems(beatmap) == [] and len(beatmap.hit_objects) == 10
        return [(o.time, o.end_time) for o in beatmap.hit_objects if o.kind == HOLD]

    # every note has 4 s of room or more: 3 of the 10, evenly spread, hold for 2 beats
    held = holds("mania_hold_share=0.3", folder="share")
    assert [round(start, -2) for start, _ in held] == [1800, 5800, 8800] and all(end - start == 1000 for start, end in held)
    assert len(holds("mania_hold_share=0.3", "hold_note_ratio=0.1", folder="ratio")) == 1  # the asked ratio wins
    assert len(holds(folder="default")) == 1 and holds("mania_hold_share=0", folder="none") == []


def test_taiko_maps_are_fitted_only_when_asked(model_dir, song, human_model):
    settings = [f"audio_path={song}", "gamemode=1", "timing_source=model", "target_density=null", "difficulty=0.5"]
    assert run(config(model_dir, *settings)).stars > 1.0
    assert run(config(model_dir, *settings, "fit_stars=true", "output_path=" + str(song.parent / "fitted"))).stars <= 0.75


@pytest.mark.parametrize("name, what", [("onset_prior", "a weight"), ("onset_snap", "a number of beats"),
                                        ("onset_fill", "a share of target_density")])
@pytest.mark.parametrize("value", ["-1", "[1,2]", "true", "strong"])
def test_a_bad_onset_prior_or_onset_snap_is_one_sentence(model_dir, fast_song, name, what, value):
    with pytest.raises(InferenceError, match=f"{name} must be {what} of 0"):
        run(config(model_dir, f"audio_path={fast_song}", f"{name}={value}"))


@pytest.mark.parametrize("value", ["[1,2]", "true", "[4,16,0,-1]", "[true,true,false,true]", "[4,16,0,2.5]"])
def test_a_bad_separate_starts_is_one_sentence(model_dir, fast_song, value):
    with pytest.raises(InferenceError, match="separate_starts must be a snap divisor, 0 \\(off\\) or more, for each mode 0-3"):
        run(config(model_dir, f"audio_path={fast_song}", f"separate_starts={value}"))


@pytest.mark.parametrize("value", ["-1", "2.5", "true", "often"])
def test_a_bad_new_combo_at_bars_is_one_sentence(model_dir, fast_song, value):
    with pytest.raises(InferenceError, match="new_combo_at_bars must be a number of objects, 0 \\(off\\) or more"):
        run(config(model_dir, f"audio_path={fast_song}", f"new_combo_at_bars={value}"))


@pytest.mark.parametrize("value", ["[1.5,0.7]", "0.7", "[0.7,1.5,2]", "[-1,1]", "[wide,1]"])
def test_a_bad_even_spacing_is_one_sentence(model_dir, fast_song, value):
    with pytest.raises(InferenceError, match=r"even_spacing must be null \(off\) or \[low, high\]"):
        run(config(model_dir, f"audio_path={fast_song}", f"even_spacing={value}"))


@pytest.mark.parametrize("name, value, message", [
    ("spacing_fit", "[1]", r"spacing_fit must be null or \[a, b\]"),
    ("mania_chord_fit", "[0.9,many]", r"mania_chord_fit must be null \(off\) or \[a, b\]"),
    ("mania_chord_fit", "1.2", r"mania_chord_fit must be null \(off\) or \[a, b\]")])
def test_a_bad_fit_line_is_one_sentence(model_dir, fast_song, name, value, message):
    with pytest.raises(InferenceError, match=message):
        run(config(model_dir, f"audio_path={fast_song}", f"{name}={value}"))


@pytest.mark.parametrize("mode, prior, weight", [(3, "[0,0,0,1.5]", 1.5), (0, "[0,0,0,1.5]", None), (1, "2", 2.0)])
def test_only_the_map_pass_gets_the_onset_prior_of_its_mode(model_dir, fast_song, monkeypatch, mode, prior, weight):
    from osuT5.generate import Generator
    from tokenizer.events import ContextType

    class Stop(Exception):
        pass

    seen = {}

    def generate_context(self, context, windows, plan, prefilled=None, sampling=None, progress=None, density=None, onsets=None):
        seen[context] = onsets
        if context == ContextType.MAP:
            raise Stop
        return []

    monkeypatch.setattr(Generator, "generate_context", generate_context)
    with pytest.raises(Stop):
        run(config(model_dir, f"audio_path={fast_song}", f"gamemode={mode}", "timing_source=audio", f"onset_prior={prior}"))
    assert all(onsets is None for context, onsets in seen.items() if context != ContextType.MAP)
    assert (seen[ContextType.MAP] is None) if weight is None else seen[ContextType.MAP].weight == weight


def test_difficulty_guidance_leaves_only_the_star_rating_out_of_the_negative_prompt(tmp_path):
    meta = BeatmapMetadata(mode=0, star_rating=5.5, mapper="123")
    assert _negative(config(tmp_path), meta) is None  # cfg_scale 1: no guidance
    assert _negative(config(tmp_path, "cfg_scale=3"), meta) == replace(meta, mapper=None)
    assert _negative(config(tmp_path, "cfg_scale=3", "cfg_difficulty=true"), meta) == replace(meta, mapper=None, star_rating=None)

"""The .osu reader and writer: every field the reader keeps, old/new format versions, the writer's
round trip and safety, and malformed input (skipped lines with warnings, BeatmapError otherwise)."""
from __future__ import annotations

import math
import os
import random

import pytest
import rosu_pp_py

from tokenizer.osu_file import (
    CIRCLE, HOLD, SLIDER, SPINNER, Beatmap, BeatmapError, HitSample, format_beatmap, parse_beatmap,
    read_beatmap, write_beatmap,
)
from tokenizer.timing import TimingPoint

from conftest import DEFAULT_REDLINE, circle, mania_hold, mania_note, osu_text


def stars(text: str) -> float:
    return rosu_pp_py.Difficulty().calculate(rosu_pp_py.Beatmap(content=text)).stars


def line_number(text: str, line: str) -> int:
    """1-based number of the first line of `text` that is exactly `line`."""
    return text.split("\n").index(line) + 1


# ---------------------------------------------------------------------------------------------
# Reader: objects of every mode

def test_circle_fields(write_osu):
    path = write_osu(osu_text(0, ["100,200,1000,1,2,1:2:3:70:hit.wav"]))
    beatmap = read_beatmap(path)
    assert beatmap.source == str(path)
    assert beatmap.warnings == []
    assert beatmap.format_version == 14
    assert beatmap.mode == 0
    [obj] = beatmap.hit_objects
    assert (obj.kind, obj.x, obj.y, obj.time, obj.hitsound) == (CIRCLE, 100.0, 200.0, 1000.0, 2)
    assert obj.new_combo is False and obj.combo_skip == 0
    assert obj.sample == HitSample(1, 2, 3, 70, "hit.wav")
    assert obj.end_time is None


def test_hit_sample_defaults_when_missing():
    [obj] = parse_beatmap(osu_text(0, ["100,200,1000,1,0"])).hit_objects
    assert obj.sample == HitSample(0, 0, 0, 0, "")


def test_hit_sample_filename_with_colon_and_spaces():
    [obj] = parse_beatmap(osu_text(0, ["100,200,1000,1,0,0:0:0:100:my sample:v2.ogg"])).hit_objects
    assert obj.sample == HitSample(0, 0, 0, 100, "my sample:v2.ogg")


def test_new_combo_and_combo_colour_skip_bits():
    text = osu_text(0, ["10,10,1000,5,0,0:0:0:0:",  # 1 | 4: new combo
                        "20,20,1500,53,0,0:0:0:0:",  # 1 | 4 | 3 << 4: new combo, skip 3 colours
                        "30,30,2000,1,0,0:0:0:0:",
                        "40,40,2500,117,0,0:0:0:0:"])  # 1 | 4 | 7 << 4
    objs = parse_beatmap(text).hit_objects
    assert [(o.new_combo, o.combo_skip) for o in objs] == [(True, 0), (True, 3), (False, 0), (True, 7)]


def test_slider_bezier_with_repeats_edge_sounds_and_sets():
    timing = ["0,500,4,2,0,60,1,0", "1000,-50,4,2,0,60,0,0"]  # SV 2 from 1000
    line = "100,100,1000,6,2,B|200:100|200:200,2,150,2|0|8,1:2|0:0|2:3,1:2:0:0:"
    beatmap = parse_beatmap(osu_text(0, [line], timing))
    [s] = beatmap.hit_objects
    assert s.kind == SLIDER and s.new_combo
    assert (s.x, s.y, s.time, s.hitsound) == (100.0, 100.0, 1000.0, 2)
    assert s.curve_type == "B"
    assert s.curve_points == [(200.0, 100.0), (200.0, 200.0)]
    assert s.slides == 2
    assert s.length == 150.0
    assert s.edge_sounds == [2, 0, 8]
    assert s.edge_sets == [(1, 2), (0, 0), (2, 3)]
    assert s.sample == HitSample(1, 2, 0, 0, "")
    # end = start + slides * length / (100 * SM * SV) * beatLength = 1000 + 2 * 150 / (100 * 1.4 * 2) * 500
    assert s.end_time == pytest.approx(1000 + 300 / 280 * 500)  # 1535.714...
    assert s.end_time == pytest.approx(1535.7142857142858)
    assert s.span_duration == pytest.approx(267.857142857, abs=1e-6)


def test_slider_end_time_uses_redline_and_sv_in_effect():
    # 150 BPM redline at 2000 (beat 400), greenline SV 0.5 at 2500, SM 1.8
    timing = ["0,500,4,2,0,60,1,0", "2000,400,4,2,0,60,1,0", "2500,-200,4,2,0,60,0,0"]
    lines = ["0,0,1000,2,0,L|100:0,1,100", "0,0,2000,2,0,L|100:0,1,72", "0,0,3000,2,0,L|100:0,3,90"]
    objs = parse_beatmap(osu_text(0, lines, timing, difficulty={"SliderMultiplier": "1.8"})).hit_objects
    # 1000 + 1 * 100 / (100 * 1.8 * 1) * 500
    assert objs[0].end_time == pytest.approx(1000 + 100 / 180 * 500)
    # 2000 + 1 * 72 / (100 * 1.8 * 1) * 400 = 2160
    assert objs[1].end_time == pytest.approx(2160.0)
    # 3000 + 3 * 90 / (100 * 1.8 * 0.5) * 400 = 3000 + 1200
    assert objs[2].end_time == pytest.approx(4200.0)


def test_slider_edge_sounds_default_to_object_hitsound_and_sets():
    [s] = parse_beatmap(osu_text(0, ["0,0,1000,2,8,L|100:0,3,100"])).hit_objects
    assert s.edge_sounds == [8, 8, 8, 8]
    assert s.edge_sets == [(0, 0)] * 4
    [s] = parse_beatmap(osu_text(0, ["0,0,1000,2,8,L|100:0,1,100,,,2:3:0:0:"])).hit_objects
    assert s.edge_sounds == [8, 8]
    assert s.edge_sets == [(2, 3), (2, 3)]


@pytest.mark.parametrize("letter, points", [
    ("B", [(50.0, 100.0), (50.0, 100.0), (150.0, 50.0)]),
    ("P", [(150.0, 50.0), (200.0, 100.0)]),
    ("C", [(150.0, 50.0), (200.0, 100.0), (300.0, 80.0)]),
    ("L", [(300.0, 100.0)]),
])
def test_slider_curve_types(letter, points):
    curve = "|".join(f"{x:g}:{y:g}" for x, y in points)
    [s] = parse_beatmap(osu_text(0, [f"100,100,1000,2,0,{letter}|{curve},1,120"])).hit_objects
    assert s.curve_type == letter
    assert s.curve_points == points
    # SM 1.4, SV 1, beat 500: 1000 + 120 / 140 * 500
    assert s.end_time == pytest.approx(1000 + 120 / 140 * 500)


def test_slider_with_zero_length_uses_path_length():
    [s] = parse_beatmap(osu_text(0, ["0,0,1000,2,0,L|140:0,1,0"])).hit_objects
    assert s.length == 0.0
    assert s.end_time == pytest.approx(1500.0)  # 140 px at 140 px/beat


@pytest.mark.parametrize("type_bits", [3, 7, 9, 129])
def test_circle_bit_takes_precedence_over_other_type_bits(type_bits):
    text = osu_text(0, [f"100,100,1000,{type_bits},0,0:0:0:0:", circle(200, 100, 1500)])
    beatmap = parse_beatmap(text)
    assert beatmap.warnings == []
    assert [(o.kind, o.x, o.time) for o in beatmap.hit_objects] == [(CIRCLE, 100.0, 1000.0), (CIRCLE, 200.0, 1500.0)]
    assert len(beatmap.hit_objects) == rosu_pp_py.Difficulty().calculate(rosu_pp_py.Beatmap(content=text)).n_circles


def test_slider_without_curve_points_is_a_zero_length_slider():
    text = osu_text(0, ["15,199,4836,22,0,L,1,46.875"])
    [slider] = parse_beatmap(text).hit_objects
    assert (slider.kind, slider.curve_type, slider.curve_points, slider.new_combo) == (SLIDER, "L", [], True)
    again = parse_beatmap(format_beatmap(parse_beatmap(text))).hit_objects
    assert again == [slider]


def test_spinner():
    [sp] = parse_beatmap(osu_text(0, ["256,192,2000,12,4,3500,0:0:0:0:"])).hit_objects
    assert (sp.kind, sp.time, sp.end_time, sp.hitsound, sp.new_combo) == (SPINNER, 2000.0, 3500.0, 4, True)


def test_mania_hold_note():
    text = osu_text(3, ["64,192,1000,128,2,1500:1:2:0:40:key.wav", mania_note(1, 4, 1000)], difficulty={"CircleSize": "4"})
    beatmap = parse_beatmap(text)
    assert beatmap.mode == 3 and beatmap.keycount == 4
    hold, note = beatmap.hit_objects
    assert (hold.kind, hold.x, hold.y, hold.time, hold.end_time, hold.hitsound) == (HOLD, 64.0, 192.0, 1000.0, 1500.0, 2)
    assert hold.sample == HitSample(1, 2, 0, 40, "key.wav")
    assert (note.kind, note.x) == (CIRCLE, 192.0)


def test_mania_hold_spec_form():
    [hold] = parse_beatmap(osu_text(3, ["448,192,2000,128,0,2750:0:0:0:0:"])).hit_objects
    assert (hold.kind, hold.time, hold.end_time) == (HOLD, 2000.0, 2750.0)
    assert hold.sample == HitSample(0, 0, 0, 0, "")


def test_taiko_and_catch_modes():
    taiko = parse_beatmap(osu_text(1, [circle(256, 192, 1000, hitsound=8), "256,192,2000,2,0,L|400:192,1,140"]))
    assert taiko.mode == 1
    assert [o.kind for o in taiko.hit_objects] == [CIRCLE, SLIDER]
    assert taiko.hit_objects[1].end_time == pytest.approx(2500.0)
    catch = parse_beatmap(osu_text(2, [circle(300, 192, 1000), "256,192,2000,12,0,3000,0:0:0:0:"]))
    assert catch.mode == 2
    assert [o.kind for o in catch.hit_objects] == [CIRCLE, SPINNER]


def test_decimal_coordinates_and_times():
    [c, s] = parse_beatmap(osu_text(0, ["100.5,200.25,1000.5,1,0,0:0:0:0:", "10.75,20.5,2000,2,0,B|30.5:40.25|50:60,1,70.5"])).hit_objects
    assert (c.x, c.y, c.time) == (100.5, 200.25, 1000.5)
    assert (s.x, s.y) == (10.75, 20.5)
    assert s.curve_points == [(30.5, 40.25), (50.0, 60.0)]
    assert s.length == 70.5


# ---------------------------------------------------------------------------------------------
# Reader: timing points, colours, events, settings

def test_timing_points_all_fields():
    timing = ["0,500,3,2,1,60,1,8",  # redline, 3/4, soft, custom index 1, omit first barline
              "1000,-50,3,1,0,80,0,1",  # greenline SV 2, kiai
              "2000,-200,4,3,2,90,0,9",  # greenline SV 0.5, kiai + omit
              "3000,400"]  # old two-field form: positive beat length = uninherited, defaults elsewhere
    points = parse_beatmap(osu_text(0, timing_points=timing)).timing_points
    assert points[0] == TimingPoint(0.0, 500.0, 3, 2, 1, 60, True, 8)
    assert points[0].omit_first_barline and not points[0].kiai
    assert points[1] == TimingPoint(1000.0, -50.0, 3, 1, 0, 80, False, 1)
    assert points[1].kiai and not points[1].omit_first_barline
    assert points[1].slider_velocity == pytest.approx(2.0)
    assert points[2] == TimingPoint(2000.0, -200.0, 4, 3, 2, 90, False, 9)
    assert points[2].kiai and points[2].omit_first_barline
    assert points[2].slider_velocity == pytest.approx(0.5)
    assert points[3] == TimingPoint(3000.0, 400.0, 4, 0, 0, 100, True, 0)
    assert points[3].slider_velocity == 1.0


def test_decimal_beat_length_kept_exactly():
    [p] = parse_beatmap(osu_text(0, timing_points=["-15.5,333.333333333333,4,2,0,60,1,0"])).timing_points
    assert p.time == -15.5
    assert p.beat_length == 333.333333333333


def test_settings_sections():
    beatmap = parse_beatmap(osu_text(1, metadata={"Title": "Re:Zero", "Tags": "a b c"},
                                     difficulty={"HPDrainRate": "6.5", "CircleSize": "3", "OverallDifficulty": "7",
                                                 "ApproachRate": "9.3", "SliderMultiplier": "1.6", "SliderTickRate": "2"}))
    assert beatmap.general["AudioFilename"] == "audio.mp3"
    assert beatmap.general["SampleSet"] == "Soft"
    assert beatmap.editor["BeatDivisor"] == "4"
    assert beatmap.metadata["Title"] == "Re:Zero"  # only the first colon separates key and value
    assert beatmap.metadata["Tags"] == "a b c"
    assert (beatmap.mode, beatmap.hp, beatmap.cs, beatmap.od, beatmap.ar) == (1, 6.5, 3.0, 7.0, 9.3)
    assert (beatmap.slider_multiplier, beatmap.slider_tick_rate) == (1.6, 2.0)


def test_missing_approach_rate_falls_back_to_od():
    text = osu_text(0).replace("ApproachRate:9\n", "")
    beatmap = parse_beatmap(text)
    assert "ApproachRate" not in beatmap.difficulty
    assert beatmap.ar == 8.0


def test_colours():
    beatmap = parse_beatmap(osu_text(0, colours={"Combo1": "255,0,0", "Combo2": "0,128,255", "SliderBorder": "10,20,30"}))
    assert beatmap.colours == {"Combo1": "255,0,0", "Combo2": "0,128,255", "SliderBorder": "10,20,30"}


def test_events_background_video_breaks_storyboard():
    events = ['0,0,"bg file.jpg",0,0', 'Video,-200,"intro.avi"', "2,5000,8000", "2,12000,15500",
              "Sprite,Foreground,Centre,\"sb/star.png\",320,240", " F,0,0,1000,0,1"]
    beatmap = parse_beatmap(osu_text(0, events=events))
    assert beatmap.background == "bg file.jpg"
    assert beatmap.video == (-200.0, "intro.avi")
    assert beatmap.breaks == [(5000.0, 8000.0), (12000.0, 15500.0)]
    assert beatmap.storyboard == ['Sprite,Foreground,Centre,"sb/star.png",320,240', " F,0,0,1000,0,1"]


def test_numeric_video_event():
    beatmap = parse_beatmap(osu_text(0, events=['1,0,"clip.mp4"']))
    assert beatmap.video == (0.0, "clip.mp4")


def test_extra_sections_kept():
    beatmap = parse_beatmap(osu_text(0, extra_sections="[Variables]\n$a=1\n$b=2"))
    assert beatmap.extra_sections == {"Variables": ["$a=1", "$b=2"]}


def test_bom_and_crlf(write_osu):
    text = osu_text(0, [circle(100, 100, 1000), "0,0,2000,2,0,L|100:0,1,100"], colours={"Combo1": "1,2,3"},
                    events=['0,0,"bg.jpg",0,0'], newline="\r\n")
    path = write_osu(b"\xef\xbb\xbf" + text.encode("utf-8"))
    beatmap = read_beatmap(path)
    reference = parse_beatmap(osu_text(0, [circle(100, 100, 1000), "0,0,2000,2,0,L|100:0,1,100"],
                                       colours={"Combo1": "1,2,3"}, events=['0,0,"bg.jpg",0,0']))
    assert beatmap.warnings == []
    assert beatmap.format_version == 14
    assert beatmap.metadata == reference.metadata
    assert beatmap.metadata["Title"] == "Test Song"  # no stray \r
    assert beatmap.general == reference.general
    assert beatmap.colours == {"Combo1": "1,2,3"}
    assert beatmap.background == "bg.jpg"
    assert beatmap.hit_objects == reference.hit_objects
    assert beatmap.timing_points == reference.timing_points


def test_old_cr_only_line_endings():
    beatmap = parse_beatmap(osu_text(0, [circle(1, 2, 1000)]).replace("\n", "\r").encode())
    assert beatmap.hit_objects[0].time == 1000.0
    assert beatmap.metadata["Creator"] == "pytest"


@pytest.mark.parametrize("version, offset", [(3, 24), (4, 24), (5, 0), (14, 0)])
def test_old_formats_get_24ms_offset(version, offset):
    lines = [circle(100, 100, 1000), "0,0,2000,2,0,L|140:0,1,140", "256,192,3000,12,0,4000,0:0:0:0:",
             "64,192,5000,128,0,5500:0:0:0:0:"]
    timing = ["0,500,4,2,0,60,1,0", "1500,-50,4,2,0,60,0,0"]
    beatmap = parse_beatmap(osu_text(0, lines, timing, version=version, events=["2,3200,3800"]))
    assert beatmap.format_version == version
    assert [o.time for o in beatmap.hit_objects] == [1000 + offset, 2000 + offset, 3000 + offset, 5000 + offset]
    assert beatmap.hit_objects[1].end_time == pytest.approx(2000 + offset + 250)  # 140 px at SV 2: half a beat
    assert beatmap.hit_objects[2].end_time == 4000 + offset
    assert beatmap.hit_objects[3].end_time == 5500 + offset
    assert [p.time for p in beatmap.timing_points] == [0 + offset, 1500 + offset]
    assert beatmap.breaks == [(3200 + offset, 3800 + offset)]


def test_v3_map_written_as_v14_keeps_times():
    beatmap = parse_beatmap(osu_text(0, [circle(100, 100, 1000), "256,192,3000,12,0,4000,0:0:0:0:"], version=3))
    text = format_beatmap(beatmap)
    assert text.startswith("osu file format v14\n")
    again = parse_beatmap(text)
    assert again.format_version == 14
    assert [(o.time, o.end_time) for o in again.hit_objects] == [(1024.0, None), (3024.0, 4024.0)]
    assert again.timing_points == beatmap.timing_points


def test_lazer_v128_header():
    beatmap = parse_beatmap(osu_text(0, [circle(1, 2, 1000)], version=128))
    assert beatmap.format_version == 128
    assert beatmap.warnings == []
    assert beatmap.hit_objects[0].time == 1000.0  # no old-map offset


def test_no_redline_warns():
    beatmap = parse_beatmap(osu_text(0, timing_points=["0,-50,4,2,0,60,0,0"]), "nored.osu")
    assert any("nored.osu" in w and "uninherited" in w for w in beatmap.warnings)
    assert beatmap.timing.beat_length_at(1000) == 1000.0


# ---------------------------------------------------------------------------------------------
# Writer

FULL_MAP_OBJECTS = [
    "100.5,200.25,1000,5,2,1:2:3:70:hit.wav",
    "100,100,1500,6,2,B|200:100|200:100|200:200,2,150,2|0|8,1:2|0:0|2:3,1:2:0:0:",
    "300,300,2500,2,0,P|350:250|400:300,1,120",
    "50,50,3200,2,4,C|80:90|120:60|160:100,1,90,4|0,0:0|3:1,0:0:0:0:",
    "10,20,3800,53,8,0:0:0:0:",
    "256,192,4000,12,0,5000,0:0:0:0:",
]
FULL_MAP_TIMING = ["-20,461.538461538462,4,2,1,60,1,0", "1500,-75,4,2,1,55,0,1", "2500,-133.333333333333,4,1,0,70,0,0",
                   "3000,400,3,2,0,60,1,8", "3000,-50,3,2,0,60,0,1"]


def full_map() -> str:
    return osu_text(0, FULL_MAP_OBJECTS, FULL_MAP_TIMING, colours={"Combo1": "255,0,0", "SliderBody": "1,2,3"},
                    events=['0,0,"bg.jpg",0,0', 'Video,-100,"v.mp4"', "2,4200,4800", "Sprite,Background,Centre,\"x.png\",0,0"],
                    extra_sections="[Variables]\n$x=1")


def assert_same_beatmap(a: Beatmap, b: Beatmap) -> None:
    assert b.hit_objects == a.hit_objects
    assert b.timing_points == a.timing_points
    for name in ("general", "editor", "metadata", "difficulty", "colours", "background", "video", "breaks",
                 "storyboard", "extra_sections"):
        assert getattr(b, name) == getattr(a, name), name


def test_write_read_round_trip(tmp_path, write_osu):
    original = read_beatmap(write_osu(full_map()))
    assert original.warnings == []
    out = tmp_path / "out.osu"
    write_beatmap(original, out)
    again = read_beatmap(out)
    assert again.warnings == []
    assert_same_beatmap(original, again)
    # and the written text is a fixed point
    assert format_beatmap(again) == out.read_text(encoding="utf-8")


@pytest.mark.parametrize("mode, objects", [
    (1, [circle(256, 192, 1000), circle(256, 192, 1250, hitsound=2), "256,192,1500,2,4,L|400:192,1,140",
         "256,192,2500,12,0,3500,0:0:0:0:"]),
    (2, [circle(40, 192, 1000, new_combo=True), "300,100,1500,2,0,B|350:120|400:100,2,100", circle(500, 192, 2500)]),
    (3, [mania_note(0, 4, 1000), mania_hold(1, 4, 1000, 1750), mania_note(3, 4, 1125, hitsound=8), mania_hold(2, 4, 1250, 2000)]),
])
def test_write_read_round_trip_other_modes(mode, objects):
    original = parse_beatmap(osu_text(mode, objects))
    again = parse_beatmap(format_beatmap(original))
    assert_same_beatmap(original, again)


def test_writer_adds_approach_rate_when_missing():
    original = parse_beatmap(osu_text(0).replace("ApproachRate:9\n", ""))
    again = parse_beatmap(format_beatmap(original))
    assert again.difficulty["ApproachRate"] == "8"
    assert again.ar == original.ar == 8.0


def test_write_refuses_to_overwrite(tmp_path):
    beatmap = parse_beatmap(full_map())
    out = tmp_path / "map.osu"
    out.write_text("keep me", encoding="utf-8")
    with pytest.raises(BeatmapError) as e:
        write_beatmap(beatmap, out)
    assert str(out) in str(e.value)
    assert out.read_text(encoding="utf-8") == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["map.osu"]

    write_beatmap(beatmap, out, overwrite=True)
    assert out.read_text(encoding="utf-8") == format_beatmap(beatmap)
    assert sorted(os.listdir(tmp_path)) == ["map.osu"]  # no temporary file left behind


def test_write_new_file_leaves_no_temp_files(tmp_path):
    write_beatmap(parse_beatmap(full_map()), tmp_path / "a.osu")
    write_beatmap(parse_beatmap(full_map()), tmp_path / "b.osu")
    assert sorted(os.listdir(tmp_path)) == ["a.osu", "b.osu"]
    assert (tmp_path / "a.osu").read_bytes() == (tmp_path / "b.osu").read_bytes()
    assert b"\r\n" not in (tmp_path / "a.osu").read_bytes()


def test_failed_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "target.osu"
    target.mkdir()  # a folder where the file should go: the final rename must fail
    with pytest.raises(BeatmapError):
        write_beatmap(parse_beatmap(full_map()), target, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["target.osu"]
    assert target.is_dir() and list(target.iterdir()) == []


def _many_objects(mode: int) -> list[str]:
    rng = random.Random(mode)
    lines = []
    for i in range(120):
        t = 1000 + i * 125
        if mode == 3:
            column = rng.randrange(7)
            lines.append(mania_hold(column, 7, t, t + 250) if i % 5 == 0 else mania_note(column, 7, t))
        elif i % 10 == 3:
            lines.append(f"{rng.randrange(40, 470)},{rng.randrange(40, 340)},{t},2,0,B|{rng.randrange(40, 470)}:{rng.randrange(40, 340)}|{rng.randrange(40, 470)}:{rng.randrange(40, 340)},1,70")
        else:
            lines.append(circle(rng.randrange(0, 512), rng.randrange(0, 384), t, new_combo=i % 8 == 0, hitsound=rng.choice([0, 2, 8])))
    return lines


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("version", [14, 5])
def test_written_star_rating_matches_original(mode, version):
    difficulty = {"CircleSize": "7"} if mode == 3 else {}
    timing = ["0,500,4,2,0,60,1,0", "5000,-80,4,2,0,60,0,0", "9000,375,4,2,0,60,1,0"]
    text = osu_text(mode, _many_objects(mode), timing, version=version, difficulty=difficulty)
    written = format_beatmap(parse_beatmap(text))
    before, after = stars(text), stars(written)
    assert before > 0.5
    assert after == pytest.approx(before, abs=0.01)


def test_written_star_rating_matches_for_rich_map():
    text = full_map()
    assert stars(format_beatmap(parse_beatmap(text))) == pytest.approx(stars(text), abs=0.01)


# ---------------------------------------------------------------------------------------------
# Malformed input

def read_error(path) -> str:
    with pytest.raises(BeatmapError) as e:
        read_beatmap(path)
    message = str(e.value)
    assert str(path) in message, message
    assert "\n" not in message
    return message


def test_empty_file(write_osu):
    assert "empty" in read_error(write_osu(b""))
    assert "empty" in read_error(write_osu(b"  \r\n\n\t", "blank.osu"))


def test_binary_file(write_osu):
    assert "binary" in read_error(write_osu(b"osu file format v14\n\x00\x01\x02\xff\xfe" * 10))
    assert "binary" in read_error(write_osu(b"\xff\xfe" + osu_text(0).encode("utf-16-le"), "utf16.osu"))


def test_non_utf8_metadata_parses_with_warning(write_osu):
    text = osu_text(0, metadata={"Title": "CAFE_MARK"})
    path = write_osu(text.encode("utf-8").replace(b"CAFE_MARK", b"Caf\xe9 \xff"))
    beatmap = read_beatmap(path)
    number = line_number(text, "Title:CAFE_MARK")
    assert beatmap.metadata["Title"] == "Caf\ufffd \ufffd"
    assert len(beatmap.warnings) == 1
    assert beatmap.warnings[0].startswith(f"{path}:{number}:")
    assert len(beatmap.hit_objects) == 1


def test_missing_header_with_sections_reads_as_v14_with_warning(write_osu):
    # osu! (lazer) falls back to the latest version for files that start straight with a section.
    text = osu_text(0, [circle(1, 2, 1000)], header="")
    path = write_osu(text)
    beatmap = read_beatmap(path)
    assert beatmap.format_version == 14
    assert beatmap.warnings == [f"{path}:{line_number(text, '[General]')}: no 'osu file format' header; reading as v14"]
    assert beatmap.metadata["Creator"] == "pytest"
    assert beatmap.hit_objects[0].time == 1000.0


def test_missing_header_plain_text(write_osu):
    path = write_osu("just some text\n[HitObjects]\n1,2,3,1,0\n", "text.osu")
    assert "not an osu! beatmap" in read_error(path)
    path = write_osu("<html><body>404</body></html>\n", "page.osu")
    assert "not an osu! beatmap" in read_error(path)


@pytest.mark.parametrize("header", ["osu file format vX", "osu file format v", "osu file format v1.5", "osu file format v-3"])
def test_unreadable_version(write_osu, header):
    assert "version" in read_error(write_osu(osu_text(0, header=header)))


def test_unknown_version_warns_and_parses(write_osu):
    path = write_osu(osu_text(0, [circle(1, 2, 1000)], version=99))
    beatmap = read_beatmap(path)
    assert beatmap.format_version == 14
    assert len(beatmap.warnings) == 1
    assert str(path) in beatmap.warnings[0] and "v99" in beatmap.warnings[0]
    assert beatmap.hit_objects[0].time == 1000.0


def test_missing_hit_objects_section(write_osu):
    text = osu_text(0)
    path = write_osu(text[:text.index("[HitObjects]")])
    assert "[HitObjects]" in read_error(path)


def test_empty_hit_objects_section(write_osu):
    assert "hit objects" in read_error(write_osu(osu_text(0, [])))


BROKEN_LINES = [
    "this is not a hit object",
    "100,100",
    "NaN,100,1500,1,0,0:0:0:0:",
    "100,nan,1500,1,0,0:0:0:0:",
    "1e9,100,1500,1,0,0:0:0:0:",
    "100,100,1e12,1,0,0:0:0:0:",
    "100,100,inf,1,0,0:0:0:0:",
    "100,100,1500,2,0,L|200:100,0,100",
    "100,100,1500,2,0,L|200:100,-1,100",
    "100,100,1500,2,0,L|200:100,1",
    "100,100,1500,2,0,L|200:NaN,1,100",
    "100,100,1500,2,0,L|abc,1,100",
    "100,100,1500,2,0,L|200:100,1,1e9",
    "100,100,1500,12,0",
    "64,192,1500,128,0",
    "64,192,1500,128,0,x:0:0:0:0:",
    "100,100,1500,0,0,0:0:0:0:",
    "100,100,1500,x,0,0:0:0:0:",
    "100,100,1500,1,0,a:b:c:d:",
]


@pytest.mark.parametrize("bad", BROKEN_LINES)
def test_broken_hit_object_line_is_skipped(write_osu, bad):
    text = osu_text(0, [circle(10, 10, 1000), bad, circle(20, 20, 2000)])
    path = write_osu(text)
    beatmap = read_beatmap(path)
    number = line_number(text, bad)
    assert [(o.x, o.time) for o in beatmap.hit_objects] == [(10.0, 1000.0), (20.0, 2000.0)]
    assert len(beatmap.warnings) == 1, beatmap.warnings
    assert beatmap.warnings[0].startswith(f"{path}:{number}:")


def test_several_broken_lines_each_warned(write_osu):
    bad = ["NaN,1,1500,1,0", "1e9,1,1600,1,0", "1,1,1700,2,0,L|5:5,0,10", "garbage"]
    text = osu_text(0, [circle(1, 1, 1000), *bad, circle(2, 2, 2000)])
    path = write_osu(text)
    beatmap = read_beatmap(path)
    assert len(beatmap.hit_objects) == 2
    assert [w.split(": ")[0] for w in beatmap.warnings] == [f"{path}:{line_number(text, b)}" for b in bad]


@pytest.mark.parametrize("bad", ["abc", "0,0,4,2,0,60,1,0", "0,NaN,4,2,0,60,1,0", "x,500", "0"])
def test_broken_timing_point_is_skipped(write_osu, bad):
    text = osu_text(0, timing_points=[DEFAULT_REDLINE, bad, "2000,-50,4,2,0,60,0,0"])
    path = write_osu(text)
    beatmap = read_beatmap(path)
    assert [p.time for p in beatmap.timing_points] == [0.0, 2000.0]
    assert len(beatmap.warnings) == 1
    assert beatmap.warnings[0].startswith(f"{path}:{line_number(text, bad)}:")


def test_nan_inherited_beat_length_is_kept_as_sv_1():
    beatmap = parse_beatmap(osu_text(0, timing_points=[DEFAULT_REDLINE, "500,NaN,4,2,0,60,0,0"]))
    assert math.isnan(beatmap.timing_points[1].beat_length)
    assert beatmap.timing.slider_velocity_at(1000) == 1.0


def test_all_hit_objects_broken(write_osu):
    path = write_osu(osu_text(0, ["NaN,1,1000,1,0", "1e9,1,2000,1,0", "1,1,3000,2,0,L|5:5,0,10"]))
    assert "hit objects" in read_error(path)


def test_nonexistent_path(tmp_path):
    read_error(tmp_path / "missing.osu")


def test_directory_path(tmp_path):
    folder = tmp_path / "folder.osu"
    folder.mkdir()
    read_error(folder)


def test_fuzzed_input_raises_only_beatmap_error(tmp_path):
    """Truncated, spliced and byte-flipped versions of a valid map: parse, or BeatmapError naming the file."""
    rng = random.Random(1234)
    base = full_map().encode("utf-8")
    lines = base.split(b"\n")
    for i in range(400):
        choice = i % 4
        if choice == 0:
            data = base[:rng.randrange(len(base))]
        elif choice == 1:
            data = bytearray(base)
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(1, 256)
            data = bytes(data)
        elif choice == 2:
            shuffled = lines[:]
            rng.shuffle(shuffled)
            data = b"\n".join(lines[:2] + shuffled)
        else:
            mutated = lines[:]
            j = rng.randrange(2, len(mutated))
            mutated[j] = b",".join(rng.choice([b"1e308", b"-1", b"", b"NaN", b"|", b":", b"B|", b"9" * 30, b"0"])
                                   for _ in range(rng.randrange(1, 12)))
            data = b"\n".join(mutated)
        path = tmp_path / f"fuzz{i}.osu"
        path.write_bytes(data)
        try:
            beatmap = read_beatmap(path)
        except BeatmapError as e:
            assert str(path) in str(e)
        else:
            assert beatmap.hit_objects
            assert all(str(path) in w for w in beatmap.warnings)
            again = parse_beatmap(format_beatmap(beatmap))
            assert len(again.hit_objects) == len(beatmap.hit_objects)

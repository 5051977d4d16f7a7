"""Even spacing of osu! maps (postprocess/spacing.py) and the spacing numbers evaluate.py reports."""
from __future__ import annotations

import math

import pytest

from conftest import circle, osu_text
from evaluation.metrics import layout_shares
from postprocess.spacing import circle_radius, even_spacing
from postprocess.validate import validity_problems
from tokenizer.osu_file import parse_beatmap

BEAT = "0,300,4,2,0,60,1,0"  # 200 BPM: a half beat is 150 ms
DIAMETER = 2 * circle_radius(4)  # 72.96 px at the test maps' CS 4


def half_beat_zigzag(count: int = 12) -> list[str]:
    """Circles a half beat apart, back and forth between x 150 and 250: 100 px jumps, 200 px per beat."""
    return [circle(150 + 100 * (k % 2), 192, 1000 + 150 * k) for k in range(count)]


def jumps(beatmap) -> list[float]:
    objects = beatmap.hit_objects
    return [math.dist(a.end_position, (b.x, b.y)) for a, b in zip(objects, objects[1:])]


def test_overlapping_and_overlong_jumps_come_within_the_range_and_the_rest_stay():
    objects = half_beat_zigzag()
    objects[5] = circle(160, 192, 1750)  # 10 px after the circle at (150, 192): overlapping it
    objects[8] = circle(460, 40, 2200)  # 259 px after the circle at (250, 192), in a half beat
    beatmap = parse_beatmap(osu_text(0, objects, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    after = jumps(spaced)
    assert after[4] == pytest.approx(DIAMETER)  # 0.7 x 100 px would still overlap: a circle's width
    assert (spaced.hit_objects[5].x, spaced.hit_objects[5].y) == pytest.approx((150 + DIAMETER, 192))  # along its jump
    assert after[7] == pytest.approx(150.0)  # 1.5 x 100 px
    assert [o.time for o in spaced.hit_objects] == [o.time for o in beatmap.hit_objects]
    untouched = [k for k in range(12) if k not in (5, 6, 8, 9)]  # 6 and 9 follow a moved circle
    assert [(spaced.hit_objects[k].x, spaced.hit_objects[k].y) for k in untouched] == \
           [(beatmap.hit_objects[k].x, beatmap.hit_objects[k].y) for k in untouched]
    assert beatmap.hit_objects[5].x == 160  # the input is not changed
    assert validity_problems(spaced) == []


def test_a_given_spacing_replaces_the_maps_own():
    beatmap = parse_beatmap(osu_text(0, half_beat_zigzag(), [BEAT]))  # 100 px in 150 ms: 0.67 px per ms
    assert jumps(even_spacing(beatmap, 0.7, 1.5)) == pytest.approx([100.0] * 11)
    wider = jumps(even_spacing(beatmap, 0.7, 1.5, per_ms=1.0))  # human maps at the requested stars: 150 px a half beat
    assert wider == pytest.approx([105.0] * 11)  # 0.7 x 150 px
    assert jumps(even_spacing(beatmap, 0.7, 1.5, per_ms=0.2)) == pytest.approx([72.96] * 11, abs=0.01)  # 45 px overlaps


def test_stacks_streams_and_short_maps_stay_as_they_are():
    objects = half_beat_zigzag()
    objects[3] = circle(150, 192, 1450)  # the previous circle's place exactly: a stack
    stream = [circle(300 + 5 * k, 300, 3000 + 75 * k) for k in range(4)]  # 1/4 beat apart, 5 px: overlapping on purpose
    beatmap = parse_beatmap(osu_text(0, objects + stream, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    assert (spaced.hit_objects[3].x, spaced.hit_objects[3].y) == (150, 192)
    assert [(o.x, o.y) for o in spaced.hit_objects[-3:]] == [(o.x, o.y) for o in beatmap.hit_objects[-3:]]
    short = parse_beatmap(osu_text(0, [circle(100, 192, 1000), circle(105, 192, 1300), circle(110, 192, 1600)], [BEAT]))
    assert [(o.x, o.y) for o in even_spacing(short, 0.7, 1.5).hit_objects] == [(100, 192), (105, 192), (110, 192)]


def test_a_jump_that_would_leave_the_playfield_turns_and_a_slider_moves_whole():
    objects = half_beat_zigzag() + [circle(350, 192, 2800), circle(450, 192, 2950)]
    objects += [circle(460, 192, 3100),  # 10 px on toward the right edge, where a circle's width does not fit
                "480,260,3250,2,0,L|400:260,1,80"]  # a slider whose head overlaps that circle
    beatmap = parse_beatmap(osu_text(0, objects, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    turned, slider = spaced.hit_objects[14], spaced.hit_objects[15]
    assert math.dist((450, 192), (turned.x, turned.y)) == pytest.approx(DIAMETER)
    assert turned.x <= 512 and turned.y > 192  # turned 45 degrees, the first turn that fits
    assert math.dist((turned.x, turned.y), (slider.x, slider.y)) == pytest.approx(DIAMETER)
    assert (slider.curve_points[0][0] - slider.x, slider.curve_points[0][1] - slider.y) == pytest.approx((-80.0, 0.0))
    assert validity_problems(spaced) == []


def test_layout_shares_count_overlaps_and_the_spread_of_osu_maps_only():
    objects = half_beat_zigzag(8)
    objects[4] = circle(230, 192, 1600)  # 20 px from the circles before and after it
    shares = layout_shares(parse_beatmap(osu_text(0, objects, [BEAT])))
    assert shares["overlapping"] == pytest.approx(2 / 7)
    assert shares["spread"] == pytest.approx(5.0)  # 200 px per beat over 40
    assert (shares["long_combos"], shares["single_combos"]) == (0.0, 0.0)  # one combo of 8
    objects = [circle(150 + 100 * (k % 2), 192, 1000 + 150 * k, new_combo=k in (1, 2)) for k in range(16)]
    shares = layout_shares(parse_beatmap(osu_text(0, objects, [BEAT])))
    assert (shares["long_combos"], shares["single_combos"]) == pytest.approx((1 / 3, 2 / 3))  # combos of 1, 1 and 14
    assert layout_shares(parse_beatmap(osu_text(3, [circle(64, 192, 1000), circle(192, 192, 1150)], [BEAT]))) is None

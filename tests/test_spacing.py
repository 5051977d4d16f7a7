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


def positions(beatmap) -> list[tuple[float, float]]:
    return [(o.x, o.y) for o in beatmap.hit_objects]


def test_overlapping_and_overlong_jumps_come_within_the_range_and_the_pattern_after_them_follows():
    objects = half_beat_zigzag()
    objects[5] = circle(160, 192, 1750)  # 10 px after the circle at (150, 192): overlapping it
    objects[8] = circle(250, 40, 2200)  # 152 px straight up from the circle at (250, 192), in a half beat
    beatmap = parse_beatmap(osu_text(0, objects, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    after, before = jumps(spaced), jumps(beatmap)
    assert after[4] == pytest.approx(DIAMETER)  # 0.7 x 100 px would still overlap: a circle's width
    assert positions(spaced)[5] == pytest.approx((150 + DIAMETER, 192))  # along its jump
    assert after[7] == pytest.approx(150.0)  # 1.5 x 100 px
    assert positions(spaced)[6] == pytest.approx((150, 192))  # the model's 10 px back to x 150, a circle's width
    assert positions(spaced)[8] == pytest.approx((250, 42))  # straight up, 150 px
    assert [o.time for o in spaced.hit_objects] == [o.time for o in beatmap.hit_objects]
    assert positions(spaced)[:5] == positions(beatmap)[:5]
    assert after[8:] == pytest.approx([150.0, 100.0, 100.0]) and before[8:] == pytest.approx([152.0, 100.0, 100.0])
    assert beatmap.hit_objects[5].x == 160  # the input is not changed
    assert validity_problems(spaced) == []


def test_a_given_spacing_replaces_the_maps_own():
    beatmap = parse_beatmap(osu_text(0, half_beat_zigzag(), [BEAT]))  # 100 px in 150 ms: 0.67 px per ms
    assert jumps(even_spacing(beatmap, 0.7, 1.5)) == pytest.approx([100.0] * 11)
    wider = jumps(even_spacing(beatmap, 0.7, 1.5, per_ms=1.0))  # human maps at the requested stars: 150 px a half beat
    assert wider == pytest.approx([105.0] * 11)  # 0.7 x 150 px
    assert jumps(even_spacing(beatmap, 0.7, 1.5, per_ms=0.2)) == pytest.approx([72.96] * 11, abs=0.01)  # 45 px overlaps


def test_stacks_and_streams_keep_their_shape_and_short_maps_stay_as_they_are():
    objects = half_beat_zigzag()
    objects[3] = circle(150, 192, 1450)  # the previous circle's place exactly: a stack
    stream = [circle(300 + 5 * k, 300, 3000 + 75 * k) for k in range(4)]  # 1/4 beat apart, 5 px: overlapping on purpose
    beatmap = parse_beatmap(osu_text(0, objects + stream, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    assert positions(spaced)[3] == positions(spaced)[2] == (150, 192)
    head_x, head_y = positions(spaced)[-4]
    assert [x - head_x for x, _ in positions(spaced)[-3:]] == pytest.approx([5, 10, 15])
    assert [y for _, y in positions(spaced)[-3:]] == pytest.approx([head_y] * 3)
    short = parse_beatmap(osu_text(0, [circle(100, 192, 1000), circle(105, 192, 1300), circle(110, 192, 1600)], [BEAT]))
    assert [(o.x, o.y) for o in even_spacing(short, 0.7, 1.5).hit_objects] == [(100, 192), (105, 192), (110, 192)]


def test_a_jump_that_would_leave_the_playfield_mirrors_off_the_wall_with_the_pattern_after_it():
    objects = half_beat_zigzag() + [circle(350, 192, 2800), circle(450, 192, 2950)]
    objects += [circle(460, 192, 3100),  # 10 px on toward the right edge, where a circle's width does not fit
                circle(470, 150, 3250),  # then up and on to the right
                "480,260,3400,2,0,L|400:260,1,80"]  # a slider, moved whole
    beatmap = parse_beatmap(osu_text(0, objects, [BEAT]))
    spaced = even_spacing(beatmap, 0.7, 1.5)
    bounced, after, slider = spaced.hit_objects[14:17]
    assert (bounced.x, bounced.y) == pytest.approx((450 - DIAMETER, 192))  # back off the right wall
    assert after.x < bounced.x and after.y < bounced.y  # the model went up and right; mirrored: up and left
    assert math.dist((bounced.x, bounced.y), (after.x, after.y)) == pytest.approx(max(DIAMETER, math.hypot(10, 42)))
    assert (slider.curve_points[0][0] - slider.x, slider.curve_points[0][1] - slider.y) == pytest.approx((-80.0, 0.0))
    assert validity_problems(spaced) == []


def test_a_slider_that_fits_no_mirror_image_turns():
    # A circle near the top, then 10 px down and to the right a slider 340 px tall: moved 73 px along that jump, or
    # along any mirror image of it, its body leaves the playfield; turned 45 degrees toward the horizontal, it fits.
    beatmap = parse_beatmap(osu_text(0, [circle(256, 30, 1000), "262,38,1150,2,0,L|262:378,1,340"], [BEAT]))
    slider = even_spacing(beatmap, 0.7, 1.5, per_ms=0.2).hit_objects[1]
    heading = math.atan2(8, 6) - math.radians(45)
    assert (slider.x, slider.y) == pytest.approx((256 + DIAMETER * math.cos(heading), 30 + DIAMETER * math.sin(heading)))
    assert slider.curve_points[0] == pytest.approx((slider.x, slider.y + 340))


def test_layout_shares_count_overlaps_and_the_spread_of_osu_maps_only():
    objects = half_beat_zigzag(8)
    objects[4] = circle(230, 192, 1600)  # 20 px from the circles before and after it
    shares = layout_shares(parse_beatmap(osu_text(0, objects, [BEAT])))
    assert shares["overlapping"] == pytest.approx(2 / 7)
    assert shares["spread"] == pytest.approx(5.0)  # 200 px per beat over 40
    assert (shares["long_combos"], shares["single_combos"]) == (0.0, 0.0)  # one combo of 8
    assert (shares["near_edges"], shares["centre_px"]) == (0.0, pytest.approx(16.0))  # 106, 26 and 6 px from the centre
    edges = [circle(x, y, 1000 + 150 * k) for k, (x, y) in enumerate([(30, 192), (256, 370), (256, 192), (400, 100)] * 2)]
    shares = layout_shares(parse_beatmap(osu_text(0, edges, [BEAT])))
    assert (shares["near_edges"], shares["centre_px"]) == (0.5, pytest.approx((178 + math.hypot(144, 92)) / 2))
    objects = [circle(150 + 100 * (k % 2), 192, 1000 + 150 * k, new_combo=k in (1, 2)) for k in range(16)]
    shares = layout_shares(parse_beatmap(osu_text(0, objects, [BEAT])))
    assert (shares["long_combos"], shares["single_combos"]) == pytest.approx((1 / 3, 2 / 3))  # combos of 1, 1 and 14
    assert layout_shares(parse_beatmap(osu_text(3, [circle(64, 192, 1000), circle(192, 192, 1150)], [BEAT]))) is None

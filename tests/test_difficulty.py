"""Fitting a generated map to the requested star rating: shorter jumps, then fewer objects (osu! and catch: finest rhythm
first; mania: chords, then the notes a mapper is least likely to play); a map under the request gets more."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from conftest import circle, mania_note, osu_text
from postprocess.difficulty import (cap_jumps, fit_star_rating, raise_star_rating, removal_order, spread_chords,
                                   weakest_first_order, without)
from postprocess.validate import validity_problems
from tokenizer.check import star_rating
from tokenizer.osu_file import CIRCLE, HitObject, parse_beatmap

BEAT = "0,300,4,2,0,60,1,0"  # 200 BPM


def jumpy_map(count: int = 160, gap: float = 150.0):
    """Circles every 1/2 beat at 200 BPM, jumping across the playfield: an Insane-like aim map."""
    corners = [(40, 40), (470, 340), (470, 40), (40, 340)]
    objects = [circle(*corners[k % 4], 1000 + k * gap, new_combo=k % 8 == 0) for k in range(count)]
    return parse_beatmap(osu_text(0, objects, [BEAT]))


def test_capped_jumps_keep_their_times_and_direction_and_stay_on_the_playfield():
    beatmap = jumpy_map(8)
    capped = cap_jumps(beatmap, 0.5)  # 75 px per 150 ms
    assert [o.time for o in capped.hit_objects] == [o.time for o in beatmap.hit_objects]
    for a, b in zip(capped.hit_objects, capped.hit_objects[1:]):
        assert math.dist((a.x, a.y), (b.x, b.y)) <= 75.0 + 1e-6
        assert 0 <= b.x <= 512 and 0 <= b.y <= 384
    first, second = beatmap.hit_objects[:2]
    moved = capped.hit_objects[1]
    direction = math.atan2(second.y - first.y, second.x - first.x)
    assert math.atan2(moved.y - first.y, moved.x - first.x) == pytest.approx(direction)
    assert beatmap.hit_objects[1].x == 470  # the input is not changed


def test_a_capped_slider_moves_whole_and_back_onto_the_playfield():
    slider = "480,200,1150,2,0,L|500:200,1,20"
    beatmap = parse_beatmap(osu_text(0, [circle(40, 200, 1000), slider], [BEAT]))
    capped = cap_jumps(beatmap, 0.1)
    moved = capped.hit_objects[1]
    assert moved.curve_points[0][0] - moved.x == pytest.approx(20.0)
    assert moved.x == pytest.approx(55.0)  # 15 px in 150 ms from the circle
    assert validity_problems(capped) == []


def test_a_capped_slider_keeps_its_control_points_on_the_playfield_or_stays_put():
    # A bezier that bulges toward its first jump: moved 165 px down with it, its control point would
    # end 160 px below the playfield and its curve only about 70, so the control point decides the shift.
    bent = "256,200,1150,2,0,B|256:380|300:200,1,200"
    capped = cap_jumps(parse_beatmap(osu_text(0, [circle(256, 380, 1000), bent], [BEAT])), 0.1)
    assert validity_problems(capped) == []
    assert max(y for _, y in capped.hit_objects[1].curve_points) == pytest.approx(384.0)
    wide = "0,200,1150,2,0,L|512:200,1,512"  # as wide as the playfield: it cannot move sideways
    beatmap = parse_beatmap(osu_text(0, [circle(400, 200, 1000), wide], [BEAT]))
    assert cap_jumps(beatmap, 0.1).hit_objects[1].x == 0


def test_the_hardest_objects_to_reach_go_first_and_the_first_object_and_spinners_stay():
    objects = [circle(256, 192, 1000), circle(260, 192, 1300), circle(500, 192, 1400), circle(256, 192, 1700),
               "256,192,2000,12,0,3000,0:0:0:0:"]
    order = removal_order(parse_beatmap(osu_text(0, objects, [BEAT])))
    assert order[0] == 2 and sorted(order) == [1, 2, 3]


def test_objects_off_the_beat_go_before_those_on_it_the_hardest_first_within_each():
    # 300 ms beats: whole beats at 1200, 1500, 1800 and 2100, a half beat at 1650, a quarter at 1725.
    # The quarter-beat object is the easiest to reach (no move in) and still goes first, as a mapper
    # simplifying the rhythm would drop it; the whole beats go last, the fastest of them first.
    objects = [circle(256, 192, 1200), circle(480, 192, 1500), circle(40, 192, 1650), circle(40, 192, 1725),
               circle(50, 192, 1800), circle(256, 192, 2100)]
    assert removal_order(parse_beatmap(osu_text(0, objects, [BEAT]))) == [3, 2, 1, 4, 5]


def test_a_removed_new_combo_moves_to_the_next_object():
    beatmap = jumpy_map(9)
    thinned = without(beatmap, {8})
    assert len(thinned.hit_objects) == 8 and len(beatmap.hit_objects) == 9
    kept = without(jumpy_map(10), {8})
    assert kept.hit_objects[8].new_combo and kept.hit_objects[8].time == 1000 + 9 * 150


def test_a_hard_map_is_fitted_to_the_request_and_an_easy_one_is_left_alone():
    beatmap = jumpy_map()
    assert star_rating(beatmap) > 5.0
    fitted = fit_star_rating(beatmap, target=3.0, tolerance=0.25, floor=0.5, max_share=0.75)
    assert star_rating(fitted) <= 3.25
    assert {o.time for o in fitted.hit_objects} <= {o.time for o in beatmap.hit_objects}
    assert validity_problems(fitted) == []
    easy = fit_star_rating(beatmap, target=9.0, tolerance=0.25, floor=0.5, max_share=0.75)
    assert [(o.x, o.y, o.time) for o in easy.hit_objects] == [(o.x, o.y, o.time) for o in beatmap.hit_objects]


def test_objects_are_removed_only_when_shorter_jumps_are_not_enough():
    beatmap = jumpy_map()
    by_jumps = fit_star_rating(beatmap, target=4.5, tolerance=0.25, floor=0.05, max_share=0.75)
    assert len(by_jumps.hit_objects) == len(beatmap.hit_objects) and star_rating(by_jumps) <= 4.75
    by_removal = fit_star_rating(beatmap, target=1.0, tolerance=0.25, floor=2.0, max_share=0.75)
    assert len(by_removal.hit_objects) < len(beatmap.hit_objects)
    assert len(by_removal.hit_objects) >= len(beatmap.hit_objects) * 0.25 - 1


def catch_map(count: int = 160, gap: float = 150.0):
    """Fruits every 1/2 beat at 200 BPM, wall to wall: a catch map of hyperdashes."""
    objects = [circle(40 if k % 2 else 470, 100 + 20 * (k % 5), 1000 + k * gap, new_combo=k % 8 == 0) for k in range(count)]
    return parse_beatmap(osu_text(2, objects, [BEAT]))


def test_catch_jumps_are_capped_sideways_and_a_catch_map_is_fitted():
    beatmap = catch_map()
    capped = cap_jumps(beatmap, 0.5)  # 75 px sideways per 150 ms
    for a, b, original in zip(capped.hit_objects, capped.hit_objects[1:], beatmap.hit_objects[1:]):
        assert abs(b.x - a.x) <= 75.0 + 1e-6 and b.y == original.y  # height does not matter in catch
    tall = [circle(256, 40, 1000), circle(256, 380, 1150), circle(450, 200, 1300), circle(400, 200, 1450)]
    assert removal_order(parse_beatmap(osu_text(0, tall, [BEAT]))) == [1, 2, 3]
    assert removal_order(parse_beatmap(osu_text(2, tall, [BEAT]))) == [2, 1, 3]  # catch: a drop straight down is free
    assert star_rating(beatmap) > 6.0
    fitted = fit_star_rating(beatmap, target=2.0, tolerance=0.25, floor=0.28, max_share=0.75)
    assert star_rating(fitted) <= 2.25 and len(fitted.hit_objects) == len(beatmap.hit_objects)
    assert validity_problems(fitted) == []


def test_mania_thins_chords_first_then_the_weakest_notes_and_keeps_the_first():
    # 4K at 200 BPM: a chord on every beat (1000, 1300, ...) and a single note on every half beat between.
    objects = [mania_note(0, 4, 1000), mania_note(2, 4, 1000), mania_note(1, 4, 1150),
               mania_note(0, 4, 1300), mania_note(3, 4, 1300), mania_note(2, 4, 1450)]
    beatmap = parse_beatmap(osu_text(3, objects, [BEAT], difficulty={"CircleSize": "4"}))
    on_beats = lambda times: np.where(np.asarray(times) % 300 == 100, 0.9, 0.2)  # beats score high, half beats low
    order = weakest_first_order(beatmap, on_beats)
    assert order == [1, 4, 2, 5, 3]  # the chords' second notes, then the half beats, then the beat at 1300


def test_a_mania_map_with_more_chords_than_asked_moves_its_weakest_chords_notes_onto_free_ticks():
    # 4K at 200 BPM: a two-note chord on each of 40 beats (2 notes per time), strongest on the bar lines.
    objects = [mania_note(c, 4, 1000 + 300 * k) for k in range(40) for c in (k % 2, 2 + k % 2)]
    beatmap = parse_beatmap(osu_text(3, objects, [BEAT], difficulty={"CircleSize": "4"}))
    bars = lambda times: np.where((np.asarray(times) - 1000) % 1200 == 0, 0.9, 0.5)
    moved = []

    def add(b, count):  # stands in for onset fill: single notes on half beats, in time order
        half_beats = [HitObject(64.0, 192.0, 1150.0 + 300 * k, CIRCLE) for k in range(count - len(b.hit_objects))]
        moved.extend(h.time for h in half_beats)
        b.hit_objects = sorted(b.hit_objects + half_beats, key=lambda o: o.time)
        return b

    spread = spread_chords(beatmap, 1.5, bars, add)
    times = [o.time for o in spread.hit_objects]
    assert len(moved) == 20  # 80 notes on 40 times: 20 extra notes over 1.5 a time
    assert len(spread.hit_objects) == 80 and len(set(times)) == 60
    chords = {t for t in times if times.count(t) == 2}
    assert len(chords) == 20 and set(range(1000, 13000, 1200)) <= chords  # the bar lines keep theirs
    assert spread_chords(beatmap, 2.0, bars, add) is beatmap  # no more chords than asked: unchanged


def test_a_dense_mania_map_loses_notes_down_to_the_request():
    notes = [mania_note(k % 4, 4, 1000 + 75 * k) for k in range(400)]
    chords = [mania_note((k + 2) % 4, 4, 1000 + 75 * k) for k in range(0, 400, 4)]
    beatmap = parse_beatmap(osu_text(3, notes + chords, [BEAT], difficulty={"CircleSize": "4"}))
    assert star_rating(beatmap) > 3.0
    quarter = lambda times: (np.asarray(times) - 1000) // 75 % 4
    score = lambda times: np.select([quarter(times) == 0, quarter(times) == 2], [0.9, 0.5], 0.1)  # beats, half beats, the rest
    order = lambda b: weakest_first_order(b, score)
    fitted = fit_star_rating(beatmap, target=2.0, tolerance=0.0, floor=None, max_share=0.75, order=order)
    assert star_rating(fitted) <= 2.0
    assert len(fitted.hit_objects) < len(beatmap.hit_objects) and validity_problems(fitted) == []
    kept = quarter([o.time for o in fitted.hit_objects])
    assert not (kept % 2 == 1).any() or (kept == 2).sum() == 100  # the weakest notes go before any half beat
    assert [(o.x, o.time) for o in fitted.hit_objects] == sorted(
        [(o.x, o.time) for o in fitted.hit_objects], key=lambda p: p[1])


def test_a_sparse_mania_map_gets_as_many_notes_as_keep_it_at_the_request():
    beats = [mania_note(k % 4, 4, 1000 + 300 * k) for k in range(200)]
    beatmap = parse_beatmap(osu_text(3, beats, [BEAT], difficulty={"CircleSize": "4"}))
    half_beats = parse_beatmap(osu_text(3, [mania_note((k + 2) % 4, 4, 1150 + 300 * k) for k in range(199)], [BEAT])).hit_objects

    def add(b, count):  # half beats in time order, as many as `count` allows
        b.hit_objects = sorted(b.hit_objects + half_beats[:count - len(b.hit_objects)], key=lambda o: o.time)
        return b

    stars = star_rating(beatmap)
    raised = raise_star_rating(beatmap, stars + 0.5, 0.25, add)
    assert len(beatmap.hit_objects) == 200 and star_rating(raised) <= stars + 0.5
    assert len(raised.hit_objects) > 200 and star_rating(add(copy.copy(beatmap), len(raised.hit_objects) + 1)) > stars + 0.5
    assert validity_problems(raised) == []
    assert raise_star_rating(beatmap, stars + 0.2, 0.25, add) is beatmap  # within the tolerance: left alone

"""New combos on bar lines and lone-object combos joined (postprocess/combos.py)."""
from __future__ import annotations

from conftest import circle, osu_text
from postprocess.combos import regular_combos
from tokenizer.osu_file import parse_beatmap

BEAT = "0,500,4,2,0,60,1,0"  # 120 BPM in 4/4: a bar every 2000 ms


def combo_starts(beatmap) -> list[float]:
    return [o.time for i, o in enumerate(beatmap.hit_objects) if i == 0 or o.new_combo]


def test_a_long_combo_starts_anew_past_each_bar_line_and_short_ones_stay():
    objects = [circle(100 + 10 * (k % 2), 192, 250 * k, new_combo=k == 0) for k in range(32)]  # 4 bars of half beats
    beatmap = parse_beatmap(osu_text(0, objects, [BEAT]))
    assert combo_starts(regular_combos(beatmap, 4)) == [0, 2000, 4000, 6000]
    assert combo_starts(beatmap) == [0]  # the input is not changed
    short = [circle(100, 192, 250 * k, new_combo=k % 4 == 0) for k in range(32)]  # a combo every 2 beats
    assert combo_starts(regular_combos(parse_beatmap(osu_text(0, short, [BEAT])), 4)) == [500.0 * 2 * k for k in range(8)]


def test_a_combo_waits_for_enough_objects_and_the_first_object_past_the_bar_line():
    times = [1500, 1750, 2250, 2500, 3000, 3500, 4250, 4500]  # the bar line at 2000 and 4000 fall between objects
    objects = [circle(100, 192, t, new_combo=i == 0) for i, t in enumerate(times)]
    spaced = regular_combos(parse_beatmap(osu_text(0, objects, [BEAT])), 3)
    assert combo_starts(spaced) == [1500, 4250]  # at 2250 the combo held 2 objects


def test_a_lone_object_combo_joins_the_one_before_unless_it_follows_a_pause_or_a_spinner():
    objects = [circle(100, 192, 0, new_combo=True), circle(100, 192, 500), circle(100, 192, 1000, new_combo=True),
               circle(100, 192, 1500, new_combo=True), circle(100, 192, 1750),  # 1000 was alone, 500 ms on
               circle(100, 192, 5000, new_combo=True), circle(100, 192, 6500, new_combo=True),  # each alone, 3 beats on
               "256,192,7000,12,0,7900,0:0:0:0:", circle(100, 192, 8000, new_combo=True), circle(100, 192, 8200, new_combo=True)]
    regular = regular_combos(parse_beatmap(osu_text(0, objects, [BEAT])), 99)
    assert combo_starts(regular) == [0, 1500, 5000, 6500, 7000, 8000]  # 8200 joins 8000, the last object as well

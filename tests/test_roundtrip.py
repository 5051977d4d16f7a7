"""Beatmap -> events -> ids -> events -> beatmap on synthetic maps of every mode, and one event
stream written out by hand."""
from __future__ import annotations

import math

import pytest

from tokenizer.check import star_rating, token_round_trip
from tokenizer.decode import decode_hitsound, events_to_groups, groups_to_beatmap, resnap_groups
from tokenizer.encode import beatmap_to_groups, groups_to_events, hitsound_value, tokenize_windows, window_slice
from tokenizer.events import ContextType, Event, EventType, Group
from tokenizer.osu_file import CIRCLE, SLIDER, SPINNER, Beatmap, parse_beatmap
from tokenizer.timing import Timing, TimingPoint

from conftest import circle, mania_hold, mania_note, osu_text

T = EventType
CELL = 32


def round_trip(text: str, tokenizer) -> tuple[Beatmap, Beatmap]:
    original = parse_beatmap(text, "synthetic.osu")
    assert original.warnings == []
    return original, token_round_trip(original, tokenizer)


def ordered(beatmap: Beatmap) -> list:
    return sorted(beatmap.hit_objects, key=lambda o: (o.time, o.x))


def same_cell(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.floor(u / CELL) == math.floor(v / CELL) for u, v in zip(a, b))


def kiai_toggles(beatmap: Beatmap) -> list[tuple[float, bool]]:
    """(time, kiai) wherever kiai switches; the last timing point at a time decides."""
    state_at = {}
    for point in sorted(beatmap.timing_points, key=lambda p: p.time):
        state_at[point.time] = point.kiai
    toggles, kiai = [], False
    for time, state in state_at.items():
        if state != kiai:
            toggles.append((time, state))
            kiai = state
    return toggles


def assert_common(original: Beatmap, rebuilt: Beatmap, stars_tolerance: float) -> None:
    a, b = ordered(original), ordered(rebuilt)
    assert len(b) == len(a)
    assert [o.kind for o in b] == [o.kind for o in a]
    for x, y in zip(a, b):
        assert abs(y.time - x.time) <= 1, (x, y)
        if x.end_time is not None:
            assert abs(y.end_time - x.end_time) <= 1, (x, y)
    assert kiai_toggles(rebuilt) == kiai_toggles(original)
    for time, state in kiai_toggles(original):  # each toggle is a timing point carrying the kiai bit
        assert any(p.time == time and p.kiai == state for p in rebuilt.timing_points)
    assert [p for p in rebuilt.timing_points if p.uninherited] == [p for p in original.timing_points if p.uninherited]
    before, after = star_rating(original), star_rating(rebuilt)
    assert before > 0.3
    assert after == pytest.approx(before, rel=stars_tolerance)


def sound(o) -> tuple[int, int, int]:
    return o.hitsound, o.sample.normal_set, o.sample.addition_set


# ---------------------------------------------------------------------------------------------
# osu!standard

OSU_TIMING = [
    "0,500,4,2,0,60,1,0",  # 120 BPM, soft
    "4000,-66.6666666666667,4,2,0,60,0,0",  # SV 1.5
    "6000,-100,4,1,0,70,0,1",  # SV 1, normal set, kiai on
    "8000,-100,4,2,0,60,0,0",  # kiai off, soft
    "12000,400,4,2,0,60,1,0",  # 150 BPM: resets SV
    "12000,-200,4,2,0,60,0,0",  # SV 0.5 from 12000
]
OSU_STREAM = [circle(60 + 23 * i, 60 + 17 * (i % 7), 1000 + 125 * i, new_combo=i % 4 == 0, hitsound=(0, 2, 4, 8)[i % 4])
              for i in range(16)]
OSU_SPECIAL = [
    "100,100,3000,6,2,L|240:100,1,140",  # linear, 1 beat at SV 1
    "300,200,4000,2,0,P|350:150|400:200,3,105,2|0|8|4,2:0|0:0|1:3|0:0,0:0:0:0:",  # perfect circle, 2 repeats, SV 1.5
    "50,300,5000,2,0,B|100:250|150:250|150:250|200:300,1,210",  # bezier with a red anchor
    "256,192,6000,12,0,7500,0:0:0:0:",  # spinner in kiai
]
OSU_TAIL = [circle(400 - 19 * i, 300 - 11 * (i % 5), 8000 + 250 * i, new_combo=i % 6 == 0, hitsound=2 * (i % 3),
                   sample="3:1:0:0:" if i % 5 == 0 else "0:0:0:0:") for i in range(16)]
OSU_AFTER_REDLINE = ["200,200,12000,6,0,L|200:340,1,70", circle(300, 100, 12600), circle(350, 120, 12800)]


def test_osu_round_trip(tokenizer):
    text = osu_text(0, OSU_STREAM + OSU_SPECIAL + OSU_TAIL + OSU_AFTER_REDLINE, OSU_TIMING)
    original, rebuilt = round_trip(text, tokenizer)
    assert_common(original, rebuilt, 0.10)
    a, b = ordered(original), ordered(rebuilt)
    for x, y in zip(a, b):
        if x.kind != SPINNER:
            assert same_cell((x.x, x.y), (y.x, y.y)), (x, y)
        assert y.new_combo == (x.new_combo or x.kind == SPINNER)
        assert y.hitsound == x.hitsound
        if x.kind == SLIDER:
            assert y.slides == x.slides
            assert rebuilt.timing.slider_velocity_at(y.time) == pytest.approx(original.timing.slider_velocity_at(x.time))
            assert y.edge_sounds == x.edge_sounds

    by_time = {o.time: o for o in rebuilt.hit_objects}
    # circles: soft from the redline, explicit drum:normal where written
    assert [sound(by_time[1000 + 125 * i]) for i in range(4)] == [(0, 2, 2), (2, 2, 2), (4, 2, 2), (8, 2, 2)]
    assert sound(by_time[8000]) == (0, 3, 1)
    assert sound(by_time[8250]) == (2, 2, 2)
    assert by_time[8000].sample.volume == 60

    linear = by_time[3000]
    assert (linear.kind, linear.curve_type, linear.slides) == (SLIDER, "L", 1)
    assert linear.end_time == pytest.approx(3500, abs=1)
    assert [same_cell(p, q) for p, q in zip(linear.curve_points, [(240, 100)])] == [True]
    assert sound(linear) == (2, 2, 2) and linear.edge_sounds == [2, 2]

    perfect = by_time[4000]
    assert (perfect.curve_type, perfect.slides) == ("P", 3)
    assert perfect.end_time == pytest.approx(4750, abs=1)  # 3 spans of half a beat
    assert rebuilt.timing.slider_velocity_at(4000) == pytest.approx(1.5)
    assert len(perfect.curve_points) == 2
    assert all(same_cell(p, q) for p, q in zip(perfect.curve_points, [(350, 150), (400, 200)]))
    assert perfect.edge_sounds == [2, 0, 8, 4]
    assert perfect.edge_sets == [(2, 2), (2, 2), (1, 3), (2, 2)]

    bezier = by_time[5000]
    assert bezier.curve_type == "B"
    assert len(bezier.curve_points) == 4
    assert bezier.curve_points[1] == bezier.curve_points[2]  # the red anchor is still a doubled point
    assert all(same_cell(p, q) for p, q in zip(bezier.curve_points, [(100, 250), (150, 250), (150, 250), (200, 300)]))
    assert bezier.end_time == pytest.approx(5500, abs=1)

    spinner = by_time[6000]
    assert (spinner.kind, spinner.end_time, spinner.x, spinner.y) == (SPINNER, 7500, 256, 192)
    assert sound(spinner)[1:] == (1, 1)  # the kiai section's normal set
    assert spinner.sample.volume == 70

    after = by_time[12000]
    assert rebuilt.timing.slider_velocity_at(12000) == pytest.approx(0.5)
    assert after.end_time == pytest.approx(12400, abs=1)  # 70 px at SV 0.5, 150 BPM: one beat
    assert kiai_toggles(rebuilt) == [(6000, True), (8000, False)]


def test_overlapping_sliders_round_trip(tokenizer):
    """2B: a second slider starts before the first ends; each end must return to its own slider."""
    objects = ["100,100,1000,6,0,L|380:100,1,280", "100,300,1250,2,8,L|380:300,1,280", circle(400, 200, 1500),
               "200,200,8000,2,0,B|300:250|400:200,2,140", circle(50, 50, 9000)] + \
              [circle(30 * i, 20 * i, 10000 + 250 * i) for i in range(12)]
    original, rebuilt = round_trip(osu_text(0, objects), tokenizer)
    assert_common(original, rebuilt, 0.10)
    first, second = ordered(rebuilt)[:2]
    assert (first.time, first.end_time, first.hitsound) == (1000, 2000, 0)
    assert (second.time, second.end_time, second.hitsound) == (1250, 2250, 8)
    assert same_cell(first.curve_points[-1], (380, 100))
    assert same_cell(second.curve_points[-1], (380, 300))


def test_objects_at_window_boundaries(tokenizer):
    window = tokenizer.config.window_ms  # 8184 ms
    # a 1/1 grid whose ticks fall just before and after each window edge:
    # ticks at 4 + 1023 k, so 8188 = window + 4 and 16372 = 2 * window + 4
    timing = ["4,1023,4,2,0,60,1,0"]
    times = [4 + 1023 * k for k in range(1, 18) if k not in (8, 9)]
    objects = [circle(100 + 20 * (k % 10), 100, t) for k, t in enumerate(times)]
    objects.append("200,200,8188,2,0,L|300:200,2,140")  # 140 px = one beat per span; ends at 8188 + 2046
    original, rebuilt = round_trip(osu_text(0, objects, timing), tokenizer)
    assert any(t < window < t + 1023 for t in times)
    assert [(o.kind, o.time, o.end_time) for o in ordered(rebuilt)] == \
           [(o.kind, o.time, o.end_time) for o in ordered(original)]
    slider = next(o for o in rebuilt.hit_objects if o.kind == SLIDER)
    assert (slider.time, slider.end_time, slider.slides) == (8188, 10234, 2)


def test_overlapping_spinners_round_trip(tokenizer):
    """Odd maps overlap spinners; each end closes the oldest open spinner."""
    objects = [circle(100, 100, 500), "256,192,1000,12,0,2500,0:0:0:0:", "256,192,2000,12,0,3000,0:0:0:0:", circle(300, 300, 3500)]
    original, rebuilt = round_trip(osu_text(0, objects), tokenizer)
    assert [(o.kind, o.time, o.end_time) for o in ordered(rebuilt)] == \
           [(o.kind, o.time, o.end_time) for o in ordered(original)]


# ---------------------------------------------------------------------------------------------
# taiko

TAIKO_TIMING = ["0,500,4,1,0,80,1,0", "3000,-50,4,1,0,80,0,0", "5000,-100,4,1,0,80,0,1", "6000,-200,4,1,0,80,0,0"]
TAIKO_HITSOUNDS = [0, 2, 8, 4, 0, 6, 12, 0]  # don, kat (whistle), kat (clap), big don, don, big kat, big kat, don
TAIKO_OBJECTS = (
    [circle(256, 192, 1000 + 250 * i, hitsound=h) for i, h in enumerate(TAIKO_HITSOUNDS)]
    + ["256,192,3000,2,4,L|456:192,1,280"]  # big drumroll: 280 px at SV 2 = 1 beat
    + [circle(256, 192, 3500 + 125 * i, hitsound=(0, 8)[i % 2]) for i in range(12)]
    + ["256,192,5000,12,0,5750,0:0:0:0:"]  # denden in kiai
    + [circle(256, 192, 6000 + 250 * i, hitsound=(0, 2, 0, 0, 8)[i % 5]) for i in range(12)]
)


def test_taiko_round_trip(tokenizer):
    original, rebuilt = round_trip(osu_text(1, TAIKO_OBJECTS, TAIKO_TIMING), tokenizer)
    assert_common(original, rebuilt, 0.02)
    a, b = ordered(original), ordered(rebuilt)
    assert [o.hitsound for o in b] == [o.hitsound for o in a]
    assert [o.kind for o in b].count(SLIDER) == 1 and [o.kind for o in b].count(SPINNER) == 1
    for x, y in zip(a, b):
        assert rebuilt.timing.slider_velocity_at(y.time) == pytest.approx(original.timing.slider_velocity_at(x.time))
        assert (y.sample.normal_set, y.sample.addition_set, y.sample.volume) == (1, 1, 80)
    roll = next(o for o in b if o.kind == SLIDER)
    assert (roll.time, roll.hitsound) == (3000, 4)
    assert roll.end_time == pytest.approx(3500, abs=1)
    denden = next(o for o in b if o.kind == SPINNER)
    assert (denden.time, denden.end_time) == (5000, 5750)
    assert kiai_toggles(rebuilt) == [(5000, True), (6000, False)]


# ---------------------------------------------------------------------------------------------
# catch

def test_catch_round_trip(tokenizer):
    # Catch difficulty is sensitive to exact distances (hyperdash thresholds), and positions only come back to
    # within their 32 px cell, so this map walks (moves of up to ~100 px per half beat) rather than jumps.
    objects = ([circle(round(256 + 100 * math.sin(i * 0.9)), 192, 1000 + 250 * i, new_combo=i % 4 == 0, hitsound=(0, 2)[i % 2])
                for i in range(24)]
               + ["100,192,7000,6,0,L|300:192,1,140", "400,192,7750,2,0,P|300:150|200:192,2,70",
                  "256,192,9000,12,0,10000,0:0:0:0:"]
               + [circle(300 - 17 * i, 192, 10500 + 250 * i) for i in range(8)])
    original, rebuilt = round_trip(osu_text(2, objects, ["0,500,4,2,0,60,1,0", "8000,-100,4,2,0,60,0,1", "9000,-100,4,2,0,60,0,0"]),
                                   tokenizer)
    assert_common(original, rebuilt, 0.10)
    a, b = ordered(original), ordered(rebuilt)
    for x, y in zip(a, b):
        if x.kind != SPINNER:
            assert same_cell((x.x, x.y), (y.x, y.y))
        assert y.new_combo == (x.new_combo or x.kind == SPINNER)
        assert y.hitsound == x.hitsound
        assert y.slides == x.slides
    assert kiai_toggles(rebuilt) == [(8000, True), (9000, False)]


# ---------------------------------------------------------------------------------------------
# mania

def column_of(o, keys: int) -> int:
    return min(max(int(o.x * keys / 512), 0), keys - 1)


def mania_key(keys):
    return lambda o: (o.time, column_of(o, keys))


@pytest.mark.parametrize("keys", [4, 7])
def test_mania_round_trip(tokenizer, keys):
    objects = []
    for i in range(48):
        t = 1000 + 125 * i
        column = (i * 3) % keys
        if i % 6 == 0:  # chord: a hold and a note together
            objects += [mania_hold(column, keys, t, t + 500, hitsound=2), mania_note((column + 1) % keys, keys, t)]
        elif i % 9 == 0:  # chord of notes
            objects += [mania_note(c, keys, t, hitsound=8 if c == 0 else 0) for c in range(0, keys, 2)]
        else:
            objects.append(mania_note(column, keys, t))
    objects += [mania_hold(c, keys, 8000, 8750) for c in range(keys)]  # every column at once
    timing = ["0,500,4,1,0,80,1,0", "4000,-50,4,1,0,80,0,0", "6000,-100,4,1,0,80,0,1", "7000,-100,4,1,0,80,0,0"]
    original, rebuilt = round_trip(osu_text(3, objects, timing, difficulty={"CircleSize": str(keys)}), tokenizer)
    assert rebuilt.keycount == keys
    assert_common(original, rebuilt, 0.02)
    a = sorted(original.hit_objects, key=mania_key(keys))
    b = sorted(rebuilt.hit_objects, key=mania_key(keys))
    assert [(o.time, column_of(o, keys), o.kind, o.end_time) for o in b] == \
           [(o.time, column_of(o, keys), o.kind, o.end_time) for o in a]
    assert [o.hitsound for o in b] == [o.hitsound for o in a]
    assert [o.x for o in b] == [o.x for o in a]  # the osu! editor's column centres
    for x, y in zip(a, b):
        assert rebuilt.timing.slider_velocity_at(y.time) == pytest.approx(original.timing.slider_velocity_at(x.time))
    assert kiai_toggles(rebuilt) == [(6000, True), (7000, False)]


# ---------------------------------------------------------------------------------------------
# One tiny map, by hand

TINY = osu_text(0, ["100,100,1000,5,2,0:0:0:0:"], ["0,500,4,2,0,60,1,0"])


def test_tiny_map_event_stream(tokenizer):
    beatmap = parse_beatmap(TINY)
    streams = beatmap_to_groups(beatmap, tokenizer.config)
    [group] = streams[ContextType.MAP]
    events = groups_to_events([group], tokenizer, 0.0)
    # distance from the playfield centre: hypot(156, 92) = 181.1; cell (3, 3) -> 3 + 8 + (3 + 8) * 33;
    # whistle with soft/soft from the redline: 1 + 8 * 1 + 24 * 1; volume 60 from the redline
    assert events == [Event(T.CIRCLE), Event(T.TIME_SHIFT, 100), Event(T.SNAPPING, 1), Event(T.DISTANCE, 181),
                      Event(T.POS, 374), Event(T.NEW_COMBO), Event(T.HITSOUND, 33), Event(T.VOLUME, 60)]
    assert tokenizer.encode_many(events) == [3645, 117, 837, 1034, 1868, 3470, 3504, 3604]
    assert groups_to_events([group], tokenizer, 0.0, hitsounds=False) == events[:-2]

    timing = groups_to_events(streams[ContextType.TIMING], tokenizer, 0.0)
    assert timing == [Event(T.TIMING_POINT), Event(T.TIME_SHIFT, 0), Event(T.BEAT), Event(T.TIME_SHIFT, 50),
                      Event(T.BEAT), Event(T.TIME_SHIFT, 100)]
    assert streams[ContextType.KIAI] == [] and streams[ContextType.SV] == []


def test_tiny_map_decodes_back(tokenizer):
    beatmap = parse_beatmap(TINY)
    ids = [3645, 117, 837, 1034, 1868, 3470, 3504, 3604]
    groups = events_to_groups(tokenizer.decode_many(ids), tokenizer, 0.0)
    assert len(groups) == 1
    assert (groups[0].type, groups[0].time, groups[0].snap, groups[0].new_combo) == (T.CIRCLE, 1005, 1, True)
    assert (groups[0].x, groups[0].y) == (112.0, 112.0)  # the cell's centre
    assert groups[0].hitsounds == [[33, 60]]
    resnap_groups(groups, beatmap.timing)
    assert groups[0].time == 1000
    rebuilt = groups_to_beatmap(groups, beatmap)
    [obj] = rebuilt.hit_objects
    assert (obj.kind, obj.time, obj.x, obj.y, obj.new_combo, obj.hitsound) == (CIRCLE, 1000, 112.0, 112.0, True, 2)
    assert (obj.sample.normal_set, obj.sample.addition_set, obj.sample.volume) == (2, 2, 60)
    assert rebuilt.timing_points == beatmap.timing_points


def test_resnapped_slider_heads_take_their_anchors_along():
    head = Group(T.SLIDER_HEAD, 1007.0, snap=1, x=100.0, y=100.0)
    anchor = Group(T.BEZIER_ANCHOR, 1007.0, x=150.0, y=150.0)
    last = Group(T.LAST_ANCHOR, 1255.0, snap=2, x=200.0, y=100.0)
    groups = [Group(T.CIRCLE, 990.0, snap=0), head, anchor, last]
    resnap_groups(groups, Timing([TimingPoint(0.0, 500.0)]))
    assert [g.time for g in groups] == [990.0, 1000.0, 1000.0, 1250.0]


def test_window_time_shift_is_relative_and_sliced(tokenizer):
    objects = [circle(100, 100, 1000), circle(100, 100, 9000), circle(100, 100, 9500)]
    beatmap = parse_beatmap(osu_text(0, objects))
    groups = beatmap_to_groups(beatmap, tokenizer.config)[ContextType.MAP]
    times = [g.time for g in groups]
    window = tokenizer.config.window_ms
    assert [g.time for g in window_slice(groups, times, 0, window)] == [1000]
    second = window_slice(groups, times, window, 2 * window)
    events = groups_to_events(second, tokenizer, window)
    assert [e for e in events if e.type == T.TIME_SHIFT] == [Event(T.TIME_SHIFT, int((9000 - window) / 10)),
                                                             Event(T.TIME_SHIFT, int((9500 - window) / 10))]


def test_tokenize_windows(tokenizer):
    assert list(tokenize_windows(parse_beatmap(TINY), tokenizer)) == [
        (ContextType.TIMING, 0.0, [3657, 17, 3655, 67, 3655, 117]),
        (ContextType.MAP, 0.0, [3645, 117, 837, 1034, 1868, 3470, 3504, 3604]),
    ]
    window = tokenizer.config.window_ms
    objects = [circle(100, 100, -1000), circle(100, 100, 1000), circle(100, 100, 20000)]
    windows = [(start, ids) for context, start, ids in tokenize_windows(parse_beatmap(osu_text(0, objects)), tokenizer)
               if context == ContextType.MAP]
    # consecutive windows from the one holding the first object to the one holding the last, empty ones included
    assert [start for start, _ in windows] == [-window, 0.0, window, 2 * window]
    assert [ids.count(3645) for _, ids in windows] == [1, 1, 0, 1]
    assert windows[2][1] == []


def test_attributes_before_first_type_are_ignored(tokenizer):
    events = [Event(T.TIME_SHIFT, 5), Event(T.POS, 10), Event(T.CIRCLE), Event(T.TIME_SHIFT, 20), Event(T.CIRCLE)]
    groups = events_to_groups(events, tokenizer, 100.0)
    assert [(g.type, g.time, g.x) for g in groups] == [(T.CIRCLE, 305.0, None), (T.CIRCLE, 305.0, None)]


@pytest.mark.parametrize("mode", [
0, 1, 2, 3])
def test_decoding_no_objects_gives_an_empty_beatmap(tokenizer, mode):
    """A model output without one complete object (empty, or only orphans) decodes to a map with no objects."""
    objects = [mania_note(0, 4, 1000)] if mode == 3 else [circle(100, 100, 1000)]
    template = parse_beatmap(osu_text(mode, objects, difficulty={"CircleSize": "4"}))
    orphans = [Group(T.HOLD_NOTE_END, 300.0, column=2), Group(T.SPINNER_END, 200.0), Group(T.SLIDER_END, 500.0, x=1, y=1),
               Group(T.KIAI, 600.0, value=1)]
    for groups in ([], orphans):
        rebuilt = groups_to_beatmap(groups, template)
        assert rebuilt.hit_objects == []
        assert [p for p in rebuilt.timing_points if p.uninherited] == template.timing_points


@pytest.mark.parametrize("bits", [0, 2, 4, 6, 8, 10, 12, 14])
@pytest.mark.parametrize("normal, addition", [(1, 1), (2, 3), (3, 2), (1, 3)])
def test_hitsound_value_round_trip(bits, normal, addition):
    value = hitsound_value(bits, normal, addition)
    assert 0 <= value <= 72
    assert decode_hitsound(value) == (bits, normal, addition)


def test_hitsound_value_ignores_normal_bit_and_defaults_sets():
    assert hitsound_value(1 | 2, 0, 0) == hitsound_value(2, 1, 1) == 1
    assert hitsound_value(8, 2, 0) == 4 + 8

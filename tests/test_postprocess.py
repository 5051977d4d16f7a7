"""postprocess: timing from markers, super timing, building playable beatmaps, validity, .osz, partial merge."""
from __future__ import annotations

import copy
import json
import math
import zipfile

import numpy as np
import pytest

from postprocess.beatmap import build_beatmap, with_whole_pixels
from postprocess.generated import Generation, GeneratedError, read_generated, write_generated
from postprocess.holds import add_holds
from postprocess.merge import merge_partial
from postprocess.onset_fill import OnsetFill, fill_chords, fill_onsets
from postprocess.package import write_osz
from postprocess.rhythm import TickScore, onset_share
from postprocess.tempo import OnsetEnvelope
from postprocess.timing import consensus_markers, markers_to_timing_points
from postprocess.validate import validity_problems, validity_problems_file
from tokenizer.curves import SliderPath
from tokenizer.decode import events_to_groups
from tokenizer.encode import tokenize_windows
from tokenizer.events import EventType, Group
from tokenizer.osu_file import Beatmap, BeatmapError, HitObject, format_beatmap, parse_beatmap
from tokenizer.timing import TimingPoint

from conftest import circle, mania_hold, mania_note, osu_text

T = EventType


def quantised(time: float, window_start: float = 0.0) -> float:
    """A time as decoding returns it: the centre of its 10 ms step."""
    return window_start + 10 * int((time - window_start) / 10) + 5


def beat_markers(first: float, bpm: float, count: int, meter: int = 4) -> list[tuple[float, EventType]]:
    beat = 60000 / bpm
    return [(first + k * beat, T.TIMING_POINT if k == 0 else T.MEASURE if k % meter == 0 else T.BEAT)
            for k in range(count)]


def bpm(point: TimingPoint) -> float:
    return 60000 / point.beat_length


def grid_error(point: TimingPoint, times) -> float:
    """Largest distance of a time from the redline's beat grid."""
    beats = (np.asarray(times) - point.time) / point.beat_length
    return float(np.abs(beats - np.round(beats)).max() * point.beat_length)


# ---------------------------------------------------------------------------------------------
# markers -> redlines

def test_click_track_at_128_bpm_gives_one_redline():
    markers = [(quantised(t), kind) for t, kind in beat_markers(123, 128, 120)]
    [redline] = markers_to_timing_points(markers)
    assert bpm(redline) == pytest.approx(128, abs=0.5)
    first_beat = redline.time + math.ceil((123 - 10 - redline.time) / redline.beat_length) * redline.beat_length
    assert abs(first_beat - 123) < 10
    assert redline.meter == 4 and redline.uninherited


def test_tempo_change_without_a_marker_splits_the_section():
    markers = beat_markers(1000, 120, 40) + [(21000 + k * 400, T.MEASURE if k % 4 == 0 else T.BEAT) for k in range(40)]
    first, second = markers_to_timing_points([(quantised(t), kind) for t, kind in markers])
    assert (bpm(first), bpm(second)) == (120, 150)
    assert abs(first.time - 1000) < 10 and abs(second.time - 21000) < 10


def test_timing_point_markers_on_the_same_grid_merge_into_one_redline():
    markers = beat_markers(500, 140, 64)
    markers[32] = (markers[32][0], T.TIMING_POINT)  # same tempo, on a downbeat: nothing new
    changed = beat_markers(500, 140, 32) + beat_markers(500 + 32 * 60000 / 140, 175, 32)
    assert len(markers_to_timing_points(markers)) == 1
    assert [bpm(p) for p in markers_to_timing_points(changed)] == pytest.approx([140, 175])


def test_bpm_is_humanised_to_the_coarsest_step_within_leniency():
    rng = np.random.default_rng(7)
    times = 500 + np.arange(64) * 60000 / 174.3 + rng.uniform(-2, 2, 64)
    markers = [(t, T.MEASURE if k % 4 == 0 else T.BEAT) for k, t in enumerate(times)]
    [redline] = markers_to_timing_points(markers, leniency=3.0)
    assert bpm(redline) == pytest.approx(174.3, abs=1e-9)
    assert grid_error(redline, times) <= 3.0
    # Over 16 beats 174 BPM drifts only 4.4 ms from 174.3: a 5 ms leniency accepts the whole number.
    [short] = markers_to_timing_points(markers[:16], leniency=5.0)
    assert bpm(short) == 174


def test_meter_and_first_downbeat_come_from_measure_markers():
    beat = 60000 / 150
    markers = [(1000 + k * beat, T.MEASURE if k % 3 == 1 else T.BEAT) for k in range(30)]
    [redline] = markers_to_timing_points(markers)
    assert redline.meter == 3
    assert redline.time == pytest.approx(1000 + beat - 3 * beat)  # the measure at beat 1 is a downbeat


def test_no_markers_and_a_lone_marker():
    assert markers_to_timing_points([]) == []
    [redline] = markers_to_timing_points([(700.0, T.TIMING_POINT), (703.0, T.BEAT)])  # 3 ms apart: one marker
    assert (redline.time, redline.beat_length) == (700.0, 500.0)


def test_redlines_start_on_whole_milliseconds_so_objects_on_them_stay_in_their_section():
    # A fitted offset of 18668.37 ms: an object snapped onto that redline is written at 18668 ms,
    # which must not fall just before it, off the previous section's grid.
    markers = beat_markers(18668.37, 155, 40) + [(18668.37 + 40 * 387.1, T.TIMING_POINT)]
    markers += [(t, kind) for t, kind in beat_markers(18668.37 + 40 * 387.1, 140, 20)[1:]]
    for redline in markers_to_timing_points(markers):
        assert redline.time == round(redline.time)
    redline = markers_to_timing_points(markers)[0]
    assert redline.time == pytest.approx(18668, abs=1)


def test_consensus_of_jittered_passes_recovers_the_beats():
    rng = np.random.default_rng(3)
    truth = beat_markers(600, 128, 60)
    passes = []
    for p in range(5):
        kept = [(t + rng.uniform(-3, 3), kind) for k, (t, kind) in enumerate(truth) if (k + p) % 6]  # every 6th missing
        passes.append(kept + ([(600 + 10.5 * 60000 / 128, T.BEAT)] if p == 0 else []))  # one off-beat marker
    found = consensus_markers(passes)
    assert [kind for _, kind in found] == [kind for _, kind in truth]
    assert np.abs(np.array([t for t, _ in found]) - [t for t, _ in truth]).max() < 3
    [redline] = markers_to_timing_points(found)
    assert bpm(redline) == 128


# ---------------------------------------------------------------------------------------------
# build_beatmap

def template(mode: int = 0, timing_points=("0,500,4,2,0,60,1,0",), **difficulty: str):
    """Settings and redlines only; build_beatmap ignores the template's own objects."""
    return parse_beatmap(osu_text(mode, timing_points=timing_points, difficulty=difficulty or None))


def note(time: float, x: float | None = 256, y: float | None = 192, snap: int | None = 1, **fields) -> Group:
    return Group(T.CIRCLE, float(time), snap=snap, x=x, y=y, **fields)


def in_column(kind: EventType, time: float, column: int) -> Group:
    """A mania group tagged 1/1."""
    return Group(kind, float(time), snap=1, column=column)


def slider(time: float, end: float, head: tuple, last: tuple, sv: float, volume: int = 0) -> list[Group]:
    """A straight slider: head, last anchor at `end` (one span), and its end."""
    return [Group(T.SLIDER_HEAD, float(time), snap=1, x=head[0], y=head[1], scroll_speed=sv, hitsounds=[[0, volume]]),
            Group(T.LAST_ANCHOR, float(end), snap=1, x=last[0], y=last[1]),
            Group(T.SLIDER_END, float(end), snap=1, x=last[0], y=last[1])]


def test_tagged_divisor_resnaps_to_an_exact_tick_and_untagged_starts_snap():
    beatmap = build_beatmap([note(1240, snap=4), note(1337.4, snap=None), note(2003, snap=0)], template())
    times = [o.time for o in beatmap.hit_objects]
    assert times[0] == 1125  # 1250 is nearer but is a 1/2 tick
    assert abs(times[1] - (1000 + 500 * 2 / 3)) < 2 and times[2] == 2000
    assert all(beatmap.timing.snap_divisor(t, 16, 2.0) for t in times)
    assert validity_problems(beatmap) == []
    on_grid = build_beatmap([note(1240, snap=4), note(1000, snap=1)], template(), exact_snaps=False)
    assert [o.time for o in on_grid.hit_objects] == [1000, 1250]  # the nearest tick of the 1/4 grid


def test_anchors_follow_their_resnapped_head():
    # The head resnaps from 995 to 1000; its anchor, decoded at 995 too, must not end up before it.
    groups = [Group(T.SLIDER_HEAD, 995.0, snap=1, x=100, y=100, scroll_speed=0.8),
              Group(T.BEZIER_ANCHOR, 995.0, x=150, y=50),
              Group(T.LAST_ANCHOR, 1495.0, snap=1, x=200, y=100), Group(T.SLIDER_END, 1495.0, snap=1, x=200, y=100)]
    [obj] = build_beatmap(groups, template()).hit_objects
    assert (obj.time, obj.curve_type, obj.curve_points) == (1000, "B", [(150, 50), (200, 100)])
    assert obj.end_time == pytest.approx(1500)


def test_near_perfect_overlaps_take_the_earlier_position():
    groups = [note(1000, 100, 100), note(1500, 102.5, 101), note(2000, 110, 100), note(3500, 101, 102)]
    snapped = build_beatmap(groups, template()).hit_objects
    assert [(o.x, o.y) for o in snapped] == [(100, 100), (100, 100), (110, 100), (101, 102)]  # last: >1 s later
    unsnapped = build_beatmap(groups, template(), snap_overlaps=False).hit_objects
    assert (unsnapped[1].x, unsnapped[1].y) == (102.5, 101)
    assert groups[1].x == 102.5  # the input is not changed


def test_distance_only_positions_are_on_the_playfield_and_seeded():
    distances = [200, 300, 150, 0, 250, 640]
    groups = [note(1000 + 500 * i, None, None, distance=d) for i, d in enumerate(distances)]
    runs = [[(o.x, o.y) for o in build_beatmap(groups, template(), seed=s).hit_objects] for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    positions = [(256.0, 192.0)] + runs[0]
    for d, a, b in zip(distances[:-1], positions, positions[1:]):
        assert math.dist(a, b) == pytest.approx(d)
        assert 0 <= b[0] <= 512 and 0 <= b[1] <= 384
    far = positions[-1]  # nothing on the playfield is 640 px away: the fallback corner
    assert far in ((0.0, 0.0), (512.0, 384.0))


def test_no_distance_and_no_position_repeats_the_previous_position_and_positions_are_clamped():
    objects = build_beatmap([note(1000, 600, -20), note(1500, None, None)], template()).hit_objects
    assert [(o.x, o.y) for o in objects] == [(512, 0), (512, 0)]


def green_at(beatmap, time):
    return [p for p in beatmap.timing_points if not p.uninherited and p.time == time]


def test_far_too_short_slider_gets_a_lower_sv_then_a_stretch():
    # Needs SV * 1000 ms * 100 / 500 ms * 1.4 = 280 px; the path is 50 px: SV 0.2 (56 px), stretched 1.12x.
    beatmap = build_beatmap(slider(1000, 2000, (100, 200), (150, 200), sv=1.0), template())
    [obj] = beatmap.hit_objects
    [green] = green_at(beatmap, 1000)
    assert green.slider_velocity == pytest.approx(0.2)
    assert obj.length == pytest.approx(56) and obj.curve_points == [pytest.approx((156, 200))]
    assert obj.end_time == pytest.approx(2000)
    assert validity_problems(beatmap) == []


def test_slightly_short_slider_is_stretched_about_its_head():
    beatmap = build_beatmap(slider(1000, 2000, (100, 200), (150, 200), sv=0.25), template())
    [obj] = beatmap.hit_objects
    assert green_at(beatmap, 1000)[0].slider_velocity == pytest.approx(0.25)
    assert obj.length == pytest.approx(70) and obj.curve_points == [pytest.approx((170, 200))]


def test_slider_is_kept_on_the_playfield():
    # Stretching to 70 px would end at x = 520: shrunk to 506, and the SV lowered so osu! does not extend it.
    beatmap = build_beatmap(slider(1000, 2000, (450, 200), (500, 200), sv=0.25), template())
    [obj] = beatmap.hit_objects
    assert obj.path().polyline[:, 0].max() <= 512
    assert green_at(beatmap, 1000)[0].slider_velocity == pytest.approx(0.2)
    assert obj.curve_points == [pytest.approx((506, 200))]
    assert validity_problems(beatmap) == []


def test_a_slider_too_long_for_the_playfield_becomes_a_circle_at_its_head():
    # 60 s of slider at the lowest SV is still about 4,000 px of path: no shape fits, so the onset stays as a circle.
    groups = [note(500, 100, 100), *slider(1000, 61000, (450, 200), (500, 200), sv=1.0), note(62000, 300, 300)]
    beatmap = build_beatmap(groups, template())
    assert [(o.kind, o.time, o.x, o.y) for o in beatmap.hit_objects] == [
        ("circle", 500, 100, 100), ("circle", 1000, 450, 200), ("circle", 62000, 300, 300)]
    assert validity_problems(beatmap) == []


def test_anchors_far_past_a_sliders_end_are_cut_away_and_its_ball_path_kept():
    # 70 px of slider on an arc that would run on past the playfield's bottom (y 400): the whole arc used to be
    # shrunk toward the head until it fitted, which bent the part the ball travels.
    arc = [(200 + 150 * math.cos(math.radians(a)), 250 + 150 * math.sin(math.radians(a))) for a in (180, 150, 30)]
    groups = [Group(T.SLIDER_HEAD, 1000.0, snap=1, x=arc[0][0], y=arc[0][1], scroll_speed=1.0),
              Group(T.PERFECT_ANCHOR, 1000.0, x=arc[1][0], y=arc[1][1]),
              Group(T.LAST_ANCHOR, 1250.0, snap=2, x=arc[2][0], y=arc[2][1]),
              Group(T.SLIDER_END, 1250.0, snap=2, x=arc[2][0], y=arc[2][1])]
    assert SliderPath("P", arc).polyline[:, 1].max() > 399
    beatmap = build_beatmap(groups, template())
    [obj] = beatmap.hit_objects
    assert obj.curve_type == "P" and obj.length == pytest.approx(70)
    assert obj.path().calculated_length == pytest.approx(70, abs=0.5)
    written = SliderPath("P", arc, 70)
    for progress in np.linspace(0, 1, 11):
        assert math.dist(obj.path().position_at(progress), written.position_at(progress)) < 0.25
    assert validity_problems(beatmap) == []
    # A path only a little past the end, as mappers' are, keeps its anchors.
    [mild] = build_beatmap(slider(1000, 1500, (100, 200), (260, 200), sv=1.0), template()).hit_objects
    assert mild.curve_points == [(260, 200)] and mild.length == pytest.approx(140)


def test_a_slider_whose_end_snaps_onto_its_head_becomes_a_circle():
    groups = [*slider(1000, 1010, (100, 200), (200, 200), sv=1.0), note(1500, 300, 300)]
    beatmap = build_beatmap(groups, template())
    assert [(o.kind, o.time) for o in beatmap.hit_objects] == [("circle", 1000), ("circle", 1500)]
    assert validity_problems(beatmap) == []


def test_positions_and_control_points_are_written_in_whole_pixels():
    text = osu_text(0, ["100.4,200.6,1000,1,0", "10.2,10.2,1500,2,0,B|10.4:10.4|50:50|50:50|80.6:20.2,1,100",
                        "300,300,2500,2,0,L|300.3:300.2,1,0.3"], ["0,500,4,2,0,60,1,0"])
    beatmap = parse_beatmap(text)
    whole = with_whole_pixels(beatmap)
    circle_, curved, tiny = whole.hit_objects
    assert (circle_.x, circle_.y) == (100, 201)
    # (10.4, 10.4) would round onto the head and read as a red anchor; the real red anchor at (50, 50) stays
    assert ((curved.x, curved.y), curved.curve_points) == ((10, 10), [(50, 50), (50, 50), (81, 20)])
    assert tiny.curve_points == [(300, 300)]  # a slider keeps a control point
    # A tight arc near the edge that rounding would swing off the playfield keeps its fractions.
    edge = parse_beatmap(osu_text(0, ["272.4,16.4,1000,2,0,P|268.4:20.4|269.2:18.6,1,49"], ["0,500,4,2,0,60,1,0"]))
    assert with_whole_pixels(edge).hit_objects[0].curve_points == edge.hit_objects[0].curve_points
    assert beatmap.hit_objects[0].x == 100.4  # the input is not changed
    assert "." not in format_beatmap(whole).split("[HitObjects]")[1].replace("0.3,", "")


def test_a_slider_whose_end_never_came_becomes_a_circle_and_does_not_take_a_later_end():
    # The model wrote a head and a last anchor at 1000, then moved on: a later slider's end must not
    # close it into a 9-second slider over the objects between (as 43-second ones once came out).
    unfinished = slider(1000, 1500, (100, 200), (200, 200), sv=1.0)[:2]
    groups = [*unfinished, note(2000, 300, 300), *slider(9000, 9500, (400, 100), (450, 100), sv=1.0)]
    beatmap = build_beatmap(groups, template())
    assert [(o.kind, o.time) for o in beatmap.hit_objects] == [("circle", 1000), ("circle", 2000), ("slider", 9000)]
    assert beatmap.hit_objects[2].end_time == 9500
    assert validity_problems(beatmap) == []


def test_duplicate_objects_are_dropped_whole():
    groups = [note(1000, 100, 100), note(1004, 300, 300, snap=1),  # resnaps to 1000 as well
              note(2000, 50, 50), *slider(2000, 2500, (200, 200), (300, 200), sv=1.0),
              Group(T.SPINNER, 3000.0, snap=1), Group(T.SPINNER_END, 3500.0, snap=1), note(3000)]
    objects = build_beatmap(groups, template()).hit_objects
    assert [(o.kind, o.time, o.x) for o in objects] == [("circle", 1000, 100), ("circle", 2000, 50), ("spinner", 3000, 256)]


def test_starts_snapped_to_one_tick_are_separated_onto_a_finer_grid_the_least_moved_keeping_it():
    # Tagged 1/1, a half beat apart: both snap to the beat at 1000. The one generated nearer keeps it,
    # the other takes the nearest free 1/2 tick around its own generated time.
    assert [o.time for o in build_beatmap([note(1240), note(1000)], template(), separate_finest=16).hit_objects] == [1000, 1250]
    assert [o.time for o in build_beatmap([note(760), note(1010)], template(), separate_finest=16).hit_objects] == [750, 1000]
    # Where the 1/2 ticks are held too, the 1/4 grid: 1000 and 1250 are taken, 1125 is free.
    assert [o.time for o in build_beatmap([note(1000), note(1250, snap=2), note(1110)], template(), separate_finest=16).hit_objects] == [1000, 1125, 1250]
    # Mania separates within a column only: a chord stays a chord.
    notes = [in_column(T.CIRCLE, 1000, 0), in_column(T.CIRCLE, 1000, 1), in_column(T.CIRCLE, 1230, 0)]
    beatmap = build_beatmap(notes, template(3, CircleSize="4"), separate_finest=16)
    assert [(o.time, o.x) for o in beatmap.hit_objects] == [(1000, 64), (1000, 192), (1250, 64)]
    assert [o.time for o in build_beatmap([note(1240), note(1000)], template()).hit_objects] == [1000]  # off: dropped
    # No finer than the finest divisor: with 1/4 the finest, a 1/2-tagged start finds 1/4 ticks only, so where both
    # are held it is dropped rather than put on a 1/8 tick (1000 and 1250 held, 1062 and 1125 too).
    crowded = [note(1000), note(1250, snap=2), note(1125, snap=4), note(1060, snap=2), note(1110, snap=2)]
    assert [o.time for o in build_beatmap(crowded, template(), exact_snaps=False, separate_finest=16).hit_objects] == [1000, 1062, 1125, 1250]
    assert [o.time for o in build_beatmap(crowded, template(), exact_snaps=False, separate_finest=4).hit_objects] == [1000, 1125, 1250]


def onset_score(peaks: dict[float, float], song_ms: float = 5000.0) -> TickScore:
    """The onset-strength score of an envelope of 5 ms frames, silent but for the given peaks (ms: strength)."""
    times = np.arange(0.0, song_ms, 5.0)
    values = np.zeros_like(times)
    for time, strength in peaks.items():
        values[int(time // 5)] = strength
    return onset_share(OnsetEnvelope(times, values))


def onset_snapped(groups: list[Group], peaks: dict[float, float], beats: float = 0.45, mode: int = 0) -> list[tuple]:
    beatmap = build_beatmap(groups, template(mode, CircleSize="4"), exact_snaps=False, onset_score=onset_score(peaks),
                            onset_snap_beats=beats)
    return [(o.time, o.end_time) if o.kind == "slider" else o.time for o in beatmap.hit_objects]


def test_tagged_objects_move_to_the_strongest_onset_on_their_grid_within_the_radius():
    # 120 BPM, 0.45 beats = 225 ms. Tagged 1/2 at 1080: the 1/2 ticks 1000 and 1250 are in reach, 1250 is played.
    assert onset_snapped([note(1080, snap=2)], {1250: 1.0}) == [1250]
    assert onset_snapped([note(1080, snap=2)], {1250: 1.0}, beats=0) == [1000]  # off: the nearest tick
    assert onset_snapped([note(1080, snap=2)], {}) == [1000]  # silence: the nearest of equals
    assert onset_snapped([note(1080, snap=2)], {1250: 0.5, 1000: 1.0}) == [1000]
    assert onset_snapped([note(1080, snap=1)], {1250: 1.0}) == [1000]  # 1250 is not on the 1/1 grid
    assert onset_snapped([note(1080, snap=4)], {1500: 1.0}) == [1125]  # 1500 is 420 ms away
    # A slider moves whole: generated 1780-2280, the onset at 1500 takes it to 1500-2000 (else 2000-2500).
    assert onset_snapped(slider(1780, 2280, (100, 100), (300, 100), sv=1.0), {1500: 1.0}, beats=0.6) == [(1500, 2000)]
    assert onset_snapped(slider(1780, 2280, (100, 100), (300, 100), sv=1.0), {}, beats=0.6) == [(2000, 2500)]


def test_an_onset_tick_taken_by_one_object_is_not_free_for_the_next_except_in_another_mania_column():
    assert onset_snapped([note(1200, snap=2), note(1300, snap=2)], {1250: 1.0}) == [1250, 1500]
    chord = [Group(T.CIRCLE, 1200.0, snap=2, column=0), Group(T.CIRCLE, 1300.0, snap=2, column=1)]
    assert onset_snapped(chord, {1250: 1.0}, mode=3) == [1250, 1250]


def fill_map(objects: list[str], peaks: dict[float, float], target: float = 10.0, mode: int = 0, **fill) -> Beatmap:
    """fill_onsets on a 5 s, 120 BPM map whose song has 12 full-strength onsets off the 1/2 grid (+100 ms),
    so its strong onset is 1, plus `peaks`."""
    background = {250 * k + 100: 1.0 for k in range(12)}
    beatmap = parse_beatmap(osu_text(mode, hit_objects=objects, difficulty={"CircleSize": "4"}))
    return fill_onsets(beatmap, onset_score({**background, **peaks}), OnsetFill(target, **fill), song_ms=5000.0)


def filled(objects: list[str], peaks: dict[float, float], target: float = 10.0, mode: int = 0, **fill) -> list[tuple]:
    """(time, x, y) of every object after fill_map."""
    return [(o.time, o.x, o.y) for o in fill_map(objects, peaks, target, mode, **fill).hit_objects]


def test_circles_go_on_the_strongest_unmapped_ticks_between_the_objects_around_them():
    ends = [circle(100, 100, 0), circle(300, 100, 4000)]
    peaks = {1000: 1.0, 2000: 0.8, 3000: 0.2, 1040: 1.0}  # 3000: under the 0.3 floor; 1040: not a 1/2 tick
    assert filled(ends, peaks) == [(0, 100, 100), (1000, 150, 100), (2000, 200, 100), (4000, 300, 100)]
    assert filled(ends, peaks, target=0.6) == [(0, 100, 100), (1000, 150, 100), (4000, 300, 100)]  # 3 objects in 5 s
    assert filled(ends, peaks, target=0.4) == [(0, 100, 100), (4000, 300, 100)]  # dense enough already
    assert filled(ends, {4500: 1.0, 1000: 1.0}) == [(0, 100, 100), (1000, 150, 100), (4000, 300, 100)]  # after the last


def test_an_easy_target_fills_whole_beats_only():
    ends = [circle(100, 100, 0), circle(300, 100, 4000)]
    peaks = {1250: 1.0, 2000: 0.8}  # the half beat is the stronger
    # 1.2 objects/s at 120 BPM is 0.6 a beat
    assert [t for t, _, _ in filled(ends, peaks, target=1.2)] == [0, 1250, 2000, 4000]
    assert [t for t, _, _ in filled(ends, peaks, target=1.2, whole_beats_below=0.8)] == [0, 2000, 4000]
    assert [t for t, _, _ in filled(ends, peaks, target=1.8, whole_beats_below=0.8)] == [0, 1250, 2000, 4000]  # 0.9 a beat


def test_circles_on_silent_ticks_move_to_strong_ones_and_sliders_stay():
    objects = [circle(100, 100, 0), circle(200, 100, 1000, new_combo=True), "100,300,2500,2,0,L|300:300,1,70",
               circle(300, 100, 4000)]
    peaks = {0: 1.0, 3500: 0.9, 4000: 1.0}  # 1000 and the slider's head at 2500 are silent
    assert [t for t, _, _ in filled(objects, peaks, target=0.4, drop_below=0.05)] == [0, 2500, 3500, 4000]
    combos = [o.new_combo for o in fill_map(objects, peaks, target=0.4, drop_below=0.05).hit_objects]
    assert combos == [False, True, False, False]  # the combo begins on the slider now
    assert [t for t, _, _ in filled(objects, peaks, target=0.4)] == [0, 1000, 2500, 4000]  # off: dense enough already
    assert [t for t, _, _ in filled(objects, {0: 1.0}, target=0.4, drop_below=0.05)] == [0, 1000, 2500, 4000]  # nowhere to go
    # a circle weaker than drop_below but over the floor is taken out; its own tick may win back, once
    assert [t for t, _, _ in filled(objects, {0: 1.0, 1000: 0.4, 4000: 1.0}, target=0.4, drop_below=0.5)] == [0, 1000, 2500, 4000]


def test_a_circle_taken_out_at_the_start_still_leaves_its_stretch_to_fill():
    objects = [circle(100, 100, 0), circle(200, 100, 1000), circle(300, 100, 4000)]  # 0 is silent
    # the best tick, 500, lies before the first circle kept: it gets the circle, on that circle's position
    assert filled(objects, {500: 1.0, 1000: 1.0, 4000: 1.0}, target=0.6, drop_below=0.05) == [
        (500, 200, 100), (1000, 200, 100), (4000, 300, 100)]


def test_added_circles_keep_their_gap_from_objects_and_stay_off_slider_bodies():
    objects = [circle(100, 100, 0), "100,300,1000,2,0,L|300:300,1,140", circle(400, 300, 3050)]  # 140 px: 1000-1500
    peaks = {1250: 1.0, 1500: 1.0, 1750: 0.9, 3000: 1.0, 2250: 0.8}  # its body, its end, free, 50 ms before 3050, free
    assert [t for t, _, _ in filled(objects, peaks)] == [0, 1000, 1750, 2250, 3050]
    # from the slider's end (240, 300) at 1500 toward (400, 300) at 3050: 250 / 1550 of the way
    assert filled(objects, {1750: 1.0})[2] == (1750, 266, 300)


def test_a_mania_note_goes_in_the_column_free_longest_and_a_hold_keeps_only_its_own_column():
    notes = [mania_hold(0, 4, 0, 3500), mania_note(1, 4, 0), mania_note(2, 4, 1500), mania_note(3, 4, 1000), mania_note(1, 4, 4000)]
    added = [o for o in filled(notes, {2500: 1.0}, mode=3) if o[0] == 2500]
    assert added == [(2500, 192, 192)]  # column 1 was last hit at 0, column 0 is held


def holds_after(notes: list[str], share: float) -> list[tuple]:
    """(time, column, end or None) of every note of a 4K, 120 BPM map after add_holds."""
    beatmap = add_holds(parse_beatmap(osu_text(3, hit_objects=notes, difficulty={"CircleSize": "4"})), share)
    assert validity_problems(beatmap) == []
    return [(o.time, int(o.x * 4 // 512), o.end_time if o.kind == "hold" else None) for o in beatmap.hit_objects]


def test_notes_with_a_beat_of_room_in_their_column_become_holds_evenly_through_the_song():
    notes = [mania_note(0, 4, 0), mania_note(1, 4, 500), mania_note(1, 4, 800), mania_note(0, 4, 1900),
             mania_note(0, 4, 3000)]
    # rooms: 0 -> 1900 ms, 1900 -> 3000, 800 and 3000: the column's last note; 500 -> 800 is under a beat (500 ms)
    # 1 of the 4 candidates: the middle one, 1900, held for 0.4 of 1100 ms, down to a quarter beat (125 ms): 375
    assert holds_after(notes, 0.2) == [(0, 0, None), (500, 1, None), (800, 1, None), (1900, 0, 2275.0), (3000, 0, None)]
    # 3 of the 4: 0 (0.4 of 1900 -> 750), 1900, and 3000 (no next note: 2 beats)
    assert holds_after(notes, 0.6) == [(0, 0, 750.0), (500, 1, None), (800, 1, None), (1900, 0, 2275.0), (3000, 0, 4000.0)]
    assert [end for *_, end in holds_after(notes, 1.0)] == [750.0, None, 1800.0, 2275.0, 4000.0]  # never 500


def test_holds_already_in_the_map_count_toward_the_share():
    notes = [mania_hold(0, 4, 0, 250), mania_note(1, 4, 500), mania_note(2, 4, 1000), mania_note(3, 4, 1500)]
    assert [end for *_, end in holds_after(notes, 0.25)] == [250, None, None, None]
    assert [end for *_, end in holds_after(notes, 0.5)] == [250, None, 2000.0, None]


def test_chord_notes_go_on_the_best_scored_single_notes_in_a_column_free_long_enough():
    notes = [mania_note(0, 4, 1000), mania_note(2, 4, 1000), mania_note(1, 4, 1500), mania_note(3, 4, 2000),
             mania_hold(0, 4, 2400, 3200), mania_note(2, 4, 2500), mania_note(1, 4, 3000)]
    beatmap = parse_beatmap(osu_text(3, hit_objects=notes, difficulty={"CircleSize": "4"}))
    score = onset_score({1000: 1.0, 1500: 0.4, 2000: 0.6, 2500: 0.9, 3000: 0.8})
    chorded = fill_chords(copy.deepcopy(beatmap), score, count=9, min_gap_ms=60.0)
    added = sorted(set((o.time, o.x) for o in chorded.hit_objects) - set((o.time, o.x) for o in beatmap.hit_objects))
    # the best-scored single notes first (1000 is a chord already): 2500 goes in column 1, free since 1500 (column 0
    # is held until 3200, column 2 is its own note); 3000 then finds column 1 taken by it and goes in column 3.
    # Two notes reach the count of 9.
    assert added == [(2500, 192), (3000, 448)]
    assert [o.time for o in chorded.hit_objects] == sorted(o.time for o in chorded.hit_objects)
    every = fill_chords(copy.deepcopy(beatmap), score, count=20, min_gap_ms=60.0)
    assert len(every.hit_objects) == 12 and validity_problems(every) == []  # a second note on all 5 single notes
    # a column whose next note comes within the gap is not free either: 2K, the other column plays 30 ms later
    two_keys = parse_beatmap(osu_text(3, hit_objects=[mania_note(0, 2, 1000), mania_note(1, 2, 1030)],
                                      difficulty={"CircleSize": "2"}))
    assert len(fill_chords(two_keys, score, count=4, min_gap_ms=60.0).hit_objects) == 2
    assert validity_problems(chorded) == []


def test_a_saved_generation_reads_back_equal_and_a_damaged_one_is_one_error(tmp_path):
    groups = [*slider(1000, 1500, (100, 100), (300, 100), sv=1.2, volume=70), note(2000, None, None, distance=120),
              Group(T.KIAI, 2500.0, value=1), in_column(T.HOLD_NOTE, 3000, 2)]
    generation = Generation(0, [TimingPoint(250.0, 500.0, volume=60)], groups)
    path = tmp_path / "map.generated.json"
    write_generated(path, generation)
    assert read_generated(path) == generation and [p.name for p in tmp_path.iterdir()] == [path.name]
    damaged = json.loads(path.read_text())
    damaged["groups"][0]["type"] = "not a type"
    path.write_text(json.dumps(damaged))
    with pytest.raises(GeneratedError, match="is a damaged saved generation"):
        read_generated(path)
    path.write_text("[1, 2]")
    with pytest.raises(GeneratedError, match="is not a saved generation"):
        read_generated(path)


def test_mania_duplicates_and_notes_inside_holds_are_dropped():
    groups = [in_column(T.CIRCLE, 1000, 0), in_column(T.CIRCLE, 1000, 0), in_column(T.CIRCLE, 1000, 1),
              in_column(T.HOLD_NOTE, 1000, 2), in_column(T.CIRCLE, 1500, 2), in_column(T.HOLD_NOTE, 1500, 2),
              in_column(T.HOLD_NOTE_END, 2000, 2), in_column(T.CIRCLE, 2000, 2), in_column(T.HOLD_NOTE_END, 2500, 2),
              in_column(T.CIRCLE, 2500, 2), in_column(T.CIRCLE, 3000, 2)]
    beatmap = build_beatmap(groups, template(3, CircleSize="4"))
    # Nested holds pair as groups_to_beatmap pairs them: the newer start takes the first end.
    assert [(o.kind, o.time, o.x, o.end_time) for o in beatmap.hit_objects] == [
        ("circle", 1000, 64, None), ("circle", 1000, 192, None), ("hold", 1000, 320, 2500), ("circle", 3000, 320, None)]
    assert validity_problems(beatmap) == []


def test_volumes_become_greenlines_in_std():
    groups = [Group(T.KIAI, 500.0, value=1, snap=1), note(1000, hitsounds=[[0, 80]]), note(1500, hitsounds=[[0, 80]]),
              note(2000, hitsounds=[[0, 40]]), note(2500), *slider(3000, 3500, (100, 100), (200, 100), 0.5, volume=90)]
    beatmap = build_beatmap(groups, template())
    points = [(p.time, p.beat_length, p.volume, p.uninherited, p.kiai) for p in beatmap.timing_points]
    assert points == [(0, 500, 60, True, False), (500, -100, 60, False, True), (1000, -100, 80, False, True),
                      (2000, -100, 40, False, True), (3000, -200, 90, False, True)]
    assert all(o.sample.volume == 0 for o in beatmap.hit_objects)
    assert validity_problems(beatmap) == []


def test_volumes_stay_on_mania_notes():
    groups = [Group(T.CIRCLE, 1000.0, snap=1, column=0, hitsounds=[[0, 80]]),
              Group(T.CIRCLE, 1500.0, snap=1, column=1, hitsounds=[[0, 40]])]
    beatmap = build_beatmap(groups, template(3, CircleSize="4"))
    assert [o.sample.volume for o in beatmap.hit_objects] == [80, 40]
    assert [p.time for p in beatmap.timing_points] == [0]


def test_default_redline_and_no_greenlines_before_the_first_redline():
    no_redline = template(timing_points=("0,-100,4,2,0,60,0,0",))
    assert [(p.time, p.beat_length, p.uninherited) for p in build_beatmap([note(1000)], no_redline).timing_points] \
        == [(0, 500, True)]
    late = build_beatmap([Group(T.KIAI, 200.0, value=1), note(1500, hitsounds=[[0, 80]])],
                         template(timing_points=("1000,500,4,2,0,60,1,0",)))
    assert [p.time for p in late.timing_points] == [1000, 1500]


@pytest.mark.parametrize("mode", [0, 1, 3])
def test_token_round_trip_builds_a_valid_map(tokenizer, mode):
    objects = {
        0: [circle(100, 100, 1000), circle(300, 200, 1500, new_combo=True),
            "200,300,2000,2,0,B|250,250|300,300,1,100,0|0,0:0|0:0,0:0:0:0:", "256,192,3000,12,0,4000,0:0:0:0:"],
        1: [circle(256, 192, 1000), circle(256, 192, 1250, hitsound=2), "256,192,1500,2,0,L|400:192,1,140",
            "256,192,2500,12,0,3500,0:0:0:0:"],
        3: [mania_note(0, 4, 1000), mania_note(3, 4, 1000), mania_hold(1, 4, 1250, 2000), mania_note(2, 4, 1500)],
    }[mode]
    original = parse_beatmap(osu_text(mode, objects))
    groups = []
    for _, start, ids in tokenize_windows(original, tokenizer):
        groups += events_to_groups(tokenizer.decode_many(ids), tokenizer, start)
    rebuilt = build_beatmap(groups, original)
    assert validity_problems(rebuilt) == []
    assert [(o.kind, o.time) for o in rebuilt.hit_objects] == [(o.kind, o.time) for o in original.hit_objects]


# ---------------------------------------------------------------------------------------------
# validity

@pytest.fixture
def good():
    return parse_beatmap(osu_text(0, [circle(100, 100, 1000), "200,300,1500,2,0,L|300:300,1,100,0|0,0:0|0:0,0:0:0:0:",
                                      circle(256, 192, 2250)], ["0,500,4,2,0,60,1,0", "1500,-100,4,2,0,60,0,0"]))


def test_a_good_beatmap_has_no_problems(good, tmp_path):
    assert validity_problems(good) == []
    path = tmp_path / "good.osu"
    path.write_text(format_beatmap(good), encoding="utf-8")
    assert validity_problems_file(path) == []


def broken(beatmap, change):
    beatmap = copy.deepcopy(beatmap)
    change(beatmap)
    return beatmap


@pytest.mark.parametrize("change, expected", [
    (lambda b: setattr(b, "timing_points", b.timing_points[1:]), "no uninherited"),
    (lambda b: b.timing_points.reverse(), "Timing points go back in time"),
    (lambda b: setattr(b.timing_points[0], "beat_length", math.nan), "impossible beat length"),
    (lambda b: setattr(b.timing_points[0], "beat_length", -500.0), "impossible beat length"),
    (lambda b: b.hit_objects.reverse(), "start before the object listed ahead"),
    (lambda b: b.hit_objects.append(HitObject(256, 192, 3000, "spinner", end_time=2500)), "end before they start"),
    (lambda b: setattr(b.hit_objects[0], "x", 600.0), "outside the 512x384 playfield"),
    (lambda b: setattr(b.hit_objects[1], "length", 400.0), "outside the 512x384 playfield"),  # the path runs off
    (lambda b: setattr(b.hit_objects[2], "time", 1500), "same time as another object"),
    (lambda b: setattr(b.hit_objects[2], "time", 2263), "not within 2 ms of a 1/1 to 1/16 tick"),
    (lambda b: setattr(b, "hit_objects", []), "Our reader rejects"),
])
def test_each_problem_is_reported(good, change, expected):
    problems = validity_problems(broken(good, change))
    assert len(problems) == 1 and expected in problems[0], problems


def test_an_unreadable_file_is_one_problem(tmp_path):
    path = tmp_path / "bad.osu"
    path.write_text("not a beatmap", encoding="utf-8")
    [problem] = validity_problems_file(path)
    assert "not an osu! beatmap" in problem


# ---------------------------------------------------------------------------------------------
# .osz

def test_osz_holds_the_map_audio_and_background(good, tmp_path):
    audio, background = tmp_path / "song.mp3", tmp_path / "bg.jpg"
    audio.write_bytes(b"ID3 fake audio \x00\x01\x02" * 100)
    background.write_bytes(b"\xff\xd8 fake jpeg")
    osz = tmp_path / "out" / "map.osz"
    osz.parent.mkdir()
    text = format_beatmap(good)
    write_osz(osz, "Artist - Title (pytest) [Hard].osu", text, audio, background)
    with zipfile.ZipFile(osz) as archive:
        assert sorted(archive.namelist()) == ["Artist - Title (pytest) [Hard].osu", "bg.jpg", "song.mp3"]
        assert archive.read("song.mp3") == audio.read_bytes() and archive.read("bg.jpg") == background.read_bytes()
        again = parse_beatmap(archive.read("Artist - Title (pytest) [Hard].osu"))
    assert again.hit_objects == good.hit_objects
    assert sorted(p.name for p in osz.parent.iterdir()) == ["map.osz"]  # no temporary file left


def test_osz_refuses_to_overwrite_and_reports_missing_audio(good, tmp_path):
    audio = tmp_path / "song.ogg"
    audio.write_bytes(b"OggS")
    osz = tmp_path / "map.osz"
    osz.write_bytes(b"user's file")
    with pytest.raises(BeatmapError, match="already exists"):
        write_osz(osz, "map.osu", "text", audio)
    assert osz.read_bytes() == b"user's file"
    write_osz(osz, "map.osu", "text", audio, overwrite=True)
    assert zipfile.ZipFile(osz).read("map.osu") == b"text"
    with pytest.raises(BeatmapError, match="file not found"):
        write_osz(tmp_path / "other.osz", "map.osu", "text", tmp_path / "missing.ogg")
    with pytest.raises(BeatmapError, match="plain file name"):
        write_osz(tmp_path / "other.osz", "../escape.osu", "text", audio)
    assert not (tmp_path / "other.osz").exists()


# ---------------------------------------------------------------------------------------------
# partial remapping

def test_merge_partial_replaces_only_the_range_and_restores_the_timing_after_it():
    reference = parse_beatmap(osu_text(0, [circle(10 * k, 20 * k, 1000 + 500 * k, hitsound=2) for k in range(9)],
                                       ["0,500,4,2,0,60,1,0", "2500,-200,4,2,0,60,0,0"]))
    generated = parse_beatmap(osu_text(0, [circle(400, 300, t) for t in (1750, 2000, 2250, 3000, 4500)],
                                       ["0,500,4,2,0,60,1,0", "1500,-50,4,2,0,80,0,1"]))
    before = (format_beatmap(reference), format_beatmap(generated))
    merged = merge_partial(reference, generated, 2000, 3000)
    assert (format_beatmap(reference), format_beatmap(generated)) == before

    lines = format_beatmap(merged).split("[HitObjects]\n")[1].splitlines()
    reference_lines = format_beatmap(reference).split("[HitObjects]\n")[1].splitlines()
    kept = [line for line, o in zip(reference_lines, reference.hit_objects) if not 2000 <= o.time <= 3000]
    assert [line for line in lines if line in reference_lines] == kept
    assert [(o.time, o.x) for o in merged.hit_objects if 2000 <= o.time <= 3000] == [(2000, 400), (2250, 400), (3000, 400)]
    # Entering the range takes the generated SV 2 / volume 80 / kiai; leaving it restores SV 0.5 / volume 60.
    points = [(p.time, p.beat_length, p.volume, p.kiai, p.uninherited) for p in merged.timing_points]
    assert points == [(0, 500, 60, False, True), (2000, -50, 80, True, False), (3500, -200, 60, False, False)]
    assert validity_problems(merged) == []

"""Timing lookups: snap divisors, resnapping, beats and measures, slider velocity."""
from __future__ import annotations

import pytest

from tokenizer.encode import beatmap_to_groups
from tokenizer.events import ContextType, EventType
from tokenizer.osu_file import parse_beatmap
from tokenizer.timing import Timing, TimingPoint

from conftest import osu_text

# Beat 480 ms: every tick of 1/1 .. 1/16 used below is a whole ms, so ticks can be checked exactly.
OFFSET, BEAT = 1000, 480


@pytest.fixture
def timing():
    return Timing([TimingPoint(OFFSET, BEAT)])


def green(time, sv):
    return TimingPoint(time, -100.0 / sv, uninherited=False)


def is_tick(time: float, divisor: int, offset: int = OFFSET, beat: int = BEAT) -> bool:
    return round((time - offset) * divisor) % beat == 0


# ---------------------------------------------------------------------------------------------
# snap_divisor

@pytest.mark.parametrize("delta, divisor", [
    (0, 1), (480, 1), (960, 1), (240, 2), (720, 2), (160, 3), (320, 3), (120, 4), (360, 4),
    (80, 6), (400, 6), (60, 8), (180, 8), (40, 12), (200, 12), (90, 16), (30 * 13, 16),
    (-120, 4),  # before the first redline: its ticks extend backwards
    (5 * 480 + 30 * 3, 16),
])
def test_snap_divisor(timing, delta, divisor):
    assert timing.snap_divisor(OFFSET + delta) == divisor


@pytest.mark.parametrize("delta", [7, -7, 483, 480 * 3 + 16, 13])
def test_unsnapped_time_gives_zero(timing, delta):
    assert timing.snap_divisor(OFFSET + delta) == 0


def test_snap_leniency_is_2ms(timing):
    assert timing.snap_divisor(OFFSET + 480 + 2) == 1
    assert timing.snap_divisor(OFFSET + 480 - 2) == 1
    assert timing.snap_divisor(OFFSET + 480 + 2.5) != 1
    assert timing.snap_divisor(OFFSET + 483, leniency=3.5) == 1


def test_snap_max_divisor(timing):
    assert timing.snap_divisor(OFFSET + 40, max_divisor=8) == 0
    assert timing.snap_divisor(OFFSET + 40, max_divisor=12) == 12


def test_snap_uses_governing_redline():
    t = Timing([TimingPoint(0, 500), TimingPoint(1234, 400), green(1300, 2)])
    # 1334 is 1/4 after the second redline; on the first redline it would be near a 1/3 tick
    assert Timing([TimingPoint(0, 500)]).snap_divisor(1334) == 3
    assert t.snap_divisor(1334) == 4
    assert t.snap_divisor(1234) == 1
    assert t.snap_divisor(1000) == 1


# ---------------------------------------------------------------------------------------------
# resnap

def test_resnap_4ms_off_goes_back_to_tick(timing):
    tick = OFFSET + 120  # a 1/4 tick that is not a 1/2 tick
    assert timing.resnap(tick + 4, 4) == tick
    assert timing.resnap(tick - 4, 4) == tick
    assert timing.resnap(OFFSET + 480 + 3, 1) == OFFSET + 480
    assert timing.resnap(OFFSET + 40 - 4, 12) == OFFSET + 40


def test_resnap_quarter_never_lands_on_half_tick(timing):
    half_tick = OFFSET + 240
    for delta in range(-10, 11):
        result = timing.resnap(half_tick + delta, 4)
        assert result in (OFFSET + 120, OFFSET + 360)
        assert not is_tick(result, 2)
    assert timing.resnap(half_tick + 3, 4) == OFFSET + 360
    assert timing.resnap(half_tick - 3, 4) == OFFSET + 120


def test_resnap_to_the_grid_takes_the_nearest_tick_coarser_ones_included(timing):
    half_tick = OFFSET + 240
    assert timing.resnap(half_tick + 3, 4, exact=False) == half_tick
    assert timing.resnap(OFFSET + 110, 4, exact=False) == OFFSET + 120
    assert timing.resnap(OFFSET + 470, 2, exact=False) == OFFSET + 480  # a whole beat: on the 1/2 grid too
    assert timing.resnap(OFFSET + 470, 2) == OFFSET + 240  # exact: only ticks that are 1/2 and not 1/1


@pytest.mark.parametrize("divisor, coarser", [
    (1, ()), (2, (1,)), (3, (1,)), (4, (1, 2)), (6, (1, 2, 3)), (8, (1, 2, 4)), (12, (1, 2, 3, 4, 6)),
    (16, (1, 2, 4, 8)), (5, (1,)), (7, (1,)),
])
def test_resnap_lands_on_exact_divisor(divisor, coarser):
    beat = 1680  # divisible by 1..8, 12, 16
    timing = Timing([TimingPoint(0, beat)])
    step = beat / divisor
    for time in range(-300, 4000, 7):
        result = timing.resnap(time, divisor)
        assert result == round(result)
        assert is_tick(result, divisor, 0, beat), (time, result)
        assert not any(is_tick(result, c, 0, beat) for c in coarser), (time, result)
        assert abs(result - time) <= 2 * step


def test_resnap_rounds_to_whole_ms():
    timing = Timing([TimingPoint(0, 1000 / 3)])
    assert timing.resnap(335, 1) == 333.0
    assert timing.resnap(664, 1) == 667.0


def test_resnap_divisor_zero_keeps_time(timing):
    assert timing.resnap(1234.5, 0) == 1234.5


def test_resnap_across_redline_change():
    timing = Timing([TimingPoint(0, 500), TimingPoint(1234, 400)])
    # decoded a few ms before the second redline: lands on it, not on the first redline's ticks
    assert timing.resnap(1231, 1) == 1234
    assert timing.resnap(1237, 1) == 1234
    assert timing.resnap(1334 + 3, 4) == 1334
    assert timing.resnap(1001, 1) == 1000


# ---------------------------------------------------------------------------------------------
# beats

def test_beats_single_redline():
    timing = Timing([TimingPoint(0, 500, meter=3)])
    assert list(timing.beats(3000)) == [(0, 0, 3), (500, 1, 3), (1000, 2, 3), (1500, 3, 3), (2000, 4, 3),
                                        (2500, 5, 3), (3000, 6, 3)]


def test_beats_two_redlines_stop_10ms_before_next():
    timing = Timing([TimingPoint(0, 500, meter=3), green(600, 2), TimingPoint(1700, 400, meter=4)])
    assert list(timing.beats(3000)) == [(0, 0, 3), (500, 1, 3), (1000, 2, 3), (1500, 3, 3),
                                        (1700, 0, 4), (2100, 1, 4), (2500, 2, 4), (2900, 3, 4)]
    timing = Timing([TimingPoint(0, 500), TimingPoint(1505, 400)])
    assert [t for t, _, _ in timing.beats(1600)] == [0, 500, 1000, 1505]  # 1500 is within 10 ms of the next redline


def test_beats_clamp_meter_and_beat_length():
    timing = Timing([TimingPoint(0, 1, meter=0)])  # beat length clamps to 6 ms, meter to 1
    assert list(timing.beats(18)) == [(0, 0, 1), (6, 1, 1), (12, 2, 1), (18, 3, 1)]


def test_timing_stream_marks_measures_by_meter(v29_config):
    text = osu_text(0, ["256,192,0,1,0,0:0:0:0:", "256,192,4000,1,0,0:0:0:0:"],
                    ["0,500,3,2,0,60,1,0", "2000,250,4,2,0,60,1,0"])
    groups = beatmap_to_groups(parse_beatmap(text), v29_config)[ContextType.TIMING]
    T = EventType
    assert [(g.type, g.time) for g in groups] == [
        (T.TIMING_POINT, 0), (T.BEAT, 500), (T.BEAT, 1000), (T.MEASURE, 1500),
        (T.TIMING_POINT, 2000), (T.BEAT, 2250), (T.BEAT, 2500), (T.BEAT, 2750), (T.MEASURE, 3000),
        (T.BEAT, 3250), (T.BEAT, 3500), (T.BEAT, 3750), (T.MEASURE, 4000),
    ]


def test_meter_zero_means_four_four(v29_config):
    text = osu_text(0, ["256,192,0,1,0,0:0:0:0:", "256,192,4000,1,0,0:0:0:0:"], ["0,500,0,2,0,60,1,0"])
    groups = beatmap_to_groups(parse_beatmap(text), v29_config)[ContextType.TIMING]
    measures = [g.time for g in groups if g.type in (EventType.MEASURE, EventType.TIMING_POINT)]
    assert measures == [0, 2000, 4000]


# ---------------------------------------------------------------------------------------------
# slider velocity and beat length

def test_slider_velocity_respects_redline_resets():
    timing = Timing([TimingPoint(0, 500), green(1000, 2), TimingPoint(2000, 400), green(3000, 0.5)])
    assert timing.slider_velocity_at(500) == 1.0
    assert timing.slider_velocity_at(1000) == pytest.approx(2.0)
    assert timing.slider_velocity_at(1999) == pytest.approx(2.0)
    assert timing.slider_velocity_at(2000) == 1.0  # the redline resets SV
    assert timing.slider_velocity_at(2999) == 1.0
    assert timing.slider_velocity_at(3000) == pytest.approx(0.5)
    assert timing.slider_velocity_at(9999) == pytest.approx(0.5)


def test_greenline_after_redline_at_same_time_applies():
    timing = Timing([TimingPoint(0, 500), TimingPoint(2000, 400), green(2000, 1.5)])
    assert timing.slider_velocity_at(2000) == pytest.approx(1.5)
    assert timing.slider_velocity_at(2500) == pytest.approx(1.5)


def test_slider_velocity_is_clamped():
    assert TimingPoint(0, -1, uninherited=False).slider_velocity == 10.0
    assert TimingPoint(0, -10000, uninherited=False).slider_velocity == 0.1
    assert TimingPoint(0, float("nan"), uninherited=False).slider_velocity == 1.0
    assert TimingPoint(0, 500).slider_velocity == 1.0


def test_beat_length_clamped_and_default():
    assert Timing([TimingPoint(0, 1)]).beat_length_at(100) == 6.0
    assert Timing([TimingPoint(0, 100000)]).beat_length_at(100) == 60000.0
    assert Timing([green(0, 2)]).beat_length_at(100) == 1000.0  # no redline: 60 BPM
    timing = Timing([TimingPoint(1000, 500), TimingPoint(3000, 300)])
    assert timing.beat_length_at(0) == 500.0  # before the first redline: the first redline
    assert timing.beat_length_at(2999) == 500.0
    assert timing.beat_length_at(3000) == 300.0


def test_timing_points_sorted_and_point_at():
    timing = Timing([TimingPoint(2000, 400), TimingPoint(0, 500), green(1000, 2)])
    assert [p.time for p in timing.points] == [0, 1000, 2000]
    assert timing.point_at(-50).time == 0
    assert timing.point_at(1500).time == 1000
    assert timing.redline_at(1500).time == 0


def test_median_beat_length():
    timing = Timing([TimingPoint(0, 500), TimingPoint(10000, 400), TimingPoint(11000, 300)])
    assert timing.median_beat_length(12000) == 500.0
    assert timing.median_beat_length(40000) == 300.0

"""Timing from the audio alone (postprocess.tempo); how inference chooses its redlines is in test_inference."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import click_track, clicks_at
from postprocess.rhythm import SongOnsets
from postprocess.tempo import (KICK_BAND_HZ, OnsetEnvelope, _phased_like, beat_support, estimate_redline, follow_tempo,
                               start_bars)
from tokenizer.timing import Timing, TimingPoint

SR = 16000
# The latency is calibrated on music, whose onsets take a while to rise; a click's onset strength peaks
# earlier (the 64 ms FFT hears it coming), so on click tracks the offset reads up to 35 ms early.
CLICKS_READ_EARLY = 35


def estimate(audio: np.ndarray, **limits) -> TimingPoint | None:
    """The audio tempo as inference estimates it: the whole band's BPM, the phase band's offset."""
    song = SongOnsets.of(audio, SR)
    return estimate_redline(song.whole, song.phase, **limits)


def signed_phase(time: float, expected: float, beat: float) -> float:
    return (time - expected + beat / 2) % beat - beat / 2


@pytest.mark.parametrize("bpm, offset_ms", [(150.0, 300.0), (174.5, 120.0), (200.0, 40.0), (128.0, 610.0)])
def test_a_click_track_gives_its_bpm_and_offset(bpm, offset_ms):
    redline = estimate(click_track(30.0, bpm, SR, offset_ms))
    beat = 60000 / bpm
    assert 60000 / redline.beat_length == pytest.approx(bpm, abs=1e-6)  # rounded to the BPM it really is
    assert -35 <= signed_phase(redline.time, offset_ms, beat) <= 0  # see CLICKS_READ_EARLY
    assert 0 <= redline.time < beat


def test_a_band_swaying_around_a_whole_bpm_gets_that_bpm():
    # Clicks at 150 BPM that sway 15 ms early and late over a minute fold a hair sharper at 150.03 BPM, whose
    # beats drift 10 ms from the song's over three minutes; a whole BPM nearly as sharp wins, as a mapper's would.
    beats = np.arange(200.0, 120000.0, 400.0)
    audio = clicks_at(beats + 15 * np.sin(2 * np.pi * beats / 60000), 120.0, SR)
    assert 60000 / estimate(audio).beat_length == 150.0


def test_short_or_silent_audio_gives_no_redline():
    assert estimate(click_track(3.0, 150.0, SR)) is None
    assert estimate(np.zeros(10 * SR, dtype=np.float32)) is None


def test_the_bpm_range_picks_the_metrical_level():
    # Clicks at 240 BPM are also every other beat of 120 BPM: the range decides which the map gets.
    audio = click_track(30.0, 240.0, SR, 100.0)
    assert 60000 / estimate(audio, min_bpm=200).beat_length == pytest.approx(240)
    assert 60000 / estimate(audio, max_bpm=200).beat_length == pytest.approx(120)


def with_kicks(audio: np.ndarray, times_ms) -> np.ndarray:
    """`audio` plus a 60 Hz thump (a kick drum) at each of the times."""
    kick = (np.sin(2 * np.pi * 60 * np.arange(1600) / SR) * np.exp(-np.arange(1600) / 400)).astype(np.float32)
    for time in times_ms:
        i = int(time * SR / 1000)
        audio[i:i + len(kick)] += kick[:len(audio) - i]
    return audio


def test_the_offset_follows_the_phase_band_not_hats_off_the_beat():
    # 5 kHz clicks (hi-hats, above the phase band) 100 ms ahead of every 1 kHz click: folded over the whole
    # band they win the beat (130 ms early); the 200-2000 Hz band hears only the 1 kHz clicks.
    audio = click_track(30.0, 150.0, SR, 300.0) + clicks_at(np.arange(200.0, 30000.0, 400.0), 30.0, SR, hz=5000.0)
    song = SongOnsets.of(audio, SR)
    assert -35 <= signed_phase(estimate_redline(song.whole, song.phase).time, 300.0, 400.0) <= 0  # as the clicks alone
    assert signed_phase(estimate_redline(song.whole, song.whole).time, 300.0, 400.0) < -100


def test_a_song_with_nothing_in_the_phase_band_takes_its_offset_from_the_whole_band():
    onsets = OnsetEnvelope.of(click_track(30.0, 150.0, SR, 300.0), SR)
    silent_band = OnsetEnvelope(onsets.times, np.zeros_like(onsets.values))
    assert estimate_redline(onsets, silent_band) == estimate_redline(onsets, onsets)


@pytest.mark.parametrize("first_kick, bar_starts", [(1250.0, 1250.0), (250.0, 250.0), (None, 250.0)])
def test_bars_start_on_the_kick_unless_the_first_beat_has_it(first_kick, bar_starts):
    audio = click_track(30.0, 120.0, SR, 250.0)  # a click on every beat from 250 ms
    if first_kick is not None:
        audio = with_kicks(audio, np.arange(first_kick, 30000.0, 2000.0))  # and a kick on one beat of each four
    kick = OnsetEnvelope.of(audio, SR, [KICK_BAND_HZ])
    assert start_bars(TimingPoint(250.0, 500.0), kick) == TimingPoint(bar_starts, 500.0)


def test_beat_support_scores_the_right_grid_above_wrong_ones():
    onsets = OnsetEnvelope.of(click_track(20.0, 150.0, SR, 300.0), SR)
    offset = estimate_redline(onsets, onsets).time
    right = beat_support(onsets, [TimingPoint(offset, 400.0)])
    assert right > 5  # a tenth of the frames lie within 20 ms of a beat and hold nearly all the onset strength
    assert beat_support(onsets, [TimingPoint(offset + 200, 400.0)]) < 1  # half a beat off: between the clicks
    assert beat_support(onsets, [TimingPoint(offset, 410.0)]) < right / 2  # drifts off within a few beats
    two = [TimingPoint(offset, 400.0), TimingPoint(offset + 10000, 400.0)]
    assert beat_support(onsets, two) == pytest.approx(right, rel=0.05)
    assert beat_support(onsets, []) == 0.0


def test_peak_near_is_high_on_the_clicks_and_zero_between_them_and_outside_the_song():
    onsets = OnsetEnvelope.of(click_track(10.0, 120.0, SR, 250.0), SR)
    clicks, between = 250.0 + 500 * np.arange(1, 18), 500 * np.arange(1, 18)
    on, off = onsets.peak_near(clicks), onsets.peak_near(between)
    assert on.min() > 10 * max(off.max(), 1e-9)
    assert onsets.peak_near(np.array([-100.0, 20000.0])).tolist() == [0.0, 0.0]


def test_follow_tempo_adds_a_redline_on_the_downbeat_where_the_song_speeds_up():
    # 150 BPM for 72 beats, then 156 BPM: on the old grid every beat after the change lands 16 ms earlier.
    clicks = np.concatenate([300 + 400 * np.arange(72), 300 + 400 * 72 + 60000 / 156 * np.arange(75)])
    redline = TimingPoint(300.0, 400.0)
    followed = follow_tempo(OnsetEnvelope.of(clicks_at(clicks, 60.0), SR), [redline], 60000.0)
    assert len(followed) == 2 and followed[0] == redline
    new = followed[1]
    assert 60000 / new.beat_length == pytest.approx(156, abs=0.1)
    # it starts a bar: on a click whose number is a multiple of four, at the change
    number = int(np.argmin(np.abs(clicks - new.time)))
    assert number == 72 and abs(clicks[number] - new.time) <= 5
    later = clicks[90:]
    beats = Timing(followed).ticks(1, later[0] - 200, later[-1] + 200)
    assert np.abs(later[:, None] - beats[None, :]).min(axis=1).max() <= 5


@pytest.mark.parametrize("error_ms", [-12.0, 9.0])
def test_a_new_redline_is_phased_like_the_old_one(error_ms):
    # Fitted to tracked beats, a new redline can sit several ms off its section's beats (13 ms on a val song);
    # it moves onto them, as its section's onset strength peaks where the old section's does against its beats.
    clicks = np.concatenate([300 + 400 * np.arange(72), 300 + 400 * 72 + 60000 / 156 * np.arange(75)])
    onsets = OnsetEnvelope.of(clicks_at(clicks, 60.0), SR)
    redline, change = TimingPoint(300.0, 400.0), clicks[72]
    off = TimingPoint(change + error_ms, 60000 / 156)
    [phased] = _phased_like(onsets, redline, [off], 60000.0)
    assert abs(phased.time - change) <= 2 and phased.beat_length == off.beat_length
    # too few beats to fold, 4 in the new section or in the old one, leave it where it is
    assert _phased_like(onsets, redline, [off], off.time + 4 * off.beat_length) == [off]
    assert _phased_like(onsets, TimingPoint(change - 1600, 400.0), [off], 60000.0) == [off]


def test_follow_tempo_keeps_the_redlines_of_a_song_that_keeps_its_tempo():
    onsets = OnsetEnvelope.of(click_track(60.0, 150.0, SR, 300.0), SR)
    two = [TimingPoint(300.0, 400.0), TimingPoint(30300.0, 400.0, meter=3)]
    assert follow_tempo(onsets, two[:1], 60000.0) == two[:1]
    assert follow_tempo(onsets, two, 60000.0) == two
    silent = OnsetEnvelope.of(np.zeros(60 * SR, dtype=np.float32), SR)
    assert follow_tempo(silent, two[:1], 60000.0) == two[:1]

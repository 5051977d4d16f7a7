"""The onset prior: the audio's onset strength added to the logits of each generated object's time."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from osuT5.logits import TokenKinds, onset_prior
from osuT5.onset_prior import OnsetPrior
from postprocess.tempo import PHASE_LATENCY_MS, OnsetEnvelope
from tokenizer.events import Event, EventType

from conftest import click_track

T = EventType
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def envelope() -> OnsetEnvelope:
    """A click on every beat at 120 BPM from 1 s."""
    return OnsetEnvelope.of(click_track(12.0, bpm=120.0, sample_rate=SAMPLE_RATE, offset_ms=1000.0), SAMPLE_RATE)


@pytest.fixture(scope="module")
def clicks(envelope) -> OnsetPrior:
    return OnsetPrior.of(envelope, weight=2.0)


def test_the_bias_peaks_at_full_weight_where_each_click_peaks_and_is_zero_between(envelope, clicks):
    """Music's onset strength peaks PHASE_LATENCY_MS after the time a mapper writes (median over the
    train songs), so the bias on time value v (500 + 10 v ms here) reads the strength that much later."""
    bias = clicks.window_bias(start_ms=500.0, steps=800).numpy()
    assert bias.max() == pytest.approx(2.0)
    for click_ms in np.arange(1000.0, 8500.0, 500.0):
        near = (envelope.times > click_ms - 100) & (envelope.times < click_ms + 100)
        peak_ms = envelope.times[near][envelope.values[near].argmax()]
        v = int((peak_ms - PHASE_LATENCY_MS - 500.0) // 10)
        assert bias[v] == pytest.approx(2.0), click_ms
        assert bias[v + 15:v + 35].max() == pytest.approx(0.0, abs=1e-6)  # silence between clicks


def test_windows_are_read_at_their_own_start(clicks):
    whole = clicks.window_bias(start_ms=0.0, steps=800)
    later = clicks.window_bias(start_ms=2000.0, steps=600)
    assert torch.allclose(later, whole[200:800])


def test_a_silent_song_gives_no_bias():
    silent = OnsetPrior.of(OnsetEnvelope.of(np.zeros(5 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE), weight=3.0)
    assert torch.count_nonzero(silent.window_bias(0.0, 300)) == 0


def test_the_bias_is_added_to_an_objects_time_only(tokenizer):
    kinds = TokenKinds(tokenizer)
    logits = torch.zeros(tokenizer.vocab_size_out)
    bias = torch.arange(kinds.time_end - kinds.time_start, dtype=torch.float32) / 100
    circle = tokenizer.encode(Event(T.CIRCLE))
    shifted = onset_prior(logits, kinds, [circle], bias)
    assert torch.equal(shifted[kinds.time_start:kinds.time_end], bias)
    assert torch.equal(shifted[:kinds.time_start], logits[:kinds.time_start])
    beat = tokenizer.encode(Event(T.BEAT))
    assert torch.equal(onset_prior(logits, kinds, [beat], bias), logits)  # a beat marker's time is the timing pass's
    assert torch.equal(onset_prior(logits, kinds, [circle], None), logits)

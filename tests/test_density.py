"""Density control: human density at a star rating, the controller's minimum gap, and the spacing rule it drives."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers.modeling_outputs import BaseModelOutput

from osuT5.density import DensityControl, from_stars, object_times
from osuT5.generate import WindowRules, decode_window
from osuT5.logits import SamplingConfig, Spacing, TokenKinds, spacing
from tokenizer.events import Event, EventType, Group
from tokenizer.vocabulary import EOS

from test_generate import Scripted

T = EventType
FITS = OmegaConf.load(Path(__file__).parents[1] / "configs" / "inference_v29.yaml").density_fit


@pytest.mark.parametrize("mode, stars, low, high", [
    (0, 1.5, 0.8, 1.6),    # human osu! maps on the train split: median 0.99 objects/s at 1-2*, 4.44 at 5-6*
    (0, 5.5, 3.3, 5.5),
    (3, 1.5, 2.5, 4.5),    # mania: 3.70 at 1-2*, 13.13 at 4-5*
    (3, 4.5, 10.0, 16.0),
])
def test_the_target_is_the_density_of_human_maps_at_that_star_rating(mode, stars, low, high):
    assert low <= from_stars(stars, tuple(FITS[mode])) <= high


def test_the_minimum_gap_starts_at_its_share_of_the_mean_gap_and_follows_the_density():
    control = DensityControl(target=2.0, share=0.5)
    assert control.min_gap_ms == pytest.approx(250.0)
    dense = [k * 100.0 for k in range(80)]  # 10 objects/s over the last 8 s
    control.update(dense, 8000.0)
    assert control.log_scale == pytest.approx(0.1 * math.log(80.5 / 16.5))
    assert control.min_gap_ms > 250.0
    sparse = DensityControl(target=2.0, share=0.5)
    sparse.update([k * 2000.0 for k in range(5)], 8000.0)  # 0.5 objects/s
    assert sparse.min_gap_ms < 250.0


def test_with_a_beat_the_gap_is_the_longest_snap_division_that_fits_less_the_slack():
    control = DensityControl(target=2.0, share=0.5, beat_ms=400.0)  # 250 ms: 1/2 beat (200) fits, 1/1 does not
    assert control.min_gap_ms == pytest.approx(200.0 - 15.0)
    assert DensityControl(target=0.5, share=0.5, beat_ms=400.0).min_gap_ms == pytest.approx(800.0 - 15.0)  # 1000: 2 beats
    assert DensityControl(target=100.0, share=0.5, beat_ms=400.0).min_gap_ms == pytest.approx(5.0)  # under 1/8 beat: as is


def test_the_gap_stays_within_its_bounds_and_waits_for_the_first_object():
    control = DensityControl(target=2.0, share=0.5)
    control.update([], 30000.0)
    assert control.log_scale == 0.0  # nothing written yet: no density to measure
    for _ in range(200):
        control.update([k * 10.0 for k in range(800)], 8000.0)
    assert control.min_gap_ms == pytest.approx(4 * 250.0)
    for _ in range(400):
        control.update([0.0], 8000.0)
    assert control.min_gap_ms == pytest.approx(250.0 / 4)


def test_density_errors_within_the_tolerance_are_left_alone():
    control = DensityControl(target=2.0, share=0.5, tolerance=0.3)
    control.update([k * 400.0 for k in range(20)], 8000.0)  # 2.5 objects/s: ln(20.5 / 16.5) = 0.22 < 0.3
    assert control.log_scale == 0.0
    control.update([k * 250.0 for k in range(32)], 8000.0)  # 4 objects/s: ln(32.5 / 16.5) = 0.68
    assert control.log_scale == pytest.approx(0.1 * (math.log(32.5 / 16.5) - 0.3))


def test_a_silent_intro_does_not_count_as_a_sparse_map():
    control = DensityControl(target=2.0, share=0.5)
    control.update([20000.0 + k * 500.0 for k in range(16)], 28000.0)  # 2 objects/s since the first, at 20 s
    assert abs(control.log_scale) < 0.01


def test_only_object_starts_count():
    groups = [Group(T.CIRCLE, 100.0), Group(T.SLIDER_HEAD, 50.0), Group(T.BEZIER_ANCHOR, 50.0), Group(T.SLIDER_END, 300.0),
              Group(T.HOLD_NOTE, 400.0), Group(T.HOLD_NOTE_END, 600.0), Group(T.BEAT, 0.0), Group(T.SPINNER, 700.0)]
    assert object_times(groups) == [50.0, 100.0, 400.0, 700.0]


def test_spacing_rules_out_times_closer_than_the_gap_after_an_object_but_keeps_chords(tokenizer):
    kinds = TokenKinds(tokenizer)
    circle = tokenizer.encode(Event(T.CIRCLE))
    logits = torch.zeros(tokenizer.vocab_size_out)
    spaced = spacing(logits, kinds, [circle], Spacing(min_gap=30, last_object=100))
    times = spaced[kinds.time_start:kinds.time_end]
    assert bool(torch.isinf(times[101:130]).all())
    assert bool(torch.isfinite(times[:101]).all()) and bool(torch.isfinite(times[130:]).all())  # 100: a chord
    assert torch.equal(spaced[:kinds.time_start], logits[:kinds.time_start])
    beat = tokenizer.encode(Event(T.BEAT))
    assert torch.equal(spacing(logits, kinds, [beat], Spacing(min_gap=30, last_object=100)), logits)  # not an object
    assert torch.equal(spacing(logits, kinds, [circle], Spacing(min_gap=30)), logits)  # no object before
    only_near = torch.full_like(logits, float("-inf"))
    only_near[kinds.time_start + 110] = 0.0
    assert torch.equal(spacing(only_near, kinds, [circle], Spacing(min_gap=30, last_object=100)), only_near)


def test_the_decode_loop_holds_objects_apart_from_the_prompt_and_from_each_other(tokenizer):
    enc = tokenizer.encode
    circle, time = enc(Event(T.CIRCLE)), lambda v: enc(Event(T.TIME_SHIFT, v))
    script = [[circle], [time(105), time(140)], [circle], [time(150), time(170)], [EOS]]
    rules = WindowRules(frozenset({EOS}), max_new_tokens=20)
    states = BaseModelOutput(last_hidden_state=torch.zeros(1, 4, 8))
    new = decode_window(Scripted(tokenizer.vocab_size_out, script), states, [[5]], TokenKinds(tokenizer), rules,
                        SamplingConfig(do_sample=False), None, last_time=100, spacing_rule=Spacing(min_gap=30, last_object=100))
    assert new == [circle, time(140), circle, time(170)]

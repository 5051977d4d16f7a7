"""Generation: window scheduling, the decode loop's stopping rules, every logits processor, guidance."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from osuT5 import generate as generate_module
from osuT5.generate import ContextPlan, Generator, WindowRules, decode_window, plan_windows
from osuT5.logits import (NEG_INF, SamplingConfig, TokenKinds, choose, conditional_temperature, grammar, guidance,
                          lookback_bias, monotonic_time, next_token, nucleus)
from osuT5.model import Mapperatorinator, model_config
from osuT5.sequence import BeatmapMetadata
from tokenizer.events import ContextType, Event, EventType
from tokenizer.vocabulary import EOS

from conftest import click_track

T = EventType
GREEDY = SamplingConfig(do_sample=False)
WINDOW = 1023 * 128  # samples in one v29-sized window (8.184 s at 16 kHz)


# -- windows --------------------------------------------------------------------------------------
def test_windows_overlap_by_ninety_percent_and_their_regions_tile_the_song():
    song = 30 * 16000
    windows = plan_windows(song, WINDOW, 16000)
    stride = int(WINDOW * 0.1)
    assert [w.start_sample for w in windows] == [k * stride for k in range(len(windows))]
    assert windows[0].first and windows[-1].last and not any(w.last for w in windows[:-1])
    window_ms = WINDOW / 16
    assert windows[0].region_start_ms == 0 and windows[0].region_end_ms == pytest.approx(0.6 * window_ms)
    assert windows[1].region_start_ms == pytest.approx(windows[1].start_ms + 0.5 * window_ms)
    for a, b in zip(windows, windows[1:]):  # each region starts where the one before ended (within a sample)
        assert abs(b.region_start_ms - a.region_end_ms) < 0.1
    assert windows[-1].region_end_ms == pytest.approx(windows[-1].start_ms + window_ms)
    assert windows[-1].region_end_ms >= 30000 > windows[-2].region_end_ms


def test_short_song_gets_one_window_and_a_range_drops_the_windows_outside_it():
    assert len(plan_windows(16000, WINDOW, 16000)) == 1
    every = plan_windows(60 * 16000, WINDOW, 16000)
    ranged = plan_windows(60 * 16000, WINDOW, 16000, start_ms=20000, end_ms=30000)
    assert 0 < len(ranged) < len(every)
    assert all(w.region_end_ms > 20000 and w.region_start_ms <= 30000 for w in ranged)
    assert ranged[0].region_start_ms <= 20000 and ranged[-1].region_end_ms >= 30000


def test_parallel_windows_are_a_window_apart_and_shifted():
    windows = plan_windows(40 * 16000, WINDOW, 16000, parallel=True, shift_samples=5000)
    assert windows[0].start_sample == 5000 - WINDOW
    assert all(b.start_sample - a.start_sample == WINDOW for a, b in zip(windows, windows[1:]))
    assert all(w.region_start_ms == w.start_ms and w.region_end_ms == pytest.approx(w.start_ms + WINDOW / 16) for w in windows)
    assert windows[-1].region_end_ms >= 40000


# -- a scripted model: exact control over the logits of each step ----------------------------------
class Scripted(torch.nn.Module):
    """Step i ranks the tokens of script[i] first (10, 9, ...); rows of a batch can have their own scripts."""

    def __init__(self, vocab: int, *scripts: list[list[int]]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.scripts, self.calls = vocab, scripts, []

    def new_cache(self, encoder_states, capacity):
        return None

    def decode(self, ids, positions, valid, cache):
        step = len(self.calls)
        self.calls.append(ids)
        logits = torch.zeros(ids.shape[0], self.vocab)
        for row in range(ids.shape[0]):
            script = self.scripts[min(row, len(self.scripts) - 1)]
            for rank, token in enumerate(script[min(step, len(script) - 1)]):
                logits[row, token] = 10.0 - rank
        return logits


@pytest.fixture(scope="module")
def ids(tokenizer):
    enc = tokenizer.encode
    return SimpleNamespace(
        circle=enc(Event(T.CIRCLE)), beat=enc(Event(T.BEAT)), time=lambda v: enc(Event(T.TIME_SHIFT, v)),
        snap=lambda v: enc(Event(T.SNAPPING, v)), hold=enc(Event(T.HOLD_NOTE)), column=lambda v: enc(Event(T.COLUMN, v)),
        speed=lambda v: enc(Event(T.SCROLL_SPEED, v)), hitsound=lambda v: enc(Event(T.HITSOUND, v)),
        map_eos=tokenizer.context_eos["map"], map_sos=tokenizer.context_sos["map"],
    )


def decode(tokenizer, script, rules=None, sampling=GREEDY, last_time=None, prompts=([5],), model=None):
    model = model or Scripted(tokenizer.vocab_size_out, script)
    rules = rules or WindowRules(frozenset({EOS}), max_new_tokens=20)
    states = BaseModelOutput(last_hidden_state=torch.zeros(1, 4, 8))
    return decode_window(model, states, [list(p) for p in prompts], TokenKinds(tokenizer), rules, sampling, None, last_time)


def test_a_time_in_the_lookahead_ends_the_window_and_drops_its_type_token(tokenizer, ids):
    rules = WindowRules(frozenset({EOS}), lookahead_step=490, max_new_tokens=20)
    script = [[ids.circle], [ids.time(100)], [ids.circle], [ids.time(500)], [ids.circle]]
    assert decode(tokenizer, script, rules) == [ids.circle, ids.time(100)]


def test_the_last_window_may_use_its_lookahead(tokenizer, ids):
    rules = WindowRules(frozenset({EOS}), lookahead_step=None, max_new_tokens=4)
    script = [[ids.circle], [ids.time(100)], [ids.circle], [ids.time(700)]]
    assert decode(tokenizer, script, rules) == [ids.circle, ids.time(100), ids.circle, ids.time(700)]


def test_a_time_in_the_lookback_moves_to_time_zero_and_ends_the_window(tokenizer, ids):
    rules = WindowRules(frozenset({EOS}), lookback_steps=409, max_new_tokens=20)
    # The model prefers 1000 ms (in the lookback) over 4500 ms: that mass becomes "stop", so nothing is written.
    assert decode(tokenizer, [[ids.circle], [ids.time(100), ids.time(450)]], rules) == []
    # Past the lookback it writes normally.
    assert decode(tokenizer, [[ids.circle], [ids.time(450)], [EOS]], rules) == [ids.circle, ids.time(450)]


def test_an_empty_lookback_removes_its_times_without_ending_the_window(tokenizer, ids):
    rules = WindowRules(frozenset({EOS}), lookback_steps=409, max_new_tokens=20, lookback_stops=False)
    # The same preference for 1000 ms now falls to the best time past the lookback.
    assert decode(tokenizer, [[ids.circle], [ids.time(100), ids.time(450)], [EOS]], rules) == [ids.circle, ids.time(450)]


def test_eos_and_the_context_eos_end_the_window_and_are_not_returned(tokenizer, ids):
    rules = WindowRules(frozenset({EOS, ids.map_eos}), max_new_tokens=20)
    assert decode(tokenizer, [[ids.circle], [ids.time(3)], [ids.map_eos], [ids.circle]], rules) == [ids.circle, ids.time(3)]
    assert decode(tokenizer, [[ids.circle], [ids.time(3)], [EOS]], rules) == [ids.circle, ids.time(3)]


def test_a_type_token_cut_off_by_the_token_limit_is_dropped(tokenizer, ids):
    rules = WindowRules(frozenset({EOS}), max_new_tokens=3)
    assert decode(tokenizer, [[ids.circle], [ids.time(3)], [ids.circle]], rules) == [ids.circle, ids.time(3)]


def test_times_never_go_backwards_even_from_the_prefilled_lookback(tokenizer, ids):
    script = [[ids.circle], [ids.time(30), ids.time(60)], [ids.circle], [ids.time(40), ids.time(70)], [EOS]]
    assert decode(tokenizer, script, last_time=50) == [ids.circle, ids.time(60), ids.circle, ids.time(70)]
    # A new output context starts its times again.
    script = [[ids.circle], [ids.time(60)], [ids.map_sos], [ids.circle], [ids.time(10)], [EOS]]
    assert decode(tokenizer, script) == [ids.circle, ids.time(60), ids.map_sos, ids.circle, ids.time(10)]


# -- processors one by one ------------------------------------------------------------------------------
def test_grammar_keeps_each_context_to_its_own_tokens(tokenizer, ids):
    kinds = TokenKinds(tokenizer)
    logits = torch.zeros(tokenizer.vocab_size_out)
    kept = lambda allowed, history=(): {i for i in range(len(logits)) if grammar(logits, kinds, list(history), allowed)[i] > -1}
    timing = kept(kinds.allowed(tokenizer, ContextType.TIMING, 0))
    assert {ids.beat, ids.time(0), EOS, tokenizer.context_eos["timing"]} <= timing
    assert not {ids.circle, ids.map_eos, ids.map_sos, tokenizer.context_sos["kiai"]} & timing
    mania = kept(kinds.allowed(tokenizer, ContextType.MAP, 3))
    assert {ids.circle, ids.hold, ids.column(2), ids.hitsound(1), ids.map_eos} <= mania
    assert not {ids.beat, tokenizer.encode(Event(T.POS, 10)), tokenizer.encode(Event(T.SLIDER_HEAD))} & mania
    osu = kept(kinds.allowed(tokenizer, ContextType.MAP, 0))
    assert tokenizer.encode(Event(T.POS, 10)) in osu and ids.column(2) not in osu and ids.hold not in osu
    after_type = kept(kinds.allowed(tokenizer, ContextType.MAP, 0), [ids.circle])  # a type token: only its time
    assert after_type == set(range(kinds.time_start, kinds.time_end))


def test_monotonic_time_bans_only_earlier_times(tokenizer):
    kinds = TokenKinds(tokenizer)
    logits = monotonic_time(torch.zeros(tokenizer.vocab_size_out), kinds, 7)
    times = logits[kinds.time_start:kinds.time_end]
    assert bool(torch.isinf(times[:7]).all()) and bool(torch.isfinite(times[7:]).all())
    assert bool(torch.isfinite(logits[:kinds.time_start]).all())
    assert torch.equal(monotonic_time(torch.zeros(5), kinds, None), torch.zeros(5))


def test_conditional_temperature_picks_the_temperature_for_what_comes_next(tokenizer, ids):
    kinds = TokenKinds(tokenizer)
    logits = torch.ones(tokenizer.vocab_size_out)

    def scale(history, mode=0):
        sampling = SamplingConfig(temperature=0.5, timing_temperature=0.1, mania_column_temperature=0.25,
                                  taiko_hit_temperature=2.0, gamemode=mode)
        return float(conditional_temperature(logits, kinds, history, sampling)[0])

    assert scale([ids.beat]) == pytest.approx(10.0)  # a beat's time
    assert scale([ids.hold, ids.time(3), ids.snap(4)], mode=3) == pytest.approx(4.0)  # a mania column
    assert scale([ids.circle, ids.time(3), ids.snap(4)], mode=0) == pytest.approx(2.0)  # osu!: a distance, not a column
    assert scale([ids.circle, ids.time(3), ids.speed(100)], mode=1) == pytest.approx(0.5)  # a taiko hit's sound
    assert scale([ids.circle]) == pytest.approx(2.0)  # anything else
    greedy = conditional_temperature(torch.tensor([0.1, 3.0, 0.2]), kinds, [], SamplingConfig(temperature=0.0))
    assert greedy.argmax() == 1 and bool(torch.isinf(greedy[[0, 2]]).all())


def test_lookback_bias_moves_lookback_mass_to_time_zero_after_a_type_token(tokenizer, ids):
    kinds = TokenKinds(tokenizer)
    logits = torch.randn(tokenizer.vocab_size_out)
    biased = lookback_bias(logits, kinds, [ids.circle], 50)
    start = kinds.time_start
    assert float(biased[start]) == pytest.approx(float(torch.logsumexp(logits[start:start + 50], 0)), abs=1e-5)
    assert bool(torch.isinf(biased[start + 1:start + 50]).all())
    assert float(torch.logsumexp(biased, 0)) == pytest.approx(float(torch.logsumexp(logits, 0)), abs=1e-4)
    assert torch.equal(lookback_bias(logits, kinds, [ids.hitsound(0)], 50), logits)  # not after a type token
    assert torch.equal(lookback_bias(logits, kinds, [ids.circle], 0), logits)  # the first window has no lookback
    masked = lookback_bias(logits, kinds, [ids.circle], 50, stop=False)
    assert torch.isinf(masked[kinds.time_start:kinds.time_start + 50]).all() and torch.equal(masked[:kinds.time_start], logits[:kinds.time_start])


def test_top_k_and_top_p_keep_the_best_tokens():
    logits = torch.log(torch.tensor([0.15, 0.5, 0.05, 0.3]))
    assert nucleus(logits, 2, 1.0).tolist() == [1, 3]
    assert nucleus(logits, 0, 0.7).tolist() == [1, 3]
    assert nucleus(logits, 0, 0.5).tolist() == [1]
    assert nucleus(logits, 0, 1.0).tolist() == [1, 3, 0, 2]
    assert nucleus(logits.masked_fill(torch.tensor([False, True, False, False]), NEG_INF), 0, 0.7).tolist() == [3, 0]


def test_a_nucleus_wider_than_the_head_searched_first_is_found_whole():
    logits = torch.linspace(0.0, -0.5, 200)  # nearly flat and best first: the 0.9 nucleus spans most ids
    for top_k, expected_size in ((0, 175), (100, 89)):  # top-k first: then the nucleus of the 100 best
        expected = torch.arange(expected_size)
        assert torch.equal(nucleus(logits, top_k, 0.9, head=64), expected)
        assert torch.equal(nucleus(logits, top_k, 0.9, head=8), expected)
        assert torch.equal(nucleus(logits, top_k, 0.9, head=200), expected)


def test_sampling_draws_only_from_the_nucleus_in_proportion():
    logits = torch.log(torch.tensor([0.15, 0.5, 0.05, 0.3]))
    sampling, generator = SamplingConfig(top_p=0.7), torch.Generator().manual_seed(0)
    draws = [choose(logits, sampling, generator) for _ in range(2000)]
    assert set(draws) == {1, 3}
    assert draws.count(1) / len(draws) == pytest.approx(0.5 / 0.8, abs=0.04)
    assert choose(logits, SamplingConfig(do_sample=False), generator) == 1


def test_guidance_is_uncond_plus_scale_times_the_difference():
    cond = torch.log_softmax(torch.tensor([2.0, 1.0, 0.0]), 0)
    uncond = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    guided = guidance(torch.stack([cond, uncond]), 3.0)
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond))
    assert guided.argmax() == 0


def test_sampling_follows_the_seed_and_stays_inside_top_p(tokenizer):
    kinds = TokenKinds(tokenizer)
    logits = torch.full((1, tokenizer.vocab_size_out), -30.0)
    logits[0, [100, 101, 102]] = torch.tensor([3.0, 2.9, -1.0])
    sampling = SamplingConfig(temperature=1.0, top_p=0.9)
    draws = [next_token(logits, kinds, [], sampling, None, 0, torch.Generator().manual_seed(s)) for s in range(40)]
    assert set(draws) == {100, 101}
    again = [next_token(logits, kinds, [], sampling, None, 0, torch.Generator().manual_seed(s)) for s in range(40)]
    assert draws == again


# -- guidance batches -------------------------------------------------------------------------------
def test_guidance_puts_the_positive_prompt_in_the_conditional_row(tokenizer, ids):
    # Row 0 (positive) wants a circle, row 1 (negative) wants EOS: guidance must push toward the circle.
    model = Scripted(tokenizer.vocab_size_out, [[ids.circle, EOS], [ids.time(5)], [EOS]], [[EOS, ids.circle], [ids.time(5)], [EOS]])
    out = decode(tokenizer, None, sampling=SamplingConfig(do_sample=False, cfg_scale=3.0), prompts=([5, 6], [5]), model=model)
    assert out == [ids.circle, ids.time(5)]
    assert model.calls[0].shape == (2, 2)  # one batch holds both prompts


@pytest.fixture(scope="module")
def tiny(tokenizer):
    torch.manual_seed(0)
    backbone = dict(d_model=64, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                    encoder_ffn_dim=128, decoder_ffn_dim=128)
    mel = dict(n_fft=1024, n_mels=64, f_min=20.0, f_max=8000.0, mel_scale="htk", mel_norm=None,
               spectrogram_log_scale=True, pad_mode="reflect")
    return Mapperatorinator(model_config(backbone, mel, tokenizer, 256, 3.0, True)).eval()


def test_a_left_padded_guidance_row_decodes_exactly_like_its_prompt_alone(tiny, tokenizer):
    audio = torch.from_numpy(click_track(8.2, 120))[:tiny.config.window_samples]
    states = tiny.encode(audio[None])
    kinds, rules = TokenKinds(tokenizer), WindowRules(frozenset({EOS}), max_new_tokens=12)
    long, short = [3, 4, 200, 201, 202, 1, 5], [3, 4, 1, 5]
    alone = decode_window(tiny, states, [short], kinds, rules, GREEDY)
    # cfg_scale 0 keeps only the unconditional row: the padded, shorter prompt in row 1.
    padded = decode_window(tiny, states, [long, short], kinds, rules, SamplingConfig(do_sample=False, cfg_scale=0.0))
    assert padded == alone and len(alone) == 12


# -- the Generator over a song ----------------------------------------------------------------------
@pytest.mark.parametrize("ends", [True, False])
def test_generator_prefills_lookback_and_writes_each_region_once(tiny, tokenizer, monkeypatch, ends):
    audio = click_track(14.0, 120)
    seen = []
    real = generate_module.decode_window

    def spy(model, states, prompts, kinds, rules, sampling, generator=None, last_time=None, spacing_rule=None, onset_bias=None):
        seen.append((prompts, rules, last_time))
        return real(model, states, prompts, kinds, rules, sampling, generator, last_time, spacing_rule, onset_bias)

    monkeypatch.setattr(generate_module, "decode_window", spy)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, lookback_ends_window=ends)
    gen = Generator(tiny, tokenizer, audio, sampling, seed=1, max_new_tokens=16, progress=False)
    plan = ContextPlan([(ContextType.NONE, [], [])], {}, BeatmapMetadata(mode=0, star_rating=4.0, song_length_ms=14000))
    windows = gen.windows()
    groups = gen.generate_context(ContextType.MAP, windows, plan)
    assert len(seen) == len(windows) and gen.tokens_generated > 0
    times = [g.time for g in groups]
    assert times == sorted(times)
    for (prompts, rules, last_time), w in zip(seen, windows):
        assert rules.lookback_steps == (0 if w.first else int((w.region_start_ms - w.start_ms) / 10))
        assert rules.lookback_stops == (ends and any(w.start_ms <= g.time < w.region_start_ms for g in groups))
        assert rules.lookahead_step == (None if w.last else math.ceil((w.region_end_ms - w.start_ms) / 10))
        earlier = [g for g in groups if w.start_ms <= g.time < w.region_start_ms]
        after_sos = prompts[0][prompts[0].index(tokenizer.context_sos["map"]) + 1:]
        assert sum(token in TokenKinds(tokenizer).group_types for token in after_sos) == len(earlier)
    for g in groups:  # every group was written by the window whose region holds it
        assert any(w.region_start_ms - 10 <= g.time < w.region_end_ms for w in windows)


def test_generator_sends_the_positive_prompt_first_with_guidance(tiny, tokenizer, monkeypatch):
    descriptors = tokenizer.config.descriptors
    seen = []
    monkeypatch.setattr(generate_module, "decode_window", lambda model, states, prompts, *a, **k: seen.append(prompts) or [])
    gen = Generator(tiny, tokenizer, click_track(3.0), SamplingConfig(cfg_scale=2.0), seed=0, progress=False)
    meta = BeatmapMetadata(mode=0, star_rating=4.0, song_length_ms=3000, descriptors=[descriptors[0]])
    negative = BeatmapMetadata(mode=0, star_rating=4.0, song_length_ms=3000, descriptors=[descriptors[1]])
    gen.generate_context(ContextType.MAP, gen.windows(), ContextPlan([(ContextType.NONE, [], [])], {}, meta, negative))
    positive_id = tokenizer.encode(Event(T.DESCRIPTOR, 0))
    negative_id = tokenizer.encode(Event(T.DESCRIPTOR, 1))
    assert seen and all(positive_id in p[0] and negative_id in p[1] and negative_id not in p[0] for p in seen)


def test_super_timing_passes_are_greedy_and_shifted(tiny, tokenizer):
    gen = Generator(tiny, tokenizer, click_track(10.0), SamplingConfig(), seed=0, max_new_tokens=12, progress=False)
    plan = ContextPlan([(ContextType.NONE, [], [])], {}, BeatmapMetadata(song_length_ms=10000))
    first = gen.parallel_markers(2, plan, np.random.default_rng(0))
    second = gen.parallel_markers(2, plan, np.random.default_rng(0))
    assert first == second  # greedy: the same shifts give the same markers
    assert len(first) == 2 and all(t >= -WINDOW / 16 for p in first for t, _ in p)
    assert not gen._encoded  # one-off windows are not kept

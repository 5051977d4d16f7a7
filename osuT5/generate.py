"""Generation with the model: windows over the song, one decode loop, and the per-context passes.

Windows overlap by 90% (reference notes §4.2-4.3): each later window starts with its first half
prefilled from earlier windows (lookback), generates about a tenth of a window, and still hears the
last 40% (lookahead), where any time token ends the window. Each output context (timing, kiai,
map, sv) is generated completely before the next, which sees it as a finished context.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutput

from postprocess.rhythm import SongOnsets
from postprocess.tempo import OnsetEnvelope
from tokenizer.decode import TIME_STEP_MS, events_to_groups
from tokenizer.encode import groups_to_events, window_slice
from tokenizer.events import ContextType, Event, EventType, Group
from tokenizer.vocabulary import EOS, PAD, Tokenizer

from .density import DensityControl, object_times
from .logits import SamplingConfig, Spacing, TokenKinds, next_token
from .model import Mapperatorinator, pad_to_window
from .onset_prior import OnsetPrior
from .sequence import BeatmapMetadata, Context, build_sequence, metadata_events

T = EventType
ENCODE_BATCH = 8


@dataclass(frozen=True)
class Window:
    """One audio window and the part of it whose events it is allowed to write."""
    index: int
    start_sample: int
    start_ms: float
    region_start_ms: float  # events before this come from earlier windows (lookback)
    region_end_ms: float  # events after this are left to later windows (lookahead)
    first: bool
    last: bool


def plan_windows(num_samples: int, window_samples: int, sample_rate: int, lookback: float = 0.5, lookahead: float = 0.4,
                 start_ms: float | None = None, end_ms: float | None = None, parallel: bool = False,
                 shift_samples: int = 0) -> list[Window]:
    """Windows every stride = window × (1 − lookback − lookahead) samples until one reaches the song's end.

    `parallel` gives independent windows a whole window apart (no lookback or lookahead), shifted by
    `shift_samples` (super timing); `start_ms`/`end_ms` drop windows whose region misses the range.
    """
    window_ms = window_samples * 1000 / sample_rate
    if parallel:
        stride, lookback, lookahead = window_samples, 0.0, 0.0
    else:
        stride = max(int(window_samples * (1 - lookback - lookahead)), 1)
    first_start = shift_samples % stride - stride if shift_samples % stride else 0
    count = max(math.ceil((num_samples - first_start - window_samples * (1 - lookahead)) / stride) + 1, 1)
    windows = []
    for k in range(count):
        start = first_start + k * stride
        begin = start * 1000 / sample_rate
        last = k == count - 1
        region = (begin + (lookback * window_ms if k else 0.0), begin + (window_ms if last else (1 - lookahead) * window_ms))
        windows.append(Window(k, start, begin, region[0], region[1], k == 0, last))
    if start_ms is not None or end_ms is not None:
        low, high = start_ms if start_ms is not None else -math.inf, end_ms if end_ms is not None else math.inf
        windows = [w for w in windows if w.region_end_ms > low and w.region_start_ms <= high]
    return windows


@dataclass
class WindowRules:
    """What a window may write (`allowed` ids, None: anything) and when it stops: EOS ids, and time
    values that count as EOS (the reserved lookback and lookahead regions)."""
    eos_ids: frozenset[int]
    allowed: torch.Tensor | None = None
    lookback_steps: int = 0  # time values below this lie in the prefilled lookback (windows after the first)
    lookahead_step: int | None = None  # time values from this on lie in the lookahead (all windows but the last)
    max_new_tokens: int = 512
    lookback_stops: bool = True  # a lookback time ends the window (False when the lookback holds no events)


@torch.no_grad()
def decode_window(model: Mapperatorinator, encoder_outputs: BaseModelOutput, prompts: list[list[int]], kinds: TokenKinds,
                  rules: WindowRules, sampling: SamplingConfig, generator: torch.Generator | None = None,
                  last_time: int | None = None, spacing_rule: Spacing | None = None,
                  onset_bias: torch.Tensor | None = None) -> list[int]:
    """New tokens after the prompt(s), without the stop token; with two prompts (guidance) row 0 is the
    conditional one. A time in a reserved region stops the window and is dropped with its type token.
    `spacing_rule` (osuT5.density) holds objects apart; it tracks the previous object as tokens are written.
    `onset_bias` (osuT5.onset_prior) is added to the logits of every object's time."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts], device=device)
    valid = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in prompts], device=device)
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    states = encoder_outputs.last_hidden_state
    if states.shape[0] != len(prompts):
        states = states.expand(len(prompts), -1, -1)
    cache = model.new_cache(states, width + rules.max_new_tokens)
    one_token = torch.ones(len(prompts), 1, dtype=torch.bool, device=device)
    history = list(prompts[0])
    generated: list[int] = []
    while len(generated) < rules.max_new_tokens:
        logits = model.decode(ids, positions, valid, cache)
        token = next_token(logits, kinds, history, sampling, last_time, rules.lookback_steps, generator,
                           rules.allowed, rules.lookback_stops, spacing_rule, onset_bias)
        if token in rules.eos_ids:
            break
        if kinds.is_time(token):
            value = kinds.time_value(token)
            reserved = value < rules.lookback_steps or (rules.lookahead_step is not None and value >= rules.lookahead_step)
            if reserved:
                if generated and generated[-1] in kinds.group_types:
                    generated.pop()
                break
            last_time = value
        elif token in kinds.context_starts:  # a new context: its times start again from the window start
            last_time = None
        if spacing_rule is not None:
            spacing_rule.follow(history[-1], token, kinds)
        generated.append(token)
        history.append(token)
        ids = torch.full((len(prompts), 1), token, device=device)
        positions = positions[:, -1:] + 1
        valid = one_token
    if generated and generated[-1] in kinds.group_types:  # a type token whose time never came
        generated.pop()
    return generated


@dataclass
class ContextPlan:
    """What one window's prompt holds besides the context being generated."""
    in_contexts: list[tuple[ContextType, list[Group], list]]  # (type, groups, special events) e.g. GD's difficulty
    finished: dict[ContextType, list[Group]]  # earlier output contexts, in template order
    metadata: BeatmapMetadata
    negative: BeatmapMetadata | None = None  # the unconditional prompt for guidance (cfg_scale > 1)


class Generator:
    """A model, a song and its windows: encodes each window once and runs the context passes over them."""

    def __init__(self, model: Mapperatorinator, tokenizer: Tokenizer, audio: np.ndarray, sampling: SamplingConfig,
                 seed: int, lookback: float = 0.5, lookahead: float = 0.4, max_new_tokens: int = 512,
                 autocast: torch.dtype | None = None, progress: bool = True):
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        self.kinds = TokenKinds(tokenizer)
        self.lookback, self.lookahead, self.max_new_tokens = lookback, lookahead, max_new_tokens
        self.window_samples = model.config.window_samples
        self.sample_rate = model.config.sample_rate
        self.window_ms = self.window_samples * 1000 / self.sample_rate
        self.song_ms = len(audio) * 1000 / self.sample_rate
        self.device = next(model.parameters()).device
        self.generator = torch.Generator().manual_seed(seed)
        self.autocast, self.progress = autocast, progress
        self.tgt_seq_len = model.config.tgt_seq_len
        self._encoded: dict[int, torch.Tensor] = {}
        self.tokens_generated = 0

    @cached_property
    def song_onsets(self) -> SongOnsets:
        """The song's onset strength, whole and by band, and loudness: computed once for the audio's own tempo
        and bars, the map pass's onset prior and post-processing's tick scorer."""
        return SongOnsets.of(self.audio.numpy(), self.sample_rate)

    @property
    def onsets(self) -> OnsetEnvelope:
        return self.song_onsets.whole

    def windows(self, start_ms: float | None = None, end_ms: float | None = None) -> list[Window]:
        return plan_windows(len(self.audio), self.window_samples, self.sample_rate, self.lookback, self.lookahead, start_ms, end_ms)

    def _autocast(self, decoding: bool = False):
        """Autocast for encoding, and for decoding off the CPU only: there, batch-1 bf16 matmuls and
        attention run 2-10x slower than fp32 (bench/RESULTS.md), while batched encoding gains 2x."""
        enabled = self.autocast is not None and not (decoding and self.device.type == "cpu")
        return torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=enabled)

    @torch.no_grad()
    def encode(self, windows: list[Window], desc: str = "Encoding audio") -> None:
        """Encoder states for every window not yet encoded, in batches (kept for all later passes)."""
        todo = [w for w in windows if w.start_sample not in self._encoded]
        for first in tqdm(range(0, len(todo), ENCODE_BATCH), desc=desc, disable=not self.progress or not todo, leave=False):
            batch = todo[first:first + ENCODE_BATCH]
            audio = torch.stack([self._window_audio(w) for w in batch]).to(self.device)
            with self._autocast():
                states = self.model.encode(audio).last_hidden_state
            for w, s in zip(batch, states):
                self._encoded[w.start_sample] = s[None]

    def _window_audio(self, w: Window) -> torch.Tensor:
        lo = max(w.start_sample, 0)
        piece = self.audio[lo:w.start_sample + self.window_samples]
        if w.start_sample < 0:  # a shifted first window starts before the song: pad with silence in front
            piece = torch.cat([torch.zeros(-w.start_sample), piece])
        return pad_to_window(piece, self.window_samples)

    def generate_context(self, context: ContextType, windows: list[Window], plan: ContextPlan,
                         prefilled: list[Group] | None = None, sampling: SamplingConfig | None = None,
                         progress: bool | None = None, density: DensityControl | None = None,
                         onsets: OnsetPrior | None = None) -> list[Group]:
        """Every window in order: prompt with the earlier output, decode, keep the new groups of its region.

        `prefilled` groups (a reference map before a partial remap's start) are kept and seen as lookback;
        `density` steers the number of objects per second and `onsets` their times (the map pass).
        """
        sampling = sampling or self.sampling
        show = self.progress if progress is None else progress
        self.encode(windows)
        groups: list[Group] = sorted(prefilled or [], key=lambda g: g.time)
        eos = frozenset({EOS, self.tokenizer.context_eos.get(context.value, EOS)})
        allowed = self.kinds.allowed(self.tokenizer, context, plan.metadata.mode)
        objects = object_times(groups) if density else []
        for w in tqdm(windows, desc=f"Generating {context.value}", disable=not show, unit="window"):
            times = [g.time for g in groups]
            known = window_slice(groups, times, w.start_ms, w.start_ms + self.window_ms)
            prompts = [self._prompt(context, w, plan, plan.metadata, known)]
            if plan.negative is not None and sampling.cfg_scale > 1:
                prompts.append(self._prompt(context, w, plan, plan.negative, known))
            if len(prompts[0]) >= self.tgt_seq_len:
                continue  # no room left to write anything in this window
            rules = WindowRules(
                eos_ids=eos, allowed=allowed,
                lookback_steps=0 if w.first else int((w.region_start_ms - w.start_ms) / 10),
                lookahead_step=None if w.last else math.ceil((w.region_end_ms - w.start_ms) / 10),
                max_new_tokens=min(self.max_new_tokens, self.tgt_seq_len - len(prompts[0])),
                lookback_stops=sampling.lookback_ends_window and any(g.time < w.region_start_ms for g in known),
            )
            last_time = max((int((g.time - w.start_ms) / 10) for g in known), default=None)
            spacing_rule = None
            if density:
                last_object = int((objects[-1] - w.start_ms) // TIME_STEP_MS) if objects else None
                spacing_rule = Spacing(density.min_gap_ms / TIME_STEP_MS, last_object)
            bias = onsets.window_bias(w.start_ms, self.kinds.time_end - self.kinds.time_start) if onsets else None
            with self._autocast(decoding=True):
                new = decode_window(self.model, BaseModelOutput(last_hidden_state=self._encoded[w.start_sample]), prompts,
                                    self.kinds, rules, sampling, self.generator, last_time, spacing_rule, bias)
            self.tokens_generated += len(new)
            fresh = [g for g in events_to_groups(self.tokenizer.decode_many(new), self.tokenizer, w.start_ms)
                     if w.region_start_ms - 10 <= g.time < w.region_end_ms]
            groups += fresh
            groups.sort(key=lambda g: g.time)
            if density:
                objects = sorted(objects + object_times(fresh))  # nearly in order already: a linear merge
                density.update(objects, w.region_end_ms)
        return sorted(groups, key=lambda g: g.time)

    def _prompt(self, context: ContextType, w: Window, plan: ContextPlan, meta: BeatmapMetadata, known: list[Group]) -> list[int]:
        in_contexts, metadata, out_contexts = prompt_parts(self.tokenizer, plan, meta, w.start_ms, w.start_ms + self.window_ms)
        out_contexts.append(Context(context, groups_to_events(known, self.tokenizer, w.start_ms)))
        ids, _ = build_sequence(self.tokenizer, in_contexts, metadata, out_contexts, end=False)
        return ids

    def encoder_states(self, windows: list[Window]) -> torch.Tensor:
        """The encoder states of `windows` stacked (batch, frames, d_model), encoding the ones not yet encoded."""
        self.encode(windows)
        return torch.cat([self._encoded[w.start_sample] for w in windows])

    def parallel_markers(self, passes: int, plan: ContextPlan, rng: np.random.Generator) -> list[list[tuple[float, EventType]]]:
        """Beat markers of `passes` greedy timing passes over independent windows, each pass shifted
        by a random offset within a window, so the passes disagree where the model is unsure (super timing)."""
        greedy = replace(self.sampling, do_sample=False, cfg_scale=1.0)
        results = []
        for _ in tqdm(range(passes), desc="Super timing", disable=not self.progress, unit="pass"):
            shift = int(rng.integers(0, self.window_samples))
            windows = plan_windows(len(self.audio), self.window_samples, self.sample_rate, parallel=True, shift_samples=shift)
            groups = self.generate_context(ContextType.TIMING, windows, plan, sampling=greedy, progress=False)
            for w in windows:  # these windows are used once: free their encoder states
                self._encoded.pop(w.start_sample, None)
            results.append([(g.time, g.type) for g in groups if g.type in (T.BEAT, T.MEASURE, T.TIMING_POINT)])
        return results


def prompt_parts(tokenizer: Tokenizer, plan: ContextPlan, meta: BeatmapMetadata, start: float,
                 end: float) -> tuple[list[Context], list[Event], list[Context]]:
    """A window's in-contexts, metadata tokens and finished out contexts (in `plan.finished` order): every
    prompt starts with these, in generation and when MaiMod teacher-forces a real map."""
    in_contexts = []
    for kind, groups, specials in plan.in_contexts:
        events = groups_to_events(in_window(groups, start, end), tokenizer, start, hitsounds=kind != ContextType.NO_HS)
        in_contexts.append(Context(kind, events if kind != ContextType.NONE else [], specials=list(specials)))
    out_contexts = [Context(kind, groups_to_events(in_window(groups, start, end), tokenizer, start))
                    for kind, groups in plan.finished.items()]
    kiai = [g for g in plan.finished.get(ContextType.KIAI, []) if g.time < start]
    speeds = [g for g in plan.finished.get(ContextType.SV, []) if g.time < start and g.scroll_speed]
    metadata = metadata_events(tokenizer, meta, start, last_kiai=kiai[-1].value if kiai else 0,
                               last_scroll_speed=speeds[-1].scroll_speed if speeds else 1.0)
    return in_contexts, metadata, out_contexts


def in_window(groups: list[Group], start: float, end: float) -> list[Group]:
    """The groups (sorted by time) with start <= time < end, by bisection: this runs per window and pass."""
    key = lambda g: g.time
    return groups[bisect.bisect_left(groups, start, key=key):bisect.bisect_left(groups, end, key=key)]

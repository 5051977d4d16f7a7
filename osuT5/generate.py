"""Generation with the model: windows over the song, one decode loop, and the per-context passes.

Windows overlap by 90% (reference notes §4.2-4.3): each later window starts with its first half
prefilled from earlier windows (lookback), generates about a tenth of a window, and still hears the
last 40% (lookahead), where any time token ends the window. Each output context (timing, kiai,
map, sv) is generated completely before the next, which sees it as a finished context.
"""
from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, replace
import numpy as np
import torch
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutput

from tokenizer.decode import events_to_groups
from tokenizer.encode import groups_to_events, window_slice
from tokenizer.events import ContextType, Event, EventType, Group
from tokenizer.vocabulary import EOS, PAD, Tokenizer

from .logits import SamplingConfig, TokenKinds, next_token
from .model import Mapperatorinator, pad_to_window
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


@dataclass
class WindowJob:
    """One window to decode: its prompt(s) (two with guidance, the conditional one first), its rules and
    the last time already written in it (monotonic time)."""
    prompts: list[list[int]]
    rules: WindowRules
    last_time: int | None = None


class _Decoding:
    """A job's progress: what it has written and whether it goes on."""

    def __init__(self, job: WindowJob):
        self.rules, self.last_time = job.rules, job.last_time
        self.history, self.generated = list(job.prompts[0]), []
        self.active = job.rules.max_new_tokens > 0

    def take(self, token: int, kinds: TokenKinds) -> None:
        """Append `token`, or stop at an end token or a time in a reserved region (dropped with its type token)."""
        rules = self.rules
        if token in rules.eos_ids:
            self.active = False
            return
        if kinds.is_time(token):
            value = kinds.time_value(token)
            if value < rules.lookback_steps or (rules.lookahead_step is not None and value >= rules.lookahead_step):
                if self.generated and self.generated[-1] in kinds.group_types:
                    self.generated.pop()
                self.active = False
                return
            self.last_time = value
        elif token in kinds.context_starts:  # a new context: its times start again from the window start
            self.last_time = None
        self.generated.append(token)
        self.history.append(token)
        self.active = len(self.generated) < rules.max_new_tokens

    def result(self, kinds: TokenKinds) -> list[int]:
        if self.generated and self.generated[-1] in kinds.group_types:  # a type token whose time never came
            self.generated.pop()
        return self.generated


@torch.no_grad()
def decode_windows(model: Mapperatorinator, states: torch.Tensor, jobs: list[WindowJob], kinds: TokenKinds,
                   sampling: SamplingConfig, generator: torch.Generator | None = None) -> list[list[int]]:
    """The new tokens of each job (without its stop token), decoded together as one left-padded batch.

    `states` holds one row of encoder states per job. On a CPU a decoding step is bound by reading the
    weights, so several windows in a batch cost little more than one; a finished job's rows idle
    until the last job ends.
    """
    device = next(model.parameters()).device
    rows = [prompt for job in jobs for prompt in job.prompts]
    first_row = list(itertools.accumulate((len(job.prompts) for job in jobs), initial=0))
    width = max(len(p) for p in rows)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in rows], device=device)
    valid = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in rows], device=device)
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    owner = torch.tensor([j for j, job in enumerate(jobs) for _ in job.prompts], device=device)
    decodings = [_Decoding(job) for job in jobs]
    if any(d.active for d in decodings):
        cache = model.new_cache(states[owner], width + max(job.rules.max_new_tokens for job in jobs))
        one_token = torch.ones(len(rows), 1, dtype=torch.bool, device=device)
    while any(d.active for d in decodings):
        logits = model.decode(ids, positions, valid, cache)
        fed = [PAD] * len(rows)
        for j, d in enumerate(decodings):
            if d.active:
                rules = d.rules
                token = next_token(logits[first_row[j]:first_row[j + 1]], kinds, d.history, sampling, d.last_time,
                                   rules.lookback_steps, generator, rules.allowed, rules.lookback_stops)
                d.take(token, kinds)
                fed[first_row[j]:first_row[j + 1]] = [token] * len(jobs[j].prompts)
        ids = torch.tensor(fed, device=device)[:, None]
        going_on = torch.tensor([d.active for d in decodings], device=device)[owner]
        positions = positions[:, -1:] + going_on[:, None]  # a finished row stays put: no position past the table
        valid = one_token
    return [d.result(kinds) for d in decodings]


def decode_window(model: Mapperatorinator, encoder_outputs: BaseModelOutput, prompts: list[list[int]], kinds: TokenKinds,
                  rules: WindowRules, sampling: SamplingConfig, generator: torch.Generator | None = None,
                  last_time: int | None = None) -> list[int]:
    """One window's new tokens: `decode_windows` with a single job."""
    return decode_windows(model, encoder_outputs.last_hidden_state[:1], [WindowJob(prompts, rules, last_time)], kinds,
                          sampling, generator)[0]


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
                 autocast: torch.dtype | None = None, progress: bool = True, chains: int = 1, chain_warmup: int = 5):
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.chains, self.chain_warmup = chains, chain_warmup
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

    def chain_runs(self, windows: list[Window]) -> list[tuple[list[Window], float]]:
        """`windows` cut into up to `chains` consecutive runs that decode side by side, one batch per step,
        each with at least twice `chain_warmup` windows; and the time from which each run's output is kept.

        A run after the first starts `chain_warmup` windows early with an empty lookback, as after a silence,
        so that its first own window sees a lookback it wrote itself; what it writes before that window's
        region is dropped.
        """
        count = max(1, min(self.chains, len(windows) // max(2 * self.chain_warmup, 1)))
        bounds = [round(k * len(windows) / count) for k in range(count + 1)]
        return [(windows[max(bounds[k] - self.chain_warmup, 0) if k else 0:bounds[k + 1]],
                 windows[bounds[k]].region_start_ms if k else -math.inf) for k in range(count)]

    def generate_context(self, context: ContextType, windows: list[Window], plan: ContextPlan,
                         prefilled: list[Group] | None = None, sampling: SamplingConfig | None = None,
                         progress: bool | None = None) -> list[Group]:
        """Every window in order: prompt with the earlier output, decode, keep the new groups of its region.

        The runs of `chain_runs` advance together, one window each per batch. `prefilled` groups (a
        reference map before a partial remap's start) are kept and seen as lookback.
        """
        sampling = sampling or self.sampling
        show = self.progress if progress is None else progress
        self.encode(windows)
        prefilled = sorted(prefilled or [], key=lambda g: g.time)
        eos = frozenset({EOS, self.tokenizer.context_eos.get(context.value, EOS)})
        allowed = self.kinds.allowed(self.tokenizer, context, plan.metadata.mode)
        runs = self.chain_runs(windows)
        seen = [list(prefilled) for _ in runs]  # what each run's prompts see
        written: list[list[Group]] = [[] for _ in runs]
        bar = tqdm(total=sum(len(run) for run, _ in runs), desc=f"Generating {context.value}", disable=not show, unit="window")
        for step in range(max(len(run) for run, _ in runs)):
            now = [(k, run[step]) for k, (run, _) in enumerate(runs) if step < len(run)]
            jobs = [self._job(context, w, plan, seen[k], sampling, eos, allowed) for k, w in now]
            todo = [item for item, job in zip(now, jobs) if job is not None]
            jobs = [job for job in jobs if job is not None]
            if jobs:
                states = torch.cat([self._encoded[w.start_sample] for _, w in todo])
                with self._autocast(decoding=True):
                    results = decode_windows(self.model, states, jobs, self.kinds, sampling, self.generator)
                for (k, w), new in zip(todo, results):
                    self.tokens_generated += len(new)
                    fresh = [g for g in events_to_groups(self.tokenizer.decode_many(new), self.tokenizer, w.start_ms)
                             if w.region_start_ms - 10 <= g.time < w.region_end_ms]
                    written[k] += fresh
                    seen[k] = sorted(seen[k] + fresh, key=lambda g: g.time)
            bar.update(len(now))
        bar.close()
        groups = list(prefilled)
        for k, (_, keep_from) in enumerate(runs):
            keep_to = runs[k + 1][1] if k + 1 < len(runs) else math.inf
            groups += [g for g in written[k] if keep_from <= g.time < keep_to]
        return sorted(groups, key=lambda g: g.time)

    def _job(self, context: ContextType, w: Window, plan: ContextPlan, groups: list[Group], sampling: SamplingConfig,
             eos: frozenset[int], allowed: torch.Tensor) -> WindowJob | None:
        """Window `w`'s prompts and rules given the groups written so far (sorted); None when its prompt
        leaves no room to write anything."""
        known = window_slice(groups, [g.time for g in groups], w.start_ms, w.start_ms + self.window_ms)
        prompts = [self._prompt(context, w, plan, plan.metadata, known)]
        if plan.negative is not None and sampling.cfg_scale > 1:
            prompts.append(self._prompt(context, w, plan, plan.negative, known))
        if len(prompts[0]) >= self.tgt_seq_len:
            return None
        rules = WindowRules(
            eos_ids=eos, allowed=allowed,
            lookback_steps=0 if w.first else int((w.region_start_ms - w.start_ms) / 10),
            lookahead_step=None if w.last else math.ceil((w.region_end_ms - w.start_ms) / 10),
            max_new_tokens=min(self.max_new_tokens, self.tgt_seq_len - len(prompts[0])),
            lookback_stops=sampling.lookback_ends_window and any(g.time < w.region_start_ms for g in known),
        )
        return WindowJob(prompts, rules, max((int((g.time - w.start_ms) / 10) for g in known), default=None))

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

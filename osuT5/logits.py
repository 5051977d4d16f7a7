"""Logits processors for generation (reference notes §4.4), applied in this order to one row of logits:

guidance → monotonic time → conditional temperature → lookback bias → spacing → onset prior → top-k / top-p → choose.

Each works on a 1-D tensor over the output vocabulary and returns a new one; `TokenKinds` knows
which ids are times and which are the type tokens the rules look at.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tokenizer.events import ANCHOR_TYPES, GROUP_TYPES, ContextType, EventType
from tokenizer.vocabulary import EOS, Tokenizer

from .density import OBJECT_TYPES

T = EventType
NEG_INF = float("-inf")
POSITIONS = (T.DISTANCE, T.POS, T.POS_X, T.POS_Y, T.POS_REFINE)
# The event types each output context (and, for the map, each mode) can hold: the v29 grammar.
CONTEXT_TYPES = {
    ContextType.TIMING: (T.BEAT, T.MEASURE, T.TIMING_POINT),
    ContextType.KIAI: (T.KIAI, T.SNAPPING),
    ContextType.SV: (T.SCROLL_SPEED_CHANGE, T.SNAPPING, T.SCROLL_SPEED),
}
MAP_TYPES = {
    0: (T.CIRCLE, T.SPINNER, T.SPINNER_END, T.SLIDER_HEAD, *ANCHOR_TYPES, T.LAST_ANCHOR, T.SLIDER_END, *POSITIONS, T.NEW_COMBO, T.SCROLL_SPEED),
    1: (T.CIRCLE, T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END, T.NEW_COMBO, T.SCROLL_SPEED),
    3: (T.CIRCLE, T.HOLD_NOTE, T.HOLD_NOTE_END, T.COLUMN),
}
MAP_TYPES[2] = MAP_TYPES[0]


@dataclass
class SamplingConfig:
    """How tokens are drawn; upstream v29 defaults (temperature and top-p 0.9, timing temperature 0.1)."""
    do_sample: bool = True
    temperature: float = 0.9
    timing_temperature: float = 0.1
    mania_column_temperature: float = 0.8
    taiko_hit_temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 0
    cfg_scale: float = 1.0
    gamemode: int = 0  # the column temperature applies to mania only, the hit temperature to taiko only
    lookback_ends_window: bool = True  # a time inside the prefilled lookback ends the window (upstream) or is ruled out


class TokenKinds:
    """Id ranges and id sets of one vocabulary that the processors need."""

    def __init__(self, tokenizer: Tokenizer):
        self.time_start = tokenizer.event_start[T.TIME_SHIFT]
        self.time_end = tokenizer.event_end[T.TIME_SHIFT]
        present = lambda types: {tokenizer.event_start[t] for t in types if t in tokenizer.event_start}
        self.group_types = present(GROUP_TYPES)  # ids of type tokens (all of these have range size 1 or 2)
        self.group_types |= {tokenizer.event_start[T.KIAI] + 1} if T.KIAI in tokenizer.event_start else set()
        self.beat_types = present((T.BEAT, T.MEASURE, T.TIMING_POINT))
        self.object_types = present(OBJECT_TYPES)
        self.mania_types = present((T.CIRCLE, T.HOLD_NOTE, T.HOLD_NOTE_END)) if T.COLUMN in tokenizer.event_start else set()
        self.context_starts = frozenset(tokenizer.context_sos.values())
        self.scroll_speed = (tokenizer.event_start.get(T.SCROLL_SPEED, -1), tokenizer.event_end.get(T.SCROLL_SPEED, -1))

    def allowed(self, tokenizer: Tokenizer, context: ContextType, mode: int) -> torch.Tensor:
        """A mask of the ids the context may write in this mode: its types and attributes, times, its end and EOS."""
        types = CONTEXT_TYPES.get(context) or (*MAP_TYPES[mode], T.SNAPPING, T.HITSOUND, T.VOLUME)
        mask = torch.zeros(tokenizer.vocab_size_out, dtype=torch.bool)
        for kind in (T.TIME_SHIFT, *types):
            if kind in tokenizer.event_start:
                mask[tokenizer.event_start[kind]:tokenizer.event_end[kind]] = True
        mask[EOS] = True
        mask[tokenizer.context_eos.get(context.value, EOS)] = True
        return mask

    def is_time(self, token: int) -> bool:
        return self.time_start <= token < self.time_end

    def time_value(self, token: int) -> int:
        return token - self.time_start


def guidance(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance over a (2, vocab) batch: row 0 is the conditional (positive) prompt,
    row 1 the unconditional (negative) one; returns uncond + scale * (cond - uncond) in log-probabilities."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    cond, uncond = log_probs[0], log_probs[1]
    return uncond + scale * (cond - uncond)


def grammar(logits: torch.Tensor, kinds: TokenKinds, history: list[int], allowed: torch.Tensor | None) -> torch.Tensor:
    """Only what the current context can hold; right after a type token only its time (types come first)."""
    if history and history[-1] in kinds.group_types:
        out = torch.full_like(logits, NEG_INF)
        out[kinds.time_start:kinds.time_end] = logits[kinds.time_start:kinds.time_end]
        return out
    return logits if allowed is None else logits.masked_fill(~allowed, NEG_INF)


def monotonic_time(logits: torch.Tensor, kinds: TokenKinds, last_time: int | None) -> torch.Tensor:
    """Ban TIME_SHIFT values below the last one in the current context: times never go backwards."""
    if last_time is None or last_time <= 0:
        return logits
    logits = logits.clone()
    logits[kinds.time_start:kinds.time_start + last_time] = NEG_INF
    return logits


def conditional_temperature(logits: torch.Tensor, kinds: TokenKinds, history: list[int], sampling: SamplingConfig) -> torch.Tensor:
    """Divide by the temperature for what comes next: a beat's time, a mania column, a taiko hit, or anything else."""
    temperature = sampling.temperature
    previous = history[-1] if history else -1
    low, high = kinds.scroll_speed
    if previous in kinds.beat_types:
        temperature = sampling.timing_temperature
    elif sampling.gamemode == 3 and len(history) >= 3 and history[-3] in kinds.mania_types:
        temperature = sampling.mania_column_temperature
    elif sampling.gamemode == 1 and low <= previous < high:
        temperature = sampling.taiko_hit_temperature
    if temperature <= 0:  # zero temperature: keep only the best token
        best = int(logits.argmax())
        out = torch.full_like(logits, NEG_INF)
        out[best] = 0.0
        return out
    return logits / temperature


def lookback_bias(logits: torch.Tensor, kinds: TokenKinds, history: list[int], lookback_steps: int,
                  stop: bool = True) -> torch.Tensor:
    """After a type token, time values inside the prefilled lookback are impossible.

    With `stop` (upstream, for a lookback that holds events) their probability mass moves onto time 0,
    which ends the window: the model "should have stopped" one step earlier. Without it (an empty
    lookback) they are only removed, so a silent stretch cannot make every later window stop at once.
    """
    if lookback_steps <= 0 or not history or history[-1] not in kinds.group_types:
        return logits
    start = kinds.time_start
    logits = logits.clone()
    mass = torch.logsumexp(logits[start:start + lookback_steps], dim=0)
    logits[start:start + lookback_steps] = NEG_INF
    if stop:
        logits[start] = mass
    return logits


@dataclass
class Spacing:
    """How far apart osuT5.density holds objects (steps of the window): a new object's time is at least
    `min_gap` after the previous object's (`last_object`); the same time stays allowed (mania chords)."""
    min_gap: float
    last_object: int | None = None

    def follow(self, previous: int, token: int, kinds: TokenKinds) -> None:
        """Track the previous object as `token` is written after `previous`."""
        if kinds.is_time(token) and previous in kinds.object_types:
            self.last_object = kinds.time_value(token)


def spacing(logits: torch.Tensor, kinds: TokenKinds, history: list[int], rule: Spacing | None) -> torch.Tensor:
    """After an object's type token, rule out the times `rule` forbids; if that leaves none, none are ruled out."""
    if rule is None or rule.last_object is None or not history or history[-1] not in kinds.object_types:
        return logits
    low = kinds.time_start + max(rule.last_object + 1, 0)
    high = min(kinds.time_start + rule.last_object + math.ceil(rule.min_gap), kinds.time_end)
    if low >= high:
        return logits
    spaced = logits.clone()
    spaced[low:high] = NEG_INF
    return spaced if torch.isfinite(spaced[kinds.time_start:kinds.time_end]).any() else logits


def onset_prior(logits: torch.Tensor, kinds: TokenKinds, history: list[int], bias: torch.Tensor | None) -> torch.Tensor:
    """After an object's type token, add `bias` (osuT5.onset_prior: one value per time step of the
    window) to the logits of its time."""
    if bias is None or not history or history[-1] not in kinds.object_types:
        return logits
    out = logits.clone()
    out[kinds.time_start:kinds.time_start + len(bias)] += bias
    return out


def nucleus(logits: torch.Tensor, top_k: int, top_p: float, head: int = 64) -> torch.Tensor:
    """The ids still possible after top-k (0: all) and top-p (1: all), best first: the smallest set
    whose probability reaches top_p. Works on the finite logits only; the grammar has usually ruled out most.
    The nucleus is looked for among the `head` best ids first, which a few thousand candidates' full sort
    (half the sampling time) is only needed for when it reaches past them."""
    candidates = torch.isfinite(logits).nonzero().squeeze(1)
    values = logits[candidates]
    if 0 < top_k < len(values):
        values, best = torch.topk(values, top_k)
        candidates = candidates[best]
    if not 0 < top_p < 1:
        return candidates[torch.argsort(values, descending=True)]
    every = torch.softmax(values, dim=-1)
    for width in (min(head, len(values)), len(values)):
        probs, order = torch.topk(every, width)
        keep = int((probs.cumsum(dim=-1) - probs < top_p).sum())  # keep the token that crosses top_p
        if keep < width or width == len(values):
            return candidates[order[:keep]]


def choose(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> int:
    """Argmax, or a draw among the nucleus (drawing over its few ids, not the whole vocabulary)."""
    if not sampling.do_sample:
        return int(logits.argmax())
    ids = nucleus(logits, sampling.top_k, sampling.top_p)
    probs = torch.softmax(logits[ids], dim=-1)
    return int(ids[torch.multinomial(probs, 1, generator=generator)])


def next_token(logits: torch.Tensor, kinds: TokenKinds, history: list[int], sampling: SamplingConfig,
               last_time: int | None, lookback_steps: int, generator: torch.Generator | None,
               allowed: torch.Tensor | None = None, lookback_stops: bool = True, spacing_rule: Spacing | None = None,
               onset_bias: torch.Tensor | None = None) -> int:
    """One token from (1 or 2, vocab) logits: all processors in upstream order (after the grammar), then sampling or argmax."""
    row = guidance(logits, sampling.cfg_scale) if logits.shape[0] == 2 else logits[0].float()
    row = grammar(row, kinds, history, allowed)
    row = monotonic_time(row, kinds, last_time)
    if sampling.do_sample:
        row = conditional_temperature(row, kinds, history, sampling)
    row = lookback_bias(row, kinds, history, lookback_steps, lookback_stops)
    row = spacing(row, kinds, history, spacing_rule)
    row = onset_prior(row, kinds, history, onset_bias)
    return choose(row, sampling, generator)

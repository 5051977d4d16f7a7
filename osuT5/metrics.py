"""Validation accuracies by token kind, counted so that batches and processes can simply be summed."""
from __future__ import annotations

import torch

from tokenizer.events import EventType
from tokenizer.vocabulary import Tokenizer

from .model import IGNORE_INDEX

T = EventType
FUZZY_TIMING_STEPS = 2  # ±20 ms
# Accuracy groups besides timing; any labelled token of another kind counts as "other".
KIND_TYPES = {
    "position": (T.POS, T.POS_X, T.POS_Y, T.POS_REFINE),
    "spacing": (T.DISTANCE,),
    "hitsound": (T.HITSOUND, T.VOLUME),
    "column": (T.COLUMN,),
    "scroll_speed": (T.SCROLL_SPEED,),
}
COUNT_NAMES = ["timing", "fuzzy_timing", *KIND_TYPES, "other"]


def _in_types(ids: torch.Tensor, tokenizer: Tokenizer, types: tuple[EventType, ...]) -> torch.Tensor:
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for t in types:
        if t in tokenizer.event_start:
            mask |= (ids >= tokenizer.event_start[t]) & (ids < tokenizer.event_end[t])
    return mask


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, tokenizer: Tokenizer) -> torch.Tensor:
    """[correct, total] per name in COUNT_NAMES, as a (len(COUNT_NAMES), 2) tensor."""
    predicted = logits.argmax(-1)
    labelled = labels != IGNORE_INDEX
    correct = predicted == labels
    timing = _in_types(labels, tokenizer, (T.TIME_SHIFT,)) & labelled
    predicted_timing = _in_types(predicted, tokenizer, (T.TIME_SHIFT,))
    fuzzy = predicted_timing & ((predicted - labels).abs() <= FUZZY_TIMING_STEPS)
    rows = [(correct & timing, timing), (fuzzy & timing, timing)]
    seen = timing.clone()
    for types in KIND_TYPES.values():
        kind = _in_types(labels, tokenizer, types) & labelled
        rows.append((correct & kind, kind))
        seen |= kind
    other = labelled & ~seen
    rows.append((correct & other, other))
    return torch.tensor([[int(c.sum()), int(n.sum())] for c, n in rows], dtype=torch.float64)


def accuracies(counts: torch.Tensor) -> dict[str, float]:
    """Accuracy per kind that had any labelled tokens."""
    return {f"{name}_acc": float(c / n) for name, (c, n) in zip(COUNT_NAMES, counts.tolist()) if n > 0}

"""MaiMod's scoring: the generator reads a real beatmap and says how surprised it is by each of its tokens.

Windows are planned exactly as in generation (90% overlap). Each window's decoder sequence holds the
map's real events, built the way generation builds its prompts (the map's own metadata, earlier
contexts finished), and one teacher-forced forward pass per batch of windows gives, for every real
token inside the window's generation region, the distribution generation would have drawn it from
(after its grammar, monotonic-time and lookback rules): the surprisal S = -log2 p(real token), the
entropy H of the distribution and its most likely token, the suggested fix (reference notes §7.2).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutput

from tokenizer.check import star_rating
from tokenizer.encode import beatmap_to_groups
from tokenizer.events import ContextType, Event, EventType, Group
from tokenizer.osu_file import Beatmap
from tokenizer.vocabulary import PAD, SOS, Tokenizer

from .generate import ContextPlan, Generator, Window, in_window, prompt_parts
from .logits import SamplingConfig, TokenKinds, grammar, lookback_bias, monotonic_time
from .model import IGNORE_INDEX, Mapperatorinator
from .pipeline import InferenceError, load_generator, load_song, pick_device, pick_precision, read_beatmap_path
from .sequence import BeatmapMetadata, beatmap_metadata, build_sequence

T = EventType
MODE_NAMES = {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}


@dataclass
class TokenScore:
    """How surprised the model was by one real token of the map."""
    context: ContextType
    group: Group  # the real group (object, beat, kiai change, ...) the token belongs to
    real: Event
    expected: Event | None  # the model's most likely token there; None: the end of the context
    surprisal: float  # bits
    entropy: float  # bits
    window_start_ms: float

    @property
    def relative_surprisal(self) -> float:
        """S / H, upstream's severity: the surprise against the model's uncertainty there (0 if H is 0)."""
        return self.surprisal / self.entropy if self.entropy > 0 else 0.0

    @property
    def excess_surprisal(self) -> float:
        """S - H, our severity: bits beyond the surprise the model expects there on average (H is the
        mean of S under its own prediction), so sure and unsure places compare on one scale."""
        return self.surprisal - self.entropy


@dataclass
class _Scored:
    """A token to score: where it sits in its window's sequence and what generation's rules need there."""
    position: int
    context: ContextType
    group: Group
    real: Event
    previous_id: int
    last_time: int | None
    lookback_steps: int


@dataclass
class _WindowTokens:
    window: Window
    inputs: list[int]
    scored: list[_Scored]


def token_statistics(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of (n, vocab) logits: surprisal -log2 p(target), entropy -sum p log2 p (bits) and the argmax."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    entropy = torch.special.entr(log_p.exp()).sum(-1) / math.log(2)
    surprisal = -log_p.gather(-1, targets[:, None]).squeeze(-1) / math.log(2)
    return surprisal, entropy, logits.argmax(-1)


class Critic:
    """A model and a song: scores beatmaps of that song; encoded windows are kept for the next map."""

    def __init__(self, model: Mapperatorinator, tokenizer: Tokenizer, audio: np.ndarray, lookback: float = 0.5,
                 lookahead: float = 0.4, batch_size: int = 8, autocast: torch.dtype | None = None, progress: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.generator = Generator(model, tokenizer, audio, SamplingConfig(do_sample=False), seed=0, lookback=lookback,
                                   lookahead=lookahead, autocast=autocast, progress=False)
        self.kinds = TokenKinds(tokenizer)
        self.batch_size, self.autocast, self.progress = batch_size, autocast, progress
        self.unscored_tokens = 0  # in-region tokens past the model's sequence length, in the last `score`

    def plan(self, beatmap: Beatmap, metadata: BeatmapMetadata) -> ContextPlan:
        """The map's contexts as generation's finished contexts: the template without special in-contexts,
        its outputs in order (SV only for mania, as generation writes it)."""
        template = next((t for t in self.tokenizer.config.context_templates if set(t.get("in", [])) <= {"none"}), None)
        _check(template is not None and self.tokenizer.config.add_out_context_types,
               "this model's token layout (no plain context template or no context markers) cannot review a map")
        groups = beatmap_to_groups(beatmap, self.tokenizer.config)
        outputs = [ContextType(n) for n in template["out"] if n != "sv" or beatmap.mode == 3]
        return ContextPlan(in_contexts=[(ContextType.NONE, [], []) for _ in template.get("in", [])],
                           finished={c: groups.get(c, []) for c in outputs}, metadata=metadata)

    def score(self, beatmap: Beatmap, metadata: BeatmapMetadata) -> list[TokenScore]:
        """Every real token of the map inside some window's generation region, in window order."""
        plan = self.plan(beatmap, metadata)
        allowed = {c: self.kinds.allowed(self.tokenizer, c, beatmap.mode) for c in plan.finished}
        windows = self.generator.windows()
        self.unscored_tokens = 0
        scores: list[TokenScore] = []
        for first in tqdm(range(0, len(windows), self.batch_size), desc="Scoring windows", unit="batch",
                          disable=not self.progress):
            batch = [self._window_tokens(w, plan) for w in windows[first:first + self.batch_size]]
            batch = [b for b in batch if b.scored]
            if batch:
                scores += self._score_batch(batch, allowed)
        return scores

    def _window_tokens(self, w: Window, plan: ContextPlan) -> _WindowTokens:
        """The window's full sequence and its tokens to score: the real tokens of groups inside its region."""
        tok, start = self.tokenizer, w.start_ms
        end = start + self.generator.window_ms
        in_contexts, metadata, out_contexts = prompt_parts(tok, plan, plan.metadata, start, end)
        ids, _ = build_sequence(tok, in_contexts, metadata, out_contexts, end=True)
        window_groups = {c: in_window(groups, start, end) for c, groups in plan.finished.items()}
        context_of = {tok.context_sos[c.value]: c for c in plan.finished}
        lookback_steps = 0 if w.first else int((w.region_start_ms - start) / 10)
        limit = self.model.config.tgt_seq_len
        context, index, last_time, scored = None, -1, None, []
        for i in range(ids.index(SOS) + 1, len(ids)):
            token = ids[i]
            if token in context_of:
                context, index, last_time = context_of[token], -1, None
                continue
            if token < tok.offset:  # a context's end or the final EOS
                continue
            event = tok.decode(token)
            if token in self.kinds.group_types:
                index += 1
            group = window_groups[context][index]
            if w.region_start_ms <= group.time < w.region_end_ms:
                if i > limit:
                    self.unscored_tokens += 1
                else:
                    scored.append(_Scored(i, context, group, event, ids[i - 1], last_time, lookback_steps))
            if event.type == T.TIME_SHIFT:
                last_time = event.value
        inputs = ids[:scored[-1].position] if scored else []
        return _WindowTokens(w, inputs, scored)

    @torch.no_grad()
    def _score_batch(self, batch: list[_WindowTokens], allowed: dict[ContextType, torch.Tensor]) -> list[TokenScore]:
        """One teacher-forced forward pass over a batch of windows (right-padded: the causal mask never sees the pad)."""
        device = self.generator.device
        width = max(len(b.inputs) for b in batch)
        inputs = torch.full((len(batch), width), PAD, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        for row, b in enumerate(batch):
            inputs[row, :len(b.inputs)] = torch.tensor(b.inputs)
            for s in b.scored:
                labels[row, s.position - 1] = self.tokenizer.encode(s.real)
        states = self.generator.encoder_states([b.window for b in batch])
        with torch.autocast(device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=states), decoder_input_ids=inputs.to(device),
                             labels=labels.to(device), labelled_logits_only=True)
        tokens = [(b.window, s) for b in batch for s in b.scored]
        targets = labels[labels != IGNORE_INDEX]
        rows = [self._as_generation_sees_it(row, s, allowed[s.context], int(target))
                for row, (_, s), target in zip(out.logits.float().cpu(), tokens, targets)]
        surprisal, entropy, best = token_statistics(torch.stack(rows), targets)
        offset = self.tokenizer.offset
        return [TokenScore(s.context, s.group, s.real, self.tokenizer.decode(int(b)) if b >= offset else None,
                           float(sp), float(h), w.start_ms)
                for (w, s), sp, h, b in zip(tokens, surprisal, entropy, best)]

    def _as_generation_sees_it(self, row: torch.Tensor, s: _Scored, allowed: torch.Tensor, target: int) -> torch.Tensor:
        """The logits after generation's grammar, monotonic-time and lookback rules; the lookback's times are
        removed rather than turned into a stop. Rules that would forbid the real token are not applied."""
        history = [s.previous_id]
        ruled = grammar(row, self.kinds, history, allowed)
        ruled = monotonic_time(ruled, self.kinds, s.last_time)
        ruled = lookback_bias(ruled, self.kinds, history, s.lookback_steps, stop=False)
        return ruled if math.isfinite(float(ruled[target])) else row


# -- the whole review, as mai_mod.py runs it -------------------------------------------------------
@dataclass
class Review:
    """The scores of one beatmap and what is needed to word them."""
    beatmap_path: Path
    beatmap: Beatmap
    tokenizer: Tokenizer
    scores: list[TokenScore]
    unscored_tokens: int
    seconds: float


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InferenceError(message)


def read_reviewed_beatmap(path_text: str | None) -> tuple[Path, Beatmap]:
    """The beatmap to review, read only (MaiMod never writes it)."""
    _check(path_text is not None, "give beatmap_path=MAP.osu, the beatmap to review")
    path, beatmap = read_beatmap_path(path_text)
    _check(bool(beatmap.hit_objects), f"beatmap_path {path.name} has no hit objects to review")
    _check(beatmap.mode in MODE_NAMES, f"beatmap_path {path.name} has an unknown game mode {beatmap.mode}")
    return path, beatmap


def song_path(beatmap_path: Path, beatmap: Beatmap) -> Path:
    """The map's AudioFilename, next to the .osu."""
    name = beatmap.general.get("AudioFilename", "").strip()
    _check(bool(name), f"{beatmap_path.name} names no AudioFilename, so its song cannot be found")
    path = beatmap_path.parent / name
    _check(path.is_file(), f"the beatmap's audio file {name} is not next to it in {beatmap_path.parent}")
    return path


def reviewed_metadata(beatmap: Beatmap, song_ms: float) -> BeatmapMetadata:
    """The map's own conditioning: its rosu-pp stars, settings and statistics, its creator as the mapper."""
    return beatmap_metadata(beatmap, star_rating(beatmap), song_ms, mapper=beatmap.metadata.get("Creator") or None)


def review(cfg: DictConfig) -> Review:
    """Check the request, load the model and the song, and score every token of the map."""
    began = time.perf_counter()
    beatmap_path, beatmap = read_reviewed_beatmap(cfg.beatmap_path)
    audio_path = song_path(beatmap_path, beatmap)
    _check(cfg.batch_size >= 1, f"batch_size must be 1 or more, not {cfg.batch_size}")
    _check(0 <= cfg.lookback < 1 and 0 <= cfg.lookahead < 1 and cfg.lookback + cfg.lookahead < 1,
           "lookback and lookahead must each be from 0 to 1 and together below 1")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = pick_device(str(cfg.device))
    precision = pick_precision(str(cfg.precision), device)
    model, tokenizer = load_generator(cfg, device, precision)
    mode = beatmap.mode
    _check(mode in tokenizer.config.gamemodes,
           f"this model was not trained for {MODE_NAMES[mode]} maps (gamemode {mode}), so it cannot review this one")
    audio = load_song(audio_path, model.config.sample_rate, task="review")
    song_ms = len(audio) * 1000 / model.config.sample_rate
    metadata = reviewed_metadata(beatmap, song_ms)
    critic = Critic(model, tokenizer, audio, float(cfg.lookback), float(cfg.lookahead), int(cfg.batch_size),
                    autocast=torch.bfloat16 if precision == "amp" else None, progress=bool(cfg.progress))
    scores = critic.score(beatmap, metadata)
    return Review(beatmap_path, beatmap, tokenizer, scores, critic.unscored_tokens, time.perf_counter() - began)

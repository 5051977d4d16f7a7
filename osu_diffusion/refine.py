"""Refine quantised positions with the DiT (reference notes §5.3).

Sampling starts from the positions the generator wrote (32-px cell centres) as if they were the
noisy state at `start_step`, and after every step edits the predicted clean positions:
  1. spinners and in-painted objects go back to their given positions;
  2. each object stays inside the cell the generator chose for it (`cell_size`);
  3. a few passes pull consecutive objects to the DISTANCE the generator wrote;
  4. each slider end moves to where the slider's required length falls along its current path.
Long maps run in overlapping chunks; classifier-free guidance mixes the prediction with one whose
mapper is unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .diffusion import Schedule, denormalise, normalise
from .model import DiT, load_dit
from .objects import HEIGHT, WIDTH, ObjectSequence

MAPPER_FIELD = 1


class RefinerError(Exception):
    """A refiner folder that cannot be loaded, as one sentence."""


@dataclass
class RefineOptions:
    start_step: int = 30  # sampling runs steps start_step-1 .. 0
    cfg_scale: float = 1.0
    chunk: int = 1024  # objects per forward pass
    overlap: int = 128  # objects shared by consecutive chunks, on each side
    cell_size: float | None = 32.0  # keep objects in their generator cell (None: free)
    distance_passes: int = 2  # passes pulling objects to their DISTANCE after each step (0: off)
    slider_guidance: bool = True


class Refiner:
    def __init__(self, model: DiT, options: RefineOptions, device: torch.device | str = "cpu"):
        self.model, self.options, self.device = model.to(device).eval(), options, torch.device(device)
        self.schedule = Schedule()

    @classmethod
    def load(cls, folder: str | Path, options: RefineOptions, device: torch.device | str = "cpu") -> "Refiner":
        try:
            return cls(load_dit(folder), options, device)
        except FileNotFoundError:
            raise RefinerError(f"diff_model_path {folder} holds no refiner (config.json and model.safetensors); "
                               f"train one with osu_diffusion/train.py or pass diff_model_path=FOLDER") from None

    def classes(self, difficulty: float | None, mapper: str | None, descriptors, cs: float | None) -> torch.Tensor:
        return self.model.config.classes.vector(difficulty, mapper, list(descriptors or []), cs)

    def refine(self, seq: ObjectSequence, classes: torch.Tensor, frozen: np.ndarray | None = None) -> np.ndarray:
        """Refined positions (n, 2) in px; `frozen` rows (and spinners) keep their given positions."""
        o = self.options
        start = seq.positions.copy()
        keep = seq.fixed | (frozen if frozen is not None else False)
        result = start.copy()
        begin = 0
        while True:
            end = min(begin + o.chunk, len(seq))
            chunk_keep = keep[begin:end].copy()
            if begin:
                chunk_keep[:o.overlap] = True  # the previous chunk's settled objects, seen as context
            result[begin:end] = self._sample(seq, begin, end, result[begin:end], start[begin:end], chunk_keep, classes)
            if end == len(seq):
                return result
            begin = end - 2 * o.overlap
            result[end - o.overlap:end] = start[end - o.overlap:end]  # regenerated with the next chunk's context

    def _sample(self, seq: ObjectSequence, begin: int, end: int, initial: np.ndarray, quantised: np.ndarray,
                keep: np.ndarray, classes: torch.Tensor) -> np.ndarray:
        o, d = self.options, self.device
        times = torch.tensor(seq.times[begin:end] - seq.times[begin], dtype=torch.float32, device=d)[None]
        distances = torch.tensor(seq.distances[begin:end], dtype=torch.float32, device=d)[None]
        types = torch.tensor(seq.types[begin:end], device=d)[None]
        cond = classes.to(d)[None]
        if o.cfg_scale != 1:
            null = self.model.config.classes.unknown(cond, [MAPPER_FIELD])
            cond = torch.cat([cond, null])
            times, distances, types = (v.expand(2, -1) for v in (times, distances, types))

        def predict_eps(x: torch.Tensor, t: int) -> torch.Tensor:
            batch = x.expand(len(cond), -1, -1)
            steps = torch.full((len(cond),), t, device=d)
            eps = self.model(batch, steps, times, distances, types, cond)
            return eps[:1] if o.cfg_scale == 1 else eps[1:] + o.cfg_scale * (eps[:1] - eps[1:])

        edit = _Constraints(seq, begin, end, initial, quantised, keep, o)
        x = normalise(torch.tensor(initial, dtype=torch.float32, device=d))[None]
        x0 = self.schedule.sample(predict_eps, x, o.start_step, lambda x0: normalise(edit(denormalise(x0))))
        return edit(denormalise(x0))[0].cpu().double().numpy()


class _Constraints:
    """The edits applied to each predicted clean state, in px."""

    def __init__(self, seq: ObjectSequence, begin: int, end: int, initial: np.ndarray, quantised: np.ndarray,
                 keep: np.ndarray, options: RefineOptions):
        self.seq, self.begin, self.options = seq, begin, options
        self.keep, self.initial = keep, initial
        self.sliders = [s for s in seq.sliders if begin <= s.head and s.end < end and s.required_length]
        slider_ends = np.zeros(end - begin, dtype=bool)
        slider_ends[[s.end - begin for s in self.sliders]] = True
        self.pinned = keep | slider_ends  # not moved by the distance passes
        self.distances = seq.distances[begin:end]
        playfield = np.array([WIDTH, HEIGHT])
        self.linked = np.ones(end - begin, dtype=bool)  # whose DISTANCE is measured from the object before it
        if options.cell_size:
            low = np.floor(quantised / options.cell_size) * options.cell_size
            self.low, self.high = np.clip(low, 0, playfield), np.clip(low + options.cell_size, 0, playfield)
            # Points in two cells are at most a cell diagonal further apart (or closer) than the cell centres: a
            # DISTANCE outside that band was measured from another object (overlapping sliders are encoded in
            # object order, not time order), so it does not constrain this pair.
            centre_gaps = np.hypot(*np.diff(quantised, axis=0).T)
            self.linked[1:] = np.abs(centre_gaps - self.distances[1:]) <= options.cell_size * math.sqrt(2)
        else:
            self.low, self.high = np.zeros(2), playfield

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        p = positions[0].detach().cpu().double().numpy().copy()
        p = np.clip(p, self.low, self.high)
        for _ in range(self.options.distance_passes):
            self._pull_to_distances(p)
            p = np.clip(p, self.low, self.high)
        p[self.keep] = self.initial[self.keep]
        if self.options.slider_guidance:
            for s in self.sliders:
                p[s.end - self.begin] = s.path(p, self.begin).position_at(1.0)
        return torch.tensor(p, dtype=positions.dtype, device=positions.device)[None]

    def _pull_to_distances(self, p: np.ndarray) -> None:
        """One Gauss-Seidel pass over |p_i - p_(i-1)| = distance_i, moving whichever ends are free."""
        for i in range(1, len(p)):
            free_here, free_before = not self.pinned[i], not self.pinned[i - 1]
            if not self.linked[i] or not (free_here or free_before):
                continue
            step = p[i] - p[i - 1]
            length = float(np.hypot(*step))
            if length < 1e-6:
                continue
            correction = (length - self.distances[i]) * step / length / (free_here + free_before)
            if free_here:
                p[i] -= correction
            if free_before:
                p[i - 1] += correction

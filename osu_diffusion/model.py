"""The refiner's DiT: a transformer over per-object tokens, conditioned by adaLN on the diffusion
step and the map's metadata classes (reference notes §5.1).

Each object token is its noisy position plus a context vector (time, distance to the previous
object, object type). Attention is banded to ±`attention_band` objects, so a model trained on short
sequences samples long maps unchanged. The output is the predicted noise ε for (x, y).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .objects import NUM_TYPES

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass
class ClassLayout:
    """Metadata classes, each with a last "unknown" class: difficulty in 0.5★ buckets, mapper ids,
    descriptor names and CS in 0.5 buckets."""
    difficulty_buckets: int = 25
    max_difficulty: float = 12.0
    mappers: list[str] = field(default_factory=list)
    descriptors: list[str] = field(default_factory=list)
    cs_buckets: int = 21
    max_cs: float = 10.0

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return self.difficulty_buckets + 1, len(self.mappers) + 1, len(self.descriptors) + 1, self.cs_buckets + 1

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def vector(self, difficulty: float | None, mapper: str | int | None, descriptors: list[str] | tuple[str, ...],
               cs: float | None) -> torch.Tensor:
        """The multi-hot class vector; None, an unknown mapper or no known descriptor picks "unknown"."""
        sizes = self.sizes
        vector = torch.zeros(self.size)
        starts = [sum(sizes[:k]) for k in range(4)]
        vector[starts[0] + _bucket(difficulty, self.max_difficulty, self.difficulty_buckets)] = 1
        mapper_index = self.mappers.index(str(mapper)) if mapper is not None and str(mapper) in self.mappers else len(self.mappers)
        vector[starts[1] + mapper_index] = 1
        known = [self.descriptors.index(d) for d in descriptors if d in self.descriptors] or [len(self.descriptors)]
        vector[[starts[2] + k for k in known]] = 1
        vector[starts[3] + _bucket(cs, self.max_cs, self.cs_buckets)] = 1
        return vector

    def unknown(self, vector: torch.Tensor, fields: list[int]) -> torch.Tensor:
        """A copy of `vector` with the given fields (0 difficulty, 1 mapper, 2 descriptors, 3 CS) unknown."""
        vector = vector.clone()
        sizes = self.sizes
        for f in fields:
            start = sum(sizes[:f])
            vector[..., start:start + sizes[f]] = 0
            vector[..., start + sizes[f] - 1] = 1
        return vector


def _bucket(value: float | None, maximum: float, buckets: int) -> int:
    if value is None or not math.isfinite(value):
        return buckets
    return min(max(int(value / maximum * (buckets - 1)), 0), buckets - 1)


@dataclass
class DiTConfig:
    hidden: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    position_dim: int = 128  # sinusoidal features per axis
    context_dim: int = 128  # sinusoidal features for time and for distance
    attention_band: int = 128  # each object attends to ±this many objects
    classes: ClassLayout = field(default_factory=ClassLayout)

    @classmethod
    def from_dict(cls, data: dict) -> "DiTConfig":
        data = dict(data)
        data["classes"] = ClassLayout(**data.get("classes", {}))
        return cls(**data)


def sinusoidal(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(…,) -> (…, dim) cos/sin features at frequencies from 1 down to 1/max_period."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Pre-norm attention and MLP, each shifted, scaled and gated by the condition (adaLN-Zero)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        b, n, d = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), shift_a, scale_a)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, n, d)
        x = x + gate_a[:, None] * self.proj(attended)
        return x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        in_dim = 2 * config.position_dim + 2 * config.context_dim + NUM_TYPES
        self.object_embedder = nn.Linear(in_dim, h)
        self.step_embedder = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.class_embedder = nn.Sequential(nn.Linear(config.classes.size, h), nn.SiLU(), nn.Linear(h, h))
        self.blocks = nn.ModuleList(Block(h, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h))
        self.out = nn.Linear(h, 2)
        for module in (*[b.adaLN_modulation[-1] for b in self.blocks], self.final_modulation[-1], self.out):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, steps: torch.Tensor, times: torch.Tensor, distances: torch.Tensor,
                types: torch.Tensor, classes: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """ε for noisy normalised positions `x` (b, n, 2) at diffusion `steps` (b,).

        times (b, n) ms, distances (b, n) px, types (b, n) int, classes (b, class size) multi-hot,
        padding (b, n) True where a row is padding.
        """
        c = self.config
        features = [sinusoidal(x[..., 0] * 512, c.position_dim), sinusoidal(x[..., 1] * 512, c.position_dim),
                    sinusoidal(times * 0.1, c.context_dim), sinusoidal(distances, c.context_dim),
                    F.one_hot(types, NUM_TYPES).float()]
        h = self.object_embedder(torch.cat(features, dim=-1))
        cond = self.step_embedder(sinusoidal(steps, 256)) + self.class_embedder(classes)
        mask = self.attention_mask(x.shape[1], x.device, padding)
        for block in self.blocks:
            h = block(h, cond, mask)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))

    def attention_mask(self, n: int, device: torch.device, padding: torch.Tensor | None) -> torch.Tensor:
        """(b or 1, 1, n, n) bool: True where a query may attend a key (within the band, not padding)."""
        index = torch.arange(n, device=device)
        mask = ((index[:, None] - index[None, :]).abs() <= self.config.attention_band)[None, None]
        if padding is not None:  # a row always sees itself, so padding rows stay finite
            mask = (mask & ~padding[:, None, None, :]) | torch.eye(n, dtype=torch.bool, device=device)
        return mask


def save_dit(model: DiT, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(model.config), indent=2))


def load_dit(folder: str | Path) -> DiT:
    """A refiner saved by `save_dit` (float32 in memory whatever the stored dtype), in eval mode."""
    folder = Path(folder)
    config = DiTConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    model = DiT(config)
    state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE)).items()}
    model.load_state_dict(state)
    return model.eval()

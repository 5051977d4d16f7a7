"""The noise schedule, the training loss and the sampler (reference notes §5.2-5.3).

Cosine schedule over 1000 steps; training only sees the last `max_step` steps (the refiner's job is
small corrections). Sampling starts from the quantised positions as if they were x_t at
`start_step` and walks deterministically (DDIM, η = 0) to t = 0; after every step a hook may edit
the predicted clean positions (in-painting, cell and distance constraints, slider lengths).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

STEPS = 1000


def cosine_alphas_cumprod(steps: int = STEPS, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_t for t = 0..steps-1: ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), betas capped at `max_beta`."""
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - f(t + 1) / f(t), max_beta) for t in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


class Schedule:
    def __init__(self, steps: int = STEPS):
        self.alphas_cumprod = cosine_alphas_cumprod(steps)

    def noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε, with t per batch row."""
        a = self.alphas_cumprod.to(x0.device)[t].float().view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def noise_std(self, t: int) -> float:
        """The noise level of step t in normalised units (1 unit = 256 px in x)."""
        return float((1 - self.alphas_cumprod[t]).sqrt())

    @torch.no_grad()
    def sample(self, predict_eps: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, start_step: int,
               edit_clean: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Deterministic reverse steps from x_{start_step-1} = `x` down to the clean positions."""
        a = self.alphas_cumprod.float().to(x.device)
        for t in range(start_step - 1, -1, -1):
            eps = predict_eps(x, t)
            x0 = ((x - (1 - a[t]).sqrt() * eps) / a[t].sqrt()).clamp(-1, 1)
            if edit_clean is not None:
                x0 = edit_clean(x0)
            if t == 0:
                return x0
            eps = (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()  # the noise consistent with the edited x0
            x = a[t - 1].sqrt() * x0 + (1 - a[t - 1]).sqrt() * eps
        return x


def normalise(positions: torch.Tensor) -> torch.Tensor:
    """osu! pixels -> [-1, 1] over the playfield (x/512·2-1, y/384·2-1)."""
    return positions / positions.new_tensor([256.0, 192.0]) - 1


def denormalise(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) * x.new_tensor([256.0, 192.0])

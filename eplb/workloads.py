"""Seeded, reproducible synthetic expert loads.

A load matrix is [layers, experts] token counts; a trace is [steps, layers, experts],
one matrix per logging step. Each family draws an expert popularity per layer and
turns it into token counts for ``tokens`` routed tokens per step (each token
counted once per expert it is routed to, so a layer sums to ``tokens * top_k``).
Same arguments and seed, same numbers, on any machine.
"""

from __future__ import annotations

import math

import torch

FAMILIES = ("uniform", "zipf", "lognormal", "hot", "zero")
"""uniform: equal popularity plus sampling noise; zipf: popularity ~ 1 / rank**skew with a
random expert order per layer; lognormal: exp(skew * N(0, 1)); hot: a few experts ``skew``
times the mean of the rest (log-normal with sigma 0.5); zero: log-normal with a
fraction ``skew`` of experts never chosen."""

DEFAULT_SKEW = {"uniform": 0.0, "zipf": 1.1, "lognormal": 1.0, "hot": 1000.0, "zero": 0.25}


def popularity(
    family: str, num_layers: int, num_experts: int, *, skew: float | None = None, num_hot: int = 3,
    generator: torch.Generator,
) -> torch.Tensor:
    """Unnormalised expert popularity: [num_layers, num_experts] float64, each row > 0 somewhere."""
    if family not in FAMILIES:
        raise ValueError(f"unknown workload family {family!r}: choose one of {', '.join(FAMILIES)}")
    skew = DEFAULT_SKEW[family] if skew is None else float(skew)
    if skew < 0 or not math.isfinite(skew):
        raise ValueError(f"skew must be a finite number >= 0, got {skew}")
    shape = (num_layers, num_experts)
    if family == "uniform":
        return torch.ones(shape, dtype=torch.float64)
    if family == "zipf":
        ranks = torch.rand(shape, generator=generator, dtype=torch.float64).argsort(dim=-1) + 1
        return ranks.double().pow(-skew)
    normal = torch.randn(shape, generator=generator, dtype=torch.float64)
    if family == "lognormal":
        scaled = skew * normal
        peak = scaled.amax(dim=-1, keepdim=True)
        # exp overflows float64 above ~709 (skew >= ~400): such a row is shifted by its peak, which
        # leaves its shares unchanged; rows that fit are left exactly as they were
        return (scaled - torch.where(peak > 600, peak, 0.0)).exp()
    if family == "hot":
        base = (0.5 * normal).exp()
        hot = torch.rand(shape, generator=generator).argsort(dim=-1)[:, : min(num_hot, num_experts)]
        boost = base.mean(dim=-1, keepdim=True) * skew
        return base.scatter(-1, hot, boost.expand(-1, hot.shape[-1]))
    # zero: a fraction of experts gets no tokens, but never a whole layer
    if not skew < 1:
        raise ValueError(f"the zero family's skew is the fraction of idle experts and must be below 1, got {skew}")
    base = normal.exp()
    idle_count = min(int(round(skew * num_experts)), num_experts - 1)
    idle = torch.rand(shape, generator=generator).argsort(dim=-1)[:, :idle_count]
    return base.scatter(-1, idle, 0.0)


def sample_counts(prob: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Token counts with multinomial-like noise: prob [..., E] (rows sum to 1) -> float32 counts.

    Uses the normal approximation of the multinomial, rounded and clipped at zero
    (a plain 0, never -0.0).
    """
    mean = prob * total
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64) * (mean * (1 - prob)).sqrt()
    counts = (mean + noise).round()
    return torch.where(counts > 0, counts, 0.0).float()


def _check_shape(**dims: int) -> None:
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def generate_load(
    family: str, num_layers: int, num_experts: int, *, seed: int = 0, skew: float | None = None,
    tokens: int = 8192, top_k: int = 8, num_hot: int = 3,
) -> torch.Tensor:
    """A load matrix [num_layers, num_experts] float32 of token counts."""
    _check_shape(num_layers=num_layers, num_experts=num_experts, tokens=tokens, top_k=top_k)
    generator = torch.Generator().manual_seed(seed)
    pop = popularity(family, num_layers, num_experts, skew=skew, num_hot=num_hot, generator=generator)
    return sample_counts(pop / pop.sum(-1, keepdim=True), tokens * top_k, generator)


def generate_trace(
    family: str, num_steps: int, num_layers: int, num_experts: int, *, seed: int = 0, skew: float | None = None,
    drift: float = 0.05, tokens: int = 8192, top_k: int = 8, num_hot: int = 3,
) -> torch.Tensor:
    """A trace [num_steps, num_layers, num_experts] float32 whose popularity drifts slowly.

    Log-popularity takes a Gaussian random walk with step ``drift`` per step; drift=0
    gives a stationary trace (only sampling noise changes).
    """
    _check_shape(num_steps=num_steps, num_layers=num_layers, num_experts=num_experts, tokens=tokens, top_k=top_k)
    if drift < 0 or not math.isfinite(drift):
        raise ValueError(f"drift must be a finite number >= 0, got {drift}")
    generator = torch.Generator().manual_seed(seed)
    pop = popularity(family, num_layers, num_experts, skew=skew, num_hot=num_hot, generator=generator)
    walk = torch.randn((num_steps, num_layers, num_experts), generator=generator, dtype=torch.float64) * drift
    walk[0] = 0.0
    log_pop = pop.clamp(min=1e-300).log() + walk.cumsum(dim=0)
    prob = torch.where(pop > 0, log_pop.exp(), 0.0)
    return sample_counts(prob / prob.sum(-1, keepdim=True), tokens * top_k, generator)


def generate_drifting_trace(
    family: str, num_windows: int, steps_per_window: int, num_layers: int, num_experts: int, *,
    noise: float = 0.15, drift: float = 0.05, seed: int = 0, skew: float | None = None,
    tokens: int = 8192, top_k: int = 8, num_hot: int = 3,
) -> torch.Tensor:
    """Per-step loads of consecutive planning windows: [num_windows * steps_per_window, L, E] float32.

    The model behind the next-window benchmark (plan on one window, serve the next):

    * the family's popularity (``popularity``) moves slowly: its logarithm takes a
      Gaussian random walk with step ``drift`` per window;
    * on top of that, each window's popularity is off by a fresh log-normal factor:
      every expert has a volatility (log-normal around ``noise``, mean ``noise``), and
      window w multiplies its popularity by exp(volatility * N(0, 1)), so an expert's
      load over a window strays about ``noise`` (0.15: 15%) from the slow trend and
      the next window's error is independent of this one's;
    * every step inside a window strays the same way around the window's popularity
      (the same volatility, a fresh draw per step), so the steps of a window show
      which experts swing; then each step's tokens are sampled (``sample_counts``).

    Idle experts of the ``zero`` family stay idle. Window w is rows
    ``w * steps_per_window`` to ``(w + 1) * steps_per_window - 1``; same arguments and
    seed, same numbers.
    """
    _check_shape(num_windows=num_windows, steps_per_window=steps_per_window, num_layers=num_layers,
                 num_experts=num_experts, tokens=tokens, top_k=top_k)
    for name, value in (("noise", noise), ("drift", drift)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    generator = torch.Generator().manual_seed(seed)
    pop = popularity(family, num_layers, num_experts, skew=skew, num_hot=num_hot, generator=generator)
    shape = (num_layers, num_experts)
    # log-normal volatility with mean `noise`: exp(0.5 N - 0.125) has mean 1
    volatility = noise * (0.5 * torch.randn(shape, generator=generator, dtype=torch.float64) - 0.125).exp()
    trend = torch.randn((num_windows, *shape), generator=generator, dtype=torch.float64) * drift
    trend[0] = 0.0
    per_window = trend.cumsum(dim=0) + volatility * torch.randn((num_windows, *shape), generator=generator,
                                                                dtype=torch.float64)
    per_step = volatility * torch.randn((num_windows, steps_per_window, *shape), generator=generator,
                                        dtype=torch.float64)
    log_pop = pop.clamp(min=1e-300).log() + per_window.unsqueeze(1) + per_step  # [W, S, L, E]
    prob = torch.where(pop > 0, log_pop.exp(), 0.0).flatten(0, 1)
    return sample_counts(prob / prob.sum(-1, keepdim=True), tokens * top_k, generator)

"""Planning for the next window: how much each expert's load swings, what the next window
may bring, and which of several plans serves it best.

A placement planned on a window of per-step loads [S, L, E] serves the steps after it.
The window shows more than its sum: an expert whose load swings from step to step will
likely stray as far from this window's load in the next one, and one copy of it more
(or its copies on more GPUs) keeps that swing off any single GPU. So ``joint`` plans a
window as follows (``JointSearch.place_window``):

1. ``volatility``: each expert's swing v, the spread of its log load over the steps;
2. candidate plans: the plan on the window's sum, and for each hedge level k in
   ``HEDGES`` the copy counts that DeepSeek's min-max rule gives the loads m * exp(k v)
   (volatile experts count as heavier), m the expected next-window load
   (``next_window_load``), packed on m, so the counts lean toward the swinging experts
   and the packing balances the load the next window is expected to bring;
3. ``next_window_scenarios``: next-window loads drawn around each expert's trend, estimated
   from the window by shrinking toward the layer's mean as far as the swings make the
   window's own load unreliable (``next_window_level``), with the experts' swings;
4. per layer, the plan whose heaviest GPU is lightest on average over the scenarios
   (``scenario_peaks``, ``pick_plan``), where it beats the plan on the sum by more than the
   scenarios' own noise: with little swing that is the plan on the sum, with much of it a
   hedged one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .. import kernels
from .base import copy_counts

HEDGES = (0.5, 2.0, 4.0, 6.0)
"""Hedge levels k of the candidate plans: copy counts by min-max on the loads m * exp(k v), m the
expected next-window load. k = 1 was the level picked least (5% of the layers of the next-window
benchmark); without it the benchmark's means moved by at most 0.0004 and a window plan took 1-21%
less time (same run, DeepSeek-V3 shape, five loads)."""

SCENARIOS = 256
"""Next-window loads drawn per layer to score the candidate plans (fewer for very large layers)."""

SCENARIO_ELEMENTS = 4_000_000
"""Most scenario loads (layers x scenarios x experts) drawn for one window, and most entries of
the share matrices (layers x experts x GPUs) built at once: a bound on memory."""


def volatility(window: torch.Tensor) -> torch.Tensor:
    """How much each expert's load swings from step to step: window [S, L, E] -> v [L, E] float64.

    v is the log-normal sigma that matches the steps' relative variance,
    sqrt(log(1 + var / mean^2)), 0 for an expert without load and for a window of one
    step. Whole-number loads are token counts, whose Poisson sampling noise (variance =
    mean per step) the window's sum averages out; it is taken off the variance first.
    """
    x = window.double()
    if x.shape[0] < 2:
        return torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    # Two passes (mean, then squared deviations): as exact as torch's var here and far quicker
    # on a CPU for a reduction over the leading axis.
    mean = x.mean(dim=0)
    var = (x - mean).square_().sum(dim=0).div_(x.shape[0] - 1)
    if bool(torch.equal(x, x.round())):
        var = var - mean
    relative = torch.where(mean > 0, var.clamp(min=0) / mean.clamp(min=1e-300) ** 2, 0.0)
    return relative.log1p().sqrt()


def hedged_weights(total: torch.Tensor, swing: torch.Tensor) -> torch.Tensor:
    """Loads whose min-max counts hedge the swings: total, swing [L, E] -> [H, L, E] float64,
    w * exp(k v) (w: total) for each k in ``HEDGES``, rescaled to each layer's total."""
    level = torch.tensor(HEDGES, dtype=torch.float64, device=total.device).view(-1, 1, 1)
    hedged = total.double() * torch.exp(level * swing)
    return hedged * (total.double().sum(-1, keepdim=True) / hedged.sum(-1, keepdim=True).clamp(min=1e-300))


def next_window_scenarios(total: torch.Tensor, swing: torch.Tensor, num_scenarios: int) -> torch.Tensor:
    """Next-window loads: total, swing [L, E] -> [L, K, E] float32, each expert log-normal around
    its estimated level (``next_window_level``) with the log-variance of that estimate plus
    v^2, since the next window strays afresh by about v. Drawn from a fixed seed, so the same
    window always gets the same scenarios; an expert without load stays without."""
    if not bool((swing > 0).any()):  # no steps to learn from: the load is its own scenario
        return total.float().unsqueeze(1).expand(-1, num_scenarios, -1)
    log_level, spread = next_window_level(total, swing)
    draw = standard_draws(total.shape[0], num_scenarios, total.shape[1]).to(total.device)
    # exp of -inf (an expert without load) takes a slow path on a CPU, several times the cost of
    # the rest: such experts draw from log level 0 (their sigma is at most 1, so the draw stays
    # finite) and are multiplied by 0 after. In place: one fresh [L, K, E] tensor, not two.
    loaded = torch.isfinite(log_level)
    level = torch.where(loaded, log_level, 0.0).float().unsqueeze(1)
    scenarios = torch.addcmul(level, spread.float().unsqueeze(1), draw).exp_()
    if not bool(loaded.all()):
        scenarios.mul_(loaded.float().unsqueeze(1))
    return scenarios


def next_window_level(total: torch.Tensor, swing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each expert's next window is centred: total, swing [L, E] -> (log median [L, E],
    log-normal sigma [L, E]), float64; the median 0 (log -inf) for an expert without load.

    The window's load is proportional to its steps' mean; with the steps log-normal around
    the expert's level (log-variance v^2), the level is w exp(-v^2 / 2), and it strays from
    the expert's trend by this window's own swing, log-variance s^2 = v^2 (plus 1 / w of
    Poisson noise for token counts). Across a layer's loaded experts the trends spread by
    tau^2, the levels' log-variance less the mean s^2. The estimate of a trend (James-Stein)
    moves the log level toward the layer's mean by the share of noise in it: it keeps
    b = tau^2 / (tau^2 + s^2) of the distance. Where the experts differ far more than they
    swing (skewed loads, b near 1) that is the window's own level; where they differ no more
    (a near-uniform load, b near 0) it is the layer's mean, since this window's deviations
    will not come back and a plan fitted to them has no edge. The next window's median is
    the estimate times exp(v^2 / 2) (its steps' mean again), log-normal with log-variance
    b s^2 (the estimate's error) + v^2 (the next window's own swing).
    """
    w = total.double()
    loaded = w > 0
    variance = swing.double().square()
    log_level = torch.where(loaded, w.clamp(min=1e-300).log(), 0.0) - variance / 2
    noise = variance + 1 / w.clamp(min=1) if bool(torch.equal(w, w.round())) else variance
    count = loaded.sum(-1, keepdim=True).clamp(min=1)
    mean = torch.where(loaded, log_level, 0.0).sum(-1, keepdim=True) / count
    spread = torch.where(loaded, (log_level - mean).square(), 0.0).sum(-1, keepdim=True) / (count - 1).clamp(min=1)
    trend_spread = (spread - torch.where(loaded, noise, 0.0).sum(-1, keepdim=True) / count).clamp(min=0)
    share = trend_spread / (trend_spread + noise).clamp(min=1e-300)  # b
    estimate = torch.where(loaded, mean + share * (log_level - mean) + variance / 2, -torch.inf)
    return estimate, (share * noise + variance).sqrt()


def next_window_load(total: torch.Tensor, swing: torch.Tensor) -> torch.Tensor:
    """The load the hedged plans are counted and packed on: total, swing [L, E] -> [L, E] float64,
    each expert's expected next-window load (the mean of ``next_window_scenarios``' log-normal,
    exp(log median + sigma^2 / 2)), rescaled to each layer's total; 0 for an expert without load.

    On a skewed load this is about the window's own load, tilted toward the experts that swing
    (their next window is as likely to be far above as below its median, and the mean counts
    that); on a near-uniform load it is pulled toward the layer's mean, so a plan packed on it
    does not balance deviations that will not come back."""
    log_median, sigma = next_window_level(total, swing)
    level = (log_median + sigma.square() / 2).exp()  # exp(-inf) = 0 for an expert without load
    return level * (total.double().sum(-1, keepdim=True) / level.sum(-1, keepdim=True).clamp(min=1e-300))


@lru_cache(maxsize=2)
def standard_draws(num_layers: int, num_scenarios: int, num_experts: int) -> torch.Tensor:
    """The standard normal draws behind ``next_window_scenarios``: [L, K, E] float32 from seed 0,
    drawn once per shape (a read-only tensor shared by every call). Laid out [L, E, K] in
    memory, each expert's draws side by side, as ``scenario_peaks`` reads the scenarios on a CPU."""
    generator = torch.Generator().manual_seed(0)
    draws = torch.randn((num_layers, num_scenarios, num_experts), generator=generator)
    return draws.transpose(1, 2).contiguous().transpose(1, 2)


def scenario_count(num_layers: int, num_experts: int) -> int:
    """``SCENARIOS``, fewer where layers x experts is so large that they would not fit ``SCENARIO_ELEMENTS``."""
    return max(4, min(SCENARIOS, SCENARIO_ELEMENTS // max(1, num_layers * num_experts)))


def scenario_peaks(scenarios: torch.Tensor, phy2log: torch.Tensor, num_experts: int, num_gpus: int) -> torch.Tensor:
    """Each plan's heaviest GPU in each scenario: scenarios [L, K, E] float32, phy2log [C, L, P]
    (C plans) -> [C, L, K] float32; phy2log [L, P] (one plan) -> [L, K].

    A GPU serves 1 / count of an expert per copy it holds. On a CPU the compiled
    ``kernels.scenario_peaks_rows`` sums each GPU's copies over all scenarios at once (the
    plans are sparse: P copies per layer, against E x G entries of a share matrix); on
    other devices ``scenario_peaks_by_product`` multiplies by the share matrices.
    """
    if phy2log.dim() == 2:
        return scenario_peaks(scenarios, phy2log.unsqueeze(0), num_experts, num_gpus).squeeze(0)
    if phy2log.device.type != "cpu":
        return scenario_peaks_by_product(scenarios, phy2log, num_experts, num_gpus)
    share_of_copy = copy_shares(phy2log, num_experts)
    by_expert = np.ascontiguousarray(scenarios.transpose(1, 2).numpy(), dtype=np.float32)  # [L, E, K]
    return torch.from_numpy(kernels.scenario_peaks_rows(by_expert, np.ascontiguousarray(phy2log.numpy(), np.int64),
                                                        share_of_copy.numpy(), num_gpus))


def copy_shares(phy2log: torch.Tensor, num_experts: int) -> torch.Tensor:
    """The part of its expert's load each copy serves, 1 / its copies: phy2log [C, L, P] -> [C, L, P] float32."""
    num_plans, num_layers, _ = phy2log.shape
    counts = copy_counts(phy2log.flatten(0, 1), num_experts).view(num_plans, num_layers, num_experts)
    return 1 / counts.gather(2, phy2log).float()


def scenario_peaks_by_product(scenarios: torch.Tensor, phy2log: torch.Tensor, num_experts: int, num_gpus: int
                              ) -> torch.Tensor:
    """``scenario_peaks`` for C plans [C, L, P] as one batched product of the scenarios with the
    plans' share matrices side by side, [L, E, C * G] (wider products run several times faster
    per entry than one per plan), built a few layers at a time to bound memory
    (``SCENARIO_ELEMENTS``): quick on a GPU.
    """
    num_plans, num_layers, num_replicas = phy2log.shape
    device = phy2log.device
    plan_gpu = (torch.arange(num_plans, device=device).view(-1, 1, 1) * num_gpus
                + torch.arange(num_replicas, device=device) // (num_replicas // num_gpus))  # [C, 1, P]
    share_of_copy = copy_shares(phy2log, num_experts)
    held = (phy2log * (num_plans * num_gpus) + plan_gpu).transpose(0, 1).flatten(1)  # [L, C * P]
    share_of_copy = share_of_copy.transpose(0, 1).flatten(1)
    chunk = max(1, SCENARIO_ELEMENTS // (num_experts * num_plans * num_gpus))
    peaks = []
    for start in range(0, num_layers, chunk):
        rows = slice(start, start + chunk)
        share = torch.zeros(held[rows].shape[0], num_experts * num_plans * num_gpus, device=device)
        share.scatter_add_(1, held[rows], share_of_copy[rows])
        loads = torch.bmm(scenarios[rows], share.view(-1, num_experts, num_plans * num_gpus))  # [l, K, C * G]
        peaks.append(loads.view(loads.shape[0], loads.shape[1], num_plans, num_gpus).amax(dim=-1))
    return torch.cat(peaks).permute(2, 0, 1)


def pick_plan(peaks: torch.Tensor) -> torch.Tensor:
    """Which plan each layer keeps: peaks [C, L, K] (plan 0 the plan on the sum) -> [L] int64.

    A plan replaces the plan on the sum only where its heaviest GPU is lighter on average
    by more than one standard error of that average over the scenarios (paired, the same
    scenarios for all plans), so the noise of the draws alone never moves a layer off the
    plan on its sum; among those, the lightest on average."""
    gain = peaks[:1] - peaks  # [C, L, K], > 0 where a plan does better
    mean = gain.mean(dim=-1)
    error = gain.std(dim=-1) / math.sqrt(peaks.shape[-1])
    return torch.where(mean > error, mean, 0.0).argmax(dim=0)

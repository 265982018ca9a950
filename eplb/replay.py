"""Replay a load trace through an online rebalancer, as vLLM and SGLang run one.

The serving engine starts on vLLM's initial map (slot i holds expert i % E). Every
``interval`` steps it plans a new placement from the mean load of the last
``window`` steps (never the current or later steps), optionally skipping the
rebalance while the current placement's balancedness over that window stays at or
above ``threshold`` (SGLang's behaviour), and always while the window carried no
load (there is nothing to plan from). Each step is scored with the placement in
force at that step, so a plan is judged on the traffic that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .metrics import gpu_loads, initial_phy2log, migration
from .rebalance import Topology, place_experts, validate_weight


@dataclass(frozen=True)
class Rebalance:
    """One rebalance: the step whose traffic it first serves, and what moving there costs."""

    step: int
    balancedness_before: float  # of the outgoing placement, on the planning window
    copies_sent: int
    slots_changed: int
    bytes_moved: int


@dataclass(frozen=True)
class ReplayResult:
    """Per-step balancedness ([T] float64, NaN at steps without load) with and without rebalancing."""

    balancedness_static: torch.Tensor
    balancedness_rebalanced: torch.Tensor
    rebalances: list[Rebalance]
    checks: int  # planning opportunities, rebalanced or skipped

    @property
    def mean_static(self) -> float | None:
        return _nanmean(self.balancedness_static)

    @property
    def mean_rebalanced(self) -> float | None:
        return _nanmean(self.balancedness_rebalanced)

    @property
    def total_bytes_moved(self) -> int:
        return sum(r.bytes_moved for r in self.rebalances)

    @property
    def total_copies_sent(self) -> int:
        return sum(r.copies_sent for r in self.rebalances)

    def priced(self, expert_bytes: int) -> ReplayResult:
        """The same replay with every rebalance's bytes_moved recomputed for experts of expert_bytes each."""
        return replace(self, rebalances=[replace(r, bytes_moved=r.copies_sent * expert_bytes) for r in self.rebalances])


def _nanmean(values: torch.Tensor) -> float | None:
    known = values[~values.isnan()]
    return float(known.mean()) if known.numel() else None


def step_balancedness(trace: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """vLLM balancedness of one placement on each step of trace [T, L, E]: -> [T] (NaN without load).

    Per step: sum over layers of mean GPU load / sum over layers of max GPU load.
    """
    steps, layers, experts = trace.shape
    loads = gpu_loads(trace.reshape(steps * layers, experts), phy2log.repeat(steps, 1), num_gpus)
    loads = loads.view(steps, layers, num_gpus)
    peak = loads.max(-1).values.sum(-1)
    return torch.where(peak > 0, loads.mean(-1).sum(-1) / peak.clamp(min=1e-300), torch.nan)


def replay(
    trace: torch.Tensor,
    topology: Topology,
    *,
    window: int,
    interval: int,
    threshold: float | None = None,
    policy: str | None = None,
    mode: str = "auto",
    expert_bytes: int = 0,
) -> ReplayResult:
    """Replay trace [T, L, E] on topology; see the module docstring for the rules."""
    steps = trace.shape[0] if trace.dim() == 3 else 0
    if trace.dim() != 3 or steps == 0:
        raise ValueError(f"a trace must be 3-D [steps, layers, experts], got shape {tuple(trace.shape)}")
    for name, value in (("window", window), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive number of steps, got {value!r}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a balancedness between 0 and 1, got {threshold}")
    validate_weight(trace.reshape(-1, trace.shape[-1]))
    num_layers, num_experts = trace.shape[1:]
    topology.validate(num_experts, mode)

    static = initial_phy2log(num_layers, num_experts, topology.num_replicas, trace.device)
    current = static
    plans = torch.zeros(steps, dtype=torch.int64)  # which placement serves each step
    placements = [static]
    rebalances = []
    checks = 0
    for start in range(interval, steps, interval):
        checks += 1
        planning = trace[max(0, start - window) : start].double().mean(0)  # [L, E]
        before = step_balancedness(planning.unsqueeze(0), current, topology.num_gpus)[0]
        if before.isnan():  # no traffic in the window: nothing to plan from, keep the placement
            continue
        before_value = float(before)
        if threshold is not None and before_value >= threshold:
            continue
        phy2log = place_experts(  # phy2log only: log2phy grows with the slots squared and is not read here
            planning, topology.num_replicas, topology.num_groups, topology.num_nodes, topology.num_gpus,
            policy=policy, mode=mode,
        )
        moved = migration(current, phy2log, topology.num_gpus, num_experts)
        rebalances.append(
            Rebalance(start, before_value, moved.total_copies_sent, moved.total_slots_changed,
                      moved.total_copies_sent * expert_bytes)
        )
        placements.append(phy2log)
        current = phy2log
        plans[start:] = len(placements) - 1

    rebalanced = torch.empty(steps, dtype=torch.float64)
    for index, placement in enumerate(placements):
        served = (plans == index).nonzero().flatten()
        if served.numel():
            rebalanced[served] = step_balancedness(trace[served], placement, topology.num_gpus)
    return ReplayResult(
        balancedness_static=step_balancedness(trace, static, topology.num_gpus),
        balancedness_rebalanced=rebalanced,
        rebalances=rebalances,
        checks=checks,
    )

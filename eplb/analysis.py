"""Questions users ask of a balancer: which policy, and how many GPUs or redundant slots.

``run_policy`` is one timed rebalance with its report; ``compare_policies`` runs
every policy on one load; ``sweep`` walks one topology axis and runs every policy
at each point, pricing the redundant copies in bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import torch

from .metrics import PlacementReport, evaluate
from .policies import DEFAULT_POLICY, POLICIES
from .rebalance import Topology, rebalance_experts


@dataclass(frozen=True)
class Run:
    """One rebalance: its placement, what it measures, and how long it took."""

    policy: str
    mode: str  # the resolved mode, "hierarchical" or "global"
    topology: Topology
    phy2log: torch.Tensor  # [L, P]
    log2phy: torch.Tensor  # [L, E, P - E + 1]
    logcnt: torch.Tensor  # [L, E]
    report: PlacementReport
    runtime_ms: float


def run_policy(weight: torch.Tensor, topology: Topology, policy: str | None = None, mode: str = "auto") -> Run:
    """Rebalance weight [L, E] on topology, time it, and evaluate the placement."""
    name = DEFAULT_POLICY if policy is None else policy
    start = time.perf_counter()
    phy2log, log2phy, logcnt = rebalance_experts(
        weight, topology.num_replicas, topology.num_groups, topology.num_nodes, topology.num_gpus,
        policy=name, mode=mode,
    )
    runtime_ms = (time.perf_counter() - start) * 1000
    resolved = topology.resolve_mode(mode)
    report = evaluate(weight, phy2log, topology, resolved)
    return Run(name, resolved, topology, phy2log, log2phy, logcnt, report, runtime_ms)


def compare_policies(
    weight: torch.Tensor, topology: Topology, mode: str = "auto", policies: Iterable[str] | None = None
) -> list[Run]:
    """Every policy (default: all of ``POLICIES``) on one load and topology, in registry order."""
    return [run_policy(weight, topology, name, mode) for name in (policies or POLICIES)]


SWEEP_AXES = {
    "redundant": "redundant slots",
    "gpus": "GPUs",
    "nodes": "nodes",
    "groups": "expert groups",
}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def sweep_values(axis: str, num_experts: int, base: Topology, *, max_redundant: int | None = None,
                 step: int | None = None) -> list[int]:
    """The values of one axis that make a valid topology with the rest of ``base`` held fixed.

    redundant: 0, step, 2*step, ... up to max_redundant (default: 4 slots per GPU), keeping
    only counts the GPUs divide evenly; gpus: every count that divides the slots and is a
    multiple of the nodes; nodes: every divisor of the GPU count; groups: every divisor of
    the expert count.
    """
    if axis not in SWEEP_AXES:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(SWEEP_AXES)}")
    redundant = base.num_replicas - num_experts
    if axis == "redundant":
        step = step or base.num_gpus
        top = 4 * base.num_gpus if max_redundant is None else max_redundant
        return [r for r in range(0, top + 1, step) if (num_experts + r) % base.num_gpus == 0]
    if axis == "gpus":
        return [g for g in _divisors(num_experts + redundant) if g % base.num_nodes == 0]
    if axis == "nodes":
        return _divisors(base.num_gpus)
    return _divisors(num_experts)


def topology_at(axis: str, value: int, num_experts: int, base: Topology) -> Topology:
    """``base`` with one axis set to value (redundant slots are counted on top of the experts)."""
    field = {"redundant": "num_replicas", "gpus": "num_gpus", "nodes": "num_nodes", "groups": "num_groups"}
    if axis not in field:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(SWEEP_AXES)}")
    return replace(base, **{field[axis]: num_experts + value if axis == "redundant" else value})


@dataclass(frozen=True)
class SweepPoint:
    """One policy at one point of a sweep; error holds the reason when the point is invalid."""

    axis: str
    value: int
    policy: str
    topology: Topology
    run: Run | None
    redundant_bytes: int
    error: str | None = None


def sweep(
    weight: torch.Tensor,
    axis: str,
    values: Iterable[int],
    base: Topology,
    *,
    mode: str = "auto",
    policies: Iterable[str] | None = None,
    expert_bytes: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepPoint]:
    """Run every policy at every value of one axis. weight: [L, E].

    redundant_bytes = redundant slots per layer x layers x expert_bytes: the memory the
    extra copies take on the whole deployment. ``progress(done, total)`` is called after
    each point, so a UI can show a bar (and cancel by raising).
    """
    names = list(policies or POLICIES)
    values = list(values)
    num_layers, num_experts = weight.shape
    points = []
    for index, value in enumerate(values):
        topology = topology_at(axis, value, num_experts, base)
        redundant_bytes = max(topology.num_replicas - num_experts, 0) * num_layers * expert_bytes
        for name in names:
            try:
                run = run_policy(weight, topology, name, mode)
                points.append(SweepPoint(axis, value, name, topology, run, redundant_bytes))
            except ValueError as exc:
                points.append(SweepPoint(axis, value, name, topology, None, redundant_bytes, str(exc)))
        if progress is not None:
            progress(index + 1, len(values))
    return points

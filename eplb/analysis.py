"""Questions users ask of a balancer: which policy, and how many GPUs or redundant slots.

``run_policy`` is one timed rebalance with its report; ``compare_policies`` runs
every policy (in every mode that applies) on one load; ``sweep`` walks one
topology axis and runs every policy at each point, pricing the redundant copies
in bytes (``preset_for_shape`` finds a model's expert size from the load's shape).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import torch

from .metrics import PlacementReport, evaluate
from .policies import DEFAULT_POLICY, POLICIES
from .presets import PRESETS, ModelPreset
from .rebalance import Topology, place_experts


@dataclass(frozen=True)
class Run:
    """One rebalance: its placement, what it measures, and how long it took.

    Only phy2log [L, P] is kept (``eplb.log2phy_from_phy2log`` gives log2phy and
    logcnt), so a cache of many runs stays small.
    """

    policy: str
    mode: str  # the resolved mode, "hierarchical" or "global"
    topology: Topology
    phy2log: torch.Tensor  # [L, P]
    report: PlacementReport
    runtime_ms: float

    @property
    def label(self) -> str:
        """"policy (mode)", the name a table row or a chart line carries."""
        return f"{self.policy} ({self.mode})"

    def metrics(self) -> dict[str, float | int | None]:
        """The scalar figures of this run (None where the load is all zero), for tables."""
        r = self.report
        return {
            "balancedness": r.balancedness,
            "utilization_rate": r.utilization_rate,
            "straggler_factor": r.straggler_factor,
            "bound_balancedness": r.bound_balancedness,
            "gap_to_bound": r.gap_to_bound,
            "node_balancedness": r.node_balancedness,
            "duplicate_gpus": r.duplicate_gpus,
            "runtime_ms": self.runtime_ms,
        }


def run_policy(weight: torch.Tensor, topology: Topology, policy: str | None = None, mode: str = "auto",
               *, repeats: int = 1, bound: torch.Tensor | None = None) -> Run:
    """Rebalance weight [L, E] on topology, time it (best of ``repeats``), and evaluate the placement.

    bound: the load's [L] lower bound in this mode, if known (see ``eplb.metrics.evaluate``).
    """
    name = DEFAULT_POLICY if policy is None else policy
    runtime_ms = float("inf")
    for _ in range(max(repeats, 1)):  # the first call in a fresh process pays torch's one-time set-up
        start = time.perf_counter()
        phy2log = place_experts(weight, topology.num_replicas, topology.num_groups, topology.num_nodes,
                                topology.num_gpus, policy=name, mode=mode)
        runtime_ms = min(runtime_ms, (time.perf_counter() - start) * 1000)
    resolved = topology.resolve_mode(mode)
    report = evaluate(weight, phy2log, topology, resolved, bound=bound)
    return Run(name, resolved, topology, phy2log, report, runtime_ms)


def applicable_modes(topology: Topology, num_experts: int) -> list[str]:
    """The explicit modes ("hierarchical", "global") the topology accepts for num_experts experts.

    Raises the contract's ValueError when it accepts neither.
    """
    modes = []
    for mode in ("hierarchical", "global"):
        try:
            topology.validate(num_experts, mode)
            modes.append(mode)
        except ValueError:
            if mode == "global":
                raise
    return modes


def compare_policies(
    weight: torch.Tensor, topology: Topology, modes: Iterable[str] = ("auto",),
    policies: Iterable[str] | None = None, *, repeats: int = 1,
) -> list[Run]:
    """Every policy (default: all of ``POLICIES``) in every mode given, on one load and topology.

    Runs come mode by mode, each in registry order. ``applicable_modes`` gives every
    mode that applies.
    """
    names = list(policies or POLICIES)
    return [run for mode in modes for run in _policies_on(weight, topology, names, mode, repeats)]


def _policies_on(weight: torch.Tensor, topology: Topology, names: list[str], mode: str, repeats: int = 1) -> list[Run]:
    """Each named policy on one load, topology and mode; the lower bound is computed once and shared."""
    runs, bound = [], None
    for name in names:
        runs.append(run_policy(weight, topology, name, mode, repeats=repeats, bound=bound))
        bound = runs[-1].report.bound
    return runs


@dataclass(frozen=True)
class NextWindow:
    """How a policy does on the load that comes next: the trace cut into windows, plan on one, score on the next.

    in_sample / next_window: mean vLLM balancedness of the plans on the window each was
    planned on / on the window after it; windows, steps_per_window: how the trace was cut.
    """

    policy: str
    mode: str
    in_sample: float
    next_window: float
    windows: int
    steps_per_window: int


def next_window_balancedness(trace: torch.Tensor, topology: Topology, modes: Iterable[str], *,
                             num_windows: int = 4) -> list[NextWindow]:
    """Every policy in every mode on trace [T, L, E], judged the way the serving engines live.

    The trace is cut into num_windows consecutive windows of T // num_windows steps (fewer
    windows when the trace is short; leftover steps at the end are left out). Each policy
    plans from window i, given as history [steps, L, E], and is scored on window i + 1's
    summed load; as ``eplb.bench.next_window_rows``, whose loop this is.
    """
    from .bench import next_window_rows, policy_planner

    steps = trace.shape[0]
    windows = max(2, min(num_windows, steps))
    if steps < 2:
        raise ValueError(f"a next-window score needs a trace of at least 2 steps, got {steps}")
    size = steps // windows
    cut = trace[: windows * size].reshape(windows, size, *trace.shape[1:]).float()
    planners = [policy_planner(name) for name in POLICIES]
    return [NextWindow(row.policy, mode, row.in_sample, row.next_window, windows, size)
            for mode in modes
            for row in next_window_rows("", cut, topology, mode, "", 0.0, planners)]


def preset_for_shape(num_layers: int, num_experts: int) -> ModelPreset | None:
    """The model preset with this many MoE layers and routed experts and a known expert size, if any.

    The built-in samples and generated loads have their model's shape, so this finds
    the expert size a sweep or a replay prices copies with.
    """
    return next((p for p in PRESETS.values() if (p.num_layers, p.num_experts) == (num_layers, num_experts)
                 and p.expert_bytes > 0), None)


SWEEP_AXES = {
    "redundant": "redundant slots",
    "gpus": "GPUs",
    "nodes": "nodes",
    "groups": "expert groups",
}


GPU_HOLDS = {
    "redundant": "redundant slots",
    "slots_per_gpu": "slots per GPU",
    "redundant_per_gpu": "redundant slots per GPU",
}
"""What a GPUs sweep keeps fixed while the GPU count changes (the nodes stay the sidebar's)."""


def divisors(n: int) -> list[int]:
    """Every divisor of n, ascending: the group counts that divide n experts, the node counts that divide n GPUs."""
    return [d for d in range(1, n + 1) if n % d == 0]


def sweep_values(axis: str, num_experts: int, base: Topology, *, max_redundant: int | None = None,
                 step: int | None = None, hold: str = "redundant", max_gpus: int | None = None) -> list[int]:
    """The values of one axis that make a valid topology with the rest of ``base`` held fixed.

    redundant: 0, step, 2*step, ... up to max_redundant (default: 4 slots per GPU), keeping
    only counts the GPUs divide evenly; gpus: multiples of the nodes up to max_gpus (default
    4 x base's GPUs, at least 64) that fit with ``hold`` (see ``topology_at``): with the
    redundant count held, only divisors of the slots; nodes: every divisor of the GPU
    count; groups: every divisor of the expert count.
    """
    if axis not in SWEEP_AXES:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(SWEEP_AXES)}")
    redundant = base.num_replicas - num_experts
    if axis == "redundant":
        step = step or base.num_gpus
        top = 4 * base.num_gpus if max_redundant is None else max_redundant
        return [r for r in range(0, top + 1, step) if (num_experts + r) % base.num_gpus == 0]
    if axis == "gpus" and hold == "redundant":
        return [g for g in divisors(num_experts + redundant) if g % base.num_nodes == 0]
    if axis == "gpus":
        top = max(4 * base.num_gpus, 64) if max_gpus is None else max_gpus
        values = []
        for g in range(base.num_nodes, top + 1, base.num_nodes):
            t = topology_at(axis, g, num_experts, base, hold=hold)
            if t.num_replicas >= num_experts and t.num_replicas % g == 0:
                values.append(g)
        return values
    if axis == "nodes":
        return divisors(base.num_gpus)
    return divisors(num_experts)


def topology_at(axis: str, value: int, num_experts: int, base: Topology, *, hold: str = "redundant") -> Topology:
    """``base`` with one axis set to value (redundant slots are counted on top of the experts).

    For the gpus axis, hold says what stays: "redundant" the redundant slot count,
    "slots_per_gpu" base's slots per GPU (slots = GPUs x that), "redundant_per_gpu" the
    redundant slots per GPU (the redundant share of each GPU: the count nearest to GPUs x base's
    redundant slots per GPU that spreads evenly, the larger on a tie).
    """
    field = {"redundant": "num_replicas", "gpus": "num_gpus", "nodes": "num_nodes", "groups": "num_groups"}
    if axis not in field:
        raise ValueError(f"unknown sweep axis {axis!r}: choose one of {', '.join(SWEEP_AXES)}")
    if axis == "gpus" and hold != "redundant":
        if hold not in GPU_HOLDS:
            raise ValueError(f"unknown hold {hold!r}: choose one of {', '.join(GPU_HOLDS)}")
        if hold == "slots_per_gpu":
            return replace(base, num_gpus=value, num_replicas=value * base.slots_per_gpu)
        wanted = (base.num_replicas - num_experts) / base.num_gpus * value  # redundant slots at base's share
        low = (num_experts + int(wanted)) // value * value  # slot counts on both sides of the wanted one
        candidates = [p for p in (low, low + value) if p >= num_experts] or [num_experts + (-num_experts) % value]
        slots = min(candidates, key=lambda p: (abs(p - num_experts - wanted), -p))
        return replace(base, num_gpus=value, num_replicas=slots)
    return replace(base, **{field[axis]: num_experts + value if axis == "redundant" else value})


def memory_of_copies(topology: Topology, num_layers: int, num_experts: int, expert_bytes: int) -> int:
    """Bytes the redundant copies take on the whole deployment: redundant slots x layers x expert_bytes."""
    return max(topology.num_replicas - num_experts, 0) * num_layers * expert_bytes


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
    hold: str = "redundant",
) -> list[SweepPoint]:
    """Run every policy at every value of one axis. weight: [L, E]. hold: what a gpus sweep keeps (``topology_at``).

    redundant_bytes = redundant slots per layer x layers x expert_bytes: the memory the
    extra copies take on the whole deployment. ``progress(done, total)`` is called after
    each point, so a UI can show a bar (and cancel by raising).
    """
    names = list(policies or POLICIES)
    values = list(values)
    num_layers, num_experts = weight.shape
    points = []
    for index, value in enumerate(values):
        topology = topology_at(axis, value, num_experts, base, hold=hold)
        redundant_bytes = memory_of_copies(topology, num_layers, num_experts, expert_bytes)
        try:
            runs = _policies_on(weight, topology, names, mode)
            points += [SweepPoint(axis, value, run.policy, topology, run, redundant_bytes) for run in runs]
        except ValueError as exc:  # the topology does not fit: the same reason for every policy
            points += [SweepPoint(axis, value, name, topology, None, redundant_bytes, str(exc)) for name in names]
        if progress is not None:
            progress(index + 1, len(values))
    return points

"""Replay a load trace through an online rebalancer, as vLLM and SGLang run one.

The serving engine starts on vLLM's initial map (slot i holds expert i % E). Every
``interval`` steps it plans a new placement from the last ``window`` steps, given
to the policy as history [window, layers, experts] (never the current or later
steps), optionally skipping the rebalance while the current placement's
balancedness over that window stays at or above ``threshold`` (SGLang's behaviour),
and always while the window carried no load (there is nothing to plan from). The
placement on the GPUs goes to the planner as ``previous=`` (unless ``keep_copies``
is off), so the plan keeps what copies it can in place, and ``balance_tolerance``
trades balance on the window for fewer moved copies (``eplb.migration``). Each step
is scored with the placement in force at that step, so a plan is judged on the
traffic that follows it.

Two balancedness figures are told apart: the window's (on the window's summed load,
how a plan is chosen) and the step's (on one step's load). A step's load is noisier
than a window's sum, so a step's balancedness is lower than the window's for the same
placement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .metrics import initial_phy2log, migration
from .policies.base import copy_counts
from .rebalance import Topology, place_experts, validate_weight


@dataclass(frozen=True)
class Rebalance:
    """One rebalance: the step whose traffic it first serves, and what moving there costs."""

    step: int
    balancedness_before: float  # of the outgoing placement, on the planning window's summed load
    balancedness_after: float  # of the incoming placement, on the same load
    balancedness_next: float  # of the incoming placement, on the summed load of the steps it serves (NaN: no load)
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

    @property
    def copies_per_rebalance(self) -> float | None:
        return self.total_copies_sent / len(self.rebalances) if self.rebalances else None

    @property
    def mean_next_window(self) -> float | None:
        """Mean over rebalances of each new placement's balancedness on the summed load it then serves."""
        return _nanmean(torch.tensor([r.balancedness_next for r in self.rebalances], dtype=torch.float64))

    def priced(self, expert_bytes: int) -> ReplayResult:
        """The same replay with every rebalance's bytes_moved recomputed for experts of expert_bytes each."""
        return replace(self, rebalances=[replace(r, bytes_moved=r.copies_sent * expert_bytes) for r in self.rebalances])


def _nanmean(values: torch.Tensor) -> float | None:
    known = values[~values.isnan()]
    return float(known.mean()) if known.numel() else None


def step_balancedness(trace: torch.Tensor, phy2log: torch.Tensor, num_gpus: int, *,
                      chunk_bytes: int = 16 * 2**20) -> torch.Tensor:
    """vLLM balancedness of one placement on each step of trace [T, L, E]: -> [T] float64 (NaN without load).

    Per step: sum over layers of mean GPU load / sum over layers of max GPU load. Each
    layer's placement is a [E, G] matrix (share of an expert's tokens each GPU serves)
    applied to every step at once; steps go through in chunks of about chunk_bytes of
    float32, so the trace is never copied whole nor the placement repeated per step.
    """
    steps, layers, experts = trace.shape
    logcnt = copy_counts(phy2log, experts)  # [L, E]
    share = torch.zeros(layers, experts, num_gpus, dtype=torch.float32, device=trace.device)
    gpu_of_slot = (torch.arange(phy2log.shape[1], device=trace.device) // (phy2log.shape[1] // num_gpus))
    share.index_put_((torch.arange(layers, device=trace.device).unsqueeze(-1), phy2log, gpu_of_slot.expand_as(phy2log)),
                     torch.ones((), device=trace.device), accumulate=True)
    share /= logcnt.clamp(min=1).unsqueeze(-1)
    mean_sum = torch.empty(steps, dtype=torch.float64, device=trace.device)
    peak_sum = torch.empty(steps, dtype=torch.float64, device=trace.device)
    chunk = max(1, chunk_bytes // (4 * layers * max(experts, num_gpus)))
    for start in range(0, steps, chunk):
        part = trace[start : start + chunk].to(torch.float32).transpose(0, 1)  # [L, t, E]
        loads = torch.bmm(part, share)  # [L, t, G]
        mean_sum[start : start + chunk] = loads.mean(-1).sum(0, dtype=torch.float64)
        peak_sum[start : start + chunk] = loads.max(-1).values.sum(0, dtype=torch.float64)
    return torch.where(peak_sum > 0, mean_sum / peak_sum.clamp(min=1e-300), torch.nan)


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
    keep_copies: bool = True,
    balance_tolerance: float | None = None,
) -> ReplayResult:
    """Replay trace [T, L, E] on topology; see the module docstring for the rules.

    keep_copies: pass the placement on the GPUs to the planner as ``previous=``;
    off, every plan is packed from scratch. balance_tolerance: see
    ``eplb.rebalance_experts`` (needs keep_copies).
    """
    steps = trace.shape[0] if trace.dim() == 3 else 0
    if trace.dim() != 3 or steps == 0:
        raise ValueError(f"a trace must be 3-D [steps, layers, experts], got shape {tuple(trace.shape)}")
    for name, value in (("window", window), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive number of steps, got {value!r}")
    if balance_tolerance is not None and not keep_copies:
        raise ValueError("balance_tolerance needs keep_copies: it trades balance for copies kept in place")
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
        history = trace[max(0, start - window) : start]  # [window, L, E]
        planning = history.double().sum(0, keepdim=True)  # [1, L, E]
        before = step_balancedness(planning, current, topology.num_gpus)[0]
        if before.isnan():  # no traffic in the window: nothing to plan from, keep the placement
            continue
        before_value = float(before)
        if threshold is not None and before_value >= threshold:
            continue
        phy2log = place_experts(
            history, topology.num_replicas, topology.num_groups, topology.num_nodes, topology.num_gpus,
            policy=policy, mode=mode, previous=current if keep_copies else None,
            balance_tolerance=balance_tolerance if keep_copies else None,
        )
        moved = migration(current, phy2log, topology.num_gpus, num_experts, expert_bytes)
        after = float(step_balancedness(planning, phy2log, topology.num_gpus)[0])
        served = trace[start : start + interval].double().sum(0, keepdim=True)  # scored only, never planned on
        following = float(step_balancedness(served, phy2log, topology.num_gpus)[0])
        rebalances.append(
            Rebalance(start, before_value, after, following, moved.total_copies_sent, moved.total_slots_changed,
                      moved.total_bytes_sent)
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


@dataclass(frozen=True)
class TradeoffPoint:
    """One setting of the migration knob and what the replay did with it."""

    label: str
    keep_copies: bool
    balance_tolerance: float | None
    result: ReplayResult


TRADEOFF_SETTINGS = (("fresh plan", False, None), ("relabel only", True, None), ("tolerance 0%", True, 0.0),
                     ("tolerance 0.5%", True, 0.005), ("tolerance 0.75%", True, 0.0075), ("tolerance 1%", True, 0.01),
                     ("tolerance 2%", True, 0.02), ("tolerance 5%", True, 0.05))
"""The knob settings a trade-off curve samples: (label, keep_copies, balance_tolerance)."""


def tradeoff(trace: torch.Tensor, topology: Topology, *, settings=TRADEOFF_SETTINGS, **options) -> list[TradeoffPoint]:
    """The same replay at every knob setting: balancedness against copies moved. options: as ``replay``'s."""
    return [TradeoffPoint(label, keep, tolerance,
                          replay(trace, topology, keep_copies=keep, balance_tolerance=tolerance, **options))
            for label, keep, tolerance in settings]

"""Two topologies on one load, side by side: "what if we ran this on 64 GPUs instead of 32?".

``compare_topologies`` rebalances the same load on topology A and topology B with one
policy and mode, and returns both runs with their inter-node dispatch estimate
(``eplb.traffic``) and expert memory per GPU, plus ``differences``: every figure
of A and B in one list, for a table that spells out what changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .analysis import Run, divisors, run_policy
from .presets import ModelPreset
from .rebalance import Topology
from .traffic import Traffic, dispatch_traffic, tokens_per_step

__all__ = ["Difference", "Side", "TopologyComparison", "compare_topologies", "divisors", "nearest",
           "redundant_choices"]


@dataclass(frozen=True)
class Side:
    """One topology's result: the run, its traffic estimate (None without a model), and memory per GPU.

    memory_per_gpu: bytes of expert weights on one GPU (slots per GPU x MoE layers x one
    expert's bytes), None when the expert size is unknown.
    """

    topology: Topology
    num_experts: int
    run: Run
    traffic: Traffic | None
    memory_per_gpu: int | None

    @property
    def redundant(self) -> int:
        return self.topology.num_replicas - self.num_experts


@dataclass(frozen=True)
class Difference:
    """One figure on both sides. unit: "" for a count or ratio, "bytes", "tokens"; better: "higher" or "lower"."""

    label: str
    a: float | None
    b: float | None
    unit: str = ""
    better: str = "higher"

    @property
    def change(self) -> float | None:
        """B - A, None when either side has no value."""
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class TopologyComparison:
    """Topology A and B on the same load [L, E]."""

    a: Side
    b: Side

    @property
    def differences(self) -> list[Difference]:
        """Every figure of A beside B: topology first, then balance, network and memory."""
        a, b = self.a, self.b
        rows = [
            Difference("GPUs", a.topology.num_gpus, b.topology.num_gpus, better=""),
            Difference("nodes", a.topology.num_nodes, b.topology.num_nodes, better=""),
            Difference("slots per GPU", a.topology.slots_per_gpu, b.topology.slots_per_gpu, better=""),
            Difference("redundant slots per layer", a.redundant, b.redundant, better=""),
            Difference("balancedness (mean / max GPU load)", a.run.report.balancedness, b.run.report.balancedness),
            Difference("bound's balancedness (best possible)", a.run.report.bound_balancedness,
                       b.run.report.bound_balancedness),
            Difference("max / mean GPU load", a.run.report.straggler_factor, b.run.report.straggler_factor,
                       better="lower"),
        ]
        if a.traffic is not None and b.traffic is not None:
            rows += [
                Difference("nodes a token reaches", a.traffic.nodes_reached, b.traffic.nodes_reached, better="lower"),
                Difference("tokens sent between nodes per MoE layer", a.traffic.tokens_per_layer,
                           b.traffic.tokens_per_layer, "tokens", better="lower"),
                Difference("dispatch bytes between nodes per step", a.traffic.bytes_per_step,
                           b.traffic.bytes_per_step, "bytes", better="lower"),
            ]
        if a.memory_per_gpu is not None and b.memory_per_gpu is not None:
            rows.append(Difference("expert weights per GPU", a.memory_per_gpu, b.memory_per_gpu, "bytes",
                                   better="lower"))
        return rows


def _side(weight: torch.Tensor, topology: Topology, policy: str | None, mode: str, model: ModelPreset | None,
          expert_bytes: int | None, run: Run | None = None) -> Side:
    run = run_policy(weight, topology, policy, mode) if run is None else run
    traffic = None
    if model is not None:
        traffic = dispatch_traffic(topology, run.mode, model, tokens_per_step(weight, model.top_k),
                                   num_layers=weight.shape[0])
    memory = None if not expert_bytes else topology.slots_per_gpu * weight.shape[0] * expert_bytes
    return Side(topology, weight.shape[1], run, traffic, memory)


def compare_topologies(weight: torch.Tensor, a: Topology, b: Topology, *, policy: str | None = None,
                       mode: str = "auto", model: ModelPreset | None = None,
                       expert_bytes: int | None = None, run_a: Run | None = None) -> TopologyComparison:
    """Rebalance weight [L, E] on topology A and on topology B with one policy and mode; see ``TopologyComparison``.

    model: the load's model preset, for the traffic estimate (None: no estimate);
    expert_bytes: one expert's weights (default the model's; 0 or None without a model: no memory figure).
    run_a: A's run when the caller already has it (this weight, policy and mode on A): used instead of
    rebalancing A again.
    Raises the contract's ValueError, prefixed with "topology A" or "topology B", when one does not fit.
    """
    if expert_bytes is None and model is not None:
        expert_bytes = model.expert_bytes
    sides = []
    if run_a is not None and run_a.topology != a:
        raise ValueError(f"run_a is a run on {run_a.topology}, not on topology A ({a})")
    for name, topology, run in (("A", a, run_a), ("B", b, None)):
        try:
            sides.append(_side(weight, topology, policy, mode, model, expert_bytes, run))
        except ValueError as exc:
            raise ValueError(f"topology {name}: {exc}") from exc
    return TopologyComparison(*sides)


def redundant_choices(num_experts: int, num_gpus: int, limit: int) -> list[int]:
    """Redundant slot counts r in [0, limit] that spread evenly: (num_experts + r) divisible by num_gpus."""
    first = (-num_experts) % num_gpus
    return list(range(first, limit + 1, num_gpus))


def nearest(choices: list[int], value: int, count: int = 2) -> list[int]:
    """The ``count`` choices nearest to value (ties: the smaller first), in ascending order."""
    return sorted(sorted(choices, key=lambda c: (abs(c - value), c))[:count])

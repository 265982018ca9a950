"""What a placement does to a load: per-GPU load, the engines' balance metrics, migration cost.

Conventions: ``weight`` is [layers, experts] load; ``phy2log`` is [layers, P] with
slots of one GPU contiguous. An expert's load is split evenly over its copies, as
the serving engines route tokens round-robin over an expert's replicas.

Two balance metrics are logged by the engines and differ on skewed layers:

* vLLM ``balancedness``: sum over layers of the mean GPU load / sum over layers of the max;
* SGLang ``utilization rate``: per layer (mean + 1e-5) / (max + 1e-5), averaged over layers.

A layer with no load has no meaningful balance; per-layer values are NaN there and
whole-matrix values are None when no layer has load, so a caller can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bounds import bound_balancedness, lower_bound
from .migration import copies_sent
from .policies.base import copy_loads


def initial_phy2log(num_layers: int, num_experts: int, num_replicas: int, device=None) -> torch.Tensor:
    """vLLM's placement before any rebalance: slot i holds expert i % num_experts. -> [L, P]."""
    return (torch.arange(num_replicas, device=device) % num_experts).expand(num_layers, -1).clone()


def slot_loads(weight: torch.Tensor, phy2log: torch.Tensor) -> torch.Tensor:
    """Load each physical slot carries: [L, P] float."""
    return copy_loads(weight.double(), phy2log)


def gpu_loads(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Tokens each GPU serves: [L, num_gpus] float64."""
    return slot_loads(weight, phy2log).view(phy2log.shape[0], num_gpus, -1).sum(-1)


def node_loads(weight: torch.Tensor, phy2log: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Tokens each node serves: [L, num_nodes] float64."""
    return gpu_loads(weight, phy2log, num_nodes)


def layer_balancedness(loads: torch.Tensor) -> torch.Tensor:
    """Mean / max per layer of a [L, ranks] load; NaN where a layer has no load. -> [L]."""
    peak = loads.max(dim=-1).values
    return torch.where(peak > 0, loads.mean(dim=-1) / peak, torch.nan)


def balancedness(loads: torch.Tensor) -> float | None:
    """vLLM's balancedness: sum of per-layer means / sum of per-layer maxima; None if no load."""
    peak = loads.max(dim=-1).values.sum()
    return float(loads.mean(dim=-1).sum() / peak) if peak > 0 else None


def utilization_rate(loads: torch.Tensor) -> float | None:
    """SGLang's utilization rate: mean over loaded layers of (mean + 1e-5) / (max + 1e-5)."""
    loaded = loads.max(dim=-1).values > 0
    if not bool(loaded.any()):
        return None
    rate = (loads.mean(dim=-1) + 1e-5) / (loads.max(dim=-1).values + 1e-5)
    return float(rate[loaded].mean())


def straggler_factor(loads: torch.Tensor) -> float | None:
    """Max / mean over all layers: how much longer the slowest GPU takes (1 / balancedness)."""
    value = balancedness(loads)
    return None if value is None else 1.0 / value


def duplicate_gpus(phy2log: torch.Tensor, num_gpus: int) -> int:
    """Number of (layer, GPU) pairs where the GPU holds two or more copies of one expert."""
    per_gpu = phy2log.view(phy2log.shape[0], num_gpus, -1).sort(dim=-1).values
    return int((per_gpu[..., 1:] == per_gpu[..., :-1]).any(dim=-1).sum())


@dataclass(frozen=True)
class Migration:
    """Cost of moving from one placement to another, per layer ([L] int64 tensors).

    copies_sent: expert copies GPUs must receive (a GPU that already holds the expert
    needs nothing); bytes_sent: the same in bytes, for experts of ``expert_bytes`` each.
    """

    slots_changed: torch.Tensor
    copies_sent: torch.Tensor
    expert_bytes: int = 0

    @property
    def bytes_sent(self) -> torch.Tensor:
        return self.copies_sent * self.expert_bytes

    @property
    def total_slots_changed(self) -> int:
        return int(self.slots_changed.sum())

    @property
    def total_copies_sent(self) -> int:
        return int(self.copies_sent.sum())

    @property
    def total_bytes_sent(self) -> int:
        return self.total_copies_sent * self.expert_bytes


def migration(old_phy2log: torch.Tensor, new_phy2log: torch.Tensor, num_gpus: int, num_experts: int,
              expert_bytes: int = 0) -> Migration:
    """Slots whose expert changed, and expert copies (and bytes) GPUs must receive because they did not hold them.

    Both placements: [L, P] on the same topology; expert_bytes: one expert's weights in bytes.
    """
    if old_phy2log.shape != new_phy2log.shape:
        raise ValueError(f"placements differ in shape: {tuple(old_phy2log.shape)} vs {tuple(new_phy2log.shape)}")
    return Migration(
        slots_changed=(old_phy2log != new_phy2log).sum(dim=-1),
        copies_sent=copies_sent(old_phy2log, new_phy2log, num_gpus, num_experts),
        expert_bytes=expert_bytes,
    )


@dataclass(frozen=True)
class PlacementReport:
    """Everything the engines log about one placement of one load matrix.

    gpu_loads [L, G], node_loads [L, N], layer_balancedness [L] (NaN for a layer
    without load), bound [L] (proven lower bound on the max GPU load). Whole-matrix
    figures are None when the matrix has no load at all.
    """

    gpu_loads: torch.Tensor
    node_loads: torch.Tensor
    layer_balancedness: torch.Tensor
    bound: torch.Tensor
    balancedness: float | None
    utilization_rate: float | None
    straggler_factor: float | None
    node_balancedness: float | None
    bound_balancedness: float | None
    duplicate_gpus: int

    @property
    def gap_to_bound(self) -> float | None:
        """How far balancedness is below what the bound allows (0 = provably optimal)."""
        if self.balancedness is None or self.bound_balancedness is None:
            return None
        return self.bound_balancedness - self.balancedness


def evaluate(
    weight: torch.Tensor, phy2log: torch.Tensor, topology, mode: str = "auto", *, bound: torch.Tensor | None = None
) -> PlacementReport:
    """Measure a placement phy2log [L, P] of load weight [L, E] on a ``Topology``.

    bound: the [L] lower bound of ``eplb.bounds.lower_bound`` when the caller already has it;
    it depends on the load, topology and mode only, so placements compared on one load share it.
    """
    loads = gpu_loads(weight, phy2log, topology.num_gpus)
    nodes = loads.view(loads.shape[0], topology.num_nodes, -1).sum(-1)
    if bound is None:
        bound = lower_bound(
            weight, topology.num_replicas, topology.num_groups, topology.num_nodes, topology.num_gpus, mode
        )
    return PlacementReport(
        gpu_loads=loads,
        node_loads=nodes,
        layer_balancedness=layer_balancedness(loads),
        bound=bound,
        balancedness=balancedness(loads),
        utilization_rate=utilization_rate(loads),
        straggler_factor=straggler_factor(loads),
        node_balancedness=balancedness(nodes),
        bound_balancedness=bound_balancedness(weight, bound, topology.num_gpus),
        duplicate_gpus=duplicate_gpus(phy2log, topology.num_gpus),
    )

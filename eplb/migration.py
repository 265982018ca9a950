"""Migration-aware rebalance: keep a new plan's copies where the previous placement already has them.

A placement's balance depends only on which copies share a GPU, never on the GPUs'
or slots' labels. So a new plan can be relabelled, at no cost in balance, to overlap
as much as possible with the placement already on the GPUs (``previous``):

* slots inside a GPU are interchangeable;
* GPUs are interchangeable: all of them in global mode, those inside one node in
  hierarchical mode (a GPU may not leave its node: the node holds whole expert groups);
* nodes are interchangeable in hierarchical mode, a node's GPUs moving together.

Each level is an assignment problem solved with ``scipy.optimize.linear_sum_assignment``:
GPU to GPU on the number of copies a GPU already holds, node to node on the best
GPU matching between the two nodes. Inside a GPU the matching has a closed form (a
copy stays in the slot that already holds its expert).

``balance_tolerance`` goes further: per layer it keeps the previous placement as it
is when that placement's heaviest GPU, on the planning load, is within the tolerance
of the fresh plan's, and otherwise takes the relabelled fresh plan. Each layer's
heaviest GPU is then at most ``1 / (1 - tolerance)`` times the fresh plan's, so the
whole placement's balancedness on the planning load is at least ``1 - tolerance``
times the fresh plan's.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .policies.base import copy_counts, copy_loads


def validate_previous(previous, num_layers: int, num_replicas: int, num_experts: int, device) -> torch.Tensor:
    """Check the placement now on the GPUs: [layers, num_replicas] expert ids, each expert at least once per layer.

    Returns it as an int64 tensor on ``device``. Raises ValueError naming the broken rule.
    """
    if not isinstance(previous, torch.Tensor):
        try:
            previous = torch.as_tensor(previous)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"previous must be a [layers, num_replicas] array of expert ids: {exc}") from None
    if previous.dtype == torch.bool or previous.is_floating_point() or previous.is_complex():
        raise ValueError(f"previous must hold integer expert ids (a phy2log), got dtype {previous.dtype}")
    if tuple(previous.shape) != (num_layers, num_replicas):
        raise ValueError(
            f"previous must be phy2log of shape [layers, num_replicas] = [{num_layers}, {num_replicas}], "
            f"got shape {tuple(previous.shape)}"
        )
    previous = previous.to(device=device, dtype=torch.int64)
    low, high = int(previous.min()), int(previous.max())
    if low < 0 or high >= num_experts:
        bad = (previous < 0) | (previous >= num_experts)
        layer, slot = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"previous holds expert id {int(previous[layer, slot])} at layer {layer}, slot {slot}: "
            f"expert ids must be in 0..{num_experts - 1}"
        )
    missing = copy_counts(previous, num_experts) == 0
    if bool(missing.any()):
        layer, expert = (int(i) for i in missing.nonzero()[0])
        raise ValueError(
            f"previous has no copy of expert {expert} in layer {layer} ({int(missing.sum())} (layer, expert) "
            "pairs without a copy): a placement needs at least one copy of every expert"
        )
    return previous


def overlap(new: torch.Tensor, old: torch.Tensor, num_experts: int) -> torch.Tensor:
    """How well each new GPU's copies fit each old GPU: new, old [L, G, s] -> [L, G, G] float64 score.

    score[l, g, h] = (s + 1) * (experts held by both new GPU g and old GPU h) + (further
    copies in common): sharing an expert saves sending it, which comes first; a second
    copy in common keeps one more slot unchanged.
    """
    num_layers, num_gpus, slots = new.shape

    def held(phy2log: torch.Tensor) -> torch.Tensor:  # [L, G, E] copies of each expert per GPU
        return copy_counts(phy2log.reshape(-1, slots), num_experts).view(num_layers, num_gpus, num_experts)

    count_new, count_old = held(new), held(old)
    score = torch.zeros(num_layers, num_gpus, num_gpus, dtype=torch.float64, device=new.device)
    for k in range(1, int(max(count_new.max(), count_old.max())) + 1):
        weight = float(slots + 1) if k == 1 else 1.0
        score += weight * ((count_new >= k).double() @ (count_old >= k).double().transpose(1, 2))
    return score


def match_gpus(score: np.ndarray, num_nodes: int) -> np.ndarray:
    """Which new GPU goes where: score [L, G, G] (new x old) -> gpu_at [L, G], gpu_at[l, h] = new GPU at position h.

    num_nodes > 1 keeps every GPU inside its node and moves nodes whole: the node
    matching weighs node pairs by their best GPU matching.
    """
    num_layers, num_gpus, _ = score.shape
    per_node = num_gpus // num_nodes
    gpu_at = np.empty((num_layers, num_gpus), dtype=np.int64)
    blocks = score.reshape(num_layers, num_nodes, per_node, num_nodes, per_node)
    for layer in range(num_layers):
        inner = {}  # (new node, old node) -> (old GPU order within the node)
        node_score = np.empty((num_nodes, num_nodes))
        for n in range(num_nodes):
            for m in range(num_nodes):
                rows, cols = linear_sum_assignment(blocks[layer, n, :, m, :], maximize=True)
                inner[n, m] = cols
                node_score[n, m] = blocks[layer, n, rows, m, cols].sum()
        new_nodes, old_nodes = linear_sum_assignment(node_score, maximize=True)
        for n, m in zip(new_nodes, old_nodes):
            gpu_at[layer, m * per_node + inner[n, m]] = n * per_node + np.arange(per_node)
    return gpu_at


def match_slots(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Order each GPU's new copies so that as many as possible sit in a slot that holds their expert now.

    new, old: [R, s] expert ids of R GPUs' slots. Returns new's rows permuted. The
    k-th copy of an expert in new takes the slot of its k-th copy in old; the rest
    fill the remaining slots in order.
    """
    rows, slots = new.shape
    earlier = torch.ones(slots, slots, dtype=torch.bool, device=new.device).tril(-1)

    def keyed(ids: torch.Tensor) -> torch.Tensor:  # expert * s + (rank of this copy among its expert's in the row)
        rank = ((ids.unsqueeze(-1) == ids.unsqueeze(-2)) & earlier).sum(-1)
        return ids * slots + rank

    same = keyed(new).unsqueeze(-1) == keyed(old).unsqueeze(-2)  # [R, new slot, old slot], at most one per row
    stays, kept_slot = same.any(-1), same.int().argmax(-1)
    taken = same.any(-2)
    free = taken.int().argsort(dim=-1, stable=True)  # free old slots first, in slot order
    nth_free = (~stays).long().cumsum(-1) - 1
    target = torch.where(stays, kept_slot, free.gather(-1, nth_free.clamp(min=0)))
    return torch.empty_like(new).scatter_(-1, target, new)


def relabel(phy2log: torch.Tensor, previous: torch.Tensor, num_experts: int, num_gpus: int,
            num_nodes: int) -> torch.Tensor:
    """Relabel GPUs, nodes and slots of phy2log [L, P] to overlap most with previous [L, P]; same GPU loads.

    num_nodes: 1 when every GPU is interchangeable (global mode), else the node count
    (hierarchical mode: GPUs stay in their node, nodes move whole).
    """
    num_layers, num_replicas = phy2log.shape
    slots = num_replicas // num_gpus
    new = phy2log.view(num_layers, num_gpus, slots)
    old = previous.view(num_layers, num_gpus, slots)
    gpu_at = match_gpus(overlap(new, old, num_experts).cpu().numpy(), num_nodes)
    placed = new.gather(1, torch.from_numpy(gpu_at).to(new.device).unsqueeze(-1).expand(-1, -1, slots))
    return match_slots(placed.reshape(-1, slots), old.reshape(-1, slots)).view(num_layers, num_replicas)


def heaviest_gpu(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Max GPU load per layer: weight [L, E], phy2log [L, P] -> [L] float64."""
    return copy_loads(weight.double(), phy2log).view(phy2log.shape[0], num_gpus, -1).sum(-1).max(-1).values


def keep_in_place(phy2log: torch.Tensor, previous: torch.Tensor, weight: torch.Tensor, num_gpus: int,
                  num_nodes: int, balance_tolerance: float = 0.0) -> torch.Tensor:
    """The fresh plan phy2log [L, P] relabelled onto previous [L, P]; layers within tolerance keep previous.

    weight: [L, E] planning load. balance_tolerance: 0 (relabel only, balance
    unchanged) to < 1 (a layer keeps its previous placement while that placement's
    heaviest GPU is at most 1 / (1 - balance_tolerance) times the fresh plan's).
    """
    kept = relabel(phy2log, previous, weight.shape[-1], num_gpus, num_nodes)
    if balance_tolerance > 0:
        fresh_peak = heaviest_gpu(weight, phy2log, num_gpus)
        stay = heaviest_gpu(weight, previous, num_gpus) * (1 - balance_tolerance) <= fresh_peak
        kept = torch.where(stay.unsqueeze(-1), previous, kept)
    return kept

"""Proven lower bounds on the best achievable max GPU load, per layer.

For a layer with loads w_e (E experts), P slots on G GPUs (S = P / G each), every
placement that satisfies the contract has max GPU load >= each of:

1. Mean bound: sum_e w_e / G. The GPU loads sum to the layer's load.

2. Copy bound: T* = min over counts c (c_e >= 1, sum_e c_e = P) of
   max_e w_e / min(c_e, K), with K = min(G, P - E + 1). Proof: an expert with c_e
   copies puts load w_e * k / c_e on a GPU holding k of them; some GPU holds
   k >= ceil(c_e / G) copies, and w_e * ceil(c_e / G) / c_e >= w_e / min(c_e, G).
   An expert can have at most P - E + 1 copies since every other expert needs one.
   Whatever counts the placement uses, its max is therefore >= T*. Adding copies
   one at a time to the expert with the largest w_e / c_e (stopping at K) minimises
   the largest w_e / c_e, so that greedy computes T* exactly.

3. Hierarchical mode only, node bound: every node holds q = groups / nodes whole
   groups and its load is shared by its G / N GPUs. With group loads sorted
   g_1 >= g_2 >= ..., for j = 0..q-1 the top jN + 1 groups put j + 1 of them on
   one node (pigeonhole); that node carries at least g_{jN+1-j} + ... + g_{jN+1}
   (the j + 1 smallest of the top jN + 1) plus its q - j - 1 other groups, which
   weigh at least the q - j - 1 lightest groups (these never overlap the first
   set, since qN - q + j + 2 > jN + 1). Divide by G / N GPUs. The copy bound
   also tightens: an expert's copies stay on its node, so K = min(G / N, P / N - E / N + 1).

The bound's balancedness, sum of per-layer means / sum of per-layer bounds, is
the best balancedness any placement could reach.
"""

from __future__ import annotations

import torch

from .policies.joint import two_slot_search
from .rebalance import Topology


def copy_bound(weight: torch.Tensor, num_replicas: int, max_copies: int) -> torch.Tensor:
    """T*: the least possible largest load per copy. weight [L, E] -> [L] float64."""
    num_layers, num_experts = weight.shape
    w = weight.double()
    logcnt = torch.ones_like(w)
    rows = torch.arange(num_layers, device=w.device)
    for _ in range(num_replicas - num_experts):
        per_copy = torch.where(logcnt < max_copies, w / logcnt, -1.0)
        hottest = per_copy.argmax(dim=-1)
        can_add = per_copy[rows, hottest] > 0
        if not bool(can_add.any()):
            break
        logcnt[rows, hottest] += can_add.double()
    return (w / logcnt.clamp(max=max_copies)).max(dim=-1).values


def node_bound(group_load: torch.Tensor, num_nodes: int, gpus_per_node: int) -> torch.Tensor:
    """Pigeonhole bound on the heaviest node's load per GPU. group_load [L, groups] -> [L]."""
    num_groups = group_load.shape[-1]
    per_node = num_groups // num_nodes
    g = group_load.double().sort(dim=-1, descending=True).values
    best = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    for j in range(per_node):
        top = g[:, j * num_nodes - j : j * num_nodes + 1].sum(-1)  # the j+1 smallest of the top jN+1
        rest = g[:, num_groups - (per_node - j - 1) :].sum(-1) if per_node - j - 1 > 0 else 0.0
        best = torch.maximum(best, top + rest)
    return best / gpus_per_node


def lower_bound(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int, mode: str = "auto"
) -> torch.Tensor:
    """Proven lower bound on the max GPU load of any valid placement, per layer: [L] float64."""
    topology = Topology(num_replicas, num_groups, num_nodes, num_gpus)
    resolved = topology.validate(weight.shape[-1], mode)
    num_experts = weight.shape[-1]
    w = weight.double()
    bound = w.sum(-1) / num_gpus
    if resolved == "global":
        max_copies = min(num_gpus, num_replicas - num_experts + 1)
        return torch.maximum(bound, copy_bound(w, num_replicas, max_copies))
    gpus_per_node = num_gpus // num_nodes
    max_copies = min(gpus_per_node, (num_replicas - num_experts) // num_nodes + 1)
    group_load = w.view(w.shape[0], num_groups, -1).sum(-1)
    bound = torch.maximum(bound, node_bound(group_load, num_nodes, gpus_per_node))
    return torch.maximum(bound, copy_bound(w, num_replicas, max_copies))


def bound_balancedness(weight: torch.Tensor, bound: torch.Tensor, num_gpus: int) -> float | None:
    """Best reachable vLLM balancedness: sum of means / sum of per-layer bounds; None without load."""
    total = bound.sum()
    return float(weight.double().sum() / num_gpus / total) if total > 0 else None


def exact_two_slot_optimum(weight: torch.Tensor, num_gpus: int) -> torch.Tensor | None:
    """The least possible max GPU load in global mode with two slots per GPU, per layer: [L] float64.

    Exact, by enumerating every count vector (see ``two_slot_search``); None when the
    count vectors are too many (more than ``MAX_ENUMERATED``). Mixtral's 8 experts on
    8 GPUs with 2 slots each have C(15, 7) = 6435.
    """
    result = two_slot_search(weight.double(), num_gpus)
    return None if result is None else result[0]

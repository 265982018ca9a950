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

4. Global mode only, big-copy bound (``big_copy_bound``), sharp when a few experts
   carry most of the load. Suppose some placement has max GPU load <= T. Let
   S = P / G slots per GPU, X = P - E extra copies, and call a copy "big" when its
   load w_e / c_e exceeds T / 2. Then:

   a. Two big copies never share a GPU (together they exceed T), so at most G copies
      are big, and an expert with a big copy has all its c_e copies big (copies
      split the load evenly), on c_e distinct GPUs.
   b. c_e >= a_e = ceil(w_e / T), since one copy alone is at most T. Only "heavy"
      experts, w_e > T / 2, can be big; a heavy expert that is not big has
      c_e >= b_e = ceil(2 w_e / T) copies (and b_e > a_e). Extra copies sum to X.
   c. Light-slot lemma. Let D = sum of (c_e - 1) over the non-big experts. Any k
      slots holding non-big copies carry at least Q(k - D), where Q(j) is the sum
      of the j smallest expert loads (Q(j) = 0 for j <= 0, j capped at E - 1).
      Proof: say the k slots cover all c_e copies of m experts and j_e < c_e
      copies of others. Then k <= m + sum over those experts of (c_e - 1) <= m + D,
      so m >= k - D; the fully covered experts contribute their whole loads, which
      are distinct non-big experts (never all E), so at least Q(k - D).
   d. The c_e GPUs of a big expert e hold one copy of e and S - 1 non-big copies
      each, so c_e T >= w_e + Q(c_e (S - 1) - D), with D = X - sum over big f of
      (c_f - 1).

   Test for T: for the h heaviest experts (h <= ``EXACT_SPLITS``) every split into
   big (set B) and not big is tried; heavy experts beyond them are only charged
   their a_e - 1 extra copies (a relaxation). For e in B, m_e is the smallest
   c >= a_e satisfying (d) with D replaced by its upper bound X - sum_B (m_f - 1)
   (two rounds, each m a lower bound on c_e). A split survives if every m_e < b_e,
   sum_B m_e <= G and sum_B (m_e - 1) + sum over the other top-h heavy experts of
   (b_e - 1) + sum over the rest of (a_e - 1) <= X. If no split survives, no
   placement reaches max load T, so the optimum exceeds T. Bisection per layer
   keeps the largest T so refuted (never more than a refuted value, so the bound
   stays proven whatever the tolerance).

The bound's balancedness, sum of per-layer means / sum of per-layer bounds, is
the best balancedness any placement could reach.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .policies.joint import two_slot_search
from .rebalance import Topology

EXACT_SPLITS = 5
"""Heaviest experts whose big / not-big split the big-copy bound enumerates (2**h splits)."""

SCAN_COPIES = 6
"""Copy counts a_e .. a_e + SCAN_COPIES - 1 scanned per big expert; beyond, a_e + SCAN_COPIES is used
as a lower bound on its count."""


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


@lru_cache(maxsize=8)
def _splits(h: int) -> torch.Tensor:
    """Every subset of h items as a mask: [2**h, h] bool (row k = the binary digits of k)."""
    return (torch.arange(2**h).unsqueeze(-1) >> torch.arange(h)) & 1 == 1


def big_copies_fit(heaviest: torch.Tensor, smallest_sums: torch.Tensor, limit: torch.Tensor,
                   slots_per_gpu: int, extra: int, num_gpus: int) -> torch.Tensor:
    """The test of bound 4: False where no placement can keep every GPU at or below ``limit``.

    heaviest: [L, H] the H heaviest loads of each layer, heaviest first (H covers every
    expert above limit / 2); smallest_sums: [L, E + 1], entry j = sum of the j smallest
    loads; limit: [L] float64 > 0; extra: P - E. Returns [L] bool (True: not refuted).
    """
    num_layers, num_heavy = heaviest.shape
    num_experts = smallest_sums.shape[-1] - 1
    h = min(num_heavy, EXACT_SPLITS)
    t = (limit * (1 + 1e-12)).unsqueeze(-1)  # a hair above: rounding never refutes a reachable T
    heavy = heaviest > t / 2
    fewest = torch.ceil(heaviest / t).clamp(min=1)  # a_e
    small_copies = torch.ceil(2 * heaviest / t)  # b_e
    others = torch.where(heavy[:, h:], fewest[:, h:] - 1, 0.0).sum(-1, keepdim=True)  # [L, 1]
    w, a, b, heavy = heaviest[:, :h], fewest[:, :h], small_copies[:, :h], heavy[:, :h]
    big = _splits(h).to(w.device)  # [K, h]
    fits = ~(big & ~heavy.unsqueeze(1)).any(-1)  # [L, K]: only heavy experts can be big
    not_big_extra = (torch.where(heavy, b - 1, 0.0).unsqueeze(1) * ~big).sum(-1)  # [L, K]
    count = a.unsqueeze(-1) + torch.arange(SCAN_COPIES, dtype=w.dtype, device=w.device)  # [L, h, J]
    m = a.unsqueeze(1).expand(-1, big.shape[0], -1)  # [L, K, h]
    for _ in range(2):
        spare = extra - torch.where(big, m - 1, 0.0).sum(-1)  # upper bound on D: [L, K]
        covered = ((slots_per_gpu - 1) * count.unsqueeze(1) - spare[..., None, None]).clamp(0, num_experts - 1)
        light = smallest_sums.gather(1, covered.long().flatten(1)).view(covered.shape)  # [L, K, h, J]
        ok = count.unsqueeze(1) * t[..., None, None] >= w[:, None, :, None] + light
        first = torch.where(ok.any(-1), ok.double().argmax(-1), float(SCAN_COPIES))
        m = torch.maximum(m, a.unsqueeze(1) + first)
    big_m = torch.where(big, m, 0.0)
    fits &= ~(big & (m >= b.unsqueeze(1))).any(-1)
    fits &= big_m.sum(-1) <= num_gpus
    fits &= (big_m - big.double()).sum(-1) + not_big_extra + others <= extra
    return fits.any(-1)


def big_copy_bound(weight: torch.Tensor, num_replicas: int, num_gpus: int, lower: torch.Tensor,
                   tolerance: float = 1e-7) -> torch.Tensor:
    """Bound 4 (global mode): ``lower`` [L] raised by bisection on the big-copy test. -> [L] float64.

    weight: [L, E]. Only layers the test refutes at ``lower`` are bisected, until the
    interval is ``tolerance`` of the limit wide; the result is the largest refuted limit.
    """
    w = weight.double()
    num_layers, num_experts = w.shape
    lower = lower.double()
    extra = num_replicas - num_experts
    num_heavy = int((w > lower.unsqueeze(-1) / 2).sum(-1).max()) if num_layers else 0
    if num_heavy == 0 or extra == 0:
        return lower
    heaviest = w.topk(num_heavy, dim=-1).values
    # Layers where every heavy expert can afford its small copies pass without the full test.
    t = lower.unsqueeze(-1) * (1 + 1e-12)
    tight = torch.where(heaviest > t / 2, torch.ceil(2 * heaviest / t) - 1, 0.0).sum(-1) > extra
    rows = (tight & (lower > 0)).nonzero().squeeze(-1)
    if rows.numel() == 0:
        return lower
    smallest_sums = torch.nn.functional.pad(w[rows].sort(dim=-1).values.cumsum(-1), (1, 0))
    heaviest, low = heaviest[rows], lower[rows]
    args = (num_replicas // num_gpus, extra, num_gpus)
    refuted = ~big_copies_fit(heaviest, smallest_sums, low, *args)
    if not bool(refuted.any()):
        return lower
    high = torch.where(refuted, w[rows].sum(-1), low)  # at the total load the test always passes
    while bool(((high - low) > tolerance * high).any()):
        mid = (low + high) / 2
        fits = big_copies_fit(heaviest, smallest_sums, mid, *args)
        low, high = torch.where(fits, low, mid), torch.where(fits, mid, high)
    return lower.index_put((rows,), low)


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
        bound = torch.maximum(bound, copy_bound(w, num_replicas, max_copies))
        return big_copy_bound(w, num_replicas, num_gpus, bound)
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

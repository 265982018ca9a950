"""Joint counts-and-packing search: replica counts chosen together with the packing.

DeepSeek's greedy first fixes the copy counts (minimising the largest load per
copy), then packs. With a few very hot experts that can make more heavy copies
than there are GPUs, so some GPU carries two. This policy instead packs several
candidate count vectors per row and keeps, per row, the one whose packing has the
lightest heaviest bin:

* ``min-max``: DeepSeek's counts, the top marginal gains w_e / k (one ``topk``);
* ``one heavy per GPU``: experts heavier than half the mean GPU load ("heavy")
  share exactly one copy per GPU between them, the other slots go to the light
  experts, so no GPU has to carry two heavy copies;
* with two slots per GPU and few count vectors, every count vector (exact).

Packing deals the copies, heaviest first, in rounds of one copy per bin, each
round's heaviest copy to the currently lightest bin (so every bin ends with
exactly its number of slots), then improves by swaps: bins are paired heaviest
with lightest and each pair swaps the one pair of copies that evens it out best.

Everything is batched over rows (layers, or layers x nodes) and candidates; the
only Python loops run over packing rounds and improvement passes.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import torch

from .base import Policy, copies_from_counts

IMPROVE_PASSES = 12
"""Swap passes after the dealing; stops early once no pair improves."""

MAX_ENUMERATED = 20_000
"""Largest number of count vectors the two-slots-per-GPU search enumerates."""


def min_max_counts(weight: torch.Tensor, num_slots: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Counts minimising the largest load per copy (DeepSeek's replication), in one ``topk``.

    weight: [B, n] -> logcnt [B, n] int64, each >= 1, rows summing to num_slots. Adding
    the (k+1)-th copy of item e lowers its load per copy from w_e / k; DeepSeek's greedy
    takes the largest such marginal value each time, and since w_e / k falls with k the
    copies it adds are exactly the top (num_slots - n) marginals. allowed: optional
    [B, n] bool restricting which items may receive extra copies (each row must allow one).
    """
    num_rows, num_items = weight.shape
    extra = num_slots - num_items
    logcnt = torch.ones(num_rows, num_items, dtype=torch.int64, device=weight.device)
    if extra == 0:
        return logcnt
    k = torch.arange(1, extra + 1, device=weight.device, dtype=weight.dtype)
    marginal = weight.unsqueeze(-1) / k  # [B, n, extra]
    if allowed is not None:
        # Disallowed items rank below every allowed one, even an allowed zero-load item.
        marginal = torch.where(allowed.unsqueeze(-1), marginal, -1.0 - k)
    top = marginal.flatten(1).topk(extra, dim=-1, sorted=False).indices // extra  # [B, extra] item ids
    return logcnt.scatter_add_(1, top, torch.ones_like(top))


def one_heavy_per_gpu_counts(weight: torch.Tensor, num_slots: int, num_bins: int, fallback: torch.Tensor) -> torch.Tensor:
    """Counts that give the heavy items exactly one copy per bin between them.

    weight: [B, n] -> logcnt [B, n] int64. Heavy: load above half the mean bin load,
    so two heavy copies on one bin would overshoot the mean. The heavy items split
    num_bins copies by min-max counts; the light items take the remaining slots the
    same way. Rows where that is impossible (no heavy item, more heavy items than
    bins, too few slots, no light item) take ``fallback`` [B, n] instead.
    """
    num_rows, num_items = weight.shape
    mean = weight.sum(-1, keepdim=True) / num_bins
    heavy = weight > mean / 2  # [B, n]
    num_heavy = heavy.sum(-1, keepdim=True)
    feasible = (num_heavy >= 1) & (num_heavy <= num_bins) & (num_heavy < num_items)
    feasible &= num_bins - num_heavy + num_items <= num_slots
    if not bool(feasible.any()):
        return fallback
    # Extra copies: num_bins - num_heavy for the heavy items, the rest for the light ones.
    # Both are restricted min-max passes, done as one batch of 2B rows.
    heavy_share = torch.where(feasible, num_bins - num_heavy, 0)
    light_share = torch.where(feasible, num_slots - num_items - heavy_share, 0)
    extra = restricted_extra(
        weight.repeat(2, 1), torch.cat([heavy, ~heavy]), torch.cat([heavy_share, light_share])
    ).view(2, num_rows, num_items)
    return torch.where(feasible, 1 + extra.sum(0), fallback)


def restricted_extra(weight: torch.Tensor, allowed: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """Extra copies for allowed items only, extra[b] of them in row b, by top marginal gain.

    weight, allowed: [B, n]; extra: [B, 1] int64 >= 0 (a row with extra > 0 allows an
    item). Returns [B, n] int64 extra counts.
    """
    most = int(extra.max())
    out = torch.zeros_like(weight, dtype=torch.int64)
    if most == 0:
        return out
    k = torch.arange(1, most + 1, device=weight.device, dtype=weight.dtype)
    marginal = torch.where(allowed.unsqueeze(-1), weight.unsqueeze(-1) / k, -1.0 - k).flatten(1)
    ranked = marginal.topk(most, dim=-1).indices  # [B, most], best first
    take = torch.arange(most, device=weight.device) < extra  # [B, most]
    return out.scatter_add_(1, ranked // most, take.long())


@lru_cache(maxsize=16)
def compositions(total: int, parts: int) -> torch.Tensor | None:
    """Every vector of `parts` positive integers summing to `total`: [K, parts] int64.

    None when there are more than MAX_ENUMERATED of them (K = C(total - 1, parts - 1)).
    """
    if math.comb(total - 1, parts - 1) > MAX_ENUMERATED:
        return None
    rows = [
        [b - a for a, b in zip((0,) + cut, cut + (total,))]
        for cut in combinations(range(1, total), parts - 1)
    ]
    return torch.tensor(rows, dtype=torch.int64).view(-1, parts)


def two_slot_search(weight: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Exact optimum for two slots per bin: (best max bin load [B], its counts [B, n]).

    weight: [B, n], 2 * num_bins slots. For fixed counts, pairing the sorted copies
    largest with smallest minimises the largest pair (exchange argument: if the
    largest copy x1 is paired with y but the smallest z is paired with u, then
    x1 + z and u + y are both <= max(x1 + y, u + z) = x1 + y as u <= x1, z <= y), so
    the optimum over all count vectors is a minimum over enumerated counts. None when
    there are too many count vectors to enumerate.
    """
    num_rows, num_items = weight.shape
    counts = compositions(2 * num_bins, num_items)
    if counts is None:
        return None
    counts = counts.to(weight.device)
    items = copies_from_counts(counts)  # [K, 2M]
    per_copy = weight.double().unsqueeze(1) / counts.unsqueeze(0)  # [B, K, n]
    loads = per_copy.gather(-1, items.expand(num_rows, -1, -1)).sort(dim=-1, descending=True).values
    pair_max = (loads[..., :num_bins] + loads[..., num_bins:].flip(-1)).max(dim=-1).values  # [B, K]
    best, which = pair_max.min(dim=-1)
    return best, counts[which]


def deal_in_rounds(loads: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack copies heaviest first, one per bin per round, each round's heaviest to the lightest bin.

    loads: [R, S] copy loads, S divisible by num_bins. Returns (table [R, num_bins, S/num_bins]
    of copy indices into loads, the same table of loads).
    """
    num_rows, num_slots = loads.shape
    order = loads.argsort(dim=-1, descending=True)
    sorted_loads = loads.gather(-1, order)
    bin_load = torch.zeros(num_rows, num_bins, dtype=loads.dtype, device=loads.device)
    bins = []
    for start in range(0, num_slots, num_bins):
        lightest_first = bin_load.argsort(dim=-1)
        bins.append(lightest_first)
        bin_load.scatter_add_(1, lightest_first, sorted_loads[:, start : start + num_bins])
    bin_of_rank = torch.stack(bins, dim=1).flatten(1)  # [R, S]: bin of the k-th heaviest copy
    # Bin-major order, so each bin's copies are contiguous.
    position = bin_of_rank.argsort(dim=-1, stable=True)
    table = order.gather(-1, position).view(num_rows, num_bins, -1)
    return table, sorted_loads.gather(-1, position).view(num_rows, num_bins, -1)


def improve_by_swaps(table: torch.Tensor, loads: torch.Tensor, passes: int = IMPROVE_PASSES):
    """Even out bins by swapping copies: table, loads [R, M, s] -> improved (table, loads).

    Each pass sorts the bins by load and pairs the k-th heaviest with the k-th lightest
    (shifted by the pass number, so a stuck pair meets new partners). Swapping copies of
    loads a (heavy bin) and b (light bin) moves d = a - b, and the pair's larger load
    becomes (H + L) / 2 + |d - (H - L) / 2|; every pair takes the swap that minimises it,
    if that is below H. Every bin keeps its number of copies and no pair gets worse.
    Stops early once no pair improves.
    """
    num_rows, num_bins, per_bin = loads.shape
    half = num_bins // 2
    if half == 0 or per_bin == 0:
        return table, loads
    flat_table, flat_loads = table.view(num_rows, -1), loads.view(num_rows, -1)
    in_bin = torch.arange(per_bin, device=loads.device)
    for step in range(passes):
        bin_load = loads.sum(-1)  # [R, M]
        by_load = bin_load.argsort(dim=-1, descending=True)
        heavy = by_load[:, :half]
        light = by_load[:, num_bins - half :].flip(-1)
        if step % half:
            light = light.roll(step % half, dims=-1)
        heavy_load, light_load = bin_load.gather(1, heavy), bin_load.gather(1, light)  # [R, half]
        heavy_slots = (heavy.unsqueeze(-1) * per_bin + in_bin).flatten(1)  # [R, half * s]
        light_slots = (light.unsqueeze(-1) * per_bin + in_bin).flatten(1)
        half_gap = (heavy_load - light_load) / 2
        hl = flat_loads.gather(1, heavy_slots).view(num_rows, half, per_bin, 1) - half_gap[..., None, None]
        ll = flat_loads.gather(1, light_slots).view(num_rows, half, 1, per_bin)
        miss, where = (hl - ll).abs().flatten(2).min(dim=-1)  # [R, half]
        # Swapping helps when the new larger load (H + L) / 2 + miss is below H.
        better = miss < half_gap * (1 - 1e-9)
        if not bool(better.any()):
            break
        i = heavy_slots.view(num_rows, half, per_bin).gather(-1, (where // per_bin).unsqueeze(-1)).squeeze(-1)
        j = light_slots.view(num_rows, half, per_bin).gather(-1, (where % per_bin).unsqueeze(-1)).squeeze(-1)
        j = torch.where(better, j, i)  # a slot swapped with itself where nothing helps
        ti, tj = flat_table.gather(1, i), flat_table.gather(1, j)
        li, lj = flat_loads.gather(1, i), flat_loads.gather(1, j)
        flat_table.scatter_(1, i, tj).scatter_(1, j, ti)
        flat_loads.scatter_(1, i, lj).scatter_(1, j, li)
    return table, loads


class JointSearch(Policy):
    name = "joint"
    summary = ("Counts chosen with the packing: several candidate count vectors per layer, "
               "round-robin dealing plus swap passes, the best kept; vectorized.")

    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        num_rows, num_items = weight.shape
        table, _ = improve_by_swaps(*deal_in_rounds(weight, num_packs))
        pack_of = torch.arange(num_packs, device=weight.device).repeat_interleave(num_items // num_packs)
        return torch.empty_like(table.flatten(1)).scatter_(-1, table.flatten(1), pack_of.expand(num_rows, -1))

    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        return copies_from_counts(min_max_counts(weight, num_slots))

    def candidate_counts(self, weight: torch.Tensor, num_slots: int, num_bins: int) -> torch.Tensor:
        """Count vectors to try per row: [B, C, n] int64, each row summing to num_slots."""
        min_max = min_max_counts(weight, num_slots)
        candidates = [min_max, one_heavy_per_gpu_counts(weight, num_slots, num_bins, min_max)]
        if num_slots == 2 * num_bins:
            exact = two_slot_search(weight, num_bins)
            if exact is not None:
                candidates.append(exact[1])
        return torch.stack(candidates, dim=1)

    def replicate_and_pack(self, weight: torch.Tensor, num_slots: int, num_bins: int) -> torch.Tensor:
        num_rows, num_items = weight.shape
        counts = self.candidate_counts(weight, num_slots, num_bins)  # [B, C, n]
        num_candidates = counts.shape[1]
        # Pack the first candidate everywhere, the others only where they differ from it.
        tried = torch.ones(num_rows, num_candidates, dtype=torch.bool, device=weight.device)
        tried[:, 1:] = (counts[:, 1:] != counts[:, :1]).any(dim=-1)
        row, candidate = tried.nonzero(as_tuple=True)  # row-major, so candidate 0 of each row comes first
        flat_counts = counts[row, candidate]  # [K, n]
        phy2item = copies_from_counts(flat_counts)  # [K, S]
        loads = (weight[row] / flat_counts).gather(-1, phy2item)
        table, bin_loads = improve_by_swaps(*deal_in_rounds(loads, num_bins))
        peak = torch.full((num_rows, num_candidates), torch.inf, dtype=loads.dtype, device=weight.device)
        peak[row, candidate] = bin_loads.sum(-1).max(dim=-1).values
        best = peak.argmin(dim=-1, keepdim=True)  # the first candidate among ties
        packed_row = torch.zeros_like(tried, dtype=torch.int64)
        packed_row[row, candidate] = torch.arange(row.numel(), device=weight.device)
        chosen = packed_row.gather(1, best).squeeze(1)
        return phy2item[chosen].gather(-1, table[chosen].flatten(1))

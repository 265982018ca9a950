"""Joint counts-and-packing search: replica counts chosen together with the packing.

DeepSeek's greedy first fixes the copy counts (minimising the largest load per
copy), then packs. With a few very hot experts that can make more heavy copies
than there are GPUs, so some GPU carries two. This policy instead packs several
candidate count vectors per row and keeps, per row, the one whose packing has the
lightest heaviest bin:

* ``min-max``: DeepSeek's counts, the top marginal gains w_e / k (a heap per row, ``kernels.min_max_runs``);
* ``h heavy copies per GPU`` (h = 1, 2): experts heavier than the mean bin load / (h + 1)
  share exactly h copies per bin between them, the light experts take the other
  slots, so every bin gets h heavy copies and no bin more;
* with two slots per bin and few count vectors, every count vector that could beat
  the min-max counts (exact);
* otherwise, with at most ``REFINE_SLOTS`` slots per bin, the min-max counts and the
  candidate that deals best, each refined by a local search judged by the dealt packing
  (``refine_counts``).

Packing deals the copies, heaviest first, in rounds of one copy per bin, each
round's heaviest copy to the currently lightest bin (so every bin ends with
exactly its number of slots), then improves by swaps: bins are paired heaviest
with lightest and each pair swaps the one pair of copies that evens it out best,
until the heaviest bin is within ``GOOD_ENOUGH`` of a proven floor
(``packing_floor``). Packs of two items are paired largest with smallest, which is
optimal.

No duplicates: in a row of n experts, M bins (GPUs) and s slots per bin with s <= n
(``spread_copies``: every case where a GPU has no more slots than its row, the layer
in global mode or the layer's node in hierarchical mode, has experts), no expert gets
more than M copies and no bin holds two copies of one expert: the dealing keeps the
expert whose copies run over from one round off the bins it already holds, a swap
never brings a copy into a bin holding its expert, and the two-slot enumeration skips
pairings of an expert with itself. So no GPU holds two copies of one expert. Where
s > n some GPU must, and the rule does not apply.

A window of per-step loads [S, L, E] is planned for the window after it
(``JointSearch.place_window``, ``eplb.policies.hedge``): the plan on the window's sum
competes with plans whose copy counts lean toward the experts whose load swings, and
each layer keeps the one with the lightest expected heaviest GPU over likely next
windows.

Everything is batched over rows (layers, or layers x nodes) and candidates. Dealing,
swapping and the refinement, sequential within a row, run row by row in compiled loops
(``eplb.kernels``); the rest is tensor code without Python loops over rows. On a CPU much
of its time is the dispatch of small tensor operations, so the code keeps their number
down (one batch for every candidate's counts, ``take`` / ``index_select`` rather than
advanced indexing), and sorts rows with ``eplb.sorting``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import numpy as np
import torch

from .. import kernels
from ..sorting import argsort_rows
from . import hedge
from .base import Policy, copies_from_counts, copy_counts

PASSES_PER_TURN = 8
"""Swap passes per turn: a pass pairs 2 * min(M / 2, MAX_PAIRS) of the M bins, so every bin
takes part about once in M / (2 * pairs) passes, a turn; rows get 1 + that many turns."""

MAX_ENUMERATED = 20_000
"""Largest number of count vectors the two-slots-per-bin search enumerates."""

MAX_PAIRS = 8
"""Heaviest bins a swap pass pairs with light partners."""

PATIENCE = 4
"""A row stops swapping after this many passes in a row that improve nothing."""

GOOD_ENOUGH = 5e-4
"""A row stops swapping once its heaviest bin is within this fraction of its ``packing_floor``."""

HEAVY_LEVELS = (1, 2)
"""h of the "h heavy copies per bin" candidates."""

REFINE_SLOTS = 4
"""Bins of at most this many slots also try counts refined by ``refine_counts``."""

REFINE_STEPS = 8
"""Most steps ``refine_counts`` takes per row (a step may keep several moves): rows rarely need
more (16 steps gain 0.00003 summed over 175 refinement-shape loads), and each re-deals the
row's copies once per move it tries."""

REFINE_TAKERS = 12
"""Experts each step of ``refine_counts`` considers taking a copy from."""

REFINE_DEALT_SLOTS = 2048
REFINE_DEALT_MIN = 2
"""Slots ``refine_counts`` may re-deal per row and step: the moves judged best on the packing as it
stands, at least REFINE_DEALT_MIN and at most all of them (all with 64 slots, two with 1024)."""

REFINE_TWO_STARTS = 256
"""Rows of at most this many slots refine the min-max counts too, besides the candidate that
deals best: the two searches often end in different places, and with few slots both are cheap."""


def run_counts(value: torch.Tensor, item: torch.Tensor, src: torch.Tensor, start: torch.Tensor,
               stop: torch.Tensor, extra: torch.Tensor, target: torch.Tensor | None = None,
               num_targets: int | None = None, cap: int | None = None) -> torch.Tensor:
    """DeepSeek's min-max replication of runs of items, batched: [T, n] int64 counts >= 1.

    value: [B, n] loads sorted heaviest first, item: [B, n] the item of each. Request q
    gives extra[q] extra copies to the items at sorted positions start[q] .. stop[q] - 1
    of row src[q] (start < stop when extra > 0), one at a time to the item with the
    largest load per copy (ties to the heavier position), and adds them to output row
    target[q] (default: q; T = num_targets, default Q), which starts at one copy per item.
    src, start, stop, extra, target: [Q] int64. With ``cap`` no item gets more than cap
    copies (the caller makes sure the run has room: (stop - start) * cap >= stop - start +
    extra). Runs in the compiled ``kernels.min_max_runs``, on the host, in float64.
    """
    if target is None:
        target, num_targets = torch.arange(src.shape[0], device=value.device), src.shape[0]
    host = [on_host(x, np.int64) for x in (item, src, start, stop, extra, target)]
    logcnt = kernels.min_max_runs(on_host(value, np.float64), *host, num_targets, cap or 0)
    return torch.from_numpy(logcnt).to(value.device)


def sorted_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [B, n] -> (loads sorted heaviest first, their items), both [B, n]."""
    item = argsort_rows(weight, descending=True)
    return weight.gather(1, item), item


def whole_runs(num_rows: int, num_items: int, num_slots: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``run_counts`` requests for the min-max counts of every row: (src, start, stop, extra), each [B]:
    the run of all items, with every spare slot."""
    rows = torch.arange(num_rows, device=device)
    return rows, torch.zeros_like(rows), torch.full_like(rows, num_items), torch.full_like(rows, num_slots - num_items)


def min_max_counts(weight: torch.Tensor, num_slots: int, cap: int | None = None) -> torch.Tensor:
    """Counts minimising the largest load per copy (DeepSeek's replication, with at most ``cap``
    copies an item): [B, n] int64, rows sum to num_slots."""
    value, item = sorted_rows(weight)
    return run_counts(value, item, *whole_runs(*weight.shape, num_slots, weight.device), cap=cap)


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


def paired_peak(per_copy: torch.Tensor, counts: torch.Tensor, num_bins: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest bin of the optimal two-per-bin packing of these counts' copies, the copies
    sorted and paired largest with smallest: (that peak [N], whether the pairing puts two
    copies of one item in a bin [N] bool).

    per_copy, counts: [N, n], counts summing to 2 * num_bins.
    """
    items = copies_from_counts(counts)
    loads, order = per_copy.gather(-1, items).sort(dim=-1, descending=True)
    peak = (loads[..., :num_bins] + loads[..., num_bins:].flip(-1)).amax(dim=-1)
    paired = items.gather(-1, order)
    return peak, (paired[..., :num_bins] == paired[..., num_bins:].flip(-1)).any(dim=-1)


def spread_peak(per_copy: torch.Tensor, counts: torch.Tensor, num_bins: int, peak: torch.Tensor,
                twice: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
    """``paired_peak``'s peaks [N] made those of the best pairings without doubled items.

    per_copy, counts: [N, n]; peak, twice: ``paired_peak``'s; below: [N] a peak to beat.
    A pairing without doubles is already the best without them. One with doubles is
    re-paired (``spread_pairs``) only where its peak, a lower bound on every pairing of its
    counts, is below ``below``; elsewhere it gets inf, as it could not beat ``below``.
    """
    redo = (twice & (peak < below)).nonzero().squeeze(1)
    peak = torch.where(twice, torch.inf, peak)
    if redo.numel():
        peak.index_copy_(0, redo, spread_pairs(per_copy.index_select(0, redo), counts.index_select(0, redo),
                                               num_bins)[0])
    return peak


def spread_pairs(per_copy: torch.Tensor, counts: torch.Tensor, num_bins: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The lightest heaviest pair of two copies per bin with no item paired with itself.

    per_copy, counts: [N, n], counts summing to 2 * num_bins. Returns (the heaviest pair
    [N], inf where some item has more than num_bins copies and no such pairing exists;
    the items of each bin's pair [N, num_bins, 2], heavier copy first).

    A greedy on the items sorted by load per copy: the heaviest copy left pairs with the
    lightest copy left, unless another item holds as many copies as there are pairs left
    (it could not be paired otherwise: its copies need that many partners), in which case
    with a copy of that item. Feasible: with m pairs left and no item above m copies, the
    step leaves none above m - 1. Optimal, by induction on m, with x the heaviest copy (of
    item e) and OPT any valid pairing: if an item f != e has m copies, every pair holds
    one of them, so OPT pairs x with f too. Otherwise the greedy pairs x with the lightest
    copy z (of g != e). If OPT pairs x with a copy of g, swap it for z (copies of one item
    are alike). Else OPT has (x, y) and (z, u), y of f != g; if u is not of f, (x, z) and
    (y, u) are no heavier than x + y (z <= y, u <= x). If u is of f too (y = u), f has
    at most m - 1 copies, so some pair (a, b) of OPT holds none; (x, z), (y, a), (u, b)
    are valid and no heavier than x + y (a, b <= x). Either way a pairing as good as OPT
    starts with the greedy's pair, and the greedy is optimal on the rest.
    ``tests/test_policy_joint.py`` checks it against an exhaustive search. In numpy on the
    host: a step is a handful of operations on [N, n] arrays, where torch's cost per
    operation dominated.
    """
    num_rows, num_items = per_copy.shape
    device = per_copy.device
    order = per_copy.argsort(dim=-1, descending=True, stable=True).cpu().numpy()
    load = np.take_along_axis(per_copy.cpu().numpy(), order, -1)
    left = np.take_along_axis(counts.cpu().numpy(), order, -1)
    position = np.arange(num_items)
    rows = np.arange(num_rows)
    peak = np.zeros(num_rows, dtype=load.dtype)
    pairs = np.empty((num_rows, num_bins, 2), dtype=np.int64)
    for pair in range(num_bins):
        held = left > 0
        heaviest = held.argmax(-1)
        lightest = num_items - 1 - held[:, ::-1].argmax(-1)
        critical = (left == num_bins - pair) & (position != heaviest[:, None])
        partner = np.where(critical.any(-1), critical.argmax(-1), lightest)
        np.maximum(peak, load[rows, heaviest] + load[rows, partner], out=peak)
        left[rows, heaviest] -= 1
        left[rows, partner] -= 1
        pairs[:, pair, 0], pairs[:, pair, 1] = order[rows, heaviest], order[rows, partner]
    peak = torch.from_numpy(peak).to(device)
    peak = torch.where(counts.amax(dim=-1) > num_bins, torch.inf, peak)
    return peak, torch.from_numpy(pairs).to(device)


def two_slot_search(weight: torch.Tensor, num_bins: int, cap: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Exact optimum for two slots per bin: (best max bin load [B], its counts [B, n]).

    weight: [B, n], 2 * num_bins slots. For fixed counts, pairing the sorted copies
    largest with smallest minimises the largest pair (exchange argument: if the
    largest copy x1 is paired with y but the smallest z is paired with u, then
    x1 + z and u + y are both <= max(x1 + y, u + z) = x1 + y as u <= x1, z <= y), so
    the optimum over all count vectors is a minimum over enumerated counts. Only count
    vectors whose largest plus smallest copy is within the min-max counts' peak U are
    paired (the largest copy shares a bin with a copy at least the smallest, so the
    others cannot beat U). With ``cap``, only count vectors of at most cap copies an item,
    each scored (U included) by its best pairing with no item paired with itself
    (``spread_pairs``), so the result is the best placement without doubled items.
    None when there are too many count vectors to enumerate.
    """
    num_rows, num_items = weight.shape
    counts = compositions(2 * num_bins, num_items)
    if counts is None:
        return None
    if cap is not None:
        counts = counts[counts.amax(dim=-1) <= cap]
    w = weight.double()
    counts = counts.to(weight.device)
    start = min_max_counts(w, 2 * num_bins, cap)
    ceiling, twice = paired_peak(w / start, start, num_bins)  # U: [B]
    if cap is not None:
        ceiling = spread_peak(w / start, start, num_bins, ceiling, twice, torch.full_like(ceiling, torch.inf))
    per_copy = w.unsqueeze(1) / counts  # [B, K, n]
    spread = per_copy.amax(dim=-1) + per_copy.amin(dim=-1)
    row, which = (spread <= ceiling.unsqueeze(-1) * (1 + 1e-12)).nonzero(as_tuple=True)
    peak = torch.full((num_rows,), torch.inf, dtype=w.dtype, device=w.device)
    if row.numel():
        found, twice = paired_peak(per_copy[row, which], counts[which], num_bins)
        if cap is not None:
            # The best vector paired without doubles at once bounds those to re-pair.
            clean = torch.where(twice, torch.inf, found)
            below = torch.minimum(ceiling, peak.scatter_reduce(0, row, clean, reduce="amin"))
            found = spread_peak(per_copy[row, which], counts[which], num_bins, found, twice, below[row])
        peak.scatter_reduce_(0, row, found, reduce="amin")
    best = torch.minimum(peak, ceiling)
    chosen = start.clone()
    improved = peak < ceiling
    if bool(improved.any()):
        # The first surviving count vector that reaches the best peak, per row.
        hit = torch.zeros(num_rows, counts.shape[0], dtype=torch.bool, device=w.device)
        hit[row, which] = found <= best[row]
        chosen = torch.where(improved.unsqueeze(-1), counts[hit.int().argmax(dim=-1)], start)
    return best, chosen


def on_host(tensor: torch.Tensor | None, dtype) -> np.ndarray:
    """A tensor as the contiguous host array the compiled loops take (``dtype``: None keeps the
    tensor's); None, an absent argument, as an empty [0, 0] array."""
    if tensor is None:
        return np.zeros((0, 0), dtype=dtype)
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    return np.ascontiguousarray(tensor.detach().numpy(), dtype=dtype)


def dealt_slots(loads: torch.Tensor, num_bins: int, items: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deal copies heaviest first, one per bin per round, each round's heaviest to the lightest bin
    (``kernels.deal_rows``, on the host): loads [R, S] copy loads sorted heaviest first, S
    divisible by num_bins -> (the slot, bin * s + round, of every copy [R, S]; bin loads [R, M]
    in loads' dtype, summed in float64).

    items: [R, S] the item of each copy, when no bin may hold two copies of one item. The
    copies of an item must then be adjacent and at most num_bins: a round deals to distinct
    bins, so only the item whose copies run over from the previous round (the first of the
    round) can meet itself; its copies go to the lightest bins without it, the round's other
    copies to the remaining bins, lightest first."""
    slot, bin_load = kernels.deal_rows(on_host(loads, np.float64), on_host(items, np.int64), num_bins,
                                       items is not None)
    return torch.from_numpy(slot).to(loads.device), torch.from_numpy(bin_load).to(loads.device, loads.dtype)


def swap_passes(num_bins: int) -> int:
    """Most swap passes for M bins: ``PASSES_PER_TURN`` for each turn (see there), and one more turn."""
    pairs = max(min(num_bins // 2, MAX_PAIRS), 1)
    return PASSES_PER_TURN * (1 + -(-num_bins // (2 * pairs)))


FLOOR_LEVELS = 16
"""Pigeonhole bounds j < FLOOR_LEVELS in ``packing_floor``: the later ones rarely bind, and
fewer keep its cost linear in the number of slots (s copies summed per level)."""


def packing_floor(loads: torch.Tensor, num_bins: int) -> torch.Tensor:
    """A proven lower bound on the heaviest bin of any packing of these copies: [R] float64.

    loads: [R, S] copy loads sorted heaviest first, S = num_bins * s, every bin takes
    exactly s copies. The bound is the largest of the mean bin load and, for
    j = 0 .. min(s, FLOOR_LEVELS) - 1: among the j * num_bins + 1 heaviest copies some
    bin holds j + 1 (pigeonhole), weighing at least the j + 1 lightest of them; its
    other s - j - 1 copies weigh at least the s - j - 1 lightest copies of all (never
    among the first, as (s - j) * num_bins > s - j - 1). j = 0 is the heaviest copy plus
    the s - 1 lightest; j = 1 shows that num_bins + 1 heavy copies force two onto one
    bin. With two copies per bin the floor is the optimum itself, the largest pair of the
    sorted copies paired largest with smallest (see ``two_slot_search``), so a packing that
    reaches it stops at once instead of trading copies between bins tied at the peak.
    Computed row by row on the host (``kernels.packing_floor_rows``).
    """
    floor = kernels.packing_floor_rows(on_host(loads, np.float64), num_bins, FLOOR_LEVELS)
    return torch.from_numpy(floor).to(loads.device)


def bin_loads(loads: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Load of every bin: copy loads [R, S], table [R, M, s] of copy indices -> [R, M]."""
    return loads.gather(1, table.flatten(1)).view(table.shape).sum(-1)


def pack_copies(loads: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deal then swap: loads [R, S] sorted heaviest first -> (table [R, M, S/M] of copy indices, bin loads [R, M]).

    A row stops swapping once its heaviest bin is within ``GOOD_ENOUGH`` of its ``packing_floor``.
    """
    floor = packing_floor(loads, num_bins)
    table, _ = packed(loads, num_bins, floor * (1 + GOOD_ENOUGH), floor)
    return table, bin_loads(loads, table)


def packed(loads: torch.Tensor, num_bins: int, stop_at: torch.Tensor, floor: torch.Tensor,
           row: torch.Tensor | None = None, num_rows: int | None = None, items: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every packing dealt (``dealt_slots``) then swapped, by the compiled ``kernels.pack_rows`` on
    the host: loads [K, S] copy loads sorted heaviest first, stop_at and floor [K] (when to stop
    swapping, a proven floor), row [K] the row of num_rows each is a candidate of (default: each
    its own), items [K, S] the item of each copy where no bin may hold two copies of one item.
    Returns (table [K, M, S/M] of copy indices, each bin's heaviest first; heaviest bin [K]
    float64).

    Each swap pass sorts the bins by load and pairs the k-th heaviest with the k-th lightest,
    for the ``MAX_PAIRS`` heaviest bins (partners shifted by the pass number, so a stuck pair
    meets new ones). Swapping copies of loads a (heavy bin) and b (light bin) moves d = a - b,
    and the pair's larger load becomes (H + L) / 2 + |d - (H - L) / 2|; every pair takes the
    swap that minimises it, if that is below H. Every bin keeps its number of copies and no
    pair gets worse. A packing leaves once ``PATIENCE`` passes in a row find nothing to improve
    in it, once its heaviest bin is at most its stop_at (checked before the first pass and
    after each), or after ``swap_passes(M)`` passes; one whose floor is at least the dealt peak
    of another candidate of its row takes no pass (it could at best tie). With ``items`` no
    swap brings a copy into a bin that already holds a copy of its item."""
    num_packings, num_slots = loads.shape
    if row is None:
        row, num_rows = torch.arange(num_packings), num_packings
    slot_copy, peak = kernels.pack_rows(
        on_host(loads, np.float64), on_host(items, np.int64), num_bins, min(num_bins // 2, MAX_PAIRS),
        swap_passes(num_bins), PATIENCE, items is not None, on_host(stop_at, np.float64), on_host(floor, np.float64),
        on_host(row, np.int64), num_rows)
    device = loads.device
    return (torch.from_numpy(slot_copy).view(num_packings, num_bins, -1).to(device),
            torch.from_numpy(peak).to(device))


def copies_heaviest_first(weight: torch.Tensor, counts: torch.Tensor, num_slots: int,
                          by_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every copy, heaviest first: weight, counts [R, n] (rows summing to num_slots) ->
    (item of each copy, load of each copy in weight's dtype), both [R, num_slots]; ties in
    by_weight order. by_weight: [R, n] each row's items heaviest first (default: sorted here).
    The items of one copy keep that order and those of several are merged in
    (``kernels.expand_copies``), so rows that share a weight row share its sort."""
    if by_weight is None:
        by_weight = argsort_rows(weight, descending=True)  # [R, n]
    per_copy = weight / counts
    phy2item, loads = kernels.expand_copies(on_host(by_weight, np.int64), on_host(per_copy, None),
                                            on_host(counts, np.int64), num_slots)
    return torch.from_numpy(phy2item).to(weight.device), torch.from_numpy(loads).to(weight.device)


def dealt_bins(weight: torch.Tensor, counts: torch.Tensor, num_bins: int, spread: bool,
               by_weight: torch.Tensor | None = None) -> torch.Tensor:
    """The bin loads [R, M] of every row's copies dealt (``dealt_slots``, no bin holding two
    copies of an item when ``spread``): weight, counts [R, n]; by_weight as for
    ``copies_heaviest_first``. With two slots per bin the dealing pairs the sorted copies
    largest with smallest, the optimal packing for these counts.
    """
    phy2item, loads = copies_heaviest_first(weight, counts, int(counts[0].sum()), by_weight)
    return dealt_slots(loads, num_bins, phy2item if spread else None)[1]


def refine_counts(weight: torch.Tensor, counts: torch.Tensor, num_bins: int, cap: int | None = None) -> torch.Tensor:
    """Local search over copy counts, judged by the dealt packing: weight, counts [B, n] -> [B, n].

    With few slots per bin the counts decide the packing: two slots per bin pair every
    copy with one partner, and the best counts often give a light expert several tiny
    copies to sit beside the heaviest ones, which no rule on loads per copy proposes.
    Each step, every row judges each move (one more copy for an expert of its heaviest
    bin, one fewer for one of the ``REFINE_TAKERS`` experts whose load per copy would stay
    lowest) on its dealt packing as it stands, then deals the judged best of them
    (``REFINE_DEALT_SLOTS``) one after another, each on the counts as the moves kept before
    it left them, and keeps every one that lowers its heaviest dealt bin. Rows stop when a
    step keeps none, when their heaviest bin is within ``GOOD_ENOUGH`` of the mean bin
    load, or after ``REFINE_STEPS`` steps. With
    ``cap`` no count exceeds cap and no bin holds two copies of one item. Never deals worse
    than the counts it starts from. Runs row by row in ``kernels.refine_rows``, on the host.
    """
    if num_bins < 2 or counts.shape[0] == 0:
        return counts
    num_slots = int(counts[0].sum())
    tries = max(REFINE_DEALT_MIN, REFINE_DEALT_SLOTS // num_slots)
    refined = kernels.refine_rows(on_host(weight, np.float64), on_host(counts, np.int64), num_bins, cap or 0,
                                  REFINE_STEPS, REFINE_TAKERS, tries, GOOD_ENOUGH)
    return torch.from_numpy(refined).to(counts.device)


def refine_starts(weight: torch.Tensor, start: torch.Tensor, num_bins: int, cap: int | None) -> torch.Tensor:
    """``refine_counts`` from several starts per row: weight [B, n], start [B, T, n] -> [B, T, n].

    A start equal to the row's first is not refined again (the search is deterministic and
    each row's apart, so it would end where the first one does): with a log-normal load
    the two starts of ``candidate_counts`` are the same count vector in most rows.
    """
    num_rows, num_starts, num_items = start.shape
    flat = start.flatten(0, 1)
    if num_starts == 1:
        return refine_counts(weight, flat, num_bins, cap).view(num_rows, 1, num_items)
    repeat = (start[:, 1:] == start[:, :1]).all(dim=-1)  # [B, T - 1]
    which = torch.cat([torch.zeros_like(repeat[:, :1]), repeat], dim=1).view(-1).logical_not_().nonzero().squeeze(1)
    refined = flat.clone()
    refined.index_copy_(0, which, refine_counts(weight.index_select(0, which // num_starts),
                                                flat.index_select(0, which), num_bins, cap))
    refined = refined.view(num_rows, num_starts, num_items)
    refined[:, 1:] = torch.where(repeat.unsqueeze(-1), refined[:, :1], refined[:, 1:])
    return refined


def spread_copies(num_items: int, num_slots: int, num_bins: int) -> bool:
    """Whether a row can keep every bin free of two copies of one item: a bin has no more
    slots than the row has items. Then no item gets more than num_bins copies, the dealing
    and the swaps never put two copies of an item in one bin, and so no GPU holds two
    copies of one expert."""
    return num_slots // num_bins <= num_items


@lru_cache(maxsize=16)
def earlier_candidates(num_candidates: int, device: torch.device) -> torch.Tensor:
    """[C, C] bool, True where the column's candidate comes before the row's."""
    return torch.ones(num_candidates, num_candidates, dtype=torch.bool).tril(-1).to(device)


@lru_cache(maxsize=16)
def paired_packs(num_packs: int, device: torch.device) -> torch.Tensor:
    """Pack of the k-th heaviest of 2 * num_packs items, largest with smallest: 0..M-1, M-1..0."""
    pack_of = torch.arange(num_packs, device=device)
    return torch.cat([pack_of, pack_of.flip(0)])


class JointSearch(Policy):
    name = "joint"
    summary = ("Counts chosen with the packing: several candidate count vectors per layer, "
               "round-robin dealing plus swap passes, the best kept; vectorized.")

    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        num_rows, num_items = weight.shape
        per_pack = num_items // num_packs
        order = argsort_rows(weight, descending=True)
        if per_pack == 2:  # largest with smallest: optimal for pairs
            pack_of = paired_packs(num_packs, weight.device)
        else:
            table, _ = pack_copies(weight.gather(1, order), num_packs)
            pack_of = torch.empty_like(table.flatten(1)).scatter_(
                1, table.flatten(1), torch.arange(num_packs, device=weight.device)
                .repeat_interleave(per_pack).expand(num_rows, -1))
        return torch.empty_like(order).scatter_(1, order, pack_of.expand(num_rows, -1))

    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        return copies_from_counts(min_max_counts(weight, num_slots))

    def candidate_counts(self, weight: torch.Tensor, num_slots: int, num_bins: int,
                         ranked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Count vectors to try per row: [B, C, n] int64, each row summing to num_slots.

        A candidate that is the min-max counts in every row is left out (C >= 1). Where
        ``spread_copies`` allows, no item gets more than num_bins copies. ranked: weight's
        ``sorted_rows`` where the caller has them.
        """
        num_rows, num_items = weight.shape
        cap = num_bins if spread_copies(num_items, num_slots, num_bins) else None
        value, item = ranked if ranked is not None else sorted_rows(weight)
        # The min-max counts, then one "h heavy copies per bin" split per level that some row
        # can take, in one compiled pass (``kernels.candidate_runs``).
        host_value = on_host(value, None)
        scale = np.array([h + 1 for h in HEAVY_LEVELS] + [num_bins], dtype=host_value.dtype)
        counts = torch.from_numpy(kernels.candidate_runs(
            host_value, on_host(item, np.int64), on_host(value.sum(dim=-1), None), num_slots, num_bins,
            np.array(HEAVY_LEVELS, dtype=np.int64), scale, cap or 0)).to(weight.device)
        exact = two_slot_search(weight, num_bins, cap) if num_slots == 2 * num_bins else None
        if exact is not None:
            counts = torch.cat([counts, exact[1].unsqueeze(1)], dim=1)
        elif num_slots <= REFINE_SLOTS * num_bins and num_slots > num_items:
            # Refine the candidate that deals best and, with few slots, the min-max counts too.
            dealt = dealt_bins(weight.double().repeat_interleave(counts.shape[1], dim=0), counts.flatten(0, 1),
                               num_bins, cap is not None, item.repeat_interleave(counts.shape[1], dim=0)
                               ).amax(dim=-1).view(num_rows, -1)
            start = counts.gather(1, dealt.argmin(dim=1).view(-1, 1, 1).expand(-1, 1, num_items))
            if num_slots <= REFINE_TWO_STARTS:
                start = torch.cat([counts[:, :1], start], dim=1)  # [B, 2, n]
            counts = torch.cat([counts, refine_starts(weight, start, num_bins, cap)], dim=1)
        return counts

    def replicate_and_pack(self, weight: torch.Tensor, num_slots: int, num_bins: int,
                           rows_per_layer: int = 1) -> torch.Tensor:
        # Inference mode skips autograd's bookkeeping on the many small operations; the
        # result is cloned outside it, so callers get an ordinary tensor.
        with torch.inference_mode():
            phy2item = self._search(weight, num_slots, num_bins, rows_per_layer)
        return phy2item.clone()

    @staticmethod
    def _stop_at(floor: torch.Tensor, row: torch.Tensor | None, num_rows: int, rows_per_layer: int) -> torch.Tensor:
        """When each packed (row, candidate) may stop swapping: [K] load thresholds.

        floor: [K] ``packing_floor`` of each packed count vector; row: [K] the row (of
        num_rows) each belongs to, None when K = num_rows. A packing stops once its heaviest
        bin is within ``GOOD_ENOUGH`` of the larger of
        * its own floor: it cannot get much better;
        * the layer's floor, the largest over the layer's rows of the row's smallest
          candidate floor: every placement of the layer has a bin that heavy, so this
          row no longer decides (much of) the layer's heaviest bin.
        (``kernels.pack_rows`` also skips the passes of a packing whose floor is at least the
        dealt peak of another candidate of its row.)
        """
        stop_at = floor
        if rows_per_layer > 1:
            row_floor = floor
            if row is not None:
                row_floor = torch.full((num_rows,), torch.inf, dtype=floor.dtype, device=floor.device)
                row_floor.scatter_reduce_(0, row, floor, reduce="amin")
            layer_floor = row_floor.view(-1, rows_per_layer).amax(dim=-1).repeat_interleave(rows_per_layer)
            stop_at = torch.maximum(stop_at, layer_floor if row is None else layer_floor.index_select(0, row))
        return stop_at * (1 + GOOD_ENOUGH)

    def place_window(self, window: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
                     num_gpus: int) -> torch.Tensor:
        """Plan for the window after this one: window [S, L, E] -> phy2log [L, num_replicas].

        The plan on the window's sum competes with plans counted and packed on the expected
        next-window load (``hedge.next_window_load``), whose copy counts lean toward the experts
        whose load swings from step to step; each layer keeps the one whose heaviest GPU is
        lightest on average over likely next windows, where it beats the plan on the sum by more
        than the scenarios' own noise (``eplb.policies.hedge``), all plans scored in one batched
        product. All of them share the sum's packing of expert groups onto nodes. Without swings
        (one step, or steady loads) this is the plan on the sum.
        """
        total = window.sum(0)
        steps = self.steps(total, num_replicas, num_groups, num_nodes, num_gpus)
        swing = hedge.volatility(window)
        if not bool((swing > 0).any()):
            return steps.phy2log
        num_layers, num_experts = total.shape
        per_node = num_experts // num_nodes
        slots, bins = num_replicas // num_nodes, num_gpus // num_nodes
        expected = hedge.next_window_load(total, swing)  # [L, E]
        hedged = hedge.hedged_weights(expected, swing)  # [H, L, E]
        num_hedges = hedged.shape[0]
        node_hedged = hedged.gather(2, steps.mlog2log.expand(num_hedges, -1, -1)).view(-1, per_node)
        cap = bins if spread_copies(per_node, slots, bins) else None
        counts = min_max_counts(node_hedged, slots, cap)  # [H * L * N, E / N]
        node_expected = expected.gather(1, steps.mlog2log).to(total.dtype).view(-1, per_node)
        node_phy2mlog = self._pack_hedges(node_expected,
                                          counts.view(num_hedges, -1, per_node), bins, num_nodes,
                                          steps.node_phy2mlog.reshape(-1, slots))
        offset = torch.arange(num_nodes, device=total.device).view(1, 1, -1, 1) * per_node
        phy2mlog = (node_phy2mlog.view(num_hedges, num_layers, num_nodes, -1) + offset).flatten(2)  # [H, L, P]
        plans = torch.cat([steps.phy2log.unsqueeze(0),
                           steps.mlog2log.expand(num_hedges, -1, -1).gather(2, phy2mlog)])  # [1 + H, L, P]
        scenarios = hedge.next_window_scenarios(total, swing, hedge.scenario_count(num_layers, num_experts))
        best = hedge.pick_plan(hedge.scenario_peaks(scenarios, plans, num_experts, num_gpus))  # [L]
        return plans.gather(0, best.view(1, -1, 1).expand(1, -1, num_replicas)).squeeze(0)

    def _pack_hedges(self, node_weight: torch.Tensor, counts: torch.Tensor, num_bins: int, num_nodes: int,
                     base: torch.Tensor) -> torch.Tensor:
        """``pack_counts`` for every hedge level: node_weight [L * N, n] (the load to pack on),
        counts [H, L * N, n] -> [H * L * N, S].

        base: [L * N, S] the plan on the window's sum. A layer whose counts at some level equal
        those of the base plan (in every node) takes the base plan and is not packed: the level
        would differ from it by its packing alone, which packing such layers too left unchanged
        on the case measured (DeepSeek-V3, uniform load, 5% noise, next window 0.9431 both ways),
        and as the base plan it has no gain for ``hedge.pick_plan`` to weigh. One whose counts equal those of a
        lower level is packed once: packing is deterministic and each layer's apart, so the
        plans are the same.
        """
        num_hedges, num_rows, num_items = counts.shape
        device = counts.device
        levels = torch.cat([copy_counts(base, num_items).unsqueeze(0), counts])  # level 0: the base plan's
        by_layer = levels.view(num_hedges + 1, -1, num_nodes * num_items)  # [1 + H, L, N * n]
        num_layers = by_layer.shape[1]
        # [H1, H2, L]: True where level h1 < h2 has level h2's counts in the layer.
        earlier = (by_layer.unsqueeze(1) == by_layer.unsqueeze(0)).all(dim=-1)
        earlier &= earlier_candidates(num_hedges + 1, device).T.unsqueeze(-1)
        level = torch.arange(num_hedges + 1, device=device).view(-1, 1)
        first = torch.where(earlier.any(dim=0), earlier.int().argmax(dim=0), level)  # [1 + H, L]: the lowest such
        source = first * num_layers + torch.arange(num_layers, device=device)  # the (level, layer) each one takes
        own = source.view(-1) == torch.arange(source.numel(), device=device)
        packed = own[num_layers:].nonzero().squeeze(1) + num_layers  # (level >= 1, layer) packed, level-major
        node = torch.arange(num_nodes, device=device)
        rows = ((packed - num_layers).view(-1, 1) * num_nodes + node).view(-1)  # their rows of counts
        plans = base
        if rows.numel():
            plans = torch.cat([base, self.pack_counts(node_weight.index_select(0, rows % num_rows),
                                                      counts.view(-1, num_items).index_select(0, rows), num_bins,
                                                      rows_per_layer=num_nodes)])
        # Layer l of the base is plans' layer l; packed[r] is plans' layer L + r.
        position = torch.empty(source.numel(), dtype=torch.int64, device=device)
        position[:num_layers] = torch.arange(num_layers, device=device)
        position.index_copy_(0, packed, torch.arange(packed.numel(), device=device) + num_layers)
        taken = position.index_select(0, source[1:].reshape(-1))  # [H * L]
        return plans.index_select(0, (taken.view(-1, 1) * num_nodes + node).view(-1))

    def pack_counts(self, weight: torch.Tensor, counts: torch.Tensor, num_bins: int,
                    rows_per_layer: int = 1) -> torch.Tensor:
        """Pack given copy counts as ``replicate_and_pack`` packs its candidates: weight, counts
        [B, n] (rows summing to S) -> phy2log [B, S], bins contiguous."""
        with torch.inference_mode():
            phy2item = self._search(weight, int(counts[0].sum()), num_bins, rows_per_layer, counts.unsqueeze(1))
        return phy2item.clone()

    def _search(self, weight: torch.Tensor, num_slots: int, num_bins: int, rows_per_layer: int,
                counts: torch.Tensor | None = None) -> torch.Tensor:
        """``replicate_and_pack``'s work: weight [B, n] -> phy2log [B, num_slots]; counts [B, C, n]:
        the candidates to pack (default ``candidate_counts``)."""
        num_rows, num_items = weight.shape
        ranked = sorted_rows(weight)  # one sort of the weight serves the counts and every candidate's copies
        if counts is None:
            counts = self.candidate_counts(weight, num_slots, num_bins, ranked)  # [B, C, n]
        num_candidates = counts.shape[1]
        by_weight = ranked[1]
        if num_candidates == 1:
            row = None
            flat_counts, row_weight = counts[:, 0], weight
        else:
            # Pack the first candidate everywhere, the others only where they differ from the earlier ones.
            which = torch.from_numpy(kernels.distinct_candidates(on_host(counts, np.int64))).to(weight.device)  # row * C + c
            row = which // num_candidates
            flat_counts = counts.view(-1, num_items).index_select(0, which)  # [K, n]
            row_weight, by_weight = weight.index_select(0, row), by_weight.index_select(0, row)
        phy2item, loads = copies_heaviest_first(row_weight, flat_counts, num_slots, by_weight)  # [K, S] each
        spread = phy2item if spread_copies(num_items, num_slots, num_bins) else None
        floor = packing_floor(loads, num_bins)
        table, peak_of = packed(loads, num_bins, self._stop_at(floor, row, num_rows, rows_per_layer), floor,
                                row, num_rows, spread)
        if row is None:
            return phy2item.gather(-1, table.flatten(1))
        return torch.from_numpy(kernels.best_packings(on_host(phy2item, np.int64), on_host(table.flatten(1), np.int64),
                                                      on_host(peak_of, np.float64), on_host(row, np.int64), num_rows)
                                ).to(weight.device)

"""Loops compiled to machine code (numba): ``joint``'s round-robin dealing and swap passes, the
expansion of copy counts into copies, and the reverse map log2phy.

The packing loops are inherently sequential within a row (a round deals to the bins the last
round left lightest; a pass swaps on the bins the last pass left) and short across it (a
few dozen bins, a few slots each), so batched tensor code spent nearly all its time on
the dispatch of small operations: a pass was some 40 numpy calls on arrays of a few
hundred entries. Here each row runs its own loop in machine code, which also lets every
row stop on its own. The functions take and return numpy arrays on the host;
``eplb.policies.joint`` and ``eplb.rebalance`` wrap them for torch tensors (of any device).

Ties among equal bin loads are broken by bin index when dealing and by the last pass's
order when swapping (stable sorts), so the same input always gives the same output, on
every machine.

Compiled on first use and cached beside this file (``cache=True``; numba uses a cache
folder of the user's where this one is read-only): the first call of a fresh install
takes a few seconds, later processes load the machine code.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _ascending(load: np.ndarray, order: np.ndarray) -> None:
    """order[:] = the indices of load, lightest first, ties by index (insertion sort: M is small)."""
    for i in range(load.shape[0]):
        order[i] = i
    _resort(load, order, 1.0)


@_jit
def _resort(load: np.ndarray, order: np.ndarray, sign: float) -> None:
    """Sort order (indices into load) by sign * load ascending, in place, ties kept in their
    present order: an insertion sort, quick when order is nearly sorted already."""
    for i in range(1, order.shape[0]):
        key = order[i]
        value = sign * load[key]
        j = i - 1
        while j >= 0 and sign * load[order[j]] > value:
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = key


@_jit
def expand_copies(order: np.ndarray, per_copy: np.ndarray, counts: np.ndarray, num_slots: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each item repeated by its count, in the given order: order [R, n] int64 (items heaviest
    first), per_copy [R, n] (load per copy), counts [R, n] int64 (rows summing to num_slots)
    -> (item of each copy [R, num_slots] int64, its load [R, num_slots], per_copy's dtype)."""
    num_rows, num_items = order.shape
    items = np.empty((num_rows, num_slots), dtype=np.int64)
    loads = np.empty((num_rows, num_slots), dtype=per_copy.dtype)
    for r in range(num_rows):
        at = 0
        for k in range(num_items):
            item = order[r, k]
            for _ in range(counts[r, item]):
                items[r, at] = item
                loads[r, at] = per_copy[r, item]
                at += 1
    return items, loads


@_jit
def deal_rows(loads: np.ndarray, items: np.ndarray, num_bins: int, spread: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """Deal copies heaviest first, one per bin per round, each round's heaviest to the lightest bin.

    loads: [R, S] float64 copy loads sorted heaviest first (S = num_bins * s); items: [R, S]
    int64 the item of each copy (read only with ``spread``). Returns (slot [R, S] int64:
    bin * s + round of every copy; bin loads [R, M] float64).

    Round 0 deals copy k to bin k. With ``spread`` no bin gets two copies of one item: the
    copies of an item are adjacent and at most M, so only the item running over from the
    last round (the first copy of this one) can meet itself; its copies in this round take
    the lightest bins not holding it, the round's other copies the remaining bins,
    lightest first.
    """
    num_rows, num_slots = loads.shape
    per_bin = num_slots // num_bins
    slot = np.empty((num_rows, num_slots), dtype=np.int64)
    bin_load = np.empty((num_rows, num_bins), dtype=np.float64)
    order = np.empty(num_bins, dtype=np.int64)
    chosen = np.empty(num_bins, dtype=np.int64)
    last = np.empty(num_bins, dtype=np.int64)  # the bin of each position of the last round
    held = np.zeros(num_bins, dtype=np.bool_)  # by bin: holds the item running over
    used = np.zeros(num_bins, dtype=np.bool_)  # by bin: taken by its copies
    for r in range(num_rows):
        for k in range(num_bins):
            bin_load[r, k] = loads[r, k]
            slot[r, k] = k * per_bin
            last[k] = k
        for turn in range(1, per_bin):
            start = turn * num_bins
            _ascending(bin_load[r], order)  # lightest first, ties by bin index
            runs_over, first = False, -1
            if spread:
                first = items[r, start]
                for k in range(num_bins):
                    held[last[k]] = items[r, start - num_bins + k] == first
                    runs_over = runs_over or held[last[k]]
            if runs_over:
                copies = 0
                for k in range(num_bins):
                    if items[r, start + k] == first:
                        copies += 1
                # Its copies take the first bins in load order not holding it, the rest
                # of the round the remaining bins, still in load order.
                taken = 0
                for k in range(num_bins):
                    used[order[k]] = taken < copies and not held[order[k]]
                    if used[order[k]]:
                        chosen[taken] = order[k]
                        taken += 1
                for k in range(num_bins):
                    if not used[order[k]]:
                        chosen[taken] = order[k]
                        taken += 1
            else:
                for k in range(num_bins):
                    chosen[k] = order[k]
            for k in range(num_bins):
                b = chosen[k]
                bin_load[r, b] += loads[r, start + k]
                slot[r, start + k] = b * per_bin + turn
                last[k] = b
    return slot, bin_load


@_jit
def _best_swap(slot_load: np.ndarray, heavy: int, light: int, per_bin: int, half_gap: float
               ) -> tuple[float, int, int]:
    """The swap of a copy a of the heavy bin and b of the light one whose move a - b is
    closest to half_gap: (|a - b - half_gap|, a's slot, b's slot). Both bins hold their
    copies heaviest first, so as a gets lighter its best partner does too: one sweep."""
    best, best_a, best_b = np.inf, heavy, light
    j = 0
    for i in range(per_bin):
        target = slot_load[heavy + i] - half_gap
        while j < per_bin and slot_load[light + j] > target:
            j += 1
        # The partners just above and just below the target.
        if j > 0:
            distance = slot_load[light + j - 1] - target
            if distance < best:
                best, best_a, best_b = distance, heavy + i, light + j - 1
        if j < per_bin:
            distance = target - slot_load[light + j]
            if distance < best:
                best, best_a, best_b = distance, heavy + i, light + j
    return best, best_a, best_b


@_jit
def _settle(slot_copy: np.ndarray, slot_load: np.ndarray, slot_item: np.ndarray, start: int, per_bin: int,
            at: int, spread: bool) -> None:
    """Move the copy at slot ``at`` within its bin (slots start .. start + per_bin - 1) to keep
    the bin heaviest first; the others keep their order."""
    while at > start and slot_load[at - 1] < slot_load[at]:
        _swap_slots(slot_copy, slot_load, slot_item, at - 1, at, spread)
        at -= 1
    while at < start + per_bin - 1 and slot_load[at + 1] > slot_load[at]:
        _swap_slots(slot_copy, slot_load, slot_item, at, at + 1, spread)
        at += 1


@_jit
def _swap_slots(slot_copy: np.ndarray, slot_load: np.ndarray, slot_item: np.ndarray, x: int, y: int,
                spread: bool) -> None:
    slot_copy[x], slot_copy[y] = slot_copy[y], slot_copy[x]
    slot_load[x], slot_load[y] = slot_load[y], slot_load[x]
    if spread:
        slot_item[x], slot_item[y] = slot_item[y], slot_item[x]


@_jit
def swap_rows(slot_copy: np.ndarray, slot_load: np.ndarray, slot_item: np.ndarray, limit: np.ndarray,
              num_bins: int, pairs: int, passes: int, patience: int, spread: bool) -> None:
    """Swap passes, in place: slot_copy [R, S] int64 (the copy in each slot, bin by bin),
    slot_load [R, S] float64 and slot_item [R, S] int64 (its load and item; items read
    only with ``spread``) change together; limit [R] float64 (-inf: no limit).
    Every bin holds its copies heaviest first (as dealt), and keeps them so.

    Each pass sorts the bins by load and pairs the k-th heaviest with a light partner
    (rank M - 1 - (k + pass) % pairs) for the ``pairs`` heaviest; each pair takes the swap
    of a heavy copy a and a light copy b whose move a - b is closest to half the pair's
    gap, if that lowers the pair's larger bin. With ``spread``, a swap that would bring a
    copy into a bin holding its item is skipped. A row stops once ``patience`` passes in a
    row improve nothing, once its heaviest bin is at most its limit (checked before the first
    pass and after each), or after ``passes`` passes.
    """
    num_rows, num_slots = slot_load.shape
    per_bin = num_slots // num_bins
    bin_load = np.empty(num_bins, dtype=np.float64)
    order = np.empty(num_bins, dtype=np.int64)
    unpaired = num_bins > 2 * pairs
    no_items = np.zeros(0, dtype=np.int64)
    for r in range(num_rows):
        load, copy = slot_load[r], slot_copy[r]
        item = slot_item[r] if spread else no_items
        for b in range(num_bins):
            total = 0.0
            for k in range(per_bin):
                total += load[b * per_bin + k]
            bin_load[b] = total
        if bin_load.max() <= limit[r]:
            continue
        for b in range(num_bins):
            order[b] = b
        idle = 0  # passes in a row that improved nothing
        for step in range(passes):
            _resort(bin_load, order, -1.0)  # heaviest first; a pass moves few bins in this order
            improved = False
            peak = bin_load[order[pairs]] if unpaired else -np.inf
            for h in range(pairs):
                heavy = order[h]
                light = order[num_bins - 1 - (h + step) % pairs]
                high, low = bin_load[heavy], bin_load[light]
                half_gap = (high - low) / 2
                miss, first, second = _best_swap(load, heavy * per_bin, light * per_bin, per_bin, half_gap)
                better = miss < half_gap * (1 - 1e-9)
                if better and spread:
                    for k in range(per_bin):
                        if item[heavy * per_bin + k] == item[second] or item[light * per_bin + k] == item[first]:
                            better = False
                            break
                if not better:
                    peak = max(peak, high)
                    continue
                _swap_slots(copy, load, item, first, second, spread)
                _settle(copy, load, item, heavy * per_bin, per_bin, first, spread)
                _settle(copy, load, item, light * per_bin, per_bin, second, spread)
                bin_load[heavy] = 0.0
                bin_load[light] = 0.0
                for k in range(per_bin):
                    bin_load[heavy] += load[heavy * per_bin + k]
                    bin_load[light] += load[light * per_bin + k]
                improved = True
                peak = max(peak, bin_load[heavy], bin_load[light])
            idle = 0 if improved else idle + 1
            keep = idle < patience
            if peak <= limit[r]:
                keep = False
            if not keep:
                break


@_jit
def pack_rows(loads: np.ndarray, items: np.ndarray, num_bins: int, pairs: int, passes: int, patience: int,
              spread: bool,
              stop_at: np.ndarray, floor: np.ndarray, row: np.ndarray, num_rows: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Deal (``deal_rows``) then swap (``swap_rows``) every packing: loads, items [K, S] as for
    ``deal_rows``; stop_at, floor [K] float64 (each packing's stop load and proven floor);
    row [K] int64, the row of num_rows each packing is a candidate of. Returns (the copy in
    every slot, bin by bin [K, S] int64; the heaviest bin [K] float64).

    A packing whose floor is at least the dealt heaviest bin of a packing of its row takes
    no pass: it can at best tie with that one.
    """
    num_packings, num_slots = loads.shape
    slot, bin_load = deal_rows(loads, items, num_bins, spread)
    best = np.full(num_rows, np.inf)  # each row's lightest dealt heaviest bin
    for k in range(num_packings):
        best[row[k]] = min(best[row[k]], bin_load[k].max())
    limit = stop_at.copy()
    slot_copy = np.empty((num_packings, num_slots), dtype=np.int64)
    slot_load = np.empty((num_packings, num_slots), dtype=np.float64)
    slot_item = np.empty((num_packings, num_slots if spread else 0), dtype=np.int64)
    for k in range(num_packings):
        if floor[k] >= best[row[k]]:
            limit[k] = np.inf
        for c in range(num_slots):
            at = slot[k, c]
            slot_copy[k, at] = c
            slot_load[k, at] = loads[k, c]
            if spread:
                slot_item[k, at] = items[k, c]
    swap_rows(slot_copy, slot_load, slot_item, limit, num_bins, pairs, passes, patience, spread)
    per_bin = num_slots // num_bins
    peak = np.empty(num_packings, dtype=np.float64)
    for k in range(num_packings):
        heaviest = -np.inf
        for b in range(num_bins):
            total = 0.0
            for c in range(per_bin):
                total += slot_load[k, b * per_bin + c]
            heaviest = max(heaviest, total)
        peak[k] = heaviest
    return slot_copy, peak


@_jit
def fill_log2phy(phy2log: np.ndarray, log2phy: np.ndarray, logcnt: np.ndarray) -> None:
    """The reverse map of a placement, in place: phy2log [L, P] int64 -> log2phy [L, E, W] int64
    (filled with -1 by the caller) and logcnt [L, E] int64 (zeros); copy k of an expert is its
    k-th lowest slot. One pass over the slots."""
    num_layers, num_replicas = phy2log.shape
    for layer in range(num_layers):
        for slot in range(num_replicas):
            expert = phy2log[layer, slot]
            log2phy[layer, expert, logcnt[layer, expert]] = slot
            logcnt[layer, expert] += 1


def warm_up() -> None:
    """Compile every loop, or load it from the cache, for the argument types the library passes
    (float32 and float64 loads), so that no later call waits for the compiler: a few seconds
    on a fresh install, a fraction of a second once cached."""
    loads = np.array([[2.0, 1.0]])
    items = np.array([[0, 1]], dtype=np.int64)
    deal_rows(loads, items, 2, True)
    floor = np.zeros(1)
    pack_rows(loads, items, 2, 1, 1, 1, True, floor, floor, np.zeros(1, dtype=np.int64), 1)
    for dtype in (np.float32, np.float64):
        expand_copies(np.array([[0, 1]], dtype=np.int64), loads.astype(dtype), np.ones((1, 2), dtype=np.int64), 2)
    fill_log2phy(items, np.full((1, 2, 1), -1, dtype=np.int64), np.zeros((1, 2), dtype=np.int64))

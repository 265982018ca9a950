"""Loops compiled to machine code (numba): ``joint``'s round-robin dealing, swap passes and
refinement of copy counts, the expansion of copy counts into copies, and the reverse map log2phy.

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

SHORT_SORT = 512
"""Up to this many bins ``_rank_sort`` beats numba's merge sort, which allocates: 180 against
730 ns at 32 bins, 1.7 against 4.5 us at 128, 22 against 25 us at 512, 33 against 32 at 640
(random loads, the project's CPU)."""


@_jit
def _ascending(load: np.ndarray, order: np.ndarray) -> None:
    """order[:] = the indices of load, lightest first, ties by index. Loads that do not rise
    (as round 0 of a deal leaves the bins) are read backwards, a run of ties at a time, in
    O(M); others take ``_rank_sort`` up to ``SHORT_SORT`` bins, a stable merge sort above."""
    size = load.shape[0]
    for k in range(1, size):
        if load[k] > load[k - 1]:
            if size <= SHORT_SORT:
                _rank_sort(load, order)
            else:
                order[:] = np.argsort(load, kind="mergesort")
            return
    at, end = 0, size - 1
    while end >= 0:
        begin = end
        while begin > 0 and load[begin - 1] == load[end]:
            begin -= 1
        for k in range(begin, end + 1):
            order[at] = k
            at += 1
        end = begin - 1


@_jit
def _rank_sort(load: np.ndarray, order: np.ndarray) -> None:
    """order[:] = the indices of load, lightest first, ties by index: each index goes to its rank,
    the number of loads below it plus the equal ones before it. O(M^2) comparisons without
    branches, which for a few dozen bins in no particular order beats an insertion sort's
    O(M^2) moves. Four indices are ranked per sweep over the loads (each load read once for
    four comparisons, which the compiler keeps in vector registers): 170 against 250 ns
    ranking one at a time at 32 bins, 1.7 against 3.6 us at 128."""
    size = load.shape[0]
    i = 0
    while i + 4 <= size:
        v0, v1, v2, v3 = load[i], load[i + 1], load[i + 2], load[i + 3]
        r0 = r1 = r2 = r3 = np.int64(0)
        for j in range(size):
            x = load[j]
            r0 += np.int64(x < v0)
            r1 += np.int64(x < v1)
            r2 += np.int64(x < v2)
            r3 += np.int64(x < v3)
        for j in range(i):  # equal loads before the four
            x = load[j]
            r0 += np.int64(x == v0)
            r1 += np.int64(x == v1)
            r2 += np.int64(x == v2)
            r3 += np.int64(x == v3)
        r1 += np.int64(v0 == v1)  # and among them
        r2 += np.int64(v0 == v2) + np.int64(v1 == v2)
        r3 += np.int64(v0 == v3) + np.int64(v1 == v3) + np.int64(v2 == v3)
        order[r0], order[r1], order[r2], order[r3] = i, i + 1, i + 2, i + 3
        i += 4
    for k in range(i, size):
        rank = np.int64(0)
        for j in range(size):
            rank += np.int64(load[j] < load[k]) + np.int64((load[j] == load[k]) & (j < k))
        order[rank] = k


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
def float32_sort_keys(x: np.ndarray, descending: bool) -> np.ndarray:
    """Sort keys of float32 rows: x [R, n] -> uint64 [R, n], whose ascending order is x's
    order (descending with ``descending``), ties by position: the value's bits made
    order-preserving as an unsigned integer in the upper half, the position in the lower
    (``key_positions`` reads it back). One 64-bit sort of these keys (numpy's, SIMD) is an
    argsort, about 2x numpy's argsort of the floats on the project's CPU. -0.0 ties with 0.0."""
    num_rows, num_items = x.shape
    bits = x.view(np.uint32)
    keys = np.empty((num_rows, num_items), dtype=np.uint64)
    sign = np.uint32(0x80000000)
    for r in range(num_rows):
        for i in range(num_items):
            u = bits[r, i]
            if u == sign:  # -0.0
                u = np.uint32(0)
            ordered = ~u if u & sign else u | sign
            if descending:
                ordered = ~ordered
            keys[r, i] = (np.uint64(ordered) << np.uint64(32)) | np.uint64(i)
    return keys


@_jit
def key_positions(keys: np.ndarray) -> np.ndarray:
    """The positions held in sorted ``float32_sort_keys``: uint64 [R, n] -> int64 [R, n]."""
    num_rows, num_items = keys.shape
    order = np.empty((num_rows, num_items), dtype=np.int64)
    low = np.uint64(0xFFFFFFFF)
    for r in range(num_rows):
        for i in range(num_items):
            order[r, i] = np.int64(keys[r, i] & low)
    return order


@_jit
def expand_copies(by_weight: np.ndarray, per_copy: np.ndarray, counts: np.ndarray, num_slots: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every copy heaviest first: by_weight [R, n] int64 (each row's items heaviest first),
    per_copy [R, n] (load per copy), counts [R, n] int64 (rows summing to num_slots) -> (item
    of each copy [R, num_slots] int64, its load [R, num_slots], per_copy's dtype).

    The copies come sorted by load per copy, ties in by_weight order, items repeated by their
    counts. An item of one copy carries its whole load, so those items are already in order
    in by_weight; only the items of several copies (at most num_slots - n) are sorted, then
    merged in: O(n + m log m) per row for m such items, rather than a sort of all n."""
    num_rows, num_items = by_weight.shape
    items = np.empty((num_rows, num_slots), dtype=np.int64)
    loads = np.empty((num_rows, num_slots), dtype=per_copy.dtype)
    shared = np.empty(num_items, dtype=np.int64)  # by_weight positions of the items of several copies
    shared_load = np.empty(num_items, dtype=np.float64)
    for r in range(num_rows):
        num_shared = 0
        for k in range(num_items):
            item = by_weight[r, k]
            if counts[r, item] > 1:
                shared[num_shared] = k
                shared_load[num_shared] = -per_copy[r, item]
                num_shared += 1
        rank = np.argsort(shared_load[:num_shared], kind="mergesort")  # stable: ties in by_weight order
        at, next_shared = 0, 0
        for k in range(num_items + 1):
            single = -1
            if k < num_items:
                single = by_weight[r, k]
                if counts[r, single] > 1:
                    continue
            # The shared items ahead of this single one: heavier per copy, or as heavy and
            # earlier in by_weight (their by_weight position is below k).
            while next_shared < num_shared:
                position = shared[rank[next_shared]]
                item = by_weight[r, position]
                load = per_copy[r, item]
                if single >= 0 and (load < per_copy[r, single] or (load == per_copy[r, single] and position > k)):
                    break
                for _ in range(counts[r, item]):
                    items[r, at] = item
                    loads[r, at] = load
                    at += 1
                next_shared += 1
            if single >= 0:
                items[r, at] = single
                loads[r, at] = per_copy[r, single]
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
    slot = np.empty((num_rows, num_slots), dtype=np.int64)
    bin_load = np.empty((num_rows, num_bins), dtype=np.float64)
    scratch, flags = _deal_scratch(num_bins)
    no_items, no_rounds = np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    for r in range(num_rows):
        _deal_row(loads[r], items[r] if spread else no_items, num_bins, spread, slot[r], bin_load[r], scratch, flags,
                  np.inf, 0, no_rounds)
    return slot, bin_load


@_jit
def _deal_scratch(num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Work arrays of ``_deal_row``, allocated once per call rather than once per row:
    int64 [3, M] (the bins in load order, the bins chosen this round, the bin of each
    position of the last round) and bool [2, M] (by bin: holds the item running over,
    taken by its copies)."""
    return np.empty((3, num_bins), dtype=np.int64), np.zeros((2, num_bins), dtype=np.bool_)


@_jit
def _out_of_reach(heaviest: float, ahead: float, give_up_at: float) -> bool:
    """Whether a deal whose heaviest bin is at heaviest, with ahead the lightest copy of every
    round still to deal, must end with a bin at or above give_up_at (``_deal_row``); the sum
    is allowed a relative 1e-12 for its rounding."""
    return heaviest >= give_up_at or heaviest + ahead >= give_up_at * (1 + 1e-12)


@_jit
def _deal_row(loads: np.ndarray, items: np.ndarray, num_bins: int, spread: bool, slot: np.ndarray,
              bin_load: np.ndarray, scratch: np.ndarray, flags: np.ndarray, give_up_at: float, first_turn: int,
              rounds: np.ndarray) -> bool:
    """One row of ``deal_rows``: loads, items [S] -> slot [S] and bin_load [M], written in place
    (scratch, flags: ``_deal_scratch``). Every bin takes one copy per round, at least the round's
    lightest (its last), so once the heaviest bin plus the lightest copy of every round still
    to deal reaches give_up_at (inf: never), some bin will, and the dealing stops (slot and
    bin_load then incomplete) and returns False; True when every copy was dealt (``_out_of_reach``
    allows the sum a relative 1e-12, far above the error of adding s loads, so the result is that
    of dealing every copy and comparing the bins with give_up_at).

    rounds: float64 [s, M + M] or [0, 0]; when given, row r receives the bin loads and then
    the bins of the round's positions (``scratch[2]``) as round r leaves them. first_turn > 0
    resumes a deal whose first first_turn rounds (slots, bin_load and scratch[2] as they left
    them) the caller has filled in, from such a record of copies equal up to there.
    """
    per_bin = loads.shape[0] // num_bins
    order, chosen, last = scratch[0], scratch[1], scratch[2]
    held, used = flags[0], flags[1]
    record = rounds.shape[0] > 0
    limited = give_up_at < np.inf
    ahead = 0.0  # the lightest copy of every round still to deal after the first_turn - 1 ones dealt
    if limited:
        for turn in range(max(first_turn, 1), per_bin):
            ahead += loads[(turn + 1) * num_bins - 1]
    if first_turn == 0:
        if _out_of_reach(loads[0], ahead, give_up_at):
            return False
        for k in range(num_bins):
            bin_load[k] = loads[k]
            slot[k] = k * per_bin
            last[k] = k
        if record:
            _record_round(rounds[0], bin_load, last)
        first_turn = 1
    elif _out_of_reach(bin_load.max(), ahead, give_up_at):
        return False
    for turn in range(first_turn, per_bin):
        start = turn * num_bins
        _ascending(bin_load, order)  # lightest first, ties by bin index
        runs_over, first = False, -1
        if spread:
            first = items[start]
            for k in range(num_bins):
                held[last[k]] = items[start - num_bins + k] == first
                runs_over = runs_over or held[last[k]]
        if runs_over:
            copies = 0
            for k in range(num_bins):
                if items[start + k] == first:
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
        heaviest = -np.inf
        for k in range(num_bins):
            b = chosen[k]
            bin_load[b] += loads[start + k]
            slot[start + k] = b * per_bin + turn
            last[k] = b
            heaviest = max(heaviest, bin_load[b])
        if limited:
            ahead = max(ahead - loads[(turn + 1) * num_bins - 1], 0.0) if turn + 1 < per_bin else 0.0
            if _out_of_reach(heaviest, ahead, give_up_at):
                return False
        if record:
            _record_round(rounds[turn], bin_load, last)
    return True


@_jit
def _record_round(row: np.ndarray, bin_load: np.ndarray, last: np.ndarray) -> None:
    """row [M + M] = the bin loads, then the bins of the round's positions (as float64)."""
    num_bins = bin_load.shape[0]
    for k in range(num_bins):
        row[k] = bin_load[k]
        row[num_bins + k] = last[k]


@_jit
def _resume_from(rounds: np.ndarray, turn: int, bin_load: np.ndarray, last: np.ndarray) -> None:
    """bin_load and last as round turn - 1 left them (``_record_round``)."""
    num_bins = bin_load.shape[0]
    for k in range(num_bins):
        bin_load[k] = rounds[turn - 1, k]
        last[k] = np.int64(rounds[turn - 1, num_bins + k])


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
def distinct_candidates(counts: np.ndarray) -> np.ndarray:
    """The candidates to pack: counts [B, C, n] int64 -> which [K] int64, the flat indices
    row * C + c, in order, of every count vector not equal to an earlier one of its row
    (candidate 0 of every row among them). Packing is deterministic and each row's apart, so
    a repeat would pack the same way."""
    num_rows, num_candidates, num_items = counts.shape
    which = np.empty(num_rows * num_candidates, dtype=np.int64)
    size = 0
    for r in range(num_rows):
        for c in range(num_candidates):
            repeat = False
            for earlier in range(c):
                repeat = True
                for e in range(num_items):
                    if counts[r, c, e] != counts[r, earlier, e]:
                        repeat = False
                        break
                if repeat:
                    break
            if not repeat:
                which[size] = r * num_candidates + c
                size += 1
    return which[:size]


@_jit
def best_packings(phy2item: np.ndarray, table: np.ndarray, peak: np.ndarray, row: np.ndarray, num_rows: int
                  ) -> np.ndarray:
    """Each row's lightest packing, laid out: phy2item [K, S] int64 (the item of each copy),
    table [K, S] int64 (the copy in each slot, bin by bin), peak [K] float64 (its heaviest bin),
    row [K] int64 (ascending: a row's packings in candidate order) -> phy2log [B, S] int64, the
    item in each slot of the packing with the lowest peak, the earliest among ties."""
    num_slots = phy2item.shape[1]
    best = np.full(num_rows, -1, dtype=np.int64)
    for k in range(peak.shape[0]):
        r = row[k]
        if best[r] < 0 or peak[k] < peak[best[r]]:
            best[r] = k
    out = np.empty((num_rows, num_slots), dtype=np.int64)
    for r in range(num_rows):
        k = best[r]
        for s in range(num_slots):
            out[r, s] = phy2item[k, table[k, s]]
    return out


@_jit
def _sorted_copies(per_copy: np.ndarray, counts: np.ndarray, item: np.ndarray, load: np.ndarray) -> None:
    """Every copy heaviest first, ties by item (the order ``_moved_copies`` keeps): per_copy,
    counts [n] -> item, load [S], written in place."""
    at = 0
    for x in np.argsort(-per_copy, kind="mergesort"):
        for _ in range(counts[x]):
            item[at] = x
            load[at] = per_copy[x]
            at += 1


@_jit
def _moved_copies(item: np.ndarray, load: np.ndarray, moved: np.ndarray, moved_load: np.ndarray,
                  moved_count: np.ndarray, out_item: np.ndarray, out_load: np.ndarray) -> int:
    """The sorted copies (``_sorted_copies``) after the two items ``moved`` [2] change their
    load per copy and count to moved_load, moved_count [2]: one merge, O(S). Returns a position
    up to which the copies are unchanged (the first copy of a moved item, old or new)."""
    first = 0 if moved_load[0] > moved_load[1] or (moved_load[0] == moved_load[1] and moved[0] < moved[1]) else 1
    at, block = 0, 0
    unchanged = -1
    for k in range(item.shape[0]):
        x = item[k]
        if x == moved[0] or x == moved[1]:
            if unchanged < 0:
                unchanged = at
            continue
        while block < 2:
            b = first if block == 0 else 1 - first
            if moved_load[b] > load[k] or (moved_load[b] == load[k] and moved[b] < x):
                if unchanged < 0:
                    unchanged = at
                for _ in range(moved_count[b]):
                    out_item[at] = moved[b]
                    out_load[at] = moved_load[b]
                    at += 1
                block += 1
            else:
                break
        out_item[at] = x
        out_load[at] = load[k]
        at += 1
    while block < 2:
        b = first if block == 0 else 1 - first
        if unchanged < 0:
            unchanged = at
        for _ in range(moved_count[b]):
            out_item[at] = moved[b]
            out_load[at] = moved_load[b]
            at += 1
        block += 1
    return unchanged


@_jit
def packing_floor_row(load: np.ndarray, num_bins: int, levels: int) -> float:
    """A proven floor on the heaviest bin of any packing of these copies (load [S] heaviest
    first, s = S / M copies per bin): the mean bin load; for j < min(s, levels), the j + 1
    lightest of the j * M + 1 heaviest copies (some bin holds j + 1 of them, pigeonhole) plus
    the s - j - 1 lightest copies of all; with two copies per bin, the best pairing, largest
    with smallest (the proofs: ``eplb.policies.joint.packing_floor``)."""
    num_slots = load.shape[0]
    per_bin = num_slots // num_bins
    floor = load.sum() / num_bins
    for j in range(min(per_bin, levels)):
        total = 0.0
        for k in range(j * num_bins - j, j * num_bins + 1):
            total += load[k]
        for k in range(num_slots - (per_bin - 1 - j), num_slots):
            total += load[k]
        floor = max(floor, total)
    if per_bin == 2:
        for k in range(num_bins):
            floor = max(floor, load[k] + load[num_slots - 1 - k])
    return floor


@_jit
def packing_floor_rows(loads: np.ndarray, num_bins: int, levels: int) -> np.ndarray:
    """``packing_floor_row`` of every row: loads [R, S] float64, each row heaviest first -> [R]."""
    floor = np.empty(loads.shape[0])
    for r in range(loads.shape[0]):
        floor[r] = packing_floor_row(loads[r], num_bins, levels)
    return floor


@_jit
def _judge_moves(weight: np.ndarray, counts: np.ndarray, slot_item: np.ndarray, bin_load: np.ndarray,
                 num_bins: int, cap: int, giver: np.ndarray, taker: np.ndarray, present: np.ndarray,
                 after: np.ndarray, who: np.ndarray, judged: np.ndarray) -> None:
    """``refine_rows``'s guide to which moves to deal. A move gives one more copy to an expert
    g of the heaviest bin and takes one from an expert t among the len(taker) whose load per
    copy would stay lowest. Left in place, every bin holding g or t changes by their new loads
    per copy, and g's new copy takes the place of t's copy in t's lightest bin (not allowed
    if that bin holds g, under ``cap``). The heaviest bin after the move is bounded from
    above in O(bins) per g and per t: judged [s * K] (move gi * K + ti; inf where not
    allowed). giver [s], taker [K] (-1: none) and present [s + K, M] (copies per bin) are
    written here; after [max(n, s)] and who [n] are work arrays."""
    num_slots = slot_item.shape[0]
    per_bin = num_slots // num_bins
    takers = taker.shape[0]
    heavy = np.argmax(bin_load)
    for k in range(per_bin):
        giver[k] = slot_item[heavy * per_bin + k]
    # The takers: lowest load per copy after giving one up, among counts above 1, ties by item.
    for x in range(weight.shape[0]):
        after[x] = weight[x] / (counts[x] - 1) if counts[x] > 1 else np.inf
    for k in range(takers):
        pick = np.argmin(after[: weight.shape[0]])
        taker[k] = pick if after[pick] < np.inf else -1
        after[pick] = np.inf
    # Copies of each g and t per bin: one pass over the slots, through each item's place in who.
    who[:] = -1
    for i in range(per_bin + takers):
        x = giver[i] if i < per_bin else taker[i - per_bin]
        if x >= 0 and who[x] < 0:
            who[x] = i
    present[:] = 0
    for k in range(num_slots):
        i = who[slot_item[k]]
        if i >= 0:
            present[i, k // per_bin] += 1
    for i in range(per_bin + takers):  # an item both giver and taker, or twice a giver
        x = giver[i] if i < per_bin else taker[i - per_bin]
        if x >= 0 and who[x] != i:
            present[i] = present[who[x]]
    judged[:] = np.inf
    for gi in range(per_bin):  # the heaviest bin once g's copies shrink, kept in after[:s]
        g = giver[gi]
        shrink = weight[g] / (counts[g] + 1) - weight[g] / counts[g]
        with_g = -np.inf
        for b in range(num_bins):
            with_g = max(with_g, bin_load[b] + shrink * present[gi, b])
        after[gi] = with_g
    for ti in range(takers):
        t = taker[ti]
        if t < 0:
            continue
        in_t = present[per_bin + ti]
        new_t = weight[t] / (counts[t] - 1)
        grow = new_t - weight[t] / counts[t]
        into_bin, into_t, rest_t = -1, np.inf, -np.inf
        for b in range(num_bins):
            if in_t[b] > 0:
                with_t = bin_load[b] + grow * in_t[b]
                if with_t < into_t:
                    if into_bin >= 0:
                        rest_t = max(rest_t, into_t)
                    into_bin, into_t = b, with_t
                else:
                    rest_t = max(rest_t, with_t)
        for gi in range(per_bin):
            g = giver[gi]
            repeated = False
            for j in range(gi):
                repeated = repeated or giver[j] == g
            if repeated or g == t or (cap > 0 and counts[g] >= cap):
                continue
            in_g = present[gi]
            if cap > 0 and in_g[into_bin] > 0:
                continue
            new_g = weight[g] / (counts[g] + 1)
            shrink = new_g - weight[g] / counts[g]
            into_load = into_t + shrink * in_g[into_bin] + (new_g - new_t)
            judged[gi * takers + ti] = max(after[gi], rest_t, into_load)


@_jit
def _move(weight: np.ndarray, counts: np.ndarray, giver: np.ndarray, taker: np.ndarray, move: int,
          item: np.ndarray, load: np.ndarray, moved: np.ndarray, moved_load: np.ndarray, moved_count: np.ndarray,
          out_item: np.ndarray, out_load: np.ndarray) -> int:
    """The sorted copies after move gi * K + ti of ``_judge_moves`` (one more copy for giver[gi],
    one fewer for taker[ti]) into out_item, out_load [S]; moved* [2] are work arrays. Returns
    a position up to which the copies are unchanged (``_moved_copies``)."""
    moved[0], moved[1] = giver[move // taker.shape[0]], taker[move % taker.shape[0]]
    moved_count[0], moved_count[1] = counts[moved[0]] + 1, counts[moved[1]] - 1
    moved_load[0], moved_load[1] = weight[moved[0]] / moved_count[0], weight[moved[1]] / moved_count[1]
    return _moved_copies(item, load, moved, moved_load, moved_count, out_item, out_load)


@_jit
def refine_rows(weight: np.ndarray, counts: np.ndarray, num_bins: int, cap: int, steps: int, takers: int,
                tries: int, good_enough: float) -> np.ndarray:
    """Local search over copy counts, judged by the dealt packing: weight [R, n] float64,
    counts [R, n] int64 (rows summing to S = num_bins * s) -> refined counts [R, n].

    Each step a row judges every move of ``_judge_moves`` on its dealt packing as it stands,
    then goes through the ``tries`` judged best, judged best first, dealing each on the counts
    as they are by then and keeping every one that lowers the heaviest dealt bin: a kept move
    changes the packing the later ones are dealt on. Dealt outcomes hardly follow the judged
    order (a move changes two counts, and every copy after them shifts to another bin), so a
    step tries many; keeping each gain as it comes lets one step bank several moves, and the
    lower heaviest bin lets later deals give up sooner. A row stops when a step keeps no move,
    when its heaviest bin is within ``good_enough`` of the mean bin load, or after ``steps``
    steps. With cap > 0 no count exceeds cap and no bin holds two copies of one item
    (``deal_rows`` with ``spread``); cap 0: no cap. A move's sorted copies are the row's merged
    with the two items' new ones (``_moved_copies``), not sorted anew, and its deal resumes
    from the first round the move changes.
    """
    num_rows, num_items = weight.shape
    out = counts.copy()
    if num_rows == 0:
        return out
    num_slots = out[0].sum()
    per_bin = num_slots // num_bins
    spread = cap > 0
    scratch, flags = _deal_scratch(num_bins)
    item, load, slot = np.empty(num_slots, np.int64), np.empty(num_slots), np.empty(num_slots, np.int64)
    try_item, try_load, try_slot = np.empty(num_slots, np.int64), np.empty(num_slots), np.empty(num_slots, np.int64)
    bin_load, try_bin = np.empty(num_bins), np.empty(num_bins)
    record = np.empty((2, per_bin, 2 * num_bins))  # _deal_row's record of the row and of a move
    rounds, try_rounds = record[0], record[1]
    slot_item = np.empty(num_slots, np.int64)
    giver, taker = np.empty(per_bin, np.int64), np.empty(min(takers, num_items), np.int64)
    present = np.zeros((per_bin + taker.shape[0], num_bins), np.int64)
    judged = np.empty(per_bin * taker.shape[0])
    after, who = np.empty(max(num_items, per_bin)), np.empty(num_items, np.int64)
    moved, moved_load, moved_count = np.empty(2, np.int64), np.empty(2), np.empty(2, np.int64)
    most = min(tries, judged.shape[0])  # moves dealt per step, at most
    for r in range(num_rows):
        w, c = weight[r], out[r]
        _sorted_copies(w / c, c, item, load)
        _deal_row(load, item, num_bins, spread, slot, bin_load, scratch, flags, np.inf, 0, rounds)
        peak = bin_load.max()
        enough = w.sum() / num_bins * (1 + good_enough)
        for _ in range(steps):
            if peak <= enough:
                break
            for k in range(num_slots):
                slot_item[slot[k]] = item[k]
            _judge_moves(w, c, slot_item, bin_load, num_bins, cap, giver, taker, present, after, who, judged)
            kept = False
            for _ in range(most):
                move = np.argmin(judged)  # the next judged best, ties by move
                if judged[move] == np.inf:
                    break
                judged[move] = np.inf
                g, t = giver[move // taker.shape[0]], taker[move % taker.shape[0]]
                if kept and (c[t] < 2 or (cap > 0 and c[g] >= cap)):
                    continue  # a kept move took the room this one needs
                same = _move(w, c, giver, taker, move, item, load, moved, moved_load, moved_count, try_item, try_load)
                # The rounds before the first copy the move changes deal as the row's own did.
                turn = same // num_bins
                if turn > 0:
                    _resume_from(rounds, turn, try_bin, scratch[2])
                    try_slot[: turn * num_bins] = slot[: turn * num_bins]
                    try_rounds[:turn] = rounds[:turn]
                limit = peak * (1 - 1e-9)  # what a kept move must beat
                if not _deal_row(try_load, try_item, num_bins, spread, try_slot, try_bin, scratch, flags, limit,
                                 turn, try_rounds):
                    continue  # some bin reached the limit
                c[g] += 1
                c[t] -= 1
                item[:], load[:], slot[:], bin_load[:] = try_item, try_load, try_slot, try_bin
                rounds[:] = try_rounds
                peak = try_bin.max()
                kept = True
            if not kept:
                break
    return out


@_jit
def min_max_runs(value: np.ndarray, item: np.ndarray, src: np.ndarray, start: np.ndarray, stop: np.ndarray,
                 extra: np.ndarray, target: np.ndarray, num_targets: int, cap: int) -> np.ndarray:
    """DeepSeek's min-max replication of runs of sorted items, one request at a time.

    value: [B, n] loads sorted heaviest first, item: [B, n] int64 the item of each.
    Request q (src, start, stop, extra, target: [Q] int64) gives extra[q] extra copies to the
    items at sorted positions start[q] .. stop[q] - 1 of row src[q], one at a time, each to the
    item with the largest load per copy (value / copies, float64), ties to the earliest
    position; with cap > 0 an item with cap copies takes no more. The copies are added to
    row target[q] of the result, logcnt [num_targets, n] int64, which starts at one copy per
    item (``_min_max_run``).
    """
    num_items = value.shape[1]
    logcnt = np.ones((num_targets, num_items), dtype=np.int64)
    heap = _run_heap(num_items)
    for q in range(src.shape[0]):
        _min_max_run(value[src[q]], item[src[q]], start[q], stop[q], extra[q], cap, logcnt[target[q]], heap)
    return logcnt


@_jit
def _run_heap(num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Work arrays of ``_min_max_run``: key float64, position and copies int64, [n] each."""
    return np.empty(num_items), np.empty(num_items, dtype=np.int64), np.empty(num_items, dtype=np.int64)


@_jit
def _min_max_run(value: np.ndarray, item: np.ndarray, first: int, stop: int, extra: int, cap: int,
                 logcnt: np.ndarray, heap: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """One request of ``min_max_runs`` on one row: value, item [n] sorted heaviest first; adds
    the extra copies of the run first .. stop - 1 to logcnt [n] (indexed by item).

    The items that take copies are a prefix of the run (an item's first extra copy needs
    every heavier one to have fallen to its load, ties to the earliest), of at most extra of
    them: a binary heap over that prefix, O(extra log extra).
    """
    if extra <= 0:
        return
    key, pos, count = heap
    span = min(stop - first, extra)
    # Loads fall with the position, so the run in position order is already a max-heap.
    size = span if cap != 1 else 0
    for k in range(span):
        key[k], pos[k], count[k] = value[first + k], first + k, 1
    for _ in range(extra):
        if size == 0:
            break
        top = pos[0] - first
        count[top] += 1
        if cap > 0 and count[top] >= cap:  # full: the last leaf takes the root's place
            size -= 1
            key[0], pos[0] = key[size], pos[size]
        else:
            key[0] = value[pos[0]] / count[top]
        _sift_down(key, pos, size)
    for k in range(span):
        logcnt[item[first + k]] += count[k] - 1


@_jit
def candidate_runs(value: np.ndarray, item: np.ndarray, total: np.ndarray, num_slots: int, num_bins: int,
                   levels: np.ndarray, scale: np.ndarray, cap: int) -> np.ndarray:
    """``joint``'s first candidates, every row at once: value [B, n] loads sorted heaviest first
    (float32 or float64), item [B, n] int64, total [B] each row's load (value's dtype) ->
    counts [B, C, n] int64.

    Candidate 0 is the min-max counts (``_min_max_run`` over the whole row). Then, for each
    level h of levels [H] int64 where some row is feasible, the "h heavy copies per bin"
    split: an item is heavy when value * (h + 1) * num_bins > total (products in value's
    dtype, the order torch would take; scale [H + 1] holds each h + 1, then num_bins, in that
    dtype), that is when h + 1 of its copies on one bin would overshoot the mean bin load.
    The heavy items (a prefix) share exactly h * num_bins copies and the light ones the other
    slots, each by min-max. A row is infeasible with no heavy item, more than h * num_bins,
    no light one, or too few slots, and with cap > 0 (no bin may hold two copies of an item,
    so no count exceeds cap) with fewer than h heavy items or too few light ones to fill the
    other slots of a bin; it takes the min-max counts again.
    """
    num_rows, num_items = value.shape
    spare = num_slots - num_items
    num_levels = levels.shape[0]
    num_heavy = np.zeros((num_levels, num_rows), dtype=np.int64)
    heavy_extra = np.full((num_levels, num_rows), -1, dtype=np.int64)  # -1: infeasible
    kept = np.zeros(num_levels, dtype=np.bool_)
    for v in range(num_levels):
        per_bin = levels[v]
        heavy_copies = per_bin * num_bins
        for r in range(num_rows):
            heavy = 0
            while heavy < num_items and value[r, heavy] * scale[v] * scale[num_levels] > total[r]:
                heavy += 1
            feasible = 1 <= heavy <= heavy_copies and heavy < num_items and heavy_copies - heavy + num_items <= num_slots
            if cap > 0:  # at most num_bins copies each: per_bin heavy items at least, and room for the light ones
                feasible = feasible and heavy >= per_bin and num_items - heavy >= num_slots // num_bins - per_bin
            num_heavy[v, r] = heavy
            if feasible:
                heavy_extra[v, r] = heavy_copies - heavy
                kept[v] = True
    counts = np.ones((num_rows, 1 + kept.sum(), num_items), dtype=np.int64)
    heap = _run_heap(num_items)
    for r in range(num_rows):
        _min_max_run(value[r], item[r], 0, num_items, spare, cap, counts[r, 0], heap)
        c = 1
        for v in range(num_levels):
            if not kept[v]:
                continue
            if heavy_extra[v, r] < 0:
                counts[r, c] = counts[r, 0]
            else:
                split = num_heavy[v, r]
                _min_max_run(value[r], item[r], 0, split, heavy_extra[v, r], cap, counts[r, c], heap)
                _min_max_run(value[r], item[r], split, num_items, spare - heavy_extra[v, r], cap, counts[r, c], heap)
            c += 1
    return counts


@_jit
def _sift_down(key: np.ndarray, pos: np.ndarray, size: int) -> None:
    """Restore the max-heap key[:size] (ties: lower pos first) after its root changed."""
    at = 0
    while True:
        best, left = at, 2 * at + 1
        for child in (left, left + 1):
            if child < size and (key[child] > key[best] or (key[child] == key[best] and pos[child] < pos[best])):
                best = child
        if best == at:
            return
        key[at], key[best] = key[best], key[at]
        pos[at], pos[best] = pos[best], pos[at]
        at = best


@_jit
def scenario_peaks_rows(scenarios: np.ndarray, phy2log: np.ndarray, share: np.ndarray, num_gpus: int) -> np.ndarray:
    """The heaviest GPU of every plan in every scenario: scenarios [L, E, K] float32 (each
    expert's load in K scenarios, side by side), phy2log [C, L, P] int64 (C plans; GPU g
    holds slots g * P / G ..), share [C, L, P] float32 (the part of its expert's load a copy
    serves) -> [C, L, K] float32. Per plan, layer and GPU, each copy adds its expert's K
    scenario loads times its share: O(C L P K), the scenarios innermost."""
    num_plans, num_layers, num_slots = phy2log.shape
    num_scenarios = scenarios.shape[2]
    per_gpu = num_slots // num_gpus
    peaks = np.zeros((num_plans, num_layers, num_scenarios), dtype=np.float32)
    gpu = np.empty(num_scenarios, dtype=np.float32)
    for c in range(num_plans):
        for layer in range(num_layers):
            peak = peaks[c, layer]
            for g in range(num_gpus):
                gpu[:] = 0.0
                for slot in range(g * per_gpu, (g + 1) * per_gpu):
                    load, part = scenarios[layer, phy2log[c, layer, slot]], share[c, layer, slot]
                    for k in range(num_scenarios):
                        gpu[k] += load[k] * part
                for k in range(num_scenarios):
                    peak[k] = max(peak[k], gpu[k])
    return peaks


@_jit
def fill_log2phy(phy2log: np.ndarray, log2phy: np.ndarray, logcnt: np.ndarray) -> None:
    """The reverse map of a placement, in place: phy2log [L, P] int64 -> log2phy [L, E, W] int64
    and logcnt [L, E] int64, both written whole (they may come uninitialised); copy k of an
    expert is its k-th lowest slot, the columns past its copies hold -1. Per layer: the
    layer's block of log2phy set to -1 as one flat run (a loop the compiler vectorises, faster
    than a short run per expert), then the slots and counts, while the block is in cache."""
    num_layers, num_replicas = phy2log.shape
    for layer in range(num_layers):
        block = log2phy[layer].reshape(-1)
        for k in range(block.shape[0]):
            block[k] = -1
        count = logcnt[layer]
        count[:] = 0
        for slot in range(num_replicas):
            expert = phy2log[layer, slot]
            log2phy[layer, expert, count[expert]] = slot
            count[expert] += 1


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
    refine_rows(loads, np.ones((1, 2), dtype=np.int64), 1, 1, 1, 1, 1, 0.0)
    packing_floor_rows(loads, 1, 1)
    one = np.zeros(1, dtype=np.int64)
    min_max_runs(loads, items, one, one, one + 2, one + 1, one, 1, 0)
    which = distinct_candidates(np.ones((1, 2, 2), dtype=np.int64))
    best_packings(items, items, floor, which, 1)
    for dtype in (np.float32, np.float64):
        candidate_runs(loads.astype(dtype), items, loads.sum(1).astype(dtype), 3, 1, one + 1,
                       np.ones(2, dtype=dtype), 0)
    for descending in (False, True):
        key_positions(np.sort(float32_sort_keys(loads.astype(np.float32), descending), axis=-1))
    scenario_peaks_rows(np.ones((1, 2, 1), dtype=np.float32), items.reshape(1, 1, 2), np.ones((1, 1, 2), dtype=np.float32), 1)
    fill_log2phy(items, np.full((1, 2, 1), -1, dtype=np.int64), np.zeros((1, 2), dtype=np.int64))

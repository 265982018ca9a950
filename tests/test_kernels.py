"""The compiled loops of eplb/kernels.py against plain descriptions of what they compute."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb import kernels


def deal_by_description(loads, items, num_bins, spread):
    """Round-robin dealing as the docstring puts it, one row: (slot of every copy, bin loads)."""
    per_bin = len(loads) // num_bins
    bin_load = list(loads[:num_bins])
    slot = [k * per_bin for k in range(num_bins)]
    last = list(range(num_bins))
    for turn in range(1, per_bin):
        start = turn * num_bins
        order = sorted(range(num_bins), key=lambda b: (bin_load[b], b))
        first = items[start]
        held = {last[k] for k in range(num_bins) if spread and items[start - num_bins + k] == first}
        if held:
            copies = sum(items[start + k] == first for k in range(num_bins))
            taken = [b for b in order if b not in held][:copies]
            order = taken + [b for b in order if b not in taken]
        for k, b in enumerate(order):
            bin_load[b] += loads[start + k]
            slot.append(b * per_bin + turn)
            last[k] = b
    return slot, bin_load


@st.composite
def dealing_cases(draw):
    num_bins = draw(st.integers(1, 7))
    per_bin = draw(st.integers(1, 5))
    num_items = draw(st.integers(per_bin, per_bin + 6))
    counts = draw(st.lists(st.integers(1, num_bins), min_size=num_items, max_size=num_items))
    num_slots = num_bins * per_bin
    # Trim or pad the counts to fill every slot, at most num_bins copies an item.
    while sum(counts) > num_slots:
        counts[counts.index(max(counts))] -= 1
        counts = [c for c in counts if c > 0]
    while sum(counts) < num_slots:
        counts.append(min(num_bins, num_slots - sum(counts)))
    weight = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.5, 7.0, 11.0]), min_size=len(counts),
                           max_size=len(counts)))
    per_copy = [w / c for w, c in zip(weight, counts)]
    order = sorted(range(len(counts)), key=lambda i: -per_copy[i])
    items = [i for i in order for _ in range(counts[i])]
    return np.array([per_copy[i] for i in items]), np.array(items, dtype=np.int64), num_bins


@settings(max_examples=150, deadline=None)
@given(dealing_cases(), st.booleans())
def test_deal_rows_deals_as_described_and_keeps_items_apart(case, spread):
    loads, items, num_bins = case
    slot, bin_load = kernels.deal_rows(loads[None], items[None], num_bins, spread)
    expected_slot, expected_load = deal_by_description(loads.tolist(), items.tolist(), num_bins, spread)
    assert slot[0].tolist() == expected_slot
    assert np.allclose(bin_load[0], expected_load)
    assert sorted(slot[0].tolist()) == list(range(len(loads)))  # every slot filled once
    if spread:
        per_bin = len(loads) // num_bins
        by_bin = [[items[c] for c in range(len(loads)) if slot[0][c] // per_bin == b] for b in range(num_bins)]
        assert all(len(set(held)) == len(held) for held in by_bin)


@settings(max_examples=200, deadline=None)
@given(dealing_cases(), st.booleans(), st.data())
def test_a_deal_gives_up_exactly_when_its_heaviest_bin_would_reach_the_limit(case, spread, data):
    """With a limit, ``_deal_row`` (from round 0, or resumed from a recorded round) returns False
    exactly when dealing every copy leaves some bin at or above the limit, and otherwise deals
    as without one; limits at, just below and just above the dealt bins' loads are drawn."""
    loads, items, num_bins = case
    per_bin = len(loads) // num_bins
    scratch, flags = kernels._deal_scratch(num_bins)
    full_slot, full_bins = np.empty(len(loads), np.int64), np.empty(num_bins)
    record = np.empty((per_bin, 2 * num_bins))
    assert kernels._deal_row(loads, items, num_bins, spread, full_slot, full_bins, scratch, flags, np.inf, 0, record)
    peak = full_bins.max()
    limit = data.draw(st.sampled_from([peak, np.nextafter(peak, np.inf), np.nextafter(peak, -np.inf), peak * 0.9,
                                       peak * 1.1, *full_bins.tolist(), *loads.tolist()]))
    turn = data.draw(st.integers(0, per_bin - 1))
    slot, bins = np.empty(len(loads), np.int64), np.empty(num_bins)
    if turn > 0:  # resume as refine_rows does, from the record of the rounds before
        kernels._resume_from(record, turn, bins, scratch[2])
        slot[: turn * num_bins] = full_slot[: turn * num_bins]
    dealt = kernels._deal_row(loads, items, num_bins, spread, slot, bins, scratch, flags, limit, turn,
                              np.empty((per_bin, 2 * num_bins)))
    assert dealt == (peak < limit)
    if dealt:
        assert slot.tolist() == full_slot.tolist() and bins.tolist() == full_bins.tolist()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(st.sampled_from([0.0, 1.0, 1.5, 2.0, 9.0]), min_size=1, max_size=40),
                 st.lists(st.sampled_from([0.0, 1.0, 1.5, 2.0, 9.0]), min_size=kernels.SHORT_SORT - 5,
                          max_size=kernels.SHORT_SORT + 5)),
       st.booleans())
def test_ascending_orders_bins_lightest_first_ties_by_index(load, falling):
    """Every path of the dealing's bin sort (falling loads, rank sort four loads at a time and
    the rest one by one, merge sort above SHORT_SORT), ties included."""
    load = np.array(sorted(load, reverse=True) if falling else load)
    order = np.empty(len(load), dtype=np.int64)
    kernels._ascending(load, order)
    assert order.tolist() == sorted(range(len(load)), key=lambda b: (load[b], b))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.data())
def test_best_swap_finds_the_move_closest_to_half_the_gap(per_bin, data):
    values = st.floats(0, 100, allow_nan=False)
    heavy = sorted(data.draw(st.lists(values, min_size=per_bin, max_size=per_bin)), reverse=True)
    light = sorted(data.draw(st.lists(values, min_size=per_bin, max_size=per_bin)), reverse=True)
    half_gap = data.draw(st.floats(0, 100, allow_nan=False))
    slot_load = np.array(heavy + light)
    miss, a, b = kernels._best_swap(slot_load, 0, per_bin, per_bin, half_gap)
    brute = min(abs(x - y - half_gap) for x in heavy for y in light)
    assert 0 <= a < per_bin <= b < 2 * per_bin
    assert np.isclose(miss, brute) and np.isclose(abs(slot_load[a] - slot_load[b] - half_gap), brute)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_swap_rows_keeps_bins_sorted_and_never_raises_the_peak(num_bins, per_bin, seed):
    rng = np.random.default_rng(seed)
    loads = np.sort(rng.pareto(1.5, (4, num_bins * per_bin)), axis=1)[:, ::-1].copy()
    items = np.tile(np.arange(num_bins * per_bin), (4, 1))
    slot, before = kernels.deal_rows(loads, items, num_bins, False)
    slot_copy = np.empty_like(slot)
    slot_load = np.empty_like(loads)
    for r in range(4):
        slot_copy[r, slot[r]] = np.arange(num_bins * per_bin)
        slot_load[r, slot[r]] = loads[r]
    kernels.swap_rows(slot_copy, slot_load, np.zeros((0, 0), dtype=np.int64), np.full(4, -np.inf), num_bins,
                      num_bins // 2, 12, 4, False)
    assert np.array_equal(np.sort(slot_copy, axis=1), np.tile(np.arange(num_bins * per_bin), (4, 1)))
    assert np.array_equal(slot_load, np.take_along_axis(loads, slot_copy, 1))
    by_bin = slot_load.reshape(4, num_bins, per_bin)
    assert np.all(np.diff(by_bin, axis=-1) <= 0)  # every bin heaviest first
    assert np.all(by_bin.sum(-1).max(-1) <= before.max(-1) + 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_expand_copies_sorts_every_copy_by_load_per_copy_ties_in_weight_order(data):
    """The merge of the single-copy items (in weight order) with the sorted shared ones is
    a stable sort of the loads per copy in weight order; integer loads and counts make ties."""
    num_rows, num_items = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    spare = data.draw(st.integers(0, 2 * num_items))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    weight = np.array(data.draw(st.lists(st.lists(st.integers(0, 6), min_size=num_items, max_size=num_items),
                                         min_size=num_rows, max_size=num_rows)), dtype=dtype)
    counts = np.ones((num_rows, num_items), dtype=np.int64)
    for r in range(num_rows):
        for e in data.draw(st.lists(st.integers(0, num_items - 1), min_size=spare, max_size=spare)):
            counts[r, e] += 1
    by_weight = np.argsort(-weight, axis=1, kind="stable")
    if data.draw(st.booleans()):  # any order of equal weights is a valid by_weight
        by_weight = by_weight[:, ::-1].copy()
        by_weight = np.take_along_axis(by_weight, np.argsort(-np.take_along_axis(weight, by_weight, 1), 1,
                                                             kind="stable"), 1)
    per_copy = weight / counts
    items, loads = kernels.expand_copies(by_weight, per_copy, counts, num_items + spare)
    for r in range(num_rows):
        order = by_weight[r][np.argsort(-per_copy[r][by_weight[r]], kind="stable")]
        assert items[r].tolist() == np.repeat(order, counts[r][order]).tolist()
        assert loads.dtype == per_copy.dtype and np.array_equal(loads[r], per_copy[r][items[r]])


def sorted_copies(per_copy, counts):
    """Every copy heaviest first, ties by item: (items, loads)."""
    order = sorted(range(len(counts)), key=lambda i: (-per_copy[i], i))
    items = np.array([i for i in order for _ in range(counts[i])], dtype=np.int64)
    return items, np.array([per_copy[i] for i in items])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=2, max_size=9), st.integers(0, 2**31 - 1), st.data())
def test_moved_copies_are_the_copies_sorted_anew(counts, seed, data):
    """Merging the two moved items' new copies into the sorted copies equals sorting anew, ties included."""
    counts = np.array(counts)
    weight = np.random.default_rng(seed).integers(0, 4, len(counts)).astype(np.float64)  # many ties
    giver = data.draw(st.integers(0, len(counts) - 1))
    taker = data.draw(st.sampled_from([i for i in range(len(counts)) if i != giver]))
    if counts[taker] < 2:
        counts[taker] += 1
    items, loads = sorted_copies((weight / counts).tolist(), counts.tolist())
    after = counts.copy()
    after[giver] += 1
    after[taker] -= 1
    moved = np.array([giver, taker])
    out_items, out_loads = np.empty(len(items) + 0, np.int64), np.empty(len(items))
    unchanged = kernels._moved_copies(items, loads, moved, weight[moved] / after[moved], after[moved],
                                      out_items, out_loads)
    want_items, want_loads = sorted_copies((weight / after).tolist(), after.tolist())
    assert out_items.tolist() == want_items.tolist()
    assert np.array_equal(out_loads, want_loads)
    # It names the first copy of a moved item in the old order or the new, and nothing before it moved.
    first_moved = min(k for order in (items, want_items) for k, x in enumerate(order) if x in moved)
    assert unchanged == first_moved
    assert items[:unchanged].tolist() == want_items[:unchanged].tolist()


@settings(max_examples=80, deadline=None)
@given(st.integers(3, 10), st.integers(2, 6), st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_a_refine_step_deals_the_judged_moves_in_order_and_keeps_every_gain(num_items, num_bins, per_bin, seed):
    """One step of ``refine_rows`` with every taker and every move dealt, against its description:
    the moves (more copies for an item of the heaviest dealt bin, fewer for another with two or
    more) in the order ``_judge_moves`` ranks them, each dealt anew on the counts the moves kept
    before it left, kept when it lowers the heaviest dealt bin; none kept: the start."""
    num_slots = num_bins * per_bin
    if num_slots <= num_items:
        return
    rng = np.random.default_rng(seed)
    weight = rng.pareto(1.0, num_items) * 100
    counts = np.ones(num_items, dtype=np.int64)
    for extra in rng.integers(0, num_items, num_slots - num_items):
        counts[extra] += 1

    def dealt(c):
        items, loads = sorted_copies((weight / c).tolist(), c.tolist())
        slot, bin_load = kernels.deal_rows(loads[None], items[None], num_bins, False)
        slot_item = np.empty(num_slots, np.int64)
        slot_item[slot[0]] = items
        return bin_load[0], slot_item

    bin_load, slot_item = dealt(counts)
    giver, taker = np.empty(per_bin, np.int64), np.empty(num_items, np.int64)
    judged = np.empty(per_bin * num_items)
    kernels._judge_moves(weight, counts, slot_item, bin_load, num_bins, 0, giver, taker,
                         np.zeros((per_bin + num_items, num_bins), np.int64), np.empty(max(num_items, per_bin)),
                         np.empty(num_items, np.int64), judged)
    expected, peak = counts.copy(), bin_load.max()
    for move in sorted(np.flatnonzero(judged < np.inf).tolist(), key=lambda m: (judged[m], m)):
        g, t = giver[move // num_items], taker[move % num_items]
        assert g in slot_item.reshape(num_bins, per_bin)[np.argmax(bin_load)] and g != t and counts[t] > 1
        if expected[t] < 2:
            continue
        trial = expected.copy()
        trial[g] += 1
        trial[t] -= 1
        if dealt(trial)[0].max() < peak * (1 - 1e-9):
            expected, peak = trial, dealt(trial)[0].max()
    refined = kernels.refine_rows(weight[None], counts[None], num_bins, 0, 1, num_items, per_bin * num_items, 0.0)[0]
    assert refined.tolist() == expected.tolist()
    assert dealt(refined)[0].max() <= bin_load.max()


def min_max_by_description(value, extra, cap):
    """Copies one at a time to the largest load per copy, ties to the earliest position, never
    past cap (0: no cap): the extra copies of each position."""
    counts = [1] * len(value)
    for _ in range(extra):
        open_ = [k for k in range(len(value)) if cap == 0 or counts[k] < cap]
        if not open_:
            break
        best = max(open_, key=lambda k: (value[k] / counts[k], -k))
        counts[best] += 1
    return [c - 1 for c in counts]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=10), st.integers(0, 3), st.data())
def test_min_max_runs_give_copies_one_at_a_time_to_the_largest_load_per_copy(loads, cap, data):
    """Small integer loads make ties common: they go to the earliest position, exactly."""
    value = np.array([sorted(loads, reverse=True)], dtype=np.float64) / 3  # thirds: ties in float64 too
    num_items = value.shape[1]
    item = np.array([data.draw(st.permutations(range(num_items)))], dtype=np.int64)
    num_requests = data.draw(st.integers(1, 3))
    requests = []
    for _ in range(num_requests):
        start = data.draw(st.integers(0, num_items - 1))
        stop = data.draw(st.integers(start + 1, num_items))
        room = (stop - start) * (cap - 1) if cap else 12
        requests.append((start, stop, data.draw(st.integers(0, min(room, 12))), data.draw(st.integers(0, 1))))
    start, stop, extra, target = (np.array(column, dtype=np.int64) for column in zip(*requests))
    logcnt = kernels.min_max_runs(value, item, np.zeros(num_requests, np.int64), start, stop, extra, target, 2, cap)
    expected = np.ones((2, num_items), dtype=np.int64)
    for q in range(num_requests):
        added = min_max_by_description(list(value[0, start[q]:stop[q]]), int(extra[q]), cap)
        for k, more in enumerate(added):
            expected[target[q], item[0, start[q] + k]] += more
    assert np.array_equal(logcnt, expected)


def test_warm_up_compiles_every_signature_the_library_calls():
    """After ``warm_up`` no call compiles again: the app's first page never waits for numba."""
    import torch

    import eplb

    kernels.warm_up()
    loops = [loop for loop in vars(kernels).values() if hasattr(loop, "signatures")]  # every compiled loop
    assert kernels.pack_rows in loops and kernels.candidate_runs in loops
    before = [len(loop.signatures) for loop in loops]
    for dtype in (torch.float32, torch.float64, torch.int64):
        weight = (torch.rand(3, 16, generator=torch.Generator().manual_seed(0)) * 100).to(dtype)
        for topology in ((24, 4, 2, 8), (20, 1, 1, 4), (32, 4, 2, 16), (64, 2, 1, 8)):
            for mode in ("global", "hierarchical"):
                eplb.rebalance_experts(weight, *topology, policy="joint", mode=mode)
        window = torch.rand(4, 3, 16, generator=torch.Generator().manual_seed(1)).to(dtype) * 50
        eplb.rebalance_experts(window, 24, 4, 2, 8, policy="joint")
    assert [len(loop.signatures) for loop in loops] == before

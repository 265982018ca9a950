"""The proven lower bound (including the big-copy bound) and the exact two-slot optimum against
exhaustive search on tiny topologies."""

import collections
import functools
import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eplb
from eplb.bounds import (EXACT_SPLITS, SCAN_COPIES, big_copies_fit, big_copy_bound, bisect_monotone, bound_balancedness,
                         bracket_the_turn, limit_breakpoints,
                         copy_bound, copy_bound_by_greedy, exact_two_slot_optimum, lower_bound)
from eplb.metrics import gpu_loads
from eplb.workloads import generate_load


@functools.lru_cache(maxsize=None)
def valid_placements(num_experts, num_replicas, num_groups, num_nodes, mode):
    """Every valid phy2log of one layer: [K, P] int64.

    Every expert has a slot; in hierarchical mode every group sits whole on one node
    and every node holds num_groups / num_nodes groups.
    """
    group_size = num_experts // num_groups
    slots_per_node = num_replicas // num_nodes
    valid = []
    for phy2log in itertools.product(range(num_experts), repeat=num_replicas):
        if len(set(phy2log)) < num_experts:
            continue
        if mode == "hierarchical":
            node_of = {}
            if any(node_of.setdefault(e // group_size, p // slots_per_node) != p // slots_per_node
                   for p, e in enumerate(phy2log)):
                continue  # a group split over nodes
            per_node = collections.Counter(node_of.values())
            if any(per_node[n] != num_groups // num_nodes for n in range(num_nodes)):
                continue
        valid.append(phy2log)
    return torch.tensor(valid)


def exhaustive_optimum(weight, num_replicas, num_groups, num_nodes, num_gpus, mode):
    """Least max GPU load over every valid placement of one layer (weight [1, E])."""
    placements = valid_placements(weight.shape[-1], num_replicas, num_groups, num_nodes, mode)
    loads = gpu_loads(weight.expand(len(placements), -1), placements, num_gpus)
    return float(loads.max(dim=-1).values.min())


topologies = st.sampled_from([
    # (experts, replicas, groups, nodes, gpus, mode)
    (3, 4, 1, 1, 2, "global"),
    (3, 6, 1, 1, 3, "global"),
    (4, 6, 1, 1, 3, "global"),
    (2, 6, 1, 1, 3, "global"),
    (4, 4, 2, 2, 2, "hierarchical"),
    (4, 6, 2, 2, 2, "hierarchical"),
    (4, 8, 4, 2, 4, "hierarchical"),
])


@settings(max_examples=30, deadline=None)
@given(topologies, st.data())
def test_bound_never_exceeds_the_exhaustive_optimum(topology, data):
    num_experts, replicas, groups, nodes, gpus, mode = topology
    loads = data.draw(st.lists(st.integers(0, 60), min_size=num_experts, max_size=num_experts))
    weight = torch.tensor([loads], dtype=torch.float64)
    bound = float(lower_bound(weight, replicas, groups, nodes, gpus, mode)[0])
    optimum = exhaustive_optimum(weight, replicas, groups, nodes, gpus, mode)
    assert bound <= optimum + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([(2, 2), (3, 2), (3, 3), (4, 3)]), st.data())
def test_exact_two_slot_optimum_matches_exhaustive_search(shape, data):
    num_experts, num_gpus = shape
    loads = data.draw(st.lists(st.integers(0, 60), min_size=num_experts, max_size=num_experts))
    weight = torch.tensor([loads], dtype=torch.float64)
    exact = float(exact_two_slot_optimum(weight, num_gpus)[0])
    assert abs(exact - exhaustive_optimum(weight, 2 * num_gpus, 1, 1, num_gpus, "global")) < 1e-9


def test_exact_two_slot_optimum_of_the_flashlb_toy():
    weight = torch.tensor([[600, 560, 120, 120, 20, 10, 10, 10]], dtype=torch.float64)
    assert abs(float(exact_two_slot_optimum(weight, 8)[0]) - 590 / 3) < 1e-9
    assert float(lower_bound(weight, 16, 1, 1, 8, "global")[0]) <= 590 / 3


def test_exact_two_slot_optimum_declines_large_cases():
    assert exact_two_slot_optimum(torch.rand(1, 64), 64) is None


def test_bound_balancedness_is_mean_over_bound_and_none_without_load():
    weight = torch.tensor([[4.0, 4.0], [0.0, 0.0]])
    assert bound_balancedness(weight, torch.tensor([4.0, 0.0]), 2) == 1.0
    assert bound_balancedness(torch.zeros(1, 2), torch.zeros(1), 2) is None


@st.composite
def hot_loads(draw):
    """A few heavy experts and light ones: the loads where the big-copy bound (bound 4) bites."""
    num_experts, replicas, gpus = draw(st.sampled_from([(4, 6, 2), (3, 6, 2), (4, 6, 3), (5, 6, 3), (3, 6, 3),
                                                        (4, 8, 2), (2, 6, 2), (6, 8, 4)]))
    heavy = draw(st.integers(1, num_experts))
    light_max = draw(st.sampled_from([0, 3, 10, 30]))
    loads = [draw(st.integers(40, 100)) if e < heavy else draw(st.integers(0, light_max)) for e in range(num_experts)]
    return torch.tensor([draw(st.permutations(loads))], dtype=torch.float64), replicas, gpus


@settings(max_examples=60, deadline=None)
@given(hot_loads())
def test_big_copy_bound_never_exceeds_the_exhaustive_optimum(case):
    weight, replicas, gpus = case
    bound = float(lower_bound(weight, replicas, 1, 1, gpus, "global")[0])
    assert bound <= exhaustive_optimum(weight, replicas, 1, 1, gpus, "global") + 1e-9


def test_big_copy_bound_reaches_the_optimum_where_the_mean_is_far_below():
    # Two hot experts on three GPUs with two slots each: the mean (48.3) and the copy bound
    # allow far less than the optimum 59 (73 and 59 cannot both be split over the GPUs).
    weight = torch.tensor([[73, 59, 8, 5]], dtype=torch.float64)
    assert exhaustive_optimum(weight, 6, 1, 1, 3, "global") == 59
    assert 59 - 1e-4 < float(lower_bound(weight, 6, 1, 1, 3, "global")[0]) <= 59


def test_big_copy_bound_on_three_hot_experts_in_a_qwen_shape():
    """Three hot experts on 16 GPUs with 9 slots: 16 big places cannot take 3 x 6 copies."""
    weight = generate_load("hot", 4, 128, seed=0).double()
    bound = lower_bound(weight, 144, 1, 1, 16, "global")
    mean = weight.sum(-1) / 16
    assert bool((bound > 1.02 * mean).all())
    phy2log = eplb.rebalance_experts(weight, 144, 1, 1, 16, policy="joint", mode="global")[0]
    assert bool((gpu_loads(weight, phy2log, 16).max(-1).values >= bound - 1e-6).all())


def test_one_node_is_global_mode_for_the_bound():
    """Hierarchical mode on one node is the global problem, big-copy bound included."""
    for layers, experts, replicas, gpus in [(94, 128, 144, 16), (24, 32, 64, 32)]:  # Qwen3-235B, gpt-oss-20b
        weight = generate_load("hot", layers, experts, seed=0)
        auto = lower_bound(weight, replicas, 1, 1, gpus, "auto")
        assert torch.equal(auto, lower_bound(weight, replicas, 1, 1, gpus, "global"))
        assert bound_balancedness(weight, auto, gpus) < 0.97  # three hot experts cannot all be split evenly
    weight = generate_load("hot", 4, 64, seed=1)
    assert torch.equal(lower_bound(weight, 80, 8, 1, 16, "hierarchical"), lower_bound(weight, 80, 8, 1, 16, "global"))


def loads_of_every_kind(draw, num_layers, num_experts):
    """[L, E] float64: seeded families, small integers with ties, idle experts and idle layers."""
    kind = draw(st.sampled_from(["uniform", "zipf", "lognormal", "hot", "zero", "ties", "idle_layer"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "ties":
        return torch.randint(0, 4, (num_layers, num_experts), generator=torch.Generator().manual_seed(seed)).double()
    weight = generate_load("lognormal" if kind == "idle_layer" else kind, num_layers, num_experts, seed=seed).double()
    if kind == "idle_layer":
        weight[0] = 0
    return weight


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_copy_bound_equals_adding_one_copy_at_a_time(data):
    num_experts = data.draw(st.integers(1, 40))
    weight = loads_of_every_kind(data.draw, data.draw(st.integers(1, 4)), num_experts)
    num_replicas = num_experts + data.draw(st.integers(0, 3 * num_experts + 5))
    max_copies = data.draw(st.integers(1, num_replicas - num_experts + 1))
    assert torch.equal(copy_bound(weight, num_replicas, max_copies),
                       copy_bound_by_greedy(weight, num_replicas, max_copies))


@pytest.mark.parametrize("family", ["lognormal", "hot", "zipf"])
@pytest.mark.parametrize("replicas, gpus", [(288, 32), (288, 8), (512, 256), (320, 320)])
def test_copy_bound_equals_the_greedy_at_deepseek_v3_size(family, replicas, gpus):
    weight = generate_load(family, 16, 256, seed=2).double()
    max_copies = min(gpus, replicas - 256 + 1)
    assert torch.equal(copy_bound(weight, replicas, max_copies), copy_bound_by_greedy(weight, replicas, max_copies))


def bisection_one_step_at_a_time(fits, low, high, tolerance):
    """Plain bisection, one test per step: the definition bisect_monotone reproduces."""
    while bool(((high - low) > tolerance * high).any()):
        mid = (low + high) / 2
        fit = fits(np.arange(low.shape[0]), mid)
        low, high = np.where(fit, low, mid), np.where(fit, mid, high)
    return low


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 80), st.integers(0, 2**16), st.floats(0, 0.5))
def test_bisecting_with_known_limits_is_plain_bisection(num_layers, seed, spread):
    """A monotone test: midpoints decided by known refuted / fitting limits walk the same path."""
    rng = np.random.default_rng(seed)
    boundary = rng.uniform(1, 2, num_layers)
    tested = []

    def fits(layer, limit):  # [n], [n]
        tested.append(limit.size)
        return limit >= boundary[layer]

    low, high = np.ones(num_layers), np.full(num_layers, 3.0)
    refuted = np.maximum(low, boundary * (1 - rng.uniform(0, spread, num_layers)))  # limits known to be refuted
    fitting = np.minimum(high, boundary * (1 + rng.uniform(0, spread, num_layers)))  # and known to fit
    refuted = np.where(refuted < boundary, refuted, low)
    assert np.array_equal(bisect_monotone(fits, low, high, 1e-7, refuted, fitting),
                          bisection_one_step_at_a_time(fits, low, high, 1e-7))


# The big-copy test and bisection as first written, in torch: the reference the faster
# numpy test (pairs of split and big expert, a cheap first check, bisection in rounds)
# must reproduce bit for bit.
def torch_big_copies_fit(heaviest, smallest_sums, limit, slots_per_gpu, extra, num_gpus):
    num_layers, num_heavy = heaviest.shape
    num_experts = smallest_sums.shape[-1] - 1
    h = min(num_heavy, EXACT_SPLITS)
    t = (limit * (1 + 1e-12)).unsqueeze(-1)
    heavy = heaviest > t / 2
    fewest = torch.ceil(heaviest / t).clamp(min=1)
    small_copies = torch.ceil(2 * heaviest / t)
    others = torch.where(heavy[:, h:], fewest[:, h:] - 1, 0.0).sum(-1, keepdim=True)
    w, a, b, heavy = heaviest[:, :h], fewest[:, :h], small_copies[:, :h], heavy[:, :h]
    big = (torch.arange(2**h).unsqueeze(-1) >> torch.arange(h)) & 1 == 1
    fits = ~(big & ~heavy.unsqueeze(1)).any(-1)
    not_big_extra = (torch.where(heavy, b - 1, 0.0).unsqueeze(1) * ~big).sum(-1)
    count = a.unsqueeze(-1) + torch.arange(SCAN_COPIES, dtype=w.dtype)
    m = a.unsqueeze(1).expand(-1, big.shape[0], -1)
    for _ in range(2):
        spare = extra - torch.where(big, m - 1, 0.0).sum(-1)
        covered = ((slots_per_gpu - 1) * count.unsqueeze(1) - spare[..., None, None]).clamp(0, num_experts - 1)
        light = smallest_sums.gather(1, covered.long().flatten(1)).view(covered.shape)
        ok = count.unsqueeze(1) * t[..., None, None] >= w[:, None, :, None] + light
        first = torch.where(ok.any(-1), ok.double().argmax(-1), float(SCAN_COPIES))
        m = torch.maximum(m, a.unsqueeze(1) + first)
    big_m = torch.where(big, m, 0.0)
    fits &= ~(big & (m >= b.unsqueeze(1))).any(-1)
    fits &= big_m.sum(-1) <= num_gpus
    fits &= (big_m - big.double()).sum(-1) + not_big_extra + others <= extra
    return fits.any(-1)


def torch_big_copy_bound(weight, num_replicas, num_gpus, lower, tolerance=1e-7):
    """Every layer with a positive lower bound bisected (a layer the test passes at once keeps it)."""
    w, lower = weight.double(), lower.double()
    extra = num_replicas - w.shape[1]
    rows = (lower > 0).nonzero().squeeze(-1)
    num_heavy = int((w[rows] > lower[rows].unsqueeze(-1) / 2).sum(-1).max()) if rows.numel() else 0
    if num_heavy == 0 or extra == 0:
        return lower
    heaviest, low = w[rows].topk(num_heavy, dim=-1).values, lower[rows]
    smallest_sums = torch.nn.functional.pad(w[rows].sort(dim=-1).values.cumsum(-1), (1, 0))
    args = (num_replicas // num_gpus, extra, num_gpus)
    refuted = ~torch_big_copies_fit(heaviest, smallest_sums, low, *args)
    high = torch.where(refuted, w[rows].sum(-1), low)
    while bool(((high - low) > tolerance * high).any()):
        mid = (low + high) / 2
        fits = torch_big_copies_fit(heaviest, smallest_sums, mid, *args)
        low, high = torch.where(fits, low, mid), torch.where(fits, mid, high)
    return lower.index_put((rows,), low)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_big_copy_bound_equals_the_first_torch_version(data):
    num_experts = data.draw(st.sampled_from([4, 8, 16, 32, 64, 128]))
    weight = loads_of_every_kind(data.draw, data.draw(st.integers(1, 6)), num_experts)
    num_gpus = data.draw(st.sampled_from([2, 4, 8, 16, 32]))
    num_replicas = num_gpus * (-(-num_experts // num_gpus) + data.draw(st.integers(0, 3)))
    lower = torch.maximum(weight.sum(-1) / num_gpus,
                          copy_bound(weight, num_replicas, min(num_gpus, num_replicas - num_experts + 1)))
    assert torch.equal(big_copy_bound(weight, num_replicas, num_gpus, lower),
                       torch_big_copy_bound(weight, num_replicas, num_gpus, lower))


@pytest.mark.parametrize("layers, experts, replicas, gpus", [
    (58, 256, 288, 32), (58, 256, 288, 144), (20, 256, 288, 72), (94, 128, 144, 16), (58, 32, 64, 32)])
def test_big_copy_bound_equals_the_first_torch_version_on_hot_model_shapes(layers, experts, replicas, gpus):
    weight = generate_load("hot", layers, experts, seed=4).double()
    lower = torch.maximum(weight.sum(-1) / gpus, copy_bound(weight, replicas, min(gpus, replicas - experts + 1)))
    bound = big_copy_bound(weight, replicas, gpus, lower)
    assert bool((bound > lower).any())  # the big-copy bound bites here
    assert torch.equal(bound, torch_big_copy_bound(weight, replicas, gpus, lower))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_big_copy_bound_equals_the_first_torch_version_on_hot_loads(data):
    """Hot loads on model-like shapes, where every layer is bisected: the value is plain bisection's."""
    num_experts = data.draw(st.sampled_from([16, 32, 64, 128, 256]))
    num_gpus = data.draw(st.sampled_from([8, 16, 24, 32, 48, 72, 96, 144]))
    slots_per_gpu = data.draw(st.integers(-(-num_experts // num_gpus), -(-num_experts // num_gpus) + 4))
    num_replicas = num_gpus * slots_per_gpu
    weight = generate_load("hot", data.draw(st.integers(1, 12)), num_experts, seed=data.draw(st.integers(0, 2**16)))
    weight = weight.double()
    lower = torch.maximum(weight.sum(-1) / num_gpus,
                          copy_bound(weight, num_replicas, min(num_gpus, num_replicas - num_experts + 1)))
    assert torch.equal(big_copy_bound(weight, num_replicas, num_gpus, lower),
                       torch_big_copy_bound(weight, num_replicas, num_gpus, lower))


def big_copy_case(weight, num_replicas):
    """The test's inputs for every layer: heaviest [L, E] (all experts, heaviest first), smallest_sums [L, E + 1]."""
    heaviest = weight.sort(dim=-1, descending=True).values.numpy()
    smallest_sums = torch.nn.functional.pad(weight.sort(dim=-1).values.cumsum(-1), (1, 0)).numpy()
    return heaviest, smallest_sums


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_big_copies_fit_is_monotone_in_the_limit(data):
    """What bisect_monotone relies on: a limit above a fitting one fits (every layer, many limits)."""
    num_experts = data.draw(st.sampled_from([4, 8, 16, 32, 64]))
    num_gpus = data.draw(st.sampled_from([2, 4, 8, 16, 32]))
    num_replicas = num_gpus * (-(-num_experts // num_gpus) + data.draw(st.integers(0, 3)))
    weight = loads_of_every_kind(data.draw, data.draw(st.integers(1, 4)), num_experts)
    heaviest, smallest_sums = big_copy_case(weight, num_replicas)
    mean = weight.sum(-1).numpy() / num_gpus
    limits = np.sort(np.random.default_rng(data.draw(st.integers(0, 2**16))).uniform(0.5, 3, 400))
    layer = np.repeat(np.arange(weight.shape[0]), limits.size)
    limit = np.maximum(mean, 1e-3)[layer] * np.tile(limits, weight.shape[0])
    fit = big_copies_fit(heaviest, smallest_sums, limit, num_replicas // num_gpus, num_replicas - num_experts,
                         num_gpus, layer=layer).reshape(weight.shape[0], -1)
    assert not (fit[:, :-1] & ~fit[:, 1:]).any()  # never fits, then refuted at a larger limit


@pytest.mark.parametrize("layers, experts, replicas, gpus", [(58, 256, 288, 32), (58, 256, 288, 144), (58, 32, 64, 32)])
def test_the_turn_is_found_at_a_breakpoint_on_hot_loads(layers, experts, replicas, gpus):
    """The limits tested before bisecting pin the turn to within 1e-9 on hot loads, so bisection tests almost nothing."""
    weight = generate_load("hot", layers, experts, seed=1).double()
    lower = torch.maximum(weight.sum(-1) / gpus, copy_bound(weight, replicas, min(gpus, replicas - experts + 1)))
    heaviest, smallest_sums = big_copy_case(weight, replicas)
    args = (replicas // gpus, replicas - experts, gpus)
    low, high = lower.numpy(), weight.sum(-1).numpy()
    every = np.arange(layers)
    assert not big_copies_fit(heaviest, smallest_sums, low, *args).any()  # every layer is bisected

    def fits(layer, limit):
        return big_copies_fit(heaviest, smallest_sums, limit, *args, layer=layer)

    refuted, fitting = bracket_the_turn(
        fits, lambda below, above: limit_breakpoints(heaviest, smallest_sums, below, above, *args), low, high)
    assert not fits(every, refuted).any() and fits(every, fitting).all()
    assert (fitting / refuted - 1 < 1e-9).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_breakpoints_that_can_be_the_turn_pin_it_on_hot_loads(data):
    """Light-slot breakpoints only for the spare counts a passing split can leave (most_spare): still the turn's."""
    num_experts = data.draw(st.sampled_from([16, 32, 64, 128, 256]))
    num_gpus = data.draw(st.sampled_from([8, 16, 24, 32, 48, 72, 96, 144]))
    slots_per_gpu = data.draw(st.integers(-(-num_experts // num_gpus), -(-num_experts // num_gpus) + 4))
    replicas = num_gpus * slots_per_gpu
    weight = generate_load("hot", data.draw(st.integers(1, 12)), num_experts,
                           seed=data.draw(st.integers(0, 2**16))).double()
    lower = torch.maximum(weight.sum(-1) / num_gpus,
                          copy_bound(weight, replicas, min(num_gpus, replicas - num_experts + 1)))
    heaviest, smallest_sums = big_copy_case(weight, replicas)
    args = (slots_per_gpu, replicas - num_experts, num_gpus)
    low, high = lower.numpy(), weight.sum(-1).numpy()
    bisected = ~big_copies_fit(heaviest, smallest_sums, low, *args)
    if not bisected.any():  # the simpler bounds hold: nothing to search
        return
    heaviest, smallest_sums, low, high = heaviest[bisected], smallest_sums[bisected], low[bisected], high[bisected]

    def fits(layer, limit):
        return big_copies_fit(heaviest, smallest_sums, limit, *args, layer=layer)

    listed = []

    def breakpoints(below, above):
        listed.append((below.copy(), above.copy(), limit_breakpoints(heaviest, smallest_sums, below, above, *args)))
        return listed[-1][-1]

    refuted, fitting = bracket_the_turn(fits, breakpoints, low, high)
    assert (fitting / refuted - 1 < 1e-9).all()
    for below, above, (layer, value) in listed:  # in the window, ascending and without repeats per layer
        assert ((value > below[layer]) & (value < above[layer])).all()
        assert ((layer[1:] > layer[:-1]) | (value[1:] > value[:-1])).all()


def test_big_copy_bound_without_the_breakpoint_list_is_plain_bisection(monkeypatch):
    """Too many breakpoints: bisection alone (testing every undecided midpoint) gives the same value."""
    monkeypatch.setattr(eplb.bounds, "MAX_BREAKPOINTS", 0)
    weight = generate_load("hot", 12, 256, seed=3).double()
    lower = torch.maximum(weight.sum(-1) / 32, copy_bound(weight, 288, 32))
    bound = big_copy_bound(weight, 288, 32, lower)
    assert bool((bound > lower).all())
    assert torch.equal(bound, torch_big_copy_bound(weight, 288, 32, lower))

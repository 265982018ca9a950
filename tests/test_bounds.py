"""The proven lower bound (including the big-copy bound) and the exact two-slot optimum against
exhaustive search on tiny topologies."""

import collections
import functools
import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eplb
from eplb.bounds import bound_balancedness, exact_two_slot_optimum, lower_bound
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

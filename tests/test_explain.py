"""eplb.explain: the steps of one rebalance are the ones the policy really takes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eplb
from eplb import explain
from eplb.metrics import node_loads
from eplb.policies.zigzag import zigzag_bins
from eplb.presets import DEEPSEEK_README_WEIGHT
from tests.test_contract import README_PHY2LOG, topologies

README, README_TOPOLOGY = explain.readme_case()


def rebalanced(weight, topology: eplb.Topology, policy: str, mode: str = "auto") -> torch.Tensor:
    t = topology
    return eplb.rebalance_experts(weight, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus,
                                  policy=policy, mode=mode)[0]


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
@pytest.mark.parametrize("mode", ["auto", "global"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=topologies(), layer_seed=st.integers(0, 100))
def test_final_placement_is_rebalance_experts(policy, mode, case, layer_seed):
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    topology = eplb.Topology(num_replicas, num_groups, num_nodes, num_gpus)
    layer = layer_seed % weight.shape[0]
    walk = explain.walkthrough(weight, topology, layer, policy, mode)
    assert torch.equal(walk.phy2log, rebalanced(weight, topology, policy, mode)[layer])
    # Every intermediate adds up to the final per-GPU load.
    assert torch.allclose(torch.cat([node.packing.bin_load for node in walk.nodes]).double(), walk.gpu_load,
                          rtol=1e-5, atol=1e-3)
    assert torch.equal(torch.cat([node.logcnt for node in walk.nodes]),
                       walk.logcnt[torch.cat([node.experts for node in walk.nodes])])
    if walk.mode == "hierarchical":
        nodes = node_loads(walk.weight.unsqueeze(0), walk.phy2log.unsqueeze(0), num_nodes)[0]
        assert torch.allclose(walk.groups.bin_load.double(), nodes, rtol=1e-5, atol=1e-3)
    # The captions and tables build on any case, zero loads included.
    for describe in (explain.describe_case, explain.describe_groups, explain.describe_replication,
                     explain.describe_packing, explain.describe_result):
        assert describe(walk)
    assert len(explain.group_rows(walk)) == walk.groups.load.numel()


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
@pytest.mark.parametrize("layer", [0, 1])
def test_readme_example_steps_end_in_rebalance_experts(policy, layer):
    walk = explain.walkthrough(DEEPSEEK_README_WEIGHT, README_TOPOLOGY, layer, policy)
    assert walk.mode == "hierarchical"
    assert torch.equal(walk.phy2log, rebalanced(README, README_TOPOLOGY, policy)[layer])
    if policy == "deepseek":
        assert walk.phy2log.tolist() == README_PHY2LOG[layer]


def test_deepseek_adds_each_copy_to_the_largest_load_per_copy():
    for layer in range(2):
        walk = explain.walkthrough(README, README_TOPOLOGY, layer, "deepseek")
        assert walk.sequential
        for node in walk.nodes:
            before = node.per_copy_before_each_choice()  # [extra copies, experts]
            chosen = before.gather(1, node.added.unsqueeze(1)).squeeze(1)
            assert torch.equal(chosen, before.max(dim=1).values)
            assert torch.equal(1 + torch.bincount(node.added, minlength=node.load.numel()), node.logcnt)
        rows = explain.choice_rows(walk)
        assert len(rows) == README_TOPOLOGY.num_replicas - README.shape[1]
        assert all(row["load per copy before"] >= float(row["next most per copy"].split(": ")[1]) for row in rows)
    walk = explain.walkthrough(README, README_TOPOLOGY, 0, "deepseek")
    assert [(r["node"], r["expert"], r["load per copy before"]) for r in explain.choice_rows(walk)] == [
        (0, 5, 165.0), (0, 4, 104.0), (1, 10, 183.0), (1, 1, 132.0)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_deepseek_packs_heaviest_first_onto_the_lightest_bin_with_room(seed):
    weight, topology = explain.random_case(seed)
    walk = explain.walkthrough(weight, topology, 0, "deepseek")
    packings = [walk.groups, *(node.packing for node in walk.nodes)]
    for packing in packings:
        if packing.capacity > 1:  # DeepSeek keeps items in place when every bin takes one
            assert bool(packing.to_lightest_with_room().all())
    assert all(row["lightest GPU with room"] for row in explain.copy_rows(walk)) or topology.slots_per_gpu == 1
    assert len(explain.copy_rows(walk)) == topology.num_replicas


def test_zigzag_deals_its_copies_in_zigzag_order():
    walk = explain.walkthrough(README, README_TOPOLOGY, 1, "zigzag")
    assert walk.sequential and all(node.added is None for node in walk.nodes)  # counts picked at once
    for node in walk.nodes:
        packing = node.packing
        pattern = zigzag_bins(packing.capacity, packing.num_bins, torch.device("cpu"))
        assert torch.equal(packing.pack[packing.order], pattern)


def test_a_policy_that_packs_and_counts_together_shows_only_its_final_layout():
    joint = [name for name, p in eplb.POLICIES.items()
             if type(p).replicate_and_pack is not eplb.Policy.replicate_and_pack]
    for name in joint:
        walk = explain.walkthrough(README, README_TOPOLOGY, 0, name)
        assert not walk.sequential and all(node.added is None for node in walk.nodes)
        assert explain.copy_rows(walk) == [] and explain.choice_rows(walk) == []
        assert "final layout" in explain.describe_packing(walk)
        assert torch.equal(walk.phy2log, rebalanced(README, README_TOPOLOGY, name)[0])


def test_captions_name_the_numbers_of_the_case():
    walk = explain.walkthrough(README, README_TOPOLOGY, 0, "deepseek")
    assert "1,033 tokens to 12 experts" in explain.describe_case(walk)
    assert "expert 10, gets 183" in explain.describe_case(walk)
    assert "group 1 (experts 3-5) is the heaviest with 330" in explain.describe_groups(walk)
    assert "goes to expert 5, whose 165 tokens per copy is the most" in explain.describe_replication(walk)
    assert f"{walk.balancedness_before:.3f} to {walk.balancedness:.3f}" in explain.describe_result(walk)
    zigzag = explain.walkthrough(README, README_TOPOLOGY, 0, "zigzag")
    difference = explain.describe_difference(zigzag, walk)
    assert "expert 5: 3 copies instead of 2" in difference and "zigzag" in difference
    assert "exactly where" in explain.describe_difference(walk, walk)


def test_a_layer_without_load_and_global_mode_are_explained():
    weight = torch.zeros(1, 4)
    walk = explain.walkthrough(weight, eplb.Topology(6, 2, 2, 2), 0, "deepseek", "global")
    assert walk.mode == "global" and len(walk.nodes) == 1 and walk.groups.num_bins == 1
    assert "Global mode" in explain.describe_groups(walk)
    assert "no load" in explain.describe_result(walk)
    assert math.isnan(walk.balancedness)
    assert "global mode" in explain.describe_case(walk)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**20))
def test_random_cases_are_small_and_valid(seed):
    weight, topology = explain.random_case(seed)
    assert topology.validate(weight.shape[1]) == "hierarchical"
    assert 4 <= weight.shape[1] < topology.num_replicas <= 24
    assert bool((weight >= 0).all()) and not bool(torch.signbit(weight).any())
    assert explain.case_problem(weight, topology) is None


@pytest.mark.parametrize(
    ("cell", "topology", "message"),
    [
        (float("nan"), README_TOPOLOGY, "The loads table has a problem: weight has 1 NaN"),
        (-5.0, README_TOPOLOGY, "negative loads (first at layer 1, expert 2"),
        (7.0, eplb.Topology(16, 5, 2, 8), "must be divisible by num_groups (5)"),
        (7.0, eplb.Topology(10, 4, 2, 8), "num_replicas (10) must be divisible by num_gpus (8)"),
    ],
)
def test_case_problem_says_what_to_change(cell, topology, message):
    weight = README.clone()
    weight[1, 2] = cell
    assert message in explain.case_problem(weight, topology)


def test_walkthrough_rejects_what_rebalance_rejects():
    with pytest.raises(ValueError, match="layer 2 does not exist"):
        explain.walkthrough(README, README_TOPOLOGY, 2, "deepseek")
    with pytest.raises(ValueError, match="unknown policy"):
        explain.walkthrough(README, README_TOPOLOGY, 0, "nope")
    assert explain.walkthrough(README, README_TOPOLOGY).policy == eplb.DEFAULT_POLICY

"""eplb.explain: the steps of one rebalance are the ones the policy really takes; the cases, their limits,
the reduction of a big layer to a lesson, and the captions."""

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
        assert describe(walk) and all(isinstance(line, str) and line for line in describe(walk))
    assert explain.describe_opening(walk, 2)
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
        assert "final layout" in text(explain.describe_packing(walk))
        assert torch.equal(walk.phy2log, rebalanced(README, README_TOPOLOGY, name)[0])


def text(sentences: list[str]) -> str:
    return " ".join(sentences)


def test_captions_name_the_numbers_of_the_case():
    walk = explain.walkthrough(README, README_TOPOLOGY, 0, "deepseek")
    assert "1,033 tokens to 12 experts" in text(explain.describe_case(walk))
    assert "expert 10, gets 183" in text(explain.describe_case(walk))
    assert "Group 1 (experts 3-5) is the heaviest: 330" in text(explain.describe_groups(walk))
    assert "goes to expert 5: 165 tokens per copy, the most" in text(explain.describe_replication(walk))
    assert f"{walk.balancedness_before:.3f} to {walk.balancedness:.3f}" in text(explain.describe_result(walk))
    opening = text(explain.describe_opening(walk, 2))
    assert "12 here" in opening and "its top 2" in opening and "8 GPUs" in opening and "2 slots" in opening
    zigzag = explain.walkthrough(README, README_TOPOLOGY, 0, "zigzag")
    difference = explain.describe_difference(zigzag, walk)
    assert "Expert 5: 3 copies instead of 2." in difference and "How zigzag works" in difference[0]
    assert "exactly where" in text(explain.describe_difference(walk, walk))


def test_captions_are_short_sentences():
    for case in explain.LESSONS.values():
        walks = {name: explain.walkthrough(case.tensor, case.topology, 0, name) for name in eplb.POLICIES}
        walk = walks["deepseek"]
        captions = [explain.describe_opening(walk, case.top_k), explain.describe_case(walk),
                    explain.describe_groups(walk), explain.describe_replication(walk), explain.describe_packing(walk),
                    explain.describe_result(walk), *(explain.describe_difference(w, walk) for w in walks.values())]
        for line in (line for caption in captions for line in caption):
            assert line.endswith("."), line
            assert len(line) <= 200, line


def test_a_layer_without_load_and_global_mode_are_explained():
    weight = torch.zeros(1, 4)
    walk = explain.walkthrough(weight, eplb.Topology(6, 2, 2, 2), 0, "deepseek", "global")
    assert walk.mode == "global" and len(walk.nodes) == 1 and walk.groups.num_bins == 1
    assert "Global mode" in text(explain.describe_groups(walk))
    assert "no load" in text(explain.describe_result(walk))
    assert math.isnan(walk.balancedness)
    assert "global mode" in text(explain.describe_case(walk))


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


# The built-in lessons


def test_the_hot_expert_lesson_is_where_the_policies_differ():
    case = explain.LESSONS["hot"]
    assert explain.case_problem(case.tensor, case.topology) is None
    deepseek, joint = (explain.walkthrough(case.tensor, case.topology, 0, name) for name in ("deepseek", "joint"))
    assert int(deepseek.logcnt[0]) == 4 and explain.doubled_up(deepseek) == [(0, 0, 2)]
    assert int(joint.logcnt[0]) == 3 and not explain.doubled_up(joint)
    assert float(joint.gpu_load.max()) < float(deepseek.gpu_load.max())
    difference = text(explain.describe_difference(joint, deepseek))
    assert "Expert 0: 3 copies instead of 4." in difference
    assert "deepseek puts 2 copies of expert 0 on GPU 0" in difference
    assert "Busiest GPU: 153.3 tokens with joint, 200 with deepseek." in difference
    assert int(explain.differs(joint, deepseek).sum()) > 0


def test_on_the_readme_case_joint_is_no_faster_and_says_so():
    deepseek, joint = (explain.walkthrough(README, README_TOPOLOGY, 0, name) for name in ("deepseek", "joint"))
    assert float(joint.gpu_load.max()) == float(deepseek.gpu_load.max())
    assert "so on this case joint is no faster" in text(explain.describe_difference(joint, deepseek))


def test_lessons_are_valid_hashable_cases():
    for case in explain.LESSONS.values():
        assert explain.case_problem(case.tensor, case.topology, case.mode) is None
        assert hash(case) == hash(explain.Case.of(case.label, case.tensor, case.topology, about=case.about))
    assert explain.LESSONS["readme"].tensor.tolist() == README.tolist()


# Limits: a control's value never builds anything large


@pytest.mark.parametrize(("topology", "message"), [
    (eplb.Topology(16, 4, 5, 10), "at most 4 nodes (here 5)"),
    (eplb.Topology(18, 1, 2, 18), "at most 8 GPUs per node (here 9)"),
    (eplb.Topology(32, 4, 4, 32), "at most 16 GPUs in all (here 4 nodes x 8 = 32)"),
    (eplb.Topology(10**7, 4, 2, 8), "at most 64 slots in all (16 GPUs x 4 slots; here 10000000)"),
    (eplb.Topology(40, 4, 2, 8), "at most 4 slots per GPU: with 8 GPUs that is 32 slots in all (here 40)"),
    (eplb.Topology(16, 4, 2, 2 * 10**6), "at most 8 GPUs per node (here 1000000)"),
    (eplb.Topology(16, 4, 0, 8), "number of nodes must be a whole number of at least 1"),
])
def test_a_topology_beyond_the_lesson_limits_is_refused_with_the_limit_and_why(topology, message):
    problem = explain.case_problem(README, topology)
    assert message in problem and explain.SCREEN in problem or "at least 1" in problem


def test_loads_beyond_the_lesson_limits_are_refused():
    weight = README.clone()
    weight[1, 4] = 2e9
    assert "at most 1,000,000 tokens in one cell (layer 1, expert 4 holds 2,000,000,000)" in \
        explain.case_problem(weight, README_TOPOLOGY)
    wide = torch.ones(1, 40)
    assert "at most 32 experts and 8 layers (here 40 and 1)" in explain.case_problem(wide, eplb.Topology(40, 1, 2, 10))
    assert "Unknown mode" in explain.case_problem(README, README_TOPOLOGY, "sideways")


# Teach this layer: any layer, reduced to a lesson


def test_a_small_layer_is_taught_as_it_is():
    case = explain.teach_case(README, README_TOPOLOGY, "auto", 1, "upload: **x**.csv")
    assert case.weight == (tuple(README[1].double().tolist()),) and case.topology == README_TOPOLOGY
    assert case.note == "" and case.label == "layer 1 of upload: **x**.csv" and case.mode == "hierarchical"


def test_a_deepseek_v3_layer_is_reduced_and_says_how():
    weight = torch.rand(3, 256, generator=torch.Generator().manual_seed(0)) * 1000
    case = explain.teach_case(weight, eplb.Topology(288, 8, 4, 32), "auto", 2, "sample")
    assert case.num_experts == 16 and case.num_layers == 1
    assert torch.allclose(case.tensor[0].double(), weight[2].double().view(16, 16).sum(1), rtol=1e-6)
    assert case.topology == eplb.Topology(24, 8, 2, 8) and case.mode == "hierarchical"
    assert explain.case_problem(case.tensor, case.topology, case.mode) is None
    assert "256 experts on 32 GPUs" in case.note and "every 16 neighbouring experts into one" in case.note
    assert "8 groups" in case.note and "24 slots, 8 of them spare" in case.note


@settings(max_examples=60, deadline=None)
@given(num_experts=st.sampled_from([8, 64, 96, 128, 160, 256, 384]), groups=st.sampled_from([1, 2, 4, 8, 16]),
       nodes=st.sampled_from([1, 2, 4, 8]), gpus_per_node=st.sampled_from([1, 2, 4, 8]), spare=st.integers(0, 3),
       mode=st.sampled_from(["auto", "global"]))
def test_any_layer_becomes_a_valid_lesson(num_experts, groups, nodes, gpus_per_node, spare, mode):
    gpus = nodes * gpus_per_node
    if num_experts % groups:
        return
    slots = (-(-num_experts // gpus) + spare) * gpus
    topology = eplb.Topology(slots, groups, nodes, gpus)
    try:
        topology.validate(num_experts, mode)
    except ValueError:
        return
    weight = torch.arange(num_experts, dtype=torch.float32).unsqueeze(0)
    case = explain.teach_case(weight, topology, mode, 0, "data")
    assert explain.case_problem(case.tensor, case.topology, case.mode) is None, (case.topology, case.note)
    assert float(case.tensor.sum()) == float(weight.sum())
    assert (case.topology.num_replicas > case.num_experts) == (slots > num_experts) or case.note
    explain.walkthrough(case.tensor, case.topology, 0, "deepseek", case.mode)


def test_teach_case_rejects_what_does_not_exist():
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        explain.teach_case(README, README_TOPOLOGY, "auto", 5, "x")
    with pytest.raises(ValueError, match="divisible by num_groups"):
        explain.teach_case(README, eplb.Topology(16, 5, 1, 8), "auto", 0, "x")


def test_differs_compares_copies_gpu_by_gpu_not_slot_by_slot():
    from dataclasses import replace

    walk = explain.walkthrough(README, README_TOPOLOGY, 0, "deepseek")
    swapped = replace(walk, phy2log=walk.phy2log.view(8, 2).flip(1).flatten())  # same copies, other slot order
    assert not bool(explain.differs(swapped, walk).any())
    moved = walk.phy2log.clone()
    moved[[0, 3]] = moved[[3, 0]]  # GPU 0 [5, 6] and GPU 1 [5, 7] trade a copy: [7, 6] and [5, 5]
    assert walk.phy2log[:4].tolist() == [5, 6, 5, 7]
    assert explain.differs(replace(walk, phy2log=moved), walk).tolist() == [True, False, False, True] + [False] * 12

"""The rebalance_experts contract, checked for every registered policy and mode."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eplb
from eplb.presets import DEEPSEEK_README_WEIGHT
from eplb.workloads import generate_load

README_PHY2LOG = [
    [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
    [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
]


def check_contract(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode, **options):
    """Run one rebalance (weight [layers, experts] or [steps, layers, experts]; options such as
    previous=) and assert every line of the output contract."""
    before = weight.clone()
    phy2log, log2phy, logcnt = eplb.rebalance_experts(
        weight, num_replicas, num_groups, num_nodes, num_gpus, policy=policy, mode=mode, **options
    )
    num_layers, num_experts = weight.shape[-2:]
    width = num_replicas - num_experts + 1
    assert torch.equal(weight, before), "the input must not be modified"
    for out in (phy2log, log2phy, logcnt):
        assert out.dtype == torch.int64
        assert out.device == weight.device
    assert phy2log.shape == (num_layers, num_replicas)
    assert log2phy.shape == (num_layers, num_experts, width)
    assert logcnt.shape == (num_layers, num_experts)
    assert int(phy2log.min()) >= 0 and int(phy2log.max()) < num_experts
    assert bool((logcnt >= 1).all())
    assert bool((logcnt.sum(-1) == num_replicas).all())
    # logcnt counts the slots that hold each expert
    counted = torch.zeros_like(logcnt).scatter_add_(1, phy2log, torch.ones_like(phy2log))
    assert torch.equal(counted, logcnt)
    # log2phy: copy k in column k, -1 padding after the last copy, each slot maps back
    used = log2phy >= 0
    assert torch.equal(used.sum(-1), logcnt)
    assert bool((used[..., :-1] | ~used[..., 1:]).all()), "padding must come after the copies"
    layer, expert, _ = used.nonzero(as_tuple=True)
    assert torch.equal(phy2log[layer, log2phy[used]], expert)
    slots_seen = torch.zeros(num_layers, num_replicas, dtype=torch.int64)
    slots_seen[layer, log2phy[used]] += 1
    assert bool((slots_seen == 1).all()), "every slot appears exactly once in log2phy"
    return phy2log


@st.composite
def topologies(draw):
    """Valid (weight, P, groups, nodes, GPUs) with the edge cases the contract names."""
    num_nodes = draw(st.integers(1, 4))
    gpus_per_node = draw(st.integers(1, 4))
    num_gpus = num_nodes * gpus_per_node
    group_size = draw(st.integers(1, 4))
    num_groups = draw(st.integers(1, 8))
    num_experts = num_groups * group_size
    min_slots = -(-num_experts // num_gpus)
    slots_per_gpu = draw(st.integers(min_slots, min_slots + 3))
    num_replicas = num_gpus * slots_per_gpu
    num_layers = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["random", "skewed", "zeros", "zero_layer", "integer"]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    if kind == "zeros":
        weight = torch.zeros(num_layers, num_experts)
    elif kind == "integer":
        weight = torch.randint(0, 50, (num_layers, num_experts), generator=gen)
    else:
        weight = torch.rand(num_layers, num_experts, generator=gen) * 100
        if kind == "skewed":
            weight = weight.pow(4)
        if kind == "zero_layer":
            weight[0] = 0
    return weight, num_replicas, num_groups, num_nodes, num_gpus


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
@pytest.mark.parametrize("mode", ["auto", "global", "hierarchical"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=topologies())
def test_contract_holds(policy, mode, case):
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    if mode == "hierarchical" and num_groups % num_nodes:
        with pytest.raises(ValueError, match="hierarchical mode needs num_groups"):
            eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy=policy, mode=mode)
        return
    phy2log = check_contract(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode)
    resolved = eplb.Topology(num_replicas, num_groups, num_nodes, num_gpus).validate(weight.shape[1], mode)
    if resolved == "hierarchical":
        # every expert group lives on one node
        experts_per_group = weight.shape[1] // num_groups
        node_of_slot = torch.arange(num_replicas) // (num_replicas // num_nodes)
        group_of_slot = phy2log // experts_per_group
        for layer in range(weight.shape[0]):
            nodes_per_group = {}
            for slot in range(num_replicas):
                nodes_per_group.setdefault(int(group_of_slot[layer, slot]), set()).add(int(node_of_slot[slot]))
            assert all(len(nodes) == 1 for nodes in nodes_per_group.values())


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
@pytest.mark.parametrize(
    "shape",
    [
        (1, 8, 8, 1, 1, 8),  # one layer, one slot per GPU
        (3, 8, 16, 2, 1, 1),  # one GPU
        (2, 12, 16, 3, 2, 8),  # groups not divisible by nodes: auto falls back to global
        (2, 6, 6, 6, 3, 6),  # no redundant slots
    ],
)
def test_contract_edge_shapes(policy, shape):
    num_layers, num_experts, num_replicas, num_groups, num_nodes, num_gpus = shape
    weight = torch.rand(num_layers, num_experts) * 10
    check_contract(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, "auto")


def test_deepseek_readme_example_exactly():
    weight = torch.tensor(DEEPSEEK_README_WEIGHT)
    phy2log, _, _ = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy="deepseek")
    assert phy2log.tolist() == README_PHY2LOG


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float64])
def test_any_real_dtype(dtype):
    weight = torch.tensor(DEEPSEEK_README_WEIGHT).to(dtype)
    phy2log, _, _ = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy="deepseek")
    assert phy2log.shape == (2, 16)


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
def test_token_counts_plan_the_same_in_every_dtype(policy):
    """The same counts as int64, float32 or float64 (an .npy of floats, a CSV of ints) get the
    same placement, ties included; float64 loads that float32 would round keep their precision."""
    weight = generate_load("zipf", 8, 64, seed=1)  # many tied counts
    for topology, mode in (((96, 8, 4, 32), "hierarchical"), ((80, 1, 1, 16), "global")):
        plans = [eplb.rebalance_experts(weight.to(dtype), *topology, policy=policy, mode=mode)
                 for dtype in (torch.float32, torch.float64, torch.int64)]
        for plan in plans[1:]:
            assert all(torch.equal(a, b) for a, b in zip(plan, plans[0]))
    fine = torch.tensor([[1.0, 1.0 + 1e-9, 1.0, 1.0]], dtype=torch.float64)  # equal once cast to float32
    if policy != "deepseek":  # DeepSeek's published code casts to float32 itself
        assert eplb.rebalance_experts(fine, 5, 1, 1, 1, policy=policy)[2].tolist() == [[1, 2, 1, 1]]


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
def test_zigzag_seed_crash_case_now_works(policy):
    """DeepSeek-V3 shape with Zipf and log-normal skew: the seed died on an assertion here."""
    from eplb.workloads import generate_load

    for family in ("zipf", "lognormal"):
        weight = generate_load(family, 58, 256, seed=1)
        check_contract(weight, 288, 8, 4, 32, policy, "auto")
        check_contract(weight, 288, 8, 4, 32, policy, "global")


def test_default_policy_is_registered():
    assert eplb.DEFAULT_POLICY in eplb.POLICIES
    weight = torch.tensor(DEEPSEEK_README_WEIGHT)
    default = eplb.rebalance_experts(weight, 16, 4, 2, 8)[0]
    named = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy=eplb.DEFAULT_POLICY)[0]
    assert torch.equal(default, named)


def test_auto_mode_follows_deepseeks_rule():
    weight = torch.rand(2, 12)
    hierarchical = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy="deepseek", mode="hierarchical")[0]
    auto = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy="deepseek", mode="auto")[0]
    assert torch.equal(auto, hierarchical)
    flat = eplb.rebalance_experts(weight, 16, 3, 2, 8, policy="deepseek", mode="auto")[0]
    global_ = eplb.rebalance_experts(weight, 16, 3, 2, 8, policy="deepseek", mode="global")[0]
    assert torch.equal(flat, global_)


README = torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32)


@pytest.mark.parametrize(
    "weight, args, kwargs, message",
    [
        (README[0], (16, 4, 2, 8), {}, r"\[layers, experts\] or \[steps, layers, experts\], got shape \(12,\)"),
        (torch.ones(2, 2, 2, 12), (16, 4, 2, 8), {}, r"or \[steps, layers, experts\], got shape \(2, 2, 2, 12\)"),
        (torch.zeros(0, 12), (16, 4, 2, 8), {}, "at least one layer"),
        (torch.zeros(2, 0), (16, 4, 2, 8), {}, "at least one layer"),
        (README.clone().index_put_((torch.tensor([1]), torch.tensor([3])), torch.tensor(float("nan"))),
         (16, 4, 2, 8), {}, "NaN or infinite loads .first at layer 1, expert 3"),
        (README.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("inf"))),
         (16, 4, 2, 8), {}, "NaN or infinite"),
        (README - 100, (16, 4, 2, 8), {}, "negative loads"),
        (README, (16, 5, 2, 8), {}, r"num_logical_experts \(12\) must be divisible by num_groups \(5\)"),
        (README, (16, 4, 3, 8), {}, r"num_gpus \(8\) must be divisible by num_nodes \(3\)"),
        (README, (18, 4, 2, 8), {}, r"num_replicas \(18\) must be divisible by num_gpus \(8\)"),
        (README, (8, 4, 2, 8), {}, r"num_replicas \(8\) must be at least num_logical_experts \(12\)"),
        (README, (16, 6, 4, 8), {"mode": "hierarchical"}, r"num_groups \(6\) divisible by num_nodes \(4\)"),
        (README, (16, 4, 2, 8), {"policy": "nope"}, "unknown policy 'nope'"),
        (README, (16, 4, 2, 8), {"mode": "nope"}, "unknown mode 'nope'"),
        (README, (0, 4, 2, 8), {}, "num_replicas must be a positive integer"),
        (torch.ones(2, 12, dtype=torch.bool), (16, 4, 2, 8), {}, "real numbers"),
    ],
)
def test_invalid_input_raises_clear_value_error(weight, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        eplb.rebalance_experts(weight, *args, **kwargs)


def test_all_zero_loads_are_valid():
    phy2log = check_contract(torch.zeros(3, 12), 16, 4, 2, 8, eplb.DEFAULT_POLICY, "auto")
    assert phy2log.shape == (3, 16)

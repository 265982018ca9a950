"""The ``deepseek`` policy is DeepSeek's published EPLB, bit for bit, ties and float32 included.

``described_rebalance`` below restates the published algorithm (deepseek-ai/EPLB
``eplb.py``) one layer at a time in plain Python, with the arithmetic it really
does: loads cast to float32, items taken in the order of torch's default
(unstable) descending sort, pack loads summed in float32, the lowest index among
equal packs or experts. The policy must agree with it on every input; where a
local copy of the published file exists (``$EPLB_PEERS`` or ``peers/`` beside the
project), the same cases are also run through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eplb
from benchmarks.bench_deepseek_reference import default_peers, load_published
from eplb.policies.deepseek import _pack_in_lockstep, _pack_row_by_row, balanced_packing
from eplb.presets import DEEPSEEK_README_WEIGHT
from eplb.workloads import generate_load


def heaviest_first(loads: list[np.float32]) -> list[int]:
    """The published item order: torch's default descending sort of the float32 loads."""
    return torch.tensor(np.array(loads, dtype=np.float32)).sort(descending=True).indices.tolist()


def greedy_packing(loads: list[np.float32], num_packs: int) -> list[tuple[int, int]]:
    """(pack, arrival rank) of each item: heaviest first onto the lightest pack with room.

    With one item per pack every item stays in place. Pack loads are float32 sums;
    among equally light packs the lowest index wins.
    """
    per_pack = len(loads) // num_packs
    if per_pack == 1:
        return [(item, 0) for item in range(len(loads))]
    pack_load = [np.float32(0)] * num_packs
    members = [[] for _ in range(num_packs)]
    placed = [None] * len(loads)
    for item in heaviest_first(loads):
        room = [p for p in range(num_packs) if len(members[p]) < per_pack]
        pack = room[0]
        for p in room[1:]:
            if pack_load[p] < pack_load[pack]:
                pack = p
        placed[item] = (pack, len(members[pack]))
        members[pack].append(item)
        with np.errstate(over="ignore"):  # a float32 sum may overflow to inf, as in the published code
            pack_load[pack] = np.float32(pack_load[pack] + loads[item])
    return placed


def greedy_copies(loads: list[np.float32], num_slots: int) -> tuple[list[int], list[int]]:
    """(item of each copy, copies per item): item i first, then each extra copy to the first
    item with the largest float32 load per copy."""
    count = [1] * len(loads)
    copies = list(range(len(loads)))
    for _ in range(num_slots - len(loads)):
        per_copy = [np.float32(w / np.float32(c)) for w, c in zip(loads, count)]
        hottest = per_copy.index(max(per_copy))  # the first of the largest
        copies.append(hottest)
        count[hottest] += 1
    return copies, count


def in_pack_order(placed: list[tuple[int, int]], per_pack: int) -> list[int]:
    """Items by slot: pack p's items fill slots p * per_pack onwards in arrival order."""
    slots = [None] * len(placed)
    for item, (pack, rank) in enumerate(placed):
        slots[pack * per_pack + rank] = item
    return slots


def described_rebalance(weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
                        num_gpus: int) -> tuple[list[list[int]], list[list[int]]]:
    """DeepSeek's EPLB, layer by layer: (phy2log, logcnt) as lists.

    Hierarchical when groups divide over nodes, else one group on one node. Per layer:
    pack the groups' float32 load sums onto nodes; number the experts node by node,
    a node's groups in arrival order; inside every node replicate, then pack the
    copies (load / copies, float32) onto the node's GPUs, slots in arrival order.
    """
    weight = weight.float().cpu()
    if num_groups % num_nodes:
        num_groups, num_nodes = 1, 1
    num_layers, num_experts = weight.shape
    group_size, per_node = num_experts // num_groups, num_experts // num_nodes
    phy2log, logcnt = [], []
    for layer in range(num_layers):
        row = weight[layer]
        group_load = [np.float32(x) for x in row.view(num_groups, group_size).sum(-1).tolist()]
        row = [np.float32(x) for x in row.tolist()]
        group_slots = in_pack_order(greedy_packing(group_load, num_nodes), num_groups // num_nodes)
        experts = [g * group_size + j for g in group_slots for j in range(group_size)]  # node-major
        layer_phy2log, layer_count = [], [0] * num_experts
        for node in range(num_nodes):
            node_experts = experts[node * per_node:(node + 1) * per_node]
            loads = [row[e] for e in node_experts]
            copies, count = greedy_copies(loads, num_replicas // num_nodes)
            copy_load = [np.float32(loads[i] / np.float32(count[i])) for i in copies]
            placed = greedy_packing(copy_load, num_gpus // num_nodes)
            layer_phy2log += [node_experts[copies[c]] for c in in_pack_order(placed, num_replicas // num_gpus)]
            for i, e in enumerate(node_experts):
                layer_count[e] = count[i]
        phy2log.append(layer_phy2log)
        logcnt.append(layer_count)
    return phy2log, logcnt


PUBLISHED = load_published(default_peers())  # None without a local copy


def assert_deepseeks(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """The policy's phy2log, logcnt and each expert's slots equal the description's (and the published code's)."""
    phy2log, log2phy, logcnt = eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus,
                                                      policy="deepseek")
    expected_phy2log, expected_logcnt = described_rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus)
    assert phy2log.tolist() == expected_phy2log
    assert logcnt.tolist() == expected_logcnt
    for layer, row in enumerate(expected_phy2log):
        for expert in range(weight.shape[1]):
            slots = [s for s in log2phy[layer, expert].tolist() if s >= 0]
            assert slots == [s for s, e in enumerate(row) if e == expert]
    if PUBLISHED is not None:
        published = PUBLISHED.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus)
        assert torch.equal(phy2log, published[0]) and torch.equal(logcnt, published[2])


@st.composite
def cases(draw):
    """Topologies with rows of 17 or more items (where torch's sort stops keeping ties in
    order) and loads full of ties, float32 rounding and dtypes other than float32."""
    num_nodes = draw(st.integers(1, 3))
    num_gpus = num_nodes * draw(st.integers(1, 4))
    num_groups = draw(st.sampled_from([1, num_nodes, 2 * num_nodes, 3]))
    num_experts = num_groups * draw(st.integers(1, 8))
    slots_per_gpu = -(-num_experts // num_gpus) + draw(st.integers(0, 12))
    shape = (draw(st.integers(1, 9)), num_experts)
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["ties", "zeros", "zero_rows", "float32_sums", "float64", "int64", "huge", "random"]))
    if kind == "ties":
        weight = torch.randint(0, draw(st.integers(1, 5)), shape, generator=gen)
    elif kind == "zeros":
        weight = torch.zeros(shape)
    elif kind == "zero_rows":
        weight = torch.randint(0, 20, shape, generator=gen).float() * (torch.rand(shape[0], 1, generator=gen) < 0.5)
    elif kind == "float32_sums":  # exact integers in float64, rounded by float32 sums near 2**24
        weight = 2.0**24 + torch.randint(-6, 7, shape, generator=gen).double() * draw(st.integers(1, 3))
    elif kind == "float64":  # distinct in float64, many equal once cast to float32
        weight = 1 + torch.randint(0, 3, shape, generator=gen).double() * 1e-9
    elif kind == "int64":
        weight = torch.randint(2**24, 2**24 + 8, shape, generator=gen)
    elif kind == "huge":  # float32 sums that overflow, loads beyond float32's range
        weight = torch.rand(shape, generator=gen, dtype=torch.float64) * 10.0 ** draw(st.integers(37, 39))
    else:
        weight = torch.rand(shape, generator=gen) * 100
    return weight, num_gpus * slots_per_gpu, num_groups, num_nodes, num_gpus


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_deepseek_is_the_published_algorithm(case):
    assert_deepseeks(*case)


@pytest.mark.parametrize("family", ["zipf", "hot", "zero"])
def test_deepseek_on_token_counts_of_a_deepseek_v3_shape(family):
    weight = generate_load(family, 6, 256, seed=3)
    assert_deepseeks(weight, 288, 8, 4, 32)
    assert_deepseeks(weight, 288, 8, 3, 48)  # 8 groups fit no 3 nodes: global


def test_equal_loads_take_slots_in_torchs_sort_order():
    """18 idle experts on 2 GPUs: each GPU takes 9 in the order torch's default sort leaves 18 equal
    values (not input order on the CPU), as the published code does."""
    phy2log = eplb.rebalance_experts(torch.zeros(1, 18), 18, 1, 1, 2, policy="deepseek")[0]
    assert phy2log[0].tolist() == torch.zeros(18).sort(descending=True).indices.tolist()
    # Two idle experts in 20 slots: expert 0 (the first of the largest) takes all 18 extra copies.
    phy2log, _, logcnt = eplb.rebalance_experts(torch.zeros(1, 2), 20, 1, 1, 4, policy="deepseek")
    assert logcnt.tolist() == [[19, 1]]
    assert phy2log[0].tolist() == torch.tensor([0, 1] + [0] * 18)[torch.zeros(20).sort(descending=True).indices].tolist()


def test_pack_loads_are_float32_sums():
    """16777220 + 3 is 16777224 in float32, so the second GPU is the lighter one when 2 arrives."""
    weight = torch.tensor([[16777220, 8388610, 8388609, 3, 2, 1]])
    assert eplb.rebalance_experts(weight, 6, 1, 1, 2, policy="deepseek")[0].tolist() == [[0, 3, 5, 1, 2, 4]]
    assert_deepseeks(weight, 6, 1, 1, 2)


def test_float64_loads_are_planned_in_float32():
    """1.000000001 is 1.0 in float32: the tie goes to expert 0, the first of the largest."""
    weight = torch.tensor([[1.0, 1.000000001]], dtype=torch.float64)
    phy2log, _, logcnt = eplb.rebalance_experts(weight, 3, 1, 1, 1, policy="deepseek")
    assert logcnt.tolist() == [[2, 1]] and phy2log.tolist() == [[1, 0, 0]]


def test_deepseek_readme_example_step_by_step():
    weight = torch.tensor(DEEPSEEK_README_WEIGHT)
    phy2log = eplb.rebalance_experts(weight, 16, 4, 2, 8, policy="deepseek")[0]
    assert phy2log[0].tolist() == [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]
    assert_deepseeks(weight, 16, 4, 2, 8)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(2, 6), st.integers(2, 9), st.integers(0, 3), st.integers(0, 2**16))
def test_both_packing_loops_make_the_same_choices(rows, packs, per_pack, top, seed):
    """The row-by-row heap and the all-rows-at-once steps are one greedy: same packs, same ranks."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randint(0, top + 1, (rows, packs * per_pack), generator=gen).float()
    weight = weight + torch.rand(weight.shape, generator=gen) * (seed % 2)  # ties, or none
    in_order = weight.gather(1, weight.sort(dim=-1, descending=True).indices)
    heap = _pack_row_by_row(in_order.tolist(), packs, per_pack)
    lockstep = _pack_in_lockstep(in_order.numpy(), packs, per_pack)
    assert torch.equal(heap[0], lockstep[0]) and torch.equal(heap[1], lockstep[1])
    pack_index, rank = balanced_packing(weight, packs)
    assert bool((torch.nn.functional.one_hot(pack_index, packs).sum(1) == per_pack).all())
    assert torch.equal(torch.sort(rank * packs + pack_index, dim=-1).values,
                       torch.arange(packs * per_pack).expand(rows, -1))


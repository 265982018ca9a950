"""Two topologies on one load (eplb.whatif.compare_topologies): each side equals its own rebalance."""

from __future__ import annotations

import pytest
import torch

import eplb
from eplb.metrics import evaluate
from eplb.presets import DEEPSEEK_README_WEIGHT, PRESETS
from eplb.traffic import dispatch_traffic
from eplb.whatif import compare_topologies
from tests.test_traffic import TOY

WEIGHT = torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32)  # 2 layers x 12 experts


def test_each_side_is_its_own_rebalance_and_the_differences_are_b_minus_a():
    a, b = eplb.Topology(16, 4, 2, 8), eplb.Topology(24, 4, 4, 8)
    result = compare_topologies(WEIGHT, a, b, policy="deepseek")
    for side, topology in ((result.a, a), (result.b, b)):
        phy2log, _, _ = eplb.rebalance_experts(WEIGHT, topology.num_replicas, 4, topology.num_nodes, 8,
                                               policy="deepseek")
        assert torch.equal(side.run.phy2log, phy2log)
        assert side.run.report.balancedness == pytest.approx(evaluate(WEIGHT, phy2log, topology).balancedness)
        assert side.traffic is None and side.memory_per_gpu is None  # no model given
    rows = {d.label: d for d in result.differences}
    assert (rows["slots per GPU"].a, rows["slots per GPU"].b, rows["slots per GPU"].change) == (2, 3, 1)
    assert (rows["redundant slots per layer"].a, rows["redundant slots per layer"].b) == (4, 12)
    assert rows["nodes"].change == 2
    assert rows["balancedness (mean / max GPU load)"].change == pytest.approx(
        result.b.run.report.balancedness - result.a.run.report.balancedness)
    assert "dispatch bytes between nodes per step" not in rows


def test_traffic_and_memory_per_side_with_a_model():
    weight = torch.full((3, 8), 3.0)  # 24 routed per layer, top-2: 12 tokens per layer
    a = eplb.Topology(16, 4, 2, 8)  # hierarchical (auto): 2 of 4 groups on 2 nodes
    b = eplb.Topology(16, 4, 1, 8)  # one node: nothing crosses the network
    result = compare_topologies(weight, a, b, model=TOY, expert_bytes=1000)
    assert result.a.run.mode == "hierarchical"
    assert result.a.traffic.tokens_per_layer == pytest.approx(12 * 5 / 6)  # tests/test_traffic.py, by hand
    assert result.b.traffic.tokens_per_layer == 0
    rows = {d.label: d for d in result.differences}
    assert rows["tokens sent between nodes per MoE layer"].change == pytest.approx(-10.0)
    assert rows["expert weights per GPU"].a == 2 * 3 * 1000  # 2 slots per GPU x 3 layers x 1000 bytes


def test_64_instead_of_32_gpus_on_deepseek_v3_shape():
    v3 = PRESETS["DeepSeek-V3/R1"]
    weight = torch.rand(4, 256, generator=torch.Generator().manual_seed(0)) * 100
    a, b = eplb.Topology(288, 8, 4, 32), eplb.Topology(320, 8, 8, 64)
    result = compare_topologies(weight, a, b, policy="zigzag", mode="global", model=v3)
    assert result.a.traffic == dispatch_traffic(a, "global", v3, float(weight.double().sum(-1).mean()) / 8,
                                                num_layers=4)
    assert result.b.memory_per_gpu == 5 * 4 * v3.expert_bytes


def test_a_topology_that_does_not_fit_is_named():
    with pytest.raises(ValueError, match="topology B: num_replicas"):
        compare_topologies(WEIGHT, eplb.Topology(16, 4, 2, 8), eplb.Topology(17, 4, 2, 8))


def test_slider_choices_and_the_nearest_valid_values():
    from eplb.whatif import divisors, nearest, redundant_choices

    assert redundant_choices(256, 64, 200) == [0, 64, 128, 192]
    assert redundant_choices(12, 8, 20) == [4, 12, 20]
    assert nearest(redundant_choices(256, 64, 4096), 65) == [64, 128]  # the example: not 384
    assert nearest(redundant_choices(256, 64, 4096), 100, 1) == [128]
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


def test_a_run_given_is_used_as_side_a_and_must_be_on_topology_a():
    from eplb.analysis import run_policy

    a, b = eplb.Topology(16, 4, 2, 8), eplb.Topology(24, 4, 4, 8)
    known = run_policy(WEIGHT, a, "deepseek")
    result = compare_topologies(WEIGHT, a, b, policy="deepseek", run_a=known)
    assert result.a.run is known  # not rebalanced again
    assert torch.equal(result.b.run.phy2log, compare_topologies(WEIGHT, a, b, policy="deepseek").b.run.phy2log)
    with pytest.raises(ValueError, match="not on topology A"):
        compare_topologies(WEIGHT, b, a, policy="deepseek", run_a=known)

"""The inter-node dispatch estimate (eplb.traffic) on cases worked out by hand."""

from __future__ import annotations

import pytest
import torch

import eplb
from eplb.presets import PRESETS, ModelPreset
from eplb.traffic import dispatch_traffic, nodes_reached, tokens_per_step

# 8 experts in 4 routing groups of 2; a token picks 2 groups, then 2 experts in them; hidden size 10.
TOY = ModelPreset("toy", 3, 8, 4, 2, 10, 0, 0, "", topk_group=2)
TWO_NODES = eplb.Topology(16, 4, 2, 8)  # 16 slots, 4 groups, 2 nodes x 4 GPUs


def test_hierarchical_by_hand():
    # 2 of 4 groups, 2 groups per node: a node is missed when both picks are the other node's groups,
    # (2/4)(1/3) = 1/6; nodes reached 2 (5/6) = 5/3; remote copies 5/3 x 1/2 = 5/6 per token.
    t = dispatch_traffic(TWO_NODES, "hierarchical", TOY, tokens=6)
    assert t.routing == "2 of 4 groups"
    assert t.nodes_reached == pytest.approx(5 / 3)
    assert t.remote_copies == pytest.approx(5 / 6)
    assert t.tokens_per_layer == pytest.approx(5.0)  # 6 tokens x 5/6
    assert t.bytes_per_layer == pytest.approx(5 * 10 * 2)  # x hidden 10 x 2 bytes (BF16)
    assert t.bytes_per_step == pytest.approx(3 * 100)  # 3 MoE layers


def test_global_by_hand():
    # 2 distinct experts of 8, 4 per node: a node is missed with (4/8)(3/7) = 3/14; nodes reached 2 (11/14) = 11/7;
    # remote copies 11/7 x 1/2 = 11/14 per token.
    t = dispatch_traffic(TWO_NODES, "global", TOY, tokens=14)
    assert t.routing == "2 of 8 experts"
    assert t.nodes_reached == pytest.approx(11 / 7)
    assert t.remote_copies == pytest.approx(11 / 14)
    assert t.tokens_per_layer == pytest.approx(11.0)


def test_deepseek_v3_on_8_nodes_reaches_exactly_4_nodes_hierarchically():
    v3 = PRESETS["DeepSeek-V3/R1"]
    topology = eplb.Topology(320, 8, 8, 64)  # one routing group per node
    hierarchical = dispatch_traffic(topology, "hierarchical", v3, tokens=1000)
    assert hierarchical.nodes_reached == pytest.approx(4.0) and hierarchical.remote_copies == pytest.approx(3.5)
    glob = dispatch_traffic(topology, "global", v3, tokens=1000)
    assert glob.routing == "8 of 256 experts"
    missed = 1.0
    for i in range(8):  # 8 experts of 256, 32 per node
        missed *= (224 - i) / (256 - i)
    assert glob.nodes_reached == pytest.approx(8 * (1 - missed))
    assert glob.remote_copies > hierarchical.remote_copies  # the price that justifies hierarchical
    assert glob.bytes_per_step == pytest.approx(1000 * glob.remote_copies * 7168 * 2 * 58)


def test_one_node_sends_nothing_and_ungrouped_routing_gains_nothing():
    one = eplb.Topology(16, 4, 1, 8)
    for mode in ("hierarchical", "global"):
        assert dispatch_traffic(one, mode, TOY, tokens=100).tokens_per_layer == 0
    qwen = PRESETS["Qwen3-30B-A3B"]  # no group-limited routing: hierarchical placement cannot save traffic
    topology = eplb.Topology(160, 4, 2, 16)
    assert dispatch_traffic(topology, "hierarchical", qwen, 100).remote_copies == pytest.approx(
        dispatch_traffic(topology, "global", qwen, 100).remote_copies)


def test_nodes_reached_limits_and_tokens_per_step():
    assert nodes_reached(8, 8, 4) == pytest.approx(4.0)  # every unit picked: every node reached
    assert nodes_reached(8, 1, 4) == pytest.approx(1.0)
    assert tokens_per_step(torch.tensor([[6.0, 2.0], [2.0, 2.0]]), top_k=2) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="resolve 'auto'"):
        dispatch_traffic(TWO_NODES, "auto", TOY, 1)

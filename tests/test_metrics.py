"""Metrics on placements whose answers can be worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

import eplb
from eplb import metrics
from eplb.presets import DEEPSEEK_README_WEIGHT


def test_initial_placement_is_vllms_round_robin():
    assert metrics.initial_phy2log(2, 3, 6).tolist() == [[0, 1, 2, 0, 1, 2]] * 2


def test_gpu_loads_split_an_expert_evenly_over_its_copies():
    weight = torch.tensor([[10.0, 4.0]])
    phy2log = torch.tensor([[0, 1, 0, 0]])  # expert 0 has three copies
    assert metrics.slot_loads(weight, phy2log)[0].tolist() == pytest.approx([10 / 3, 4, 10 / 3, 10 / 3])
    assert metrics.gpu_loads(weight, phy2log, 2)[0].tolist() == pytest.approx([10 / 3 + 4, 20 / 3])


def test_vllm_and_sglang_balancedness_differ_on_skewed_layers():
    loads = torch.tensor([[1.0, 1.0], [1.0, 9.0]])  # balanced layer, skewed heavier layer
    vllm = (1 + 5) / (1 + 9)
    sglang = (1.0 + 5 / 9) / 2
    assert metrics.balancedness(loads) == pytest.approx(vllm)
    assert metrics.utilization_rate(loads) == pytest.approx(sglang, rel=1e-4)
    assert metrics.straggler_factor(loads) == pytest.approx(1 / vllm)
    assert metrics.layer_balancedness(loads).tolist() == pytest.approx([1.0, 5 / 9])


def test_zero_load_is_reported_as_undefined_not_zero():
    loads = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    per_layer = metrics.layer_balancedness(loads)
    assert math.isnan(per_layer[0]) and per_layer[1] == 1.0
    assert metrics.utilization_rate(loads) == pytest.approx(1.0)  # only the loaded layer counts
    empty = torch.zeros(2, 4)
    assert metrics.balancedness(empty) is None
    assert metrics.utilization_rate(empty) is None
    assert metrics.straggler_factor(empty) is None


def test_duplicate_gpus_counts_gpu_layer_pairs():
    phy2log = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 2]])  # layer 0 GPU 0 and layer 1 GPU 1
    assert metrics.duplicate_gpus(phy2log, 2) == 2
    assert metrics.duplicate_gpus(phy2log, 4) == 0


def test_migration_counts_changed_slots_and_copies_sent():
    old = torch.tensor([[0, 1, 2, 3]])
    new = torch.tensor([[1, 0, 2, 2]])  # 2 GPUs x 2 slots
    moved = metrics.migration(old, new, num_gpus=2, num_experts=4)
    assert moved.slots_changed.tolist() == [3]
    # GPU 0 holds {0, 1} before and after; GPU 1 had {2, 3}, now {2}: nothing is sent
    assert moved.copies_sent.tolist() == [0]
    assert metrics.migration(old, torch.tensor([[3, 2, 1, 0]]), 2, 4).total_copies_sent == 4
    assert metrics.migration(old, old, 2, 4).total_slots_changed == 0
    priced = metrics.migration(old, torch.tensor([[3, 2, 1, 0]]), 2, 4, expert_bytes=1000)
    assert priced.total_bytes_sent == 4000 and priced.bytes_sent.tolist() == [4000]
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.migration(old, torch.zeros(1, 6, dtype=torch.int64), 2, 4)


def test_evaluate_on_deepseeks_example():
    weight = torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32)
    topology = eplb.Topology(16, 4, 2, 8)
    phy2log, _, _ = eplb.rebalance_experts(weight, *vars(topology).values(), policy="deepseek")
    report = metrics.evaluate(weight, phy2log, topology)
    assert report.gpu_loads.shape == (2, 8) and report.node_loads.shape == (2, 2)
    assert report.gpu_loads.sum().item() == pytest.approx(weight.sum().item())
    assert report.balancedness == pytest.approx(
        float(report.gpu_loads.mean(-1).sum() / report.gpu_loads.max(-1).values.sum())
    )
    assert report.balancedness <= report.bound_balancedness <= 1.0
    assert bool((report.gpu_loads.max(-1).values >= report.bound - 1e-9).all())
    assert report.gap_to_bound == pytest.approx(report.bound_balancedness - report.balancedness)
    before = metrics.evaluate(weight, metrics.initial_phy2log(2, 12, 16), topology)
    assert before.balancedness < report.balancedness

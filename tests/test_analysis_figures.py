"""Figures and tables of the analysis pages, checked on their data (no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import eplb
from eplb.analysis import applicable_modes, compare_policies, run_policy, sweep
from eplb.replay import replay
from eplb.workloads import generate_load, generate_trace
from ui import analysis_figures as af
from ui import figures

TOPOLOGY = eplb.Topology(num_replicas=24, num_groups=4, num_nodes=2, num_gpus=4)


@pytest.fixture(scope="module")
def weight():
    return generate_load("zipf", 3, 16, seed=7)


@pytest.mark.parametrize("count, text", [(0, "0 B"), (512, "512 B"), (3 * 2**20, "3.00 MiB"), (42 * 2**20, "42.0 MiB"),
                                         (int(1.5 * 2**30), "1.50 GiB"), (int(789.82 * 2**30), "790 GiB"),
                                         (int(9.999 * 2**30), "10.0 GiB"), (1023 * 2**40, "1023 TiB"),
                                         (None, "unknown")])
def test_format_bytes(count, text):
    assert af.format_bytes(count) == text


def assert_compare_rows(frame, weight: torch.Tensor, topology: eplb.Topology) -> None:
    """Every (policy, mode) row of a compare table shows what eplb.analysis.run_policy measures."""
    modes = applicable_modes(topology, weight.shape[1])
    assert [(r.Policy, r.Mode) for r in frame.itertuples()] == [(p, m) for m in modes for p in eplb.POLICIES]
    for _, row in frame.iterrows():
        run = run_policy(weight, topology, row["Policy"], row["Mode"])
        assert row["Balancedness (vLLM)"] == f"{run.report.balancedness:.3f}"
        assert row["Utilization (SGLang)"] == f"{run.report.utilization_rate:.3f}"
        assert row["Max / mean"] == f"{run.report.straggler_factor:.2f}"
        assert row["Gap to bound"] == f"{run.report.gap_to_bound:.3f}"
        assert row["Node balance"] == f"{run.report.node_balancedness:.3f}"
        assert row["Duplicate GPUs"] == str(run.report.duplicate_gpus)
        assert float(row["Runtime (ms)"]) >= 0


def test_compare_table_shows_each_runs_metrics(weight):
    runs = compare_policies(weight, TOPOLOGY, ["hierarchical", "global"])
    assert_compare_rows(af.compare_table(runs), weight, TOPOLOGY)
    # one color scale across every policy's map: the scale tops out at the busiest GPU of any of them
    heatmaps = af.policy_heatmaps(runs, columns=3)
    assert len(heatmaps.data) == len(runs) == 6
    assert [a.text for a in heatmaps.layout.annotations] == [run.label for run in runs]
    assert heatmaps.layout.xaxis.title.text is None and heatmaps.layout.xaxis4.title.text == "GPU"
    assert heatmaps.layout.coloraxis.cmax == pytest.approx(max(float(r.report.gpu_loads.max()) for r in runs))


def test_a_load_without_tokens_reads_no_load():
    runs = compare_policies(torch.zeros(2, 16), TOPOLOGY)
    row = af.compare_table(runs).iloc[0]
    assert row["Balancedness (vLLM)"] == row["Gap to bound"] == row["Max / mean"] == figures.NO_LOAD


def test_sweep_figures_follow_the_points(weight):
    points = sweep(weight, "redundant", [0, 4, 8, 6], TOPOLOGY, expert_bytes=2**20)  # 6: 22 slots on 4 GPUs
    fig = af.sweep_balancedness(points)
    lines = {trace.name: trace for trace in fig.data}
    mode = points[0].run.mode
    bound = f"{af.BOUND}, {mode}"
    assert set(lines) == {*(f"{name} ({mode})" for name in eplb.POLICIES), bound}
    assert list(lines[f"deepseek ({mode})"].x) == [0, 4, 8, 6]
    at = {(p.value, p.policy): p for p in points}
    for name in eplb.POLICIES:
        expected = [at[v, name].run.report.balancedness for v in (0, 4, 8)]
        assert np.allclose(lines[f"{name} ({mode})"].y[:3], expected)
        assert np.isnan(lines[f"{name} ({mode})"].y[3])  # the invalid point is a gap, not a 0
    assert np.allclose(lines[bound].y[:3], [at[v, "deepseek"].run.report.bound_balancedness for v in (0, 4, 8)])
    memory = af.sweep_memory(points)
    per_gpu = np.asarray(memory.data[0].y)
    assert np.allclose(per_gpu, [v * 3 * 2**20 / 4 / 2**30 for v in (0, 4, 8, 6)])  # slots x layers x 1 MiB / GPUs
    table = af.sweep_table(points)
    assert len(table) == 4 * len(eplb.POLICIES)
    assert table["Not valid"].dropna().str.contains("divisible by num_gpus").all()


def test_a_sweep_never_joins_two_modes_in_one_line(weight):
    base = eplb.Topology(32, 4, 1, 4)  # 4 groups: 1, 2 and 4 nodes run hierarchical under auto
    points = sweep(weight, "nodes", [1, 2, 4], base)
    assert {p.run.mode for p in points} == {"hierarchical"}
    points = sweep(weight, "groups", [1, 2, 4], eplb.Topology(32, 4, 2, 4))  # 1 group on 2 nodes: global
    assert {p.run.mode for p in points} == {"hierarchical", "global"}
    fig = af.sweep_balancedness(points)
    at = {(p.value, p.policy): p.run for p in points}
    for trace in fig.data:
        drawn = [x for x, y in zip(trace.x, trace.y) if y is not None and not np.isnan(y)]
        mode = trace.name.rsplit(", ", 1)[-1] if trace.name.startswith(af.BOUND) else trace.name[:-1].split(" (")[-1]
        assert drawn and all(any(at[x, name].mode == mode for name in eplb.POLICIES) for x in drawn), trace.name
        assert trace.connectgaps is False
    assert {t.name for t in fig.data} >= {"deepseek (hierarchical)", "deepseek (global)"}


def test_sweep_over_gpus_holds_what_the_caller_says():
    from eplb.analysis import sweep_values, topology_at

    base = eplb.Topology(288, 8, 4, 32)  # DeepSeek-V3 on 4 nodes x 8 GPUs, 32 redundant
    assert 64 not in sweep_values("gpus", 256, base)  # 288 slots do not spread over 64 GPUs
    assert 64 in sweep_values("gpus", 256, base, hold="slots_per_gpu")
    assert topology_at("gpus", 64, 256, base, hold="slots_per_gpu").num_replicas == 64 * 9
    assert topology_at("gpus", 64, 256, base, hold="redundant_per_gpu").num_replicas == 256 + 64  # 1 per GPU
    assert topology_at("gpus", 64, 256, base).num_replicas == 288


def test_sweep_over_gpus_uses_category_axis(weight):
    points = sweep(weight, "gpus", [2, 4, 8], TOPOLOGY)
    assert af.sweep_balancedness(points).layout.xaxis.type == "category"
    assert af.sweep_table(points).columns[0] == "GPUs"


def test_replay_figures_mark_rebalances_and_idle_steps():
    trace = generate_trace("zipf", 20, 2, 16, seed=1, drift=0.2)
    trace[6:9] = 0
    result = replay(trace, eplb.Topology(20, 1, 1, 4), window=3, interval=4, expert_bytes=3 * 2**20)
    fig = af.replay_timeline(result)
    lines = [t for t in fig.data if t.mode != "text"]
    assert len(lines) == 2
    assert np.allclose(lines[0].y, result.balancedness_static.numpy(), equal_nan=True)
    assert np.allclose(lines[1].y, result.balancedness_rebalanced.numpy(), equal_nan=True)
    assert all("step" in t.hovertemplate and "layer" not in t.hovertemplate for t in fig.data)
    no_load = [t for t in fig.data if t.mode == "text"]
    assert list(no_load[0].x) == [7] and list(no_load[0].text) == [figures.NO_LOAD]  # one label, mid-stretch
    dashed = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert [s.x0 + 0.5 for s in dashed] == [r.step for r in result.rebalances]
    bars = af.migration_bars(result.rebalances)
    assert list(bars.data[0].y) == [r.copies_sent for r in result.rebalances]
    assert list(bars.data[0].text) == [af.format_bytes(r.copies_sent * 3 * 2**20) for r in result.rebalances]
    table = af.rebalance_table(result.rebalances)
    assert list(table["Copies sent"]) == [r.copies_sent for r in result.rebalances]

"""Sweep and replay: the pure functions behind the analysis pages."""

from __future__ import annotations

import json

import pytest
import torch

import eplb
from eplb import analysis
from eplb.analysis import compare_policies, run_policy, sweep, sweep_values, topology_at
from eplb.formats import read_load_file
from eplb.metrics import gpu_loads, initial_phy2log
from eplb.replay import TRADEOFF_SETTINGS, replay, step_balancedness, tradeoff
from eplb.presets import PRESETS
from eplb.workloads import generate_load, generate_trace
from scripts.make_traces import TRACE_DIR

BASE = eplb.Topology(num_replicas=40, num_groups=4, num_nodes=2, num_gpus=8)


@pytest.fixture(scope="module")
def weight():
    return generate_load("zipf", 4, 32, seed=3)


def test_compare_runs_every_policy(weight):
    runs = compare_policies(weight, BASE)
    assert [r.policy for r in runs] == list(eplb.POLICIES)
    for run in runs:
        assert run.mode == "hierarchical" and run.runtime_ms >= 0
        assert run.report.balancedness <= run.report.bound_balancedness + 1e-9


def test_sweep_values_are_valid_topologies(weight):
    for axis in ("redundant", "gpus", "nodes", "groups"):
        values = sweep_values(axis, 32, BASE)
        assert values, axis
        for value in values:
            topology_at(axis, value, 32, BASE).validate(32, "global")
    assert sweep_values("redundant", 32, BASE, max_redundant=16, step=8) == [0, 8, 16]
    assert sweep_values("gpus", 32, BASE) == [2, 4, 8, 10, 20, 40]
    with pytest.raises(ValueError, match="unknown sweep axis"):
        sweep_values("tp", 32, BASE)


def test_sweep_points_equal_single_runs(weight):
    seen = []
    points = sweep(weight, "redundant", [0, 8, 16], BASE, expert_bytes=1000, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert len(points) == 3 * len(eplb.POLICIES)
    for point in points:
        single = run_policy(weight, topology_at("redundant", point.value, 32, BASE), point.policy)
        assert torch.equal(point.run.phy2log, single.phy2log)
        assert point.run.report.balancedness == pytest.approx(single.report.balancedness)
        assert point.redundant_bytes == point.value * 4 * 1000


def test_sweep_records_invalid_points_instead_of_failing(weight):
    points = sweep(weight, "nodes", [3], BASE)
    assert all(p.run is None and "divisible by num_nodes (3)" in p.error for p in points)


def test_replay_on_a_constant_trace_migrates_once():
    load = generate_load("lognormal", 3, 16, seed=1)
    trace = load.expand(12, -1, -1).clone()
    topology = eplb.Topology(24, 4, 2, 4)
    result = replay(trace, topology, window=3, interval=4, expert_bytes=10)
    assert result.checks == 2 and len(result.rebalances) == 2
    first, second = result.rebalances
    assert first.step == 4 and first.copies_sent > 0 and first.bytes_moved == 10 * first.copies_sent
    assert second.copies_sent == 0 and second.slots_changed == 0
    # before the first rebalance the engine runs vLLM's initial map
    assert torch.allclose(result.balancedness_rebalanced[:4], result.balancedness_static[:4])
    assert result.mean_rebalanced > result.mean_static


def test_replay_never_sees_the_future():
    trace = generate_trace("zipf", 20, 2, 16, seed=2, drift=0.3)
    topology = eplb.Topology(20, 1, 1, 4)
    base = replay(trace, topology, window=8, interval=5)
    changed = trace.clone()
    changed[12:] = changed[12:].flip(-1)  # rewrite everything from step 12 on
    other = replay(changed, topology, window=8, interval=5)
    # the plans made at steps 5 and 10 only saw steps before them, so they are the same
    assert [r.copies_sent for r in base.rebalances[:2]] == [r.copies_sent for r in other.rebalances[:2]]
    assert torch.allclose(base.balancedness_rebalanced[:12], other.balancedness_rebalanced[:12])


def test_replay_threshold_skips_rebalances():
    trace = generate_trace("uniform", 12, 2, 16, seed=0, drift=0.0)
    topology = eplb.Topology(16, 1, 1, 4)
    result = replay(trace, topology, window=2, interval=3, threshold=0.5)
    assert result.checks == 3 and result.rebalances == []
    assert torch.allclose(result.balancedness_rebalanced, result.balancedness_static)


def test_step_balancedness_marks_steps_without_load():
    trace = torch.zeros(2, 1, 4)
    trace[1, 0] = torch.tensor([1.0, 1.0, 1.0, 5.0])
    values = step_balancedness(trace, initial_phy2log(1, 4, 4), 2)
    assert values[0].isnan() and values[1] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"window": 0, "interval": 2}, "window must be"), ({"window": 2, "interval": 0}, "interval must be"),
     ({"window": 2, "interval": 2, "threshold": 1.5}, "threshold is a balancedness")],
)
def test_replay_rejects_bad_controls(kwargs, message):
    with pytest.raises(ValueError, match=message):
        replay(torch.ones(4, 1, 4), eplb.Topology(4, 1, 1, 2), **kwargs)


def test_applicable_modes():
    assert analysis.applicable_modes(BASE, 32) == ["hierarchical", "global"]
    assert analysis.applicable_modes(eplb.Topology(40, 4, 8, 8), 32) == ["global"]  # 4 groups on 8 nodes
    with pytest.raises(ValueError, match="divisible by num_gpus"):
        analysis.applicable_modes(eplb.Topology(41, 4, 2, 8), 32)


def test_compare_in_every_mode_equals_single_runs(weight):
    runs = compare_policies(weight, BASE, ["hierarchical", "global"], repeats=2)
    assert [(r.policy, r.mode) for r in runs] == [(p, m) for m in ("hierarchical", "global") for p in eplb.POLICIES]
    for run in runs:
        single = run_policy(weight, BASE, run.policy, run.mode)
        assert torch.equal(run.phy2log, single.phy2log)
        assert run.label == f"{run.policy} ({run.mode})"
        metrics = run.metrics()
        assert metrics["balancedness"] == pytest.approx(single.report.balancedness)
        assert metrics["gap_to_bound"] == pytest.approx(single.report.bound_balancedness - single.report.balancedness)
        assert metrics["duplicate_gpus"] == single.report.duplicate_gpus
    # the global bound ignores groups and nodes, so it is never below the hierarchical one
    hierarchical, global_ = runs[0].report.bound_balancedness, runs[-1].report.bound_balancedness
    assert global_ >= hierarchical - 1e-12


def test_a_load_without_tokens_has_no_metrics():
    run = run_policy(torch.zeros(2, 32), BASE)
    assert all(run.metrics()[k] is None for k in ("balancedness", "utilization_rate", "gap_to_bound"))
    points = sweep(torch.zeros(2, 32), "redundant", [0, 8], BASE)
    assert all(p.run.report.balancedness is None for p in points)


def test_preset_for_shape_finds_the_model_and_its_expert_size():
    deepseek = analysis.preset_for_shape(58, 256)
    assert deepseek.name == "DeepSeek-V3/R1" and deepseek.expert_bytes == 3 * 7168 * 2048
    assert analysis.preset_for_shape(2, 12) is None  # the README toy has no expert size
    assert analysis.preset_for_shape(3, 7) is None


def test_replay_keeps_the_placement_while_the_window_has_no_load():
    trace = generate_trace("zipf", 16, 2, 16, seed=4, drift=0.1)
    trace[4:10] = 0  # an idle stretch
    topology = eplb.Topology(20, 1, 1, 4)
    result = replay(trace, topology, window=2, interval=2, expert_bytes=5)
    # the windows before steps 6, 8 and 10 ([4, 6), [6, 8), [8, 10)) carried nothing
    assert result.checks == 7 and [r.step for r in result.rebalances] == [2, 4, 12, 14]
    idle = result.balancedness_rebalanced[4:10]
    assert idle.isnan().all() and not result.balancedness_rebalanced[10:].isnan().any()
    known = result.balancedness_rebalanced[~result.balancedness_rebalanced.isnan()]
    assert result.mean_rebalanced == pytest.approx(float(known.mean()))
    assert result.total_bytes_moved == 5 * result.total_copies_sent


def test_replay_scores_each_step_with_the_placement_in_force():
    trace = generate_trace("lognormal", 9, 2, 8, seed=5, drift=0.2)
    topology = eplb.Topology(12, 1, 1, 4)
    result = replay(trace, topology, window=3, interval=3)
    placement = initial_phy2log(2, 8, 12)
    for start in range(0, 9, 3):
        if start:  # planned from the window as history, keeping what it can of the placement on the GPUs
            placement = rebalance_experts_at(trace[start - 3 : start], topology, previous=placement)
        expected = step_balancedness(trace[start : start + 3], placement, 4)
        assert torch.allclose(result.balancedness_rebalanced[start : start + 3], expected)


def rebalance_experts_at(load, topology, **options):
    return eplb.rebalance_experts(load, topology.num_replicas, topology.num_groups, topology.num_nodes,
                                  topology.num_gpus, **options)[0]


def test_step_balancedness_equals_scoring_each_step_alone():
    trace = generate_trace("zipf", 11, 3, 16, seed=9, drift=0.2).to(torch.int32)
    placement = rebalance_experts_at(trace.sum(0), eplb.Topology(20, 1, 1, 4))
    every = step_balancedness(trace, placement, 4, chunk_bytes=1)  # one step per chunk
    for step in range(11):
        loads = gpu_loads(trace[step], placement, 4)
        assert float(every[step]) == pytest.approx(float(loads.mean(-1).sum() / loads.max(-1).values.sum()),
                                                   rel=1e-6)


def test_replay_with_the_knob_moves_fewer_copies_than_fresh_plans():
    trace = generate_trace("zipf", 40, 4, 32, seed=3, drift=0.05)
    topology = eplb.Topology(40, 4, 2, 8)
    points = {p.label: p.result for p in tradeoff(trace, topology, window=4, interval=4)}
    assert list(points) == [label for label, _, _ in TRADEOFF_SETTINGS]
    fresh, relabel = points["fresh plan"], points["relabel only"]
    assert fresh.total_copies_sent > relabel.total_copies_sent > points["tolerance 5%"].total_copies_sent
    for r_fresh, r_relabel in zip(fresh.rebalances, relabel.rebalances, strict=True):  # same plans, relabelled
        assert r_relabel.balancedness_after == pytest.approx(r_fresh.balancedness_after, rel=1e-6)
    for label in ("tolerance 0%", "tolerance 1%", "tolerance 5%"):
        assert points[label].copies_per_rebalance <= relabel.copies_per_rebalance
    with pytest.raises(ValueError, match="balance_tolerance needs keep_copies"):
        replay(trace, topology, window=4, interval=4, keep_copies=False, balance_tolerance=0.1)


def test_sample_traces_are_the_generators_output():
    manifest = json.loads((TRACE_DIR / "traces.json").read_text())
    assert len(manifest) >= 3
    for entry in manifest:
        trace = read_load_file(TRACE_DIR / entry["file"]).trace
        preset = PRESETS[entry["preset"]]
        assert trace.shape == (entry["steps"], preset.num_layers, preset.num_experts)
        expected = generate_trace(entry["family"], entry["steps"], preset.num_layers, preset.num_experts,
                                  seed=entry["seed"], skew=entry["skew"], drift=entry["drift"],
                                  tokens=entry["tokens"], top_k=preset.top_k)
        if entry["idle_steps"]:
            start, stop = entry["idle_steps"]
            assert trace[start:stop].sum() == 0
            expected[start:stop] = 0
        assert torch.equal(trace, expected)


def test_prices_follow_the_expert_size():
    assert analysis.memory_of_copies(BASE, 4, 32, 1000) == 8 * 4 * 1000
    assert analysis.memory_of_copies(eplb.Topology(32, 4, 2, 8), 4, 32, 1000) == 0
    trace = generate_trace("zipf", 8, 2, 16, seed=8, drift=0.2)
    topology = eplb.Topology(20, 1, 1, 4)
    priced = replay(trace, topology, window=2, interval=2, expert_bytes=7)
    unpriced = replay(trace, topology, window=2, interval=2)
    assert unpriced.total_bytes_moved == 0 and priced.total_bytes_moved == 7 * priced.total_copies_sent > 0
    assert unpriced.priced(7).rebalances == priced.rebalances
    assert torch.equal(unpriced.priced(7).balancedness_rebalanced, priced.balancedness_rebalanced)


def test_policies_on_one_load_share_one_bound_computation(weight, monkeypatch):
    import eplb.metrics

    calls = []
    real = eplb.metrics.lower_bound
    monkeypatch.setattr(eplb.metrics, "lower_bound", lambda *a, **k: calls.append(a) or real(*a, **k))
    runs = compare_policies(weight, BASE, ["hierarchical", "global"])
    assert len(calls) == 2  # once per mode, not once per policy
    by_mode = {}
    for run in runs:
        by_mode.setdefault(run.mode, run.report.bound)
        assert torch.equal(run.report.bound, by_mode[run.mode])
    assert torch.equal(by_mode["global"], real(weight, *vars(BASE).values(), "global"))
    calls.clear()
    sweep(weight, "redundant", [0, 8], BASE)
    assert len(calls) == 2  # once per point


def test_next_window_on_a_steady_trace_equals_in_sample():
    load = generate_load("zipf", 2, 16, seed=3)
    steady = analysis.next_window_balancedness(load.expand(8, -1, -1).clone(), eplb.Topology(20, 2, 2, 4),
                                               ["hierarchical", "global"])
    assert [(n.policy, n.mode) for n in steady] == [(p, m) for m in ("hierarchical", "global") for p in eplb.POLICIES]
    for n in steady:
        assert (n.windows, n.steps_per_window) == (4, 2)
        assert n.next_window == pytest.approx(n.in_sample)
    drifting = analysis.next_window_balancedness(generate_trace("zipf", 9, 2, 16, seed=3, drift=0.5),
                                                 eplb.Topology(20, 2, 2, 4), ["global"], num_windows=3)
    assert all(n.windows == 3 and n.steps_per_window == 3 and n.next_window < n.in_sample + 1e-9
               for n in drifting if n.policy == "joint")
    with pytest.raises(ValueError, match="at least 2 steps"):
        analysis.next_window_balancedness(load.unsqueeze(0), eplb.Topology(20, 2, 2, 4), ["global"])

"""Sweep and replay: the pure functions behind the analysis pages."""

from __future__ import annotations

import pytest
import torch

import eplb
from eplb.analysis import compare_policies, run_policy, sweep, sweep_values, topology_at
from eplb.metrics import initial_phy2log
from eplb.replay import replay, step_balancedness
from eplb.workloads import generate_load, generate_trace

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

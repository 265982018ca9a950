"""The policy benchmark runs, covers every policy and case, and reports the goals."""

import pytest
import torch

import eplb
from eplb import bench
from eplb.metrics import balancedness, duplicate_gpus, gpu_loads
from eplb.workloads import FAMILIES, generate_drifting_trace


def test_quick_run_has_a_row_for_every_policy_and_case(capsys):
    assert bench.main(["--quick", "--markdown", "--only", "in-sample"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    cases = sum(len(shape.modes) for shape in bench.QUICK) * len(FAMILIES) + 1  # + the FlashLB toy
    assert len(table) == cases + 1  # + the header
    for name in eplb.POLICIES:
        assert name in table[0]
    assert "FlashLB toy max GPU load" in out


def test_rows_per_policy_and_limit_never_below_any_policy():
    rows = bench.run_suite(bench.QUICK[:1], list(eplb.POLICIES), repeats=1, families=("zipf", "hot"))
    assert len(rows) == len(eplb.POLICIES) * 2 * len(bench.QUICK[0].modes)
    for row in rows:
        assert 0 < row.balancedness <= row.limit_balancedness + 1e-9
        assert row.runtime_ms > 0


def test_limit_is_the_exact_optimum_for_two_slots_per_gpu():
    weight = torch.tensor(bench.FLASHLB_TOY, dtype=torch.float32)
    limit, kind = bench.limit_of(weight, eplb.Topology(16, 1, 1, 8), "global")
    assert kind == "exact optimum" and abs(float(limit[0]) - 590 / 3) < 1e-6


def test_every_preset_has_a_shape_and_bad_options_are_refused(capsys):
    assert {s.label for s in bench.preset_shapes()} == set(bench.PRESETS)
    for shape in bench.preset_shapes():
        for mode in shape.modes:
            shape.topology.validate(shape.num_experts, mode)
    for argv in (["--policies", "nope"], ["--repeats", "0"], ["--families", "nope"], ["--noise", "x"],
                 ["--noise", "-1"], ["--only", "nope"]):
        try:
            bench.main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "unknown" in capsys.readouterr().err


def test_quick_next_window_has_a_row_per_drift_case_and_the_goals(capsys, tmp_path):
    assert bench.main(["--quick", "--markdown", "--only", "next-window", "--families", "zipf,hot",
                       "--noise", "0.1", "--peers", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == sum(len(shape.modes) for shape in bench.DRIFT_QUICK) * 2 + 1
    for name in eplb.POLICIES:
        assert f"{name} next / in" in table[0]
    assert "ADRS score" in out and "Next-window goals for 'joint'" in out
    assert "FlashLB" not in out, "--only next-window runs that section alone"
    assert "peer gepa: skipped" in out, "without a local copy the peers are skipped, by name"


def test_the_seed_option_draws_other_drifting_traces(capsys, tmp_path):
    tables = {}
    for seed in ("0", "1"):
        assert bench.main(["--quick", "--markdown", "--only", "next-window", "--families", "zipf",
                           "--noise", "0.2", "--policies", "deepseek", "--peers", str(tmp_path), "--seed", seed]) == 0
        out = capsys.readouterr().out
        assert f"drifting traces of seed {seed}" in out
        tables[seed] = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(tables["0"]) == len(tables["1"]) and tables["0"] != tables["1"]
    windows = {seed: bench.drift_windows(bench.DRIFT_QUICK[0], "zipf", 0.2, seed) for seed in (0, 1)}
    assert not torch.equal(windows[0], windows[1])
    assert torch.equal(windows[1], bench.drift_windows(bench.DRIFT_QUICK[0], "zipf", 0.2, 1))


def test_next_window_scores_the_plan_on_the_window_after_it():
    """In-sample is the plan of window i on window i's sum, next window the same plan on
    window i+1's; each planner sees the window's per-step loads [steps, layers, experts]."""
    shape = bench.DRIFT_QUICK[0]
    t = shape.topology
    windows = bench.drift_windows(shape, "lognormal", 0.2)
    seen = []

    def plan(window, topology, mode):
        seen.append(tuple(window.shape))
        return eplb.rebalance_experts(window.sum(0), t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus,
                                      policy="deepseek", mode=mode)[0]

    (row,) = bench.next_window_rows("x", windows, t, "global", "lognormal", 0.2, [bench.Planner("mine", plan)])
    assert seen == [tuple(windows.shape[1:])] * (bench.NUM_WINDOWS - 1)
    ins, nxt, dup = [], [], []
    for i in range(bench.NUM_WINDOWS - 1):
        phy2log = plan(windows[i], t, "global")
        ins.append(balancedness(gpu_loads(windows[i].sum(0), phy2log, t.num_gpus)))
        nxt.append(balancedness(gpu_loads(windows[i + 1].sum(0), phy2log, t.num_gpus)))
        dup.append(duplicate_gpus(phy2log, t.num_gpus))
    assert row.in_sample == pytest.approx(sum(ins) / len(ins))
    assert row.next_window == pytest.approx(sum(nxt) / len(nxt))
    assert row.duplicates == pytest.approx(sum(dup) / len(dup))
    assert row.next_window < row.in_sample  # 20% noise: the next window is not the one planned on


def test_next_window_equals_in_sample_on_a_still_trace():
    shape = bench.DRIFT_QUICK[0]
    trace = generate_drifting_trace("zipf", bench.NUM_WINDOWS, 2, shape.num_layers, shape.num_experts,
                                    noise=0.0, drift=0.0, tokens=10**8)
    windows = trace.view(bench.NUM_WINDOWS, 2, shape.num_layers, shape.num_experts)
    rows = bench.next_window_rows("x", windows, shape.topology, "global", "zipf", 0.0,
                                  [bench.policy_planner("deepseek")])
    assert rows[0].next_window == pytest.approx(rows[0].in_sample, abs=2e-3)


def test_adrs_score_is_the_evaluators_formula():
    assert bench.adrs_score(1.0, 0.001) == pytest.approx(100.0)  # 1 ms: the 10 speed points
    assert bench.adrs_score(0.5, 0.002) == pytest.approx(50.0)  # 2 ms: 5 points
    assert bench.adrs_score(0.9, 0.010) == pytest.approx(82.0)  # 10 ms: 1 point, no penalty yet
    assert bench.adrs_score(0.9, 0.020) == pytest.approx(81.0 + 0.5 - 0.4)  # penalty 20 x seconds
    assert bench.adrs_score(0.9, 2.0) == pytest.approx(81.0 + 0.005 - 20.0)  # penalty capped at 20

"""The policy benchmark runs, covers every policy and case, and reports the goals."""

import torch

import eplb
from eplb import bench
from eplb.workloads import FAMILIES


def test_quick_run_has_a_row_for_every_policy_and_case(capsys):
    assert bench.main(["--quick", "--markdown"]) == 0
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
    for argv in (["--policies", "nope"], ["--repeats", "0"], ["--families", "nope"]):
        try:
            bench.main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "unknown" in capsys.readouterr().err

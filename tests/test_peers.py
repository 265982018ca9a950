"""Peer balancers load from a local copy by path, are skipped by name without one, and plan
from the window the way their engines hand it over. Fake peers stand in for the real files."""

from __future__ import annotations

import sys

import torch

import eplb
from eplb import bench, peers

FAKE_DEEPSEEK_VEC = '''
import torch
import eplb

SEEN = []

def rebalance_experts(tokens_per_expert, num_physical_experts, num_local_physical_experts, num_groups,
                      num_nodes, enable_hierarchical):
    SEEN.append((tuple(tokens_per_expert.shape), enable_hierarchical))
    gpus = num_physical_experts // num_local_physical_experts
    phy2log, log2phy, logcnt = eplb.rebalance_experts(tokens_per_expert.sum(0), num_physical_experts, num_groups,
                                                      num_nodes, gpus, policy="deepseek")
    return phy2log.int(), log2phy.int(), logcnt.int()
'''

FAKE_PROGRAM = '''
import eplb

SEEN = []

def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    SEEN.append(tuple(weight.shape))
    return eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy="zigzag",
                                  mode="global")
'''


def _fake_copy(root):
    for relative, text in [(peers.DEEPSEEK_VEC, FAKE_DEEPSEEK_VEC)] + [(p, FAKE_PROGRAM) for p in peers.PROGRAMS.values()]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_directory_comes_from_the_option_then_the_environment_then_beside_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv("EPLB_PEERS", str(tmp_path / "env"))
    assert peers.peers_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert peers.peers_dir(None) == tmp_path / "env"
    monkeypatch.delenv("EPLB_PEERS")
    assert peers.peers_dir(None) == peers.PROJECT_ROOT.parent / "peers"


def test_without_a_copy_every_peer_is_skipped_by_name(tmp_path):
    found, skipped = peers.load_planners(tmp_path)
    assert found == []
    assert [line.split(":")[0] for line in skipped] == ["deepseek_vec", "gepa", "levi"]
    assert all("not found" in line and str(tmp_path) in line for line in skipped)
    assert peers.adrs_evaluator(tmp_path) is None
    assert "skipped" in bench.adrs_check_line(tmp_path, "joint")


def test_peers_plan_from_the_window_as_their_engines_hand_it_over(tmp_path):
    found, skipped = peers.load_planners(_fake_copy(tmp_path))
    assert skipped == [] and [p.name for p in found] == ["deepseek_vec", "gepa", "levi"]
    by_name = {p.name: p for p in found}
    assert by_name["deepseek_vec"].modes == ("global", "hierarchical")
    assert by_name["gepa"].modes == ("global",) and by_name["levi"].modes == ("global",)
    shape = bench.DRIFT_QUICK[0]
    t = shape.topology
    window = bench.drift_windows(shape, "zipf", 0.1)[0]  # [S, L, E]
    phy2log = by_name["deepseek_vec"].plan(window, t, "hierarchical")
    assert phy2log.dtype == torch.int64
    expected = eplb.rebalance_experts(window.sum(0), t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus,
                                      policy="deepseek")[0]
    assert torch.equal(phy2log, expected)
    assert sys.modules["eplb_peer_deepseek_vec"].SEEN == [(tuple(window.shape), True)], "SGLang's balancer gets the per-step window"
    by_name["gepa"].plan(window, t, "global")
    assert sys.modules["eplb_peer_gepa"].SEEN == [tuple(window.shape[1:])], "an ADRS program gets the window's sum"


def test_the_benchmark_runs_the_peers_beside_ours_mode_for_mode(tmp_path, capsys):
    assert bench.main(["--quick", "--only", "next-window", "--families", "zipf", "--noise", "0.1",
                       "--peers", str(_fake_copy(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out.split("ADRS evaluator check")[0]
    assert "vs gepa         global" in out and "vs gepa         hierarchical" not in out
    assert "vs deepseek_vec hierarchical" in out


def test_peer_speed_times_like_for_like_calls_apart_from_the_window_plan(capsys, tmp_path):
    """The goal lines compare joint and a program on the same input (the 2-D load, the window's
    sum); the window plan, which does more, is reported apart and named as such."""
    from benchmarks import bench_peer_speed

    assert bench_peer_speed.main(["--repeats", "1", "--families", "hot", "--peers", str(_fake_copy(tmp_path))]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("  hot ")]
    assert [" ".join(row[1:3]) if row[1] == "window" else row[1] for row in rows] == ["2-D", "window sum", "window plan"]
    for name in peers.PROGRAMS:
        assert f"worst joint / {name}, same input:" in out and "(goal: at most 1)" in out
        assert f"worst joint window plan / {name} on the sum:" in out
    program = sys.modules["eplb_peer_gepa"]
    assert set(program.SEEN) == {(58, 256)}, "every program call gets a 2-D load (the window's sum)"

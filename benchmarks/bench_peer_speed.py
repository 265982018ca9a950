"""joint against the ADRS leaderboard's GEPA and LEVI programs on time, at the DeepSeek-V3 shape.

58 layers x 256 experts, 288 slots, 8 groups, 4 nodes, 32 GPUs, one seeded load per
workload family. Three calls are timed for each:

* 2-D: a placement from one [layers, experts] load: ``rebalance_experts(weight, ...,
  policy="joint", mode="global")`` against each program's ``rebalance_experts(weight, ...)``
  (global placements);
* window sum: the same on the sum of a window of 20 steps of per-step loads [steps, layers,
  experts] of the benchmark's drifting trace (15% noise), as the ADRS evaluator hands it;
* window plan: ``joint`` handed the window itself, from which it plans for the next window
  (``eplb.policies.hedge``: the plan on the sum, hedged plans and their scoring on likely next
  windows), against the programs on the sum. This is more work than theirs, for a better next
  window (docs/benchmarks.md); its ratios are printed apart from the like-for-like goal.

torch runs on one thread; the calls take turns (each timed call after an untimed one of
the same function), and each figure is the median process CPU time of ``--repeats``
turns. The programs are loaded by path from a local copy of the peers (``eplb.peers``:
``--peers DIR``, else $EPLB_PEERS, else the folder ``peers`` beside the project root);
without one the script says so and times joint alone.

Usage:
    PYTHONPATH=. python benchmarks/bench_peer_speed.py [--repeats N] [--families a,b] [--peers DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eplb import peers  # noqa: E402
from eplb.bench import SPEED_SHAPE, drift_windows  # noqa: E402
from eplb.rebalance import rebalance_experts  # noqa: E402
from eplb.workloads import FAMILIES, generate_load  # noqa: E402


def interleaved(calls: dict[str, object], repeats: int) -> dict[str, float]:
    """Median CPU ms per call; the calls take turns, each timed call after an untimed one."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            call()
            start = time.process_time()
            call()
            times[name].append((time.process_time() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed turns per case (default 5)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated workload families")
    parser.add_argument("--peers", metavar="DIR", help="local copy of the peers (see eplb/peers.py)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    families = [f for f in args.families.split(",") if f]
    for family in families:
        if family not in FAMILIES:
            parser.error(f"unknown workload family {family!r}: choose from {', '.join(FAMILIES)}")
    torch.set_num_threads(1)
    directory = peers.peers_dir(args.peers)
    programs = {}
    for name, relative in peers.PROGRAMS.items():
        path = directory / relative
        if path.is_file():
            programs[name] = peers.load_module(path, name)
        else:
            print(f"{name}: skipped, {path} not found")
    t = SPEED_SHAPE.topology
    topology = (t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus)
    names = ["joint", *programs]
    print(f"{SPEED_SHAPE.describe()}, torch threads 1, median CPU ms of {args.repeats} turns; "
          "ratio: joint's time / the program's (goal: at most 1)")
    head = ["load", "call"] + [f"{n} ms" for n in names] + [f"joint / {n}" for n in programs]
    table = [head]
    worst: dict[tuple[str, bool], float] = {}  # (program, window plan?) -> the largest ratio
    for family in families:
        weight = generate_load(family, SPEED_SHAPE.num_layers, SPEED_SHAPE.num_experts, seed=0)
        window = drift_windows(SPEED_SHAPE, family, 0.15)[0]
        total = window.sum(0)
        for call, ours, theirs in (("2-D", weight, weight), ("window sum", total, total),
                                   ("window plan", window, total)):
            calls = {"joint": lambda x=ours: rebalance_experts(x, *topology, policy="joint", mode="global")}
            calls.update({name: (lambda m=module, x=theirs: m.rebalance_experts(x, *topology))
                          for name, module in programs.items()})
            with warnings.catch_warnings():  # a program's own torch warnings are not ours to show
                warnings.simplefilter("ignore")
                ms = interleaved(calls, args.repeats)
            ratios = {name: ms["joint"] / ms[name] for name in programs}
            for name, ratio in ratios.items():
                worst[name, call == "window plan"] = max(worst.get((name, call == "window plan"), 0.0), ratio)
            table.append([family, call] + [f"{ms[n]:.2f}" for n in names] + [f"{r:.2f}x" for r in ratios.values()])
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for line in table:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    for (name, plan), ratio in sorted(worst.items()):
        if plan:
            print(f"worst joint window plan / {name} on the sum: {ratio:.2f}x (a different job: no goal)")
        else:
            print(f"worst joint / {name}, same input: {ratio:.2f}x (goal: at most 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

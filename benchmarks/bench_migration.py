"""Copies moved per rebalance against next-window balancedness, at DeepSeek-V3 shape.

Each case is replayed (``eplb.replay.tradeoff``) once per setting of the migration
knob: a fresh plan every time, ``previous=`` (relabelling only), and
``balance_tolerance`` 0 to 5%. The traces: the sample trace
sample_data/traces/deepseek-v3-drift.npz, and two drifting traces of the next-window
benchmark (``eplb.workloads.generate_drifting_trace``, 15% noise per window). The
topology is the ADRS evaluator's: 288 slots, 8 groups, 4 nodes, 32 GPUs, in both modes,
default policy. Figures leave out the first rebalance, which leaves vLLM's initial map
(every setting pays it alike); "next window" is each new placement's balancedness on
the summed load of the steps until the next planning point; "window sum" is its balancedness on the planning
window's summed load (what the fresh plan is packed on). Run:

    PYTHONPATH=. python benchmarks/bench_migration.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import eplb
from eplb.replay import tradeoff
from eplb.workloads import generate_drifting_trace

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = eplb.Topology(288, 8, 4, 32)


def cases(quick: bool) -> list[tuple[str, torch.Tensor, int, int]]:
    """(label, trace [T, 58, 256], window, interval)."""
    sample = torch.from_numpy(np.load(ROOT / "sample_data/traces/deepseek-v3-drift.npz")["trace"])
    found = [("sample deepseek-v3-drift, window 8, every 4 steps", sample, 8, 4)]
    if not quick:
        for family in ("zipf", "lognormal"):
            trace = generate_drifting_trace(family, 12, 4, 58, 256, noise=0.15, seed=1)
            found.append((f"drifting {family}, 15% noise, plan on a 4-step window, serve the next", trace, 4, 4))
    return found


def steady(result) -> tuple[float, float, float]:
    """(copies sent per rebalance, mean next-window balancedness, mean balancedness on the planning window's
    sum), first rebalance left out."""
    later = result.rebalances[1:]
    return (statistics.mean(r.copies_sent for r in later),
            statistics.mean(r.balancedness_next for r in later if r.balancedness_next == r.balancedness_next),
            statistics.mean(r.balancedness_after for r in later))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the sample trace only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"policy {eplb.DEFAULT_POLICY!r}, DeepSeek-V3 shape (58 layers x 256 experts) on 288 slots, 8 groups, "
          "4 nodes, 32 GPUs; one torch thread")
    goals = []
    for label, trace, window, interval in cases(args.quick):
        for mode in ("hierarchical", "global"):
            start = time.perf_counter()
            points = tradeoff(trace, TOPOLOGY, window=window, interval=interval, mode=mode)
            seconds = time.perf_counter() - start
            figures = {p.label: steady(p.result) for p in points}
            fresh_copies, fresh_next, fresh_window = figures["fresh plan"]
            print(f"\n{label}, {mode} ({len(points[0].result.rebalances) - 1} rebalances after the first; "
                  f"{seconds:.0f} s for all settings)")
            print(f"  {'setting':<16} {'copies/rebalance':>16} {'fewer':>7} {'next window':>12} {'vs fresh':>9} "
                  f"{'window sum':>11} {'vs fresh':>9}")
            for name, (copies, following, planned) in figures.items():
                print(f"  {name:<16} {copies:>16,.0f} {fresh_copies / max(copies, 1e-9):>6.1f}x "
                      f"{following:>12.4f} {100 * (following / fresh_next - 1):>+8.2f}% "
                      f"{planned:>11.4f} {100 * (planned / fresh_window - 1):>+8.2f}%")
            no_loss, no_loss_next, _ = figures["tolerance 0%"]
            goals.append(f"{label}, {mode}: tolerance 0 (no loss on the next-window estimate) moves "
                         f"{fresh_copies / no_loss:.1f}x fewer copies than a fresh plan at "
                         f"{100 * (no_loss_next / fresh_next - 1):+.2f}% next-window balancedness (goal >= 3x); "
                         f"relabelling alone {fresh_copies / figures['relabel only'][0]:.1f}x")
            within = [(name, fresh_copies / copies) for name, (copies, following, _) in figures.items()
                      if following >= fresh_next * (1 - 0.005)]
            best = max(within, key=lambda item: item[1])
            goals.append(f"{label}, {mode}: within 0.5% of the fresh plan's next-window balancedness, the "
                         f"fewest copies: {best[0]}, {best[1]:.1f}x fewer (goal >= 10x)")
    print("\ngoals")
    for line in goals:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time the what-if sweep: DeepSeek-V3 shape, 0..64 redundant slots in steps of 8, every policy.

Target: under 10 s for the whole sweep. Steps of 8 slots need a GPU count that
divides 256 + 8k, so the full 9-point sweep runs on 8 GPUs (2 nodes x 4, and
1 node x 8); on the explorer's default 4 nodes x 8 GPUs only 0, 32 and 64 fit and
the other points are recorded as invalid at no cost. The time is
``eplb.analysis.sweep`` itself (what the sweep page computes point by point,
before its cache), after one warm-up rebalance pays torch's set-up; wall time and
the process's CPU time are printed (on a shared machine the wall time includes
waiting for a core). Run:

    PYTHONPATH=. python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import time
from collections import defaultdict

import eplb
from eplb.analysis import run_policy, sweep
from eplb.formats import read_load_file
from ui.data import DEFAULT_SAMPLE, SAMPLE_DIR

VALUES = list(range(0, 65, 8))
TOPOLOGIES = {  # name -> base topology on 256 experts (num_replicas is replaced by each point)
    "2 nodes x 4 GPUs (hierarchical)": eplb.Topology(256, 8, 2, 8),
    "1 node x 8 GPUs (hierarchical)": eplb.Topology(256, 8, 1, 8),
    "4 nodes x 8 GPUs (hierarchical)": eplb.Topology(288, 8, 4, 32),
}


def main() -> None:
    weight = read_load_file(SAMPLE_DIR / f"{DEFAULT_SAMPLE}.csv").matrix
    run_policy(weight, next(iter(TOPOLOGIES.values())))  # warm-up
    print(f"what-if sweep, DeepSeek-V3 sample ({weight.shape[0]} layers x {weight.shape[1]} experts), "
          f"redundant slots {VALUES[0]}..{VALUES[-1]} step 8, policies {', '.join(eplb.POLICIES)}")
    for name, base in TOPOLOGIES.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        points = sweep(weight, "redundant", VALUES, base)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        per_policy = defaultdict(float)
        for point in points:
            if point.run is not None:
                per_policy[point.policy] += point.run.runtime_ms / 1e3
        valid = sorted({p.value for p in points if p.run is not None})
        split = ", ".join(f"{policy} {seconds:.2f} s" for policy, seconds in per_policy.items())
        print(f"  {name}: {total:.2f} s wall ({cpu:.2f} s CPU) for {len(valid)} valid points x "
              f"{len(eplb.POLICIES)} policies (target < 10 s)\n    rebalance time by policy: {split}; "
              f"evaluation and bounds: {total - sum(per_policy.values()):.2f} s")


if __name__ == "__main__":
    main()

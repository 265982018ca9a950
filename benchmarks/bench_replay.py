"""Replay of a 1000-step DeepSeek-V3-shaped trace (58 layers x 256 experts): peak memory and time.

Target: peak memory under 3x the trace. Each measurement runs in a fresh process
(peak resident memory is a process-wide high-water mark): the memory the replay adds
on top of the loaded trace, and the time of scoring every step, against the way
``step_balancedness`` used to do it (the placement repeated over every step, loads
in float64). Run:

    PYTHONPATH=. python benchmarks/bench_replay.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

STEPS, LAYERS, EXPERTS = 1000, 58, 256
TOPOLOGY = (288, 8, 4, 32)


def repeated_step_balancedness(trace: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """The former implementation, for comparison: the placement repeated over every step, in float64."""
    from eplb.metrics import gpu_loads

    steps, layers, experts = trace.shape
    loads = gpu_loads(trace.reshape(steps * layers, experts), phy2log.repeat(steps, 1), num_gpus)
    loads = loads.view(steps, layers, num_gpus)
    peak = loads.max(-1).values.sum(-1)
    return torch.where(peak > 0, loads.mean(-1).sum(-1) / peak.clamp(min=1e-300), torch.nan)


def status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM its peak), in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def measure(what: str) -> dict:
    """In this (fresh) process: load the trace, then run ``what``; peak memory above the loaded trace, seconds."""
    import eplb
    from eplb.replay import replay, step_balancedness
    from eplb.workloads import generate_trace

    torch.set_num_threads(1)
    trace = generate_trace("zipf", STEPS, LAYERS, EXPERTS, seed=0, drift=0.02).to(torch.int32)
    topology = eplb.Topology(*TOPOLOGY)
    phy2log = eplb.rebalance_experts(trace[:16], *TOPOLOGY)[0]
    with open("/proc/self/clear_refs", "w") as refs:  # reset the peak: generating the trace peaked higher
        refs.write("5")
    before = status_bytes("VmRSS")
    start = time.perf_counter()
    if what == "replay":
        replay(trace, topology, window=16, interval=200)
    elif what == "steps":
        step_balancedness(trace, phy2log, topology.num_gpus)
    else:
        repeated_step_balancedness(trace, phy2log, topology.num_gpus)
    seconds = time.perf_counter() - start
    peak = status_bytes("VmHWM")
    return {"trace_bytes": trace.numel() * trace.element_size(), "added_bytes": max(peak - before, 0),
            "seconds": seconds}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2])))
        return
    figures = {}
    for what in ("replay", "steps", "repeated"):
        done = subprocess.run([sys.executable, __file__, "--measure", what], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        figures[what] = json.loads(done.stdout)
    mib = 2**20
    trace = figures["replay"]["trace_bytes"]
    print(f"replay of a {STEPS}-step {LAYERS} x {EXPERTS} trace (int32, {trace / mib:.0f} MiB) on "
          f"{TOPOLOGY[3]} GPUs, window 16, interval 200; one torch thread, {os.cpu_count()} cores")
    for what, label in (("replay", "whole replay"), ("steps", "scoring every step, broadcast"),
                        ("repeated", "scoring every step, placement repeated in float64 (former)")):
        f = figures[what]
        print(f"  {label}: peak {(trace + f['added_bytes']) / trace:.2f}x the trace "
              f"({f['added_bytes'] / mib:.0f} MiB on top of it), {f['seconds']:.2f} s")
    print(f"  target: peak under 3x the trace; scoring is "
          f"{figures['repeated']['seconds'] / figures['steps']['seconds']:.1f}x faster and needs "
          f"{figures['repeated']['added_bytes'] / max(figures['steps']['added_bytes'], 1):.1f}x less memory "
          "than the former way")


if __name__ == "__main__":
    main()

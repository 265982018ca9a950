"""Time reruns of the Explore and Compare pages at DeepSeek-V3 shape (58 layers x 256 experts), default policy.

Targets, CPU time of the rerun in this process: Explore after a topology change < 60 ms,
Explore with nothing changed < 25 ms, Compare on a new topology < 150 ms. Each change is a
topology the session has not seen (a cache miss: rebalance, evaluate before and after, build
and serialize every figure), so the figure is what a user waits for after touching a
control. AppTest's own work (widget tree, protobufs) is counted too.

Explore draws the mode table and topology B last, into their places near the top and the
bottom (each needs one more rebalance), so a topology change prints two figures: the CPU
time until everything about A is drawn (the last element sent before the first one into
those two sections; the browser shows each element as it arrives) and until the whole
page, mode table and B included, is drawn (the end of the rerun). After each unchanged rerun it also times
the full garbage collection a server runs after every script run (``runner.postScriptGC``), which AppTest
skips: printed apart, not counted in the rerun. Run:

    PYTHONPATH=. python benchmarks/bench_app_rerun.py
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path

from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest

import eplb

APP = Path(__file__).resolve().parent.parent / "app.py"
# (nodes, GPUs per node, redundant slots) on 256 experts, 8 groups; none repeats the default 4 x 8, 32
CHANGES = [(4, 8, 64), (2, 8, 16), (8, 8, 64), (4, 4, 16), (2, 16, 32), (8, 4, 32), (4, 8, 96), (1, 8, 8)]


UNCHANGED_RERUNS = 15
"""Reruns with nothing changed; each takes some 25 ms, so enough of them for a steady median."""


COMPARE_CHANGES = [(2, 8, 48), (4, 8, 128), (8, 4, 128), (4, 4, 48), (2, 16, 128)]
"""Topologies new to the Compare session (and to the Explore one above, so nothing comes from its cache)."""

DEFERRED = ("Hierarchical or global: balance against network traffic", "What if: topology B beside this one")
"""The headings of Explore's sections drawn last (the mode table, topology B)."""

CPU_TIMES: list[float] = []
A_CPU_TIMES: list[float] = []
SENT: list[tuple[float, tuple[int, ...], str]] = []  # this rerun's deltas: (CPU time sent, delta path, heading)


def _recording(enqueue):
    def record(queue, msg):
        if msg.HasField("delta"):
            heading = msg.delta.new_element.heading.body if msg.delta.HasField("new_element") else ""
            SENT.append((time.process_time(), tuple(msg.metadata.delta_path), heading))
        enqueue(queue, msg)
    return record


ForwardMsgQueue.enqueue = _recording(ForwardMsgQueue.enqueue)
COMPILING: list[float] = []  # CPU ms AppTest spends compiling app.py and the page in each rerun


def _compile_timed(get_bytecode):
    def timed(cache, path):
        start = time.thread_time()
        try:
            return get_bytecode(cache, path)
        finally:
            COMPILING[-1] += (time.thread_time() - start) * 1e3
    return timed


# AppTest gives every run a fresh ScriptCache, so it compiles (and rewrites for Streamlit's "magic") app.py and
# the page on every rerun; a server compiles each once. Counted in the figures, and printed apart.
ScriptCache.get_bytecode = _compile_timed(ScriptCache.get_bytecode)


def a_drawn(start: float, end: float) -> float:
    """CPU ms from the rerun's start until the last delta sent before the first one into a DEFERRED section
    after the Downloads heading; the whole rerun when no section is filled late (Compare, or Explore before
    it drew them last)."""
    sections = {path[:-1] for _, path, heading in SENT if heading in DEFERRED}
    downloads = next((i for i, (_, _, heading) in enumerate(SENT) if heading == "Downloads"), len(SENT))
    late = next((i for i in range(downloads + 1, len(SENT))
                 if any(SENT[i][1][:len(section)] == section for section in sections)), None)
    return ((SENT[late - 1][0] if late else end) - start) * 1e3


def timed_run(at: AppTest) -> float:
    """Wall time of one rerun in ms; its CPU time (this process, all threads) goes to CPU_TIMES, the CPU time
    until A is drawn (``a_drawn``) to A_CPU_TIMES."""
    SENT.clear()
    COMPILING.append(0.0)
    start, cpu = time.perf_counter(), time.process_time()
    at.run()
    elapsed = (time.perf_counter() - start) * 1e3
    end = time.process_time()
    CPU_TIMES.append((end - cpu) * 1e3)
    A_CPU_TIMES.append(a_drawn(cpu, end))
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return elapsed


def set_topology(at: AppTest, nodes: int, gpus_per_node: int, redundant: int) -> None:
    """Move the three topology sliders at once, as a shared link would (each slider offers only values that fit
    the others' current values, so moving them one by one would need a rerun in between)."""
    for name, value in (("nodes", nodes), ("gpus_per_node", gpus_per_node), ("redundant", redundant)):
        at.session_state[f"eplb_{name}"] = value


def main() -> None:
    at = AppTest.from_file(str(APP), default_timeout=120)
    cold = timed_run(at)
    timed_run(at)  # warm the caches of the default setting
    misses, rebalance = [], []
    CPU_TIMES.clear()
    A_CPU_TIMES.clear()
    for nodes, gpus_per_node, redundant in CHANGES:
        set_topology(at, nodes, gpus_per_node, redundant)
        misses.append(timed_run(at))
        rebalance.append(float(next(m.value for m in at.metric if m.label == "Rebalance runtime").split()[0]))
    miss_cpu, miss_a_cpu = list(CPU_TIMES), list(A_CPU_TIMES)
    CPU_TIMES.clear()
    COMPILING.clear()
    hits, collecting = [], []
    for _ in range(UNCHANGED_RERUNS):
        hits.append(timed_run(at))
        start = time.process_time()
        gc.collect(2)  # what a server runs after every script run (runner.postScriptGC); AppTest does not
        collecting.append((time.process_time() - start) * 1e3)
    hit_cpu, hit_compiling = list(CPU_TIMES), list(COMPILING)
    compare = AppTest.from_file(str(APP), default_timeout=120)
    compare.run()
    compare.switch_page("pages/compare.py")
    timed_run(compare)  # the default topology on Compare, cold
    CPU_TIMES.clear()
    compared = []
    for nodes, gpus_per_node, redundant in COMPARE_CHANGES:
        set_topology(compare, nodes, gpus_per_node, redundant)
        compared.append(timed_run(compare))
    compare_cpu = list(CPU_TIMES)
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall times grow when other work shares the CPU)")
    print(f"main page rerun, DeepSeek-V3 sample (58 layers x 256 experts), policy {eplb.DEFAULT_POLICY!r}")
    print(f"  first run (caches empty): {cold:.0f} ms")
    print(f"  after a topology change ({len(misses)} new topologies), CPU time median: A's results drawn "
          f"{statistics.median(miss_a_cpu):.0f} ms (target < 60 ms), the whole page with the mode table and "
          f"topology B {statistics.median(miss_cpu):.0f} ms; wall median {statistics.median(misses):.0f} ms, "
          f"max {max(misses):.0f} ms")
    print(f"    of which the rebalance itself: median {statistics.median(rebalance):.1f} ms")
    print(f"  rerun with nothing changed ({len(hit_cpu)} reruns, cache hit): CPU time median "
          f"{statistics.median(hit_cpu):.0f} ms (target < 25 ms); wall median {statistics.median(hits):.0f} ms")
    print(f"    of which AppTest compiling app.py and the page anew (a server compiles them once): median "
          f"{statistics.median(hit_compiling):.1f} ms")
    print(f"    then a server's full garbage collection after the rerun (runner.postScriptGC; AppTest skips it, not "
          f"counted above): median {statistics.median(collecting):.1f} ms")
    print(f"compare page, every policy in every mode, {len(compared)} new topologies: CPU time median "
          f"{statistics.median(compare_cpu):.0f} ms (target < 150 ms); wall median "
          f"{statistics.median(compared):.0f} ms")


if __name__ == "__main__":
    main()

"""The ``deepseek`` policy against DeepSeek's published ``eplb.py``: differences and speed.

Runs both on thousands of seeded cases (random loads, small integers with many ties,
zero rows, all-zero loads, float64, float16 and integer inputs, sums at the edge of
float32's precision, loads beyond its range, DeepSeek-V3-sized token counts) in both modes, and counts the cases where
``phy2log``, ``logcnt`` or the set of slots of any expert differ (``log2phy``'s
column order is the project's: copy k is an expert's k-th lowest slot, where the
published map lists copies in the order they were made). Then times both,
single-threaded, on DeepSeek-V3 shapes: median process CPU time of a few calls each,
taking turns (on a shared machine wall time would also count waits for a core).

The published file is read from a local copy (``--peers DIR``, default
``$EPLB_PEERS``, else ``peers/`` beside the project root, holding
``deepseek-eplb/eplb.py``); without it the script says so and exits.

Usage: PYTHONPATH=. python benchmarks/bench_deepseek_reference.py [--cases N] [--peers DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eplb  # noqa: E402
from eplb.workloads import generate_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("random", "integer", "zero_rows", "all_zero", "float64", "int64", "float16", "float32_edge", "huge",
         "deepseek_v3")
SPEED_CASES = (  # (label, layers, experts, replicas, groups, nodes, gpus, mode)
    ("DeepSeek-V3 288 slots 8g/4n/32 GPUs", 58, 256, 288, 8, 4, 32, "hierarchical"),
    ("DeepSeek-V3 288 slots 8g/4n/32 GPUs", 58, 256, 288, 8, 4, 32, "global"),
    ("DeepSeek-V3 320 slots 8g/8n/64 GPUs", 58, 256, 320, 8, 8, 64, "global"),
    ("Qwen3-235B 144 slots 1n/16 GPUs", 94, 128, 144, 1, 1, 16, "global"),
    ("one layer, 288 slots 32 GPUs", 1, 256, 288, 8, 4, 32, "global"),
)


def default_peers() -> Path:
    """Where the peers' code is read from: $EPLB_PEERS, else peers/ beside the project root."""
    return Path(os.environ.get("EPLB_PEERS") or ROOT.parent / "peers")


def load_published(peers: Path):
    """DeepSeek's eplb module from peers/deepseek-eplb/eplb.py, or None when absent."""
    path = peers / "deepseek-eplb" / "eplb.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("deepseek_published_eplb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_case(index: int, kind: str):
    """(weight, num_replicas, num_groups, num_nodes, num_gpus, mode), seeded by index."""
    gen = torch.Generator().manual_seed(index)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=gen))

    if kind == "deepseek_v3":
        weight = generate_load(("zipf", "lognormal", "hot", "zero", "uniform")[index % 5], 58, 256, seed=index)
        nodes, gpus = ((4, 32), (8, 64), (1, 8), (2, 16))[draw(0, 3)]
        replicas = {32: 288, 64: 320, 8: 264, 16: 272}[gpus]
        return weight, replicas, 8, nodes, gpus, ("auto", "global")[draw(0, 1)]
    num_nodes, gpus_per_node = draw(1, 4), draw(1, 6)
    num_gpus = num_nodes * gpus_per_node
    group_size, groups_per_node = draw(1, 6), draw(1, 4)
    num_groups = groups_per_node * num_nodes if draw(0, 3) else draw(1, 6)  # some fit no node count: auto is global
    num_experts = num_groups * group_size
    slots_per_gpu = -(-num_experts // num_gpus) + draw(0, 4)
    shape = (draw(1, 5), num_experts)
    if kind == "random":
        weight = torch.rand(shape, generator=gen) * 100
    elif kind == "integer":
        weight = torch.randint(0, draw(1, 6), shape, generator=gen).float()
    elif kind == "zero_rows":
        weight = torch.randint(0, 40, shape, generator=gen).float()
        weight[torch.rand(shape[0], generator=gen) < 0.5] = 0
    elif kind == "all_zero":
        weight = torch.zeros(shape)
    elif kind == "float64":
        weight = 1 + torch.rand(shape, generator=gen, dtype=torch.float64) * 1e-8 * draw(0, 3)
    elif kind == "int64":
        weight = torch.randint(0, 2**25, shape, generator=gen) * draw(0, 1) + torch.randint(0, 3, shape, generator=gen)
    elif kind == "float16":
        weight = (torch.rand(shape, generator=gen) * 8).half()
    elif kind == "float32_edge":  # loads near 2**24, where float32 sums round
        weight = 2.0**24 + torch.randint(-4, 5, shape, generator=gen).float() * draw(1, 4)
    else:  # huge: float64 loads near float32's largest, some beyond it (infinite in float32)
        weight = torch.rand(shape, generator=gen, dtype=torch.float64) * 10.0 ** draw(37, 39)
    return weight, num_gpus * slots_per_gpu, num_groups, num_nodes, num_gpus, ("auto", "global")[draw(0, 1)]


def published_run(module, weight, replicas, groups, nodes, gpus, mode):
    """The published entry point; global mode is its own call with one group on one node."""
    if mode == "global":
        weight = weight.float().cpu()
        phy2log, phyrank, logcnt = module.rebalance_experts_hierarchical(weight, replicas, 1, 1, gpus)
        return phy2log, logcnt
    phy2log, _, logcnt = module.rebalance_experts(weight, replicas, groups, nodes, gpus)
    return phy2log, logcnt


def same_result(module, case) -> bool:
    weight, replicas, groups, nodes, gpus, mode = case
    phy2log, log2phy, logcnt = eplb.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                                      policy="deepseek", mode=mode)
    ref_phy2log, ref_logcnt = published_run(module, weight, replicas, groups, nodes, gpus, mode)
    if not (torch.equal(phy2log, ref_phy2log) and torch.equal(logcnt, ref_logcnt)):
        return False
    # The slots of each expert: the project's log2phy against the published phy2log.
    used = log2phy >= 0
    layer, expert, _ = used.nonzero(as_tuple=True)
    return torch.equal(ref_phy2log[layer, log2phy[used]], expert)


def compare(module, cases: int) -> int:
    per_kind = max(1, cases // len(KINDS))
    total_differ = 0
    print(f"Differences from the published eplb.py ({per_kind} cases per kind, both modes):")
    for kind in KINDS:
        count = per_kind if kind != "deepseek_v3" else max(1, per_kind // 10)
        differ = sum(not same_result(module, random_case(i, kind)) for i in range(count))
        total_differ += differ
        print(f"  {kind:<13} {differ} of {count}")
    print(f"  total: {total_differ} differences")
    return total_differ


def speed(module, repeats: int) -> None:
    print(f"\nSpeed, median CPU time of {repeats} calls each (ms), taking turns:")
    print(f"  {'shape':<38} {'mode':<13} {'published':>10} {'deepseek':>9} {'published / deepseek':>21}")
    for label, layers, experts, replicas, groups, nodes, gpus, mode in SPEED_CASES:
        weight = generate_load("lognormal", layers, experts, seed=0)
        calls = {
            "published": lambda: published_run(module, weight, replicas, groups, nodes, gpus, mode),
            "deepseek": lambda: eplb.rebalance_experts(weight, replicas, groups, nodes, gpus,
                                                       policy="deepseek", mode=mode),
        }
        times = {name: [] for name in calls}
        for fn in calls.values():
            fn()
        for _ in range(repeats):
            for name, fn in calls.items():
                start = time.process_time()
                fn()
                times[name].append((time.process_time() - start) * 1e3)
        published, ours = (statistics.median(times[name]) for name in calls)
        print(f"  {label:<38} {mode:<13} {published:>10.2f} {ours:>9.2f} {published / ours:>20.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=str(default_peers()), help="folder holding deepseek-eplb/eplb.py")
    parser.add_argument("--cases", type=int, default=4000, help="random cases in all (default 4000; 0: speed only)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per speed case (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    module = load_published(Path(args.peers))
    if module is None:
        print(f"skipped: no deepseek-eplb/eplb.py under {args.peers} (pass --peers DIR or set EPLB_PEERS)")
        return 0
    differ = compare(module, args.cases) if args.cases > 0 else 0
    if args.repeats > 0:
        speed(module, args.repeats)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

"""How the policies and the bound scale: time per call along each axis of the problem, cliffs flagged.

Around a DeepSeek-V3-sized base (58 layers x 256 experts, 288 slots on 32 GPUs,
global mode) one quantity changes at a time:

* layers: 1 .. 1000 (288 slots, 32 GPUs);
* experts: 8 .. 1024 (58 layers, 32 GPUs, one redundant slot per GPU: P = 32 * (ceil(E / 32) + 1));
* GPUs: 8 .. 320 (58 x 256, the fewest slots of at least 288 that the GPUs divide: P = G * ceil(288 / G));
* slots per GPU: 1 .. 17 (58 x 256, G = ceil(288 / S) GPUs of S slots).

Each point times ``rebalance_experts`` with the ``joint``, ``deepseek`` and
``zigzag`` policies (log2phy included), ``eplb.bounds.lower_bound`` and, alone,
``log2phy_from_phy2log`` on zigzag's placement, on seeded log-normal and hot
loads; torch runs on one thread and each figure is the median of a few calls
after one untimed call, in CPU time of the process by default (on a shared
machine wall time also counts the time spent waiting for a core; ``--clock wall``
measures that instead).

Work measure: layers x slots x log2(slots), the size of the [layers, slots]
placement times the log factor of sorting its rows; each point also prints its
time per unit of work (ns). A point is flagged as a cliff when it costs more than
3x a neighbour on its axis beyond what the growth in work explains:
time / neighbour's time > 3 x max(1, work / neighbour's work). Points under 1 ms
are never flagged (per-call overhead and timer noise dominate there).

Usage:
    PYTHONPATH=. python benchmarks/bench_scaling.py [--quick] [--axes layers,gpus] [--loads hot]
        [--functions joint,bound] [--repeats N] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eplb.bounds import lower_bound  # noqa: E402
from eplb.rebalance import log2phy_from_phy2log, rebalance_experts  # noqa: E402
from eplb.workloads import generate_load  # noqa: E402

BASE_LAYERS, BASE_EXPERTS, BASE_SLOTS, BASE_GPUS = 58, 256, 288, 32
LOADS = ("lognormal", "hot")
FUNCTIONS = ("joint", "deepseek", "zigzag", "bound", "log2phy")
CLIFF = 3.0
FLOOR_MS = 1.0
REPRO = (("gpus", 256, "hot"), ("gpus", 72, "lognormal"))
"""The slow shapes of the speed issue, (axis, value, load): 512 slots on 256 GPUs under a hot load and
72 GPUs x 4 slots under a log-normal one (58 x 256); ``joint`` should place each in under REPRO_MS."""
REPRO_MS = 30.0


@dataclass(frozen=True)
class Point:
    """One problem size: loads [layers, experts], num_replicas slots on num_gpus GPUs (global mode)."""

    layers: int
    experts: int
    slots: int
    gpus: int

    @property
    def work(self) -> float:
        return self.layers * self.slots * math.log2(max(self.slots, 2))

    def describe(self) -> str:
        return f"{self.layers}x{self.experts}, {self.slots} slots / {self.gpus} GPUs ({self.slots // self.gpus}/GPU)"


def axes(quick: bool) -> dict[str, list[tuple[int, Point]]]:
    """Axis name -> [(axis value, point)], in increasing axis value."""
    layers = [1, 4, 16, 58, 250, 1000] if not quick else [1, 58, 1000]
    experts = [8, 32, 64, 128, 256, 512, 1024] if not quick else [8, 256, 1024]
    gpus = [8, 16, 32, 64, 72, 128, 144, 256, 288, 320] if not quick else [8, 72, 256, 320]
    slots = [1, 2, 3, 4, 6, 9, 12, 17] if not quick else [1, 2, 4, 9, 17]
    return {
        "layers": [(n, Point(n, BASE_EXPERTS, BASE_SLOTS, BASE_GPUS)) for n in layers],
        "experts": [(e, Point(BASE_LAYERS, e, BASE_GPUS * (math.ceil(e / BASE_GPUS) + 1), BASE_GPUS))
                    for e in experts],
        "gpus": [(g, Point(BASE_LAYERS, BASE_EXPERTS, g * math.ceil(BASE_SLOTS / g), g)) for g in gpus],
        "slots_per_gpu": [(s, Point(BASE_LAYERS, BASE_EXPERTS, s * math.ceil(BASE_SLOTS / s),
                                    math.ceil(BASE_SLOTS / s))) for s in slots],
    }


def calls(point: Point, weight: torch.Tensor) -> dict[str, object]:
    """Function name -> a call with no arguments, for one point and load."""
    args = (weight, point.slots, 1, 1, point.gpus)

    def policy(name):
        return lambda: rebalance_experts(*args, policy=name, mode="global")

    phy2log = rebalance_experts(*args, policy="zigzag", mode="global")[0]
    return {
        "joint": policy("joint"),
        "deepseek": policy("deepseek"),
        "zigzag": policy("zigzag"),
        "bound": lambda: lower_bound(*args, mode="global"),
        "log2phy": lambda: log2phy_from_phy2log(phy2log, point.experts),
    }


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def time_point(point: Point, family: str, functions: list[str], repeats: int, clock=time.process_time
               ) -> dict[str, float]:
    """Median ms per function; the functions take turns, after one untimed call each."""
    weight = generate_load(family, point.layers, point.experts, seed=0)
    chosen = {name: fn for name, fn in calls(point, weight).items() if name in functions}
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for fn in chosen.values():
        fn()
    for _ in range(repeats):
        for name, fn in chosen.items():
            start = clock()
            fn()
            times[name].append((clock() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def excess(ms: float, work: float, other_ms: float, other_work: float) -> float:
    """How many times more a point costs than its neighbour beyond the growth in work."""
    return ms / other_ms / max(1.0, work / other_work) if other_ms > 0 else 0.0


def cliffs(points: list[Point], ms: list[float]) -> list[float]:
    """Per point, the larger excess over its two neighbours (0 where it is under FLOOR_MS)."""
    worst = []
    for i, (point, t) in enumerate(zip(points, ms)):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(points)]
        e = max((excess(t, point.work, ms[j], points[j].work) for j in neighbours), default=0.0)
        worst.append(e if t >= FLOOR_MS else 0.0)
    return worst


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and one timed call each")
    parser.add_argument("--axes", default=None, help="comma-separated subset of layers,experts,gpus,slots_per_gpu")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"comma-separated families ({','.join(LOADS)})")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help=f"comma-separated {','.join(FUNCTIONS)}")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu", help="process CPU time (default) or wall time")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per point (default 3, 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    all_axes = axes(args.quick)
    chosen_axes = args.axes.split(",") if args.axes else list(all_axes)
    functions = [f for f in args.functions.split(",") if f]
    for name in chosen_axes:
        if name not in all_axes:
            raise SystemExit(f"unknown axis {name!r}: choose from {', '.join(all_axes)}")
    for name in functions:
        if name not in FUNCTIONS:
            raise SystemExit(f"unknown function {name!r}: choose from {', '.join(FUNCTIONS)}")
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"Scaling: global mode, torch threads {torch.get_num_threads()}, {args.clock} time, "
          f"median of {repeats} call(s) after one untimed; work = layers x slots x log2(slots); "
          f"cliff = more than {CLIFF:g}x a neighbour beyond the growth in work "
          f"(points under {FLOOR_MS:g} ms not flagged)")
    flagged = []
    seen: dict[tuple[str, int, str], dict[str, float]] = {}
    started = time.perf_counter()
    for axis in chosen_axes:
        values = [v for v, _ in all_axes[axis]]
        points = [p for _, p in all_axes[axis]]
        for family in args.loads.split(","):
            measured = [time_point(p, family, functions, repeats, CLOCKS[args.clock]) for p in points]
            seen.update({(axis, value, family): m for value, m in zip(values, measured)})
            per_function = {f: cliffs(points, [m[f] for m in measured]) for f in functions}
            print(f"\naxis {axis}, {family} load")
            header = f"  {axis:>13}  {'shape':<44} {'work':>9}"
            for f in functions:
                header += f"  {f + ' ms':>12} {'ns/work':>7}"
            print(header)
            for i, (value, point, m) in enumerate(zip(values, points, measured)):
                line = f"  {value:>13}  {point.describe():<44} {point.work:>9.3g}"
                for f in functions:
                    mark = "!" if per_function[f][i] > CLIFF else " "
                    line += f"  {m[f]:>11.2f}{mark} {m[f] * 1e6 / point.work:>7.1f}"
                    if mark == "!":
                        flagged.append(f"{f} at {axis}={value} ({point.describe()}, {family}): {m[f]:.2f} ms, "
                                       f"{per_function[f][i]:.1f}x a neighbour beyond the work")
                print(line)
    print(f"\ncliffs (marked ! above): {len(flagged)}")
    for line in flagged:
        print(f"  {line}")
    for axis, value, family in REPRO:
        if (axis, value, family) in seen and "joint" in functions:
            point = dict(all_axes[axis])[value]
            print(f"issue shape {point.describe()}, {family}: joint {seen[axis, value, family]['joint']:.2f} ms "
                  f"(goal: under {REPRO_MS:g} ms)")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

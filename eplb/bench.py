"""The policy benchmark: balancedness, the limit it is measured against, and runtime.

Every policy in ``eplb.POLICIES`` places seeded loads of every workload family on
model-shaped topologies, in global mode and (where groups divide over several
nodes) hierarchical mode. Per case the benchmark reports vLLM's balancedness, the
limit's balancedness (the proven lower bound of ``eplb.bounds``, or the exact
optimum where two slots per GPU make it cheap to enumerate), the gap between them
and the median runtime of ``rebalance_experts``. A summary checks the default
policy against the goals of the policy issue, and the seed's zigzag is timed
against the project's ``"zigzag"`` in the same run.

The next-window section judges policies the way a serving engine meets them (and
as the ADRS EPLB evaluator scores them): on drifting traces
(``eplb.workloads.generate_drifting_trace``) each policy plans on window i (handed
the window's per-step loads [steps, layers, experts]) and its plan is scored with
vLLM's balancedness on window i+1's summed load, beside the in-sample figure (the
same plan scored on window i).

Run ``python benchmarks/bench_policies.py --help`` or ``python -m eplb bench --help``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .bounds import bound_balancedness, exact_two_slot_optimum, lower_bound
from .metrics import balancedness, duplicate_gpus, gpu_loads
from .policies import DEFAULT_POLICY, POLICIES
from .presets import PRESETS
from .rebalance import Topology, log2phy_from_phy2log, rebalance_experts
from .workloads import FAMILIES, generate_drifting_trace, generate_load

SEED_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "seed" / "zigzag_seed.py"
FLASHLB_TOY = [[600, 560, 120, 120, 20, 10, 10, 10]]
"""FlashLB's toy layer (vllm-ascend PR 3042): 16 slots on 8 GPUs, optimum max GPU load 196.67."""


@dataclass(frozen=True)
class Shape:
    """A model shape on a topology: loads are [num_layers, num_experts]."""

    label: str
    num_layers: int
    num_experts: int
    topology: Topology

    @property
    def modes(self) -> tuple[str, ...]:
        """Global always; hierarchical when its groups divide over more than one node."""
        t = self.topology
        hierarchical = t.num_nodes > 1 and t.num_groups % t.num_nodes == 0
        return ("global", "hierarchical") if hierarchical else ("global",)

    def describe(self) -> str:
        t = self.topology
        return (f"{self.label} {self.num_layers}x{self.num_experts}, {t.num_replicas} slots, "
                f"{t.num_groups}g/{t.num_nodes}n/{t.num_gpus} GPUs")


def _shape(label: str, layers: int, experts: int, replicas: int, groups: int, nodes: int, gpus: int) -> Shape:
    return Shape(label, layers, experts, Topology(replicas, groups, nodes, gpus))


SPEED_SHAPE = _shape("DeepSeek-V3", 58, 256, 288, 8, 4, 32)
"""The case the speed goals are stated on (issue 2 and 4)."""

STANDARD = (
    SPEED_SHAPE,
    _shape("DeepSeek-V3", 58, 256, 320, 8, 8, 64),
    _shape("Qwen3-235B", 94, 128, 144, 1, 1, 16),
    _shape("Qwen3-235B", 94, 128, 192, 1, 2, 32),
    _shape("Mixtral 8x7B", 32, 8, 16, 1, 1, 8),
)
QUICK = (
    _shape("README toy", 2, 12, 16, 4, 2, 8),
    _shape("small", 4, 64, 80, 8, 4, 16),
    _shape("Mixtral-like", 4, 8, 16, 1, 1, 8),
)


def preset_shapes() -> tuple[Shape, ...]:
    """One topology per preset in ``eplb.presets``: 8 GPUs (2 slots each when experts are few),
    else 32 GPUs on 4 nodes with one redundant slot per GPU."""
    shapes = []
    for p in PRESETS.values():
        if p.num_experts <= 12:
            gpus, nodes = 8, (2 if p.num_groups % 2 == 0 and p.num_groups > 1 else 1)
            replicas = 16
        else:
            gpus, nodes = 32, 4
            replicas = -(-p.num_experts // gpus) * gpus + gpus
        shapes.append(_shape(p.name, p.num_layers, p.num_experts, replicas, p.num_groups, nodes, gpus))
    return tuple(shapes)


SUITES = {"standard": STANDARD, "quick": QUICK, "presets": None}
SECTIONS = ("in-sample", "next-window", "speed")


def limit_of(weight: torch.Tensor, topology: Topology, mode: str) -> tuple[torch.Tensor, str]:
    """The best max GPU load any placement could reach, per layer [L], and what it is.

    The proven lower bound, raised to the exact optimum where global mode has two slots
    per GPU and few experts (``exact_two_slot_optimum`` returns None otherwise).
    """
    t = topology
    bound = lower_bound(weight, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus, mode)
    if mode == "global" and t.slots_per_gpu == 2:
        exact = exact_two_slot_optimum(weight, t.num_gpus)
        if exact is not None:
            return torch.maximum(bound, exact), "exact optimum"
    return bound, "bound"


WARMUP_CALLS = 2
"""Untimed calls before timing: the first calls of a shape fill caches and load code paths."""


def _median_ms(fn, repeats: int) -> tuple[object, float]:
    """(fn's result, median milliseconds of ``repeats`` calls after ``WARMUP_CALLS`` untimed ones)."""
    for _ in range(WARMUP_CALLS):
        result = fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return result, statistics.median(times)


@dataclass(frozen=True)
class Row:
    """One policy on one case."""

    shape: str
    mode: str
    family: str
    policy: str
    balancedness: float
    limit_balancedness: float
    limit_kind: str
    runtime_ms: float
    max_load: float  # summed over layers

    @property
    def gap(self) -> float:
        return self.limit_balancedness - self.balancedness


def run_case(shape: Shape, mode: str, family: str, policies: list[str], repeats: int, seed: int = 0) -> list[Row]:
    """Every policy on one shape, mode and workload family (same seeded load)."""
    t = shape.topology
    weight = generate_load(family, shape.num_layers, shape.num_experts, seed=seed)
    return _rows(shape.describe(), weight, t, mode, family, policies, repeats)


def _rows(label: str, weight, t: Topology, mode: str, family: str, policies: list[str], repeats: int) -> list[Row]:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    limit, kind = limit_of(weight, t, mode)
    limit_bal = bound_balancedness(weight, limit, t.num_gpus)
    rows = []
    for name in policies:
        def place(name=name):
            return rebalance_experts(weight, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus,
                                     policy=name, mode=mode)[0]
        phy2log, ms = _median_ms(place, repeats)
        loads = gpu_loads(weight, phy2log, t.num_gpus)
        rows.append(Row(label, mode, family, name, balancedness(loads) or 1.0, limit_bal or 1.0, kind, ms,
                        float(loads.max(dim=-1).values.sum())))
    return rows


def run_suite(shapes, policies: list[str], repeats: int, families=FAMILIES) -> list[Row]:
    rows = []
    for shape in shapes:
        for mode in shape.modes:
            for family in families:
                rows += run_case(shape, mode, family, policies, repeats)
    return rows


def flashlb_rows(policies: list[str], repeats: int) -> list[Row]:
    """FlashLB's toy layer, global mode: 16 slots on 8 GPUs."""
    return _rows("FlashLB toy 1x8, 16 slots, 1g/1n/8 GPUs", FLASHLB_TOY, Topology(16, 1, 1, 8), "global",
                 "toy", policies, repeats)


def load_seed():
    """The seed's module, loaded by path; None when the file is not beside the repository."""
    from .peers import load_module

    return load_module(SEED_PATH, "zigzag_seed") if SEED_PATH.exists() else None


def speed_report(policies: list[str], repeats: int, families=FAMILIES) -> list[str]:
    """Median runtimes on the DeepSeek-V3 288-slot, 32-GPU shape for every load, the seed
    included (uniform load), one run, the policies timed in turn; ratios are deepseek's
    time over each policy's."""
    t = SPEED_SHAPE.topology

    def timed(place, weight) -> float:
        return _median_ms(lambda: place(weight, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus), repeats)[1]

    def interleaved(calls: dict[str, object], weight) -> dict[str, float]:
        """Median ms per call, the policies taking turns so that a slow spell of a shared
        machine hits every policy alike. In each turn a policy runs once untimed, then
        once timed: the timed call finds the caches warm, as in a run of calls, rather
        than full of the previous policy's data."""
        args = (weight, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus)
        for _ in range(WARMUP_CALLS):
            for place in calls.values():
                place(*args)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(max(1, repeats)):
            for name, place in calls.items():
                place(*args)
                start = time.perf_counter()
                place(*args)
                times[name].append((time.perf_counter() - start) * 1e3)
        return {name: statistics.median(values) for name, values in times.items()}

    others = [name for name in policies if name != "deepseek"]
    head = ["load", "mode"] + [f"{name} ms" for name in policies]
    if "deepseek" in policies:
        head += [f"deepseek / {name}" for name in others]
    table = [head]
    ms: dict[tuple[str, str, str], float] = {}
    for family in families:
        weight = generate_load(family, SPEED_SHAPE.num_layers, SPEED_SHAPE.num_experts, seed=0)
        for mode in ("hierarchical", "global"):
            medians = interleaved({name: partial(rebalance_experts, policy=name, mode=mode) for name in policies},
                                  weight)
            ms.update({(family, mode, name): value for name, value in medians.items()})
            line = [family, mode] + [f"{ms[family, mode, name]:.2f}" for name in policies]
            if "deepseek" in policies:
                line += [f"{ms[family, mode, 'deepseek'] / ms[family, mode, name]:.1f}x" for name in others]
            table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = [f"Runtime on {SPEED_SHAPE.describe()}, median of {repeats} (ms):"]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    seed = load_seed()
    if seed is None:
        lines.append(f"  seed: skipped, {SEED_PATH} not found")
    elif "zigzag" in policies:
        uniform = generate_load("uniform", SPEED_SHAPE.num_layers, SPEED_SHAPE.num_experts, seed=0)
        ratio = timed(partial(rebalance_experts, policy="zigzag", mode="hierarchical"), uniform) / timed(
            seed.rebalance_experts, uniform)
        lines.append(f"  zigzag / seed zigzag (hierarchical, uniform load, timed again): {ratio:.2f}x "
                     "(goal: at most 1.5x)")
    return lines


def goal_report(rows: list[Row], toy: list[Row], policy: str) -> list[str]:
    """The policy issue's goals for ``policy`` against "deepseek", from one run's rows."""
    mine = {(r.shape, r.mode, r.family): r for r in rows if r.policy == policy}
    ref = {(r.shape, r.mode, r.family): r for r in rows if r.policy == "deepseek"}
    if not mine or not ref or policy == "deepseek":
        return []
    worst = min(mine, key=lambda k: mine[k].balancedness - ref[k].balancedness)
    lines = [f"Goals for {policy!r} (vs 'deepseek'):",
             f"  worst difference to deepseek: {mine[worst].balancedness - ref[worst].balancedness:+.4f} "
             f"({' / '.join(worst)}; goal: never below)"]
    glob = [k for k in mine if k[1] == "global"]
    if glob:
        close = [k for k in glob if mine[k].balancedness >= 0.99 * mine[k].limit_balancedness]
        lines.append(f"  global cases within 1% of the limit: {len(close)}/{len(glob)} "
                     f"({100 * len(close) / len(glob):.0f}%; goal: at least 90%)")
        lines += [f"    missed: {' / '.join(k)}: {mine[k].balancedness:.4f} vs limit {mine[k].limit_balancedness:.4f}"
                  for k in glob if k not in close]
    hier = [k for k in mine if k[1] == "hierarchical"]
    if hier:
        gap_ref = statistics.mean(ref[k].gap for k in hier)
        gap_mine = statistics.mean(mine[k].gap for k in hier)
        closed = 1 - gap_mine / gap_ref if gap_ref > 0 else float("nan")
        lines.append(f"  hierarchical mean gap to the bound: deepseek {gap_ref:.4f}, {policy} {gap_mine:.4f} "
                     f"(closed {100 * closed:.0f}%; goal: at least 50%)")
    for r in toy:
        if r.policy == policy:
            lines.append(f"  FlashLB toy max GPU load: {r.max_load:.2f} (goal: 196.67)")
    return lines


def markdown_table(rows: list[Row], policies: list[str], gap_policy: str) -> str:
    """One line per case: balancedness per policy, the limit, gap of gap_policy, runtimes."""
    cases: dict[tuple, dict[str, Row]] = {}
    for r in rows:
        cases.setdefault((r.shape, r.mode, r.family), {})[r.policy] = r
    head = (["shape", "mode", "load"] + policies + ["limit", f"gap ({gap_policy})"]
            + [f"{p} ms" for p in policies])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (shape, mode, family), by_policy in cases.items():
        first = next(iter(by_policy.values()))
        limit = f"{first.limit_balancedness:.4f}" + (" (exact)" if first.limit_kind != "bound" else "")
        gap = f"{by_policy[gap_policy].gap:.4f}" if gap_policy in by_policy else "-"
        cells = ([shape, mode, family] + [f"{by_policy[p].balancedness:.4f}" for p in policies]
                 + [limit, gap] + [f"{by_policy[p].runtime_ms:.2f}" for p in policies])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plain_table(rows: list[Row]) -> str:
    lines = [f"{'case':<70} {'policy':<10} {'balanced':>8} {'limit':>8} {'gap':>7} {'ms':>8}"]
    for r in rows:
        case = f"{r.shape} / {r.mode} / {r.family}"
        lines.append(f"{case:<70} {r.policy:<10} {r.balancedness:8.4f} {r.limit_balancedness:8.4f} "
                     f"{r.gap:7.4f} {r.runtime_ms:8.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- next window

NOISE_LEVELS = (0.05, 0.15, 0.30)
"""Per-window noise of the drifting traces: an expert's window load strays about this much."""
NUM_WINDOWS = 5
"""Windows per drifting trace: 4 plans, each scored on the window after it."""
STEPS_PER_WINDOW = 20
"""Logging steps per window (the ADRS evaluator sums 100; 20 keep the benchmark short)."""

ADRS_SHAPE = _shape("DeepSeek-V2-Lite-like (ADRS)", 26, 64, 288, 8, 4, 32)
"""The ADRS EPLB evaluator's topology (288 slots, 8 groups, 4 nodes, 32 GPUs) on a 64-expert model."""

DRIFT = (
    SPEED_SHAPE,
    _shape("Qwen3-235B", 94, 128, 144, 1, 1, 16),
    _shape("Kimi K2", 60, 384, 416, 1, 4, 32),
    _shape("gpt-oss-120b", 36, 128, 160, 1, 4, 32),
    ADRS_SHAPE,
)
DRIFT_QUICK = (
    _shape("small", 4, 64, 80, 8, 4, 16),
    _shape("Mixtral-like", 4, 8, 16, 1, 1, 8),
)


@dataclass(frozen=True)
class Planner:
    """Something that plans a placement from a window: ``plan(window [S, L, E], topology, mode) -> phy2log [L, P]``.

    ``modes``: the modes it plans in (a global-only program is listed under global only).
    """

    name: str
    plan: object
    modes: tuple[str, ...] = ("global", "hierarchical")


def policy_planner(name: str) -> Planner:
    """One of ``eplb.POLICIES`` through ``rebalance_experts``, handed the whole window."""
    def plan(window, t: Topology, mode: str) -> torch.Tensor:
        return rebalance_experts(window, t.num_replicas, t.num_groups, t.num_nodes, t.num_gpus,
                                 policy=name, mode=mode)[0]
    return Planner(name, plan)


@dataclass(frozen=True)
class NextWindowRow:
    """One planner on one drifting trace: means over its plans (window i planned, windows i and i+1 scored)."""

    shape: str
    mode: str
    family: str
    noise: float
    policy: str
    in_sample: float  # vLLM balancedness of the plan on the window it was planned on
    next_window: float  # ... on the window after it
    runtime_ms: float  # mean time of one plan
    duplicates: float  # (layer, GPU) pairs holding two copies of one expert, per plan

    @property
    def adrs_score(self) -> float:
        return adrs_score(self.next_window, self.runtime_ms / 1e3)


def adrs_score(balancedness_gpu: float, seconds: float) -> float:
    """The ADRS EPLB evaluator's score: 90 x mean next-window GPU balancedness, plus up to
    10 points for speed (``min(0.002 / seconds, 2) * 5``), minus ``min(20 * seconds, 20)``
    when a plan takes over 10 ms (problems/eplb/README.md of the ADRS leaderboard)."""
    speed = min(0.002 / seconds, 2.0) * 5 if seconds > 0 else 10.0
    penalty = min(seconds * 20, 20.0) if seconds > 0.01 else 0.0
    return 90 * balancedness_gpu + speed - penalty


def drift_windows(shape: Shape, family: str, noise: float, seed: int = 0) -> torch.Tensor:
    """The drifting trace of one case as windows: [NUM_WINDOWS, STEPS_PER_WINDOW, L, E] float32."""
    trace = generate_drifting_trace(family, NUM_WINDOWS, STEPS_PER_WINDOW, shape.num_layers, shape.num_experts,
                                    noise=noise, seed=seed)
    return trace.view(NUM_WINDOWS, STEPS_PER_WINDOW, shape.num_layers, shape.num_experts)


def next_window_rows(label: str, windows: torch.Tensor, t: Topology, mode: str, family: str, noise: float,
                     planners: list[Planner]) -> list[NextWindowRow]:
    """Every planner on one case: windows [W, S, L, E]; plan on window i, score on i and i + 1.

    The planners take turns on each window, so a slow spell of the machine hits all alike.
    """
    sums = windows.sum(1)  # [W, L, E]
    scores = {p.name: {"in": [], "next": [], "ms": [], "dup": []} for p in planners}
    for i in range(windows.shape[0] - 1):
        for p in planners:
            start = time.perf_counter()
            phy2log = p.plan(windows[i], t, mode)
            scores[p.name]["ms"].append((time.perf_counter() - start) * 1e3)
            scores[p.name]["in"].append(balancedness(gpu_loads(sums[i], phy2log, t.num_gpus)) or 1.0)
            scores[p.name]["next"].append(balancedness(gpu_loads(sums[i + 1], phy2log, t.num_gpus)) or 1.0)
            scores[p.name]["dup"].append(duplicate_gpus(phy2log, t.num_gpus))
    return [NextWindowRow(label, mode, family, noise, name, statistics.mean(s["in"]), statistics.mean(s["next"]),
                          statistics.mean(s["ms"]), statistics.mean(s["dup"])) for name, s in scores.items()]


def run_next_window(shapes, planners: list[Planner], families=FAMILIES, noises=NOISE_LEVELS,
                    seed: int = 0) -> list[NextWindowRow]:
    """Every drift case: shape x mode x family x noise, each planner in the modes it plans in;
    seed: the drifting traces' seed."""
    rows = []
    for shape in shapes:
        t = shape.topology
        for mode in shape.modes:
            active = [p for p in planners if mode in p.modes]
            for index, (family, noise) in enumerate((f, n) for f in families for n in noises):
                windows = drift_windows(shape, family, noise, seed)
                if index == 0:  # a shape's first call loads code paths and fills caches: not timed
                    for p in active:
                        p.plan(windows[0], t, mode)
                rows += next_window_rows(shape.describe(), windows, t, mode, family, noise, active)
    return rows


def _by_case(rows) -> dict[tuple, dict[str, NextWindowRow]]:
    cases: dict[tuple, dict[str, NextWindowRow]] = {}
    for r in rows:
        cases.setdefault((r.shape, r.mode, r.family, r.noise), {})[r.policy] = r
    return cases


def next_window_markdown(rows: list[NextWindowRow], names: list[str]) -> str:
    """One line per drift case: per planner 'next window / in-sample', then duplicate pairs per plan."""
    head = (["shape", "mode", "load", "noise"] + [f"{n} next / in" for n in names]
            + [f"{n} dup" for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (shape, mode, family, noise), by in _by_case(rows).items():
        cells = [shape, mode, family, f"{noise:.0%}"]
        cells += [f"{by[n].next_window:.4f} / {by[n].in_sample:.4f}" if n in by else "-" for n in names]
        cells += [f"{by[n].duplicates:.0f}" if n in by else "-" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def next_window_plain(rows: list[NextWindowRow]) -> str:
    lines = [f"{'case':<78} {'policy':<14} {'in-sample':>9} {'next':>8} {'ADRS':>7} {'dup':>6} {'ms':>8}"]
    for r in rows:
        case = f"{r.shape} / {r.mode} / {r.family} / noise {r.noise:.0%}"
        lines.append(f"{case:<78} {r.policy:<14} {r.in_sample:9.4f} {r.next_window:8.4f} {r.adrs_score:7.2f} "
                     f"{r.duplicates:6.0f} {r.runtime_ms:8.2f}")
    return "\n".join(lines)


def next_window_summary(rows: list[NextWindowRow], names: list[str]) -> list[str]:
    """Per shape and mode, means over the families and noise levels: in-sample, next window,
    the ADRS score, duplicate pairs per plan and ms per plan, one planner a line."""
    groups: dict[tuple, dict[str, list[NextWindowRow]]] = {}
    for r in rows:
        groups.setdefault((r.shape, r.mode), {}).setdefault(r.policy, []).append(r)
    table = [["shape", "mode", "policy", "in-sample", "next window", "ADRS score", "dup pairs", "ms"]]
    for (shape, mode), by in groups.items():
        for name in [n for n in names if n in by]:
            got = by[name]
            table.append([shape, mode, name, f"{statistics.mean(r.in_sample for r in got):.4f}",
                          f"{statistics.mean(r.next_window for r in got):.4f}",
                          f"{statistics.mean(r.adrs_score for r in got):.2f}",
                          f"{statistics.mean(r.duplicates for r in got):.0f}",
                          f"{statistics.mean(r.runtime_ms for r in got):.2f}"])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["Next window, means over the loads and noise levels of each shape (ADRS score: 90 x next-window "
             "balancedness + speed points - slow penalty, as the ADRS evaluator counts them):"]
    return lines + ["  " + "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]


def adrs_check_line(directory, policy: str) -> str:
    """Our next-window scoring of one plan (policy, ADRS shape, global, Zipf, 15% noise) beside the
    ADRS evaluator's own ``simulate_inference`` (written for 288 slots on 32 GPUs), where a local
    copy of it is present."""
    from . import peers

    evaluator = peers.adrs_evaluator(directory)
    if evaluator is None:
        return f"ADRS evaluator check: skipped, {directory / peers.ADRS_EVALUATOR} not found"
    t = ADRS_SHAPE.topology
    windows = drift_windows(ADRS_SHAPE, "zipf", 0.15)
    phy2log = policy_planner(policy).plan(windows[0], t, "global")
    ours = balancedness(gpu_loads(windows[1].sum(0), phy2log, t.num_gpus))
    log2phy, logcnt = log2phy_from_phy2log(phy2log, ADRS_SHAPE.num_experts)
    theirs, _ = evaluator.simulate_inference(log2phy, logcnt, windows[1].sum(0))
    return (f"ADRS evaluator check: its simulate_inference scores a {policy} plan {theirs:.6f} on the next "
            f"window, eplb.metrics {ours:.6f}")


def next_window_goals(rows: list[NextWindowRow], policy: str) -> list[str]:
    """The default policy against every other planner, mode for mode, on next-window balancedness:
    cases at or above it, and the worst difference."""
    cases = _by_case(rows)
    others = sorted({r.policy for r in rows} - {policy})
    lines = [f"Next-window goals for {policy!r} (at or above every other planner on every drift case, mode for mode):"]
    for other in others:
        for mode in ("global", "hierarchical"):
            pairs = [(k, by[policy].next_window - by[other].next_window) for k, by in cases.items()
                     if k[1] == mode and policy in by and other in by]
            if not pairs:
                continue
            worst_case, worst = min(pairs, key=lambda kv: kv[1])
            ahead = sum(1 for _, d in pairs if d >= 0)
            lines.append(f"  vs {other:<12} {mode:<12} at or above on {ahead}/{len(pairs)}; worst {worst:+.4f} "
                         f"({worst_case[0]} / {worst_case[2]} / noise {worst_case[3]:.0%})")
    return lines if len(lines) > 1 else []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark the EPLB policies: balancedness, gap to the limit, runtime.")
    parser.add_argument("--quick", action="store_true", help="small shapes only; runs in a few seconds")
    parser.add_argument("--presets", action="store_true", help="one topology per model preset instead of the standard shapes")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"comma-separated policy names (default: all: {','.join(POLICIES)})")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated workload families")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the per-layer tensors are small, and threads "
                             "contending with other work make timings erratic)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--only", choices=SECTIONS,
                        help="run one section: the in-sample table and goals, the next-window table on "
                             "drifting traces, or the speed comparison (default: all three)")
    parser.add_argument("--peers", metavar="DIR",
                        help="a local copy of the peer balancers (SGLang's deepseek_vec, the ADRS leaderboard's GEPA "
                             "and LEVI programs) to run beside ours in the next-window section; default: "
                             "$EPLB_PEERS, else the folder 'peers' beside the project root; skipped when absent")
    parser.add_argument("--noise", default=",".join(str(n) for n in NOISE_LEVELS),
                        help="comma-separated per-window noise levels of the drifting traces (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the drifting traces in the next-window section (default: %(default)s)")
    args = parser.parse_args(argv)
    args.policies = [p for p in args.policies.split(",") if p]
    args.families = [f for f in args.families.split(",") if f]
    for name in args.policies:
        if name not in POLICIES:
            parser.error(f"unknown policy {name!r}: choose from {', '.join(POLICIES)}")
    for name in args.families:
        if name not in FAMILIES:
            parser.error(f"unknown workload family {name!r}: choose from {', '.join(FAMILIES)}")
    try:
        args.noise = [float(n) for n in args.noise.split(",") if n]
    except ValueError:
        parser.error(f"--noise takes comma-separated numbers, got {args.noise!r}")
    if not args.noise or not all(0 <= n < 10 for n in args.noise):
        parser.error(f"--noise levels must be numbers from 0 to 10, got {args.noise}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables, the goals summaries and the speed comparison."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else preset_shapes() if args.presets else STANDARD
    repeats = 1 if args.quick and args.repeats == 5 else args.repeats
    gap_policy = DEFAULT_POLICY if DEFAULT_POLICY in args.policies else args.policies[-1]
    sections = SECTIONS if args.only is None else (args.only,)
    if "in-sample" in sections:
        rows = run_suite(shapes, args.policies, repeats, args.families)
        toy = flashlb_rows(args.policies, repeats)
        print(markdown_table(rows + toy, args.policies, gap_policy) if args.markdown else plain_table(rows + toy))
        lines = goal_report(rows, toy, gap_policy)  # the policy issue's goals are the default policy's
        if lines:
            print("\n" + "\n".join(lines))
    if "next-window" in sections:
        from . import peers  # peers builds on this module's Planner

        directory = peers.peers_dir(args.peers)
        found, skipped = peers.load_planners(directory)
        planners = [policy_planner(name) for name in args.policies] + found
        shapes = DRIFT_QUICK if args.quick else DRIFT
        rows = run_next_window(shapes, planners, args.families, args.noise, args.seed)
        names = [p.name for p in planners]
        print()
        for line in skipped:
            print(f"peer {line}")
        print(f"Next window (drifting traces of seed {args.seed}): plan on window i ({STEPS_PER_WINDOW} steps of "
              f"per-step loads), score vLLM's "
              f"balancedness on window i+1's sum; in-sample: the same plan on window i's sum; means over "
              f"{NUM_WINDOWS - 1} plans per trace; dup: (layer, GPU) pairs with two copies of one expert, per plan.")
        print(next_window_markdown(rows, names) if args.markdown else next_window_plain(rows))
        print("\n" + "\n".join(next_window_summary(rows, names)))
        lines = next_window_goals(rows, gap_policy)
        if lines:
            print("\n" + "\n".join(lines))
        print(adrs_check_line(directory, gap_policy))
    if "speed" in sections and not args.quick:
        print()
        for line in speed_report(args.policies, repeats, args.families):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

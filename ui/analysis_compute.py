"""Cached compute for the analysis pages: compare policies, sweep an axis, replay a trace.

As in ``ui.compute``, tensors never go into a cached function: a load or a trace
is registered with ``ui.compute.register`` and passed by digest, everything else
is a plain value (a ``Topology``, names, numbers). Results go to ``ui.compute``'s
cache, bounded in bytes for all sessions together.

    runs = analysis_compute.compare(digest, topology)                  # every policy, every mode
    points = analysis_compute.sweep(digest, "redundant", [0, 32], topology, "auto", expert_bytes,
                                    progress=lambda done, total: bar.progress(done / total))
    result = analysis_compute.replay(trace_digest, topology, window=16, interval=16, threshold=None,
                                     policy="deepseek", mode="auto", expert_bytes=expert_bytes,
                                     balance_tolerance=0.0)   # previous placement kept where it can be
    points = analysis_compute.tradeoff(trace_digest, topology, window=16, interval=16, threshold=None,
                                       policy="deepseek", mode="auto")   # every knob setting

The built-in traces live in sample_data/traces/ (``sample_traces``, ``load_sample_trace``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

import eplb
from eplb import analysis
from eplb import replay as eplb_replay
from eplb.formats import read_load_file
from eplb.workloads import generate_trace
from ui import state
from ui.compute import cached, layer_bound_balancedness, lookup
from ui.data import GENERATE_TOKENS, SAMPLE_DIR, Sample

TRACE_DIR = SAMPLE_DIR / "traces"
DEFAULT_TRACE = "deepseek-v3-drift"


@cached
def compare(digest: str, topology: eplb.Topology) -> list[analysis.Run]:
    """Every policy in every mode the topology accepts, on the registered load, each run and timed once.

    Raises ValueError (eplb's message) when the topology fits the load in no mode.
    """
    weight = lookup(digest)
    modes = analysis.applicable_modes(topology, weight.shape[1])
    return analysis.compare_policies(weight, topology, modes)


@cached
def next_window(trace_digest: str, topology: eplb.Topology) -> list[analysis.NextWindow]:
    """Every policy in every mode the topology accepts, planned on one window of the trace and scored on the next."""
    trace = lookup(trace_digest)
    return analysis.next_window_balancedness(trace, topology, analysis.applicable_modes(topology, trace.shape[-1]))


def best_layer_bound(runs: list[analysis.Run]) -> torch.Tensor:
    """Per layer, the best balancedness any placement could reach under the least restrictive mode run. [L]."""
    return torch.stack([layer_bound_balancedness(run.report) for run in runs]).amax(dim=0)


@cached
def sweep_point(digest: str, axis: str, value: int, base: eplb.Topology, mode: str,
                hold: str = "redundant") -> list[analysis.SweepPoint]:
    """Every policy at one value of the axis (``eplb.analysis.sweep`` on one point), cached point by point."""
    return analysis.sweep(lookup(digest), axis, [value], base, mode=mode, hold=hold)


def sweep(digest: str, axis: str, values: list[int], base: eplb.Topology, mode: str, expert_bytes: int,
          progress: Callable[[int, int], None] | None = None, hold: str = "redundant") -> list[analysis.SweepPoint]:
    """The sweep over values, one cached point at a time; ``progress(done, total)`` after each point.
    hold: what a GPUs sweep keeps fixed (``eplb.analysis.topology_at``).

    Points already computed come from the cache, so a sweep cut short by a rerun
    (the user changed a control) resumes where it stopped when it is asked for
    again, and a new expert size only re-prices the copies.
    """
    num_layers, num_experts = lookup(digest).shape
    points = []
    for done, value in enumerate(values, start=1):
        points += [replace(point, redundant_bytes=analysis.memory_of_copies(point.topology, num_layers, num_experts,
                                                                            expert_bytes))
                   for point in sweep_point(digest, axis, value, base, mode, hold)]
        if progress is not None:
            progress(done, len(values))
    return points


@cached
def _replay(trace_digest: str, topology: eplb.Topology, window: int, interval: int, threshold: float | None,
            policy: str, mode: str, keep_copies: bool, balance_tolerance: float | None) -> eplb_replay.ReplayResult:
    return eplb_replay.replay(lookup(trace_digest), topology, window=window, interval=interval,
                              threshold=threshold, policy=policy, mode=mode, keep_copies=keep_copies,
                              balance_tolerance=balance_tolerance)


def replay(trace_digest: str, topology: eplb.Topology, *, window: int, interval: int, threshold: float | None,
           policy: str, mode: str, expert_bytes: int, keep_copies: bool = True,
           balance_tolerance: float | None = None) -> eplb_replay.ReplayResult:
    """``eplb.replay.replay`` on the registered trace (cached; a new expert size only re-prices the moves).

    Raises ValueError (eplb's message, or the server's slot budget, ``ui.state.too_large``) on bad settings.
    """
    state.too_large(*lookup(trace_digest).shape[1:], topology.num_replicas)
    return _replay(trace_digest, topology, window, interval, threshold, policy, mode, keep_copies,
                   balance_tolerance).priced(expert_bytes)


def tradeoff(trace_digest: str, topology: eplb.Topology, *, window: int, interval: int, threshold: float | None,
             policy: str, mode: str) -> list[eplb_replay.TradeoffPoint]:
    """``eplb.replay.tradeoff``: the replay at every knob setting, each setting cached as a replay of its own."""
    return [eplb_replay.TradeoffPoint(label, keep, tolerance,
                                      _replay(trace_digest, topology, window, interval, threshold, policy, mode,
                                              keep, tolerance))
            for label, keep, tolerance in eplb_replay.TRADEOFF_SETTINGS]


def sample_traces() -> dict[str, Sample]:
    """The built-in traces listed in sample_data/traces/traces.json, by file stem, the default first."""
    manifest = json.loads((TRACE_DIR / "traces.json").read_text())
    found = [Sample(Path(e["file"]).stem, e["label"], TRACE_DIR / e["file"], int(e.get("num_groups", 1)))
             for e in manifest if (TRACE_DIR / e["file"]).exists()]
    return {t.name: t for t in sorted(found, key=lambda t: t.name != DEFAULT_TRACE)}


def trace_deployment(name: str) -> eplb.Topology | None:
    """The deployment a built-in trace's manifest entry gives (nodes, GPUs per node, redundant slots), if any."""
    manifest = json.loads((TRACE_DIR / "traces.json").read_text())
    entry = next((e for e in manifest if Path(e["file"]).stem == name), None)
    if entry is None or not all(k in entry for k in ("nodes", "gpus_per_node", "redundant")):
        return None
    experts = load_sample_trace(name).shape[-1]
    return eplb.Topology(experts + int(entry["redundant"]), int(entry.get("num_groups", 1)), int(entry["nodes"]),
                         int(entry["nodes"]) * int(entry["gpus_per_node"]))


@cached  # one tensor for every session (no pickled copy per rerun), so its digest is computed once
def _read_trace(path: str, mtime: float) -> torch.Tensor:
    return read_load_file(path).trace


def load_sample_trace(name: str) -> torch.Tensor:
    """A built-in trace [steps, layers, experts] by name; ValueError naming the choices if there is none."""
    available = sample_traces()
    if name not in available:
        raise ValueError(f"no built-in trace named {name!r}: choose one of {', '.join(available)}")
    path = available[name].path
    return _read_trace(str(path), path.stat().st_mtime)


@cached
def generated_trace(family: str, num_steps: int, num_layers: int, num_experts: int, *, skew: float | None,
                    drift: float, seed: int, top_k: int = 8) -> torch.Tensor:
    """``eplb.workloads.generate_trace`` [steps, layers, experts] with the app's token count per step."""
    return generate_trace(family, num_steps, num_layers, num_experts, seed=seed, skew=skew, drift=drift,
                          tokens=GENERATE_TOKENS, top_k=top_k)

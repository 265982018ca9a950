"""Cached compute for every page, keyed on a content digest and the topology.

``st.cache_data`` hashes large arrays by sampling, so tensors never go into a
cached function: ``register(weight)`` stores a load matrix under the SHA-256 of its
bytes and returns that digest, and the cached functions take the digest. The
registry is shared by all sessions (equal digest, equal content) and keeps the
most recently registered matrices; ``ui.state`` registers the current data on
every rerun, so a session's own matrix is always there.

    digest = compute.register(weight)            # done for you by ui.state.sidebar()
    result = compute.placement(digest, topology, mode, policy)
    before = compute.baseline(digest, topology, mode)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import streamlit as st
import torch

import eplb
from eplb.analysis import run_policy
from eplb.metrics import PlacementReport, evaluate, initial_phy2log, slot_loads
from eplb.presets import DEEPSEEK_README_WEIGHT

# One server serves several sessions on a few cores, and one rebalance works on small
# tensors: torch's intra-op threads only fight the other sessions (and each other) for
# the cores. On the 2-core machine, one thread cut the rerun after a topology change from
# 141-408 ms to 98-134 ms (benchmarks/bench_app_rerun.py). EPLB_TORCH_THREADS overrides.
torch.set_num_threads(int(os.environ.get("EPLB_TORCH_THREADS", "1")))

_REGISTRY: OrderedDict[str, torch.Tensor] = OrderedDict()
_REGISTRY_SIZE = 64
_LOCK = threading.Lock()


def digest_of(tensor: torch.Tensor) -> str:
    """SHA-256 (hex, 24 chars) of a tensor's dtype, shape and bytes."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:24]


def register(tensor: torch.Tensor) -> str:
    """Keep a tensor (load [L, E] or trace [T, L, E]) under its digest and return the digest."""
    digest = digest_of(tensor)
    with _LOCK:
        _REGISTRY[digest] = tensor
        _REGISTRY.move_to_end(digest)
        while len(_REGISTRY) > _REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)
    return digest


def lookup(digest: str) -> torch.Tensor:
    """The tensor registered under ``digest``; KeyError if it was never registered or was evicted."""
    with _LOCK:
        return _REGISTRY[digest]


def _warm_up() -> None:
    """Run every policy once on DeepSeek's README example, so torch's one-time set-up of each
    operation is not counted in the first runtime a user sees."""
    weight = torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32)
    for name in eplb.POLICIES:
        for mode in ("hierarchical", "global"):
            eplb.rebalance_experts(weight, 16, 4, 2, 8, policy=name, mode=mode)


_warm_up()


@dataclass(frozen=True)
class Placement:
    """One rebalance and its report.

    phy2log [L, P], log2phy [L, E, P-E+1], logcnt [L, E] (int64, as ``eplb.rebalance_experts``);
    slot_loads [L, P] load each copy carries; report: ``eplb.metrics.evaluate``;
    runtime_ms: wall time of the rebalance itself when it was computed (not of a cache hit).
    """

    phy2log: torch.Tensor
    log2phy: torch.Tensor
    logcnt: torch.Tensor
    slot_loads: torch.Tensor
    report: PlacementReport
    runtime_ms: float
    policy: str
    mode: str  # resolved: "hierarchical" or "global"


def _placement(weight: torch.Tensor, phy2log: torch.Tensor, report: PlacementReport, runtime_ms: float,
               policy: str, mode: str) -> Placement:
    log2phy, logcnt = eplb.log2phy_from_phy2log(phy2log, weight.shape[1])
    return Placement(phy2log, log2phy, logcnt, slot_loads(weight, phy2log), report, runtime_ms, policy, mode)


@st.cache_data(max_entries=256, show_spinner=False)
def placement(digest: str, topology: eplb.Topology, mode: str, policy: str) -> Placement:
    """Rebalance the registered load ``digest`` on ``topology`` with ``policy`` and evaluate it.

    Raises ValueError (eplb's message) on a topology the contract rejects.
    """
    weight = lookup(digest)
    bound = baseline(digest, topology, mode).report.bound  # cached; the bound depends on no placement
    run = run_policy(weight, topology, policy, mode, bound=bound)
    return _placement(weight, run.phy2log, run.report, run.runtime_ms, run.policy, run.mode)


@st.cache_data(max_entries=256, show_spinner=False)
def baseline(digest: str, topology: eplb.Topology, mode: str) -> Placement:
    """The "before" placement: vLLM's initial map (slot i holds expert i % E) on the same slots, evaluated."""
    weight = lookup(digest)
    resolved = topology.validate(weight.shape[1], mode)
    phy2log = initial_phy2log(weight.shape[0], weight.shape[1], topology.num_replicas)
    return _placement(weight, phy2log, evaluate(weight, phy2log, topology, resolved), 0.0, "vLLM initial map",
                      resolved)


def layer_bound_balancedness(report: PlacementReport) -> torch.Tensor:
    """Best reachable balancedness per layer: mean GPU load / the proven bound. [L], NaN for a layer without load."""
    mean = report.gpu_loads.mean(dim=-1)
    return torch.where(report.bound > 0, mean / report.bound, torch.nan)

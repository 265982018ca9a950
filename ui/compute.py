"""Cached compute for every page, keyed on a content digest and the topology.

Tensors never go into a cached function's key: ``register(weight)`` records a load
matrix under the SHA-256 of its bytes and returns that digest, and the cached
functions take the digest. The registry holds no matrix itself: it points at the
tensors the sessions hold (each session keeps its data in its session state), so
a matrix is found for as long as some session has it on screen, and no other
session, however many loads it registers, can push it out. A few of the latest
registrations are also kept for callers without a session (scripts, tests).

Results are kept for every session in one in-memory cache bounded in bytes
(``CACHE_BYTES``, counted over the tensors a result holds), not in entries, and a
result several sessions ask for at once is computed once.

    digest = compute.register(weight)            # done for you by ui.state.sidebar()
    result = compute.placement(digest, topology, mode, policy)
    before = compute.baseline(digest, topology, mode)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import plotly.graph_objects as go
import torch

import eplb
from eplb.analysis import run_policy
from eplb.metrics import PlacementReport, evaluate, initial_phy2log, slot_loads
from eplb.policies.base import copy_counts
from eplb.presets import DEEPSEEK_README_WEIGHT

# One server serves several sessions on a few cores, and one rebalance works on small
# tensors: torch's intra-op threads only fight the other sessions (and each other) for
# the cores. On the 2-core machine, one thread cut the rerun after a topology change from
# 141-408 ms to 98-134 ms (benchmarks/bench_app_rerun.py). EPLB_TORCH_THREADS overrides.
torch.set_num_threads(int(os.environ.get("EPLB_TORCH_THREADS", "1")))

CACHE_BYTES = 512 * 2**20
"""Tensor bytes that the cached results of all sessions hold together; the least recently used go first."""
CONCURRENT = 2
"""Cached computations that run at once (one per core of the 2-core server): more only share the cores,
and each one's peak memory adds up. A computation started inside another does not wait."""
RECENT = 4
"""Latest registrations kept alive without a session holding them (scripts and tests call ``register`` bare)."""

_HELD: dict[str, list[weakref.ref]] = {}  # digest -> the tensors sessions hold with that content
_RECENT: OrderedDict[str, torch.Tensor] = OrderedDict()
_LOCK = threading.Lock()


def digest_of(tensor: torch.Tensor) -> str:
    """SHA-256 (hex, 24 chars) of a tensor's dtype, shape and bytes."""
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:24]


def _live(digest: str) -> torch.Tensor | None:
    refs = [ref for ref in _HELD.get(digest, ()) if ref() is not None]
    if refs:
        _HELD[digest] = refs
    else:
        _HELD.pop(digest, None)
    return refs[0]() if refs else None


_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}  # id(tensor) -> (the tensor, its digest): hashed once


def known_digest(tensor: torch.Tensor) -> str:
    """``digest_of`` a tensor, hashed once per tensor object: the app never changes a tensor in place (loads,
    and the results the caches hold, are read-only)."""
    with _LOCK:
        known = _DIGESTS.get(id(tensor))
    if known is not None and known[0]() is tensor:
        return known[1]
    digest = digest_of(tensor)
    with _LOCK:
        _DIGESTS[id(tensor)] = (weakref.ref(tensor, functools.partial(_forget, key=id(tensor))), digest)
    return digest


def _forget(ref: weakref.ref, key: int) -> None:
    """Drop a collected tensor's digest, unless a newer tensor took its id. No lock: the collection may run
    while this thread holds ``_LOCK`` (one dict operation is atomic anyway)."""
    if _DIGESTS.get(key, (None, None))[0] is ref:
        _DIGESTS.pop(key, None)


def register(tensor: torch.Tensor) -> str:
    """Record a tensor (load [L, E] or trace [T, L, E]) under its digest and return the digest.

    The registry refers to the tensor only while the caller (a session's state) holds it. A tensor
    registered again (a session's data on every rerun) is not hashed again (``known_digest``).
    """
    digest = known_digest(tensor)
    with _LOCK:
        refs = _HELD.setdefault(digest, [])
        if not any(ref() is tensor for ref in refs):
            refs.append(weakref.ref(tensor))
        for other in [d for d in _HELD if d != digest]:
            _live(other)  # drop what no session holds any more
        _RECENT[digest] = tensor
        _RECENT.move_to_end(digest)
        while len(_RECENT) > RECENT:
            _RECENT.popitem(last=False)
    return digest


def lookup(digest: str) -> torch.Tensor:
    """The tensor registered under ``digest``; KeyError if no session holds it and it is not among the latest."""
    with _LOCK:
        tensor = _live(digest)
        if tensor is None:
            tensor = _RECENT[digest]
        return tensor


def nbytes(value) -> int:
    """Bytes of the tensors a result holds (dataclasses, tuples, lists and dicts walked), plus 64 per other value."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 64


class ByteCache:
    """An LRU cache of results bounded by ``nbytes`` of what it holds, shared by all sessions.

    Results are returned as stored (no copy: callers treat them as read-only, as they
    are frozen dataclasses of tensors). Concurrent calls for one key compute it once;
    an exception is raised to every caller and not kept.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.held = 0
        self._entries: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._pending: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], object], size: Callable[[object], int] | None = None):
        """The result for ``key``, computed by ``compute()`` when missing; ``size(result)`` counts its bytes
        (default ``nbytes``)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                if key in self._entries:
                    return self._entries[key][0]
            try:
                value = _bounded(compute)
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            size = (size or nbytes)(value)
            with self._lock:
                if size <= self.budget and key not in self._entries:
                    self._entries[key] = (value, size)
                    self.held += size
                    while self.held > self.budget:
                        _, (_, dropped) = self._entries.popitem(last=False)
                        self.held -= dropped
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.held = 0


_RUNNING = threading.BoundedSemaphore(CONCURRENT)
_INSIDE = threading.local()


def _bounded(compute: Callable[[], object]):
    """Run ``compute`` holding one of the ``CONCURRENT`` slots (unless this thread already holds one)."""
    if getattr(_INSIDE, "held", False):
        return compute()
    with _RUNNING:
        _INSIDE.held = True
        try:
            return compute()
        finally:
            _INSIDE.held = False


CACHE = ByteCache(CACHE_BYTES)


def cached(function: Callable) -> Callable:
    """Keep ``function``'s results in ``CACHE``, keyed by its name and its (hashable) arguments."""
    name = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return CACHE.get((name, args, tuple(sorted(kwargs.items()))), lambda: function(*args, **kwargs))

    return wrapper


FIGURE_BYTES = 64 * 2**20
"""Bytes the shared figure cache may hold, each figure counted at ``FIGURE_COST`` bytes per input value."""
FIGURE_COST = 64
"""A Plotly figure's size per value it draws, a generous estimate (float64 arrays, hover text, JSON form)."""
FIGURES = ByteCache(FIGURE_BYTES)


def _content_key(value) -> tuple:
    """A hashable key for a figure builder's argument: tensors by digest, containers element by element."""
    if isinstance(value, torch.Tensor):
        return ("tensor", known_digest(value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _content_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_content_key(v) for v in value))
    hash(value)  # anything else must be hashable as it is
    return ("value", type(value).__name__, value)


def _values(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.nelement()
    if isinstance(value, dict):
        return sum(_values(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_values(v) for v in value)
    return 1


class CachedFigures:
    """A figures module whose builders keep what they build, keyed by the content of their arguments.

    ``figures = compute.CachedFigures(figures)`` at the top of a page: a rerun that draws the
    same data again (nothing changed, or another session on the same load) gets the figure
    built before instead of building it anew; anything but a builder call passes through.
    The figures are shared read-only by every session (``st.plotly_chart`` does not change them).
    """

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name: str):
        attr = getattr(self._module, name)
        if not callable(attr) or name.startswith("_") or name.startswith("format_"):
            return attr

        @functools.wraps(attr)
        def build(*args, **kwargs):
            try:
                key = (self._module.__name__, name, _content_key(args), _content_key(tuple(sorted(kwargs.items()))))
            except TypeError:  # an argument that cannot be keyed: build as usual
                return attr(*args, **kwargs)
            cost = FIGURE_COST * (_values(args) + _values(kwargs)) + 16_384
            return FIGURES.get(key, lambda: _shared(attr(*args, **kwargs)), size=lambda _: cost)

        return build


class SharedFigure(go.Figure):
    """A cached figure, read-only once built: ``to_dict()`` (what ``st.plotly_chart`` serializes on every
    rerun: a deep copy with every array encoded again) is made once and returned to every caller."""

    def to_dict(self):
        if getattr(self, "_shared_dict", None) is None:
            self._shared_dict = super().to_dict()
        return self._shared_dict


def _shared(figure):
    """A built ``go.Figure`` made a ``SharedFigure`` (the same object, its dict form kept); anything else as it is."""
    if type(figure) is go.Figure:
        figure.__class__ = SharedFigure
    return figure


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

    phy2log [L, P], logcnt [L, E] (int64, as ``eplb.rebalance_experts``; no log2phy, which no page
    reads and which grows with the slots squared); slot_loads [L, P] load each copy carries;
    report: ``eplb.metrics.evaluate``;
    runtime_ms: wall time of the rebalance itself when it was computed (not of a cache hit).
    """

    phy2log: torch.Tensor
    logcnt: torch.Tensor
    slot_loads: torch.Tensor
    report: PlacementReport
    runtime_ms: float
    policy: str
    mode: str  # resolved: "hierarchical" or "global"


def _placement(weight: torch.Tensor, phy2log: torch.Tensor, report: PlacementReport, runtime_ms: float,
               policy: str, mode: str) -> Placement:
    logcnt = copy_counts(phy2log, weight.shape[1])
    return Placement(phy2log, logcnt, slot_loads(weight, phy2log), report, runtime_ms, policy, mode)


@cached
def placement(digest: str, topology: eplb.Topology, mode: str, policy: str) -> Placement:
    """Rebalance the registered load ``digest`` on ``topology`` with ``policy`` and evaluate it.

    Raises ValueError (eplb's message) on a topology the contract rejects.
    """
    weight = lookup(digest)
    bound = baseline(digest, topology, mode).report.bound  # cached; the bound depends on no placement
    run = run_policy(weight, topology, policy, mode, bound=bound)
    return _placement(weight, run.phy2log, run.report, run.runtime_ms, run.policy, run.mode)


@cached
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

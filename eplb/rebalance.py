"""The public entry point, ``rebalance_experts``, and the one validator in front of every policy."""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import torch

from . import kernels
from .migration import keep_in_place, validate_previous
from .policies import DEFAULT_POLICY, POLICIES

MODES = ("auto", "hierarchical", "global")


@dataclass(frozen=True)
class Topology:
    """Where the physical expert slots live.

    num_replicas: physical slots P (logical experts plus redundant copies), spread
    evenly over num_gpus GPUs, which are spread evenly over num_nodes nodes.
    num_groups: expert groups (DeepSeek-V3's group-limited routing); hierarchical
    mode keeps every group on one node.
    """

    num_replicas: int
    num_groups: int
    num_nodes: int
    num_gpus: int

    @property
    def slots_per_gpu(self) -> int:
        return self.num_replicas // self.num_gpus

    @property
    def gpus_per_node(self) -> int:
        return self.num_gpus // self.num_nodes

    def resolve_mode(self, mode: str) -> str:
        """"auto" -> "hierarchical" when groups divide evenly over nodes, else "global" (DeepSeek's rule)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        if mode == "auto":
            return "hierarchical" if self.num_groups % self.num_nodes == 0 else "global"
        return mode

    def validate(self, num_experts: int, mode: str = "auto") -> str:
        """Check the topology against num_experts logical experts; return the resolved mode.

        Raises ValueError naming the broken rule and the numbers involved.
        """
        for name in ("num_replicas", "num_groups", "num_nodes", "num_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        resolved = self.resolve_mode(mode)
        if num_experts % self.num_groups:
            raise ValueError(
                f"num_logical_experts ({num_experts}) must be divisible by num_groups ({self.num_groups}): "
                f"pick a group count that divides {num_experts}"
            )
        if self.num_gpus % self.num_nodes:
            raise ValueError(
                f"num_gpus ({self.num_gpus}) must be divisible by num_nodes ({self.num_nodes}): "
                "every node needs the same number of GPUs"
            )
        if self.num_replicas % self.num_gpus:
            raise ValueError(
                f"num_replicas ({self.num_replicas}) must be divisible by num_gpus ({self.num_gpus}): "
                f"every GPU needs the same number of slots; try {math.ceil(self.num_replicas / self.num_gpus) * self.num_gpus}"
            )
        if self.num_replicas < num_experts:
            raise ValueError(
                f"num_replicas ({self.num_replicas}) must be at least num_logical_experts ({num_experts}): "
                "every expert needs at least one slot"
            )
        if resolved == "hierarchical" and self.num_groups % self.num_nodes:
            raise ValueError(
                f"hierarchical mode needs num_groups ({self.num_groups}) divisible by num_nodes ({self.num_nodes}): "
                "use global mode or a node count that divides the group count"
            )
        return resolved


def validate_weight(weight, *, history: bool = False) -> torch.Tensor:
    """Check a load matrix [layers, experts]; return it as a tensor (not copied).

    With ``history=True`` a window of per-step loads [steps, layers, experts] is
    accepted too (2-D stays 2-D).
    """
    shapes = "[layers, experts] or [steps, layers, experts]" if history else "[layers, experts]"
    if not isinstance(weight, torch.Tensor):
        try:
            weight = torch.as_tensor(weight)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"weight must be a {shapes} array of numbers: {exc}") from None
    if weight.dtype == torch.bool or weight.is_complex():
        raise ValueError(f"weight must hold real numbers, got dtype {weight.dtype}")
    if weight.dim() not in ((2, 3) if history else (2,)):
        raise ValueError(f"weight must be {shapes}, got shape {tuple(weight.shape)}")
    if weight.numel() == 0:
        needs = "at least one layer and one expert" + (" (and one step)" if weight.dim() == 3 else "")
        raise ValueError(f"weight must have {needs}, got shape {tuple(weight.shape)}")
    low, high = torch.aminmax(weight)
    if bool(low >= 0) and bool(high < math.inf):  # the common case, in one pass; NaN fails both
        return weight
    where = "step {}, layer {}, expert {}" if weight.dim() == 3 else "layer {}, expert {}"
    if weight.is_floating_point():
        bad = ~torch.isfinite(weight)
        if bool(bad.any()):
            first = where.format(*(int(i) for i in bad.nonzero()[0]))
            raise ValueError(
                f"weight has {int(bad.sum())} NaN or infinite loads (first at {first}): "
                "loads must be finite token counts"
            )
    negative = weight < 0
    if bool(negative.any()):
        index = tuple(int(i) for i in negative.nonzero()[0])
        raise ValueError(
            f"weight has {int(negative.sum())} negative loads (first at {where.format(*index)}, "
            f"value {weight[index].item()}): loads are token counts, 0 or more"
        )
    return weight


HUGE_PAGE_BYTES = 32 * 2**20
"""Tensors from this size on come from memory advised to use transparent huge pages (see ``host_int64``)."""


def host_int64(shape: tuple[int, ...]) -> torch.Tensor:
    """A new int64 tensor of ``shape`` in host memory, uninitialised (the caller writes every entry).

    glibc serves an allocation above its largest mmap threshold (32 MiB) with a fresh
    mapping on every call, and the kernel then faults its pages in one 4 KiB page at a
    time: most of the cost of writing a large log2phy. On Linux such a tensor lives in
    an anonymous mapping advised to use transparent huge pages (2 MiB per fault); the
    tensor keeps the mapping alive and unmaps it when freed.
    """
    numel = math.prod(shape)
    if numel * 8 < HUGE_PAGE_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=torch.int64)
    memory = mmap.mmap(-1, numel * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memory.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(memory, dtype=torch.int64).view(shape)


def log2phy_from_phy2log(phy2log: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Derive the reverse map from a placement.

    phy2log: [L, P] int64. Returns (log2phy [L, E, P - E + 1], logcnt [L, E]); copy k
    of an expert is its k-th lowest slot, unused columns hold -1. Built on the host in
    one compiled pass per layer (``kernels.fill_log2phy``, which writes every entry of both),
    then moved to phy2log's device.
    """
    num_layers, num_replicas = phy2log.shape
    width = num_replicas - num_experts + 1
    log2phy = host_int64((num_layers, num_experts, width))
    logcnt = torch.empty(num_layers, num_experts, dtype=torch.int64)
    kernels.fill_log2phy(phy2log.cpu().long().contiguous().numpy(), log2phy.numpy(), logcnt.numpy())
    return log2phy.to(phy2log.device), logcnt.to(phy2log.device)


def rebalance_experts(
    weight: torch.Tensor,
    num_replicas: int,
    num_groups: int,
    num_nodes: int,
    num_gpus: int,
    *,
    policy: str | None = None,
    mode: str = "auto",
    previous=None,
    balance_tolerance: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place replicated experts onto GPUs so that per-GPU load evens out.

    Parameters:
        weight: [layers, num_logical_experts] load (token counts) per expert, or a
            window of per-step loads [steps, layers, num_logical_experts] (as SGLang's
            ``deepseek_vec`` takes), which a policy may use to plan for the next window
            (``Policy.place_window``); any real dtype, CPU or CUDA. Never modified. The
            policies plan in float32, the same counts in any dtype giving the same placement,
            except float64 loads that float32 would round, which keep their precision.
        num_replicas: physical expert slots P, a multiple of num_gpus and >= num_logical_experts.
        num_groups: expert groups; num_logical_experts must be a multiple.
        num_nodes: server nodes; num_gpus must be a multiple.
        num_gpus: GPUs in the expert-parallel group.
        policy: a name in ``eplb.POLICIES``; None means ``eplb.DEFAULT_POLICY``.
        mode: "hierarchical" (groups packed onto nodes, then replicate and pack inside
            each node), "global" (ignore groups and nodes) or "auto" (hierarchical when
            num_groups % num_nodes == 0, else global).
        previous: [layers, num_replicas] phy2log now on the GPUs, or None. The plan is
            then relabelled (GPUs inside a node, nodes, slots inside a GPU) to keep as
            many copies where they are as it can, with the same GPU loads.
        balance_tolerance: None (relabel only), or with ``previous`` a fraction t in
            [0, 1): a layer may instead keep the previous placement with a few copies
            swapped or re-pointed, when that moves fewer copies and its heaviest GPU
            on the planning load (for a 3-D weight its next-window estimate: the steps
            weighted toward the latest, averaged with the hedge's trend) is at most
            1 / (1 - t) times the plan's; 0 means no loss of balance on that load.
            See ``eplb.migration``.

    Returns (all int64, on weight's device):
        phy2log: [layers, num_replicas] logical expert in each slot; slot p is on GPU
            p // (num_replicas // num_gpus) and node p // (num_replicas // num_nodes).
        log2phy: [layers, num_logical_experts, num_replicas - num_logical_experts + 1]
            slots of each expert's copies, copy k in column k, padded with -1.
        logcnt: [layers, num_logical_experts] copies per expert, each >= 1, rows sum to P.

    Raises ValueError, naming the broken rule, on invalid input.
    """
    phy2log, num_experts = _place(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode, previous,
                                  balance_tolerance)
    log2phy, logcnt = log2phy_from_phy2log(phy2log, num_experts)
    return phy2log, log2phy, logcnt


def place_experts(
    weight: torch.Tensor,
    num_replicas: int,
    num_groups: int,
    num_nodes: int,
    num_gpus: int,
    *,
    policy: str | None = None,
    mode: str = "auto",
    previous=None,
    balance_tolerance: float | None = None,
) -> torch.Tensor:
    """``rebalance_experts`` without the reverse map: phy2log [layers, num_replicas] int64 only.

    log2phy holds layers x experts x (num_replicas - experts + 1) values, which grows with
    the square of the slots (58 x 256 x 4097 int64 is 0.5 GB at 4096 redundant slots);
    callers that only read phy2log (the app, sweeps, replays) skip it. Same arguments,
    same checks and the same phy2log as ``rebalance_experts``.
    """
    return _place(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode, previous,
                  balance_tolerance)[0]


def _place(weight, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int, policy: str | None,
           mode: str, previous, balance_tolerance: float | None) -> tuple[torch.Tensor, int]:
    """The checks and the chosen policy's placement: (phy2log [layers, num_replicas], num_logical_experts)."""
    weight = validate_weight(weight, history=True)
    if balance_tolerance is not None and (isinstance(balance_tolerance, bool)
                                          or not isinstance(balance_tolerance, (int, float))
                                          or not 0 <= balance_tolerance < 1):
        raise ValueError(f"balance_tolerance is a fraction of balancedness, 0 or more and below 1, "
                         f"got {balance_tolerance!r}")
    if balance_tolerance is not None and previous is None:
        raise ValueError("balance_tolerance needs previous=, the placement now on the GPUs, to keep copies of")
    name = DEFAULT_POLICY if policy is None else policy
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    num_experts = weight.shape[-1]
    topology = Topology(num_replicas, num_groups, num_nodes, num_gpus)
    resolved = topology.validate(num_experts, mode)
    load = weight.to(torch.float32)
    if weight.dtype == torch.float64 and not bool((load == weight).all()):
        load = weight  # float64 precision is kept where float32 would round; token counts plan as float32 ones do
    if resolved == "global":
        num_groups, num_nodes = 1, 1
    chosen = POLICIES[name]
    if load.dim() == 3:
        phy2log = chosen.place_window(load, num_replicas, num_groups, num_nodes, num_gpus)
    else:
        phy2log = chosen.place(load, num_replicas, num_groups, num_nodes, num_gpus)
    if previous is not None:
        current = validate_previous(previous, phy2log.shape[0], num_replicas, num_experts, phy2log.device)
        phy2log = keep_in_place(phy2log, current, load, num_groups, num_nodes, num_gpus, balance_tolerance)
    return phy2log, num_experts

"""The project's own placement JSON: everything ``rebalance_experts`` returns, for analysis.

``phy2log`` [layers, physical], ``log2phy`` [layers, experts, physical - experts + 1]
(padded with -1), ``logcnt`` [layers, experts] (vLLM's and DeepSeek's names), the
``topology``, the resolved ``mode`` and the ``policy``. No engine loads it as is; it
reads back with ``read_placement``, which checks ``logcnt`` against ``phy2log``.
"""

from __future__ import annotations

import json

import torch

from ..policies.base import copy_counts
from ..rebalance import log2phy_from_phy2log
from .registry import Placement, PlacementLayout, Writer
from .safe import MAX_ELEMENTS, Parsed, fail, shape_text
from .values import check_phy2log, to_tensor


def _write(placement: Placement) -> bytes:
    table, topology = placement.phy2log, placement.topology
    num_experts = int(table.max()) + 1
    log2phy, logcnt = log2phy_from_phy2log(table, num_experts)
    document = {
        "num_layers": table.shape[0],
        "num_logical_experts": num_experts,
        "topology": {
            "num_replicas": topology.num_replicas,
            "num_groups": topology.num_groups,
            "num_nodes": topology.num_nodes,
            "num_gpus": topology.num_gpus,
        },
        "mode": placement.mode,
        "policy": placement.policy,
        "phy2log": table.tolist(),
        "log2phy": log2phy.tolist(),
        "logcnt": logcnt.tolist(),
    }
    return json.dumps(document).encode()


def _read(parsed: Parsed) -> torch.Tensor:
    name, obj = parsed.name, parsed.obj
    logcnt = obj.get("logcnt")
    if logcnt is not None:
        logcnt = to_tensor(logcnt, name, "logcnt")
        if logcnt.dim() != 2:
            raise fail(name, "logcnt", f"has shape {shape_text(logcnt)}, expected [layers, experts]")
    num_experts = None if logcnt is None else logcnt.shape[1]
    table = check_phy2log(obj["phy2log"], name, "phy2log", num_experts)
    if logcnt is not None:
        if logcnt.shape[0] != table.shape[0] or not torch.equal(logcnt.long(), copy_counts(table, num_experts)):
            raise fail(name, "logcnt", "does not match the copies counted in phy2log; the file was edited by hand?")
    return table


def _check(placement: Placement) -> None:
    """Refuse a log2phy too large to write: it grows with the square of the slots (experts x copies per layer)."""
    table = placement.phy2log
    num_layers, num_replicas = table.shape
    num_experts = int(table.max()) + 1
    count = num_layers * num_experts * (num_replicas - num_experts + 1)
    if count > MAX_ELEMENTS:
        raise ValueError(f"the placement JSON would hold log2phy [{num_layers}, {num_experts}, "
                         f"{num_replicas - num_experts + 1}], {count:,} values, above the limit of {MAX_ELEMENTS:,} "
                         "(it grows with the redundant slots squared); use fewer redundant slots, or an engine's "
                         "format, which holds phy2log only")


PLACEMENT_LAYOUTS = [
    PlacementLayout("placement JSON (phy2log)", lambda p: isinstance(p.obj, dict) and "phy2log" in p.obj, _read),
]

PLACEMENT_FORMATS = {
    "vllm-json": Writer("Placement JSON: phy2log, log2phy, logcnt, topology (for analysis)", ".json",
                        "application/json", _write, check=_check),
}

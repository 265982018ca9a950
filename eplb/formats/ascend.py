"""vllm-ascend / MindIE expert map (``expert_map_path``): the logical experts each device holds.

``{"moe_layer_count": L, "layer_list": [{"layer_id", "device_count", "device_list":
[{"device_id", "device_expert": [logical ids in local slot order]}]}]}``, one entry per
MoE layer (dense layers have none), as vllm-ascend's ``VllmEplbAdaptor`` exports it and
its ``ExpertLoadBalancer`` reads it. Device d's list is slots ``d * S .. (d + 1) * S - 1``
of ``phy2log``. vllm-ascend builds each device's expert map with one local slot per
expert, so one device cannot hold two copies of one expert: the writer refuses such
a placement and names the expert.
"""

from __future__ import annotations

import json

import torch

from .registry import Placement, PlacementLayout, Writer
from .safe import Parsed, fail, short
from .values import check_phy2log


def _check(placement: Placement) -> None:
    """One copy of an expert per device at most: vllm-ascend's expert map has one local slot per expert."""
    table, devices = placement.phy2log, placement.topology.num_gpus
    ordered = table.view(table.shape[0], devices, -1).sort(dim=2).values  # [layers, devices, slots per device]
    twice = (ordered[..., 1:] == ordered[..., :-1]).nonzero()
    if twice.numel():
        layer, device, slot = (int(i) for i in twice[0])
        expert = int(ordered[layer, device, slot])
        raise ValueError(
            f"MoE layer {layer} puts two copies of expert {expert} on device {device}; vllm-ascend's expert map "
            "holds one slot per expert on each device: use another policy, more GPUs or fewer redundant slots")


def _write(placement: Placement) -> bytes:
    table, devices = placement.phy2log, placement.topology.num_gpus
    per_device = table.view(table.shape[0], devices, -1)  # [layers, devices, slots per device]
    document = {
        "moe_layer_count": table.shape[0],
        "layer_list": [
            {"layer_id": layer, "device_count": devices,
             "device_list": [{"device_id": d, "device_expert": experts} for d, experts in enumerate(rows)]}
            for layer, rows in enumerate(per_device.tolist())
        ],
    }
    return json.dumps(document, indent=4).encode()


def _read(parsed: Parsed) -> torch.Tensor:
    """The map -> phy2log [MoE layers, devices x slots per device], with what vllm-ascend relies on checked."""
    name, obj = parsed.name, parsed.obj
    layers = obj.get("layer_list")
    if not isinstance(layers, list) or not layers:
        raise fail(name, "layer_list", "expected a non-empty list of layers with 'device_list'")
    count = obj.get("moe_layer_count")
    if count != len(layers):
        raise fail(name, "moe_layer_count", f"is {short(count)} but layer_list has {len(layers)} layers")
    rows = []
    for i, layer in enumerate(layers):
        where = f"layer_list[{i}]"
        devices = layer.get("device_list") if isinstance(layer, dict) else None
        if not isinstance(devices, list) or not devices or layer.get("device_count") != len(devices):
            raise fail(name, where, "expected 'device_count' and a 'device_list' of that many devices")
        row = []
        for d, device in enumerate(devices):
            experts = device.get("device_expert") if isinstance(device, dict) else None
            if not isinstance(experts, list) or not experts:
                raise fail(name, f"{where}.device_list[{d}]", "expected 'device_expert', a list of expert ids")
            if len(set(map(repr, experts))) != len(experts):
                raise fail(name, f"{where}.device_list[{d}].device_expert", "lists one expert twice; vllm-ascend "
                           "holds one slot per expert on each device")
            row.extend(experts)
        rows.append(row)
    widths = {len(row) for row in rows}
    if len(widths) != 1 or any(len(rows[0]) % len(layer["device_list"]) for layer in layers):
        raise fail(name, "layer_list", "devices hold different numbers of experts; vllm-ascend reads the map as one "
                   "[layers, devices, slots] tensor, so every device needs the same count")
    return check_phy2log(rows, name, "device_expert")


PLACEMENT_LAYOUTS = [
    PlacementLayout("vllm-ascend expert map", lambda p: isinstance(p.obj, dict) and "layer_list" in p.obj, _read),
]

PLACEMENT_FORMATS = {
    "ascend-json": Writer("vllm-ascend / MindIE expert map (expert_map_path, .json)", ".json", "application/json",
                          _write, layers="moe", check=_check),
}

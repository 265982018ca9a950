"""TensorRT-LLM: expert statistics in, the static EPLB configuration (YAML) out.

Statistics, as ``tensorrt_llm/_torch/expert_statistic.py`` writes them into
``EXPERT_STATISTIC_PATH`` when ``EXPERT_STATISTIC_ITER_RANGE=start-stop`` is set:
``meta_info.json`` (rank 0: ``num_experts``, ``num_experts_per_token``) and one
``rank{r}.safetensors`` per rank, keys ``"{iter}_{layer}"`` -> int64 [experts]
routed-token counts, ``layer`` the decoder layer index. As the example's
``load_expert_statistic`` does, the rank files are summed key by key (``*_raw``
and co-occurrence files are left out) and every (iteration, layer) pair must be
there: the trace is [iterations, MoE layers, experts].

The static configuration, as ``examples/wide_ep/ep_load_balancer/generate_eplb_config.py``
writes it for ``moe_config.load_balancer``: ``num_slots``, ``initial_global_assignments``
``{decoder layer index: [logical expert in each global slot]}`` and
``layer_updates_per_iter: 0``; TensorRT-LLM's ``MoeLoadBalancerConfig`` accepts no other
key and looks every MoE layer up by its decoder layer index.
"""

from __future__ import annotations

import os
import re

import torch

from . import safe
from .registry import LoadLayout, Placement, PlacementLayout, Writer
from .safe import Parsed, fail, short
from .values import LoadData, check_phy2log, expert_ids, make_load, to_tensor

_KEY = re.compile(r"(\d+)_(\d+)")
_META = {"num_experts", "num_experts_per_token"}
_CONFIG_KEYS = {"num_slots", "initial_global_assignments", "layer_updates_per_iter"}


def _is_statistics(parsed: Parsed) -> bool:
    obj = parsed.obj
    if parsed.container == "safetensors":
        return bool(obj) and all(_KEY.fullmatch(str(k)) for k in obj)
    return isinstance(obj, dict) and _META <= set(obj) and "layer_list" not in obj


def _auxiliary(name: str) -> bool:
    """Files TensorRT-LLM's own loader leaves out: raw token lists and co-occurrence matrices."""
    base = os.path.basename(name)
    return base.endswith("_raw.safetensors") or base.startswith(("cooccurrence", "token_selected"))


def _read_statistics(files: list[Parsed]) -> LoadData:
    metas = [p for p in files if p.container != "safetensors"]
    ranks = [p for p in files if p.container == "safetensors" and not _auxiliary(p.name)]
    skipped = [p.name for p in files if p.container == "safetensors" and _auxiliary(p.name)]
    if len(metas) > 1:
        raise fail(metas[1].name, "", f"is a second meta_info.json (with {metas[0].name}); open one statistics "
                   "folder at a time")
    if not ranks:
        raise fail((metas or files)[0].name, "", "holds TensorRT-LLM's meta_info.json but no rank{r}.safetensors "
                   "statistics: open the whole EXPERT_STATISTIC_PATH folder (or a zip of it)")
    meta = metas[0].obj if metas else {}
    num_experts = meta.get("num_experts")
    if metas and (not isinstance(num_experts, int) or isinstance(num_experts, bool) or num_experts < 1):
        raise fail(metas[0].name, "num_experts", f"is {short(num_experts)}, expected a positive integer")
    totals: dict[tuple[int, int], torch.Tensor] = {}
    for parsed in ranks:
        for key, counts in parsed.obj.items():
            field = f"{key!r}"
            counts = expert_ids(to_tensor(counts, parsed.name, field), parsed.name, field, lowest=0)
            if counts.dim() != 1 or counts.numel() == 0:
                raise fail(parsed.name, field, f"has shape {safe.shape_text(counts)}, expected [experts] token counts")
            if num_experts is None:
                num_experts = counts.numel()
            if counts.numel() != num_experts:
                source = "meta_info.json's num_experts" if metas else f"the first key's {num_experts}"
                raise fail(parsed.name, field, f"counts {counts.numel()} experts, but {source} is {num_experts}")
            iteration, layer = (int(x) for x in _KEY.fullmatch(key).groups())
            if (iteration, layer) in totals:
                totals[iteration, layer] = totals[iteration, layer] + counts
            else:
                totals[iteration, layer] = counts
    iterations = sorted({i for i, _ in totals})
    layers = sorted({layer for _, layer in totals})
    missing = next(((i, layer) for i in iterations for layer in layers if (i, layer) not in totals), None)
    if missing:
        raise fail(ranks[0].name, "", f"has no counts for iteration {missing[0]}, layer {missing[1]}, though other "
                   "iterations have that layer; TensorRT-LLM's loader needs every (iteration, layer) pair")
    if len(iterations) * len(layers) * num_experts > safe.MAX_ELEMENTS:
        raise safe.too_many(ranks[0].name, "", len(iterations) * len(layers) * num_experts)
    trace = torch.stack([torch.stack([totals[i, layer] for layer in layers]) for i in iterations])
    whose = f"{len(ranks)} rank files summed" if len(ranks) > 1 else \
        f"1 rank file ({ranks[0].name}): with attention DP each rank counts its own tokens, so open the whole " \
        "folder for the true counts"
    notes = [f"TensorRT-LLM expert statistics, {whose}", f"iterations {iterations[0]}-{iterations[-1]}, "
             f"decoder layers {_span(layers)}"]
    if skipped:
        notes.append(f"left out {len(skipped)} raw or co-occurrence file{'s' if len(skipped) > 1 else ''}")
    return make_load(trace, "TensorRT-LLM expert statistics", ranks[0].name, "statistics", "; ".join(notes),
                     layer_ids=tuple(layers))


def _span(ids: list[int]) -> str:
    if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(map(str, ids))


LOAD_LAYOUTS = [
    LoadLayout("TensorRT-LLM expert statistics", "'{iter}_{layer}' counts (TensorRT-LLM)", _is_statistics,
               _read_statistics, several=True),
]


# ---------------------------------------------------------------- the static EPLB configuration


def _write_config(placement: Placement) -> bytes:
    import yaml

    class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
        pass

    _Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=True))  # one line per layer, as TensorRT-LLM's example writes
    config = {
        "num_slots": placement.phy2log.shape[1],
        "initial_global_assignments": dict(zip(placement.layer_ids, placement.phy2log.tolist())),
        "layer_updates_per_iter": 0,
    }
    return yaml.dump(config, Dumper=_Dumper, width=2**30).encode()


def _read_config(parsed: Parsed) -> torch.Tensor:
    name, obj = parsed.name, parsed.obj
    extra = sorted(set(obj) - _CONFIG_KEYS, key=str)
    if extra:
        raise fail(name, "", f"holds {short([str(k) for k in extra], 80)} besides {sorted(_CONFIG_KEYS)}: "
                   "TensorRT-LLM's MoeLoadBalancerConfig refuses other keys")
    assignments = obj["initial_global_assignments"]
    if not isinstance(assignments, dict) or not assignments:
        raise fail(name, "initial_global_assignments", "expected {decoder layer index: [expert in each slot]}")
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in assignments):
        raise fail(name, "initial_global_assignments", "has keys that are not layer indices (integers)")
    layers = sorted(assignments)
    table = check_phy2log([assignments[layer] for layer in layers], name, "initial_global_assignments")
    slots = obj.get("num_slots")
    if slots != table.shape[1]:
        raise fail(name, "num_slots", f"is {short(slots)}, but each layer assigns {table.shape[1]} slots")
    return table


PLACEMENT_LAYOUTS = [
    PlacementLayout("TensorRT-LLM static EPLB config",
                    lambda p: isinstance(p.obj, dict) and "initial_global_assignments" in p.obj, _read_config),
]

PLACEMENT_FORMATS = {
    "trtllm-yaml": Writer("TensorRT-LLM static EPLB config (moe_config.load_balancer, .yaml)", ".yaml",
                          "application/yaml", _write_config, default=True, layers="moe"),
}

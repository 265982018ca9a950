"""``expert-load.json``: the per-step expert loads the ADRS / OpenEvolve EPLB evaluator replays.

``{"load_history": [{"logical_expert_load": [[...experts...] x layers]}, ...]}``, one
entry per logging step: read as a trace. It is the input of the evaluator in
ADRS's ``problems/eplb/evaluator.py`` (288 slots, 8 groups, 4 nodes, 32 GPUs; it sums
every 100 entries into one load); vLLM itself writes no such file (it keeps its load
window in memory and logs balancedness).
"""

from __future__ import annotations

import json

import torch

from . import safe
from .registry import LoadLayout, Writer
from .safe import Parsed, fail, shape_text
from .values import LoadData, make_load, plain_numbers, to_tensor

FORMAT = "expert-load.json (ADRS EPLB evaluator)"


def _read_history(files: list[Parsed]) -> LoadData:
    (parsed,) = files
    name, history = parsed.name, parsed.obj["load_history"]
    layout = "'logical_expert_load' [layers, experts]"
    if not isinstance(history, list) or not history:
        raise fail(name, "load_history", f"expected a non-empty list of dicts with {layout}")
    steps = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "logical_expert_load" not in entry:
            raise fail(name, f"load_history[{i}]", f"expected a dict with {layout}")
        step = to_tensor(entry["logical_expert_load"], name, f"load_history[{i}].logical_expert_load")
        if step.dim() != 2 or (steps and step.shape != steps[0].shape):
            like = f" like load_history[0] {shape_text(steps[0])}" if steps else ""
            raise fail(name, f"load_history[{i}].logical_expert_load",
                       f"has shape {shape_text(step)}, expected [layers, experts]{like}")
        steps.append(step)
    if len(steps) * steps[0].numel() > safe.MAX_ELEMENTS:
        raise safe.too_many(name, "load_history", len(steps) * steps[0].numel())
    dtypes = {s.dtype for s in steps}
    trace = torch.stack(steps if len(dtypes) == 1 else [s.double() for s in steps])
    return make_load(trace, FORMAT, name, "load_history", "one entry per logging step")


def _write_history(load: torch.Tensor) -> bytes:
    steps = load if load.dim() == 3 else load.unsqueeze(0)  # a matrix is one step
    return json.dumps({"load_history": [{"logical_expert_load": step} for step in plain_numbers(steps)]}).encode()


LOAD_LAYOUTS = [
    LoadLayout(FORMAT, "'load_history' (expert-load.json)",
               lambda p: isinstance(p.obj, dict) and "load_history" in p.obj, _read_history),
]

LOAD_FORMATS = {
    "expert-load-json": Writer("expert-load.json (load_history, one entry per step)", ".json", "application/json",
                               _write_history),
}

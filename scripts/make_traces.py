"""Write the built-in load traces into sample_data/traces/, made by eplb.workloads.generate_trace.

A trace is [steps, MoE layers, routed experts] token counts: one matrix per logging
step, the popularity of the experts drifting from step to step. The replay page
plays them through an online rebalancer. Each trace is a compressed NumPy file
(``.npz`` with one int32 array, ``trace``) plus an entry in
sample_data/traces/traces.json recording how it was made, so anyone can
regenerate the same arrays:

    PYTHONPATH=. python scripts/make_traces.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eplb.presets import PRESETS
from eplb.workloads import generate_trace

TRACE_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "traces"
TOKENS = 8192  # routed tokens per logging step (one decode batch), times the model's top-k

# (file stem, label, preset, family, skew, drift, steps, seed, idle steps [start, stop) or None)
TRACES = [
    ("deepseek-v3-drift", "DeepSeek-V3 · Zipf, slow drift", "DeepSeek-V3/R1", "zipf", 1.1, 0.05, 64, 10, None),
    ("qwen3-30b-a3b-shift", "Qwen3-30B-A3B · log-normal, fast drift", "Qwen3-30B-A3B", "lognormal", 1.0, 0.2, 96,
     11, None),
    # Mixtral's 8 experts with an idle stretch (no traffic at all): the replay shows those steps as "no load".
    ("mixtral-8x7b-idle", "Mixtral 8x7B · Zipf, drift, 10 idle steps", "Mixtral 8x7B", "zipf", 1.0, 0.1, 120, 12,
     (40, 50)),
]

# A deployment each trace fits (nodes, GPUs per node, redundant slots), recorded in the manifest: the replay
# page opens a sample trace on it.
DEPLOYMENTS = {"deepseek-v3-drift": (4, 8, 32), "qwen3-30b-a3b-shift": (2, 8, 16), "mixtral-8x7b-idle": (1, 4, 8)}


def main() -> None:
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    manifest = []
    for stem, label, preset_name, family, skew, drift, steps, seed, idle in TRACES:
        preset = PRESETS[preset_name]
        trace = generate_trace(family, steps, preset.num_layers, preset.num_experts, seed=seed, skew=skew,
                               drift=drift, tokens=TOKENS, top_k=preset.top_k)
        if idle is not None:
            trace[idle[0]:idle[1]] = 0
        np.savez_compressed(TRACE_DIR / f"{stem}.npz", trace=trace.numpy().astype(np.int32))
        manifest.append({
            "file": f"{stem}.npz", "label": label, "preset": preset_name, "family": family, "skew": skew,
            "drift": drift, "steps": steps, "seed": seed, "tokens": TOKENS, "num_groups": preset.num_groups,
            "idle_steps": list(idle) if idle else None,
            **dict(zip(("nodes", "gpus_per_node", "redundant"), DEPLOYMENTS[stem])),
        })
    (TRACE_DIR / "traces.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()

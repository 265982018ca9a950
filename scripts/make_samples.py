"""Write the built-in load samples into sample_data/, made by eplb.workloads in real model shapes.

Each sample is a CSV of [MoE layers, routed experts] token counts with a header row
(expert_0, expert_1, ...), plus one entry in sample_data/samples.json that records
how it was made (model preset, workload family, skew, seed) so the app can show it
and anyone can regenerate it bit for bit, and the deployment it opens on (nodes, GPUs
per node, redundant slots; its groups are the model's):

    PYTHONPATH=. python scripts/make_samples.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eplb.presets import DEEPSEEK_README_WEIGHT, PRESETS
from eplb.workloads import generate_load

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
TOKENS = 8192  # routed tokens per logging step (one decode batch)

# (file stem, label, preset, family, skew, seed); skew None is the family's default.
SAMPLES = [
    ("deepseek-v3-zipf", "DeepSeek-V3 · Zipf", "DeepSeek-V3/R1", "zipf", 1.1, 0),
    ("deepseek-v3-hot", "DeepSeek-V3 · 3 hot experts", "DeepSeek-V3/R1", "hot", 30.0, 1),
    ("kimi-k2-lognormal", "Kimi K2 · log-normal", "Kimi K2", "lognormal", 1.0, 2),
    ("qwen3-30b-a3b-zipf", "Qwen3-30B-A3B · Zipf", "Qwen3-30B-A3B", "zipf", 0.9, 3),
    ("deepseek-v2-lite-idle", "DeepSeek-V2-Lite · idle experts", "DeepSeek-V2-Lite", "zero", 0.25, 4),
    ("mixtral-8x7b-zipf", "Mixtral 8x7B · Zipf", "Mixtral 8x7B", "zipf", 1.0, 5),
]
README_STEM = "deepseek-readme-example"

DEPLOYMENTS = {  # (nodes, GPUs per node, redundant slots) each sample opens on: slots spread evenly over the GPUs
    "deepseek-v3-zipf": (4, 8, 32), "deepseek-v3-hot": (4, 8, 32), "kimi-k2-lognormal": (4, 8, 32),
    "qwen3-30b-a3b-zipf": (2, 8, 32), "deepseek-v2-lite-idle": (1, 8, 16), "mixtral-8x7b-zipf": (1, 4, 8),
    README_STEM: (2, 4, 4),  # DeepSeek's README: 16 slots on 2 nodes x 4 GPUs
}


def deployment(stem: str) -> dict[str, int]:
    nodes, gpus_per_node, redundant = DEPLOYMENTS[stem]
    return {"nodes": nodes, "gpus_per_node": gpus_per_node, "redundant": redundant}


def write_csv(path: Path, matrix: np.ndarray) -> None:
    header = ",".join(f"expert_{e}" for e in range(matrix.shape[1]))
    np.savetxt(path, matrix, fmt="%d", delimiter=",", header=header, comments="")


def main() -> None:
    SAMPLE_DIR.mkdir(exist_ok=True)
    manifest = []
    for stem, label, preset_name, family, skew, seed in SAMPLES:
        preset = PRESETS[preset_name]
        load = generate_load(
            family, preset.num_layers, preset.num_experts, seed=seed, skew=skew, tokens=TOKENS, top_k=preset.top_k
        )
        write_csv(SAMPLE_DIR / f"{stem}.csv", load.numpy())
        manifest.append({
            "file": f"{stem}.csv", "label": label, "preset": preset_name, "family": family,
            "skew": skew, "seed": seed, "tokens": TOKENS, "num_groups": preset.num_groups,
            "deployment": deployment(stem),
        })
    write_csv(SAMPLE_DIR / f"{README_STEM}.csv", np.array(DEEPSEEK_README_WEIGHT))
    manifest.append({
        "file": f"{README_STEM}.csv", "label": "DeepSeek README example",
        "preset": "DeepSeek EPLB README toy", "family": None, "skew": None, "seed": None, "tokens": None,
        "num_groups": PRESETS["DeepSeek EPLB README toy"].num_groups, "deployment": deployment(README_STEM),
    })
    (SAMPLE_DIR / "samples.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} samples to {SAMPLE_DIR}")


if __name__ == "__main__":
    main()

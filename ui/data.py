"""Where a load comes from: built-in samples, the workload generators, or a user's file.

Every source ends in a ``LoadedData``: the matrix [layers, experts], an optional
trace [steps, layers, experts], a label for the screen and the URL parameters
that recreate it (empty for an upload: file contents cannot go in a link).
No Streamlit widgets here; ``ui.state`` wires these to the sidebar.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from eplb.formats import FormatError, read_load_file, read_loads
from eplb.presets import PRESETS, model_for_shape
from eplb.workloads import DEFAULT_SKEW, FAMILIES, generate_load
from ui.compute import cached

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
LOAD_EXTENSIONS = ("csv", "txt", "npy", "npz", "pt", "pth", "json", "safetensors", "zip")
DEFAULT_SAMPLE = "deepseek-v3-zipf"
GENERATE_TOKENS = 8192
"""Routed tokens per step used when generating (one decode batch), times the preset's top-k."""

__all__ = [
    "DEFAULT_SAMPLE", "FAMILIES", "FormatError", "LOAD_EXTENSIONS", "LoadedData", "PRESETS", "Sample",
    "from_upload", "from_uploads", "generate", "gpu_loads_csv", "load_sample", "samples",
]


@dataclass(frozen=True)
class LoadedData:
    """A load ready to balance.

    weight: [layers, experts] float32; trace: [steps, layers, experts] or None;
    label: what the screen calls it; num_groups: a suggested expert-group count
    (the model's, else 1); params: URL query parameters that recreate it ({} for uploads);
    model: the ``eplb.presets`` name of the model it belongs to, None when unknown
    (engine files with one row per decoder layer need it).
    """

    weight: torch.Tensor
    trace: torch.Tensor | None
    label: str
    num_groups: int = 1
    params: dict[str, str] = field(default_factory=dict)
    model: str | None = None


@dataclass(frozen=True)
class Sample:
    """A built-in sample file: name (file stem, used in URLs), label, file, suggested group count, model preset,
    and the deployment it opens on (``{"nodes", "gpus_per_node", "redundant"}`` from samples.json; {} if unlisted)."""

    name: str
    label: str
    path: Path
    num_groups: int = 1
    model: str | None = None
    deployment: dict[str, int] = field(default_factory=dict)

    def describe_deployment(self) -> str:
        """E.g. "1 node x 4 GPUs, 8 redundant slots, 1 expert group"."""
        d = self.deployment
        if not d:
            return f"{self.num_groups} expert group{'s' if self.num_groups != 1 else ''}"
        return (f"{d['nodes']} node{'s' if d['nodes'] != 1 else ''} x {d['gpus_per_node']} GPUs, {d['redundant']} "
                f"redundant slots, {self.num_groups} expert group{'s' if self.num_groups != 1 else ''}")


def samples() -> dict[str, Sample]:
    """Built-in samples by name: every load file in sample_data/, labelled from samples.json where listed.

    The default sample comes first, then files in name order. Read again only when a file is added, removed or
    renamed (the folder's mtime) or samples.json changes: the sidebar asks on every rerun.
    """
    manifest_path = SAMPLE_DIR / "samples.json"
    manifest_mtime = manifest_path.stat().st_mtime_ns if manifest_path.exists() else None
    return dict(_samples(SAMPLE_DIR, SAMPLE_DIR.stat().st_mtime_ns, manifest_mtime))


@functools.lru_cache(maxsize=1)
def _samples(folder: Path, folder_mtime: int, manifest_mtime: int | None) -> dict[str, Sample]:
    manifest_path = folder / "samples.json"
    manifest = {e["file"]: e for e in json.loads(manifest_path.read_text())} if manifest_mtime is not None else {}
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lstrip(".") not in LOAD_EXTENSIONS or path.name == "samples.json":
            continue
        entry = manifest.get(path.name, {})
        found[path.stem] = Sample(path.stem, entry.get("label", path.stem), path, int(entry.get("num_groups", 1)),
                                  entry.get("preset") if entry.get("preset") in PRESETS else None,
                                  {k: int(v) for k, v in entry.get("deployment", {}).items()})
    ordered = sorted(found.values(), key=lambda s: (s.name != DEFAULT_SAMPLE, s.name))
    return {s.name: s for s in ordered}


@cached  # one tensor for every session (no pickled copy per rerun), so its digest is computed once
def _read_sample(path: str, mtime: float):
    return read_load_file(path)


def load_sample(name: str) -> LoadedData:
    """A built-in sample by name; ValueError naming the choices if there is none."""
    available = samples()
    if name not in available:
        raise ValueError(f"no built-in sample named {name!r}: choose one of {', '.join(available)}")
    sample = available[name]
    data = _read_sample(str(sample.path), sample.path.stat().st_mtime)
    return LoadedData(data.matrix, data.trace, f"sample: {sample.label}", sample.num_groups,
                      {"data": "sample", "sample": name}, sample.model)


@cached  # shared by sessions and bounded in bytes like every other computed load
def _generate(preset: str, family: str, skew: float, seed: int) -> torch.Tensor:
    shape = PRESETS[preset]
    return generate_load(family, shape.num_layers, shape.num_experts, seed=seed, skew=skew,
                         tokens=GENERATE_TOKENS, top_k=shape.top_k)


def generate(preset: str, family: str, skew: float | None, seed: int) -> LoadedData:
    """A synthetic load in a model's shape (``eplb.presets.PRESETS``) from ``eplb.workloads``.

    skew None takes the family's default. Raises ValueError (eplb's message) on bad parameters.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if family not in FAMILIES:
        raise ValueError(f"unknown workload family {family!r}: choose one of {', '.join(FAMILIES)}")
    skew = DEFAULT_SKEW[family] if skew is None else float(skew)
    weight = _generate(preset, family, skew, int(seed))
    return LoadedData(
        weight, None, f"generated: {preset}, {family} (skew {skew:g}), seed {seed}", PRESETS[preset].num_groups,
        {"data": "generate", "preset": preset, "family": family, "skew": f"{skew:g}", "seed": str(seed)}, preset,
    )


def from_uploads(files: list[tuple[str, bytes]]) -> LoadedData:
    """Read uploaded files (one load file, an engine's rank files, or a zip of them) with ``eplb.formats.read_loads``.

    Raises ValueError with the reader's message. The model is told from the shape when
    exactly one preset fits it (``eplb.presets.model_for_shape``), else left None for
    the sidebar to ask. This is the path st.file_uploader takes in the sidebar; tests
    call it with bytes.
    """
    loaded = read_loads(files)
    names = files[0][0] if len(files) == 1 else f"{files[0][0]} and {len(files) - 1} more"
    model = model_for_shape(*loaded.matrix.shape)
    return LoadedData(loaded.matrix, loaded.trace, f"upload: {names} ({loaded.format}, {loaded.description})",
                      model=model.name if model else None)


def from_upload(data: bytes, filename: str) -> LoadedData:
    """``from_uploads`` on one file."""
    return from_uploads([(filename, data)])


def gpu_loads_csv(loads: dict[str, torch.Tensor]) -> bytes:
    """Per-GPU loads as CSV, one row per (layer, GPU), one column per placement name, in tokens to two decimals.

    loads: name -> [layers, GPUs] (e.g. {"before": ..., "after": ...}).
    """
    columns = {name: t.double().flatten().numpy() for name, t in loads.items()}
    num_layers, num_gpus = next(iter(loads.values())).shape
    index = pd.MultiIndex.from_product([range(num_layers), range(num_gpus)], names=["layer", "gpu"])
    buffer = io.StringIO()
    pd.DataFrame(columns, index=index).round(2).to_csv(buffer)  # tokens: two decimals say all a copy split adds
    return buffer.getvalue().encode()

"""Read the serving engines' expert-load files; write placements (and loads) they load.

One registry, one module per engine family, each owning how its files are detected,
read and written:

======== ============================================================ ==============================
module   reads (loads, unless noted)                                  writes
======== ============================================================ ==============================
plain    CSV, ``.npy``/``.npz``, JSON list of lists, a torch tensor    csv, npy, pt, json; phy2log-csv
sglang   recorder dumps: stat, per_pass, per_token (rank files         sglang-json, sglang-pt
         summed); ``--init-expert-location`` (placement)              (placements); sglang-count-*
trtllm   expert statistics (meta_info.json + rank{r}.safetensors);    trtllm-yaml
         the static EPLB config (placement)
ascend   vllm-ascend / MindIE expert map (placement)                  ascend-json
adrs     expert-load.json (``load_history``)                           expert-load-json
native   the project's placement JSON (placement)                     vllm-json
======== ============================================================ ==============================

Loads: ``read_load(data, filename)`` for one file's bytes, ``read_loads`` for several
(an engine's rank files; a zip of files counts as its members), ``read_load_file`` /
``read_load_files`` for paths (a folder counts as its files; above ``MAX_BYTES`` an
SGLang dump or ``.npy`` is summed from disk in chunks). The format is detected from
the content; the file name is only a hint. Placements: ``write_placement(fmt, ...)``
for every key of ``PLACEMENT_FORMATS`` and ``read_placement`` for every layout.

The layer rule: SGLang's files have one row per decoder layer (dense layers
included), TensorRT-LLM keys its placement by decoder layer index and vllm-ascend's
map has MoE layers only. Writers marked so (``Writer.layers``) take the model
(``eplb.presets``), or find it from the data's shape; without one they refuse.

Nothing here runs code from a file: torch files load with ``weights_only=True``,
NumPy files with ``allow_pickle=False``; sizes and value counts are checked before
anything is allocated (``eplb.formats.safe``). Every problem is a ``FormatError``
naming the file, the field, what is wrong and what to do.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import torch

from ..presets import ModelNeeded, ModelPreset, resolve_model
from ..rebalance import Topology
from . import adrs, ascend, native, plain, safe, sglang, trtllm
from .registry import LoadLayout, Placement, PlacementLayout, Writer
from .safe import MAX_BYTES, MAX_ELEMENTS, FormatError, Parsed, fail, guarded
from .values import LoadData, check_phy2log, make_load, to_array

__all__ = [
    "FormatError", "LOAD_FORMATS", "LOAD_LAYOUTS", "LoadData", "MAX_BYTES", "MAX_ELEMENTS", "ModelNeeded",
    "PLACEMENT_FORMATS", "PLACEMENT_LAYOUTS", "Writer", "format_for_path", "layer_rule", "placement_problem",
    "read_load",
    "read_load_file", "read_load_files", "read_loads", "read_placement", "write_load", "write_placement",
]

LOAD_LAYOUTS: list[LoadLayout] = [*sglang.LOAD_LAYOUTS, *trtllm.LOAD_LAYOUTS, *adrs.LOAD_LAYOUTS, *plain.LOAD_LAYOUTS]
"""Load layouts, tried in order; the last (plain arrays) only when no engine layout matches."""

PLACEMENT_LAYOUTS: list[PlacementLayout] = [
    *sglang.PLACEMENT_LAYOUTS, *native.PLACEMENT_LAYOUTS, *ascend.PLACEMENT_LAYOUTS, *trtllm.PLACEMENT_LAYOUTS,
    *plain.PLACEMENT_LAYOUTS,
]

LOAD_FORMATS: dict[str, Writer] = {**plain.LOAD_FORMATS, **sglang.LOAD_FORMATS, **adrs.LOAD_FORMATS}
"""Load file formats: key -> Writer (label, extension, MIME type, write). Every one reads back with read_load."""

PLACEMENT_FORMATS: dict[str, Writer] = {
    **native.PLACEMENT_FORMATS, **sglang.PLACEMENT_FORMATS, **ascend.PLACEMENT_FORMATS, **trtllm.PLACEMENT_FORMATS,
    **plain.PLACEMENT_FORMATS,
}
"""Placement file formats: key -> Writer (label, extension, MIME type, write). Every one reads back with
read_placement."""


# ---------------------------------------------------------------- reading loads


def _layout(parsed: Parsed) -> LoadLayout:
    """The one load layout an opened file belongs to; FormatError when none or several match."""
    engines = [layout for layout in LOAD_LAYOUTS[:-1] if layout.detect(parsed)]
    if len(engines) > 1:
        raise fail(parsed.name, "", f"holds two layouts at once ({engines[0].hint}; {engines[1].hint}); a reader "
                   "would use one silently: keep one")
    if engines:
        return engines[0]
    if any(layout.detect(parsed) for layout in PLACEMENT_LAYOUTS[:-1]):
        raise fail(parsed.name, "", "this is a placement (physical_to_logical_map, phy2log, an expert map or "
                   "initial_global_assignments), not an expert load; open a load file: a matrix, an engine's dump "
                   "or statistics")
    if LOAD_LAYOUTS[-1].detect(parsed):
        return LOAD_LAYOUTS[-1]
    obj = parsed.obj
    if isinstance(obj, dict):
        hints = ", ".join(layout.hint for layout in LOAD_LAYOUTS)
        raise fail(parsed.name, "", f"a dict with keys {safe.keys_of(obj)} is not a known layout; expected {hints}")
    return LOAD_LAYOUTS[-1]  # the plain reader names what is wrong with the value


def _read(parsed: list[Parsed]) -> LoadData:
    if not parsed:
        raise FormatError("no files given; open a load file")
    if len(parsed) > safe.MAX_FILES:
        raise fail(parsed[0].name, "", f"{len(parsed):,} files, above the limit of {safe.MAX_FILES:,}")
    layouts = [_layout(p) for p in parsed]
    for p, layout in zip(parsed, layouts):
        if layout is not layouts[0]:
            raise fail(p.name, "", f"is {layout.name}, but {parsed[0].name} is {layouts[0].name}: open the files "
                       "of one dump together")
    if len(parsed) > 1 and not layouts[0].several:
        raise fail(parsed[0].name, "", f"{len(parsed)} files given, but {layouts[0].name} files are read one at a "
                   "time: open one (several files are for an engine's rank files)")
    with guarded(parsed[0].name):
        return layouts[0].read(parsed)


def read_loads(files: Iterable[tuple[str, bytes]]) -> LoadData:
    """Read an expert load from one or more files' (name, bytes); the format is detected from the content.

    Several files are an engine's rank files (SGLang per_pass/per_token dumps,
    TensorRT-LLM statistics) and are summed; a zip holding files counts as its members.
    Returns a LoadData with matrix [layers, experts] float32 and, for traces in order,
    trace [steps, layers, experts]. Raises FormatError naming the file and field.
    """
    parsed = []
    for filename, data in files:
        name = os.path.basename(filename) if filename else ""
        with guarded(name):
            parsed.extend(safe.parse(data, name))
    return _read(parsed)


def read_load(data: bytes, filename: str = "") -> LoadData:
    """``read_loads`` on one file's bytes."""
    return read_loads([(filename, data)])


def _files_in(paths: Sequence) -> list[str]:
    """Paths, each folder replaced by the regular files in it (hidden ones left out), in name order."""
    out = []
    for path in map(str, paths):
        if os.path.isdir(path):
            inside = sorted(os.path.join(path, f) for f in os.listdir(path) if not f.startswith("."))
            out.extend(f for f in inside if os.path.isfile(f))
            if not inside:
                raise fail(path, "", "is an empty folder; expected load files")
        else:
            out.append(path)
    return out


def read_load_files(paths: Sequence) -> LoadData:
    """``read_loads`` on paths; a folder counts as its files. Sizes are checked before a file is read.

    A file above ``MAX_BYTES`` is read only where its format allows summing it in chunks
    from disk: an SGLang dump (torch zip, memory-mapped) or a ``.npy`` trace.
    """
    parsed = []
    for path in _files_in(paths):
        with guarded(os.path.basename(path)):
            parsed.extend(safe.parse_path(path))
    return _read(parsed)


def read_load_file(path) -> LoadData:
    """``read_load_files`` on one path."""
    return read_load_files([path])


# ---------------------------------------------------------------- the layer rule


def layer_rule(writer: Writer, num_rows: int, num_experts: int, model: ModelPreset | None) -> ModelPreset | None:
    """The model a writer's layer rule uses for a [num_rows, num_experts] table (None when it keeps rows as given).

    Raises ModelNeeded when the writer needs the model and neither ``model`` nor the
    shape tells it, ValueError when the rows do not fit ``model``.
    """
    if writer.layers == "any":
        return model
    rows = "decoder layer, dense layers included" if writer.layers == "decoder" else "MoE layer"
    wants = f"{writer.label} wants one row per {rows}"
    return resolve_model(num_rows, num_experts, model, wants=wants)


def _rows(writer: Writer, table: torch.Tensor, model: ModelPreset | None, dense_row) -> tuple[torch.Tensor, tuple]:
    """A [(steps,) rows, X] table in the rows the writer wants, and the decoder layer index of each."""
    if writer.layers == "any":
        return table, tuple(range(table.shape[-2]))
    if writer.layers == "decoder":
        return model.decoder_rows(table, dense_row), tuple(range(model.num_decoder_layers))
    return model.moe_rows(table), tuple(model.moe_layer_ids)


def _writer(table: dict[str, Writer], fmt: str, what: str) -> Writer:
    if fmt not in table:
        raise ValueError(f"unknown {what} format {fmt!r}: choose one of {', '.join(table)}")
    return table[fmt]


# ---------------------------------------------------------------- writing


def write_load(fmt: str, load, *, model: ModelPreset | None = None) -> bytes:
    """Serialize a load [layers, experts] or trace [steps, layers, experts] in one of ``LOAD_FORMATS``.

    CSV holds one matrix: sum a trace first. expert-load.json holds a trace; a matrix
    is written as one step. SGLang's logical_count takes either, one row per decoder
    layer: dense layers get zero rows (the model from ``model`` or the shape).
    """
    writer = _writer(LOAD_FORMATS, fmt, "load")
    loaded = make_load(to_array(load, "load", ""), "", "load", "")
    data = loaded.trace if loaded.trace is not None else loaded.matrix
    model = layer_rule(writer, data.shape[-2], data.shape[-1], model)
    rows, _ = _rows(writer, data, model, None)
    return writer.write(rows)


def _placement(fmt: str, phy2log, topology: Topology, mode: str, policy: str,
               model: ModelPreset | None) -> tuple[Writer, Placement]:
    """Every check of ``write_placement`` short of writing: the writer and the placement it would write."""
    writer = _writer(PLACEMENT_FORMATS, fmt, "placement")
    table = check_phy2log(phy2log)
    if table.shape[1] != topology.num_replicas:
        raise ValueError(f"phy2log has {table.shape[1]} slots per layer, but the topology has "
                         f"num_replicas={topology.num_replicas}")
    num_experts = int(table.max()) + 1
    resolved = topology.validate(num_experts, mode)
    model = layer_rule(writer, table.shape[0], num_experts, model)
    dense_row = None if model is None else model.trivial_row(table.shape[1])
    rows, layer_ids = _rows(writer, table, model, dense_row)
    placement = Placement(rows, layer_ids, topology, resolved, policy, model)
    if writer.check:
        writer.check(placement)
    return writer, placement


def write_placement(fmt: str, phy2log, topology: Topology, *, mode: str, policy: str,
                    model: ModelPreset | None = None) -> bytes:
    """Serialize a placement phy2log [layers, P] in one of ``PLACEMENT_FORMATS``.

    The topology is checked against the placement; ``mode`` is stored resolved ("auto"
    becomes "hierarchical" or "global"). Formats with a layer rule take the model from
    ``model`` or from the shape (``layer_rule``); dense layers get the trivial map.
    """
    writer, placement = _placement(fmt, phy2log, topology, mode, policy, model)
    return writer.write(placement)


def placement_problem(fmt: str, phy2log, topology: Topology, *, mode: str,
                      model: ModelPreset | None = None) -> str | None:
    """Why ``write_placement`` would refuse this placement in this format, or None; nothing is serialized.

    A missing model reads as ModelNeeded's message: the caller adds how to name it.
    """
    try:
        _placement(fmt, phy2log, topology, mode, "", model)
    except ValueError as exc:  # ModelNeeded, FormatError and the engines' refusals
        return str(exc)
    return None


def format_for_path(path, formats: dict[str, Writer]) -> str:
    """The format an output path's extension names: the default one for it; ValueError when it names none or several."""
    suffix = os.path.splitext(str(path))[1].lower()
    suffix = {".yml": ".yaml", ".pth": ".pt"}.get(suffix, suffix)
    candidates = [key for key, writer in formats.items() if writer.extension == suffix]
    chosen = [key for key in candidates if formats[key].default]
    if chosen:
        return chosen[0]
    base = os.path.basename(str(path))
    if candidates:
        raise ValueError(f"{base!r}: several formats write {suffix} files, so name one with --format: "
                         + "; ".join(f"{key} ({formats[key].label})" for key in candidates))
    known = ", ".join(sorted({writer.extension for writer in formats.values()}))
    raise ValueError(f"cannot tell the format from the name {base!r}: use one of the extensions {known}, "
                     "or pass --format")


# ---------------------------------------------------------------- reading placements back


def read_placement(data: bytes, filename: str = "") -> torch.Tensor:
    """Read a placement back: phy2log [rows, P] int64, the rows as the file has them.

    Accepts every ``PLACEMENT_FORMATS`` layout and a plain [layers, P] integer array,
    and checks what the engine that reads the file relies on (one key in an SGLang
    file, no extra keys for TensorRT-LLM, one copy per expert per device for vllm-ascend,
    logcnt matching phy2log in the project's JSON).
    """
    name = os.path.basename(filename) if filename else ""
    with guarded(name):
        parsed = safe.parse(data, name)
        if len(parsed) != 1:
            raise fail(name, "", f"is a zip of {len(parsed)} files; open one placement file")
        (one,) = parsed
        for layout in PLACEMENT_LAYOUTS:
            if layout.detect(one):
                return layout.read(one)
        raise fail(name, "", f"no 'phy2log', 'physical_to_logical_map', 'layer_list' or 'initial_global_assignments' "
                   f"among keys {safe.keys_of(one.obj)}; expected a placement file")

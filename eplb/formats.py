"""Read the serving engines' expert-load dumps; write placements they load.

Loads (``read_load``), detected from the content, the file name only a hint:

* plain arrays in CSV, NumPy ``.npy``/``.npz``, JSON list of lists, or a torch ``.pt``
  holding one tensor: ``[layers, experts]`` load, ``[steps, layers, experts]`` trace,
  or ``[experts]`` for a single layer;
* SGLang's expert-distribution recorder, stat mode: a dict with ``logical_count``
  ``[steps, layers, experts]``;
* SGLang's per-token mode: ``records`` of ``topk_ids_of_layer [layers, tokens, top_k]``
  with ``last_physical_to_logical_map``, counted per expert;
* vLLM's ``expert-load.json``: ``load_history[*].logical_expert_load`` ``[layers, experts]``.

Placements (``write_placement`` / ``read_placement``): SGLang ``--init-expert-location``
(``physical_to_logical_map`` as JSON or ``.pt``), a vLLM-style JSON with ``phy2log``,
``log2phy``, ``logcnt`` and the topology, and a CSV of ``phy2log``.

Nothing here runs code from a file: torch files load with ``weights_only=True`` and
NumPy files with ``allow_pickle=False``. Files above ``MAX_BYTES`` (packed or unpacked)
and arrays above ``MAX_ELEMENTS`` values are refused before anything is allocated.
Every value read goes through one check (``_to_tensor``, then ``_check_load``): dense
real numbers, at most 3-D, finite, >= 0 and within float32's range. Any problem is a
``FormatError`` naming the file, the field, what is wrong and what to do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .policies.base import copy_counts
from .rebalance import Topology, log2phy_from_phy2log, validate_weight

MAX_BYTES = 256 * 2**20
"""Largest file read, in bytes (256 MiB); a zip archive (.pt, .npz) may unpack to as much."""

MAX_ELEMENTS = 2**26
"""Most values in the arrays of one file (64 Mi: 512 MiB as float64)."""

FLOAT32_MAX = float(torch.finfo(torch.float32).max)

REAL_DTYPES = frozenset({
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64,
})
"""Tensor dtypes read as loads; bool, complex, float8 and quantized tensors are refused."""


class FormatError(ValueError):
    """A file that cannot be read; the message names the file, the field, what was expected and what to do."""


@dataclass(frozen=True)
class LoadData:
    """An expert load read from a file.

    matrix: [layers, experts] float32 load (a trace summed over its steps).
    trace: [steps, layers, experts] float32 when the file holds one step per row, else None.
    format: short name of what was detected, e.g. "CSV", "SGLang stat dump".
    description: one line: shape, dtype and what was understood.
    """

    matrix: torch.Tensor
    trace: torch.Tensor | None
    format: str
    description: str


LOAD_SHAPES = "[layers, experts] load or [steps, layers, experts] trace"
_LAYER_LABELS = {"", "layer", "layers", "layer_id", "layer_idx", "layer_index", "index", "idx", "#"}


def _fail(name: str, field: str, message: str) -> FormatError:
    where = name or "the file"
    return FormatError(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def _short(value, limit: int = 60) -> str:
    """repr(value) on one line, cut to ``limit`` characters: safe to put a file's content in a message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keys(obj: dict) -> str:
    """A dict's first keys, for a message."""
    return _short(sorted(str(key)[:24] for key in obj)[:8], 200)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), at most 160 characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:160]


def _damaged(name: str, container: str, exc: Exception, advice: str) -> FormatError:
    """The error for whatever a third-party reader (pickle, zipfile, zlib, NumPy's header parser) raised on bad bytes.

    Those readers raise many types on damaged input (IndexError, struct.error, zlib.error,
    SyntaxError, ...); this is used only around their calls, never around our own code.
    """
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"  # struct.error, zlib.error
    return _fail(name, "", f"not a readable {container} (truncated or damaged?): {kind}: {_reason(exc)}; {advice}")


def _shape(t) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _too_many(name: str, field: str, count: int, what: str = "values") -> FormatError:
    return _fail(name, field, f"holds {count:,} {what}, above the limit of {MAX_ELEMENTS:,}; "
                 "sum or slice the data first (e.g. fewer steps)")


# ---------------------------------------------------------------- turning values into tensors


def _to_tensor(value, name: str, field: str) -> torch.Tensor:
    """A tensor, NumPy array or nested list of numbers -> a dense CPU tensor of real numbers in its own dtype.

    Checks what every container shares: the value is an array, of numbers (no bool,
    complex, text, float8), dense, and within ``MAX_ELEMENTS``. Shape and values are
    ``_check_load``'s.
    """
    if isinstance(value, (list, tuple, int, float)) and not isinstance(value, bool):
        try:
            array = np.array(value)  # 3x faster than torch.tensor on nested lists
        except (TypeError, ValueError, OverflowError):
            array = None
        if array is None or array.dtype.kind not in "iuf":
            raise _fail(name, *_locate_bad_element(value, field))
        value = array
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise _fail(name, field, _not_numbers(value.dtype))
        if value.size > MAX_ELEMENTS:
            raise _too_many(name, field, value.size)
        # torch takes neither wide unsigned ints, long doubles nor big-endian data, and wants a writable array
        dtype = np.float64 if value.dtype.kind == "u" or value.dtype.itemsize > 8 else value.dtype.newbyteorder("=")
        return torch.from_numpy(np.asarray(value, dtype=dtype, order="C").copy())
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise _fail(name, field, f"is a {str(value.layout).removeprefix('torch.')} tensor; save a dense one "
                        "(tensor.to_dense())")
        if value.dtype not in REAL_DTYPES:
            raise _fail(name, field, _not_numbers(_dtype_name(value.dtype)))
        if value.numel() > MAX_ELEMENTS:
            raise _too_many(name, field, value.numel())
        return value.detach().cpu()
    raise _fail(name, field, f"is a {type(value).__name__}, expected an array of numbers")


def _not_numbers(dtype) -> str:
    return f"holds {dtype} values, expected numbers: integers or real numbers (float16, float32 or float64); " \
        "convert before saving, e.g. array.astype(float) or tensor.float()"


def _locate_bad_element(value, field: str) -> tuple[str, str]:
    """Walk a nested list to the first ragged row or non-number: (field path, message)."""

    def depth_shape(v):
        shape = []
        while isinstance(v, (list, tuple)):
            shape.append(len(v))
            if not v:
                break
            v = v[0]
        return shape

    shape = depth_shape(value)
    if len(shape) > 3:
        return field, f"is nested {len(shape)} lists deep ({len(shape)}-D), expected a {LOAD_SHAPES}"

    def walk(v, path, level):
        if level == len(shape):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return path, f"is {_short(v)}, expected a number"
            if isinstance(v, int) and not -2**63 <= v < 2**64:
                return path, f"is {_short(v)}, a number too large to read as a token count"
            return None
        if not isinstance(v, (list, tuple)):
            return path, f"is {_short(v)}, expected a list of {shape[level]} values (rows must be the same length)"
        if len(v) != shape[level]:
            return path, f"has {len(v)} values, expected {shape[level]} like the first (rows must be the same length)"
        for i, item in enumerate(v):
            found = walk(item, f"{path}[{i}]", level + 1)
            if found:
                return found
        return None

    return walk(value, field, 0) or (field, "is not a rectangular array of numbers")


def _check_load(tensor: torch.Tensor, name: str, field: str) -> torch.Tensor:
    """Validate a 1-D, 2-D or 3-D load from ``_to_tensor`` (finite, >= 0, within float32) -> float32.

    The values are checked as float64, whatever the file's dtype, so nothing overflows or
    wraps on the way; a trace's sum over steps must fit float32 too.
    """
    if tensor.dim() not in (1, 2, 3):
        raise _fail(
            name, field, f"has shape {_shape(tensor)} ({tensor.dim()}-D), expected a {LOAD_SHAPES}; "
            "select or reshape the data to one of these before saving"
        )
    if tensor.numel() == 0:
        raise _fail(name, field, f"is empty (shape {_shape(tensor)}), expected a {LOAD_SHAPES}")
    values = tensor.double()
    try:
        validate_weight(values.reshape(-1, values.shape[-1]))
    except ValueError as whole:
        if values.dim() < 3:
            raise _fail(name, field, str(whole).removeprefix("weight ")) from None
        for step, matrix in enumerate(values):  # name the first step at fault, in its own layer numbering
            try:
                validate_weight(matrix)
            except ValueError as exc:
                raise _fail(name, f"{field}, step {step}", str(exc).removeprefix("weight ")) from None
    largest = float((values.sum(0) if values.dim() == 3 else values).max())
    if largest > FLOAT32_MAX:
        summed = " (summed over steps)" if values.dim() == 3 else ""
        raise _fail(name, field, f"has loads up to {largest:.3g}{summed}, beyond float32's largest "
                    f"({FLOAT32_MAX:.3g}); scale the loads down")
    return values.to(torch.float32)


def _load_data(tensor: torch.Tensor, fmt: str, name: str, field: str, understood: str = "") -> LoadData:
    """Validate a 1-D/2-D/3-D load and package it; 3-D is a trace summed over steps."""
    dtype = _dtype_name(tensor.dtype)
    shape = _shape(tensor)
    load = _check_load(tensor, name, field)
    if load.dim() == 3:
        matrix = load.sum(dim=0)
        steps, layers, experts = load.shape
        text = f"{shape} {dtype}: trace of {steps} step{'s' if steps != 1 else ''} x {layers} layers x {experts} " \
            f"experts, summed over steps into a [{layers}, {experts}] load"
        return LoadData(matrix, load, fmt, text + (f"; {understood}" if understood else ""))
    if load.dim() == 1:
        text = f"{shape} {dtype}: a 1-D vector, read as one layer of {load.shape[0]} experts"
        load = load.unsqueeze(0)
    else:
        text = f"{shape} {dtype}: {load.shape[0]} layer{'s' if load.shape[0] != 1 else ''} x {load.shape[1]} experts"
    return LoadData(load, None, fmt, text + (f"; {understood}" if understood else ""))


# ---------------------------------------------------------------- the engines' layouts


def _from_object(obj, fmt: str, name: str, field: str = "") -> LoadData:
    """Interpret a loaded object: an array, or a dict in one of the engines' layouts."""
    if isinstance(obj, dict):
        keys = set(obj)
        if "logical_count" in keys:
            return _load_data(_to_tensor(obj["logical_count"], name, "logical_count"), "SGLang stat dump",
                              name, "logical_count", "SGLang expert-distribution recorder (stat mode)")
        if "load_history" in keys:
            return _from_vllm_history(obj["load_history"], name)
        if "records" in keys:
            return _from_sglang_records(obj, name)
        if keys & {"physical_to_logical_map", "phy2log"}:
            raise _fail(name, "", "this is a placement (physical_to_logical_map / phy2log), not an expert load; "
                        "open a load file: a matrix, an SGLang stat dump or vLLM's expert-load.json")
        arrays = [k for k, v in obj.items() if isinstance(v, (torch.Tensor, np.ndarray, list))]
        if len(arrays) == 1:
            key = _short(arrays[0], 40).strip("'")
            return _load_data(_to_tensor(obj[arrays[0]], name, key), fmt, name, key, f"the only array, {key!r}")
        raise _fail(
            name, "", f"a dict with keys {_keys(obj)} is not a known layout; expected "
            "'logical_count' (SGLang), 'load_history' (vLLM expert-load.json), 'records' (SGLang per-token) "
            "or a single array"
        )
    return _load_data(_to_tensor(obj, name, field or "array"), fmt, name, field or "array")


def _tensors_in(entries, name: str, list_field: str, key: str, layout: str) -> list[torch.Tensor]:
    """``key`` of each dict in a list (load_history, records), as tensors."""
    if not isinstance(entries, list) or not entries:
        raise _fail(name, list_field, f"expected a non-empty list of dicts with {key!r} {layout}")
    tensors = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or key not in entry:
            raise _fail(name, f"{list_field}[{i}]", f"expected a dict with {key!r} {layout}")
        tensors.append(_to_tensor(entry[key], name, f"{list_field}[{i}].{key}"))
    return tensors


def _from_vllm_history(history, name: str) -> LoadData:
    steps = _tensors_in(history, name, "load_history", "logical_expert_load", "[layers, experts]")
    for i, step in enumerate(steps):
        if step.dim() != 2 or step.shape != steps[0].shape:
            like = f" like load_history[0] {_shape(steps[0])}" if i else ""
            raise _fail(name, f"load_history[{i}].logical_expert_load",
                        f"has shape {_shape(step)}, expected [layers, experts]{like}")
    if len(steps) * steps[0].numel() > MAX_ELEMENTS:
        raise _too_many(name, "load_history", len(steps) * steps[0].numel())
    return _load_data(torch.stack(steps), "vLLM expert-load.json", name, "load_history",
                      "vLLM load history, one entry per logging step")


def _expert_ids(tensor: torch.Tensor, name: str, field: str, lowest: int) -> torch.Tensor:
    """Integer ids >= ``lowest`` (-1 marks padding in topk ids) -> int64."""
    if tensor.is_floating_point() and tensor.numel():
        raise _fail(name, field, f"holds {_dtype_name(tensor.dtype)} values, expected integer ids")
    ids = tensor.long()
    if ids.numel() and int(ids.min()) < lowest:
        raise _fail(name, field, f"holds id {int(ids.min())}, expected ids >= {lowest}"
                    + (" (-1 marks padding)" if lowest < 0 else ""))
    return ids


def _from_sglang_records(obj: dict, name: str) -> LoadData:
    """Count SGLang per-token records: each topk id (a physical slot) mapped to its logical expert.

    The ids and the map are checked before counting, and the count matrix
    [steps, layers, experts] must fit ``MAX_ELEMENTS``.
    """
    topks = _tensors_in(obj["records"], name, "records", "topk_ids_of_layer", "[layers, tokens, top_k]")
    ids = []  # per record: [layers, tokens * top_k]; -1 marks padding
    for i, topk in enumerate(topks):
        field = f"records[{i}].topk_ids_of_layer"
        if topk.dim() != 3 or topk.shape[0] != topks[0].shape[0] or topk.shape[0] == 0:
            raise _fail(name, field, f"has shape {_shape(topk)}, expected [layers, tokens, top_k] with the same "
                        "layer count (at least 1) in every record")
        ids.append(_expert_ids(topk, name, field, lowest=-1).flatten(1))
    largest = max((int(t.max()) for t in ids if t.numel()), default=-1)
    if largest < 0:
        raise _fail(name, "records", "every topk_ids_of_layer is empty or padding (-1): no token was routed")
    num_layers = ids[0].shape[0]
    mapping = obj.get("last_physical_to_logical_map")
    if mapping is not None:
        field = "last_physical_to_logical_map"
        mapping = _expert_ids(_to_tensor(mapping, name, field), name, field, lowest=0)
        if mapping.dim() != 2 or mapping.shape[0] != num_layers or mapping.shape[1] == 0:
            raise _fail(name, field, f"has shape {_shape(mapping)}, expected [{num_layers}, physical slots]")
        if largest >= mapping.shape[1]:
            i = next(i for i, t in enumerate(ids) if t.numel() and int(t.max()) == largest)
            raise _fail(name, f"records[{i}].topk_ids_of_layer",
                        f"has slot id {largest}, but the map has {mapping.shape[1]} slots")
        num_experts = int(mapping.max()) + 1
        assumed = f"topk ids are physical slots, mapped through last_physical_to_logical_map ({num_experts} experts)"
    else:
        num_experts = largest + 1
        assumed = f"no last_physical_to_logical_map: topk ids taken as logical experts, {num_experts} experts " \
            "assumed (largest id + 1)"
    if len(ids) * num_layers * num_experts > MAX_ELEMENTS:
        raise _fail(name, "records", f"expert ids up to {num_experts - 1} would make {len(ids)} x {num_layers} x "
                    f"{num_experts} counts, above the limit of {MAX_ELEMENTS:,}; are these really expert ids?")
    counts = []
    for topk in ids:
        valid = topk >= 0
        experts = topk.clamp(min=0) if mapping is None else mapping.gather(1, topk.clamp(min=0))
        counts.append(torch.zeros(num_layers, num_experts, dtype=torch.int64).scatter_add_(1, experts, valid.long()))
    return _load_data(torch.stack(counts), "SGLang per-token dump", name, "records",
                      f"one step per record; {assumed}; one rank's tokens only")


# ---------------------------------------------------------------- containers


def _torch_load(data: bytes, name: str):
    """torch.load with weights_only=True; the tensors it returns must fit ``MAX_ELEMENTS`` together."""
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise _fail(
            name, "", f"refused: torch's safe loader (weights_only) rejected it ({_unpickler_reason(exc)}): the file "
            "holds Python objects that could run code when loaded, or it is damaged; save plain tensors: "
            "torch.save(tensor) or a dict of tensors"
        ) from None
    except Exception as exc:  # pickle and torch's reader raise many types on damaged bytes
        raise _damaged(name, "torch.save file", exc, "save it again with torch.save") from None
    _check_tensor_sizes(obj, name)
    return obj


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own complaint, without torch's advice to load the file unsafely."""
    message = str(exc).split("\n\nCheck the documentation", 1)[0]  # torch's wrapping: advice, the error, docs
    if "WeightsUnpickler error:" in message:
        message = message.split("WeightsUnpickler error:", 1)[1]
    paragraphs = [p.strip() for p in message.split("\n\n") if p.strip()]
    return _reason(paragraphs[-1].split(". ")[0].rstrip(".") if paragraphs else exc)


def _check_tensor_sizes(obj, name: str) -> None:
    """All tensors in a loaded object together hold at most ``MAX_ELEMENTS`` values.

    A file can hold views (expand, stride 0) far larger than its bytes; this runs before
    any of them is copied.
    """
    total, seen, todo = 0, set(), [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            total += item.numel()
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    if total > MAX_ELEMENTS:
        raise _too_many(name, "", total, "values in its tensors")


_READ_NPY_HEADER = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(data: bytes, name: str, member: str = "") -> np.ndarray:
    """One .npy payload (a file, or an .npz member); its header is checked before NumPy allocates anything."""
    advice = "save it again with np.save"
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = _READ_NPY_HEADER.get(version)
        header = read_header(stream) if read_header else None
    except Exception as exc:  # NumPy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise _damaged(name, "NumPy file" + (f" (member {member!r})" if member else ""), exc, advice) from None
    if header is None:
        raise _fail(name, member, f"NumPy format version {version[0]}.{version[1]} is for structured arrays; "
                    "save a plain numeric array with np.save")
    shape, _, dtype = header
    if dtype.hasobject:
        raise _fail(name, member, "refused: the array holds Python objects, and loading them could run code; "
                    "save a numeric array (np.save with a float or int dtype)")
    available = len(data) - stream.tell()
    needed = math.prod(shape) * dtype.itemsize
    if min(shape, default=0) < 0 or needed > available:
        raise _fail(name, member, f"the header claims a {list(shape)} {dtype} array ({needed:,} bytes) but only "
                    f"{available:,} bytes follow: truncated or damaged; {advice}")
    try:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise _damaged(name, "NumPy file", exc, advice) from None


def _read_npz(archive: zipfile.ZipFile, name: str) -> dict[str, np.ndarray]:
    arrays = {}
    for member in archive.infolist():
        try:
            payload = archive.read(member)
        except Exception as exc:  # zlib.error, bad CRC, unsupported compression, ...
            raise _damaged(name, f"NumPy .npz archive (member {member.filename!r})", exc,
                           "save it again with np.savez") from None
        key = member.filename.removesuffix(".npy")
        arrays[key] = _read_npy(payload, name, key)
    return arrays


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(lines: list[str], name: str) -> list[list[str]]:
    """Split lines into cells on the first line's delimiter (comma, tab, semicolon, else whitespace)."""
    delimiter = next((d for d in (",", "\t", ";") if d in lines[0]), None)
    if delimiter is None:
        return [line.split() for line in lines]
    try:
        return [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]
    except csv.Error as exc:  # a NUL byte, a cell over the csv module's field size limit
        raise _fail(name, "", f"not readable as CSV: {_reason(exc)}; expected one row per layer, one column "
                    "per expert") from None


def _read_csv(text: str, name: str) -> LoadData:
    """A matrix of numbers, one row per layer; an optional header row and first column of layer labels.

    Every cell is read as float64 and checked like any other container's values.
    """
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise _fail(name, "", "no rows of numbers; expected one row per layer, one column per expert")
    rows = _csv_rows(lines, name)
    notes = []
    skip_label_column = False
    if not all(_is_number(cell) for cell in rows[0][1:]) or (rows[0] and rows[0][0].lower() in _LAYER_LABELS):
        header = rows.pop(0)
        skip_label_column = bool(header) and header[0].strip().lower() in _LAYER_LABELS
        notes.append("skipped a header row")
        if not rows:
            raise _fail(name, "", "has a header row but no rows of numbers")
    if not skip_label_column and all(len(row) > 1 and not _is_number(row[0]) for row in rows):
        skip_label_column = True
    if skip_label_column:
        rows = [row[1:] for row in rows]
        notes.append("skipped a first column of layer labels")
    width = len(rows[0])
    if len(rows) * width > MAX_ELEMENTS:
        raise _too_many(name, "values", len(rows) * width)
    start = 2 if "skipped a header row" in notes else 1
    for r, row in enumerate(rows):
        line_no = r + start
        if len(row) != width:
            raise _fail(name, f"row {line_no}", f"has {len(row)} values, expected {width} like the first row "
                        "(truncated file or ragged rows?)")
        for c, cell in enumerate(row):
            if not _is_number(cell):
                col = c + 1 + skip_label_column
                raise _fail(name, f"row {line_no}, column {col}", f"{_short(cell)} is not a number; "
                            "every cell after the header must be a token count")
    values = torch.tensor([[float(cell) for cell in row] for row in rows], dtype=torch.float64)
    return _load_data(values, "CSV", name, "values", ", ".join(notes))


def _decode_text(data: bytes, name: str) -> str:
    """UTF-8 text, else Latin-1 (older tools' 8-bit text) unless it holds control characters: then binary."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        if re.search("[\x80-\x9f]", text):  # C1 controls: binary, not Latin-1 text
            text = None
    if text is None or re.search("[\x00-\x08]", text[:4096]):
        raise _fail(name, "", "not a recognised format: expected CSV, JSON, NumPy .npy/.npz or a torch .pt file "
                    "(binary content that is none of these)")
    return text


def _parse_json(text: str, name: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(name, f"line {exc.lineno}, column {exc.colno}",
                    f"invalid JSON ({exc.msg}); truncated file? expected a list of lists or an engine dump") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise _fail(name, "", "holds a number of over 4300 digits; expected token counts") from None
    except RecursionError:
        raise _fail(name, "", "holds lists nested too deep to read; expected a list of lists or an engine dump") from None


def _check_size(size: int, name: str, unpacked: bool = False) -> None:
    if size > MAX_BYTES:
        what = "unpacks to" if unpacked else "is"
        raise _fail(name, "", f"{what} {size / 2**20:.1f} MiB, above the {MAX_BYTES / 2**20:.0f} MiB limit; "
                    "sum or slice the data first (e.g. fewer steps)")
    if size == 0:
        raise _fail(name, "", "is empty; expected a load file")


def _parse(data: bytes, name: str):
    """Detect the container from the content -> (format name, loaded object); CSV text is returned as str."""
    _check_size(len(data), name)
    if data.startswith(b"\x93NUMPY"):
        return "NumPy .npy", _read_npy(data, name)
    if data.startswith(b"PK"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except Exception as exc:  # BadZipFile, UnicodeDecodeError in a member name, ...
            raise _damaged(name, "zip archive (torch .pt or NumPy .npz)", exc, "save it again") from None
        _check_size(sum(member.file_size for member in members), name, unpacked=True)
        if members and all(member.filename.endswith(".npy") for member in members):
            return "NumPy .npz", _read_npz(archive, name)
        return "torch .pt", _torch_load(data, name)
    if data[:1] == b"\x80":  # a pickle stream: torch's legacy (non-zip) format
        return "torch .pt", _torch_load(data, name)
    text = _decode_text(data, name)
    if not text.strip():
        raise _fail(name, "", "is empty (only whitespace); expected a load file")
    if text.lstrip()[:1] in "[{":
        return "JSON", _parse_json(text, name)
    return "CSV", text


def read_load(data: bytes, filename: str = "") -> LoadData:
    """Read an expert load from a file's bytes; the format is detected from the content.

    Returns a LoadData with matrix [layers, experts] float32 and, for traces,
    trace [steps, layers, experts]. Raises FormatError naming the file and field.
    """
    name = os.path.basename(filename) if filename else ""
    fmt, obj = _parse(data, name)
    if fmt == "CSV":
        return _read_csv(obj, name)
    return _from_object(obj, fmt, name)


def read_load_file(path) -> LoadData:
    """``read_load`` on a path; the size limit is checked before the file is read."""
    name = os.path.basename(str(path))
    try:
        _check_size(os.path.getsize(path), name)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise _fail(str(path), "", f"cannot be read: {exc.strerror or exc}") from None
    return read_load(data, name)


# ---------------------------------------------------------------- writing loads


LOAD_FORMATS: dict[str, tuple[str, str, str]] = {
    "csv": ("CSV matrix (one row per layer)", ".csv", "text/csv"),
    "npy": ("NumPy .npy", ".npy", "application/octet-stream"),
    "pt": ("torch .pt tensor", ".pt", "application/octet-stream"),
    "json": ("JSON list of lists", ".json", "application/json"),
    "sglang-count-json": ("SGLang --init-expert-location logical_count (.json)", ".json", "application/json"),
    "sglang-count-pt": ("SGLang --init-expert-location logical_count (.pt)", ".pt", "application/octet-stream"),
    "vllm-load-json": ("vLLM expert-load.json (load_history)", ".json", "application/json"),
}
"""Load file formats: key -> (download label, file extension, MIME type). Every one reads back with read_load."""


def _plain_numbers(load: torch.Tensor):
    """Nested lists, integers where every value is whole (token counts), floats otherwise."""
    return (load.long() if bool((load == load.round()).all()) else load.double()).tolist()


def write_load(fmt: str, load) -> bytes:
    """Serialize a load [layers, experts] or trace [steps, layers, experts] in one of ``LOAD_FORMATS``.

    CSV holds one matrix: sum a trace first. vLLM's load history holds a trace;
    a matrix is written as one step. SGLang's logical_count takes either.
    """
    if fmt not in LOAD_FORMATS:
        raise ValueError(f"unknown load format {fmt!r}: choose one of {', '.join(LOAD_FORMATS)}")
    load = _check_load(_to_tensor(load, "", "load"), "load", "")
    if load.dim() == 1:
        load = load.unsqueeze(0)
    if fmt == "csv":
        if load.dim() == 3:
            raise ValueError(f"CSV holds one [layers, experts] matrix, got a trace {_shape(load)}: "
                             "sum it over steps first, or write .npy, .pt or .json to keep the steps")
        out = io.StringIO()
        out.write(",".join(f"expert_{e}" for e in range(load.shape[1])) + "\n")
        for row in _plain_numbers(load):
            out.write(",".join(map(str, row)) + "\n")
        return out.getvalue().encode()
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, load.numpy())
        return buffer.getvalue()
    if fmt in ("pt", "sglang-count-pt"):
        buffer = io.BytesIO()
        torch.save(load.clone() if fmt == "pt" else {"logical_count": load.clone()}, buffer)
        return buffer.getvalue()
    if fmt == "json":
        return json.dumps(_plain_numbers(load)).encode()
    if fmt == "sglang-count-json":
        return json.dumps({"logical_count": _plain_numbers(load)}).encode()
    steps = load if load.dim() == 3 else load.unsqueeze(0)
    return json.dumps({"load_history": [{"logical_expert_load": step} for step in _plain_numbers(steps)]}).encode()


def format_for_path(path, formats: dict[str, tuple[str, str, str]]) -> str:
    """The first format in ``formats`` whose extension ends ``path``; ValueError if none does."""
    suffix = os.path.splitext(str(path))[1].lower()
    for key, (_, ext, _) in formats.items():
        if ext == suffix:
            return key
    known = ", ".join(sorted({ext for _, ext, _ in formats.values()}))
    raise ValueError(f"cannot tell the format from the name {os.path.basename(str(path))!r}: "
                     f"use one of the extensions {known}, or pass --format")


# ---------------------------------------------------------------- placements


PLACEMENT_FORMATS: dict[str, tuple[str, str, str]] = {
    "vllm-json": ("vLLM-style JSON (phy2log, log2phy, logcnt, topology)", ".json", "application/json"),
    "sglang-json": ("SGLang --init-expert-location (.json)", ".json", "application/json"),
    "sglang-pt": ("SGLang --init-expert-location (.pt)", ".pt", "application/octet-stream"),
    "phy2log-csv": ("phy2log as CSV (one row per layer)", ".csv", "text/csv"),
}
"""Placement file formats: key -> (download label, file extension, MIME type)."""


def _check_phy2log(phy2log, name: str = "", field: str = "phy2log", num_experts: int | None = None) -> torch.Tensor:
    """phy2log [layers, P] of expert ids, every expert 0..E-1 in every layer -> int64 tensor."""
    table = _to_tensor(phy2log, name, field)
    if table.dim() != 2 or table.numel() == 0:
        raise _fail(name, field, f"has shape {_shape(table)}, expected [layers, physical slots]")
    if table.is_floating_point():
        table = table.double()
        if not bool(torch.isfinite(table).all()) or bool((table != table.round()).any()):
            raise _fail(name, field, "holds non-integer values, expected logical expert ids 0, 1, ...")
        if float(table.abs().max()) > 2**62:
            raise _fail(name, field, f"holds ids up to {float(table.abs().max()):.3g}, expected logical expert ids "
                        "0, 1, ...")
    table = table.long()
    if bool((table < 0).any()):
        raise _fail(name, field, f"holds negative expert ids (min {int(table.min())}), expected ids 0, 1, ...")
    experts = int(table.max()) + 1 if num_experts is None else num_experts
    if int(table.max()) >= experts:
        raise _fail(name, field, f"holds expert id {int(table.max())}, but there are {experts} experts")
    if experts > table.shape[1]:
        raise _fail(name, field, f"has {table.shape[1]} slots per layer for {experts} experts; every expert needs "
                    "a slot")
    present = torch.zeros(table.shape[0], experts, dtype=torch.bool).scatter_(1, table, True)
    if not bool(present.all()):
        layer, expert = (int(i) for i in (~present).nonzero()[0])
        raise _fail(name, field, f"layer {layer} has no slot for expert {expert}; every expert needs a slot")
    return table


def write_placement(fmt: str, phy2log, topology: Topology, *, mode: str, policy: str) -> bytes:
    """Serialize a placement phy2log [layers, P] in one of ``PLACEMENT_FORMATS``.

    The topology is checked against the placement; ``mode`` is stored resolved
    ("auto" becomes "hierarchical" or "global").
    """
    if fmt not in PLACEMENT_FORMATS:
        raise ValueError(f"unknown placement format {fmt!r}: choose one of {', '.join(PLACEMENT_FORMATS)}")
    table = _check_phy2log(phy2log)
    if table.shape[1] != topology.num_replicas:
        raise ValueError(f"phy2log has {table.shape[1]} slots per layer, but the topology has "
                         f"num_replicas={topology.num_replicas}")
    num_experts = int(table.max()) + 1
    resolved = topology.validate(num_experts, mode)
    if fmt == "phy2log-csv":
        out = io.StringIO()
        out.write(",".join(f"slot_{p}" for p in range(table.shape[1])) + "\n")
        for row in table.tolist():
            out.write(",".join(map(str, row)) + "\n")
        return out.getvalue().encode()
    if fmt == "sglang-pt":
        buffer = io.BytesIO()
        torch.save({"physical_to_logical_map": table.clone()}, buffer)
        return buffer.getvalue()
    if fmt == "sglang-json":
        return json.dumps({"physical_to_logical_map": table.tolist()}).encode()
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
        "mode": resolved,
        "policy": policy,
        "phy2log": table.tolist(),
        "log2phy": log2phy.tolist(),
        "logcnt": logcnt.tolist(),
    }
    return json.dumps(document).encode()


def read_placement(data: bytes, filename: str = "") -> torch.Tensor:
    """Read a placement back: phy2log [layers, P] int64.

    Accepts every ``PLACEMENT_FORMATS`` layout, and a plain [layers, P] integer array.
    A vLLM-style file's logcnt must agree with its phy2log.
    """
    name = os.path.basename(filename) if filename else ""
    fmt, obj = _parse(data, name)
    if fmt == "CSV":
        return _check_phy2log(_read_csv(obj, name).matrix, name, "values")
    if isinstance(obj, dict):
        field = next((k for k in ("phy2log", "physical_to_logical_map") if k in obj), None)
        if field is None:
            raise _fail(name, "", f"no 'phy2log' or 'physical_to_logical_map' among keys {_keys(obj)}; "
                        "expected a placement file")
        logcnt = obj.get("logcnt")
        if logcnt is not None:
            logcnt = _to_tensor(logcnt, name, "logcnt")
            if logcnt.dim() != 2:
                raise _fail(name, "logcnt", f"has shape {_shape(logcnt)}, expected [layers, experts]")
        num_experts = None if logcnt is None else logcnt.shape[1]
        table = _check_phy2log(obj[field], name, field, num_experts)
        if logcnt is not None:
            if logcnt.shape[0] != table.shape[0] or not torch.equal(logcnt.long(), copy_counts(table, num_experts)):
                raise _fail(name, "logcnt", "does not match the copies counted in phy2log; the file was edited by hand?")
        return table
    return _check_phy2log(obj, name, "array")

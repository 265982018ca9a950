"""Values read from any file: one check for every load, one for every placement.

``to_array`` turns what a container holds (a tensor, a NumPy array, nested lists)
into an array of real numbers; ``make_load`` checks a 1-D, 2-D or 3-D load
(finite, >= 0, within float32's range) and packages it as a ``LoadData``. A 3-D
trace is checked and summed in chunks of steps, so a trace larger than what is
kept (``MAX_ELEMENTS``) is still read as its summed matrix. ``check_phy2log``
is the one check of a placement read or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rebalance import validate_weight
from . import safe
from .safe import FormatError, dtype_name, fail, shape_text, short

REAL_DTYPES = frozenset({
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64,
})
"""Tensor dtypes read as loads; bool, complex, float8 and quantized tensors are refused."""

_WIDE_UNSIGNED = {torch.uint16, torch.uint32, torch.uint64}  # few torch operations take them: read as float64

LOAD_SHAPES = "[layers, experts] load or [steps, layers, experts] trace"


@dataclass(frozen=True)
class LoadData:
    """An expert load read from one or more files.

    matrix: [layers, experts] float32 load (a trace summed over its steps).
    trace: [steps, layers, experts] float32 when the file holds steps in order and they
        fit ``MAX_ELEMENTS``, else None (the description says why).
    format: short name of what was detected, e.g. "CSV", "SGLang stat dump".
    description: one line: shape, dtype and what was understood.
    layer_ids: the decoder layer index of each row when the file names them
        (TensorRT-LLM statistics, SGLang dumps), else None.
    """

    matrix: torch.Tensor
    trace: torch.Tensor | None
    format: str
    description: str
    layer_ids: tuple[int, ...] | None = None


# ---------------------------------------------------------------- turning values into arrays


def not_numbers(dtype) -> str:
    return f"holds {dtype} values, expected numbers: integers or real numbers (float16, float32 or float64); " \
        "convert before saving, e.g. array.astype(float) or tensor.float()"


def to_array(value, name: str, field: str):
    """A tensor, NumPy array or nested list of numbers -> a CPU tensor or NumPy array of real numbers.

    Checks what every container shares: the value is an array of numbers (no bool,
    complex, text, float8), dense, and, for lists, within ``MAX_ELEMENTS`` before
    NumPy builds it. Shape and values are ``make_load``'s. NumPy arrays are returned
    as they are (a memory-mapped trace stays on disk until ``make_load`` reads it).
    """
    if isinstance(value, (list, tuple, int, float)) and not isinstance(value, bool):
        count, depth, has_bool = safe.nested_list_size(value)
        if depth > 3:
            raise fail(name, field, f"is nested {depth} lists deep ({depth}-D), expected a {LOAD_SHAPES}")
        if count > safe.MAX_ELEMENTS:
            raise safe.too_many(name, field, count)
        if has_bool:
            raise fail(name, *_locate_bad_element(value, field))
        try:
            array = np.array(value)  # 3x faster than torch.tensor on nested lists
        except (TypeError, ValueError, OverflowError):
            array = None
        if array is None or array.dtype.kind not in "iuf":
            raise fail(name, *_locate_bad_element(value, field))
        return array
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise fail(name, field, not_numbers(value.dtype))
        return value
    if isinstance(value, torch.Tensor):
        problem = safe._tensor_problem(value)
        if problem:
            raise fail(name, field, problem)
        if value.dtype not in REAL_DTYPES:
            raise fail(name, field, not_numbers(dtype_name(value.dtype)))
        return value.detach()
    if isinstance(value, bool):
        raise fail(name, field, "is true or false, expected a number")
    raise fail(name, field, f"is a {type(value).__name__}, expected an array of numbers")


def to_tensor(value, name: str, field: str) -> torch.Tensor:
    """``to_array`` as a torch tensor (NumPy arrays copied to native byte order; wide unsigned ints as float64)."""
    return _as_tensor(to_array(value, name, field))


def _as_tensor(array) -> torch.Tensor:
    """A chunk of a tensor or NumPy array as a tensor torch computes on."""
    if isinstance(array, torch.Tensor):
        return array.double() if array.dtype in _WIDE_UNSIGNED else array
    # torch takes neither wide unsigned ints, long doubles nor big-endian data, and wants a writable array
    dtype = np.float64 if array.dtype.kind == "u" and array.dtype.itemsize > 1 or array.dtype.itemsize > 8 \
        else array.dtype.newbyteorder("=")
    return torch.from_numpy(np.array(array, dtype=dtype, order="C", copy=True))


def _locate_bad_element(value, field: str) -> tuple[str, str]:
    """Walk a nested list to the first ragged row, bool or non-number: (field path, message)."""

    def depth_shape(v):
        shape = []
        while isinstance(v, (list, tuple)):
            shape.append(len(v))
            if not v:
                break
            v = v[0]
        return shape

    shape = depth_shape(value)

    def walk(v, path, level):
        if level == len(shape):
            if isinstance(v, bool):
                return path, f"is {str(v).lower()}, expected a number (true and false are not token counts)"
            if not isinstance(v, (int, float)):
                return path, f"is {short(v)}, expected a number"
            if isinstance(v, int) and not -2**63 <= v < 2**64:
                return path, f"is {short(v)}, a number too large to read as a token count"
            return None
        if not isinstance(v, (list, tuple)):
            return path, f"is {short(v)}, expected a list of {shape[level]} values (rows must be the same length)"
        if len(v) != shape[level]:
            return path, f"has {len(v)} values, expected {shape[level]} like the first (rows must be the same length)"
        for i, item in enumerate(v):
            found = walk(item, f"{path}[{i}]", level + 1)
            if found:
                return found
        return None

    return walk(value, field, 0) or (field, "is not a rectangular array of numbers")


# ---------------------------------------------------------------- loads


def _check_values(chunk: torch.Tensor, name: str, field: str, first_step: int | None) -> None:
    """Finite and >= 0; a chunk of a trace names its first step at fault, in that step's own layer numbering."""
    try:
        validate_weight(chunk.reshape(-1, chunk.shape[-1]))
    except ValueError as whole:
        if first_step is None:
            raise fail(name, field, str(whole).removeprefix("weight ")) from None
        for i, matrix in enumerate(chunk):
            try:
                validate_weight(matrix)
            except ValueError as exc:
                raise fail(name, f"{field}, step {first_step + i}", str(exc).removeprefix("weight ")) from None


def _beyond_float32(largest: float, name: str, field: str, summed: bool) -> FormatError:
    return fail(name, field, f"has loads up to {largest:.3g}{' (summed over steps)' if summed else ''}, beyond "
                f"float32's largest ({safe.FLOAT32_MAX:.3g}); scale the loads down")


def make_load(array, fmt: str, name: str, field: str, understood: str = "", *,
              layer_ids: tuple[int, ...] | None = None, ordered: bool = True) -> LoadData:
    """Validate a 1-D/2-D/3-D load from ``to_array`` (finite, >= 0, within float32) and package it.

    A 3-D trace [steps, layers, experts] is checked and summed over its steps in chunks
    (in float64, so nothing overflows or wraps); its steps are kept as the trace when
    they fit ``MAX_ELEMENTS`` and are in order (``ordered``), else only the sum is kept
    and the description says why.
    """
    dtype, shape = dtype_name(array.dtype), shape_text(array)
    notes = [understood] if understood else []
    if array.ndim not in (1, 2, 3):
        raise fail(name, field, f"has shape {shape} ({array.ndim}-D), expected a {LOAD_SHAPES}; "
                   "select or reshape the data to one of these before saving")
    if min(array.shape) == 0:
        raise fail(name, field, f"is empty (shape {shape}), expected a {LOAD_SHAPES}")
    if array.ndim < 3:
        count = int(np.prod(array.shape))
        if count > safe.MAX_ELEMENTS:
            raise safe.too_many(name, field, count)
        load = _as_tensor(array)
        _check_values(load, name, field, None)
        largest = float(load.max())
        if largest > safe.FLOAT32_MAX:
            raise _beyond_float32(largest, name, field, summed=False)
        load = load.to(torch.float32)
        if load.dim() == 1:
            text = f"{shape} {dtype}: a 1-D vector, read as one layer of {load.shape[0]} experts"
            load = load.unsqueeze(0)
        else:
            rows = load.shape[0]
            text = f"{shape} {dtype}: {rows} layer{'s' if rows != 1 else ''} x {load.shape[1]} experts"
        return LoadData(load, None, fmt, "; ".join([text, *notes]), layer_ids)
    steps, layers, experts = array.shape
    if layers * experts > safe.MAX_ELEMENTS:
        raise safe.too_many(name, field, layers * experts, what="values per step")
    keep = ordered and steps * layers * experts <= safe.MAX_ELEMENTS
    total = torch.zeros(layers, experts, dtype=torch.float64)
    trace = torch.empty(steps, layers, experts, dtype=torch.float32) if keep else None
    per_chunk = max(1, 2**22 // (layers * experts))
    for start in range(0, steps, per_chunk):
        chunk = _as_tensor(array[start:start + per_chunk])
        _check_values(chunk, name, field, start)
        total += chunk.sum(0, dtype=torch.float64)
        if trace is not None:
            trace[start:start + per_chunk] = chunk
    largest = float(total.max())
    if largest > safe.FLOAT32_MAX:
        raise _beyond_float32(largest, name, field, summed=True)
    text = f"{shape} {dtype}: trace of {steps} step{'s' if steps != 1 else ''} x {layers} layers x {experts} " \
        f"experts, summed over steps into a [{layers}, {experts}] load"
    if not keep and ordered:
        notes.append(f"its {steps * layers * experts:,} values are above the {safe.MAX_ELEMENTS:,} kept, so only "
                     "the sum is kept (no trace to replay)")
    return LoadData(total.to(torch.float32), trace, fmt, "; ".join([text, *notes]), layer_ids)


# ---------------------------------------------------------------- ids and placements


def expert_ids(tensor: torch.Tensor, name: str, field: str, lowest: int) -> torch.Tensor:
    """Integer ids >= ``lowest`` (-1 marks padding in topk ids) -> int64."""
    if tensor.is_floating_point() and tensor.numel():
        raise fail(name, field, f"holds {dtype_name(tensor.dtype)} values, expected integer ids")
    ids = tensor.long()
    if ids.numel() and int(ids.min()) < lowest:
        raise fail(name, field, f"holds id {int(ids.min())}, expected ids >= {lowest}"
                   + (" (-1 marks padding)" if lowest < 0 else ""))
    return ids


def check_phy2log(phy2log, name: str = "", field: str = "phy2log", num_experts: int | None = None) -> torch.Tensor:
    """phy2log [layers, P] of expert ids, every expert 0..E-1 in every layer -> int64 tensor."""
    table = to_tensor(phy2log, name, field)
    if table.dim() != 2 or table.numel() == 0:
        raise fail(name, field, f"has shape {shape_text(table)}, expected [layers, physical slots]")
    if table.is_floating_point():
        table = table.double()
        if not bool(torch.isfinite(table).all()) or bool((table != table.round()).any()):
            raise fail(name, field, "holds non-integer values, expected logical expert ids 0, 1, ...")
        if float(table.abs().max()) > 2**62:
            raise fail(name, field, f"holds ids up to {float(table.abs().max()):.3g}, expected logical expert ids "
                       "0, 1, ...")
    table = table.long()
    if bool((table < 0).any()):
        raise fail(name, field, f"holds negative expert ids (min {int(table.min())}), expected ids 0, 1, ...")
    experts = int(table.max()) + 1 if num_experts is None else num_experts
    if int(table.max()) >= experts:
        raise fail(name, field, f"holds expert id {int(table.max())}, but there are {experts} experts")
    if experts > table.shape[1]:
        raise fail(name, field, f"has {table.shape[1]} slots per layer for {experts} experts; every expert needs "
                   "a slot")
    present = torch.zeros(table.shape[0], experts, dtype=torch.bool).scatter_(1, table, True)
    if not bool(present.all()):
        layer, expert = (int(i) for i in (~present).nonzero()[0])
        raise fail(name, field, f"layer {layer} has no slot for expert {expert}; every expert needs a slot")
    return table


def plain_numbers(load: torch.Tensor):
    """Nested lists, integers where every value is whole (token counts), floats otherwise."""
    return (load.long() if bool((load == load.round()).all()) else load.double()).tolist()

"""Plain matrices and traces: CSV (through pandas), NumPy ``.npy``/``.npz``, a JSON list of lists, a torch tensor.

A load is ``[layers, experts]``, a trace ``[steps, layers, experts]``, a vector one
layer. CSV may have a header row of expert names and a first column of layer labels
(pandas' ``to_csv()`` output reads as is); a row is a comment only when it starts
with ``#`` followed by a space or nothing, so ``#N/A`` is a bad cell, not a comment.
The first row is a header only when none of its cells is a number (or it starts with
an empty or "layer" cell, as pandas writes it); any other bad cell is named by row
and column.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import torch

from . import safe
from .registry import LoadLayout, PlacementLayout, Writer
from .safe import Parsed, fail, short
from .values import LoadData, check_phy2log, make_load, plain_numbers, to_array

LAYER_LABELS = {"", "layer", "layers", "layer_id", "layer_idx", "layer_index", "index", "idx", "#"}
_COMMENT = re.compile(rb"^[ \t]*#(?:[ \t].*)?\r?$\n?", re.M)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity|nan)", re.I)
_NAN = ["nan", "NaN", "NAN", "-nan", "-NaN", "+nan"]


def is_number(text: str) -> bool:
    """A number as pandas' C parser reads one (no '1_000', no '0x10')."""
    return _NUMBER.fullmatch(text.strip()) is not None


# ---------------------------------------------------------------- CSV


def _delimiter(line: str) -> str | None:
    return next((d for d in (",", "\t", ";") if d in line), None)


def _cells(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    try:
        return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]
    except (csv.Error, StopIteration):
        return line.split(delimiter)


def _first_lines(raw: bytes, count: int) -> list[str]:
    """The first ``count`` non-blank lines, found without splitting the whole file."""
    lines, start = [], 0
    while len(lines) < count and start < len(raw):
        stop = raw.find(b"\n", start)
        stop = len(raw) if stop < 0 else stop
        if raw[start:stop].strip():
            lines.append(raw[start:stop].decode("utf-8", "replace"))
        start = stop + 1
    return lines


def read_csv(raw: bytes, name: str) -> LoadData:
    """A matrix of numbers, one row per layer; an optional header row and first column of layer labels.

    pandas' C parser reads the numbers; only when it refuses a cell are the rows walked
    again (``_locate``) to name the row and column. Cells are counted before parsing.
    """
    if b"#" in raw:
        raw = _COMMENT.sub(b"", raw)
    if raw[:1].isspace():
        raw = raw.lstrip()  # pandas' skiprows counts blank lines
    lines = _first_lines(raw, 2)
    if not lines:
        raise fail(name, "", "no rows of numbers; expected one row per layer, one column per expert")
    delimiter = _delimiter(lines[0])
    head = _cells(lines[0], delimiter)
    notes = []
    header = (head[0].strip().lower() in LAYER_LABELS and len(head) > 1) or not any(is_number(c) for c in head)
    if header:
        notes.append("skipped a header row")
        if len(lines) < 2:
            raise fail(name, "", "has a header row but no rows of numbers")
    row = _cells(lines[1] if header else lines[0], delimiter)
    width = len(row)
    estimate = (raw.count(b"\n") + 1) * width
    if estimate > safe.MAX_ELEMENTS:
        raise safe.too_many(name, "values", estimate)
    label_column = len(row) > 1 and (
        (header and head[0].strip().lower() in LAYER_LABELS)
        or (not is_number(row[0]) and _labels_in_first_column(raw, delimiter, header, name)))
    values = _parse(raw, name, delimiter, header, label_column, width)
    if label_column:
        notes.append("skipped a first column of layer labels")
    return make_load(torch.from_numpy(values), "CSV", name, "values", ", ".join(notes))


def _pandas(name: str):
    """pandas, which reads CSV; the library itself does not require it."""
    try:
        import pandas
    except ImportError:
        raise fail(name, "", "is CSV, and reading CSV needs pandas, which is not installed: pip install pandas "
                   "(or pip install \"eplb-explorer[files]\"), or save the load as .npy or .pt") from None
    return pandas


def _labels_in_first_column(raw: bytes, delimiter: str | None, header: bool, name: str) -> bool:
    """Whether no row's first cell is a number: then the first column names the layers."""
    pd = _pandas(name)
    try:
        first = pd.read_csv(io.BytesIO(raw), sep=delimiter or r"\s+", header=None, skiprows=1 if header else 0,
                            usecols=[0], dtype=str, engine="c", keep_default_na=False, skip_blank_lines=True)[0]
    except MemoryError:
        raise
    except Exception:  # ragged or damaged rows: the full parse names them
        return False
    return not bool(first.str.strip().str.fullmatch(_NUMBER).any())


def _parse(raw: bytes, name: str, delimiter: str | None, header: bool, label_column: bool,
           width: int) -> np.ndarray:
    """The numbers of a CSV as float64 [rows, columns], or a FormatError naming the first bad cell.

    The fast pass reads numbers only; a file with NaN or infinity written out (nan, inf)
    takes a second pass that reads those too, so that the load check can name them.
    """
    pd = _pandas(name)
    common = dict(sep=delimiter or r"\s+", header=None, skiprows=1 if header else 0, dtype=np.float64, engine="c",
                  usecols=range(1, width) if label_column else None, skip_blank_lines=True,
                  chunksize=max(1, 2**22 // width))
    for options in (dict(na_filter=False), dict(keep_default_na=False, na_values=_NAN)):
        try:
            chunks = [_float32_rows(frame.to_numpy(dtype=np.float64), name, width - label_column)
                      for frame in pd.read_csv(io.BytesIO(raw), **common, **options)]
            break
        except (MemoryError, safe.FormatError):
            raise
        except Exception as exc:  # ValueError on a cell, ParserError on a ragged row, ...
            failure = exc
    else:
        raise _locate(raw, name, delimiter, header, label_column, width) or fail(
            name, "", f"not readable as CSV: {safe.reason(failure)}; expected one row per layer, one column per expert"
        ) from None
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _float32_rows(values: np.ndarray, name: str, width: int) -> np.ndarray:
    """A chunk of rows as float32, the type every load is kept in: the chunks of a large file cost half as much.

    Values beyond float32's range are named here, before the cast would make them infinite; a chunk with
    NaN, infinity or negative cells stays float64 for the load check to name them.
    """
    if values.shape[1] != width:  # a first row shorter than the rest
        raise ValueError("rows of different lengths")
    finite = np.isfinite(values)
    if not finite.all() or (values < 0).any():
        return np.array(values)  # kept as read (a writable copy), for the load check to name the cell: a tiny
        # negative must not become -0
    beyond = values > safe.FLOAT32_MAX
    if beyond.any():
        raise fail(name, "values", f"has loads up to {values[beyond].max():.3g}, beyond float32's largest "
                   f"({safe.FLOAT32_MAX:.3g}); scale the loads down")
    return values.astype(np.float32)


def _locate(raw: bytes, name: str, delimiter: str | None, header: bool, label_column: bool,
            width: int) -> safe.FormatError | None:
    """Walk the rows to the first ragged row or non-number, as pandas saw them: the error naming it."""
    lines = (line for line in io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", newline=None) if line.strip())
    if delimiter is None:
        rows = (line.split() for line in lines)
    else:
        rows = ([cell.strip() for cell in cells] for cells in csv.reader(lines, delimiter=delimiter))
    try:
        for number, cells in enumerate(rows, start=1):
            if header and number == 1:
                continue
            if len(cells) != width:
                return fail(name, f"row {number}", f"has {len(cells)} values, expected {width} like the first row "
                            "(truncated file or ragged rows?)")
            for column, cell in enumerate(cells[label_column:], start=1 + label_column):
                if not is_number(cell):
                    return fail(name, f"row {number}, column {column}", f"{short(cell)} is not a number; "
                                "every cell after the header must be a token count")
    except csv.Error as exc:  # a NUL byte, a cell over the csv module's field size limit
        return fail(name, "", f"not readable as CSV: {safe.reason(exc)}; expected one row per layer, one column "
                    "per expert")
    return None


# ---------------------------------------------------------------- arrays in any container

_ARRAYS = (torch.Tensor, np.ndarray, list, tuple)


def _single_array(obj: dict):
    arrays = [k for k, v in obj.items() if isinstance(v, _ARRAYS)]
    return arrays[0] if len(arrays) == 1 else None


def _detect_array(parsed: Parsed) -> bool:
    obj = parsed.obj
    if parsed.container == "CSV":
        return True
    if isinstance(obj, dict):
        return _single_array(obj) is not None
    return isinstance(obj, (*_ARRAYS, int, float)) and not isinstance(obj, bool)


def _read_array(files: list[Parsed]) -> LoadData:
    (parsed,) = files
    if parsed.container == "CSV":
        return read_csv(parsed.obj, parsed.name)
    obj, field, understood = parsed.obj, "array", ""
    if isinstance(obj, dict):
        key = _single_array(obj)
        field = short(key, 40).strip("'")
        obj, understood = obj[key], f"the only array, {field!r}"
    return make_load(to_array(obj, parsed.name, field), parsed.container, parsed.name, field, understood)


LOAD_LAYOUTS = [
    LoadLayout("plain array", "or a single array", _detect_array, _read_array),
]


# ---------------------------------------------------------------- writers


def _require_matrix(load: torch.Tensor) -> None:
    if load.dim() == 3:
        raise ValueError(f"CSV holds one [layers, experts] matrix, got a trace {list(load.shape)}: "
                         "sum it over steps first, or write .npy, .pt or .json to keep the steps")


def _write_csv(load: torch.Tensor) -> bytes:
    _require_matrix(load)
    out = io.StringIO()
    out.write(",".join(f"expert_{e}" for e in range(load.shape[1])) + "\n")
    for row in plain_numbers(load):
        out.write(",".join(map(str, row)) + "\n")
    return out.getvalue().encode()


def _write_npy(load: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, load.numpy())
    return buffer.getvalue()


def _write_pt(load: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(load.clone(), buffer)
    return buffer.getvalue()


def _write_json(load: torch.Tensor) -> bytes:
    return json.dumps(plain_numbers(load)).encode()


def _write_phy2log_csv(placement) -> bytes:
    out = io.StringIO()
    out.write(",".join(f"slot_{p}" for p in range(placement.phy2log.shape[1])) + "\n")
    for row in placement.phy2log.tolist():
        out.write(",".join(map(str, row)) + "\n")
    return out.getvalue().encode()


LOAD_FORMATS = {
    "csv": Writer("CSV matrix (one row per layer)", ".csv", "text/csv", _write_csv, default=True),
    "npy": Writer("NumPy .npy", ".npy", "application/octet-stream", _write_npy, default=True),
    "pt": Writer("torch .pt tensor", ".pt", "application/octet-stream", _write_pt, default=True),
    "json": Writer("JSON list of lists", ".json", "application/json", _write_json),
}

PLACEMENT_FORMATS = {
    "phy2log-csv": Writer("phy2log as CSV (one row per layer)", ".csv", "text/csv", _write_phy2log_csv, default=True),
}


# ---------------------------------------------------------------- reading a placement back


def _read_plain_placement(parsed: Parsed) -> torch.Tensor:
    if parsed.container == "CSV":
        return check_phy2log(read_csv(parsed.obj, parsed.name).matrix, parsed.name, "values")
    return check_phy2log(parsed.obj, parsed.name, "array")


PLACEMENT_LAYOUTS = [
    PlacementLayout("plain phy2log", lambda p: not isinstance(p.obj, dict), _read_plain_placement),
]

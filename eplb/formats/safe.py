"""Opening files safely: every container a format may come in, checked before anything is allocated.

``parse(data, name)`` turns a file's bytes into ``Parsed`` objects: a torch file
(``weights_only=True``), a NumPy file (``allow_pickle=False``), an ``.npz``,
safetensors, JSON, YAML or CSV text, or, for a zip of several files, one
``Parsed`` per member. Nothing here runs code from a file, and nothing is
allocated before its size is known:

* a file, and what an archive unpacks to, is at most ``MAX_BYTES``;
* the values a file's tensors, arrays and lists would become (an expanded or
  shared tensor counts as the copies it would make) are at most
  ``max(MAX_ELEMENTS, the file's bytes)`` (``count_values``): a view never
  buys more values than the file has bytes;
* a NumPy header, a safetensors header and a zip directory are read and checked
  before their payload; JSON and CSV text is measured before it is parsed.

Every problem is a ``FormatError`` naming the file, the field and what to do;
``guarded`` turns what torch and NumPy raise on odd input (MemoryError,
OverflowError, RuntimeError, NotImplementedError) into one too.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

MAX_BYTES = 256 * 2**20
"""Largest file read into memory, in bytes (256 MiB); an archive (.pt, .npz, .zip) may unpack to as much."""

MAX_ELEMENTS = 2**24
"""Most values a load keeps (16 Mi: a 1000-step SGLang buffer of DeepSeek-V3, 64 MiB as float32).

A trace above it is summed over its steps in chunks (the steps are dropped, and the
description says so); a matrix above it is refused.
"""

MAX_CHUNKED_BYTES = 16 * 2**30
"""Largest file on disk summed in chunks (SGLang dumps, .npy traces) when it is above ``MAX_BYTES``."""

MAX_FILES = 1024
"""Most files read together (rank files, a zip's members)."""

MAX_YAML_BYTES = 32 * 2**20
"""Largest YAML document (a TensorRT-LLM placement for 61 layers x 320 slots is about 60 KB)."""

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class FormatError(ValueError):
    """A file that cannot be read; the message names the file, the field, what was expected and what to do."""


@dataclass(frozen=True)
class Parsed:
    """One file opened: ``obj`` is the loaded object (CSV: its text as UTF-8 bytes), ``size`` its bytes on disk.

    container: "torch .pt", "NumPy .npy", "NumPy .npz", "safetensors", "JSON", "YAML" or "CSV".
    """

    name: str
    container: str
    obj: object
    size: int


# ---------------------------------------------------------------- messages


def fail(name: str, field: str, message: str) -> FormatError:
    where = name or "the file"
    return FormatError(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def short(value, limit: int = 60) -> str:
    """repr(value) on one line, cut to ``limit`` characters: safe to put a file's content in a message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def keys_of(obj: dict) -> str:
    """A dict's first keys, for a message."""
    return short(sorted(str(key)[:24] for key in obj)[:8], 120)


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), at most 160 characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:160]


def damaged(name: str, container: str, exc: Exception, advice: str) -> FormatError:
    """The error for whatever a third-party reader (pickle, zipfile, zlib, NumPy's header parser) raised on bad bytes.

    Those readers raise many types on damaged input (IndexError, struct.error, zlib.error,
    SyntaxError, ...); this is used only around their calls, never around our own code.
    """
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"  # struct.error, zlib.error
    return fail(name, "", f"not a readable {container} (truncated or damaged?): {kind}: {reason(exc)}; {advice}")


def shape_text(t) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def too_many(name: str, field: str, count: int, limit: int | None = None, what: str = "values") -> FormatError:
    limit = MAX_ELEMENTS if limit is None else limit
    return fail(name, field, f"holds {count:,} {what}, above the limit of {limit:,}; "
                "sum or slice the data first (e.g. fewer steps)")


@contextlib.contextmanager
def guarded(name: str):
    """Turn what torch and NumPy raise on input they cannot handle into a FormatError naming the file.

    MemoryError (not enough memory), OverflowError (a number too large for its type),
    RuntimeError and NotImplementedError (a tensor kind an operation does not support)
    reach here only from the libraries: the readers check sizes and kinds before they
    compute, so this is the last line, not the first.
    """
    try:
        yield
    except MemoryError:
        raise fail(name, "", "needs more memory than this machine has free to read; sum or slice the data "
                   "first (e.g. fewer steps)") from None
    except (OverflowError, RuntimeError, NotImplementedError) as exc:
        raise fail(name, "", f"cannot be read ({type(exc).__name__}: {reason(exc)}); save plain numbers: "
                   "a dense tensor or array of integers or floats") from None


def check_size(size: int, name: str, unpacked: bool = False, limit: int | None = None) -> None:
    limit = MAX_BYTES if limit is None else limit
    if size > limit:
        what = "unpacks to" if unpacked else "is"
        raise fail(name, "", f"{what} {size / 2**20:.1f} MiB, above the {limit / 2**20:.0f} MiB limit; "
                   "sum or slice the data first (e.g. fewer steps)")
    if size == 0:
        raise fail(name, "", "is empty; expected a load file")


# ---------------------------------------------------------------- counting before allocating


def nested_list_size(value) -> tuple[int, int, bool]:
    """A nested list or tuple of numbers -> (values it would make, depth, whether it holds bools).

    Shared sublists are counted each time they occur (what ``np.array`` would make) but
    visited once, so ``[[1] * 10**4] * 10**5`` is measured in microseconds, not allocated.
    """
    memo: dict[int, tuple[int, int, bool]] = {}
    keep = []  # the lists memoized, so that their ids stay theirs while we walk

    def walk(v) -> tuple[int, int, bool]:
        if not isinstance(v, (list, tuple)):
            return 1, 0, isinstance(v, bool)
        found = memo.get(id(v))
        if found is not None:
            return found
        keep.append(v)
        if not v:
            result = (0, 1, False)
        elif not any(isinstance(item, (list, tuple)) for item in v):  # a row of numbers: counted at C speed
            result = (len(v), 1, bool in set(map(type, v)))
        else:
            count, depth, has_bool = 0, 0, False
            for item in v:
                c, d, b = walk(item)
                count, depth, has_bool = count + c, max(depth, d), has_bool or b
            result = (count, depth + 1, has_bool)
        memo[id(v)] = result
        return result

    return walk(value)


def _tensor_problem(t: torch.Tensor) -> str | None:
    """Why a tensor from a file cannot be read as numbers, before anything touches its data."""
    if t.is_meta:
        return "is a meta tensor (shape only, no data); save the tensor itself, on the CPU"
    if t.is_nested:
        return "is a nested tensor (rows of different lengths); save a dense one (torch.nested.to_padded_tensor)"
    if t.layout != torch.strided:
        return f"is a {str(t.layout).removeprefix('torch.')} tensor; save a dense one (tensor.to_dense())"
    return None


def count_values(obj, name: str, limit: int) -> int:
    """The values every tensor, array and list in a loaded object would make together; FormatError above ``limit``.

    Views count as the copies they would make (a stride-0 ``expand`` of one number to
    2^25 columns counts 2^25), and a tensor, list or dict referenced twice counts twice:
    that is what reading it would do. Shared parts are measured once (memoized), so a
    small file of many references is measured quickly; a part that contains itself is
    refused. Meta, nested and sparse tensors are refused here, before any operation
    could raise on them.
    """
    memo: dict[int, int] = {}
    open_now: set[int] = set()
    keep = []  # the containers memoized, so that their ids stay theirs while we walk

    def walk(item, field: str) -> int:
        if isinstance(item, torch.Tensor):
            problem = _tensor_problem(item)
            if problem:
                raise fail(name, field or "tensor", problem)
            return item.numel()
        if isinstance(item, np.ndarray):
            return item.size
        if not isinstance(item, (dict, list, tuple)):
            return 0
        key = id(item)
        if key in memo:
            return memo[key]
        if key in open_now:
            raise fail(name, field, "contains itself; save plain tensors or lists")
        values = list(item.values()) if isinstance(item, dict) else item
        if not any(isinstance(v, (list, tuple, dict, torch.Tensor, np.ndarray)) for v in values):
            count = len(values)  # a row of plain values, counted at C speed
        else:
            open_now.add(key)
            count = 0
            keys = item.keys() if isinstance(item, dict) else range(len(item))
            for k, v in zip(keys, values):
                count += walk(v, f"{field}.{short(k, 30)}".lstrip(".") if isinstance(item, dict) else f"{field}[{k}]")
                if count > limit:
                    break
            open_now.discard(key)
        memo[key] = count
        keep.append(item)
        if count > limit:
            raise fail(name, "", f"its tensors and lists would make more than {limit:,} values (views and shared "
                       "tensors count as the copies they make); save plain data, or sum or slice it first")
        return count

    try:
        total = walk(obj, "")
    except RecursionError:
        raise fail(name, "", "holds lists nested too deep to read; save plain tensors or lists") from None
    if total > limit:  # a bare tensor
        raise fail(name, "", f"its tensors would make more than {limit:,} values ({total:,}; views count as the "
                   "copies they make); save plain data, or sum or slice it first")
    return total


def value_limit(size: int) -> int:
    """The most values a file of ``size`` bytes may make: ``MAX_ELEMENTS``, or one per byte of a larger file."""
    return max(MAX_ELEMENTS, size)


# ---------------------------------------------------------------- containers


def torch_load(source, name: str, size: int, mmap: bool = False):
    """torch.load with weights_only=True (a path when ``mmap``, else bytes); values counted before use."""
    try:
        if mmap:
            obj = torch.load(source, weights_only=True, map_location="cpu", mmap=True)
        else:
            obj = torch.load(io.BytesIO(source), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise fail(
            name, "", f"refused: torch's safe loader (weights_only) rejected it ({_unpickler_reason(exc)}): the file "
            "holds Python objects that could run code when loaded, or it is damaged; save plain tensors: "
            "torch.save(tensor) or a dict of tensors"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # pickle and torch's reader raise many types on damaged bytes
        raise damaged(name, "torch.save file", exc, "save it again with torch.save") from None
    count_values(obj, name, value_limit(size))
    return obj


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own complaint, without torch's advice to load the file unsafely."""
    message = str(exc).split("\n\nCheck the documentation", 1)[0]  # torch's wrapping: advice, the error, docs
    if "WeightsUnpickler error:" in message:
        message = message.split("WeightsUnpickler error:", 1)[1]
    paragraphs = [p.strip() for p in message.split("\n\n") if p.strip()]
    return reason(paragraphs[-1].split(". ")[0].rstrip(".") if paragraphs else exc)


_READ_NPY_HEADER = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def npy_header(stream, name: str, member: str = "") -> tuple[tuple[int, ...], np.dtype]:
    """Read and check a .npy header from a stream (left at the start of the data) -> (shape, dtype)."""
    try:
        version = np.lib.format.read_magic(stream)
        read_header = _READ_NPY_HEADER.get(version)
        header = read_header(stream) if read_header else None
    except Exception as exc:  # NumPy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise damaged(name, "NumPy file" + (f" (member {member!r})" if member else ""), exc,
                      "save it again with np.save") from None
    if header is None:
        raise fail(name, member, f"NumPy format version {version[0]}.{version[1]} is for structured arrays; "
                   "save a plain numeric array with np.save")
    shape, _, dtype = header
    if dtype.hasobject:
        raise fail(name, member, "refused: the array holds Python objects, and loading them could run code; "
                   "save a numeric array (np.save with a float or int dtype)")
    if min(shape, default=0) < 0:
        raise fail(name, member, f"the header claims a {list(shape)} {dtype} array: damaged; save it again with "
                   "np.save")
    return tuple(shape), dtype


def read_npy(data: bytes, name: str, member: str = "") -> np.ndarray:
    """One .npy payload (a file, or an .npz member); its header is checked before NumPy allocates anything."""
    stream = io.BytesIO(data)
    shape, dtype = npy_header(stream, name, member)
    available = len(data) - stream.tell()
    needed = math.prod(shape) * dtype.itemsize
    if needed > available:
        raise fail(name, member, f"the header claims a {list(shape)} {dtype} array ({needed:,} bytes) but only "
                   f"{available:,} bytes follow: truncated or damaged; save it again with np.save")
    try:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except MemoryError:
        raise
    except Exception as exc:
        raise damaged(name, "NumPy file", exc, "save it again with np.save") from None


def _read_npz(archive: zipfile.ZipFile, name: str) -> dict[str, np.ndarray]:
    """Every array of an .npz; each member's header is read and its size checked before its data is unpacked."""
    arrays = {}
    for member in archive.infolist():
        key = member.filename.removesuffix(".npy")
        try:
            with archive.open(member) as stream:
                shape, dtype = npy_header(stream, name, key)
            if math.prod(shape) > value_limit(0) and len(shape) < 3:
                raise too_many(name, key, math.prod(shape))
            payload = archive.read(member)
        except FormatError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # zlib.error, bad CRC, unsupported compression, ...
            raise damaged(name, f"NumPy .npz archive (member {member.filename!r})", exc,
                          "save it again with np.savez") from None
        arrays[key] = read_npy(payload, name, key)
    return arrays


def _safetensors_load(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """A safetensors file -> {key: tensor}; the JSON header (dtypes, shapes, offsets) is checked first."""
    advice = "save it again with safetensors.torch.save_file"
    header_len = struct.unpack("<Q", data[:8])[0]
    if header_len > len(data) - 8:
        raise fail(name, "", f"not a readable safetensors file (truncated or damaged?): its header claims "
                   f"{header_len:,} bytes but the file has {len(data):,}; {advice}")
    try:
        header = json.loads(data[8:8 + header_len])
        entries = {k: v for k, v in header.items() if k != "__metadata__"}
        count = sum(math.prod(v["shape"]) for v in entries.values())
    except Exception as exc:
        raise damaged(name, "safetensors file", exc, advice) from None
    if count > value_limit(len(data)):
        raise too_many(name, "", count, value_limit(len(data)))
    try:
        from safetensors.torch import load
    except ImportError:
        raise fail(name, "", "is a safetensors file (TensorRT-LLM expert statistics); reading it needs the "
                   "safetensors package: pip install safetensors") from None
    try:
        return load(data)
    except MemoryError:
        raise
    except Exception as exc:  # SafetensorError on bad offsets, dtypes or lengths
        raise damaged(name, "safetensors file", exc, advice) from None


def _looks_like_safetensors(data: bytes) -> bool:
    return len(data) >= 10 and data[8:10] in (b'{"', b"{ ", b"{\n") and struct.unpack("<Q", data[:8])[0] < 2**30


def _zip_members(archive: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The files of a zip (directories and macOS resource forks left out), with their sizes checked."""
    members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
               and not os.path.basename(m.filename).startswith(".")]
    if len(members) > MAX_FILES:
        raise fail(name, "", f"holds {len(members):,} files, above the limit of {MAX_FILES:,}")
    check_size(sum(m.file_size for m in archive.infolist()), name, unpacked=True)
    return members


def parse(data: bytes, name: str) -> list[Parsed]:
    """Detect the container from the content -> one Parsed (a zip of several files: one per member)."""
    check_size(len(data), name)
    size = len(data)
    if data.startswith(b"\x93NUMPY"):
        return [Parsed(name, "NumPy .npy", read_npy(data, name), size)]
    if data.startswith(b"PK"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = _zip_members(archive, name)
        except FormatError:
            raise
        except Exception as exc:  # BadZipFile, UnicodeDecodeError in a member name, ...
            raise damaged(name, "zip archive (torch .pt, NumPy .npz or a .zip of files)", exc,
                          "save it again") from None
        names = [m.filename for m in members]
        if names and all(n.endswith(".npy") for n in names):
            return [Parsed(name, "NumPy .npz", _read_npz(archive, name), size)]
        if not names or any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return [Parsed(name, "torch .pt", torch_load(data, name, size), size)]
        return _unzip(archive, members, name)
    if data[:1] == b"\x80":  # a pickle stream: torch's legacy (non-zip) format
        return [Parsed(name, "torch .pt", torch_load(data, name, size), size)]
    if _looks_like_safetensors(data):
        return [Parsed(name, "safetensors", _safetensors_load(data, name), size)]
    text = decode_text(data, name)
    if not text.strip():
        raise fail(name, "", "is empty (only whitespace); expected a load file")
    if text.lstrip()[:1] in "[{":
        return [Parsed(name, "JSON", parse_json(text, name), size)]
    if re.match(r"(\s*#.*\n)*\s*(%YAML|---|num_slots\s*:|initial_global_assignments\s*:|layer_updates_per_iter\s*:)",
                text):
        return [Parsed(name, "YAML", parse_yaml(text, name), size)]
    # CSV stays bytes (the file's own when it is UTF-8 already): pandas parses bytes, and a copy of a large
    # file's text would cost as much again
    raw = data if data.isascii() else text.encode("utf-8")
    return [Parsed(name, "CSV", raw, size)]


def _unzip(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], name: str) -> list[Parsed]:
    """A zip of files (rank files, a statistics folder): each member opened as a file of its own."""
    out = []
    for member in members:
        label = f"{name}/{member.filename}" if name else member.filename
        try:
            payload = archive.read(member)
        except MemoryError:
            raise
        except Exception as exc:
            raise damaged(label, "zip member", exc, "zip the files again") from None
        if payload.startswith(b"PK") and not _is_torch_or_npz(payload):
            raise fail(label, "", "is a zip inside the zip; zip the files themselves")
        out.extend(parse(payload, label))
    if not out:
        raise fail(name, "", "is a zip with no files in it")
    return out


def _is_torch_or_npz(payload: bytes) -> bool:
    try:
        names = zipfile.ZipFile(io.BytesIO(payload)).namelist()
    except Exception:
        return True  # let the member's own reader name the damage
    return all(n.endswith(".npy") for n in names) or any(n.endswith("data.pkl") for n in names)


def parse_path(path: str) -> list[Parsed]:
    """Open a file on disk: ``parse`` on its bytes, or, above ``MAX_BYTES``, a memory-mapped torch file or .npy.

    Large SGLang dumps and NumPy traces are read without loading them whole: their
    readers then sum them in chunks.
    """
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size <= MAX_BYTES:
            with open(path, "rb") as f:
                data = f.read()
            return parse(data, name)
        check_size(size, name, limit=MAX_CHUNKED_BYTES)
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError as exc:
        raise fail(path, "", f"cannot be read: {exc.strerror or exc}") from None
    if magic.startswith(b"\x93NUMPY"):
        return [Parsed(name, "NumPy .npy", _npy_mmap(path, name, size), size)]
    if magic.startswith(b"PK"):
        try:
            archive = zipfile.ZipFile(path)
            torch_file = any(n.endswith("data.pkl") for n in archive.namelist())
        except Exception as exc:
            raise damaged(name, "zip archive", exc, "save it again") from None
        if torch_file:
            return [Parsed(name, "torch .pt", torch_load(path, name, size, mmap=True), size)]
    check_size(size, name)  # any other container is read whole: refused above MAX_BYTES
    return []


def _npy_mmap(path: str, name: str, size: int) -> np.ndarray:
    with open(path, "rb") as f:
        shape, dtype = npy_header(f, name)
        offset = f.tell()
    if math.prod(shape) * dtype.itemsize > size - offset:
        raise fail(name, "", f"the header claims a {list(shape)} {dtype} array but the file is shorter: truncated")
    return np.load(path, mmap_mode="r", allow_pickle=False)


# ---------------------------------------------------------------- text


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text, else Latin-1 (older tools' 8-bit text) unless it holds control characters: then binary."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        if re.search("[\x80-\x9f]", text):  # C1 controls: binary, not Latin-1 text
            text = None
    if text is None or re.search("[\x00-\x08]", text[:4096]):
        raise fail(name, "", "not a recognised format: expected CSV, JSON, NumPy .npy/.npz, a torch .pt, "
                   "safetensors or YAML file (binary content that is none of these)")
    return text


def _no_duplicate_keys(pairs):
    found = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


class _DuplicateKey(ValueError):
    pass


def parse_json(text: str, name: str):
    """json.loads with every object's keys unique; the numbers it could make are counted first."""
    estimate = text.count(",") + text.count("[") + 1  # at least the numbers it holds
    if estimate > MAX_ELEMENTS:
        raise too_many(name, "", estimate, what="values (counted from its commas)")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise fail(name, "", f"holds the key {short(exc.args[0], 40)} twice in one object; JSON readers keep "
                   "one of them silently, so fix the file") from None
    except json.JSONDecodeError as exc:
        raise fail(name, f"line {exc.lineno}, column {exc.colno}",
                   f"invalid JSON ({exc.msg}); truncated file? expected a list of lists or an engine dump") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise fail(name, "", "holds a number of over 4300 digits; expected token counts") from None
    except RecursionError:
        raise fail(name, "", "holds lists nested too deep to read; expected a list of lists or an engine "
                   "dump") from None


_YAML_ALIAS = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s,\]}]", re.M)


def parse_yaml(text: str, name: str):
    """yaml.safe_load of one document without anchors or aliases (they can multiply a small file's size)."""
    check_size(len(text), name, limit=MAX_YAML_BYTES)
    try:
        import yaml
    except ImportError:
        raise fail(name, "", "is YAML (a TensorRT-LLM placement); reading it needs PyYAML: pip install "
                   "pyyaml") from None

    if _YAML_ALIAS.search(text):
        raise fail(name, "", "invalid YAML (anchors and aliases are not accepted: they can multiply a small file's "
                   "size); expected a TensorRT-LLM placement (num_slots, initial_global_assignments)")
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loaders only
    except yaml.YAMLError as exc:
        raise fail(name, "", f"invalid YAML ({reason(exc)}); expected a TensorRT-LLM placement "
                   "(num_slots, initial_global_assignments)") from None
    except RecursionError:
        raise fail(name, "", "holds YAML nested too deep to read") from None

"""SGLang: the expert-distribution recorder's dumps (every mode, every rank) and ``--init-expert-location``.

Checked against SGLang 0.5.23's ``srt/eplb/expert_distribution.py`` and ``expert_location.py``:

* ``stat`` / ``stat_approx``: rank 0 writes ``expert_distribution_recorder_<time>.pt``,
  ``{"rank", "logical_count" int32 [buffer, layers, experts] summed over ranks,
  "average_utilization_rate_over_window"}``. The buffer is circular
  (``--expert-distribution-recorder-buffer-size``, default 1000): steps never filled
  are zero and dropped here; a full buffer may have wrapped, so its steps are summed
  and not offered as a trace in order.
* ``per_pass`` / ``per_token``: every rank writes ``..._<time>_<rank>.pt``,
  ``{"records": [...], "last_physical_to_logical_map" [layers, physical]}``; a
  per_pass record holds ``global_physical_count`` [layers, physical] (this rank's
  tokens), a per_token record ``topk_ids_of_layer`` [layers, tokens, top_k] of
  physical slot ids (-1 pads). The files of all ranks are summed pass by pass.
* ``--init-expert-location``: a ``.pt`` (``torch.load(weights_only=True)``) or
  ``.json`` dict passed to the loader as keyword arguments, so it holds exactly one
  key: ``physical_to_logical_map`` [decoder layers, physical] or ``logical_count``
  [(steps,) decoder layers, experts]. Row r is applied to decoder layer r, dense
  layers included: the writers here apply the layer rule (``eplb.presets``).

Every SGLang table has one row per decoder layer; dense layers' rows hold no load.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import torch

from . import safe
from .registry import LoadLayout, PlacementLayout, Writer
from .safe import Parsed, fail, shape_text
from .values import LoadData, check_phy2log, expert_ids, make_load, plain_numbers, to_array, to_tensor



def _dense_note(row_load: torch.Tensor) -> str:
    """A note on leading rows without load (an SGLang table's dense layers), or ""."""
    loaded = (row_load > 0).nonzero()
    first = int(loaded[0]) if loaded.numel() else 0
    if not first:
        return ""
    rows = "row 0" if first == 1 else f"rows 0-{first - 1}"
    return f"{rows} hold no load (dense layers: SGLang keeps one row per decoder layer)"


# ---------------------------------------------------------------- stat mode, and logical_count files


def _detect_count(parsed: Parsed) -> bool:
    return isinstance(parsed.obj, dict) and "logical_count" in parsed.obj


def _read_count(files: list[Parsed]) -> LoadData:
    (parsed,) = files
    name, obj = parsed.name, parsed.obj
    counts = to_array(obj["logical_count"], name, "logical_count")
    if set(obj) <= {"logical_count"} or counts.ndim != 3:
        return make_load(counts, "SGLang logical_count", name, "logical_count",
                         "SGLang --init-expert-location logical_count (one row per decoder layer)")
    counts = to_tensor(counts, name, "logical_count") if not isinstance(counts, torch.Tensor) else counts
    buffer = counts.shape[0]
    with safe.guarded(name):
        filled = counts.flatten(1).ne(0).any(1) if counts.numel() else torch.zeros(0, dtype=torch.bool)
    if not bool(filled.any()):
        raise fail(name, "logical_count", f"every one of its {buffer} steps is zero: the recorder saw no forward "
                   "pass; start recording (/start_expert_distribution_record), send requests, then dump")
    last = int(filled.nonzero()[-1])
    notes = [f"SGLang expert-distribution recorder (stat mode), rank {obj.get('rank', 0)}'s dump, summed over ranks"]
    ordered = True
    if last < buffer - 1:
        notes.append(f"{buffer - 1 - last} never-filled buffer steps dropped ({last + 1} of {buffer} kept)")
        counts = counts[:last + 1]
    elif buffer > 1:
        ordered = False
        notes.append(f"the buffer is full ({buffer} steps): when the server ran more forward passes than "
                     "--expert-distribution-recorder-buffer-size, the oldest were overwritten and the steps are "
                     "out of order, so they are summed into one load (no trace to replay)")
    dense = _dense_note(counts.sum((0, 2), dtype=torch.float64))
    loaded = make_load(counts, "SGLang stat dump", name, "logical_count", "; ".join(notes + ([dense] if dense else [])),
                       layer_ids=tuple(range(counts.shape[1])), ordered=ordered)
    return loaded


# ---------------------------------------------------------------- per_pass and per_token records, every rank


def _detect_records(parsed: Parsed) -> bool:
    return isinstance(parsed.obj, dict) and "records" in parsed.obj


def _records_of(parsed: Parsed) -> list[dict]:
    records = parsed.obj["records"]
    if not isinstance(records, list) or not records:
        raise fail(parsed.name, "records", "expected a non-empty list of dicts with 'topk_ids_of_layer' "
                   "[layers, tokens, top_k] (per_token) or 'global_physical_count' [layers, physical] (per_pass)")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not {"topk_ids_of_layer", "global_physical_count"} & set(record):
            raise fail(parsed.name, f"records[{i}]", "expected a dict with 'topk_ids_of_layer' [layers, tokens, "
                       "top_k] (per_token) or 'global_physical_count' [layers, physical] (per_pass)")
    return records


def _map_of(parsed: Parsed, num_layers: int) -> torch.Tensor | None:
    mapping = parsed.obj.get("last_physical_to_logical_map")
    if mapping is None:
        return None
    field = "last_physical_to_logical_map"
    mapping = expert_ids(to_tensor(mapping, parsed.name, field), parsed.name, field, lowest=0)
    if mapping.dim() != 2 or mapping.shape[0] != num_layers or mapping.shape[1] == 0:
        raise fail(parsed.name, field, f"has shape {shape_text(mapping)}, expected [{num_layers}, physical slots]")
    return mapping


def _rank_of(records: list[dict]):
    rank = records[0].get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


@dataclass(frozen=True)
class _Dump:
    """One rank file: its records, mode ("per_pass" or "per_token"), physical-to-logical map and rank."""

    parsed: Parsed
    records: list
    mode: str
    mapping: torch.Tensor | None
    rank: int | None


def _open_dump(parsed: Parsed) -> _Dump:
    records = _records_of(parsed)
    mode, key, dims = ("per_token", "topk_ids_of_layer", 3) if "topk_ids_of_layer" in records[0] else \
        ("per_pass", "global_physical_count", 2)
    table = to_array(records[0][key], parsed.name, f"records[0].{key}")
    if table.ndim != dims or table.shape[0] == 0:
        layout = "[layers, tokens, top_k]" if dims == 3 else "[layers, physical]"
        raise fail(parsed.name, f"records[0].{key}", f"has shape {shape_text(table)}, expected {layout}")
    mapping = _map_of(parsed, table.shape[0])
    if mode == "per_pass" and mapping is None:
        raise fail(parsed.name, "last_physical_to_logical_map", "is missing: per_pass records count physical "
                   "slots, which only the map turns into experts")
    return _Dump(parsed, records, mode, mapping, _rank_of(records))


class _Counts:
    """Per-pass counts [layers, experts] summed over rank files; only their total once they outgrow MAX_ELEMENTS."""

    def __init__(self, num_layers: int, num_experts: int):
        self.shape = (num_layers, num_experts)
        self.by_pass: dict[object, torch.Tensor] | None = {}
        self.total = torch.zeros(self.shape, dtype=torch.int64)
        self.passes: set = set()

    def add(self, pass_id, counts: torch.Tensor) -> None:
        self.passes.add(pass_id)
        self.total += counts
        if self.by_pass is None:
            return
        if pass_id in self.by_pass:
            self.by_pass[pass_id] += counts
        else:
            self.by_pass[pass_id] = counts.clone()
            if len(self.by_pass) * counts.numel() > safe.MAX_ELEMENTS:
                self.by_pass = None  # keep the sum only


def _read_records(files: list[Parsed]) -> LoadData:
    """Sum the records of every rank file, pass by pass, each through its own file's physical-to-logical map."""
    dumps = [_open_dump(parsed) for parsed in files]
    first = dumps[0]
    ranks: dict[int, str] = {}
    for dump in dumps:
        name = dump.parsed.name
        if dump.mode != first.mode:
            raise fail(name, "records", f"is a {dump.mode} dump but {first.parsed.name} is {first.mode}: open the "
                       "rank files of one recording together")
        if (dump.mapping is None) != (first.mapping is None):
            missing = dump if dump.mapping is None else first
            raise fail(missing.parsed.name, "last_physical_to_logical_map", "is missing, but the other rank files "
                       "have one")
        if dump.mapping is not None and dump.mapping.shape[0] != first.mapping.shape[0]:
            raise fail(name, "last_physical_to_logical_map", f"has {dump.mapping.shape[0]} layers, but "
                       f"{first.parsed.name}'s has {first.mapping.shape[0]}")
        if dump.rank is not None:
            if dump.rank in ranks:
                raise fail(name, "", f"holds rank {dump.rank}'s records, like {ranks[dump.rank]}: open each rank's "
                           "file once")
            ranks[dump.rank] = name
    if first.mapping is not None:
        num_layers = first.mapping.shape[0]
        num_experts = max(int(d.mapping.max()) for d in dumps) + 1
        assumed = f"physical slots mapped through last_physical_to_logical_map ({num_experts} experts)"
    else:  # per_token without a map: the ids are taken as logical experts
        largest = max((int(ids.max()) for d in dumps for _, ids in _topk_ids(d) if ids.numel()), default=-1)
        if largest < 0:
            raise fail(first.parsed.name, "records", "every topk_ids_of_layer is empty or padding (-1): no token "
                       "was routed")
        num_layers, num_experts = len(first.records[0]["topk_ids_of_layer"]), largest + 1
        assumed = f"no last_physical_to_logical_map: topk ids taken as logical experts, {num_experts} experts " \
            "assumed (largest id + 1)"
    if num_layers * num_experts > safe.MAX_ELEMENTS:
        raise fail(first.parsed.name, "records", f"expert ids up to {num_experts - 1} would make {num_layers} x "
                   f"{num_experts} counts per pass, above the limit of {safe.MAX_ELEMENTS:,}; are these really "
                   "expert ids?")
    counts = _Counts(num_layers, num_experts)
    for dump in dumps:
        with safe.guarded(dump.parsed.name):
            if dump.mode == "per_token":
                for pass_id, ids in _topk_ids(dump):
                    counts.add(pass_id, _count_ids(ids, dump.mapping, num_layers, num_experts))
            else:
                for r, record in enumerate(dump.records):
                    counts.add(_pass_id(record, r), _count_physical(dump, r, num_experts))
    return _records_load(dumps, counts, assumed, sorted(ranks))


def _pass_id(record: dict, index: int):
    pass_id = record.get("forward_pass_id")
    return pass_id if isinstance(pass_id, int) and not isinstance(pass_id, bool) else index


def _topk_ids(dump: _Dump):
    """Each record's topk ids, checked, one record at a time: (pass id, [layers, tokens * top_k] int64, -1 pads)."""
    num_layers = None if dump.mapping is None else dump.mapping.shape[0]
    for r, record in enumerate(dump.records):
        field = f"records[{r}].topk_ids_of_layer"
        if "topk_ids_of_layer" not in record:
            raise fail(dump.parsed.name, f"records[{r}]", "has no 'topk_ids_of_layer' like records[0]")
        topk = to_tensor(record["topk_ids_of_layer"], dump.parsed.name, field)
        num_layers = topk.shape[0] if num_layers is None and topk.dim() == 3 else num_layers
        if topk.dim() != 3 or topk.shape[0] == 0 or topk.shape[0] != num_layers:
            raise fail(dump.parsed.name, field, f"has shape {shape_text(topk)}, expected [layers, tokens, top_k] "
                       "with the same layer count (at least 1) in every record")
        ids = expert_ids(topk, dump.parsed.name, field, lowest=-1).flatten(1)
        if dump.mapping is not None and ids.numel() and int(ids.max()) >= dump.mapping.shape[1]:
            raise fail(dump.parsed.name, field, f"has slot id {int(ids.max())}, but the map has "
                       f"{dump.mapping.shape[1]} slots")
        yield _pass_id(record, r), ids


def _count_ids(ids: torch.Tensor, mapping, num_layers: int, num_experts: int) -> torch.Tensor:
    """[layers, tokens * top_k] slot ids (-1 pads) -> tokens per logical expert [layers, experts] int64."""
    valid = ids >= 0
    experts = ids.clamp(min=0) if mapping is None else mapping.gather(1, ids.clamp(min=0))
    return torch.zeros(num_layers, num_experts, dtype=torch.int64).scatter_add_(1, experts, valid.long())


def _count_physical(dump: _Dump, r: int, num_experts: int) -> torch.Tensor:
    """A per_pass record's global_physical_count [layers, physical] -> per logical expert [layers, experts]."""
    field = f"records[{r}].global_physical_count"
    record = dump.records[r]
    if "global_physical_count" not in record:
        raise fail(dump.parsed.name, f"records[{r}]", "has no 'global_physical_count' like records[0]")
    physical = to_tensor(record["global_physical_count"], dump.parsed.name, field)
    if physical.shape != dump.mapping.shape:
        raise fail(dump.parsed.name, field, f"has shape {shape_text(physical)}, expected "
                   f"{shape_text(dump.mapping)} like last_physical_to_logical_map")
    physical = expert_ids(physical, dump.parsed.name, field, lowest=0)
    return torch.zeros(dump.mapping.shape[0], num_experts, dtype=torch.int64).scatter_add_(1, dump.mapping, physical)


def _records_load(dumps: list[_Dump], counts: _Counts, assumed: str, ranks: list) -> LoadData:
    mode, name = dumps[0].mode, dumps[0].parsed.name
    if len(dumps) == 1:
        whose = f"rank {dumps[0].rank}'s tokens only" if dumps[0].rank is not None else "one rank's tokens only"
        files = f"{whose}: open every rank's file together for the true counts"
    else:
        files = f"{len(dumps)} rank files summed" + (f" (ranks {_span(ranks)})" if ranks else "")
    notes = [f"SGLang expert-distribution recorder ({mode} mode), {files}", f"one step per forward pass, {assumed}"]
    dense = _dense_note(counts.total.sum(1, dtype=torch.float64))
    if dense:
        notes.append(dense)
    layer_ids = tuple(range(counts.shape[0]))
    if counts.by_pass is None:
        notes.append(f"{len(counts.passes)} passes x {counts.shape[0]} x {counts.shape[1]} counts are above the "
                     f"{safe.MAX_ELEMENTS:,} values kept, so only their sum is kept (no trace to replay)")
        return make_load(counts.total, f"SGLang {mode} dump", name, "records", "; ".join(notes), layer_ids=layer_ids)
    trace = torch.stack([counts.by_pass[p] for p in sorted(counts.by_pass, key=_sort_key)])
    return make_load(trace, f"SGLang {mode} dump", name, "records", "; ".join(notes), layer_ids=layer_ids)


def _sort_key(pass_id):
    return (0, pass_id) if isinstance(pass_id, int) else (1, str(pass_id))


def _span(ranks: list) -> str:
    if ranks == list(range(ranks[0], ranks[0] + len(ranks))) and len(ranks) > 2:
        return f"{ranks[0]}-{ranks[-1]}"
    return ", ".join(map(str, ranks))


LOAD_LAYOUTS = [
    LoadLayout("SGLang stat dump", "'logical_count' (SGLang)", _detect_count,
               _read_count),
    LoadLayout("SGLang per_pass / per_token dump", "'records' (SGLang rank dumps)",
               _detect_records, _read_records, several=True),
]


# ---------------------------------------------------------------- --init-expert-location placements


def _read_mapping(parsed: Parsed) -> torch.Tensor:
    extra = sorted(set(parsed.obj) - {"physical_to_logical_map"}, key=str)
    if extra:
        raise fail(parsed.name, "", f"holds {safe.short([str(k) for k in extra], 80)} besides "
                   "physical_to_logical_map: SGLang passes every key to its loader, which then raises TypeError; "
                   "keep only physical_to_logical_map")
    return check_phy2log(parsed.obj["physical_to_logical_map"], parsed.name, "physical_to_logical_map")


PLACEMENT_LAYOUTS = [
    PlacementLayout("SGLang --init-expert-location",
                    lambda p: isinstance(p.obj, dict) and "physical_to_logical_map" in p.obj, _read_mapping),
]


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


PLACEMENT_FORMATS = {
    "sglang-json": Writer(
        "SGLang --init-expert-location (.json)", ".json", "application/json",
        lambda p: json.dumps({"physical_to_logical_map": p.phy2log.tolist()}).encode(), layers="decoder"),
    "sglang-pt": Writer(
        "SGLang --init-expert-location (.pt)", ".pt", "application/octet-stream",
        lambda p: _torch_bytes({"physical_to_logical_map": p.phy2log.clone()}), default=True, layers="decoder"),
}

LOAD_FORMATS = {
    "sglang-count-json": Writer(
        "SGLang --init-expert-location logical_count (.json)", ".json", "application/json",
        lambda load: json.dumps({"logical_count": plain_numbers(load)}).encode(), layers="decoder"),
    "sglang-count-pt": Writer(
        "SGLang --init-expert-location logical_count (.pt)", ".pt", "application/octet-stream",
        lambda load: _torch_bytes({"logical_count": load.clone()}), layers="decoder"),
}


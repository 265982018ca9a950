"""Hostile and broken files through the upload path (``ui.data.from_upload`` -> ``eplb.formats.read_load``,
and the sidebar's ``ui.state.accept_upload`` in AppTest), driven by hypothesis and by hand.

Every file either reads into a sane load (2-D float32, finite, >= 0) or is refused with a
ValueError (FormatError) whose one-line message names the file and says what is wrong;
any other exception type fails the test. In the app, a refused file leaves the previous
data, its charts and its cards on screen. A layer without load reads "no load".
The number of cases run is printed at the end of the module (and kept in
test-output/hostile-input-cases.json).
"""

from __future__ import annotations

import base64
import io
import json
import math
import pickle
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

import eplb
import eplb.formats.safe
from eplb.formats import write_load, write_placement
from eplb.presets import custom_model
from tests.conftest import ROOT, assert_clean, plain
from tests.e2e.conftest import app_pages
from ui import data
from ui.figures import NO_LOAD

CASES: Counter = Counter()
"""Files tried, by kind."""

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAGIC = [b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04", b"\x93NUMPY\x01\x00", b"[", b"{", b"1,2\n"]
"""Starts of the formats the reader detects, so random bodies reach each parser, not only the text path."""

LOAD = torch.tensor([[3, 0, 7, 1], [2, 9, 0, 4], [5, 5, 5, 5]])  # [layers 3, experts 4]
MODEL = custom_model(3, 4, 0)  # LOAD's model, for the formats with one row per decoder layer


@pytest.fixture(scope="module", autouse=True)
def count_cases(request):
    """At the end of the module: print how many files were tried (the README quotes it) and keep the tally."""
    yield
    total = sum(CASES.values())
    line = f"hostile input: {total} files tried through the upload path (" + \
        ", ".join(f"{kind} {n}" for kind, n in sorted(CASES.items())) + ")"
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + line)
    out = Path(__file__).resolve().parent.parent / "test-output"
    out.mkdir(exist_ok=True)
    (out / "hostile-input-cases.json").write_text(json.dumps({"total": total, "by_kind": dict(CASES)}, indent=2))


def outcome(content: bytes, filename: str, kind: str) -> data.LoadedData | str:
    """Read a file as an upload: the loaded data (checked sane) or the refusal's message (checked clear).

    Any exception other than ValueError propagates and fails the test.
    """
    CASES[kind] += 1
    try:
        loaded = data.from_upload(content, filename)
    except ValueError as exc:  # FormatError and eplb's ValueErrors
        message = str(exc)
        assert message.startswith(filename), f"the message should name the file: {message!r}"
        assert "\n" not in message and "Traceback" not in message and len(message) < 600, message
        return message
    weight = loaded.weight
    assert weight.dim() == 2 and weight.numel() > 0 and weight.dtype == torch.float32, weight.shape
    assert bool(torch.isfinite(weight).all()), f"{filename}: read non-finite loads {weight.flatten()[:8]}"
    assert bool((weight >= 0).all()), f"{filename}: read negative loads"
    return loaded


def refused(content: bytes, filename: str, kind: str) -> str:
    result = outcome(content, filename, kind)
    assert isinstance(result, str), f"{filename} ({kind}) was read, expected a refusal: {result.label}"
    return result


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz(compressed: bool = False, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _torch(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


MAP = torch.tensor([[0, 1, 2, 3, 0, 2], [3, 2, 1, 0, 1, 1], [1, 3, 0, 2, 3, 0]])  # [layers 3, physical 6]
"""A physical-to-logical map of LOAD's shape with redundant slots, for the SGLang rank dumps below."""


def _physical(load: torch.Tensor) -> torch.Tensor:
    """LOAD's counts spread over MAP's physical slots: every expert's tokens on its first slot."""
    physical = torch.zeros(MAP.shape, dtype=torch.int32)
    for layer in range(MAP.shape[0]):
        for expert in range(load.shape[1]):
            physical[layer, int((MAP[layer] == expert).nonzero()[0])] = int(load[layer, expert])
    return physical


def _rank_dump(rank: int, share: torch.Tensor) -> bytes:
    """An SGLang per_pass rank file (one forward pass), as its _DetailAccumulator dumps it."""
    record = dict(forward_pass_id=7, rank=rank, gatherer_key="primary", global_physical_count=_physical(share))
    return _torch(dict(records=[record], last_physical_to_logical_map=MAP))


def _per_token_dump() -> bytes:
    """An SGLang per_token rank file: every token of LOAD routed to its expert's first slot, top-8 padded with -1."""
    tokens = []
    for layer in range(3):
        ids = [int((MAP[layer] == e).nonzero()[0]) for e in range(4) for _ in range(int(LOAD[layer, e]))]
        tokens.append(ids)
    width = max(map(len, tokens))
    topk = torch.full((3, width, 8), -1, dtype=torch.int32)
    for layer, ids in enumerate(tokens):
        topk[layer, :len(ids), 0] = torch.tensor(ids, dtype=torch.int32)
    record = dict(forward_pass_id=1, rank=0, gatherer_key="primary", input_ids=list(range(width)),
                  positions=list(range(width)), extend_seq_lens=[width], forward_mode=1, topk_ids_of_layer=topk,
                  misc_objects=[], global_physical_count=torch.zeros(3, 6, dtype=torch.int32))
    return _torch(dict(records=[record], last_physical_to_logical_map=MAP))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _safetensors(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _trtllm_rank(share: torch.Tensor) -> bytes:
    """TensorRT-LLM's rank{r}.safetensors: "{iter}_{layer}" -> int64 counts, one iteration, decoder layers 1-3."""
    return _safetensors({f"50_{layer + 1}": share[layer].long() for layer in range(3)})


_STAT_BUFFER = torch.zeros(4, 3, 4, dtype=torch.int32)
_STAT_BUFFER[0] = LOAD
HALF = LOAD // 2  # one rank's share; the other rank has LOAD - HALF

VALID = {
    "load.csv": write_load("csv", LOAD),
    "load.json": write_load("json", LOAD),
    "sglang.json": write_load("sglang-count-json", LOAD[None], model=MODEL),
    "expert-load.json": write_load("expert-load-json", LOAD[None].repeat(2, 1, 1)),
    "load.npy": write_load("npy", LOAD),
    "load.npz": _npz(load=LOAD.numpy()),
    "compressed.npz": _npz(True, load=LOAD.numpy()),
    "load.pt": write_load("pt", LOAD),
    "legacy.pt": _torch(LOAD, legacy=True),
    "sglang.pt": write_load("sglang-count-pt", LOAD[None], model=MODEL),
    "sglang-stat.pt": _torch(dict(rank=0, logical_count=_STAT_BUFFER, average_utilization_rate_over_window=None)),
    "per_pass_0.pt": _rank_dump(0, LOAD),
    "per_token_0.pt": _per_token_dump(),
    "ranks.zip": _zip({"dump/r0.pt": _rank_dump(0, HALF), "dump/r1.pt": _rank_dump(1, LOAD - HALF)}),
    "rank0.safetensors": _trtllm_rank(LOAD),
    "statistics.zip": _zip({"meta_info.json": json.dumps({"num_experts": 4, "num_experts_per_token": 2}).encode(),
                            "rank0.safetensors": _trtllm_rank(HALF), "rank1.safetensors": _trtllm_rank(LOAD - HALF)}),
}
"""One small valid file per container and engine layout; each reads back to LOAD (expert-load.json: twice it)."""

PLACEMENTS = {
    name: write_placement(fmt, torch.tensor([[0, 1, 2, 3, 0, 2, 1, 3]] * 3), eplb.Topology(8, 1, 1, 4), mode="auto",
                          policy="joint", model=MODEL)
    for name, fmt in (("init.json", "sglang-json"), ("expert_map.json", "ascend-json"), ("eplb.yaml", "trtllm-yaml"))
}
"""Placement files uploaded as loads: refused as placements, and their truncations cleanly."""


def test_every_valid_file_reads_back():
    for name, content in VALID.items():
        loaded = outcome(content, name, "valid")
        assert not isinstance(loaded, str), loaded
        assert torch.equal(loaded.weight, LOAD.float() * (2 if name == "expert-load.json" else 1)), name
    for name, content in PLACEMENTS.items():
        assert "this is a placement" in refused(content, name, "placement as a load")


# ---------------------------------------------------------------- random and damaged bytes


@pytest.mark.parametrize("extension", data.LOAD_EXTENSIONS)
@SETTINGS
@given(start=st.sampled_from(MAGIC), body=st.binary(max_size=400))
def test_random_bytes_under_every_accepted_extension(extension, start, body):
    outcome(start + body, f"random.{extension}", f"random .{extension}")


@pytest.mark.parametrize("name", [*VALID, *PLACEMENTS])
def test_every_truncation_of_every_valid_file(name):
    content = VALID.get(name) or PLACEMENTS[name]
    for cut in range(len(content)):  # every prefix, including the empty file
        outcome(content[:cut], name, "truncated")


@pytest.mark.parametrize("name", VALID)
@SETTINGS
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_bytes_in_every_valid_file(name, flips):
    damaged = bytearray(VALID[name])
    for position, value in flips:
        damaged[position % len(damaged)] = value
    outcome(bytes(damaged), name, "damaged")


@pytest.mark.parametrize("extension", data.LOAD_EXTENSIONS)
@pytest.mark.parametrize("content", [b"", b" \n\t\r\n", b"\xef\xbb\xbf", b"# only a comment\n", b"\n\n\n"],
                         ids=["empty", "whitespace", "bom", "comment", "newlines"])
def test_empty_files_are_refused(extension, content):
    message = refused(content, f"empty.{extension}", "empty")
    assert "empty" in message or "no rows" in message, message


# ---------------------------------------------------------------- bad cells, in every container

PROBLEMS = {"text": "not a number", "nonfinite": "NaN or infinite", "negative": "negative"}
cell = st.one_of(
    st.integers(0, 10**6).map(float),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -0.5, 1e30, 3e38]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)


def _problems(matrix: list[list[float]]) -> set[str]:
    values = [v for row in matrix for v in row]
    found = set()
    if any(not math.isfinite(v) for v in values):
        found.add("nonfinite")
    if any(v < 0 for v in values):
        found.add("negative")
    return found


def _write(matrix: list[list[float]], container: str) -> bytes:
    if container == "csv":
        return "\n".join(",".join(repr(v) for v in row) for row in matrix).encode()
    if container == "json":
        return json.dumps(matrix).encode()  # NaN and Infinity as Python's json writes them
    if container == "npy":
        return _npy(np.array(matrix))
    return _torch(torch.tensor(matrix, dtype=torch.float64))


@pytest.mark.parametrize("container", ["csv", "json", "npy", "pt"])
@SETTINGS
@given(matrix=st.integers(1, 4).flatmap(lambda w: st.lists(st.lists(cell, min_size=w, max_size=w),
                                                          min_size=1, max_size=4)))
def test_nan_inf_negative_cells_are_named_or_the_load_reads_exactly(container, matrix):
    result = outcome(_write(matrix, container), f"cells.{container}", f"cells .{container}")
    present = _problems(matrix)
    if present:
        assert isinstance(result, str), f"{matrix} was read"
        named = {p for p, text in PROBLEMS.items() if text in result}
        assert named and named <= present, f"{result!r} for problems {present}"
    else:
        assert not isinstance(result, str), result
        assert torch.allclose(result.weight, torch.tensor(matrix, dtype=torch.float32), rtol=1e-6)


@pytest.mark.parametrize("content, problem", [
    (b"1,nan,3\n4,5,6\n", "NaN or infinite"),
    (b"1,inf,3\n4,5,6\n", "NaN or infinite"),
    (b"1,-2,3\n4,5,6\n", "negative"),
    (b"1,2,3\n4,abc,6\n", "'abc' is not a number"),
    (b"layer,e0,e1\n0,1,x\n1,2,3\n", "'x' is not a number"),
    (b"1,2,3\n4,5\n", "has 2 values, expected 3"),
    (b"1;2;3\n4;;6\n", "'' is not a number"),
], ids=["nan", "inf", "negative", "text", "text-after-header", "ragged", "empty-cell"])
def test_bad_csv_cells_are_named(content, problem):
    assert problem in refused(content, "bad.csv", "bad cells")


@pytest.mark.parametrize("document, problem", [
    ([[1, None]], "expected a number"),
    ([[1, "2"]], "expected a number"),
    ([[1, 2], [3]], "rows must be the same length"),
    ([[[[1]]]], "4-D"),
    ([], "empty"),
    ({"load_history": []}, "non-empty list"),
    ({"logical_count": [[[1, -1]]]}, "negative"),
    ({"phy2log": [[0, 1]]}, "not an expert load"),
    ({"a": [1], "b": [2]}, "not a known layout"),
    ([[1e39, 1]], ""),  # finite in JSON, but beyond float32: refused, never read as infinity
], ids=["null", "string", "ragged", "4-D", "empty", "empty-history", "negative-count", "placement", "two-arrays",
        "beyond-float32"])
def test_bad_json_is_named(document, problem):
    assert problem in refused(json.dumps(document).encode(), "bad.json", "bad json")


@pytest.mark.parametrize("content, problem", [
    (_npy(np.array(["a", "b"])), "expected numbers"),
    (_npy(np.array([1 + 2j])), "expected numbers"),
    (_npy(np.zeros((0, 3))), "empty"),
    (_npy(np.array(5.0)), "0-D"),
    (_npy(np.array([[np.inf, 1]], dtype=np.float16)), "NaN or infinite"),
    (_torch(torch.ones(2, 2).to_sparse()), ""),
    (_torch(torch.ones(2, 2).to(torch.float8_e4m3fn)), ""),
    (_torch(torch.ones(2, 2, dtype=torch.bool)), "real numbers"),
    (_torch("a string"), "expected an array of numbers"),
    (_torch({"logical_count": torch.ones(1, 2, 3, 4)}), "4-D"),
], ids=["text", "complex", "empty", "scalar", "float16-overflow", "sparse", "float8", "bool", "string", "4-D-count"])
def test_bad_binary_arrays_are_named(content, problem):
    assert problem in refused(content, "bad.bin", "bad arrays")


@pytest.mark.parametrize("records, problem", [
    ({"records": [{"topk_ids_of_layer": [[[-1]]]}]}, "records"),
    ({"records": [{"topk_ids_of_layer": [[[10**12]]]}]}, "records"),  # must not try to allocate 10^12 counters
    ({"records": [{"topk_ids_of_layer": [[[1e30]]]}]}, "records"),
], ids=["only-padding", "huge-id", "float-id"])
def test_sglang_records_with_impossible_ids_are_refused(records, problem):
    assert problem in refused(json.dumps(records).encode(), "records.json", "bad records")


# ---------------------------------------------------------------- shapes and sizes


def test_one_by_one_and_very_wide_matrices_read():
    one = outcome(b"7\n", "one.csv", "shape")
    assert one.weight.shape == (1, 1)
    wide = outcome(_npy(np.arange(20000, dtype=np.float32)[None]), "wide.npy", "shape")
    assert wide.weight.shape == (1, 20000)
    vector = outcome(json.dumps(list(range(9))).encode(), "vector.json", "shape")
    assert vector.weight.shape == (1, 9)  # a 1-D vector is one layer


def test_a_file_over_the_size_limit_is_refused_with_the_limit(monkeypatch):
    monkeypatch.setattr(eplb.formats.safe, "MAX_BYTES", 2**20)
    row = b",".join(b"1" for _ in range(512)) + b"\n"  # 1 KiB per row
    at_limit = row * 1024
    assert len(at_limit) == 2**20
    assert outcome(at_limit, "big.csv", "size").weight.shape == (1024, 512)
    message = refused(at_limit + b"1", "big.csv", "size")
    assert "1 MiB limit" in message and "1.0 MiB" in message


# ---------------------------------------------------------------- files that would run code


class _RunsCode:
    """Unpickling this writes a marker file: proof that loading ran code."""

    marker: Path

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('ran')",)


def _payloads(marker: Path) -> dict[str, bytes]:
    """Files that run code when unpickled, in every container that can hold a pickle."""
    evil = _RunsCode()
    evil.marker = marker
    return {
        "pickle.pt": pickle.dumps(evil),
        "torch-zip.pt": _torch(evil),
        "torch-dict.pth": _torch({"logical_count": evil}),
        "legacy.pt": _torch(evil, legacy=True),
        "objects.npy": _npy(np.array([evil, 1], dtype=object)),
        "objects.npz": _npz(load=np.array([evil], dtype=object)),
        "disguised.csv": pickle.dumps(evil),  # the content decides, not the name
        "disguised.json": _torch(evil),
    }


def test_files_that_would_run_code_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    payloads = _payloads(marker)
    pickle.loads(payloads["pickle.pt"])  # the payload is live: unpickling it does write the marker
    assert marker.read_text() == "ran"
    marker.unlink()
    with zipfile.ZipFile(io.BytesIO(payloads["torch-zip.pt"])) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())
    for name, content in payloads.items():
        message = refused(content, name, "runs code")
        assert "refused" in message and "could run code" in message, message
        assert not marker.exists(), f"reading {name} ran code"


# ---------------------------------------------------------------- in the app: the session keeps working


CSV = "\n".join(",".join(str((3 * layer + e) % 7 + (30 if e == 2 * layer else 0)) for e in range(32))
                for layer in range(4)).encode()  # 4 layers x 32 experts: fits the default 4 x 8 GPUs
UPLOADER = "eplb_upload"


def _upload(at: AppTest, name: str, content: bytes) -> AppTest:
    return at.file_uploader(key=UPLOADER).set_value((name, content, "application/octet-stream")).run()


def _shown(at: AppTest) -> tuple[str, dict[str, str], int]:
    """What the main page shows: the summary line, the cards but runtime, the number of charts."""
    summary = next(plain(m.value) for m in at.markdown if " layers x " in m.value)
    cards = {m.label: m.value for m in at.metric if m.label != "Rebalance runtime"}
    return summary, cards, len(at.get("plotly_chart"))


def test_after_each_bad_upload_the_previous_data_and_charts_stay(open_page, tmp_path):
    at = open_page(data="upload")
    _upload(at, "good.csv", CSV)
    assert_clean(at)
    good = _shown(at)
    assert "upload: good.csv" in good[0] and good[2] >= 4
    bad = {
        "random.pt": bytes(range(256)) * 3,
        "truncated.npy": VALID["load.npy"][:60],
        "damaged.npz": VALID["compressed.npz"][:-30],
        "empty.csv": b"",
        "nan.csv": b"1,nan\n2,3\n",
        "text.csv": b"1,2\n3,four\n",
        "ragged.json": b"[[1, 2], [3]]",
        "4d.npy": _npy(np.ones((1, 1, 2, 2))),
        "evil.pt": _payloads(tmp_path / "ran")["pickle.pt"],
    }
    for name, content in bad.items():
        CASES["app upload"] += 1
        _upload(at, name, content)
        assert_clean(at)
        assert any(f"Could not use {name}" in plain(e.value) and "Keeping the current data" in e.value for e in at.error), name
        assert _shown(at) == good, name
    assert not (tmp_path / "ran").exists()
    _upload(at, "next.csv", CSV.replace(b"30", b"90"))  # and a good file still works afterwards
    assert_clean(at)
    summary, cards, _ = _shown(at)
    assert "upload: next.csv" in summary and cards != good[1]


@pytest.mark.parametrize("name, content", [
    ("one.csv", b"7\n"),
    ("prime.csv", b"1,2,3,4,5,6,7\n"),
    ("one-layer.csv", CSV.splitlines()[0]),
    ("wide.npy", _npy(np.arange(20000, dtype=np.float32)[None] % 97)),
], ids=["1x1", "7-experts", "1x32", "1x20000"])
def test_shapes_that_fit_no_topology_are_explained_inline(open_page, name, content):
    at = open_page(data="upload")
    CASES["app upload"] += 1
    _upload(at, name, content)
    assert_clean(at)
    problems = [e.value for e in at.error]
    if name in ("one-layer.csv", "wide.npy"):  # 32 or 20000 experts + 32 redundant slots fit 32 GPUs in 8 groups
        assert not problems and f"upload: {name}" in _shown(at)[0], problems
    else:  # 1 or 7 experts: 8 expert groups cannot divide them; the sample stays on screen beside the message
        assert problems and all("does not fit the data" in p for p in problems), problems
        assert any("Showing the last valid setting" in i.value for i in at.info)


def test_a_file_over_the_limit_is_refused_in_the_app(open_page, monkeypatch):
    monkeypatch.setattr(eplb.formats.safe, "MAX_BYTES", 4096)
    at = open_page(data="upload")
    _upload(at, "good.csv", CSV)
    good = _shown(at)
    CASES["app upload"] += 1
    _upload(at, "big.csv", CSV * 20)
    assert_clean(at)
    assert any("Could not use big.csv" in plain(e.value) and "limit" in e.value for e in at.error)
    assert _shown(at) == good


# ---------------------------------------------------------------- no load reads "no load"

ZERO_LAYER = b"0,0,0,0,0,0,0,0\n5,1,0,0,9,2,3,3\n4,4,4,4,4,4,4,4\n"
ALL_ZERO = b"0,0,0,0,0,0,0,0\n0,0,0,0,0,0,0,0\n"
SMALL_TOPOLOGY = {"nodes": "1", "gpus_per_node": "4", "redundant": "4", "groups": "1"}  # 8 experts + 4 on 4 GPUs


def _untrustworthy_values(at: AppTest) -> list[str]:
    """Metric values and table cells that show NaN, infinity or 'None' instead of a number or 'no load'."""
    bad = [f"{m.label}={m.value}" for m in at.metric if m.value.strip().lower() in ("nan", "inf", "-inf", "none")]
    for frame in at.dataframe:
        values = frame.value
        for column in values.columns:
            for value in values[column]:
                if (isinstance(value, float) and not math.isfinite(value)) or \
                        str(value).strip().lower() in ("nan", "inf", "none", "<na>"):
                    bad.append(f"{column}={value!r}")
    return bad


@pytest.mark.parametrize("name, content", [("zero-layer.csv", ZERO_LAYER), ("all-zero.csv", ALL_ZERO)],
                         ids=["zero-layer", "all-zero"])
def test_no_load_reads_no_load_on_every_page(open_page, name, content):
    at = open_page(query_params=SMALL_TOPOLOGY, data="upload")
    CASES["app zero load"] += 1
    _upload(at, name, content)
    assert_clean(at)
    cards = {m.label: m.value for m in at.metric}
    ratios = ["Balancedness before (vLLM)", "Balancedness after (vLLM)", "Bound's balancedness", "Max / mean after"]
    if name == "all-zero.csv":
        assert all(cards[label] == NO_LOAD for label in ratios), cards
    else:
        assert all(0 < float(cards[label]) < math.inf for label in ratios), cards
    lines = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if NO_LOAD in c.proto.spec)
    marks = [trace for trace in lines["data"] if trace.get("name") == NO_LOAD]
    idle = [0] if name == "zero-layer.csv" else [0, 1]
    labelled = _plotly_array(marks[0]["x"]) if marks else np.array([])
    assert labelled.size and ((labelled >= idle[0] - 0.5) & (labelled <= idle[-1] + 0.5)).all(), marks
    for trace in lines["data"]:
        if trace.get("name") in ("before", "after"):  # a layer without load is a gap, never a 0 or a ratio
            y = _plotly_array(trace["y"])
            assert np.isnan(y[idle]).all() and np.isfinite(np.delete(y, idle)).all(), (trace["name"], y)
    on_this_load = 0
    for page in app_pages():  # the same session on every page: the upload stays, nothing reads NaN or 0
        at.switch_page(page.path).run()
        assert_clean(at)
        assert not _untrustworthy_values(at), (page.path, _untrustworthy_values(at))
        on_this_load += any(f"upload: {name}" in plain(m.value) for m in at.markdown)
    assert on_this_load >= 2, "the upload should stay the session's data on the pages that use it"


def _plotly_array(value) -> np.ndarray:
    """A trace's array from a figure's JSON: a list (None for gaps) or Plotly's typed {"dtype", "bdata"} form."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.array([np.nan if v is None else v for v in value], dtype=float)


# ---------------------------------------------------------------- the reported repros, one regression test each


def _repro_files() -> dict[str, bytes]:
    """Small files that once took the server past several GiB: each must be refused before it allocates."""
    stride0 = torch.ones(1, 1).expand(1, 2**25)  # 1.5 KB on disk, a [1, 33.5M] load once read
    view = torch.zeros(1).expand(4096, 8192)
    shared = torch.zeros(1, 1, 1, dtype=torch.int32).expand(4, 2**15, 8)  # 1 Mi ids, no bytes behind them
    record = {"forward_pass_id": 0, "rank": 0, "topk_ids_of_layer": shared}
    return {
        "stride0.pt": _torch(stride0),
        "zeros.npz": _npz(True, load=np.zeros((1, 60_000_000), dtype=np.float32)),
        "nested-list.pt": _torch([[1] * 10**4] * 10**5),
        "forty-views.pt": _torch([view] * 40),
        "shared-records.pt": _torch({"records": [record] * 200}),
    }


_MEASURE = """
import json, sys
sys.path.insert(0, {root!r})
from eplb.formats import FormatError, read_load_file
read_load_file({warm!r})  # imports and first-call caches out of the way
def rss(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024
out = {{}}
for path in {paths!r}:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current size
    base = rss("VmRSS")
    try:
        read_load_file(path)
        message = None
    except FormatError as exc:
        message = str(exc)
    out[path] = {{"growth": rss("VmHWM") - base, "message": message}}
print(json.dumps(out))
"""


def _peak_growth(paths: list[Path], warm: Path) -> dict[str, dict]:
    """Read each file in a fresh process and report how far its resident memory peaked above where it started."""
    import subprocess
    import sys

    code = _MEASURE.format(root=str(ROOT), warm=str(warm), paths=[str(p) for p in paths])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_blow_ups_are_refused_before_they_allocate(tmp_path):
    """stride-0 .pt, zero-filled .npz, nested-list .pt, forty stride-0 views, SGLang records sharing one view."""
    paths = []
    for name, content in _repro_files().items():
        CASES["repro"] += 1
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
        assert len(content) < 2**20, (name, len(content))  # all of them small files
    (tmp_path / "warm.csv").write_bytes(b"1,2\n3,4\n")
    found = _peak_growth(paths, tmp_path / "warm.csv")
    print("\npeak memory above the start while refusing: " + ", ".join(
        f"{p.name} ({p.stat().st_size / 1024:.1f} KB) {found[str(p)]['growth'] / 2**20:.1f} MiB" for p in paths))
    for path in paths:
        result = found[str(path)]
        assert result["message"] and result["message"].startswith(path.name), result
        assert "limit" in result["message"] or "would make more than" in result["message"], result
        assert result["growth"] < 64 * 2**20, f"{path.name} peaked {result['growth'] / 2**20:.0f} MiB above start"


def test_csv_peaks_at_a_few_times_its_size_not_thirty(tmp_path):
    rows = (",".join(str((7919 * r + 104729 * c) % 99991) for c in range(512)) for r in range(4096))
    path = tmp_path / "big.csv"
    path.write_text("\n".join(rows) + "\n")
    (tmp_path / "warm.csv").write_bytes(b"1,2\n3,4\n")
    CASES["repro"] += 1
    result = _peak_growth([path], tmp_path / "warm.csv")[str(path)]
    size = path.stat().st_size
    assert result["message"] is None, result
    print(f"\nCSV of {size / 2**20:.1f} MiB peaked {result['growth'] / size:.1f}x its size above the start")
    assert result["growth"] < 8 * size, result  # the cell-by-cell reader peaked at about 30x


def test_memory_error_while_reading_is_a_format_error(monkeypatch):
    import pandas

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pandas, "read_csv", out_of_memory)
    assert "needs more memory than this machine has free" in refused(b"1,2\n3,4\n", "huge.csv", "repro")


@pytest.mark.parametrize("error", [OverflowError, NotImplementedError, RuntimeError])
def test_what_torch_or_numpy_raise_becomes_a_format_error(monkeypatch, error):
    import eplb.formats.values as values

    def raises(*args, **kwargs):
        raise error("from deep inside the library")

    content = write_load("npy", LOAD)
    monkeypatch.setattr(values, "validate_weight", raises)
    message = refused(content, "odd.npy", "repro")
    assert f"cannot be read ({error.__name__}: from deep inside the library)" in message


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
@pytest.mark.parametrize("make, problem", [
    (lambda: torch.empty(2, 3, device="meta"), "meta tensor (shape only, no data)"),
    (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "nested tensor"),
], ids=["meta", "nested"])
def test_meta_and_nested_tensors_are_format_errors(make, problem):
    tensor = make()
    assert problem in refused(_torch(tensor), "odd.pt", "repro")
    assert problem in refused(_torch({"logical_count": tensor}), "odd.pt", "repro")


@pytest.mark.parametrize("content, where, cell", [
    (b"1,2\n#N/A,4\n5,6\n", "row 2, column 1", "#N/A"),
    (b"#DIV/0!,2\n3,4\n", "row 1, column 1", "#DIV/0!"),
    (b"1,,3\n4,5,6\n7,8,9\n", "row 1, column 2", ""),
    (b'=HYPERLINK("http://127.0.0.1/x","1"),2\n3,4\n', "row 1, column 1", "=HYPERLINK("),
], ids=["hash-na-row", "div0-first-row", "empty-cell-first-row", "hyperlink-first-row"])
def test_csv_bad_cells_are_named_not_dropped_as_comments_or_headers(content, where, cell):
    message = refused(content, "sheet.csv", "repro")
    assert f"{where}: {cell!r}"[:len(where) + 4 + len(cell) - (1 if cell.endswith("(") else 0)] in message \
        or f"{where}: '{cell}" in message, message


def test_a_comment_is_a_hash_then_a_space_or_nothing():
    loaded = outcome(b"# exported by my tool\n#\n1,2\n#\tnote\n3,4\n", "commented.csv", "repro")
    assert loaded.weight.tolist() == [[1, 2], [3, 4]]
    header = outcome(b"expert_a,expert_b\n1,2\n3,4\n", "named.csv", "repro")  # wholly non-numeric: a header
    assert header.weight.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("content, name", [
    (b"[[true, 1], [2, false]]", "bools.json"),
    (_torch([[True, 1]]), "bools.pt"),
    (b'{"logical_count": [[1, true]]}', "bools-count.json"),
], ids=["json", "torch-list", "json-logical-count"])
def test_booleans_are_refused_not_read_as_one_and_zero(content, name):
    assert "true and false are not token counts" in refused(content, name, "repro")


def test_json_with_duplicate_keys_or_two_layouts_is_refused():
    assert "holds the key 'logical_count' twice" in refused(
        b'{"logical_count": [[1, 2]], "logical_count": [[3, 4]]}', "twice.json", "repro")
    assert "holds two layouts at once" in refused(
        json.dumps({"logical_count": [[1, 2]], "load_history": [{"logical_expert_load": [[1, 2]]}]}).encode(),
        "both.json", "repro")

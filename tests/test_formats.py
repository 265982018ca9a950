"""Readers and writers of eplb.formats, on files written here in each engine's layout."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from eplb import Topology, rebalance_experts
from eplb import formats
from eplb.formats import FormatError, read_load, read_load_file, read_placement, safe, write_placement
from eplb.presets import custom_model

MODEL = custom_model(2, 6, 0)  # LOAD's model: 2 decoder layers, both MoE, 6 experts (no preset has this shape)

LOAD = torch.tensor([[90, 132, 40, 61, 104, 165], [20, 107, 104, 64, 19, 197]], dtype=torch.float32)
TRACE = torch.stack([LOAD, LOAD * 2, LOAD + 1])  # [3 steps, 2 layers, 6 experts]


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def legacy_torch_bytes(obj) -> bytes:
    """torch.save's pre-1.6 layout: a bare pickle stream, not a zip archive."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def csv_bytes(rows, header=None, labels=None) -> bytes:
    lines = [",".join(header)] if header else []
    for i, row in enumerate(rows):
        cells = [str(int(v)) for v in row]
        lines.append(",".join(([labels[i]] if labels else []) + cells))
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- plain matrices and traces


@pytest.mark.parametrize(
    "data, name, fmt",
    [
        (csv_bytes(LOAD.tolist()), "load.csv", "CSV"),
        (csv_bytes(LOAD.tolist(), header=[f"expert_{e}" for e in range(6)]), "load.csv", "CSV"),
        (csv_bytes(LOAD.tolist(), header=["layer"] + [f"e{e}" for e in range(6)], labels=["0", "1"]), "l.csv", "CSV"),
        (csv_bytes(LOAD.tolist(), labels=["layer_a", "layer_b"]), "l.csv", "CSV"),
        (csv_bytes(LOAD.tolist()).replace(b",", b"\t"), "load.tsv", "CSV"),
        (npy_bytes(LOAD.numpy()), "load.npy", "NumPy .npy"),
        (npy_bytes(LOAD.numpy().astype(np.int32)), "load.npy", "NumPy .npy"),
        (npy_bytes(LOAD.numpy().astype(">u4")), "big-endian.npy", "NumPy .npy"),
        (json.dumps(LOAD.tolist()).encode(), "load.json", "JSON"),
        (torch_bytes(LOAD.to(torch.int64)), "load.pt", "torch .pt"),
        (legacy_torch_bytes(LOAD), "old.pt", "torch .pt"),
        (npz_bytes(load=LOAD.numpy()), "load.npz", "NumPy .npz"),
    ],
)
def test_plain_matrix_reads_back_exactly(data, name, fmt):
    loaded = read_load(data, name)
    assert loaded.format == fmt
    assert loaded.trace is None
    assert loaded.matrix.dtype == torch.float32
    assert torch.equal(loaded.matrix, LOAD)
    assert "2 layers x 6 experts" in loaded.description


def test_pandas_style_csv_skips_index_column():
    data = b",0,1,2\n0,5,6,7\n1,8,9,10\n"
    loaded = read_load(data, "pandas.csv")
    assert loaded.matrix.tolist() == [[5, 6, 7], [8, 9, 10]]
    assert "header" in loaded.description and "layer labels" in loaded.description


@pytest.mark.parametrize(
    "data", [json.dumps(TRACE.tolist()).encode(), npy_bytes(TRACE.numpy()), torch_bytes(TRACE)]
)
def test_plain_trace_is_kept_and_summed(data):
    loaded = read_load(data)
    assert torch.equal(loaded.trace, TRACE)
    assert torch.equal(loaded.matrix, TRACE.sum(0))
    assert "trace of 3 steps" in loaded.description


def test_vector_is_one_layer():
    loaded = read_load(b"[1, 2, 3]", "v.json")
    assert loaded.matrix.shape == (1, 3)
    assert "one layer" in loaded.description


def test_content_wins_over_file_name():
    loaded = read_load(npy_bytes(LOAD.numpy()), "misnamed.csv")
    assert loaded.format == "NumPy .npy" and torch.equal(loaded.matrix, LOAD)


# ---------------------------------------------------------------- the engines' layouts


def test_sglang_stat_dump_drops_steps_never_filled():
    buffer = torch.zeros(5, 2, 6, dtype=torch.int32)  # a 5-step circular buffer after 3 forward passes
    buffer[:3] = TRACE.to(torch.int32)
    dump = {"rank": 0, "logical_count": buffer, "average_utilization_rate_over_window": 0.71}
    loaded = read_load(torch_bytes(dump), "expert_distribution_recorder_1700000000.pt")
    assert loaded.format == "SGLang stat dump"
    assert torch.equal(loaded.trace, TRACE)
    assert torch.equal(loaded.matrix, TRACE.sum(0))
    assert "[3, 2, 6] int32" in loaded.description and "2 never-filled buffer steps dropped" in loaded.description


def test_a_full_sglang_stat_buffer_is_a_summed_load_not_a_trace():
    dump = {"rank": 0, "logical_count": TRACE.to(torch.int32), "average_utilization_rate_over_window": None}
    loaded = read_load(torch_bytes(dump), "expert_distribution_recorder_1700000000.pt")
    assert loaded.trace is None and torch.equal(loaded.matrix, TRACE.sum(0))
    assert "the buffer is full" in loaded.description and "out of order" in loaded.description


def test_sglang_logical_count_json_matrix():
    loaded = read_load(json.dumps({"logical_count": LOAD.tolist()}).encode(), "init.json")
    assert loaded.trace is None and torch.equal(loaded.matrix, LOAD)


def test_vllm_expert_load_json():
    history = {"load_history": [{"step": i, "logical_expert_load": TRACE[i].int().tolist()} for i in range(3)]}
    loaded = read_load(json.dumps(history).encode(), "expert-load.json")
    assert loaded.format == "expert-load.json (ADRS EPLB evaluator)"
    assert torch.equal(loaded.trace, TRACE)


def test_sglang_per_token_records_counted_through_physical_map():
    # 2 layers, 4 logical experts, 6 physical slots: slots 4 and 5 are extra copies.
    mapping = torch.tensor([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 3]])
    topk = [torch.tensor([[[0, 4], [5, -1]], [[0, 4], [2, 3]]]), torch.tensor([[[3, 3], [3, 3]], [[5, 5], [1, 1]]])]
    dump = {
        "records": [
            {  # the keys SGLang's per-token gatherer stores for one forward pass
                "forward_pass_id": i, "rank": 0, "gatherer_key": "primary",
                "input_ids": [11, 12], "positions": [0, 1], "extend_seq_lens": [2], "forward_mode": 1,
                "topk_ids_of_layer": t.to(torch.int32), "misc_objects": [],
                "global_physical_count": torch.zeros(2, 6, dtype=torch.int32),
            }
            for i, t in enumerate(topk)
        ],
        "last_physical_to_logical_map": mapping,
    }
    loaded = read_load(torch_bytes(dump), "rank0.pt")
    assert loaded.format == "SGLang per_token dump"
    assert "rank 0's tokens only" in loaded.description
    # record 0, layer 0: slots 0,4,5 -> experts 0,0,1 (-1 is padding); layer 1: 0,4,2,3 -> 3,3,1,0
    assert loaded.trace[0].tolist() == [[2, 1, 0, 0], [1, 1, 0, 2]]
    assert loaded.trace[1].tolist() == [[0, 0, 0, 4], [0, 0, 2, 2]]
    assert "last_physical_to_logical_map" in loaded.description


def test_sglang_per_token_records_without_map_assume_logical_ids():
    dump = {"records": [{"topk_ids_of_layer": torch.tensor([[[0, 2], [2, 2]]])}]}
    loaded = read_load(torch_bytes(dump), "rank0.pt")
    assert loaded.matrix.tolist() == [[1, 0, 3]]
    assert "3 experts assumed" in loaded.description


# ---------------------------------------------------------------- refusals


class RunsCode:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    data = torch_bytes({"logical_count": TRACE, "payload": RunsCode(marker)})
    with pytest.raises(FormatError, match="refused.*run code"):
        read_load(data, "evil.pt")
    with pytest.raises(FormatError, match="refused"):
        read_placement(data, "evil.pt")
    assert not marker.exists()
    # the same payload as a bare pickle stream (torch's legacy layout)
    import pickle

    with pytest.raises(FormatError, match="refused"):
        read_load(pickle.dumps(RunsCode(marker), protocol=2), "evil.pt")
    assert not marker.exists()


def test_numpy_object_array_is_refused():
    data = npy_bytes(np.array([[1, "a"]], dtype=object))
    with pytest.raises(FormatError, match="refused"):
        read_load(data, "objects.npy")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"1,2,3\n4,x,6\n", r"row 2, column 2: 'x' is not a number"),
        (b"e0,e1\n1,2\n3,oops\n", r"row 3, column 2"),
        (b"1,2,3\n4,5\n", r"row 2: has 2 values, expected 3"),
        (b"[[1, 2], [3, ", "invalid JSON"),
        (b"[[1, 2], [3]]", r"array\[1\]: has 1 values"),
        (b"[[1, -2]]", "negative"),
        (b"[[1, NaN]]", "NaN"),
        (b"[[[[1]]]]", "4-D"),
        (b'{"logical_count": 7}', "0-D"),
        (b"[]", "empty"),
        (b"\x00\x01\x02binary", "not a recognised format"),
        (b'{"physical_to_logical_map": [[0, 1]]}', "placement.*not an expert load"),
        (b'{"load_history": [{"other": 1}]}', "logical_expert_load"),
        (b'{"load_history": [{"logical_expert_load": [[1, 2]]}, {"logical_expert_load": [[1]]}]}',
         r"load_history\[1\].logical_expert_load: has shape \[1, 1\]"),
        (b'{"records": [{"topk_ids_of_layer": [[1, 2]]}]}', r"records\[0\].topk_ids_of_layer: has shape \[1, 2\]"),
        (b'{"records": []}', "non-empty list"),
        (b'{"a": 1, "b": [1]}'.replace(b"1,", b"[1],"), "not a known layout"),
    ],
)
def test_bad_input_gets_a_clear_message(data, match):
    with pytest.raises(FormatError, match=match) as info:
        read_load(data, "bad.dat")
    assert str(info.value).startswith("bad.dat")


def test_negative_in_trace_names_the_step():
    trace = TRACE.clone()
    trace[2, 1, 4] = -5
    with pytest.raises(FormatError, match=r"step 2: has 1 negative loads \(first at layer 1, expert 4"):
        read_load(torch_bytes(trace))


@pytest.mark.parametrize("make", [lambda: torch_bytes(LOAD), lambda: npy_bytes(LOAD.numpy())])
def test_truncated_binary_file(make):
    data = make()
    with pytest.raises(FormatError, match="truncated"):
        read_load(data[: len(data) // 2], "cut.bin")


def test_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(safe, "MAX_BYTES", 16)
    data = csv_bytes(LOAD.tolist())
    with pytest.raises(FormatError, match="MiB limit"):
        read_load(data, "big.csv")
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="MiB limit"):
        read_load_file(path)


def test_read_load_file_and_missing_file(tmp_path):
    path = tmp_path / "load.npy"
    np.save(path, LOAD.numpy())
    assert torch.equal(read_load_file(path).matrix, LOAD)
    with pytest.raises(FormatError, match="cannot be read"):
        read_load_file(tmp_path / "absent.csv")


# ---------------------------------------------------------------- placements


def placement():
    topology = Topology(num_replicas=8, num_groups=2, num_nodes=2, num_gpus=4)
    phy2log, _, _ = rebalance_experts(LOAD, 8, 2, 2, 4)
    return phy2log, topology


def placement_without_duplicates():
    """A placement with no two copies of one expert on one GPU (vllm-ascend's map allows none)."""
    topology = Topology(num_replicas=8, num_groups=1, num_nodes=1, num_gpus=4)
    return torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1], [5, 4, 3, 2, 1, 0, 2, 3]]), topology


@pytest.mark.parametrize("fmt", sorted(formats.PLACEMENT_FORMATS))
def test_placement_round_trip(fmt, tmp_path):
    phy2log, topology = placement_without_duplicates()
    data = write_placement(fmt, phy2log, topology, mode="auto", policy="deepseek", model=MODEL)
    writer = formats.PLACEMENT_FORMATS[fmt]
    path = tmp_path / f"placement{writer.extension}"
    path.write_bytes(data)
    assert torch.equal(read_placement(path.read_bytes(), path.name), phy2log)
    assert writer.label and writer.mime


def test_sglang_files_have_the_engine_layout():
    phy2log, topology = placement()
    document = json.loads(write_placement("sglang-json", phy2log, topology, mode="auto", policy="deepseek",
                                          model=MODEL))
    assert document == {"physical_to_logical_map": phy2log.tolist()}
    loaded = torch.load(io.BytesIO(write_placement("sglang-pt", phy2log, topology, mode="auto", policy="deepseek",
                                                   model=MODEL)), weights_only=True)
    assert set(loaded) == {"physical_to_logical_map"} and torch.equal(loaded["physical_to_logical_map"], phy2log)


def test_vllm_json_holds_reverse_maps_and_topology():
    phy2log, topology = placement()
    _, log2phy, logcnt = rebalance_experts(LOAD, 8, 2, 2, 4)
    document = json.loads(write_placement("vllm-json", phy2log, topology, mode="auto", policy="zigzag"))
    assert document["log2phy"] == log2phy.tolist()
    assert document["logcnt"] == logcnt.tolist()
    assert document["topology"] == {"num_replicas": 8, "num_groups": 2, "num_nodes": 2, "num_gpus": 4}
    assert document["mode"] == "hierarchical" and document["policy"] == "zigzag"


def test_write_placement_checks_its_input():
    phy2log, topology = placement()
    with pytest.raises(ValueError, match="unknown placement format"):
        write_placement("yaml", phy2log, topology, mode="auto", policy="deepseek")
    with pytest.raises(ValueError, match="num_replicas=16"):
        write_placement("sglang-json", phy2log, Topology(16, 2, 2, 4), mode="auto", policy="deepseek")


@pytest.mark.parametrize(
    "document, match",
    [
        ({"phy2log": [[0, 2, 2]]}, "layer 0 has no slot for expert 1"),
        ({"physical_to_logical_map": [[0, -1]]}, "negative"),
        ({"physical_to_logical_map": [[0, 0.5]]}, "non-integer"),
        ({"phy2log": [[0, 1, 1]], "logcnt": [[2, 1]]}, "logcnt"),
        ({"weights": [[0, 1]]}, "no 'phy2log'"),
    ],
)
def test_read_placement_refuses_broken_maps(document, match):
    with pytest.raises(FormatError, match=match):
        read_placement(json.dumps(document).encode(), "p.json")


# ---------------------------------------------------------------- writing loads


@pytest.mark.parametrize("fmt", sorted(formats.LOAD_FORMATS))
@pytest.mark.parametrize("load", [LOAD, TRACE, TRACE / 3], ids=["matrix", "trace", "fractional-trace"])
def test_load_round_trip(fmt, load, tmp_path):
    if fmt == "csv" and load.dim() == 3:
        with pytest.raises(ValueError, match="sum it over steps first"):
            formats.write_load(fmt, load)
        return
    path = tmp_path / f"load{formats.LOAD_FORMATS[fmt].extension}"
    path.write_bytes(formats.write_load(fmt, load, model=MODEL))
    loaded = read_load_file(path)
    kept = loaded.trace if load.dim() == 3 else loaded.matrix
    if kept is None:  # an SGLang logical_count trace with every step filled reads as a full buffer: summed
        kept, load = loaded.matrix, load.sum(0)
    if fmt == "expert-load-json" and load.dim() == 2:  # a load history is a trace: one step here
        kept = loaded.trace[0]
    assert torch.allclose(kept, load, rtol=1e-6)


def test_sglang_logical_count_layout():
    data = formats.write_load("sglang-count-pt", TRACE, model=MODEL)
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    assert set(loaded) == {"logical_count"} and torch.equal(loaded["logical_count"], TRACE)
    document = json.loads(formats.write_load("sglang-count-json", LOAD, model=MODEL))
    assert document == {"logical_count": LOAD.long().tolist()}


def test_write_load_refuses_bad_loads():
    with pytest.raises(ValueError, match="unknown load format"):
        formats.write_load("xlsx", LOAD)
    with pytest.raises(ValueError, match="negative"):
        formats.write_load("json", -LOAD)


def test_format_for_path():
    assert formats.format_for_path("dir/out.PT", formats.PLACEMENT_FORMATS) == "sglang-pt"
    assert formats.format_for_path("out.yml", formats.PLACEMENT_FORMATS) == "trtllm-yaml"
    assert formats.format_for_path("out.npy", formats.LOAD_FORMATS) == "npy"
    with pytest.raises(ValueError, match="pass --format"):
        formats.format_for_path("out.txt", formats.LOAD_FORMATS)
    with pytest.raises(ValueError, match=r"several formats write .json files.*vllm-json.*sglang-json.*ascend-json"):
        formats.format_for_path("p.json", formats.PLACEMENT_FORMATS)


# ---------------------------------------------------------------- hostile files: one case per class of crash


def npz_compressed_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def zip_with_undecodable_name() -> bytes:
    """A zip whose member name is flagged UTF-8 but is not: zipfile raises UnicodeDecodeError opening it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("\u00e4.npy", npy_bytes(LOAD.numpy()))
    return buffer.getvalue().replace("\u00e4".encode(), b"\xff\xfe")


def damaged(data: bytes, position: int, value: int) -> bytes:
    out = bytearray(data)
    out[position] = value
    return bytes(out)


NPY = npy_bytes(LOAD.numpy())


@pytest.mark.parametrize("data", [
    b"\x80",  # pickle: IndexError
    b"\x80\x02X",  # pickle: struct.error
    damaged(NPY, 20, 0),  # NumPy's header parser: SyntaxError (a null byte)
    NPY.replace(b"}", b" "),  # NumPy's header parser: tokenize.TokenError
    damaged(npz_compressed_bytes(load=LOAD.numpy()), 66, 0),  # zlib.error
    zip_with_undecodable_name(),  # zipfile: UnicodeDecodeError
], ids=["pickle-index", "pickle-struct", "npy-null-header", "npy-open-header", "npz-zlib", "zip-name"])
def test_what_a_reader_library_raises_on_damaged_bytes_is_a_format_error(data):
    with pytest.raises(FormatError, match="truncated or damaged") as info:
        read_load(data, "damaged.bin")
    assert str(info.value).startswith("damaged.bin: ")


@pytest.mark.parametrize("data, match", [
    (b"1,inf\n2,3\n", "NaN or infinite"),  # once read as int64 min, reported as negative
    (b"1,nan\n2,3\n", "NaN or infinite"),
    (b"[[1e39, 1]]", "beyond float32"),  # finite in JSON, infinite as float32
    (torch_bytes(torch.full((2, 1, 1), 3e38, dtype=torch.float64)), r"summed over steps\), beyond float32"),
    (npy_bytes(np.array([[np.inf, 1]], dtype=np.float16)), "NaN or infinite"),
    (torch_bytes(torch.tensor([[1.0, float("inf")]], dtype=torch.bfloat16)), "NaN or infinite"),
])
def test_non_finite_values_are_named_in_every_dtype(data, match):
    with pytest.raises(FormatError, match=match):
        read_load(data, "cells.bin")


def test_whole_numbers_beyond_int64_read_as_numbers():
    loaded = read_load(b"1e19,2\n3,4\n", "big.csv")
    assert torch.equal(loaded.matrix, torch.tensor([[1e19, 2], [3, 4]]))


@pytest.mark.parametrize("tensor, match", [
    (torch.ones(2, 2).to_sparse(), "sparse_coo tensor; save a dense one"),
    (torch.ones(2, 2).to(torch.float8_e4m3fn), "float8_e4m3fn values, expected numbers"),
    (torch.ones(2, 2, dtype=torch.bool), "bool values, expected numbers"),
    (torch.ones(2, 2, dtype=torch.complex64), "complex64 values, expected numbers"),
])
def test_tensors_that_are_not_dense_real_numbers_are_refused(tensor, match):
    with pytest.raises(FormatError, match=match):
        read_load(torch_bytes(tensor), "odd.pt")


def test_half_precision_loads_read():
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(read_load(torch_bytes(LOAD.to(dtype)), "half.pt").matrix, LOAD)


def npy_with_header_shape(shape: str) -> bytes:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)


@pytest.mark.parametrize("data, match", [
    (npy_with_header_shape("(1000000, 1000000)"), r"claims a \[1000000, 1000000\] float64 array"),
    (npy_with_header_shape("(-5, 2)"), r"claims a \[-5, 2\]"),
    (torch_bytes(torch.zeros(1).expand(10**6, 10**6)), "would make more than"),  # 8 TB as a view of 4 bytes
    (torch_bytes({"x": [torch.zeros(1).expand(10**9)]}), "would make more than"),  # a view inside a list
])
def test_sizes_a_file_claims_are_checked_before_allocating(data, match):
    with pytest.raises(FormatError, match=match):
        read_load(data, "huge.bin")


def test_an_archive_that_unpacks_above_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(safe, "MAX_BYTES", 4096)
    data = npz_compressed_bytes(load=np.zeros((1, 1024)))  # 8 KiB of zeros packs into a few hundred bytes
    assert len(data) < 4096
    with pytest.raises(FormatError, match="unpacks to 0.0 MiB, above the 0 MiB limit"):
        read_load(data, "bomb.npz")


@pytest.mark.parametrize("records, match", [
    ({"records": [{"topk_ids_of_layer": [[[-1, -1]]]}]}, "no token was routed"),
    ({"records": [{"topk_ids_of_layer": [[[10**12]]]}]}, "above the limit"),  # 10^12 counters
    ({"records": [{"topk_ids_of_layer": [[[1e30]]]}]}, r"records\[0\].topk_ids_of_layer: holds float64"),
    ({"records": [{"topk_ids_of_layer": [[[-2]]]}]}, "expected ids >= -1"),
    ({"records": [{"topk_ids_of_layer": [[]]}]}, r"has shape \[1, 0\]"),
    ({"records": [{"topk_ids_of_layer": [[[0]]]}], "last_physical_to_logical_map": [[-1]]},
     "last_physical_to_logical_map: holds id -1"),
    ({"records": [{"topk_ids_of_layer": [[[0]]]}], "last_physical_to_logical_map": [[10**12]]}, "above the limit"),
    ({"records": [{"topk_ids_of_layer": [[[3]]]}], "last_physical_to_logical_map": [[0, 1]]},
     "slot id 3, but the map has 2 slots"),
])
def test_sglang_records_ids_and_map_are_checked_before_counting(records, match):
    with pytest.raises(FormatError, match=match):
        read_load(json.dumps(records).encode(), "records.json")


@pytest.mark.parametrize("data, match", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    (b"[[1, " + b"9" * 5000 + b"]]", "over 4300 digits"),
    (b"[[1, " + b"9" * 30 + b"]]", "too large"),
    (b"1," + b"9" * 200_000 + b"\n", "NaN or infinite"),  # a 200,000-digit number is infinite as a float
])
def test_text_beyond_the_parsers_limits_is_refused(data, match):
    with pytest.raises(FormatError, match=match):
        read_load(data, "odd.txt")


@pytest.mark.parametrize("data", [
    b"1,2\n3," + b"x" * 5000 + b"\n",
    json.dumps({"k" * 300 + str(i): 1 for i in range(20)}).encode(),
    json.dumps([[1, "line\n" * 200]]).encode(),
])
def test_messages_quote_the_file_briefly_on_one_line(data):
    with pytest.raises(FormatError) as info:
        read_load(data, "long.txt")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400, str(info.value)


def test_latin1_text_reads_and_binary_does_not():
    loaded = read_load("layer,caf\u00e9\n0,7\n".encode("latin-1"), "excel.csv")
    assert loaded.matrix.tolist() == [[7]]
    with pytest.raises(FormatError, match="not a recognised format"):
        read_load(b"1,2\n" + bytes(range(128, 256)), "binary.csv")


def test_a_pickle_refusal_quotes_the_unpickler_not_torchs_unsafe_advice():
    import pickle

    message = ""
    try:
        read_load(pickle.dumps(RunsCode("/nonexistent"), protocol=2), "evil.pt")
    except FormatError as exc:
        message = str(exc)
    assert "refused" in message and "GLOBAL posix.system" in message
    assert "weights_only=False" not in message and "\x1b" not in message


@pytest.mark.parametrize("document, match", [
    ({"phy2log": [[0, 10**12]]}, "2 slots per layer for 1000000000001 experts"),  # no 10^12-wide table allocated
    ({"phy2log": [[0, 1e30]]}, "ids up to 1e"),  # never wrapped to a negative int64
    ({"phy2log": [[0, 1]], "logcnt": 5}, r"logcnt: has shape \[\]"),
    ({"phy2log": [[0, 1]], "logcnt": [[1, 1], [1, 1]]}, "logcnt"),
])
def test_read_placement_checks_sizes_before_building_tables(document, match):
    with pytest.raises(FormatError, match=match):
        read_placement(json.dumps(document).encode(), "p.json")


# ---------------------------------------------------------------- dumps above the size limit, summed from disk


def test_dumps_above_the_size_limit_are_summed_from_disk_where_the_format_allows(tmp_path, monkeypatch):
    trace = torch.randint(0, 100, (40, 2, 6), dtype=torch.int32)
    stat = tmp_path / "expert_distribution_recorder_1.pt"
    buffer = torch.cat([trace, torch.zeros(8, 2, 6, dtype=torch.int32)])  # 8 steps never filled
    stat.write_bytes(torch_bytes({"rank": 0, "logical_count": buffer, "average_utilization_rate_over_window": None}))
    npy = tmp_path / "trace.npy"
    npy.write_bytes(npy_bytes(trace.numpy()))
    csv = tmp_path / "load.csv"
    csv.write_bytes(csv_bytes(trace.reshape(80, 6).tolist()))
    monkeypatch.setattr(safe, "MAX_BYTES", 512)  # every file above is larger
    with pytest.raises(FormatError, match="MiB limit"):  # CSV is read whole: refused from disk too
        read_load_file(csv)
    for path in (stat, npy):
        assert path.stat().st_size > 512
        with pytest.raises(FormatError, match="MiB limit"):  # in memory (an upload): refused
            read_load(path.read_bytes(), path.name)
        loaded = read_load_file(path)  # on disk: memory-mapped and summed in chunks
        assert torch.equal(loaded.matrix, trace.sum(0).float()) and torch.equal(loaded.trace, trace.float())
    monkeypatch.setattr(safe, "MAX_ELEMENTS", 200)  # and a trace above what is kept: its sum only, said so
    loaded = read_load_file(npy)
    assert loaded.trace is None and torch.equal(loaded.matrix, trace.sum(0).float())
    assert "only the sum is kept" in loaded.description

"""The sidebar's upload path in the app: several rank files or a zip of them, the model question, the downloads
that need the model, and a wrapped SGLang buffer that Replay refuses as a trace."""

from __future__ import annotations

import io
import zipfile

import torch
from streamlit.testing.v1 import AppTest

from eplb.workloads import generate_load
from tests.conftest import assert_clean, plain

SMALL = {"nodes": "1", "gpus_per_node": "8", "redundant": "16", "groups": "1"}


def _torch(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _upload(at: AppTest, files) -> AppTest:
    at.file_uploader(key="eplb_upload").set_value(files).run()
    assert_clean(at)
    return at


def _summary(at: AppTest) -> str:
    return plain(next(m.value for m in at.markdown if " layers x " in m.value))


def _downloads(at: AppTest) -> dict[str, bool]:
    """Download button key -> whether it is enabled."""
    return {b.key: not b.proto.disabled for b in at.get("download_button")}


def _rank_file(rank: int, counts: torch.Tensor) -> bytes:
    """An SGLang per_pass rank file with an identity map: its counts are its logical counts."""
    record = dict(forward_pass_id=0, rank=rank, gatherer_key="primary", global_physical_count=counts.int())
    return _torch(dict(records=[record], last_physical_to_logical_map=torch.arange(64).repeat(5, 1)))


def test_rank_files_together_or_zipped_are_one_load(open_page):
    shares = [torch.randint(0, 50, (5, 64), generator=torch.Generator().manual_seed(r)) for r in range(4)]
    files = [(f"expert_distribution_recorder_1.0_{r}.pt", _rank_file(r, s), "application/octet-stream")
             for r, s in enumerate(shares)]
    at = _upload(open_page(query_params=SMALL, data="upload"), files)
    assert "4 rank files summed (ranks 0-3)" in _summary(at) and "and 3 more" in _summary(at)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, _ in files:
            archive.writestr(name, content)
    at = _upload(at, ("ranks.zip", buffer.getvalue(), "application/zip"))
    assert "upload: ranks.zip" in plain(_summary(at)) and "4 rank files summed" in plain(_summary(at))


def test_the_model_is_told_from_the_shape_and_asked_when_it_cannot_be(open_page):
    load = generate_load("zipf", 58, 256, seed=1)
    csv = ("\n".join(",".join(str(int(v)) for v in row) for row in load.tolist()) + "\n").encode()
    at = _upload(open_page(data="upload"), ("dsv3.csv", csv, "text/csv"))
    assert at.selectbox(key="eplb_upload_model").value == "DeepSeek-V3/R1"
    assert _downloads(at)["download_sglang-pt"] and _downloads(at)["download_trtllm-yaml"]
    at.selectbox(key="eplb_upload_model").set_value("").run()  # "another model": the engine downloads go off
    assert_clean(at)
    enabled = _downloads(at)
    assert not enabled["download_sglang-pt"] and not enabled["download_trtllm-yaml"] and enabled["download_vllm-json"]
    assert any("needs the data" in c.value and "under the uploader" in c.value for c in at.caption)

    odd = _upload(open_page(query_params=SMALL, data="upload"), ("odd.csv", b"1,2,3,4,5,6,7,8\n" * 5, "text/csv"))
    assert odd.selectbox(key="eplb_upload_model").value == ""  # 5 x 8 fits no preset: asked
    assert any("Which model is this file from?" in c.value for c in odd.caption)
    odd.selectbox(key="eplb_upload_model").set_value("Mixtral 8x7B").run()  # 8 experts, but 32 layers
    assert_clean(odd)
    assert any("the data has 5 rows, but Mixtral 8x7B has 32 decoder layers" in w.value for w in odd.warning)
    assert not _downloads(odd)["download_sglang-json"]


def test_samples_and_generated_loads_carry_their_model(open_page):
    from ui import data

    assert data.load_sample("deepseek-v3-zipf").model == "DeepSeek-V3/R1"
    assert data.generate("Kimi K2", "zipf", None, 0).model == "Kimi K2"
    at = open_page()  # the default sample, DeepSeek-V3: the SGLang and TensorRT-LLM files are offered
    assert _downloads(at)["download_sglang-pt"] and _downloads(at)["download_trtllm-yaml"]


def test_the_sample_list_is_read_again_when_a_sample_is_added_or_samples_json_changes(tmp_path, monkeypatch):
    import json
    import os

    from ui import data

    monkeypatch.setattr(data, "SAMPLE_DIR", tmp_path)
    (tmp_path / "b.csv").write_text("1,2\n")
    assert list(data.samples()) == ["b"] and data.samples() == data.samples()
    (tmp_path / "a.csv").write_text("3,4\n")
    os.utime(tmp_path, ns=(1, 1))  # a folder mtime no earlier read saw
    assert list(data.samples()) == ["a", "b"]
    (tmp_path / "samples.json").write_text(json.dumps([{"file": "a.csv", "label": "Sample A"}]))
    assert data.samples()["a"].label == "Sample A"
    (tmp_path / "samples.json").write_text(json.dumps([{"file": "a.csv", "label": "Renamed"}]))
    os.utime(tmp_path / "samples.json", ns=(2, 2))
    assert data.samples()["a"].label == "Renamed"


def test_a_wrapped_sglang_buffer_is_a_load_and_replay_refuses_it_as_a_trace(open_page):
    full = torch.randint(1, 9, (6, 5, 64), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    dump = _torch(dict(rank=0, logical_count=full, average_utilization_rate_over_window=None))
    at = _upload(open_page(query_params=SMALL, data="upload"), ("expert_distribution_recorder_1.pt", dump,
                                                                  "application/octet-stream"))
    assert "the buffer is full" in _summary(at)
    at.switch_page("pages/replay.py").run()
    assert_clean(at)
    at.segmented_control(key="replay_source").set_value("upload").run()
    at.file_uploader(key="replay_upload").set_value(("expert_distribution_recorder_1.pt", dump,
                                                     "application/octet-stream")).run()
    assert_clean(at)
    assert any("holds one load matrix" in e.value and "out of order" in e.value for e in at.error)

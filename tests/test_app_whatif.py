"""The what-if answers in AppTest: every sample on every page, the Sweep page's lines by mode, the A/B view."""

from __future__ import annotations

import json

import pytest

import eplb
from tests.conftest import assert_clean, set_controls
from tests.e2e.conftest import app_pages
from ui import data
from ui.analysis_compute import load_sample_trace, sample_traces


def _sweep_lines(at) -> list[dict]:
    """The traces of the Sweep page's balancedness chart."""
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "bound (best possible), " in c.proto.spec)
    return chart["data"]


@pytest.mark.parametrize("name", list(data.samples()))
def test_every_sample_opens_on_every_page_without_an_error(open_page, name):
    at = open_page(sample=name)
    shape = data.load_sample(name).weight.shape
    traced = any(load_sample_trace(t).shape[1:] == shape for t in sample_traces())
    for page in app_pages():
        at.switch_page(page.path).run()
        assert_clean(at)
        errors = [e.value for e in at.error]
        if page.path.endswith("replay.py") and not traced:  # Replay opens on a trace of another model's shape
            assert all("Change the topology in the sidebar" in e for e in errors), errors
            continue
        assert not errors, (name, page.path, errors)
        assert not at.warning or page.path != "pages/explore.py", [w.value for w in at.warning]


def test_the_sweep_page_never_joins_two_modes_in_one_line(open_page):
    at = open_page("pages/sweep.py")
    at.segmented_control(key="sweep_axis").set_value("nodes").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert set(table["Mode"]) == {"hierarchical", "global"}  # 1-8 nodes hierarchical, 16 and 32 global under auto
    mode_at = dict(zip(table["nodes"].astype(str), table["Mode"]))
    for trace in _sweep_lines(at):
        mode = trace["name"].rsplit(", ", 1)[-1] if trace["name"].startswith("bound") else \
            trace["name"].rsplit(" (", 1)[-1].rstrip(")")
        drawn = [str(x) for x, y in zip(trace["x"], trace["y"]) if y is not None]
        assert drawn and {mode_at[x] for x in drawn} == {mode}, trace["name"]
    assert any("never joined across a change" in c.value for c in at.caption)


def test_the_sweep_reaches_64_gpus_keeping_slots_per_gpu(open_page):
    at = open_page("pages/sweep.py")
    at.segmented_control(key="sweep_axis").set_value("gpus").run()
    assert_clean(at)
    assert at.segmented_control(key="sweep_hold").value == "slots_per_gpu"
    assert 64 in at.multiselect[0].value
    assert any("keeps 9 slots per GPU" in c.value for c in at.caption)
    at.segmented_control(key="sweep_hold").set_value("redundant").run()
    assert 64 not in at.multiselect[0].options and 64 not in [int(v) for v in at.multiselect[0].options]


def test_explore_shows_both_modes_and_topology_b(open_page):
    at = open_page()
    assert_clean(at)
    modes = at.table[0].value
    assert list(modes["Mode"]) == ["hierarchical (shown)", "global"]
    assert float(modes["Bound (best possible)"][1]) > float(modes["Bound (best possible)"][0])  # global balances more
    assert modes["A token reaches (nodes)"][0] == "3.14 of 4"  # 4 of 8 groups, 2 per node: 4 (1 - 15/70)
    assert any("Why pay for hierarchical" in c.value for c in at.caption)
    ab = at.table[1].value
    rows = dict(zip(ab[""], ab["B"]))
    assert rows["GPUs"] == "64" and rows["nodes"] == "8" and rows["redundant slots per layer"] == "64"
    set_controls(at, nodes=1, gpus_per_node=8)
    assert any("On one node no token crosses the network" in c.value for c in at.caption)
    assert at.table[0].value["Tokens between nodes, per MoE layer"].tolist() == ["0", "0"]


def test_only_global_mode_is_said_when_hierarchical_cannot_fit(open_page):
    at = open_page(nodes=16)  # 8 groups do not divide over 16 nodes: auto runs global
    assert_clean(at)
    assert list(at.table[0].value["Mode"]) == ["global (shown)"]
    assert any("Only global mode fits" in c.value for c in at.caption)
    assert eplb.Topology(256 + 256, 8, 16, 128).resolve_mode("auto") == "global"


def test_the_summary_line_names_the_shape_once_for_an_upload(open_page):
    csv = "\n".join(",".join(str((3 * layer + e) % 7 + 1) for e in range(32)) for layer in range(3)).encode()
    at = open_page(data="upload")
    at.file_uploader(key="eplb_upload").set_value(("loads.csv", csv, "text/csv")).run()
    assert_clean(at)
    summary = next(m.value for m in at.markdown if "loads" in m.value and "nodes x" in m.value)
    assert summary.count("3 layers x 32 experts") == 1, summary


def test_downloads_are_named_after_the_topology_and_loads_are_rounded():
    from types import SimpleNamespace

    import torch

    from ui.explore.downloads import file_stem

    shown = SimpleNamespace(topology=eplb.Topology(288, 8, 4, 32), model="DeepSeek-V3/R1")
    assert f"{file_stem('placement-sglang', shown)}.json" == "placement-sglang-dsv3-288slots-32gpus.json"
    upload = SimpleNamespace(topology=eplb.Topology(16, 1, 1, 4), model=None)
    assert file_stem("gpu-loads", upload) == "gpu-loads-custom-16slots-4gpus"
    csv = data.gpu_loads_csv({"after": torch.tensor([[387.66666666666663, 1.0]])}).decode()
    assert "387.67" in csv and "387.666" not in csv

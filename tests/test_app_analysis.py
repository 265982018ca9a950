"""The analysis pages in AppTest: compare, sweep and replay, with defaults and changed controls.

Every number on screen is checked against the ``eplb`` function behind it. Most
tests open a page on a small sample through the link (query parameters), so each
run stays well under a second after the cold torch import.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import eplb
from eplb import analysis
from eplb.presets import PRESETS
from eplb.replay import TRADEOFF_SETTINGS, replay, tradeoff
from eplb.workloads import generate_trace
from tests.conftest import APP_TIMEOUT, assert_clean, plain, set_controls
from tests.test_analysis_figures import assert_compare_rows
from ui import analysis_compute, analysis_figures, data
from ui.analysis_figures import format_bytes

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"sample": "mixtral-8x7b-zipf", "nodes": "1", "gpus_per_node": "4", "redundant": "8", "groups": "1"}
SMALL_TOPOLOGY = eplb.Topology(16, 1, 1, 4)  # Mixtral's 8 experts + 8 redundant slots on 4 GPUs
DEFAULT_TOPOLOGY = eplb.Topology(288, 8, 4, 32)  # the first open: DeepSeek-V3 on 4 nodes x 8 GPUs, 32 redundant


@pytest.fixture
def open_analysis(tmp_path):
    """open_analysis(page, query_params=None, first="page") -> AppTest after the page's first run.

    The app lists the analysis page first (or Explore first, with first="explore"), so
    the page opens without a page switch.
    """

    def _open(page: str, query_params: dict | None = None, first: str = "page") -> AppTest:
        pages = [str(ROOT / "pages" / page), str(ROOT / "pages" / "explore.py")]
        if first == "explore":
            pages.reverse()
        (tmp_path / "app.py").write_text(
            "import streamlit as st\n"
            f"st.navigation([st.Page({pages[0]!r}, default=True), st.Page({pages[1]!r})]).run()\n"
        )
        at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=APP_TIMEOUT)
        at.query_params.update(query_params or {})
        return at.run()

    return _open


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def plotted(values) -> list:
    """A trace's x or y from a chart spec: a list, or Plotly's base64 typed array."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def table(at: AppTest):
    """The page's one table."""
    assert len(at.dataframe) == 1
    return at.dataframe[0].value


def sample_weight(name: str) -> torch.Tensor:
    return data.load_sample(name).weight


# ---------------------------------------------------------------- compare


def test_compare_opens_on_the_default_sample_with_every_policy_and_mode(open_analysis):
    at = open_analysis("compare.py")
    assert_clean(at)
    assert not at.error
    frame = table(at)
    assert len(frame) == 2 * len(eplb.POLICIES)  # 8 groups on 4 nodes: hierarchical and global both apply
    assert_compare_rows(frame, sample_weight(data.DEFAULT_SAMPLE), DEFAULT_TOPOLOGY)
    heatmaps, lines = chart_specs(at)
    assert len(heatmaps["data"]) == len(frame)
    assert all(trace["coloraxis"] == "coloraxis" for trace in heatmaps["data"])  # one shared color scale
    assert {t["name"] for t in lines["data"]} >= {f"{p} ({m})" for p, m in zip(frame["Policy"], frame["Mode"])}


def test_compare_follows_the_sidebar(open_analysis):
    at = open_analysis("compare.py", SMALL)
    assert_clean(at)
    weight = sample_weight("mixtral-8x7b-zipf")
    assert_compare_rows(table(at), weight, SMALL_TOPOLOGY)
    set_controls(at, redundant=12, gpus_per_node=2, nodes=2)  # 20 slots on 2 nodes x 2 GPUs
    assert_clean(at)
    assert_compare_rows(table(at), weight, eplb.Topology(20, 1, 2, 4))


def test_compare_keeps_the_last_table_beside_an_invalid_topology(open_analysis):
    at = open_analysis("compare.py", SMALL)
    before = table(at)
    set_controls(at, mode="hierarchical", nodes=2)  # 1 expert group cannot sit whole on 2 nodes
    assert_clean(at)
    assert any("must be a multiple of Nodes (2)" in e.value for e in at.error)
    assert any("Showing the last valid setting" in i.value for i in at.info)
    assert table(at).equals(before)


ZEROS_CSV = b"\n".join(b",".join([b"0"] * 8) for _ in range(3))


def upload_in_sidebar(at: AppTest, name: str, content: bytes) -> AppTest:
    set_controls(at, data="upload")
    at.file_uploader(key="eplb_upload").set_value((name, content, "application/octet-stream")).run()
    assert_clean(at)
    return at


def test_compare_scores_a_trace_on_the_next_window_and_says_which_is_which(open_analysis):
    at = open_analysis("compare.py", SMALL)
    assert analysis_figures.NEXT_WINDOW not in table(at)  # one load matrix: no next window to score on
    trace = generate_trace("zipf", 12, 2, 8, seed=7, drift=0.2)
    upload_in_sidebar(at, "history.npy", npy(trace.numpy()))
    assert not at.error
    frame = table(at)
    columns = list(frame.columns)
    assert columns.index(analysis_figures.NEXT_WINDOW) == columns.index("Balancedness (vLLM)") + 1
    expected = analysis.next_window_balancedness(trace, SMALL_TOPOLOGY, ["hierarchical", "global"])
    shown = {(row["Policy"], row["Mode"]): row[analysis_figures.NEXT_WINDOW] for _, row in frame.iterrows()}
    assert shown == {(n.policy, n.mode): f"{n.next_window:.3f}" for n in expected}
    said = " ".join(c.value for c in at.caption)
    assert "Balancedness (vLLM) is in-sample" in said and "4 windows of 3 steps" in said


def test_a_load_without_tokens_reads_no_load_on_compare_and_sweep(open_analysis):
    at = upload_in_sidebar(open_analysis("compare.py", SMALL), "idle.csv", ZEROS_CSV)
    assert not at.error
    frame = table(at)
    assert set(frame["Balancedness (vLLM)"]) == set(frame["Gap to bound"]) == {"no load"}
    assert any("no tokens" in i.value for i in at.info)
    at = upload_in_sidebar(open_analysis("sweep.py", SMALL), "idle.csv", ZEROS_CSV)
    assert any("No balancedness to plot" in i.value for i in at.info)
    assert set(table(at)["Balancedness (vLLM)"]) == {"no load"}


# ---------------------------------------------------------------- sweep


def test_sweep_opens_on_the_default_sample(open_analysis):
    at = open_analysis("sweep.py")
    assert_clean(at)
    assert not at.error
    frame = table(at)
    assert sorted(set(frame["redundant slots"])) == [0, 32, 64, 96, 128]  # up to 4 per GPU, a GPU's worth at a time
    weight = sample_weight(data.DEFAULT_SAMPLE)
    for _, row in frame[frame["redundant slots"] == 32].iterrows():  # the sidebar's own topology
        run = analysis.run_policy(weight, DEFAULT_TOPOLOGY, row["Policy"])
        assert row["Balancedness (vLLM)"] == f"{run.report.balancedness:.3f}"
        assert row["Bound"] == f"{run.report.bound_balancedness:.3f}"
    expert_bytes = PRESETS["DeepSeek-V3/R1"].expert_bytes
    assert at.number_input(key="sweep_expert_mib_58x256").value == pytest.approx(expert_bytes / 2**20)
    memory_at_64 = frame[frame["redundant slots"] == 64]["Redundant copies (all GPUs)"]
    assert set(memory_at_64) == {format_bytes(64 * 58 * expert_bytes)}
    balancedness, memory = chart_specs(at)
    assert {t["name"] for t in balancedness["data"]} == {*(f"{p} (hierarchical)" for p in eplb.POLICIES),
                                                         "bound (best possible), hierarchical"}
    assert plotted(memory["data"][0]["y"])[1] == pytest.approx(32 * 58 * expert_bytes / 32 / 2**30)


def assert_sweep_matches(frame, weight, axis, values, base, expert_bytes=0):
    expected = analysis.sweep(weight, axis, values, base, expert_bytes=expert_bytes)
    assert len(frame) == len(expected)
    for (_, row), point in zip(frame.iterrows(), expected):
        assert (row.iloc[0], row["Policy"]) == (point.value, point.policy)
        assert row["Balancedness (vLLM)"] == f"{point.run.report.balancedness:.3f}"
        assert row["Redundant copies (all GPUs)"] == format_bytes(point.redundant_bytes)


def test_sweep_every_axis_on_a_small_sample(open_analysis):
    at = open_analysis("sweep.py", SMALL)
    assert_clean(at)
    weight = sample_weight("mixtral-8x7b-zipf")
    mixtral_bytes = PRESETS["Mixtral 8x7B"].expert_bytes
    assert_sweep_matches(table(at), weight, "redundant", [0, 4, 8, 12, 16], SMALL_TOPOLOGY,
                         mixtral_bytes)
    at.number_input(key="sweep_step_4").set_value(2).run()  # 10 + 2k slots: only every other count fits 4 GPUs
    assert any("Skipping 2, 6, 10, 14" in c.value for c in at.caption)
    assert_sweep_matches(table(at), weight, "redundant", [0, 4, 8, 12, 16], SMALL_TOPOLOGY,
                         mixtral_bytes)
    for axis, values in (("gpus", [1, 2, 4, 8, 16]), ("nodes", [1, 2, 4]), ("groups", [1, 2, 4, 8])):
        at.segmented_control(key="sweep_axis").set_value(axis).run()
        if axis == "gpus":  # the redundant count held: every divisor of the 16 slots
            at.segmented_control(key="sweep_hold").set_value("redundant").run()
        assert_clean(at)
        assert_sweep_matches(table(at), weight, axis, values, SMALL_TOPOLOGY, mixtral_bytes)
    at.multiselect(key="sweep_values_groups_redundant_1-2-4-8").set_value([2, 8]).run()
    assert_sweep_matches(table(at), weight, "groups", [2, 8], SMALL_TOPOLOGY, mixtral_bytes)


def test_sweep_asks_for_the_expert_size_of_an_unknown_model(open_analysis):
    csv = "\n".join(",".join(str(10 * (e + 1) + layer) for e in range(8)) for layer in range(3)).encode()
    at = upload_in_sidebar(open_analysis("sweep.py", SMALL), "loads.csv", csv)
    assert any("Enter one expert's size" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 1  # no memory chart without a size
    at.number_input(key="sweep_expert_mib_3x8").set_value(100.0).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2
    weight = torch.tensor(np.loadtxt(io.StringIO(csv.decode()), delimiter=","), dtype=torch.float32)
    assert_sweep_matches(table(at), weight, "redundant", [0, 4, 8, 12, 16], SMALL_TOPOLOGY,
                         100 * 2**20)
    at.number_input(key="sweep_expert_mib_3x8").set_value(0.0).run()
    assert "Redundant copies (all GPUs)" not in table(at)  # no size, no made-up "0 B"


# ---------------------------------------------------------------- replay


def assert_replay_cards(at: AppTest, trace, topology, *, window, interval, threshold=None, policy=None,
                        expert_bytes=0, keep_copies=True, balance_tolerance=0.0) -> None:
    """The cards and table equal eplb.replay.replay's; the page's knob starts at tolerance 0."""
    result = replay(trace, topology, window=window, interval=interval, threshold=threshold,
                    policy=policy or eplb.DEFAULT_POLICY, expert_bytes=expert_bytes, keep_copies=keep_copies,
                    balance_tolerance=balance_tolerance)
    shown = metrics(at)
    assert shown["Static map"] == f"{result.mean_static:.3f}"
    assert shown["Rebalanced"] == f"{result.mean_rebalanced:.3f}"
    assert shown["Rebalances"] == f"{len(result.rebalances)} of {result.checks}"
    assert shown["Copies sent"] == f"{result.total_copies_sent:,}"
    assert shown["Bytes moved"] == (format_bytes(result.total_bytes_moved) if expert_bytes else "unknown")
    if result.rebalances:
        assert list(table(at)["Copies sent"]) == [r.copies_sent for r in result.rebalances]


def test_replay_opens_on_the_deepseek_trace(open_analysis):
    at = open_analysis("replay.py")
    assert_clean(at)
    assert not at.error
    assert any("DeepSeek-V3 · Zipf, slow drift" in plain(m.value) for m in at.markdown)
    trace = analysis_compute.load_sample_trace("deepseek-v3-drift")
    assert_replay_cards(at, trace, DEFAULT_TOPOLOGY, window=16, interval=16,
                        expert_bytes=PRESETS["DeepSeek-V3/R1"].expert_bytes)
    assert len(at.get("plotly_chart")) == 2


def test_replay_controls_and_idle_steps(open_analysis):
    at = open_analysis("replay.py", SMALL)
    assert_clean(at)
    assert at.selectbox(key="replay_sample").value == "mixtral-8x7b-idle"  # the trace in the sidebar data's shape
    trace = analysis_compute.load_sample_trace("mixtral-8x7b-idle")
    mixtral_bytes = PRESETS["Mixtral 8x7B"].expert_bytes
    at.number_input(key="replay_window_120").set_value(8)
    at.number_input(key="replay_interval_120").set_value(10).run()
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=8, interval=10, expert_bytes=mixtral_bytes)
    timeline = chart_specs(at)[0]
    no_load = next(t for t in timeline["data"] if t.get("mode") == "text")
    assert plotted(no_load["x"]) == [45] and list(no_load["text"]) == ["no load"]  # one label mid-stretch
    shaded = [(shape["x0"], shape["x1"]) for shape in timeline["layout"]["shapes"] if shape.get("type") == "rect"]
    assert (39.5, 49.5) in shaded  # the idle steps 40..49
    at.toggle(key="replay_use_threshold").set_value(True).run()
    at.slider(key="replay_threshold").set_value(0.95).run()
    assert_clean(at)
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=8, interval=10, threshold=0.95, expert_bytes=mixtral_bytes)
    set_controls(at, policy="zigzag")
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=8, interval=10, threshold=0.95, policy="zigzag",
                        expert_bytes=mixtral_bytes)


def test_replay_a_generated_trace_in_the_sidebar_datas_shape(open_analysis):
    at = open_analysis("replay.py", SMALL)
    at.segmented_control(key="replay_source").set_value("generate").run()
    at.number_input(key="replay_drift").set_value(0.3)
    at.number_input(key="replay_steps").set_value(40).run()
    assert_clean(at)
    mixtral = PRESETS["Mixtral 8x7B"]
    trace = generate_trace("zipf", 40, 32, 8, seed=0, drift=0.3, tokens=data.GENERATE_TOKENS, top_k=mixtral.top_k)
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=16, interval=16, expert_bytes=mixtral.expert_bytes)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_replay_an_uploaded_trace_and_refuse_a_plain_matrix(open_analysis):
    at = open_analysis("replay.py", SMALL)
    at.segmented_control(key="replay_source").set_value("upload").run()
    assert any("Upload a trace" in i.value for i in at.info)
    trace = generate_trace("lognormal", 12, 2, 8, seed=3, drift=0.2)
    at.file_uploader(key="replay_upload").set_value(("trace.npy", npy(trace.numpy()), "application/octet-stream"))
    at.run()
    assert_clean(at)
    assert any("upload: trace.npy" in plain(m.value) for m in at.markdown)
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=12, interval=12)  # no preset has 2 x 8: size unknown
    good = metrics(at)
    at.file_uploader(key="replay_upload").set_value(("matrix.csv", b"1,2,3,4,5,6,7,8\n", "text/csv")).run()
    assert_clean(at)
    assert any("holds one load matrix" in plain(e.value) and "Keeping the current trace" in e.value for e in at.error)
    assert metrics(at) == good


def test_replay_uses_a_trace_uploaded_in_the_sidebar(open_analysis):
    at = open_analysis("replay.py", SMALL)
    trace = generate_trace("zipf", 10, 2, 8, seed=6, drift=0.1)
    upload_in_sidebar(at, "history.npy", npy(trace.numpy()))
    assert at.segmented_control(key="replay_source_data").value == "data"
    assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=10, interval=10)


@pytest.mark.parametrize("name", list(analysis_compute.sample_traces()))
def test_every_sample_trace_opens_on_its_deployment_and_says_so(open_analysis, name):
    at = open_analysis("replay.py")  # the sidebar keeps DeepSeek-V3's topology whatever the trace
    at.selectbox(key="replay_sample").set_value(name).run()
    assert_clean(at)
    assert not at.error
    deployment = analysis_compute.trace_deployment(name)
    trace = analysis_compute.load_sample_trace(name)
    assert deployment is not None and deployment.validate(trace.shape[-1]) in ("hierarchical", "global")
    said = " ".join(c.value for c in at.caption)
    assert (f"deployment this sample trace comes with: {deployment.num_nodes} nodes x {deployment.gpus_per_node} GPUs"
            in said and f"{deployment.num_groups} expert groups" in said)
    assert "noisier than a window's sum" in said  # summed-window against per-step balancedness, in words
    expert_bytes = next(p.expert_bytes for p in PRESETS.values()
                        if (p.num_layers, p.num_experts) == tuple(trace.shape[1:]))
    steps = trace.shape[0]
    assert_replay_cards(at, trace, deployment, window=min(16, steps), interval=min(16, steps),
                        expert_bytes=expert_bytes)


def test_replay_knob_and_tradeoff_curve(open_analysis):
    at = open_analysis("replay.py", SMALL)
    trace = analysis_compute.load_sample_trace("mixtral-8x7b-idle")
    mixtral_bytes = PRESETS["Mixtral 8x7B"].expert_bytes
    at.number_input(key="replay_interval_120").set_value(8).run()
    for label, keep, tolerance in (("fresh plan", False, None), ("relabel only", True, None),
                                   ("tolerance 2%", True, 0.02)):
        at.select_slider(key="replay_knob").set_value(label).run()
        assert_clean(at)
        assert_replay_cards(at, trace, SMALL_TOPOLOGY, window=16, interval=8, expert_bytes=mixtral_bytes,
                            keep_copies=keep, balance_tolerance=tolerance)
    at.toggle(key="replay_tradeoff").set_value(True).run()
    assert_clean(at)
    curve = chart_specs(at)[-1]["data"][0]
    expected = [p.result for p in tradeoff(trace, SMALL_TOPOLOGY, window=16, interval=8)]
    assert plotted(curve["x"]) == pytest.approx([r.copies_per_rebalance for r in expected])
    assert plotted(curve["y"]) == pytest.approx([r.mean_rebalanced for r in expected])
    assert list(curve["text"]) == [label for label, _, _ in TRADEOFF_SETTINGS]
    assert curve["marker"]["size"][[label for label, _, _ in TRADEOFF_SETTINGS].index("tolerance 2%")] == 14


def test_replay_explains_a_trace_the_topology_does_not_fit(open_analysis):
    at = open_analysis("replay.py")  # DeepSeek-V3 topology: 32 GPUs, 32 redundant slots
    at.selectbox(key="replay_sample").set_value("mixtral-8x7b-idle").run()
    assert_clean(at)
    assert not at.error  # the sample trace opens on its own deployment
    at.toggle(key="replay_sidebar_topology").set_value(True).run()
    assert_clean(at)
    message = " ".join(e.value for e in at.error)
    assert "Cannot replay this trace" in message and "divisible by num_gpus (32)" in message
    assert "the trace has 8 experts" in message


# ---------------------------------------------------------------- across pages


@pytest.mark.parametrize("page", ["compare.py", "sweep.py", "replay.py"])
def test_the_sidebar_topology_carries_over_from_explore(open_analysis, page):
    at = open_analysis(page, SMALL, first="explore")
    set_controls(at, nodes=2, gpus_per_node=2, redundant=12)
    at.switch_page(str(ROOT / "pages" / page)).run()
    if page == "replay.py":  # a sample trace opens on its own deployment until asked for the sidebar's
        at.toggle(key="replay_sidebar_topology").set_value(True).run()
    assert_clean(at)
    shown = " ".join(m.value for m in at.markdown)
    assert "2 nodes x 2 GPUs, 20 slots (12 redundant)" in shown

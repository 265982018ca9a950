"""The main page in AppTest: defaults, a changed topology, uploads, invalid input, links, page switches."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import eplb
from eplb.formats import read_load_file
from eplb.metrics import evaluate, gpu_loads, initial_phy2log
from tests.conftest import APP_TIMEOUT, assert_clean, plain, set_controls
from ui import data, state


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected_cards(weight, topology: eplb.Topology, policy=None, mode="auto") -> dict[str, str]:
    """The metric cards' values computed straight from eplb."""
    phy2log, _, _ = eplb.rebalance_experts(weight, topology.num_replicas, topology.num_groups,
                                           topology.num_nodes, topology.num_gpus, policy=policy, mode=mode)
    after = evaluate(weight, phy2log, topology, mode)
    before = evaluate(weight, initial_phy2log(*weight.shape, topology.num_replicas), topology, mode)
    return {
        "Balancedness before (vLLM)": f"{before.balancedness:.3f}",
        "Balancedness after (vLLM)": f"{after.balancedness:.3f}",
        "Max / mean after": f"{after.straggler_factor:.2f}",
        "Bound's balancedness": f"{after.bound_balancedness:.3f}",
        "Duplicate copies": f"{after.duplicate_gpus:,} of {after.gpu_loads.numel():,}",
    }


def assert_cards_match(at: AppTest, expected: dict[str, str]) -> None:
    shown = metrics(at)
    for label, value in expected.items():
        assert shown[label] == value, label


DEFAULT_WEIGHT = read_load_file(data.SAMPLE_DIR / f"{data.DEFAULT_SAMPLE}.csv").matrix


def test_first_open_shows_deepseek_v3_sample_on_4x8_gpus(open_page):
    at = open_page()
    assert_clean(at)
    assert DEFAULT_WEIGHT.shape == (58, 256)
    assert_cards_match(at, expected_cards(DEFAULT_WEIGHT, eplb.Topology(288, 8, 4, 32)))
    shown = metrics(at)
    assert float(shown["Balancedness after (vLLM)"]) > float(shown["Balancedness before (vLLM)"])
    assert shown["Rebalance runtime"].endswith(" ms")
    assert len(at.get("plotly_chart")) == 7  # before/after maps, the load, bars, placement, lines, copies, A/B
    assert not at.error
    assert at.query_params["nodes"] == "4" and at.query_params["redundant"] == "32"
    assert at.query_params["sample"] == data.DEFAULT_SAMPLE
    assert {b.key for b in at.get("download_button")} >= {"download_vllm-json", "download_gpu_loads"}


def test_changed_topology_and_policy_recompute_the_cards(open_page):
    other_policy = next(name for name in eplb.POLICIES if name != eplb.DEFAULT_POLICY)
    at = open_page(nodes=2, gpus_per_node=8, redundant=16, policy=other_policy)
    assert_clean(at)
    assert not at.error
    assert_cards_match(at, expected_cards(DEFAULT_WEIGHT, eplb.Topology(272, 8, 2, 16), policy=other_policy))
    assert at.query_params["nodes"] == "2" and at.query_params["policy"] == other_policy
    set_controls(at, mode="global")
    assert_cards_match(at, expected_cards(DEFAULT_WEIGHT, eplb.Topology(272, 8, 2, 16), other_policy, "global"))


def test_invalid_topology_is_explained_inline_and_keeps_the_last_result(open_page):
    at = open_page(mode="hierarchical")
    before = metrics(at)
    set_controls(at, nodes=16)  # 8 groups cannot sit whole on 16 nodes
    assert_clean(at)
    messages = [e.value for e in at.error]
    assert messages and all("Expert groups (8) must be a multiple of Nodes (16)" in m for m in messages)
    assert "set Mode to auto or global, or Nodes to 4 or 8" in messages[0]
    assert any("Showing the last valid setting" in i.value for i in at.info)
    assert metrics(at) == before  # the last valid result, still on screen
    set_controls(at, mode="auto")
    assert not at.error


def test_a_link_the_sliders_cannot_reach_shows_the_value_and_the_nearest_fits(open_page):
    at = open_page(query_params={"redundant": "33"})
    assert_clean(at)
    messages = [e.value for e in at.error]
    assert messages and "Redundant slots (33) do not spread evenly over the 32 GPUs" in messages[0]
    assert "256 experts + 33 = 289 slots" in messages[0] and "Set Redundant slots to 32 or 64" in messages[0]
    assert at.select_slider(key="eplb_redundant").value == 33  # the slider shows the value the message is about
    at = open_page(query_params={"redundant": "65", "nodes": "8"})  # the case: 65 on 64 GPUs
    assert "Set Redundant slots to 64 or 128" in at.error[0].value
    at = open_page(query_params={"groups": "3"})
    assert "Expert groups (3) must divide the 256 experts evenly: set Expert groups to 2 or 4" in at.error[0].value


def test_moving_nodes_keeps_redundant_slots_even_and_says_so(open_page):
    at = open_page(nodes=8)  # 64 GPUs: 32 redundant slots no longer spread evenly
    assert_clean(at)
    assert not at.error
    assert at.select_slider(key="eplb_redundant").value == 64
    assert any("Redundant slots moved from 32 to 64" in i.value for i in at.info)
    assert all(int(v) % 64 == 0 for v in at.select_slider(key="eplb_redundant").options)  # 256 + r over 64 GPUs


CSV = "\n".join(",".join(str((7 * layer + 3 * e) % 11 + (40 if e == layer else 0)) for e in range(32))
                for layer in range(3)).encode()


def test_upload_path_reads_csv_with_and_without_header():
    plain = data.from_upload(CSV, "loads.csv")
    header = ",".join(f"expert_{e}" for e in range(32)).encode() + b"\n" + CSV
    with_header = data.from_upload(header, "loads.csv")
    assert plain.weight.shape == (3, 32)
    assert torch.equal(plain.weight, with_header.weight)
    assert plain.params == {}  # an upload cannot travel in a link
    with pytest.raises(ValueError, match="not a number"):
        data.from_upload(b"1,2,3\n4,x,6\n", "bad.csv")


def test_upload_a_csv_then_a_bad_file_keeps_the_good_data(open_page):
    at = open_page(data="upload")
    assert_clean(at)
    at.file_uploader(key="eplb_upload").set_value(("loads.csv", CSV, "text/csv")).run()
    assert_clean(at)
    assert not at.error
    assert any("upload: loads.csv" in plain(m.value) for m in at.markdown)
    weight = torch.tensor(np.loadtxt(CSV.decode().splitlines(), delimiter=","), dtype=torch.float32)
    assert_cards_match(at, expected_cards(weight, eplb.Topology(64, 8, 4, 32)))
    good = metrics(at)
    at.file_uploader(key="eplb_upload").set_value(("broken.csv", b"1,2\n3\n", "text/csv")).run()
    assert_clean(at)
    assert any("Could not use broken.csv" in plain(e.value) and "Keeping the current data" in e.value for e in at.error)
    assert any("upload: loads.csv" in plain(m.value) for m in at.markdown)
    assert metrics(at) == good
    assert "sample" not in at.query_params  # the link keeps the topology only


def test_a_link_recreates_generated_data_and_topology(open_page):
    params = {"data": "generate", "preset": "Qwen3-30B-A3B", "family": "hot", "skew": "50", "seed": "3",
              "nodes": "2", "gpus_per_node": "4", "redundant": "8", "groups": "1", "mode": "auto", "policy": "zigzag"}
    at = open_page(query_params=params)
    assert_clean(at)
    weight = data.generate("Qwen3-30B-A3B", "hot", 50.0, 3).weight
    assert weight.shape == (48, 128)
    assert_cards_match(at, expected_cards(weight, eplb.Topology(136, 1, 2, 8), policy="zigzag"))
    assert {k: at.query_params[k] for k in params} == params


def test_a_bad_link_falls_back_to_defaults_with_a_note(open_page):
    at = open_page(query_params={"policy": "no-such-policy", "nodes": "-2", "redundant": "99999", "data": "upload"})
    assert_clean(at)
    notes = plain(" ".join(i.value for i in at.info))
    assert "policy='no-such-policy'" in notes and "nodes='-2'" in notes and "redundant='99999'" in notes
    assert "cannot travel in a link" in notes
    assert_cards_match(at, expected_cards(DEFAULT_WEIGHT, eplb.Topology(288, 8, 4, 32)))


def test_choices_survive_a_page_that_does_not_draw_the_sidebar(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.py").write_text("from ui import state\nstate.sidebar()\n")
    (tmp_path / "pages" / "b.py").write_text(
        "import streamlit as st\nst.query_params.clear()\nst.write('no sidebar here, no link')\n")
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import streamlit as st
        st.navigation([st.Page("pages/a.py", default=True), st.Page("pages/b.py")]).run()
    """))
    at = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=APP_TIMEOUT).run()
    set_controls(at, nodes=2, redundant=48, policy="zigzag")
    at.switch_page("pages/b.py").run()
    at.switch_page("pages/a.py").run()
    assert_clean(at)
    values = {w.key: w.value for w in (*at.number_input, *at.selectbox, *at.select_slider)}
    assert values["eplb_nodes"] == 2 and values["eplb_redundant"] == 48 and values["eplb_policy"] == "zigzag"


def test_picking_a_sample_sets_its_deployment_and_says_so(open_page):
    at = open_page(sample="deepseek-v2-lite-idle")
    assert state.DEFAULTS["groups"] == 8
    assert at.select_slider(key="eplb_groups").value == 1
    assert any("opens on its deployment: 1 node x 8 GPUs, 16 redundant slots, 1 expert group" in i.value
               for i in at.info)
    assert not at.error
    weight = data.load_sample("deepseek-v2-lite-idle").weight
    assert_cards_match(at, expected_cards(weight, eplb.Topology(80, 1, 1, 8)))
    assert gpu_loads(weight, initial_phy2log(*weight.shape, 80), 8).shape == (26, 8)


def test_a_link_to_a_sample_without_a_topology_opens_on_its_deployment(open_page):
    at = open_page(query_params={"data": "sample", "sample": "deepseek-readme-example"})
    assert_clean(at)
    assert not at.error
    assert any("2 nodes x 4 GPUs, 16 slots (4 redundant), 4 groups" in m.value for m in at.markdown)


def test_generating_another_model_keeps_the_slots_even(open_page):
    at = open_page(data="generate", preset="Mixtral 8x7B")  # 8 experts + 32 redundant do not fit 32 GPUs
    assert_clean(at)
    assert not at.error
    assert (8 + at.select_slider(key="eplb_redundant").value) % 32 == 0

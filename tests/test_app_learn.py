"""The Learn page in AppTest (every step, edits, bad input, a generated case) and its figure builders."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import eplb
from eplb import explain
from tests.conftest import APP_TIMEOUT, ROOT, assert_clean
from ui import figures, learn_figures

README, README_TOPOLOGY = explain.readme_case()


def walks_of(weight, topology, layer=0):
    return {name: explain.walkthrough(weight, topology, layer, name) for name in eplb.POLICIES}


def open_learn() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "learn.py"), default_timeout=APP_TIMEOUT).run()


def heatmap_text(spec: str):
    """The cell text of a chart's first heatmap (as Plotly encodes it)."""
    return next(trace["text"] for trace in json.loads(spec)["data"] if trace["type"] == "heatmap")


def assert_shows_placement(at: AppTest, phy2log_layer: torch.Tensor) -> None:
    """The result step's placement heatmap prints exactly these experts, slot by slot."""
    expected = figures.placement_heatmap(phy2log_layer, torch.ones(phy2log_layer.numel()), 8)
    shown = next(chart.proto.spec for chart in at.get("plotly_chart") if '"heatmap"' in chart.proto.spec)
    assert heatmap_text(shown) == heatmap_text(expected.to_json())


def tables(at: AppTest) -> list:
    """The read-only tables (the loads editor is a dataframe too)."""
    return [table for table in at.dataframe if table.editing_mode == "read_only"]


def edit_cell(at: AppTest, layer: int, expert: int, value) -> AppTest:
    """Edit one cell of the loads table the way the browser reports it (AppTest seeds a keyed editor's state)."""
    at.session_state[at.data_editor[0].key] = {
        "edited_rows": {layer: {f"e{expert}": value}}, "added_rows": [], "deleted_rows": []}
    return at.run()


def go_to_step(at: AppTest, step: int) -> AppTest:
    return at.select_slider(key="learn_step").set_value(step).run()


def assert_steps_match(at: AppTest, weight, topology, layer=0) -> None:
    """Step through every step; each shows the title, caption, figures and table the lesson builds for the case."""
    expected = learn_figures.lesson(walks_of(weight, topology, layer), "deepseek")
    for index, step in enumerate(expected):
        go_to_step(at, index)
        assert_clean(at)
        assert at.subheader[0].value == step.title
        assert any(m.value == step.caption for m in at.markdown)
        assert len(at.get("plotly_chart")) == len(step.figures)
        assert len(tables(at)) == (1 if step.table else 0)


def test_opens_on_deepseek_readme_example():
    at = open_learn()
    assert_clean(at)
    assert not at.error
    assert at.data_editor[0].value.to_numpy().tolist() == README.tolist()
    assert [at.number_input(key=f"learn_{n}").value for n in ("nodes", "gpus_per_node", "slots", "groups")] == \
        [2, 4, 16, 4]
    assert at.subheader[0].value == "The case"
    assert any("1,033 tokens to 12 experts" in m.value for m in at.markdown)


def test_steps_through_every_step_and_ends_in_rebalance_experts():
    at = open_learn()
    assert_steps_match(at, README, README_TOPOLOGY)
    go_to_step(at, 4)
    assert at.subheader[0].value == "4 · Result against the start"
    phy2log = eplb.rebalance_experts(README, 16, 4, 2, 8, policy="deepseek")[0]
    assert_shows_placement(at, phy2log[0])
    go_to_step(at, 1)
    assert tables(at)[0].value["node"].tolist() == [0, 1, 1, 0]  # groups 1, 3, 0, 2 onto nodes


def test_next_and_back_buttons_walk_the_steps():
    at = open_learn()
    titles = [step.title for step in learn_figures.lesson(walks_of(README, README_TOPOLOGY), "deepseek")]
    assert at.button(key="learn_previous").disabled
    seen = [at.subheader[0].value]
    while not at.button(key="learn_next").disabled:
        at.button(key="learn_next").click().run()
        assert_clean(at)
        seen.append(at.subheader[0].value)
    assert seen == titles
    at.button(key="learn_previous").click().run()
    assert at.subheader[0].value == titles[-2]


def test_editing_a_load_changes_every_step():
    at = edit_cell(open_learn(), 0, 3, 500)
    assert_clean(at)
    assert not at.error
    edited = README.clone()
    edited[0, 3] = 500
    assert any("the busiest, expert 3, gets 500" in m.value for m in at.markdown)
    assert_steps_match(at, edited, README_TOPOLOGY)
    go_to_step(at, 4)
    assert_shows_placement(at, eplb.rebalance_experts(edited, 16, 4, 2, 8, policy="deepseek")[0][0])


@pytest.mark.parametrize(("value", "message"), [
    (None, "The loads table has a problem: weight has 1 NaN or infinite loads (first at layer 0, expert 3)"),
    (-5, "negative loads (first at layer 0, expert 3, value -5.0)"),
])
def test_a_bad_cell_is_explained_and_the_last_case_stays(value, message):
    at = edit_cell(open_learn(), 0, 7, 400)  # a valid edit first: that case must stay on screen
    at = edit_cell(at, 0, 3, value)
    assert_clean(at)
    assert len(at.error) == 1 and message in at.error[0].value
    assert "still show the last case that ran" in at.error[0].value
    assert any("the busiest, expert 7, gets 400" in m.value for m in at.markdown)
    assert at.get("plotly_chart")


def test_a_topology_that_does_not_fit_is_explained():
    at = open_learn()
    at.number_input(key="learn_groups").set_value(5).run()
    assert_clean(at)
    assert "must be divisible by num_groups (5)" in at.error[0].value
    go_to_step(at, 1)
    assert any("16 slots, 4 groups" in c.value for c in at.caption)  # the last case that ran
    assert any("group 1 (experts 3-5) is the heaviest" in m.value for m in at.markdown)
    at.number_input(key="learn_groups").set_value(2).run()  # 2 groups on 2 nodes fits again
    assert not at.error
    assert any("group 0 (experts 0-5) is the heaviest" in m.value and "each node simply takes one group" in m.value
               for m in at.markdown)


def test_generating_a_case_loads_its_table_and_topology():
    at = open_learn()
    at.number_input(key="learn_seed").set_value(3).run()
    go_to_step(at, 2)
    at.button(key="learn_generate").click().run()
    assert_clean(at)
    assert not at.error
    weight, topology = explain.random_case(3)
    assert at.data_editor[0].value.to_numpy().tolist() == weight.tolist()
    assert at.number_input(key="learn_slots").value == topology.num_replicas
    assert at.number_input(key="learn_groups").value == topology.num_groups
    assert at.subheader[0].value == "The case"
    assert_steps_match(at, weight, topology)
    at.button(key="learn_readme").click().run()
    assert at.data_editor[0].value.to_numpy().tolist() == README.tolist()


def test_layer_and_walked_policy_can_change():
    at = open_learn()
    at.selectbox(key=at.selectbox[0].key).set_value(1).run()
    assert any(m.value.startswith("Layer 1 routes") for m in at.markdown)
    at.selectbox(key="learn_policy").set_value("zigzag").run()
    go_to_step(at, 5)
    assert_clean(at)
    assert at.subheader[0].value.startswith("deepseek")


# The figure builders, on the README case


def stacked_sums(fig) -> dict:
    sums = defaultdict(float)
    for trace in fig.data:
        for x, y in zip(trace.x, trace.y):
            sums[x] += y
    return sums


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
def test_packing_figures_add_up_to_the_walkthrough(policy):
    walk = explain.walkthrough(README, README_TOPOLOGY, 1, policy)
    gpus = stacked_sums(learn_figures.gpu_packing(walk))
    assert np.allclose([gpus[g] for g in range(8)], walk.gpu_load.numpy())
    nodes = stacked_sums(learn_figures.group_packing(walk))
    assert np.allclose([nodes[n] for n in range(2)], walk.groups.bin_load.numpy())
    experts = stacked_sums(learn_figures.replication(walk))
    assert np.allclose([experts[f"e{e}"] for e in range(12)], README[1].numpy())


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
def test_result_figures_show_the_final_placement(policy):
    walk = explain.walkthrough(README, README_TOPOLOGY, 0, policy)
    placement, bars = learn_figures.result(walk)
    assert np.asarray(placement.data[0].text).flatten().tolist() == walk.phy2log.tolist()
    assert np.allclose(bars.data[0].y, walk.gpu_load_before.numpy()) and np.allclose(bars.data[1].y, walk.gpu_load)


def test_replication_figure_labels_extra_copies_in_choice_order():
    walk = explain.walkthrough(README, README_TOPOLOGY, 0, "deepseek")
    labels = {(x, t) for trace in learn_figures.replication(walk).data for x, t in zip(trace.x, trace.text) if t}
    assert labels == {("e5", "+1"), ("e4", "+2"), ("e10", "+1"), ("e1", "+2")}


def test_lesson_has_the_four_steps_then_every_other_policy():
    steps = learn_figures.lesson(walks_of(README, README_TOPOLOGY), "deepseek")
    assert [s.title for s in steps[:5]] == ["The case", "1 · Groups onto nodes", "2 · Extra copies inside each node",
                                           "3 · Copies onto GPUs", "4 · Result against the start"]
    others = [name for name in eplb.POLICIES if name != "deepseek"]
    assert [s.title.split(" ")[0].rstrip(":") for s in steps[5:]] == others
    assert any("(the project's default)" in s.title for s in steps) == (eplb.DEFAULT_POLICY != "deepseek")
    assert all(s.caption and s.figures for s in steps)
    case_colors = steps[0].figures[0].data[0].marker.color
    assert len(set(case_colors)) == README_TOPOLOGY.num_groups  # one color per group
    assert torch.equal(torch.tensor([len(steps[1].table), len(steps[2].table), len(steps[3].table)]),
                       torch.tensor([4, 4, 16]))

"""The Learn page in AppTest: every step of every lesson, after an edit and on bad input, the heading
following the data, the lesson limits, Explore's "Teach this layer"; and the lesson's figures."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
import torch
from streamlit.testing.v1 import AppTest

import eplb
from eplb import explain
from eplb.explain import LESSONS, Case
from tests.conftest import APP_TIMEOUT, ROOT, assert_clean
from ui.learn import figures, page
from ui.learn.lesson import lesson
from ui.text import escape

README = LESSONS["readme"]


def open_learn() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "learn.py"), default_timeout=APP_TIMEOUT).run()


def heading(at: AppTest) -> str:
    return at.subheader[0].value


def step_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Step "))


def shown_pictures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def read_only_tables(at: AppTest) -> list:
    return [table for table in at.dataframe if table.editing_mode == "read_only"]


def edit_cell(at: AppTest, layer: int, expert: int, value) -> AppTest:
    """Edit one cell of the loads table the way the browser reports it (AppTest seeds a keyed editor's state)."""
    at.session_state[at.data_editor[0].key] = {
        "edited_rows": {expert: {f"layer {layer}": value}}, "added_rows": [], "deleted_rows": []}
    return at.run()


def assert_walks_the_lesson(at: AppTest, case: Case, layer: int = 0, policy: str = "deepseek") -> None:
    """From the first step, Next through every step and Back again: each shows exactly what the lesson builds."""
    expected = lesson(case, layer, policy)
    assert at.session_state[page.STEP] == 0
    for index, step in enumerate(expected):
        if index:
            at.button(key="learn_next").click().run()
        assert_clean(at)
        assert heading(at) == escape(case.label) + (f" · layer {layer}" if case.num_layers > 1 else "")
        assert step_line(at) == f"#### Step {index + 1} of {len(expected)} · {step.title}"
        assert any(m.value == page.bullets(step.sentences) for m in at.markdown)
        pictures = shown_pictures(at)
        assert pictures[0]["data"] == json.loads(step.picture.to_json())["data"]
        assert len(pictures) == 1 + (step.chart is not None)
        assert len(read_only_tables(at)) == (1 if step.table else 0)
        assert at.button(key="learn_previous").disabled == (index == 0)
    assert at.button(key="learn_next").disabled
    for _ in expected[1:]:
        at.button(key="learn_previous").click().run()
    assert step_line(at).startswith("#### Step 1 of ")


def test_opens_on_deepseek_readme_example_with_the_opening():
    at = open_learn()
    assert_clean(at)
    assert not at.error
    assert at.title[0].value == "Learn EPLB"
    assert heading(at) == escape("DeepSeek's README example") + " · layer 0"
    assert at.data_editor[0].value.to_numpy().T.tolist() == README.tensor.tolist()
    assert [at.number_input(key=f"learn_{n}").value for n in ("nodes", "gpus_per_node", "slots", "groups")] == \
        [2, 4, 16, 4]
    assert step_line(at) == "#### Step 1 of 8 · What EPLB is for"
    opening = next(m.value for m in at.markdown if m.value.startswith("- A Mixture-of-Experts"))
    assert "its top 2" in opening and "8 GPUs" in opening and "busiest GPU (red) sets the pace" in opening


@pytest.mark.parametrize("name", list(LESSONS))
def test_walks_every_step_of_every_lesson(name):
    at = open_learn()
    at.button(key=f"learn_start_{name}").click().run()
    assert_walks_the_lesson(at, LESSONS[name])


def test_walks_every_step_of_a_generated_case():
    at = open_learn()
    at.number_input(key="learn_seed").set_value(3).run()
    at.button(key="learn_generate").click().run()
    weight, topology = explain.random_case(3)
    assert at.data_editor[0].value.to_numpy().T.tolist() == weight.tolist()
    assert at.number_input(key="learn_slots").value == topology.num_replicas
    assert_walks_the_lesson(at, Case.of("A random small case, seed 3", weight, topology))


def test_after_an_edit_the_heading_and_every_step_follow_the_data():
    at = open_learn()
    at.button(key="learn_next").click().run()
    at = edit_cell(at, 0, 3, 500)
    assert_clean(at)
    assert not at.error
    assert heading(at) == escape("DeepSeek's README example, edited") + " · layer 0"
    assert "README example ·" not in heading(at)
    assert step_line(at).startswith("#### Step 2 of 8")  # an edit keeps the step on screen
    assert any("The busiest, expert 3, gets 500." in m.value for m in at.markdown)
    edited = README.tensor.clone()
    edited[0, 3] = 500
    at.button(key="learn_previous").click().run()
    assert_walks_the_lesson(at, Case.of("DeepSeek's README example, edited", edited, README.topology))
    at.button(key="learn_start_readme").click().run()
    assert heading(at) == escape("DeepSeek's README example") + " · layer 0"


def test_a_changed_topology_is_an_edit_too():
    at = open_learn()
    at.number_input(key="learn_groups").set_value(2).run()  # 2 groups of 6 on 2 nodes
    assert heading(at).startswith(escape("DeepSeek's README example, edited"))
    assert_walks_the_lesson(at, Case.of("DeepSeek's README example, edited", README.tensor,
                                        eplb.Topology(16, 2, 2, 8)))


@pytest.mark.parametrize(("control", "value", "message"), [
    ("cell", None, "The loads table has a problem: weight has 1 NaN or infinite loads (first at layer 0, expert 3)"),
    ("cell", -5, "negative loads (first at layer 0, expert 3, value -5.0)"),
    ("cell", 2e9, "at most 1,000,000 tokens in one cell (layer 0, expert 3 holds 2,000,000,000)"),
    ("learn_gpus_per_node", 10**6, "at most 8 GPUs per node (here 1000000)"),
    ("learn_slots", 10**7, "at most 64 slots in all (16 GPUs x 4 slots; here 10000000)"),
    ("learn_nodes", 9, "at most 4 nodes (here 9)"),
    ("learn_groups", 5, "must be divisible by num_groups (5)"),
])
def test_bad_input_is_explained_and_the_last_case_stays_through_every_step(control, value, message):
    at = edit_cell(open_learn(), 0, 7, 400)  # a valid edit first: that case must stay on screen
    shown = README.tensor.clone()
    shown[0, 7] = 400
    if control == "cell":
        at = edit_cell(at, 0, 3, value)
    else:
        at.number_input(key=control).set_value(value).run()
    assert_clean(at)
    shown_message = at.error[0].value
    assert len(at.error) == 1 and escape(message) in shown_message  # shown as literal text
    assert escape("The lesson still shows the last case that ran.") in shown_message
    if control != "learn_groups":
        assert escape(explain.SCREEN) in shown_message or control == "cell" and value != 2e9 or "crowd" in shown_message
    assert at.warning and "shows the last case that ran" in at.warning[0].value
    assert_walks_the_lesson(at, Case.of("DeepSeek's README example, edited", shown, README.topology))


@pytest.mark.parametrize(("value", "message"), [
    (float("inf"), None), (float("nan"), None), (2.5, "Nodes must be a whole number of at least 1."),
    (1e300, "at most 4 nodes (here 1e+300)"),
])
def test_raw_values_a_browser_cannot_type_never_break_the_page(value, message):
    at = open_learn()
    at.number_input(key="learn_nodes").set_value(value).run()  # as a raw websocket message would
    assert_clean(at)
    if message is None:  # Streamlit resets a non-finite value to the smallest allowed
        assert at.number_input(key="learn_nodes").value == 1 and not at.error
    else:
        assert escape(message) in at.error[0].value
    assert at.get("plotly_chart")


def test_every_topology_control_says_its_limit_and_why():
    at = open_learn()
    helps = {name: at.number_input(key=f"learn_{name}").help for name in page.TOPOLOGY_LABELS}
    assert "1 to 4" in helps["nodes"] and "1 to 8 per node and 16 GPUs in all" in helps["gpus_per_node"]
    assert "up to 4 per GPU and 64 in all" in helps["slots"]
    assert all(explain.SCREEN in helps[name] for name in ("nodes", "gpus_per_node", "slots"))


def test_layer_and_walked_policy_can_change():
    at = open_learn()
    at.selectbox(key="learn_layer_0").set_value(1).run()
    assert heading(at).endswith("· layer 1")
    at.button(key="learn_next").click().run()
    assert any(m.value.startswith("- Layer 1 routes") for m in at.markdown)
    at.selectbox(key="learn_policy").set_value("zigzag").run()
    assert_clean(at)
    at.session_state[page.STEP] = 0
    at.run()
    assert_walks_the_lesson(at, README, layer=1, policy="zigzag")
    assert lesson(README, 1, "zigzag")[6].title.startswith("How deepseek differs")


def test_a_case_label_is_shown_as_text_not_markdown():
    at = AppTest.from_file(str(ROOT / "pages" / "learn.py"), default_timeout=APP_TIMEOUT)
    label = "upload: **URGENT** $x^2$ ![x](http://127.0.0.1:8799/a.png).csv"
    at.session_state[page.TAUGHT] = explain.teach_case(README.tensor, README.topology, "auto", 0, label)
    at.run()
    assert_clean(at)
    assert heading(at) == escape(f"layer 0 of {label}")
    assert "\\*\\*URGENT\\*\\*" in heading(at) and "\\$x^2\\$" not in heading(at) and "\\!\\[x\\]" in heading(at)


def test_teach_this_layer_opens_learn_on_that_layer_reduced(open_page):
    at = open_page("pages/explore.py")
    assert_clean(at)
    layer = at.slider[0].value
    at.button(key="explore_teach_layer").click().run()
    assert_clean(at)
    assert at.title[0].value == "Learn EPLB"
    assert heading(at) == escape(f"layer {layer} of sample: DeepSeek-V3 · Zipf")
    note = next(c.value for c in at.caption if "too many to follow by hand" in c.value)
    assert "256 experts on 32 GPUs" in note and "every 16 neighbouring experts into one" in note
    case = at.session_state[page.CASE]["case"]
    assert case.num_experts == 16 and case.topology == eplb.Topology(24, 8, 2, 8)
    assert at.number_input(key="learn_slots").value == 24
    assert_walks_the_lesson(at, case)


def test_lessons_are_built_once_for_every_session():
    first = page.lesson_of(README, 0, "deepseek")
    assert page.lesson_of(Case.of(README.label, README.tensor, README.topology, about=README.about), 0,
                          "deepseek") is first


# The lesson's figures


def every_figure(case: Case, policy: str = "deepseek"):
    for step in lesson(case, 0, policy):
        yield step.picture
        if step.chart is not None:
            yield step.chart


@pytest.mark.parametrize("name", list(LESSONS))
def test_every_figure_is_valid_plotly_with_big_dark_text_and_a_legend(name):
    for fig in every_figure(LESSONS[name]):
        go.Figure(fig.to_dict())  # validates every property the builders wrote unvalidated
        spec = fig.to_dict()
        layout = spec["layout"]
        assert layout["showlegend"] and any(trace.get("showlegend", True) for trace in spec["data"])
        sizes = [font["size"] for font in _fonts(spec)]
        assert sizes and min(sizes) >= 16
        assert layout["font"]["color"] == figures.TEXT and layout["paper_bgcolor"] == "white"


def _fonts(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("font") and isinstance(value, dict) and "size" in value:
                yield value
            yield from _fonts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _fonts(item)


@pytest.mark.parametrize("name", list(LESSONS))
def test_picture_legends_fit_their_rows(name):
    """Legend names are short enough for a fixed-width entry, so no entry runs into the next."""
    for step in lesson(LESSONS[name], 0, "deepseek"):
        names = [t["name"] for t in step.picture.to_dict()["data"] if t.get("showlegend", True) and t.get("name")]
        assert all(len(n) <= 8 for n in names), names


@pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
def test_the_picture_shows_the_placement_and_the_loads(policy):
    walk = explain.walkthrough(README.tensor, README.topology, 1, policy)
    scene = figures.placed_scene(walk, walk.phy2log, [figures.after_bars(walk)])
    slots = README.topology.slots_per_gpu
    assert sorted((t.gpu * slots + t.column, t.expert) for t in scene.tiles) == list(enumerate(walk.phy2log.tolist()))
    assert all(not t.waiting for t in scene.tiles)
    spec = figures.gpu_picture(scene, README.topology, 12).to_dict()
    bars = [t for t in spec["data"] if t["type"] == "bar" and t["x"] != [None]]
    assert torch.allclose(torch.tensor(bars[0]["x"]), walk.gpu_load.float())
    tiles = [t for t in spec["data"] if t.get("mode") == "markers+text"]
    assert sorted(text for t in tiles for text in t["text"]) == sorted(f"e{e}" for e in walk.phy2log.tolist())


def test_waiting_copies_are_the_nodes_experts_then_the_extra_copies_framed():
    walk = explain.walkthrough(README.tensor, README.topology, 0, "deepseek")
    grouped, replicated = figures.waiting_tiles(walk, extras=False), figures.waiting_tiles(walk, extras=True)
    assert sorted(t.expert for t in grouped) == list(range(12)) and not any(t.framed for t in grouped)
    framed = [(t.gpu // 4, t.expert) for t in replicated if t.framed]
    assert framed == [(0, 5), (0, 4), (1, 10), (1, 1)]  # the order DeepSeek's greedy added them
    assert {t.key for t in grouped} < {t.key for t in replicated}  # the same copies, plus the new ones
    assert all(t.waiting for t in replicated)


def test_moving_steps_replay_from_the_previous_picture():
    steps = lesson(README, 0, "deepseek")
    for step in steps[2:5]:
        frames = step.picture.to_dict()["frames"]
        assert [f["name"] for f in frames] == ["before", "now"]
    before_ids = {i for t in steps[3].picture.to_dict()["frames"][0]["data"] for i in t.get("ids", [])}
    assert before_ids == {t.key for t in figures.waiting_tiles(explain.walkthrough(
        README.tensor, README.topology, 0, "deepseek"), extras=False)}
    assert not steps[0].picture.to_dict().get("frames")


def test_the_opening_routes_one_token_to_its_top_experts():
    opening = lesson(README, 0, "deepseek")[0].picture.to_dict()
    arrows = [a for a in opening["layout"]["annotations"] if a.get("showarrow")]
    assert len(arrows) == 2
    assert any(t["name"] == "a token" for t in opening["data"])


def test_a_lesson_at_the_limits_stays_small_in_the_cache():
    """The cache holds LESSONS_CACHED lessons; one at the limits, every figure drawn, holds under 3 MB."""
    import gc
    import tracemalloc

    weight = torch.rand(explain.LIMITS.layers, explain.LIMITS.experts, generator=torch.Generator().manual_seed(1)) * 1e6
    case = Case.of("at the limits", weight, eplb.Topology(explain.LIMITS.slots, 8, explain.LIMITS.nodes,
                                                         explain.LIMITS.gpus))
    assert explain.case_problem(case.tensor, case.topology) is None
    lesson(Case.of("warm-up", weight.flip(1), case.topology), 0, "deepseek")[0].picture  # one-time allocations
    gc.collect()
    tracemalloc.start()
    try:
        steps = lesson(case, explain.LIMITS.layers - 1, "deepseek")
        drawn = [f for step in steps for f in (step.picture, step.chart)]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(drawn) == 2 * len(steps)
    assert held < 3e6 and page.LESSONS_CACHED * 3e6 < 100e6, held

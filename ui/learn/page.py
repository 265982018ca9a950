"""The Learn page's state and controls: the case a session studies, the step it is on, the lessons
every session shares, and Explore's "Teach this layer" button.

    learn.receive_taught_layer()                 # a layer Explore sent, else the README example on first open
    choice = learn.case_controls()               # inside the "Change the case" expander
    steps = learn.lesson_of(choice.case, choice.layer, choice.policy)   # cached for every session
    step = learn.navigation(steps)               # Back, "Step k of n", Next

A session keeps its starting case (``CASE``), its controls' values and its step in
session state; the lesson drawn from a case depends on nothing else, so it is built
once per server (``lesson_of``) however many sessions open it: a class of 30 opening
the README example costs one build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st
import torch

import eplb
from eplb import explain
from eplb.explain import LESSONS, LIMITS, Case
from ui import compute  # noqa: F401  (sets torch to one thread per server process, as every page wants)
from ui.learn.lesson import Step, lesson
from ui.text import escape

CASE = "learn_case"  # {"case": Case, "version": int}: the case the controls started from
LAST_VALID = "learn_last_valid"  # the Case the lesson drew last: shown again beside a problem
TAUGHT = "learn__taught"  # a Case sent by Explore's "Teach this layer", taken on Learn's next run
STEP = "learn_step"  # the step on screen, from 0
SEED = "learn_seed"

LESSONS_CACHED = 32
"""Lessons kept for all sessions. A lesson at ``LIMITS`` with every figure drawn holds about 1.2 MB
(README example: under 0.8 MB), so the cache stays under 50 MB whatever the sessions do."""

CHART_CONFIG = {"displayModeBar": False}
"""No toolbar over the pictures: a class does not zoom, and it would cover the legend."""
TABLE_ROW_PX = 35
"""Height of a row in Streamlit's data editor: the loads table shows every expert without scrolling."""
WORDS_PX = 300
"""Width of the step's text column: beside the 500 px picture it fills the page at 1280 px; at
1024 px it goes under the picture."""

TOPOLOGY_HELP = {
    "nodes": f"Machines, each with the same number of GPUs. A lesson takes 1 to {LIMITS.nodes}: {explain.SCREEN}.",
    "gpus_per_node": f"A lesson takes 1 to {LIMITS.gpus_per_node} per node and {LIMITS.gpus} GPUs in all: "
                     f"{explain.SCREEN}.",
    "slots": f"Expert slots on all GPUs together (experts plus spare slots for extra copies), the same number on "
             f"every GPU. A lesson takes up to {LIMITS.slots_per_gpu} per GPU and {LIMITS.slots} in all: "
             f"{explain.SCREEN}.",
    "groups": "Expert groups (DeepSeek-V3's routing uses 8); the number of experts must divide by it. "
              "Hierarchical mode keeps each group on one node.",
}
TOPOLOGY_LABELS = {"nodes": "Nodes", "gpus_per_node": "GPUs per node", "slots": "Slots in all",
                   "groups": "Expert groups"}


@dataclass(frozen=True)
class Choice:
    """What the controls ask the lesson to draw: a valid case, its layer and the walked policy.

    problem: why the controls' current values do not make a valid case (then ``case`` is the
    last case that ran), or None.
    """

    case: Case
    layer: int
    policy: str
    problem: str | None = None


def start(case: Case) -> None:
    """Start over on a case: its table, its topology in the controls, back to the first step."""
    version = st.session_state[CASE]["version"] + 1 if CASE in st.session_state else 0
    st.session_state[CASE] = {"case": case, "version": version}
    t = case.topology
    for name, value in {"nodes": t.num_nodes, "gpus_per_node": t.gpus_per_node, "slots": t.num_replicas,
                        "groups": t.num_groups}.items():
        st.session_state[f"learn_{name}"] = float(value)
    st.session_state["learn_mode"] = case.mode
    st.session_state[STEP] = 0
    st.session_state[LAST_VALID] = case


def _generate() -> None:
    seed = _whole_number(SEED) or 0
    weight, topology = explain.random_case(seed)
    start(Case.of(f"A random small case, seed {seed}", weight, topology))


def receive_taught_layer() -> None:
    """Take the layer Explore's "Teach this layer" sent; on a session's first open, the README example."""
    taught = st.session_state.pop(TAUGHT, None)
    if taught is not None:
        start(taught)
    elif CASE not in st.session_state:
        start(LESSONS["readme"])


def _whole_number(key: str) -> int | None:
    """A control's value as an int; None when it is not a whole number."""
    value = st.session_state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else None


def _number_input(where, label: str, key: str, **options) -> None:
    """A whole-number input that reads as a float, so that a raw non-finite value from the browser resets it
    (Streamlit's integer inputs raise on one) and a fractional one reaches ``_whole_number``'s check."""
    where.number_input(label, step=1.0, format="%.0f", key=key, **options)


def case_controls() -> Choice:
    """Draw the case's controls (starting points, layer, policy, mode, topology, loads); return what to draw.

    A value that does not make a valid case gets a message saying what to change, and the
    last case that ran stays on screen.
    """
    base: Case = st.session_state[CASE]["case"]
    version = st.session_state[CASE]["version"]

    starts = st.container(horizontal=True, vertical_alignment="bottom")  # wraps where the page is narrow
    for name, case in LESSONS.items():
        starts.button(case.label, key=f"learn_start_{name}", on_click=start, args=(case,), help=case.about)
    starts.button("Generate a small case", key="learn_generate", on_click=_generate,
                  help="A small random load on a small topology that fits it; the seed picks which.")
    _number_input(starts, "Seed", SEED, min_value=0.0, max_value=float(2**31 - 1), width=140)

    left, middle, right = st.columns(3)
    layer = left.selectbox("Layer", range(base.num_layers), format_func=lambda i: f"layer {i}",
                           key=f"learn_layer_{version}", disabled=base.num_layers == 1)
    policies = list(eplb.POLICIES)
    policy = middle.selectbox("Walk through the policy", policies, key="learn_policy",
                              index=policies.index("deepseek") if "deepseek" in policies else 0,
                              help="\n\n".join(f"**{name}**: {p.summary}" for name, p in eplb.POLICIES.items()))
    mode = right.selectbox("Mode", list(eplb.MODES), key="learn_mode",
                           help="auto: hierarchical (groups onto nodes first) when the groups divide evenly over "
                                "the nodes, else global.")

    for column, (name, label) in zip(st.columns(len(TOPOLOGY_LABELS)), TOPOLOGY_LABELS.items()):
        _number_input(column, label, f"learn_{name}", min_value=1.0, help=TOPOLOGY_HELP[name])

    # Experts down, layers across: a lesson has up to 32 experts but few layers, so the table fits any width.
    table = pd.DataFrame(list(zip(*base.weight)), index=[f"e{e}" for e in range(base.num_experts)],
                         columns=[f"layer {i}" for i in range(base.num_layers)])
    st.markdown("**Loads: tokens per expert** · edit any cell")
    edited = st.data_editor(
        table, key=f"learn_loads_{version}", num_rows="fixed", height=TABLE_ROW_PX * (base.num_experts + 1) + 3,
        width="content", column_config={
            c: st.column_config.NumberColumn(min_value=0, max_value=LIMITS.load,
                                             help=f"Tokens routed to each expert: 0 to {LIMITS.load:,.0f}")
            for c in table.columns})

    values = {name: _whole_number(f"learn_{name}") for name in TOPOLOGY_LABELS}
    missing = [TOPOLOGY_LABELS[name] for name, value in values.items() if value is None]
    if missing:
        problem = f"{', '.join(missing)} must be a whole number of at least 1."
    else:
        topology = eplb.Topology(values["slots"], values["groups"], values["nodes"],
                                 values["nodes"] * values["gpus_per_node"])
        weight = torch.tensor(edited.to_numpy(dtype=float, na_value=float("nan")), dtype=torch.float64).T
        problem = explain.case_problem(weight, topology, mode)
    if problem is None:
        case = replace(base, weight=Case.of(base.label, weight, topology).weight, topology=topology, mode=mode)
        if case != base:  # the heading follows the data
            case = replace(case, label=f"{base.label}, edited")
        st.session_state[LAST_VALID] = case
        return Choice(case, layer, policy)
    # Literal text: a message may quote what was typed into a cell or a control.
    st.error(escape(f"{problem} The lesson still shows the last case that ran.", max_chars=1000), icon="⚠️")
    shown: Case = st.session_state[LAST_VALID]
    return Choice(shown, min(layer, shown.num_layers - 1), policy, problem)


def heading(choice: Choice) -> str:
    """The lesson's heading: the case shown (escaped: a label may hold a file name) and its layer."""
    layer = f" · layer {choice.layer}" if choice.case.num_layers > 1 else ""
    return f"{escape(choice.case.label)}{layer}"


@st.cache_resource(max_entries=LESSONS_CACHED, show_spinner=False)
def lesson_of(case: Case, layer: int, policy: str) -> tuple[Step, ...]:
    """The lesson of a valid case, built once per server and shared by every session (steps are read-only)."""
    return lesson(case, layer, policy)


def _move(delta: int, last: int) -> None:
    st.session_state[STEP] = min(max(int(st.session_state.get(STEP, 0)) + delta, 0), last)


def navigation(steps: tuple[Step, ...]) -> Step:
    """Back, "Step k of n" and Next in one row; returns the step to show."""
    last = len(steps) - 1
    index = min(max(int(st.session_state.get(STEP, 0)), 0), last)
    st.session_state[STEP] = index
    back, title, forward = st.columns([1, 5, 1], vertical_alignment="center")
    back.button("◀ Back", key="learn_previous", on_click=_move, args=(-1, last), disabled=index == 0,
                width="stretch")
    title.markdown(f"#### Step {index + 1} of {len(steps)} · {steps[index].title}")
    forward.button("Next ▶", key="learn_next", on_click=_move, args=(1, last), disabled=index == last,
                   type="primary", width="stretch")
    return steps[index]


def bullets(sentences: tuple[str, ...]) -> str:
    """A step's sentences as a Markdown list."""
    return "\n".join(f"- {sentence}" for sentence in sentences)


def teach_this_layer(inputs, layer: int) -> None:
    """Explore's "Teach this layer" button: open Learn on ``layer`` of the page's data, reduced when too big.

    inputs: the page's ``ui.state.Inputs`` (a valid topology).
    """
    if st.button("Teach this layer", key="explore_teach_layer", icon=":material/school:",
                 help=f"Open Learn on layer {layer} of this data, step by step. A layer too big to follow by hand "
                      f"(more than {LIMITS.experts} experts or {LIMITS.gpus} GPUs) is reduced to a lesson-sized "
                      "one, and Learn says how."):
        st.session_state[TAUGHT] = explain.teach_case(inputs.weight, inputs.topology, inputs.mode, layer,
                                                      inputs.label)
        st.switch_page("pages/learn.py")

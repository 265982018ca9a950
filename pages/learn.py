"""Learn: one rebalance of one layer, step by step, on a small case the class can edit."""

import pandas as pd
import streamlit as st
import torch

import eplb
from eplb import explain
from ui import learn_figures

CASE = "learn_case"  # {"label", "weight" [L][E], "version"}: the table's starting loads
LAST_VALID = "learn_last_valid"  # (weight [L, E], Topology) of the last case that ran
TOPOLOGY = {"nodes": "Nodes", "gpus_per_node": "GPUs per node", "slots": "Slots in all", "groups": "Expert groups"}


def use_case(weight: torch.Tensor, topology: eplb.Topology, label: str) -> None:
    """Start over on a new case: new table, its topology in the controls, back to the first step."""
    version = st.session_state[CASE]["version"] + 1 if CASE in st.session_state else 0
    st.session_state[CASE] = {"label": label, "weight": weight.tolist(), "version": version}
    values = {"nodes": topology.num_nodes, "gpus_per_node": topology.gpus_per_node,
              "slots": topology.num_replicas, "groups": topology.num_groups}
    for name, value in values.items():
        st.session_state[f"learn_{name}"] = value
    st.session_state["learn_step"] = 0


def generate() -> None:
    seed = int(st.session_state["learn_seed"])
    use_case(*explain.random_case(seed), label=f"random case, seed {seed}")


def move_step(delta: int, last: int) -> None:
    st.session_state["learn_step"] = min(max(st.session_state["learn_step"] + delta, 0), last)


if CASE not in st.session_state:
    use_case(*explain.readme_case(), label="DeepSeek's README example")
case = st.session_state[CASE]

st.title("Learn: one rebalance, step by step")
st.caption("How an EPLB policy decides where every expert's copies go, on a case small enough to follow by hand. "
           "Edit a load, change the topology or pick another layer, and watch every step change.")

# The case: starting points, topology, loads
left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
left.button("DeepSeek's README example", on_click=lambda: use_case(*explain.readme_case(),
            label="DeepSeek's README example"), key="learn_readme")
right.number_input("Seed", min_value=0, step=1, key="learn_seed")
middle.button("Generate another small case", on_click=generate, key="learn_generate",
              help="A small random load on a small topology that fits it (the seed picks which).")
for column, (name, label) in zip(st.columns(len(TOPOLOGY)), TOPOLOGY.items()):
    column.number_input(label, min_value=1, step=1, key=f"learn_{name}")
loads = pd.DataFrame(case["weight"], index=[f"layer {i}" for i in range(len(case["weight"]))],
                     columns=[f"e{e}" for e in range(len(case["weight"][0]))])
st.markdown(f"**Loads: tokens per expert ({case['label']})** · edit any cell")
edited = st.data_editor(loads, key=f"learn_loads_{case['version']}", num_rows="fixed",
                        column_config={c: st.column_config.NumberColumn(min_value=0) for c in loads.columns})
controls = st.columns(2)
layer = controls[0].selectbox("Layer", range(len(loads)), format_func=lambda i: f"layer {i}",
                              key=f"learn_layer_{case['version']}")
main = controls[1].selectbox("Walk through the policy", list(eplb.POLICIES), key="learn_policy",
                             index=list(eplb.POLICIES).index("deepseek") if "deepseek" in eplb.POLICIES else 0,
                             help="\n\n".join(f"**{name}**: {p.summary}" for name, p in eplb.POLICIES.items()))

# Check the case; on a problem say what to change and keep showing the last case that ran
s = {name: int(st.session_state[f"learn_{name}"]) for name in TOPOLOGY}
topology = eplb.Topology(s["slots"], s["groups"], s["nodes"], s["nodes"] * s["gpus_per_node"])
weight = torch.tensor(edited.to_numpy(dtype=float), dtype=torch.float32)
problem = explain.case_problem(weight, topology)
if problem is None:
    st.session_state[LAST_VALID] = (weight, topology)
else:
    st.error(f"{problem} The steps below still show the last case that ran.", icon="⚠️")
    weight, topology = st.session_state[LAST_VALID]
    layer = min(layer, weight.shape[0] - 1)
walks = {name: explain.walkthrough(weight, topology, layer, name) for name in eplb.POLICIES}

st.caption(f"{topology.num_gpus} GPUs on {topology.num_nodes} node(s), {topology.num_replicas} slots, "
           f"{topology.num_groups} groups · {walks[main].mode} mode · the project's default policy is "
           f"**{eplb.DEFAULT_POLICY}**")

# The lesson, one step at a time
steps = learn_figures.lesson(walks, main)
last = len(steps) - 1
st.divider()
back, slider, forward = st.columns([1.2, 8, 1.2], vertical_alignment="bottom")
back.button("Back", on_click=move_step, args=(-1, last), disabled=st.session_state["learn_step"] <= 0,
            key="learn_previous", width="stretch")
forward.button("Next", on_click=move_step, args=(1, last), disabled=st.session_state["learn_step"] >= last,
               key="learn_next", width="stretch")
shown = slider.select_slider("Step", options=range(len(steps)), key="learn_step",
                             format_func=lambda i: steps[i].title)
step = steps[shown]
st.subheader(step.title)
st.markdown(step.caption)
for figure in step.figures:
    st.plotly_chart(figure, width="stretch")
if step.table:
    st.dataframe(step.table, hide_index=True, width="stretch")

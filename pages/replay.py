"""Replay a trace: an online rebalancer over time, balancedness with and without it, and what each move costs."""

import dataclasses

import streamlit as st

from ui import analysis_compute, analysis_controls, analysis_figures, compute, figures, state, text

st.title("Replay a trace")
st.caption("How often should I rebalance, and what does each rebalance cost? A trace holds the load of every step. "
           "The engine starts on vLLM's initial map; every *interval* steps it plans a placement from the last "
           "*window* steps (never the steps to come) and moves the copies; each step is scored with the placement "
           "in force at that step.")

shown = state.page_inputs(describe=False)

picked = analysis_controls.trace_picker(shown)
if picked is None:
    st.stop()
num_steps, num_layers, num_experts = picked.trace.shape
# The sidebar's topology, with the slots counted on this trace's experts.
topology = dataclasses.replace(shown.topology, num_replicas=num_experts + shown.redundant)
st.markdown(f"**{text.escape(picked.label, 300)} · policy {shown.policy} · {topology.num_nodes} nodes x {topology.gpus_per_node} GPUs, "
            f"{topology.num_replicas} slots ({shown.redundant} redundant), {topology.num_groups} groups**")

left, middle, right = st.columns(3)
window = left.number_input("Window (steps)", min_value=1, max_value=num_steps, value=min(16, num_steps),
                           key=f"replay_window_{num_steps}",
                           help="Steps of history summed into the load each plan uses.")
interval = middle.number_input("Rebalance every (steps)", min_value=1, max_value=num_steps,
                               value=min(16, num_steps), key=f"replay_interval_{num_steps}")
use_threshold = right.toggle("Skip while balanced", key="replay_use_threshold",
                             help="As SGLang does: keep the placement while its balancedness on the planning "
                                  "window stays at or above the threshold.")
threshold = right.slider("Threshold", 0.0, 1.0, 0.9, 0.01, key="replay_threshold") if use_threshold else None
with left:
    expert_bytes = analysis_controls.expert_bytes_input(num_layers, num_experts, key="replay")

trace_digest = compute.register(picked.trace)
try:
    with st.spinner("Replaying..."):
        result = analysis_compute.replay(trace_digest, topology, window=int(window), interval=int(interval),
                                         threshold=threshold, policy=shown.policy, mode=shown.mode,
                                         expert_bytes=expert_bytes)
except ValueError as exc:
    st.error(f"Cannot replay this trace on the sidebar's topology: {exc}. Change the topology in the sidebar "
             f"(the trace has {num_experts} experts per layer) or pick another trace.", icon="⚠️")
    st.stop()

cards = st.columns(5)
cards[0].metric("Mean balancedness, static", figures.format_ratio(result.mean_static),
                help="vLLM's initial map (slot i holds expert i % experts) for the whole trace; steps without load "
                     "are left out.")
cards[1].metric("Mean balancedness, rebalanced", figures.format_ratio(result.mean_rebalanced),
                delta=None if result.mean_rebalanced is None or result.mean_static is None
                else f"{result.mean_rebalanced - result.mean_static:+.3f}")
cards[2].metric("Rebalances done", f"{len(result.rebalances)} of {result.checks}",
                help="Planning points where the placement changed, out of every planning point.")
cards[3].metric("Expert copies sent", f"{result.total_copies_sent:,}")
cards[4].metric("Bytes moved", analysis_figures.format_bytes(result.total_bytes_moved) if expert_bytes else "unknown",
                help="Copies sent x one expert's size (entered above).")

st.subheader("Balancedness over time")
st.plotly_chart(analysis_figures.replay_timeline(result), width="stretch")

st.subheader("What each rebalance moved")
if result.rebalances:
    st.plotly_chart(analysis_figures.migration_bars(result.rebalances), width="stretch")
    st.dataframe(analysis_figures.rebalance_table(result.rebalances), hide_index=True)
elif result.checks:
    st.info("Every planning point kept the current placement: its balancedness on the window stayed at or above "
            "the threshold, or the window had no load to plan from.")
else:
    st.info(f"No rebalance: the interval ({interval} steps) reaches past the trace's {num_steps} steps.")

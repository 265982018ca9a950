"""Replay a trace: an online rebalancer over time, balancedness with and without it, and what each move costs."""

import streamlit as st

from ui import analysis_compute, analysis_controls, analysis_figures, compute, figures, state, text

st.title("Replay a trace")
st.caption("How often should I rebalance, and what does each rebalance cost? A trace holds the load of every step. "
           "The engine starts on vLLM's initial map; every *interval* steps it plans a placement from the last "
           "*window* steps (never the steps to come), keeping what copies it can where they are, and moves the "
           "rest; each step is scored with the placement in force at that step.")

shown = state.page_inputs(describe=False)

picked = analysis_controls.trace_picker(shown)
if picked is None:
    st.stop()
num_steps, num_layers, num_experts = picked.trace.shape
topology = analysis_controls.replay_topology(picked, shown)
st.markdown(f"**{text.escape(picked.label, 300)} · policy {shown.policy} · {topology.num_nodes} nodes x "
            f"{topology.gpus_per_node} GPUs, {topology.num_replicas} slots ({topology.num_replicas - num_experts} "
            f"redundant), {topology.num_groups} groups**")

left, middle, right = st.columns(3)
window = left.number_input("Window (steps)", min_value=1, max_value=num_steps, value=min(16, num_steps),
                           key=f"replay_window_{num_steps}",
                           help="Steps of history each plan is made from: the policy sees every step of it "
                                "(the default policy hedges experts whose load swings).")
interval = middle.number_input("Rebalance every (steps)", min_value=1, max_value=num_steps,
                               value=min(16, num_steps), key=f"replay_interval_{num_steps}")
use_threshold = right.toggle("Use a threshold", key="replay_use_threshold",
                             help="Skip a rebalance while balanced, as SGLang does: keep the placement while its "
                                  "balancedness on the planning window stays at or above the threshold.")
threshold = right.slider("Threshold", 0.0, 1.0, 0.9, 0.01, key="replay_threshold") if use_threshold else None
with left:
    expert_bytes = analysis_controls.expert_bytes_input(num_layers, num_experts, key="replay")
with middle:
    keep_copies, balance_tolerance = analysis_controls.migration_knob()

trace_digest = compute.register(picked.trace)
settings = dict(window=int(window), interval=int(interval), threshold=threshold, policy=shown.policy, mode=shown.mode)
try:
    with st.spinner("Replaying..."):
        result = analysis_compute.replay(trace_digest, topology, expert_bytes=expert_bytes, keep_copies=keep_copies,
                                         balance_tolerance=balance_tolerance, **settings)
except ValueError as exc:
    st.error(f"Cannot replay this trace on this topology: {exc}. Change the topology in the sidebar "
             f"(the trace has {num_experts} experts per layer) or pick another trace.", icon="⚠️")
    st.stop()

cards = [*st.columns(3), *st.columns(3)[:2]]  # two rows: five cards in one cut "Bytes moved" at 1024 px
cards[0].metric("Static map", figures.format_ratio(result.mean_static),
                help="Mean balancedness per step on vLLM's initial map (slot i holds expert i % experts) for the "
                     "whole trace; steps without load are left out.")
cards[1].metric("Rebalanced", figures.format_ratio(result.mean_rebalanced),
                delta=None if result.mean_rebalanced is None or result.mean_static is None
                else f"{result.mean_rebalanced - result.mean_static:+.3f}",
                help="Mean balancedness per step with the rebalancer running.")
cards[2].metric("Rebalances", f"{len(result.rebalances)} of {result.checks}",
                help="Planning points where the placement changed, out of every planning point.")
cards[3].metric("Copies sent", f"{result.total_copies_sent:,}", help="Expert copies GPUs received, all rebalances.")
cards[4].metric("Bytes moved", analysis_figures.format_bytes(result.total_bytes_moved) if expert_bytes else "unknown",
                help="Copies sent x one expert's size (entered above).")

st.subheader("Balancedness over time")
st.plotly_chart(analysis_figures.replay_timeline(result), width="stretch")
st.caption("Two balancedness figures: a plan is made on the planning window's summed load (\"window\" below), and "
           "each step is scored on its own load (the chart). One step's load is noisier than a window's sum, so the "
           "same placement scores lower per step than on its window.")

st.subheader("What each rebalance moved")
if result.rebalances:
    st.plotly_chart(analysis_figures.migration_bars(result.rebalances), width="stretch")
    st.dataframe(analysis_figures.rebalance_table(result.rebalances), hide_index=True)
    st.caption("Before and after (window): the outgoing and incoming placements on the planning window's summed "
               "load. After (next steps): the incoming placement on the summed load of the steps up to the next "
               "planning point, which it was not planned on.")
elif result.checks:
    st.info("Every planning point kept the current placement: its balancedness on the window stayed at or above "
            "the threshold, or the window had no load to plan from.")
else:
    st.info(f"No rebalance: the interval ({interval} steps) reaches past the trace's {num_steps} steps.")

st.subheader("Balance against copies moved")
if st.toggle("Draw the trade-off curve", key="replay_tradeoff",
             help="Replays the trace once per setting of \"Keep copies in place\" (cached)."):
    with st.spinner("Replaying at every setting..."):
        points = analysis_compute.tradeoff(trace_digest, topology, **settings)
    chosen = next(p.label for p in points if (p.keep_copies, p.balance_tolerance) == (keep_copies, balance_tolerance))
    st.plotly_chart(analysis_figures.tradeoff_curve(points, chosen=chosen), width="stretch")
    st.caption("One point per setting, the chosen one ringed: further left moves fewer copies, higher balances "
               "better. The first rebalance leaves vLLM's initial map and moves most copies whatever the setting. "
               "A plan made from scratch is not always the best for the steps that follow: it fits the window's "
               "noise too.")

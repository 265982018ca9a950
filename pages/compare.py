"""Compare policies: every policy, in every mode that applies, on the current load and topology."""

import streamlit as st

from ui import analysis_compute, analysis_figures, compute, figures, state

st.title("Compare policies")
st.caption("Which balancer should I use? Every policy on the sidebar's load and topology, in each mode the "
           "topology allows (hierarchical keeps each expert group on one node; global ignores groups and nodes).")

shown = state.page_inputs()

with st.spinner("Running every policy..."):
    runs = analysis_compute.compare(shown.digest, shown.topology)
before = compute.baseline(shown.digest, shown.topology, shown.mode)
later = []
if shown.trace is not None:
    with st.spinner("Planning on each window of the trace, scoring on the next..."):
        later = analysis_compute.next_window(shown.trace_digest, shown.topology)

st.subheader("Side by side")
best = max(runs, key=lambda run: run.report.balancedness or 0.0)
if best.report.balancedness is None:
    st.info("This load has no tokens at all: no placement is more balanced than another (every metric reads "
            "\"no load\").")
else:
    st.markdown(f"Most balanced here: **{best.label}**, balancedness {figures.format_ratio(best.report.balancedness)}"
                f" (vLLM's initial map, no rebalance: {figures.format_ratio(before.report.balancedness)}).")
st.dataframe(analysis_figures.compare_table(runs, later), hide_index=True)
if later:
    st.caption(f"Two balancedness columns. Balancedness (vLLM) is in-sample: each plan scored on the load it was "
               f"planned on (the trace summed). Next window: the trace cut into {later[0].windows} windows of "
               f"{later[0].steps_per_window} steps; each policy plans from one window (every step of it) and is "
               f"scored on the window after it, as a serving engine lives; the mean over {later[0].windows - 1} "
               "plans. A policy that fits its window's noise scores well in-sample and less well next.")
st.caption("Balancedness (vLLM): sum over layers of mean GPU load / sum of max GPU load. Utilization (SGLang): the "
           "mean over layers of mean / max. Bound: the best balancedness any placement could reach in that mode; gap "
           "to bound: how far below it the policy lands. Node balance: balancedness over nodes instead of GPUs. "
           "Duplicate GPUs: (layer, GPU) pairs holding two copies of one expert. Runtime: one run on this server's "
           "CPU.")

st.subheader("Per-GPU load, one map per policy")
st.caption("One color scale for every map, so equal colors mean equal load.")
st.plotly_chart(analysis_figures.policy_heatmaps(runs), width="stretch")

st.subheader("Balancedness per layer")
st.plotly_chart(figures.balancedness_lines({run.label: run.report.layer_balancedness for run in runs},
                                           bound=analysis_compute.best_layer_bound(runs)), width="stretch")

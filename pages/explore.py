"""Explore: one load, one topology, one policy; per-GPU load before and after the rebalance."""

import streamlit as st

from ui import compute, figures, state
from ui.explore import ab, downloads, layer, maps, modes

figures = compute.CachedFigures(figures)  # an unchanged rerun draws the figures it built before

st.title("EPLB Explorer")
st.caption("Expert-parallelism load balancing: where each expert's copies go, and what that does to every GPU's load.")

shown = state.page_inputs()
topology = shown.topology

before = compute.baseline(shown.digest, topology, shown.mode)
after = compute.placement(shown.digest, topology, shown.mode, shown.policy)
modes.result_cards(shown, before, after)

modes_box = st.container(key="explore_modes")  # filled last: see the end of the page
modes_box.subheader("Hierarchical or global: balance against network traffic")

with st.container(key="explore_gpu_loads"):
    st.subheader("Per-GPU load, before and after")
    maps.gpu_load_maps(shown, before, after)

st.subheader("The load: tokens per expert")
st.plotly_chart(figures.load_heatmap(shown.weight), width="stretch")

st.subheader("One layer up close")
layer.layer_view(shown, before, after)  # moving its slider reruns that section only

st.subheader("Balancedness per layer")
st.plotly_chart(figures.balancedness_lines(
    {"before": before.report.layer_balancedness, "after": after.report.layer_balancedness},
    bound=compute.layer_bound_balancedness(after.report),
), width="stretch")

st.subheader("Copies per expert")
st.plotly_chart(figures.replica_heatmap(after.logcnt), width="stretch")

topology_b_box = st.container(key="explore_topology_b")  # filled last
topology_b_box.subheader("What if: topology B beside this one")

st.subheader("Downloads")
st.caption("The placement for each engine. SGLang's and TensorRT-LLM's files index decoder layers, dense layers "
           "included, so they need the data's model (a sample's or a preset's; for an upload, the sidebar asks).")
downloads.download_buttons(shown, before, after)

# The other mode and topology B each rebalance once more after a topology change: drawn last, into their places
# above, so that everything about A is on screen before them (the browser shows each element as it is sent).
with modes_box:
    modes.mode_comparison(shown, after)
with topology_b_box:
    ab.topology_b_view(shown)

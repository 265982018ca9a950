"""Explore: one load, one topology, one policy; per-GPU load before and after the rebalance."""

import streamlit as st

from ui import compute, figures, state
from ui.explore import ab, downloads, maps, modes
from ui.learn.page import teach_this_layer

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
worst_layer = int(before.report.layer_balancedness.nan_to_num(2.0).argmin())
layer = st.slider("Layer", 0, shown.num_layers - 1, worst_layer, key=f"explore_layer_{shown.digest}",
                  help="Starts on the layer the initial map balances worst.") if shown.num_layers > 1 else 0
teach_this_layer(shown, layer)  # opens Learn on this layer, reduced to a lesson when too big
left, right = st.columns(2)
left.plotly_chart(figures.gpu_load_bars(
    {"before": before.report.gpu_loads[layer], "after": after.report.gpu_loads[layer]},
    title=f"Layer {layer}: tokens per GPU",
), width="stretch")
right.plotly_chart(figures.placement_heatmap(
    after.phy2log[layer], after.slot_loads[layer], topology.num_gpus,
    title=f"Layer {layer}: expert in each slot, colored by the load of that copy",
), width="stretch")

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

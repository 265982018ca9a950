"""Explore's per-GPU load maps: before and after, coloured by load / layer mean or tokens, per GPU or per node.

    maps.gpu_load_maps(shown, before, after)
"""

from __future__ import annotations

import streamlit as st

from ui import compute, figures
from ui.state import Inputs

figures = compute.CachedFigures(figures)  # a rerun on the same placements draws the maps built before


@st.fragment  # the colour and view switches rerun the maps only
def gpu_load_maps(shown: Inputs, before, after) -> None:
    """The colour and view switches, the two heatmaps (node lines, GPU hover listing experts), and their caption."""
    left, right = st.columns(2)
    scale = left.segmented_control(
        "Color", ["relative", "tokens"], default="relative", key="explore_scale",
        format_func={"relative": "load / layer mean", "tokens": "tokens, one scale"}.get,
        help="load / layer mean: white is an even share, red a GPU the others wait for (shows what is left after the "
             "rebalance). tokens: both maps on one token scale.") or "relative"
    view = right.segmented_control("View", ["GPU", "node"], default="GPU", key="explore_view",
                                   format_func={"GPU": "per GPU", "node": "per node"}.get) or "GPU"
    t = shown.topology
    titles = {"before": "Before: vLLM's initial map", "after": f"After: {after.policy} ({after.mode})"}
    placements = {"before": before, "after": after}
    loads = {titles[k]: p.report.gpu_loads if view == "GPU" else p.report.node_loads for k, p in placements.items()}
    experts = None if view == "node" else {titles[k]: (p.phy2log, p.slot_loads) for k, p in placements.items()}
    st.plotly_chart(figures.gpu_load_heatmaps(loads, relative=scale == "relative", nodes=t.num_nodes, unit=view,
                                              placements=experts), width="stretch")
    st.caption(f"Dotted lines: node boundaries ({t.num_nodes} nodes x {t.gpus_per_node} GPUs). "
               "Hover a cell for the experts on that GPU and its load against the layer's mean.")

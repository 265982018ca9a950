"""Explore's one layer up close: the layer slider, Learn's "Teach this layer", the layer's per-GPU bars and slots.

    layer.layer_view(shown, before, after)

A fragment: moving the slider reruns this section only, not the page (the sidebar, the cards,
the maps, topology B and the downloads do not depend on the layer).
"""

from __future__ import annotations

import streamlit as st

from ui import compute, figures
from ui.learn.page import teach_this_layer
from ui.state import Inputs

figures = compute.CachedFigures(figures)  # a layer seen before draws the figures built then


@st.fragment
def layer_view(shown: Inputs, before, after) -> None:
    """The slider (starting on the layer the initial map balances worst), the button that opens Learn on it, and
    that layer's tokens per GPU before and after beside its slots coloured by each copy's load."""
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
        after.phy2log[layer], after.slot_loads[layer], shown.topology.num_gpus,
        title=f"Layer {layer}: expert in each slot, colored by the load of that copy",
    ), width="stretch")

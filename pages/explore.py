"""Explore: one load, one topology, one policy; per-GPU load before and after the rebalance."""

import streamlit as st
from eplb.formats import PLACEMENT_FORMATS, placement_problem, write_placement
from eplb.presets import PRESETS

from ui import compute, data, figures, state, text
from ui.learn.page import teach_this_layer

figures = compute.CachedFigures(figures)  # an unchanged rerun draws the figures it built before

st.title("EPLB Explorer")
st.caption("Expert-parallelism load balancing: where each expert's copies go, and what that does to every GPU's load.")

shown = state.page_inputs()

before = compute.baseline(shown.digest, shown.topology, shown.mode)
after = compute.placement(shown.digest, shown.topology, shown.mode, shown.policy)
ratio = figures.format_ratio

# Metric cards
cards = [*st.columns(3), *st.columns(3)]
cards[0].metric("Balancedness before (vLLM)", ratio(before.report.balancedness),
                help="vLLM's definition: sum over layers of mean GPU load / sum of max GPU load. "
                     "Before = vLLM's initial map, slot i holds expert i % experts.")
cards[1].metric("Balancedness after (vLLM)", ratio(after.report.balancedness),
                delta=None if after.report.balancedness is None
                else f"{after.report.balancedness - before.report.balancedness:+.3f}")
cards[2].metric("Bound's balancedness", ratio(after.report.bound_balancedness),
                help="The best balancedness any placement on this topology could reach (a proven bound).")
cards[3].metric("Max / mean after", ratio(after.report.straggler_factor, 2),
                delta=None if after.report.straggler_factor is None
                else f"{after.report.straggler_factor - before.report.straggler_factor:+.2f}", delta_color="inverse",
                help="How much longer the busiest GPU works than the average one (1 / balancedness).")
cards[4].metric("Rebalance runtime", f"{after.runtime_ms:.1f} ms",
                help=f"policy {after.policy}, {after.mode} mode, on this server's CPU")
cards[5].metric("GPUs holding duplicate copies", f"{after.report.duplicate_gpus} of {after.report.gpu_loads.numel()}",
                help="(layer, GPU) pairs where one GPU holds two or more copies of one expert: wasted slots.")

st.subheader("Per-GPU load, before and after")
st.caption("One color scale for both maps: equal colors mean equal load; a bright cell is a GPU the others wait for.")
st.plotly_chart(figures.gpu_load_heatmaps({
    "Before: vLLM's initial map": before.report.gpu_loads,
    f"After: {after.policy} ({after.mode})": after.report.gpu_loads,
}), width="stretch")

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
    after.phy2log[layer], after.slot_loads[layer], shown.topology.num_gpus,
    title=f"Layer {layer}: expert in each slot, colored by the load of that copy",
), width="stretch")

st.subheader("Balancedness per layer")
st.plotly_chart(figures.balancedness_lines(
    {"before": before.report.layer_balancedness, "after": after.report.layer_balancedness},
    bound=compute.layer_bound_balancedness(after.report),
), width="stretch")

st.subheader("Copies per expert")
st.plotly_chart(figures.replica_heatmap(after.logcnt), width="stretch")

st.subheader("Downloads")
st.caption("The placement for each engine. SGLang's and TensorRT-LLM's files index decoder layers, dense layers "
           "included, so they need the data's model (a sample's or a preset's; for an upload, the sidebar asks).")
buttons = st.container(horizontal=True)
model = PRESETS.get(shown.model)
unavailable: dict[str, list[str]] = {}  # why -> the formats it turns off
for fmt, writer in PLACEMENT_FORMATS.items():
    problem = "it needs the data's model: choose it under the uploader in the sidebar" \
        if model is None and writer.layers != "any" else \
        placement_problem(fmt, after.phy2log, shown.topology, mode=shown.mode, model=model)
    buttons.download_button(
        writer.label,
        lambda fmt=fmt: write_placement(fmt, after.phy2log, shown.topology, mode=shown.mode, policy=shown.policy,
                                        model=model),
        file_name=f"placement-{fmt}{writer.extension}", mime=writer.mime, on_click="ignore", key=f"download_{fmt}",
        disabled=problem is not None,
    )
    if problem:
        unavailable.setdefault(problem, []).append(writer.label)
buttons.download_button(
    "Per-GPU loads (CSV)",
    lambda: data.gpu_loads_csv({"before": before.report.gpu_loads, "after": after.report.gpu_loads}),
    file_name="gpu-loads.csv", mime="text/csv", on_click="ignore", key="download_gpu_loads",
)
for problem, labels in unavailable.items():
    st.caption(text.escape(f"Off: {'; '.join(labels)}. Why: {problem}.", 800))

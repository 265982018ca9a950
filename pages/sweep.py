"""What-if sweep: one topology axis varied, every policy at each point, balancedness and memory against it."""

import streamlit as st

from eplb.analysis import GPU_HOLDS, SWEEP_AXES, sweep_values
from ui import analysis_compute, analysis_controls, analysis_figures, state

st.title("What-if sweep")
st.caption("How many redundant slots are worth their memory? Vary one part of the sidebar's topology, keep the "
           "rest, and run every policy at each point.")

shown = state.page_inputs()
base, num_experts = shown.topology, shown.num_experts

axis = st.segmented_control("Vary", list(SWEEP_AXES), format_func=SWEEP_AXES.get, default="redundant",
                            key="sweep_axis") or "redundant"  # the whole width: its four options fit at 1024 px
hold = "redundant"
if axis == "gpus":
    hold = st.segmented_control(
        "Keep fixed", list(GPU_HOLDS), format_func=GPU_HOLDS.get, default="slots_per_gpu", key="sweep_hold",
        help="What stays as the GPU count changes: the redundant slot count (only GPU counts that divide the "
             "slots), each GPU's slots, or each GPU's redundant slots.") or "slots_per_gpu"
left, right = st.columns([2, 1])
if axis == "redundant":
    top_col, step_col = left.columns(2)
    most = max(0, state.max_redundant(shown.num_layers, num_experts))  # what the server can hold
    top = int(top_col.number_input("Up to (redundant slots)", min_value=0, max_value=most, step=base.num_gpus,
                                   value=min(4 * base.num_gpus, most), key=f"sweep_top_{base.num_gpus}",
                                   help=f"Up to {most} here: {state.LIMITS_WHY['redundant']}."))
    step = int(step_col.number_input("In steps of", min_value=1, step=1, value=base.num_gpus,
                                     key=f"sweep_step_{base.num_gpus}"))
    values = sweep_values(axis, num_experts, base, max_redundant=top, step=step)
    skipped = sorted(set(range(0, top + 1, step)) - set(values))
    if skipped:
        left.caption(f"Skipping {', '.join(map(str, skipped))}: every GPU needs the same number of slots, so "
                     f"experts + redundant must be a multiple of the {base.num_gpus} GPUs.")
else:
    choices = sweep_values(axis, num_experts, base, hold=hold)
    picked = [v for v in choices if axis != "gpus" or (v // base.num_nodes) & (v // base.num_nodes - 1) == 0]
    values = left.multiselect(f"Values of {SWEEP_AXES[axis]}", choices, default=picked,
                              key=f"sweep_values_{axis}_{hold}_{'-'.join(map(str, choices))}",
                              help="Every value that keeps the rest of the topology valid.")
with right:
    expert_bytes = analysis_controls.expert_bytes_input(shown.num_layers, num_experts, key="sweep")

if not values:
    st.info("Pick at least one value to sweep.")
    st.stop()

bar = st.progress(0.0, text="Sweeping...")
points = analysis_compute.sweep(
    shown.digest, axis, sorted(values), base, shown.mode, expert_bytes, hold=hold,
    progress=lambda done, total: bar.progress(done / total, text=f"Sweeping: {done} of {total} points"),
)
bar.empty()

invalid = {p.value: p.error for p in points if p.error}
for value, error in invalid.items():
    st.warning(f"{SWEEP_AXES[axis]} = {value} is not a valid topology here: {error}")

st.subheader(f"Balancedness against {SWEEP_AXES[axis]}")
if all(p.run is None or p.run.report.balancedness is None for p in points):
    st.info("No balancedness to plot: this load has no tokens (\"no load\") or no point is a valid topology.")
else:
    st.plotly_chart(analysis_figures.sweep_balancedness(points), width="stretch")
    st.caption(analysis_figures.sweep_caption(axis, hold, base, num_experts, shown.mode))

st.subheader("Memory the redundant copies take")
if expert_bytes:
    st.plotly_chart(analysis_figures.sweep_memory(points), width="stretch")
    st.caption(f"Redundant slots x {shown.num_layers} MoE layers x {analysis_figures.format_bytes(expert_bytes)} "
               "per expert, spread over the GPUs.")
else:
    st.info("Enter one expert's size above to price the redundant copies in bytes.")

st.subheader("Every point")
st.dataframe(analysis_figures.sweep_table(points, priced=expert_bytes > 0), hide_index=True)

"""Explore's A/B view: the sidebar's topology (A) beside another one (B) on the same load.

    ab.topology_b_view(shown)

B's sliders offer only values that fit (``ui.topology.choices``); B starts at twice
A's nodes with A's slots per GPU nearest above (the "64 GPUs instead of 32" what-if).
The comparison itself is ``eplb.whatif.compare_topologies``, cached here by digest (A's run
is the sidebar's cached placement).
"""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

import eplb
from eplb.analysis import Run
from eplb.presets import PRESETS
from eplb.whatif import Difference, TopologyComparison, compare_topologies
from ui import compute, figures
from ui import topology as sliders
from ui.analysis_figures import format_bytes
from ui.compute import lookup
from ui.state import Inputs


figures = compute.CachedFigures(figures)  # an unchanged rerun draws B's maps built before


@compute.cached
def comparison(digest: str, a: eplb.Topology, b: eplb.Topology, policy: str, mode: str,
               model: str | None) -> TopologyComparison:
    """``eplb.whatif.compare_topologies`` on the registered load; raises its ValueError.

    A's run is the sidebar's placement (``compute.placement``, cached), so only B is rebalanced here.
    """
    shown = compute.placement(digest, a, mode, policy)
    run_a = Run(shown.policy, shown.mode, a, shown.phy2log, shown.report, shown.runtime_ms)
    return compare_topologies(lookup(digest), a, b, policy=policy, mode=mode, model=PRESETS.get(model or ""),
                              run_a=run_a)


def _value(d: Difference, value: float | None) -> str:
    if value is None:
        return "no load"
    if d.unit == "bytes":
        return format_bytes(value)
    if d.unit == "tokens":
        return f"{value:,.0f}"
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"


def _change(d: Difference) -> str:
    change = d.change
    if change is None:
        return ""
    if change == 0:
        return "same"
    sign = "+" if change > 0 else "-"
    text = f"{sign}{_value(d, abs(change))}"
    if d.better:
        text += " (better)" if (change > 0) == (d.better == "higher") else " (worse)"
    return text


def differences_table(result: TopologyComparison) -> pa.Table:
    """One row per figure: A, B, and B - A with whether that is better (an Arrow table: what ``st.table``
    sends, without pandas' 2 ms per rerun)."""
    return pa.Table.from_pylist([{"": d.label, "A": _value(d, d.a), "B": _value(d, d.b), "B - A": _change(d)}
                                 for d in result.differences])


def _b_controls(shown: Inputs) -> eplb.Topology:
    """B's sliders (nodes, GPUs per node, redundant slots); the groups are A's."""
    a, experts = shown.topology, shown.num_experts
    left, middle, right = st.columns(3)
    nodes = left.select_slider("B: nodes", sliders.choices("nodes", experts, a.num_gpus, 2 * a.num_nodes),
                               value=2 * a.num_nodes, key=f"ab_nodes_{a.num_nodes}")
    per_node = middle.select_slider("B: GPUs per node",
                                    sliders.choices("gpus_per_node", experts, a.num_gpus, a.gpus_per_node),
                                    value=a.gpus_per_node, key=f"ab_gpus_per_node_{a.gpus_per_node}")
    num_gpus = nodes * per_node
    start = sliders.next_fitting(experts, num_gpus, a.num_replicas - experts)  # A's count, or the next up
    redundant = right.select_slider("B: redundant slots", sliders.fitting_redundant(experts, num_gpus), value=start,
                                    key=f"ab_redundant_{num_gpus}",
                                    help=f"Counts that spread evenly over B's {num_gpus} GPUs.")
    return eplb.Topology(experts + redundant, a.num_groups, nodes, num_gpus)


@st.fragment  # B's sliders rerun this section only: A's results do not depend on B
def topology_b_view(shown: Inputs) -> None:
    """Draw B's controls, both after-maps (load / layer mean, node lines), and the table of differences."""
    a = shown.topology
    b = _b_controls(shown)
    try:
        result = comparison(shown.digest, a, b, shown.policy, shown.mode, shown.model)
    except ValueError as exc:
        st.warning(f"Topology B does not fit this data: {exc}")
        return
    st.caption(f"A: {a.num_nodes} nodes x {a.gpus_per_node} GPUs, {a.num_replicas} slots, {result.a.run.mode} mode. "
               f"B: {b.num_nodes} nodes x {b.gpus_per_node} GPUs, {b.num_replicas} slots, {result.b.run.mode} mode. "
               f"Both: policy {shown.policy}, {a.num_groups} expert groups, the sidebar's data.")
    st.plotly_chart(figures.gpu_load_heatmaps({
        f"A: {a.num_gpus} GPUs": result.a.run.report.gpu_loads,
        f"B: {b.num_gpus} GPUs": result.b.run.report.gpu_loads,
    }, nodes=(a.num_nodes, b.num_nodes), relative=True), width="stretch", key="ab_heatmaps")
    st.table(differences_table(result), hide_index=True, border="horizontal")
    if result.a.traffic is None:
        st.caption("The network and memory rows need the data's model (a sample's, a preset's, or the one "
                   "chosen under the uploader).")

"""Figures and tables for the analysis pages (compare, sweep, replay). No Streamlit here.

Builders take ``eplb.analysis`` / ``eplb.replay`` results and return a ``go.Figure``
or a ``pandas.DataFrame`` of display strings; the generic builders of
``ui.figures`` (heatmaps on one color scale, per-layer lines, lines over an
axis) are reused wherever they fit. Metrics that do not exist because there was
no load read "no load", never 0 or NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from eplb.analysis import SWEEP_AXES, NextWindow, Run, SweepPoint
from eplb.replay import Rebalance, ReplayResult, TradeoffPoint
from ui import figures

BOUND = "bound (best possible)"

# Run.metrics() key -> (column title, digits); ratios print "no load" when there is none.
METRIC_COLUMNS = {
    "balancedness": ("Balancedness (vLLM)", 3),
    "utilization_rate": ("Utilization (SGLang)", 3),
    "straggler_factor": ("Max / mean", 2),
    "bound_balancedness": ("Bound", 3),
    "gap_to_bound": ("Gap to bound", 3),
    "node_balancedness": ("Node balance", 3),
}


def format_bytes(count: float | None) -> str:
    """Bytes in binary units to three significant digits: "0 B", "42.0 MiB", "1.31 GiB", "790 GiB" (short
    enough for a metric card on a 1024 px screen); None reads "unknown"."""
    if count is None:
        return "unknown"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(count) >= size:
            value = count / size
            return f"{value:.{0 if abs(value) >= 99.95 else 1 if abs(value) >= 9.995 else 2}f} {unit}"
    return f"{count:.0f} B"


def metric_cells(run: Run) -> dict[str, str]:
    """One run's figures as display strings, keyed by column title."""
    values = run.metrics()
    cells = {title: figures.format_ratio(values[key], digits) for key, (title, digits) in METRIC_COLUMNS.items()}
    cells["Duplicate GPUs"] = str(values["duplicate_gpus"])
    cells["Runtime (ms)"] = f"{values['runtime_ms']:.1f}"
    return cells


NEXT_WINDOW = "Next window (vLLM)"


def compare_table(runs: Iterable[Run], next_windows: Iterable[NextWindow] = ()) -> pd.DataFrame:
    """One row per run (policy, mode, then every metric as text).

    next_windows: ``eplb.analysis.next_window_balancedness`` of a trace; when given, a
    next-window column follows the (in-sample) balancedness.
    """
    later = {(n.policy, n.mode): n.next_window for n in next_windows}
    rows = []
    for run in runs:
        cells = metric_cells(run)
        if later:
            at = list(cells).index(METRIC_COLUMNS["balancedness"][0]) + 1
            items = list(cells.items())
            items.insert(at, (NEXT_WINDOW, figures.format_ratio(later.get((run.policy, run.mode)))))
            cells = dict(items)
        rows.append({"Policy": run.policy, "Mode": run.mode, **cells})
    return pd.DataFrame(rows)


def policy_heatmaps(runs: Sequence[Run], *, columns: int = 3) -> go.Figure:
    """Per-GPU load [layers, GPUs] of every run on ONE color scale (``figures.gpu_load_heatmaps``), titled by run."""
    return figures.gpu_load_heatmaps({run.label: run.report.gpu_loads for run in runs}, columns=columns)


def _values(points: Sequence[SweepPoint]) -> list[int]:
    return list(dict.fromkeys(p.value for p in points))


def sweep_table(points: Sequence[SweepPoint], *, priced: bool = True) -> pd.DataFrame:
    """One row per (axis value, policy): the metrics, or the reason the point is not a valid topology.

    priced: whether the points carry the copies' memory (an expert size was known); if not, no memory column.
    """
    rows = []
    for p in points:
        row = {SWEEP_AXES[p.axis]: p.value, "Policy": p.policy}
        if priced:
            row["Redundant copies (all GPUs)"] = format_bytes(p.redundant_bytes)
        if p.run is None:
            row.update({"Mode": "", "Not valid": p.error})
        else:
            row.update({"Mode": p.run.mode, **metric_cells(p.run)})
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_balancedness(points: Sequence[SweepPoint], *, title: str = "") -> go.Figure:
    """Balancedness (vLLM) against the swept axis, one line per policy and mode, each mode's bound dotted.

    A line never joins points of two modes: where the mode flips (a nodes or groups
    sweep under "auto"), one line ends and the other mode's begins. An invalid point or
    one without load is a gap. The bound is the same for every policy at a point (it
    depends on the topology and mode only).
    """
    axis = points[0].axis
    values = _values(points)
    at = {(p.value, p.policy): p.run for p in points}
    policies = list(dict.fromkeys(p.policy for p in points))
    modes = [m for m in ("hierarchical", "global") if any(p.run and p.run.mode == m for p in points)]
    series, dotted = {}, []
    for mode in modes:
        for name in policies:
            series[f"{name} ({mode})"] = [at[v, name].report.balancedness if at[v, name] and at[v, name].mode == mode
                                          else None for v in values]
    for mode in modes:
        bound = []
        for v in values:
            run = next((at[v, name] for name in policies if at[v, name] is not None and at[v, name].mode == mode),
                       None)
            bound.append(run.report.bound_balancedness if run else None)
        series[f"{BOUND}, {mode}"] = bound
        dotted.append(f"{BOUND}, {mode}")
    fig = figures.metric_lines(values, series, xlabel=SWEEP_AXES[axis], ylabel="balancedness (mean / max)",
                               title=title, dotted=dotted)
    fig.update_traces(connectgaps=False)
    for trace in fig.data:  # a policy keeps its colour in both modes; global mode's lines are dashed
        mode = trace.name.rsplit(", ", 1)[-1] if trace.name.startswith(BOUND) else trace.name[:-1].rsplit(" (", 1)[-1]
        if trace.name.startswith(BOUND):
            trace.line.update(color="gray" if mode == "hierarchical" else "black", dash="dot")
        else:
            policy = trace.name.rsplit(" (", 1)[0]
            trace.line.update(color=figures.PALETTE[policies.index(policy) % len(figures.PALETTE)],
                              dash="solid" if mode == "hierarchical" else "dash")
    fig.update_yaxes(range=[0, 1.05])
    if axis != "redundant":  # divisors: evenly spaced categories read better than a linear axis
        fig.update_xaxes(type="category")
    return fig


def sweep_caption(axis: str, hold: str, base, num_experts: int, mode: str) -> str:
    """What the sweep varies, what it keeps fixed, and how the lines split by mode."""
    t, redundant = base, base.num_replicas - num_experts
    kept = {
        "redundant": f"{t.num_nodes} nodes x {t.gpus_per_node} GPUs, {t.num_groups} expert groups",
        "gpus": {"redundant": f"{redundant} redundant slots",
                 "slots_per_gpu": f"{t.slots_per_gpu} slots per GPU (slots = GPUs x {t.slots_per_gpu})",
                 "redundant_per_gpu": f"{redundant / t.num_gpus:g} redundant slots per GPU (the nearest even count)",
                 }[hold] + f", {t.num_nodes} nodes, {t.num_groups} expert groups",
        "nodes": f"{t.num_gpus} GPUs, {t.num_replicas} slots, {t.num_groups} expert groups",
        "groups": f"{t.num_nodes} nodes x {t.gpus_per_node} GPUs, {t.num_replicas} slots",
    }[axis]
    split = " Under auto the mode can change along the axis (hierarchical needs the groups to divide over the " \
            "nodes): each mode has its own lines, never joined across a change." if mode == "auto" else ""
    return f"Varies {SWEEP_AXES[axis]}; keeps {kept}.{split} Dotted: the best balancedness any placement could reach."


def sweep_memory(points: Sequence[SweepPoint], *, title: str = "") -> go.Figure:
    """Memory the redundant copies take at each point: per GPU (bars), whole deployment in the hover."""
    axis = points[0].axis
    first = {}
    for p in points:
        first.setdefault(p.value, p)
    values = list(first)
    total = np.array([first[v].redundant_bytes for v in values], dtype=float)
    per_gpu = total / np.array([first[v].topology.num_gpus for v in values], dtype=float)
    fig = go.Figure(go.Bar(
        x=[str(v) for v in values], y=per_gpu / 2**30, text=[format_bytes(b) for b in per_gpu],
        customdata=[format_bytes(b) for b in total],
        hovertemplate=f"{SWEEP_AXES[axis]} %{{x}}<br>per GPU %{{text}}<br>all GPUs %{{customdata}}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=SWEEP_AXES[axis], yaxis_title="GiB per GPU", height=320,
                      xaxis_type="category", margin=dict(t=50, b=40, l=50, r=20))
    return fig


def replay_timeline(result: ReplayResult, *, title: str = "") -> go.Figure:
    """Balancedness of every step with and without rebalancing; dashed lines at the rebalances.

    Steps without load are shaded and marked "no load" (``figures.balancedness_lines``).
    """
    fig = figures.balancedness_lines(
        {"without rebalancing (vLLM's initial map)": result.balancedness_static,
         "with rebalancing": result.balancedness_rebalanced},
        title=title, ylabel="balancedness of the step (mean / max)", xlabel="step",
    )
    for rebalance in result.rebalances:
        fig.add_vline(x=rebalance.step - 0.5, line_dash="dash", line_color="gray", line_width=1)
    return fig


def migration_bars(rebalances: Sequence[Rebalance], *, title: str = "") -> go.Figure:
    """Expert copies sent between GPUs at each rebalance, labelled with the bytes they weigh."""
    fig = go.Figure(go.Bar(
        x=[r.step for r in rebalances], y=[r.copies_sent for r in rebalances],
        text=[format_bytes(r.bytes_moved) for r in rebalances],
        customdata=[[r.slots_changed] for r in rebalances],
        hovertemplate="rebalance at step %{x}<br>%{y} copies sent (%{text})<br>%{customdata[0]} slots changed"
                      "<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="rebalance at step", yaxis_title="expert copies sent", height=320,
                      xaxis_type="category", margin=dict(t=50, b=40, l=50, r=20))
    return fig


def rebalance_table(rebalances: Sequence[Rebalance]) -> pd.DataFrame:
    """One row per rebalance: when, how balanced the outgoing and incoming placements are, what moving cost.

    Short headers (the page's caption says what each balancedness is measured on).
    """
    return pd.DataFrame([{
        "Step": r.step,
        "Before (window)": figures.format_ratio(r.balancedness_before),
        "After (window)": figures.format_ratio(r.balancedness_after),
        "After (next steps)": figures.format_ratio(r.balancedness_next),
        "Copies sent": r.copies_sent,
        "Slots changed": r.slots_changed,
        "Bytes moved": format_bytes(r.bytes_moved),
    } for r in rebalances])


def tradeoff_curve(points: Sequence[TradeoffPoint], *, chosen: str | None = None, title: str = "") -> go.Figure:
    """Mean balancedness per step against expert copies sent per rebalance, one marker per knob setting.

    The line joins the settings in knob order (fresh plan to the largest tolerance); the
    chosen setting is ringed. Settings without a rebalance are left out.
    """
    shown = [p for p in points if p.result.rebalances and p.result.mean_rebalanced is not None]
    fig = go.Figure(go.Scatter(
        x=[p.result.copies_per_rebalance for p in shown], y=[p.result.mean_rebalanced for p in shown],
        mode="lines+markers+text", text=[p.label for p in shown],
        textposition=["top center" if i % 2 else "bottom center" for i in range(len(shown))],  # apart when close
        customdata=[[figures.format_ratio(p.result.mean_next_window)] for p in shown],
        hovertemplate="%{text}<br>%{x:,.0f} copies sent per rebalance<br>mean balancedness per step %{y:.3f}"
                      "<br>on the steps each plan serves, summed: %{customdata[0]}<extra></extra>",
        marker=dict(size=[14 if p.label == chosen else 8 for p in shown],
                    line=dict(width=[2 if p.label == chosen else 0 for p in shown], color="black")),
    ))
    fig.update_layout(title=title, xaxis_title="expert copies sent per rebalance",
                      yaxis_title="mean balancedness per step", height=360, showlegend=False,
                      margin=dict(t=50, b=40, l=50, r=60))
    if shown:  # room for the labels at both ends
        fig.update_xaxes(range=[0, 1.12 * max(p.result.copies_per_rebalance for p in shown)])
        low, high = (f(p.result.mean_rebalanced for p in shown) for f in (min, max))
        pad = max(high - low, 1e-3) * 0.25
        fig.update_yaxes(range=[low - pad, high + pad])
    return fig

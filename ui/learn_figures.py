"""The Learn page's steps as data: a caption, Plotly figures and an optional table per step. No Streamlit here.

``lesson(walks, main)`` turns ``eplb.explain`` walkthroughs of one layer (one per
policy) into the list of steps the page shows one at a time::

    walks = {name: explain.walkthrough(weight, topology, layer, name) for name in eplb.POLICIES}
    for step in lesson(walks, "deepseek"):
        step.title, step.caption, step.figures, step.table

Colors follow the expert groups throughout, so a group can be followed from step to step.
The placement heatmap and the per-GPU bars come from ``ui.figures``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

import eplb
from eplb import explain
from eplb.explain import Packing, Walkthrough
from ui import figures

PALETTE = qualitative.Plotly
LAYOUT = dict(margin=dict(t=60, b=40, l=50, r=20), legend=dict(orientation="h", y=1.02, yanchor="bottom"))


@dataclass(frozen=True)
class LessonStep:
    """One screen of the lesson: title, plain-language caption (Markdown), figures, optional table rows."""

    title: str
    caption: str
    figures: tuple[go.Figure, ...]
    table: list[dict] | None = None


def group_color(walk: Walkthrough, expert: int) -> str:
    """Color of an expert's group (in global mode, of the case's groups all the same)."""
    return PALETTE[(expert // (walk.weight.numel() // walk.topology.num_groups)) % len(PALETTE)]


def expert_loads(walk: Walkthrough) -> go.Figure:
    """The case: load per expert, colored by expert group, with the even share per slot drawn."""
    load = walk.weight.double().numpy()
    experts = np.arange(load.size)
    group_size = load.size // walk.topology.num_groups
    fig = go.Figure(go.Bar(
        x=experts, y=load, marker_color=[group_color(walk, e) for e in experts],
        customdata=experts // group_size, text=[explain.tokens(v) for v in load], textposition="outside",
        hovertemplate="expert %{x} (group %{customdata})<br>%{y:,.1f} tokens<extra></extra>",
    ))
    per_slot = load.sum() / walk.topology.num_replicas
    fig.add_hline(y=per_slot, line_dash="dot", line_color="gray", annotation_text=f"load per slot if even: "
                  f"{explain.tokens(per_slot)}", annotation_position="top left")
    fig.update_layout(title=f"Layer {walk.layer}: tokens per expert, colored by group", xaxis_title="expert",
                      yaxis_title="tokens", xaxis_dtick=1, height=360, showlegend=False, **LAYOUT)
    return fig


def packing_bars(packings: list[tuple[Packing, list[str], list[str], int]], *, bin_title: str, title: str,
                 even_share: float) -> go.Figure:
    """Items stacked on their bins in the order they were placed (first at the bottom).

    packings: (packing, item labels [n], item colors [n], first bin id) per independent packing
    (one per node in step 3). Segments print the label and the placement rank; hover adds the
    bin's load just before the item went in. even_share: the per-bin load if perfectly even.
    """
    fig = go.Figure()
    for packing, labels, colors, first_bin in packings:
        for rank, item in enumerate(packing.order.tolist()):
            target = first_bin + int(packing.pack[item])
            load_before = float(packing.bin_load_before[rank, int(packing.pack[item])])
            fig.add_trace(go.Bar(
                x=[target], y=[float(packing.load[item])], marker_color=colors[item],
                marker_line=dict(color="white", width=1), text=[f"{labels[item]} · #{rank + 1}"],
                textposition="inside", insidetextanchor="middle", showlegend=False,
                hovertemplate=(f"{labels[item]}: %{{y:,.1f}} tokens<br>placed #{rank + 1}, onto {bin_title} "
                               f"{target} when it held {explain.tokens(load_before)}<extra></extra>"),
            ))
    fig.add_hline(y=even_share, line_dash="dash", line_color="black",
                  annotation_text=f"even share {explain.tokens(even_share)}", annotation_position="top left",
                  annotation_bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(title=title, barmode="stack", xaxis_title=bin_title, yaxis_title="tokens",
                      xaxis_dtick=1, height=400, **LAYOUT)
    return fig


def group_packing(walk: Walkthrough) -> go.Figure:
    """Step 1: each group's load stacked on the node it was packed onto."""
    groups, size = walk.groups, walk.group_size
    labels = [f"group {g} ({explain.expert_span(g * size, size)})" for g in range(groups.load.numel())]
    colors = [group_color(walk, g * size) for g in range(groups.load.numel())]
    return packing_bars([(groups, labels, colors, 0)], bin_title="node",
                        title=f"Layer {walk.layer}: groups packed onto nodes, #1 placed first",
                        even_share=float(groups.load.sum()) / groups.num_bins)


def replication(walk: Walkthrough) -> go.Figure:
    """Step 2: every expert's load split into its copies; an extra copy is labelled with the choice that added it."""
    fig = go.Figure()
    for n, node in enumerate(walk.nodes):
        names = [f"e{int(e)}" for e in node.experts]
        added = [] if node.added is None else node.added.tolist()
        for copy in range(int(node.logcnt.max())):
            has = (node.logcnt > copy).nonzero().flatten().tolist()
            # Choice that added copy number `copy` of expert i: its copy-th appearance in `added`.
            text = ["" if copy == 0 else next(
                (f"+{k + 1}" for k, c in enumerate(added) if c == i and added[: k + 1].count(i) == copy), "extra")
                for i in has]
            fig.add_trace(go.Bar(
                x=[names[i] for i in has], y=[float(node.per_copy[i]) for i in has], text=text,
                textposition="inside", insidetextanchor="middle", textfont=dict(color="black", size=14),
                marker_color=[group_color(walk, int(node.experts[i])) for i in has],
                marker_line=dict(color="white", width=1), marker_pattern_shape="" if copy == 0 else "/",
                name="first copy" if copy == 0 else "extra copy", legendgroup=str(copy > 0),
                showlegend=n == 0 and copy < 2,
                customdata=[[n, int(node.logcnt[i])] for i in has],
                hovertemplate="%{x} on node %{customdata[0]}: %{customdata[1]} copies of %{y:,.1f} tokens"
                              "<extra></extra>",
            ))
        width = node.load.numel()
        if len(walk.nodes) > 1:
            fig.add_annotation(x=n * width + (width - 1) / 2, y=1.0, yref="paper", text=f"node {n}",
                               showarrow=False, yanchor="bottom")
        if n:
            fig.add_vline(x=n * width - 0.5, line_color="gray", line_dash="dot")
    fig.update_layout(title=f"Layer {walk.layer}: each expert's load split over its copies "
                            "(+k: the k-th extra copy chosen on that node)",
                      barmode="stack", xaxis_title="expert, node by node", yaxis_title="tokens", height=400,
                      **LAYOUT)
    return fig


def gpu_packing(walk: Walkthrough) -> go.Figure:
    """Step 3: every copy stacked on the GPU it was packed onto, node by node."""
    panels = []
    for node in walk.nodes:
        experts = node.copies.tolist()
        panels.append((node.packing, [f"e{e}" for e in experts], [group_color(walk, e) for e in experts],
                       node.first_gpu))
    order = ("#k: the k-th copy placed on its node" if walk.sequential
             else "final layout, #k: the k-th heaviest copy on its node")
    fig = packing_bars(panels, bin_title="GPU", title=f"Layer {walk.layer}, {walk.policy}: copies on GPUs, {order}",
                       even_share=float(walk.gpu_load.mean()))
    for n in range(1, len(walk.nodes)):
        fig.add_vline(x=walk.nodes[n].first_gpu - 0.5, line_color="gray", line_dash="dot")
    return fig


def copies_by_policy(walks: Mapping[str, Walkthrough]) -> go.Figure:
    """Copies per expert under each policy, side by side."""
    fig = go.Figure()
    for name, walk in walks.items():
        counts = walk.logcnt.numpy()
        fig.add_trace(go.Bar(x=np.arange(counts.size), y=counts, name=name,
                             hovertemplate=f"{name}<br>expert %{{x}}: %{{y}} copies<extra></extra>"))
    fig.update_layout(title="Copies per expert", barmode="group", xaxis_title="expert", yaxis_title="copies",
                      xaxis_dtick=1, yaxis_dtick=1, height=360, **LAYOUT)
    return fig


def result(walk: Walkthrough) -> tuple[go.Figure, go.Figure]:
    """Step 4: the final placement, and per-GPU load before and after."""
    placement = figures.placement_heatmap(
        walk.phy2log, walk.slot_load, walk.topology.num_gpus,
        title=f"Layer {walk.layer} after {walk.policy}: expert in each slot, colored by its copy's load")
    bars = figures.gpu_load_bars({"before (slot i holds expert i mod E)": walk.gpu_load_before,
                                  f"after ({walk.policy})": walk.gpu_load}, title="Tokens per GPU")
    return placement, bars


def lesson(walks: Mapping[str, Walkthrough], main: str) -> list[LessonStep]:
    """The steps of the lesson: the case, ``main``'s four steps, then one step per other policy.

    A comparison step shows copies per expert and tokens per GPU of both policies, and the
    other policy's packing onto GPUs.
    """
    walk = walks[main]
    steps = [
        LessonStep("The case", explain.describe_case(walk), (expert_loads(walk),)),
        LessonStep("1 · Groups onto nodes", explain.describe_groups(walk), (group_packing(walk),),
                   explain.group_rows(walk) if walk.mode == "hierarchical" else None),
        LessonStep("2 · Extra copies inside each node", explain.describe_replication(walk), (replication(walk),),
                   explain.choice_rows(walk) or None),
        LessonStep("3 · Copies onto GPUs", explain.describe_packing(walk), (gpu_packing(walk),),
                   explain.copy_rows(walk) or None),
        LessonStep("4 · Result against the start", explain.describe_result(walk), result(walk)),
    ]
    for name, other in walks.items():
        if name == main:
            continue
        compared = {main: walk, name: other}
        default = " (the project's default)" if name == eplb.DEFAULT_POLICY else ""
        steps.append(LessonStep(
            f"{name}{default}: what it does differently", explain.describe_difference(other, walk),
            (copies_by_policy(compared),
             figures.gpu_load_bars({p: w.gpu_load for p, w in compared.items()},
                                   title=f"Tokens per GPU: {main} against {name}"),
             gpu_packing(other)),
        ))
    return steps

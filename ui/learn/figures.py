"""The lesson's pictures: data in, ``go.Figure`` out. No Streamlit here.

``gpu_picture(scene, topology)`` is the picture every step shows: each GPU a box of
slots holding coloured expert copies, the GPU's load as a bar beside it, and on the left
each node's waiting area for copies that are not on a GPU yet. A copy keeps its colour
(its group, or its expert when the case has one group) and its identity (``Tile.key``)
from step to step; given the previous step's scene, the picture carries it as a Plotly
frame and a "Replay this step" button moves the copies from where they were::

    walk = explain.walkthrough(case.tensor, case.topology, 0, "deepseek")
    gpu_picture(placed_scene(walk, walk.before, [before_bars(walk)]), walk.topology)

Text is at least 16 px, dark on a light background, for a projector; every chart has a
legend, and nothing is written over the marks. The builders write plain Plotly dicts and keep
them as they are (``PlainFigure``): Plotly's per-property validation costs more than the rest
of a step, and the tests validate every figure once. Draw them with
``st.plotly_chart(fig, theme=None)``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import plotly.graph_objects as go
import torch

from eplb import explain
from eplb.explain import Walkthrough
from eplb.rebalance import Topology

TEXT = "#111111"
FONT = dict(size=16, color=TEXT)
MUTED = "#555555"
PASTEL = ("#8DD3C7", "#FFFFB3", "#BEBADA", "#FB8072", "#80B1D3", "#FDB462", "#B3DE69", "#FCCDE5", "#D9D9D9",
          "#BC80BD", "#CCEBC5", "#FFED6F")
"""Copy colours (ColorBrewer Set3): light, so the expert names on them stay dark and legible."""
MAX_EXPERT_COLOURS = len(PASTEL)
"""A case with one group colours each expert apart up to this many experts (else all alike)."""

BEFORE, AFTER, OTHER, SHARE, BUSIEST = "#9E9E9E", "#4C78A8", "#F58518", "#C9C9C9", "#D62728"
"""Bar colours: the starting map, the walked policy, a compared policy, a node's even share, the busiest GPU."""

PICTURE_PX = 500
"""Width of the picture. Fixed, so that tiles, columns and legend entries never collide; beside a
300 px column of text it fills the main column at 1280 px, and alone it fits at 1024 px."""
MARGIN_LEFT, MARGIN_RIGHT = 64, 8  # room for "GPU 15"
ROW_PX = 34
"""Height of one GPU's row."""
TILE_PX = 30
"""Side of a copy's square at most: fits "e10" at 16 px with a gap to the next row."""
LEGEND_ROW_PX = 26
LEGEND_ENTRY_PX = 107
"""Width of one legend entry: four to a row across the picture; names are at most 8 characters."""
LEGEND_SYMBOL_PX = 46
"""The part of an entry Plotly gives the symbol and its gap (``entrywidth`` is the text's share)."""
SIDE_CHART_PX = 300
"""Width of the charts in the text column."""


@dataclass(frozen=True)
class Tile:
    """One copy of an expert in the picture.

    gpu: the GPU it is on or, when ``waiting``, the GPU row it waits beside; column: its
    slot on that GPU or its place in the waiting area; copy: 0 for an expert's first copy;
    load: the tokens it serves; framed: drawn with a black frame (what this step changed).
    """

    expert: int
    copy: int
    gpu: int
    column: int
    waiting: bool
    load: float
    framed: bool = False

    @property
    def key(self) -> str:
        """The copy's identity from step to step (Plotly ``ids``)."""
        return f"e{self.expert}.{self.copy}"


@dataclass(frozen=True)
class Bars:
    """One series of per-GPU loads beside the boxes: legend name, load [G], colour."""

    name: str
    load: tuple[float, ...]
    color: str


@dataclass(frozen=True)
class Scene:
    """What the picture shows at one step.

    tiles: every copy; bars: per-GPU load series (the last is the one that counts);
    frame_name: legend entry of the framed tiles; mark_busiest: colour the last series'
    busiest GPU red; token_to: experts one token is routed to, drawn as arrows (the opening).
    """

    tiles: tuple[Tile, ...]
    bars: tuple[Bars, ...]
    frame_name: str = ""
    mark_busiest: bool = True
    token_to: tuple[int, ...] = ()


# ---------------------------------------------------------------- scenes from a walkthrough


def placed_tiles(phy2log: torch.Tensor, weight: torch.Tensor, slots_per_gpu: int,
                 framed: torch.Tensor | None = None) -> tuple[Tile, ...]:
    """Copies in their slots: phy2log [P] expert per slot, weight [E] its load, framed [P] bool or None."""
    experts = phy2log.tolist()
    counts = Counter(experts)
    seen: Counter = Counter()
    tiles = []
    for slot, expert in enumerate(experts):
        tiles.append(Tile(expert, seen[expert], slot // slots_per_gpu, slot % slots_per_gpu, False,
                          float(weight[expert]) / counts[expert], bool(framed[slot]) if framed is not None else False))
        seen[expert] += 1
    return tuple(tiles)


def waiting_tiles(walk: Walkthrough, extras: bool) -> tuple[Tile, ...]:
    """Each node's copies in its waiting area: its experts (step 1), then (``extras``) the extra copies (step 2).

    Extra copies come in the order the policy added them when it adds them one by one,
    else expert by expert; they are framed, and every copy carries its share of its expert's load.
    """
    slots = walk.topology.slots_per_gpu
    tiles = []
    for node in walk.nodes:
        experts = node.experts.tolist()
        copies = list(experts)
        if extras and node.added is not None:
            copies += [experts[i] for i in node.added.tolist()]
        elif extras:
            copies += [e for e, count in zip(experts, node.logcnt.tolist()) for _ in range(count - 1)]
        counts = Counter(copies)
        seen: Counter = Counter()
        for place, expert in enumerate(copies):
            tiles.append(Tile(expert, seen[expert], node.first_gpu + place // slots, place % slots, True,
                              float(walk.weight[expert]) / counts[expert], framed=place >= len(experts)))
            seen[expert] += 1
    return tuple(tiles)


def before_bars(walk: Walkthrough) -> Bars:
    """Tokens per GPU on vLLM's starting map (slot i holds expert i mod E)."""
    return Bars("before", tuple(walk.gpu_load_before.tolist()), BEFORE)


def after_bars(walk: Walkthrough, name: str = "after", color: str = AFTER) -> Bars:
    """Tokens per GPU on the policy's placement."""
    return Bars(name, tuple(walk.gpu_load.tolist()), color)


def share_bars(walk: Walkthrough) -> Bars:
    """Each GPU's best possible load once step 1 has fixed its node's load: the node's load shared evenly."""
    t = walk.topology
    if walk.mode == "global":
        share = [float(walk.weight.sum()) / t.num_gpus] * t.num_gpus
    else:
        share = [float(walk.groups.bin_load[g // t.gpus_per_node]) / t.gpus_per_node for g in range(t.num_gpus)]
    return Bars("at best", tuple(share), SHARE)


def placed_scene(walk: Walkthrough, phy2log: torch.Tensor, bars: Sequence[Bars], *,
                 framed: torch.Tensor | None = None, frame_name: str = "", token_to: Sequence[int] = ()) -> Scene:
    """The copies in the slots of ``phy2log`` [P] (the starting map, or a policy's result)."""
    tiles = placed_tiles(phy2log, walk.weight, walk.topology.slots_per_gpu, framed)
    return Scene(tiles, tuple(bars), frame_name=frame_name if framed is not None and bool(framed.any()) else "",
                 token_to=tuple(token_to))


def waiting_scene(walk: Walkthrough, extras: bool) -> Scene:
    """Steps 1 and 2: every copy in its node's waiting area, the bars at the node's even share."""
    return Scene(waiting_tiles(walk, extras), (share_bars(walk),), frame_name="new copy" if extras else "",
                 mark_busiest=False)


# ---------------------------------------------------------------- colours, text and layout


def colour_key(topology: Topology, num_experts: int) -> tuple[list[int], list[str]]:
    """(key of each expert [E], legend name of each key): by group, or by expert when there is one group."""
    if topology.num_groups > 1:
        size = num_experts // topology.num_groups
        return [e // size for e in range(num_experts)], [f"group {g}" for g in range(topology.num_groups)]
    if num_experts <= MAX_EXPERT_COLOURS:
        return list(range(num_experts)), [f"e{e}" for e in range(num_experts)]
    return [0] * num_experts, ["copy"]


def legend_rows(count: int, width_px: int) -> int:
    """Rows a horizontal legend of ``count`` entries of ``LEGEND_ENTRY_PX`` takes across ``width_px``."""
    return math.ceil(count / max(1, width_px // LEGEND_ENTRY_PX))


def _axis(**options) -> dict:
    return {"tickfont": FONT, "showgrid": False, "zeroline": False, "fixedrange": True, "linecolor": MUTED, **options}


def _layout(*, width: int, height: int, top: int, bottom: int, **options) -> dict:
    """A fixed-size figure: dark 16 px text on white, the legend in rows of fixed-width entries above the plot."""
    return dict(
        font=dict(FONT, family="Source Sans Pro, sans-serif"), width=width, height=height,
        margin=dict(t=top, b=bottom, l=MARGIN_LEFT, r=MARGIN_RIGHT, autoexpand=False), paper_bgcolor="white",
        plot_bgcolor="white", hoverlabel=dict(font=dict(size=16)), showlegend=True,
        legend=dict(orientation="h", x=0, xanchor="left", y=1, yanchor="bottom", font=FONT, itemclick=False,
                    itemdoubleclick=False, entrywidth=LEGEND_ENTRY_PX - LEGEND_SYMBOL_PX, entrywidthmode="pixels",
                    itemwidth=30),
        **options,
    )


class PlainFigure(go.Figure):
    """A figure kept as the plain dict its builder wrote.

    Plotly's graph objects validate and copy every property when built, which costs more
    time and memory than the rest of a lesson (17 MB and seconds for a lesson at the
    limits). This figure holds the dict and hands it out from ``to_dict``, which is what
    ``st.plotly_chart`` and ``plotly.io.to_json`` read; its graph-object attributes
    (``fig.data``, ``fig.layout``) stay empty, so read it through ``to_dict()``.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self._spec = spec

    def to_dict(self) -> dict:
        """The figure as a dict; traces are copied one level deep (``plotly.io.to_json`` pops their uids)."""
        return {**self._spec, "data": [dict(trace) for trace in self._spec["data"]]}


def _figure(data: list[dict], layout: dict, frames: list[dict] | None = None) -> go.Figure:
    return PlainFigure(dict(data=data, layout=layout, **({"frames": frames} if frames else {})))


# ---------------------------------------------------------------- the picture


def gpu_picture(scene: Scene, topology: Topology, num_experts: int, *, previous: Scene | None = None) -> go.Figure:
    """GPUs as boxes of slots holding expert copies, each GPU's load as a bar beside it.

    Rows are GPUs, node by node under a "node n" line; each node's waiting area is on the
    left of its rows, the GPUs' slots in the middle, the bars on the right with their
    values in a column at the right edge (the busiest in red). With ``previous``, the
    figure holds two frames ("before" and "now") and a button that replays the copies'
    move between them.
    """
    slots, gpus, per_node = topology.slots_per_gpu, topology.num_gpus, topology.gpus_per_node
    row = [g + g // per_node + 1 for g in range(gpus)]  # one header row above each node's GPUs
    last_row = row[-1]
    keys, key_names = colour_key(topology, num_experts)
    left = (2 * slots + 1) / (2 * slots + 1 + 5)  # the tiles' share of the width; the bars get the rest
    plot_width = PICTURE_PX - MARGIN_LEFT - MARGIN_RIGHT
    tile = min(TILE_PX, int(plot_width * left / (2 * slots + 1.2)) - 4)

    def x_of(tile: Tile) -> int:
        return tile.column if tile.waiting else slots + 1 + tile.column

    def tile_traces(tiles: Sequence[Tile], frame_name: str) -> list[dict]:
        copies = Counter(t.expert for t in tiles)
        traces = []
        for key, name in enumerate(key_names):
            mine = [t for t in tiles if keys[t.expert] == key]
            traces.append(dict(
                type="scatter", x=[x_of(t) for t in mine], y=[row[t.gpu] for t in mine], ids=[t.key for t in mine],
                text=[f"e{t.expert}" for t in mine], mode="markers+text", name=name, textfont=FONT, cliponaxis=False,
                marker=dict(symbol="square", size=tile, color=PASTEL[key % len(PASTEL)],
                            line=dict(color=MUTED, width=1)),
                customdata=[[t.copy + 1, copies[t.expert], explain.tokens(t.load),
                             "waiting" if t.waiting else f"on GPU {t.gpu}, slot {t.column}"] for t in mine],
                hovertemplate="%{text}, copy %{customdata[0]} of %{customdata[1]}: %{customdata[2]} tokens"
                              "<br>%{customdata[3]}<extra></extra>",
            ))
        framed = [t for t in tiles if t.framed]
        traces.append(dict(
            type="scatter", x=[x_of(t) for t in framed], y=[row[t.gpu] for t in framed],
            ids=[t.key for t in framed], mode="markers", name=frame_name or "framed", hoverinfo="skip",
            showlegend=bool(frame_name and framed),
            marker=dict(symbol="square-open", size=tile + 8, color=TEXT, line=dict(width=3)),
        ))
        return traces

    data = tile_traces(scene.tiles, scene.frame_name)
    plot_px = (last_row + 1) * ROW_PX
    layout_extra: dict = {}
    frames = None
    if previous is not None:
        moving = list(range(len(data)))
        unframed = [replace(t, framed=False) for t in previous.tiles]  # frames mark what this step changed
        frames = [dict(name="before", data=tile_traces(unframed, scene.frame_name), traces=moving),
                  dict(name="now", data=data, traces=moving)]
        layout_extra["updatemenus"] = [dict(
            # in the empty header row above node 0, at the right end of the bars
            type="buttons", showactive=False, x=1, xanchor="right", y=1 - 0.6 / (last_row + 1.2), yanchor="middle",
            pad=dict(r=0, t=0, b=0, l=0), font=FONT, bgcolor="#F0F2F6", bordercolor=MUTED,
            buttons=[dict(label="▶ Replay", method="animate", args=[
                ["before", "now"],
                dict(mode="immediate", fromcurrent=False,
                     frame=[dict(duration=600, redraw=False), dict(duration=1400, redraw=False)],
                     transition=[dict(duration=0), dict(duration=1400, easing="cubic-in-out")]),
            ])],
        )]

    shapes, annotations = [], []
    for node in range(topology.num_nodes):
        top, bottom = row[node * per_node], row[(node + 1) * per_node - 1]
        shapes.append(dict(type="rect", xref="x", yref="y", x0=-0.5, x1=slots - 0.5, y0=top - 0.47,
                           y1=bottom + 0.47, layer="below", line=dict(color="#9A9A9A", dash="dot", width=1.5),
                           fillcolor="#F7F7F7"))
        annotations.append(dict(xref="x", yref="y", x=-0.5, y=top - 1, text=f"<b>node {node}</b>", showarrow=False,
                                xanchor="left", font=FONT))
    for g in range(gpus):
        shapes.append(dict(type="rect", xref="x", yref="y", x0=slots + 0.5, x1=2 * slots + 0.5, y0=row[g] - 0.45,
                           y1=row[g] + 0.45, layer="below", line=dict(color=MUTED, width=1.5), fillcolor="white"))
    if scene.token_to:
        data.append(_token(scene, row, slots, tile, annotations))

    bar_px = plot_width * (1 - left - 0.02)
    bars, bar_names, right_end = _bars(scene, row, last_row, bar_px)
    data += bars
    entries = [*key_names, *([scene.frame_name] if scene.frame_name else []),
               *(["a token"] if scene.token_to else []), *bar_names]
    legend_px = LEGEND_ROW_PX * legend_rows(len(entries), plot_width)
    top_px = legend_px + 34  # the legend, then a row for the top axis labels (and the replay button)
    layout = _layout(
        width=PICTURE_PX, height=top_px + plot_px + 12, top=top_px, bottom=12, shapes=shapes,
        annotations=annotations,
        barmode="group", bargap=0.25, bargroupgap=0.05, **layout_extra,
        xaxis=_axis(domain=[0, left - 0.01], range=[-0.6, 2 * slots + 0.6], anchor="y", side="top",
                    tickvals=[(slots - 1) / 2, slots + 1 + (slots - 1) / 2], ticktext=["waiting", "on the GPU"]),
        xaxis2=_axis(domain=[left + 0.02, 1], range=[0, right_end], anchor="y", side="top",
                     tickvals=[right_end * 0.03], ticktext=["tokens per GPU" if len(scene.bars) == 1 else "tokens"],
                     ticklabelposition="outside right", showgrid=False),
        yaxis=_axis(tickvals=row, ticktext=[f"GPU {g}" for g in range(gpus)], range=[last_row + 0.6, -0.6]),
    )
    layout["legend"].update(y=1 + 34 / plot_px, maxheight=legend_px + 8)
    return _figure(data, layout, frames)


def _token(scene: Scene, row: list[int], slots: int, tile: int, annotations: list[dict]) -> dict:
    """One token in the first node's waiting area and an arrow to a copy of each of its experts."""
    x, y = (slots - 1) / 2, row[0] + 0.5 * (min(len(row), 2) - 1)
    for expert in scene.token_to:
        target = next(t for t in scene.tiles if t.expert == expert)
        annotations.append(dict(x=slots + 1 + target.column, y=row[target.gpu], ax=x, ay=y, xref="x", yref="y",
                                axref="x", ayref="y", showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=2.5,
                                arrowcolor=TEXT, standoff=tile / 2 + 2, startstandoff=14, text=""))
    return dict(type="scatter", x=[x], y=[y], mode="markers", hoverinfo="skip", name="a token",
                marker=dict(symbol="circle", size=26, color="#FFD54F", line=dict(color=TEXT, width=2)))


def _bars(scene: Scene, row: list[int], last_row: int, width_px: float) -> tuple[list[dict], list[str], float]:
    """Per-GPU load bars, their values in a column at the right edge, the even share dashed.

    width_px: the bars' panel. Returns (traces, legend names, the panel's right end in tokens),
    the right end leaving the value column clear of the longest bar.
    """
    traces, names = [], []
    peak = max((max(b.load) for b in scene.bars), default=0.0)
    longest = max((len(explain.tokens(v)) for b in scene.bars for v in b.load), default=1)
    right_end = (peak + 1) / max(0.3, 1 - (9 * longest + 10) / width_px)
    busiest: set[int] = set()
    for i, bars in enumerate(scene.bars):
        colors = [bars.color] * len(bars.load)
        if scene.mark_busiest and i == len(scene.bars) - 1 and max(bars.load) > 0:
            busiest = {g for g, v in enumerate(bars.load) if v == max(bars.load)}
            colors = [BUSIEST if g in busiest else c for g, c in enumerate(colors)]
        traces.append(dict(
            type="bar", orientation="h", x=list(bars.load), y=row, xaxis="x2", yaxis="y", name=bars.name,
            marker=dict(color=colors), customdata=list(range(len(bars.load))),
            hovertemplate=f"{bars.name}<br>GPU %{{customdata}}: %{{x:,.1f}} tokens<extra></extra>",
        ))
        names.append(bars.name)
    if busiest:
        traces.append(dict(type="bar", orientation="h", x=[None], y=[None], xaxis="x2", yaxis="y",
                           name="busiest", marker=dict(color=BUSIEST), hoverinfo="skip"))
        names.append("busiest")
    if scene.bars:
        counted = scene.bars[-1].load
        share = sum(counted) / len(counted)
        traces.append(dict(type="scatter", x=[share, share], y=[0.5, last_row + 0.5], xaxis="x2", yaxis="y",
                           mode="lines", name="mean", hoverinfo="skip",
                           line=dict(color=TEXT, dash="dash", width=2)))
        names.append("mean")
        values = [f"<b>{explain.tokens(v)}</b>" if g in busiest else explain.tokens(v) for g, v in enumerate(counted)]
        traces.append(dict(type="scatter", x=[right_end] * len(counted), y=row, xaxis="x2", yaxis="y",
                           mode="text", text=values, textposition="middle left", showlegend=False,
                           hoverinfo="skip", cliponaxis=False,
                           textfont=dict(FONT, color=[BUSIEST if g in busiest else TEXT for g in range(len(counted))])))
    return traces, names, right_end


# ---------------------------------------------------------------- the second charts


def expert_loads(walk: Walkthrough) -> go.Figure:
    """The case's load per expert, coloured as the copies are, with the mean dashed."""
    load = walk.weight.double().tolist()
    keys, names = colour_key(walk.topology, len(load))
    experts = [f"e{e}" for e in range(len(load))]
    data = []
    for key, name in enumerate(names):
        mine = [e for e in range(len(load)) if keys[e] == key]
        data.append(dict(
            type="bar", x=[experts[e] for e in mine], y=[load[e] for e in mine], name=name,
            marker=dict(color=PASTEL[key % len(PASTEL)], line=dict(color=MUTED, width=1)),
            hovertemplate="%{x}: %{y:,.1f} tokens<extra></extra>",
        ))
    mean = sum(load) / len(load)
    data.append(dict(type="scatter", x=experts, y=[mean] * len(load), mode="lines", name="mean", hoverinfo="skip",
                     line=dict(color=TEXT, dash="dash", width=2)))
    top = LEGEND_ROW_PX * legend_rows(len(names) + 1, SIDE_CHART_PX - MARGIN_LEFT - MARGIN_RIGHT) + 40
    layout = _layout(width=SIDE_CHART_PX, height=230 + top, top=top, bottom=56,
                     title=dict(text="tokens per expert", font=FONT, x=0, xanchor="left", y=1, yanchor="top",
                                yref="container", pad=dict(t=4)),
                     xaxis=_axis(categoryorder="array", categoryarray=experts, tickangle=0,
                                 dtick=1 if len(load) <= 8 else 2),
                     yaxis=_axis(range=[0, max(load) * 1.1 + 1], showgrid=True, gridcolor="#E6E6E6"))
    return _figure(data, layout)


def copies_by_policy(walks: Mapping[str, Walkthrough]) -> go.Figure:
    """Copies per expert under each policy, side by side (the first policy blue, the second orange)."""
    data = []
    for color, (name, walk) in zip((AFTER, OTHER, BEFORE), walks.items()):
        counts = walk.logcnt.tolist()
        data.append(dict(type="bar", x=[f"e{e}" for e in range(len(counts))], y=counts, name=name,
                         marker=dict(color=color), hovertemplate=f"{name}<br>%{{x}}: %{{y}} copies<extra></extra>"))
    top = LEGEND_ROW_PX * legend_rows(len(data), SIDE_CHART_PX - MARGIN_LEFT - MARGIN_RIGHT) + 40
    num_experts = len(data[0]["x"])
    layout = _layout(width=SIDE_CHART_PX, height=220 + top, top=top, bottom=56, barmode="group",
                     title=dict(text="copies per expert", font=FONT, x=0, xanchor="left", y=1, yanchor="top",
                                yref="container", pad=dict(t=4)),
                     xaxis=_axis(tickangle=0, dtick=1 if num_experts <= 8 else 2),
                     yaxis=_axis(dtick=1, showgrid=True, gridcolor="#E6E6E6"))
    return _figure(data, layout)

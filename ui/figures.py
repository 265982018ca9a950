"""Plotly figure builders: data in, ``go.Figure`` out. No Streamlit here.

Every builder takes plain arrays (numpy or torch; converted with ``np.asarray``)
and returns a figure, so pages stay thin and tests check figures without a browser.
Conventions follow eplb: loads are token counts, ``phy2log`` is [layers, P] with a
GPU's slots contiguous, layers and GPUs are numbered from 0.

A layer with no load has no balance to speak of: builders draw it as "no load",
never as balancedness 0 or NaN, and ``format_ratio`` prints it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
import base64
import functools
from dataclasses import dataclass

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io

LOAD_SCALE = "Viridis"
COUNT_SCALE = "Blues"
NO_LOAD = "no load"
PALETTE = ("#E45756", "#4C78A8", "#54A24B", "#F58518", "#B279A2", "#72B7B2", "#9D755D", "#EECA3B")
"""Series colors in order: the first series (usually "before") warm, the second ("after") blue."""


class SpecFigure(go.Figure):
    """A figure held as the plain dict its builder wrote, validated by plotly only when something reads it.

    Plotly's graph objects validate and copy every property when built, which cost more than the
    rest of an Explore rerun after a topology change. ``st.plotly_chart`` reads a figure through
    ``to_dict()`` only: that comes straight from the dict here, its arrays as typed arrays (sent
    base64) and plotly's default template added, the same JSON as the validated figure
    (tests/test_figures.py checks every builder). Any other use (``fig.data``, ``fig.layout``,
    ``update_*``, ``add_vline``) first builds the validated figure from the dict, and from then on
    this is an ordinary ``go.Figure``.
    """

    def __init__(self, spec: dict):  # no go.Figure.__init__ yet: its attributes appear on first use
        self.__dict__["_spec"] = spec

    def __getattr__(self, name: str):
        """Called for an attribute go.Figure.__init__ sets: build the validated figure, then look again."""
        spec = self.__dict__.pop("_spec", None)
        if spec is None:
            raise AttributeError(name)
        self.__dict__.pop("_sent", None)
        go.Figure.__init__(self, spec)
        return getattr(self, name)

    def to_dict(self) -> dict:
        """The figure as ``st.plotly_chart`` sends it; made once while the figure is in its dict form."""
        if "_spec" not in self.__dict__:
            return super().to_dict()
        if "_sent" not in self.__dict__:
            spec = self.__dict__["_spec"]
            self.__dict__["_sent"] = _Sent(_sendable(spec), layout={"template": _default_template(),
                                                                    **_sendable(spec.get("layout", {}))})
        return self.__dict__["_sent"]


class _Sent(dict):
    """A ``SpecFigure``'s ``to_dict()``, which keeps its JSON once ``plotly.io.to_json`` has encoded it."""

    __slots__ = ("json",)


_PLOTLY_TO_JSON = getattr(plotly.io.to_json, "__wrapped__", plotly.io.to_json)  # plotly's, on a reload too


def _to_json_once(fig, validate=True, pretty=False, remove_uids=True, engine=None) -> str:
    """``plotly.io.to_json``, encoding a ``SpecFigure``'s dict once (installed in its place).

    ``st.plotly_chart`` encodes its figure's ``to_dict()`` on every rerun, ``plotly.io.to_json(dict,
    validate=False)``: for a cached figure (which never changes) that was a third of the charts' cost on an
    unchanged Explore rerun (650 KB of JSON). Every other call goes to plotly's own function unchanged.
    """
    if type(fig) is not _Sent or validate or pretty or not remove_uids or engine is not None:
        return _PLOTLY_TO_JSON(fig, validate=validate, pretty=pretty, remove_uids=remove_uids, engine=engine)
    try:
        return fig.json
    except AttributeError:
        fig.json = _PLOTLY_TO_JSON(fig, validate=False)
        return fig.json


_to_json_once.__wrapped__ = _PLOTLY_TO_JSON
plotly.io.to_json = _to_json_once


@functools.cache
def named_scale(name: str) -> list[list]:
    """A plotly colorscale name as the [position, color] stops validation expands it to (plotly.js knows
    fewer names, and no reversed "_r" ones)."""
    return [list(stop) for stop in plotly.colors.get_colorscale(name)]


@functools.cache
def _default_template() -> dict:
    """The template plotly adds to every validated figure (``plotly.io.templates.default``)."""
    return go.Figure().to_dict()["layout"]["template"]


def _sendable(value):
    """A builder's dict with every numeric array as plotly's typed-array spec, as ``go.Figure.to_dict`` writes
    it; containers copied, nothing else changed."""
    if isinstance(value, dict):
        return {k: v if k in _RAW_KEYS else _sendable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sendable(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size:
        return _typed_array(value)
    return value


_TYPED = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4", "float32": "f4",
          "float64": "f8"}  # plotly.js's typed arrays


def _typed_array(values: np.ndarray):
    """A numeric array as plotly.js's typed-array spec ({"dtype", "bdata": base64, "shape"}), as plotly writes it
    (64-bit integers narrowed to the smallest type that holds them; past int32, a plain array); no copy made."""
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
        kinds = ("int8", "int16", "int32") if values.dtype.kind == "i" else ("uint8", "uint16", "uint32")
        low, high = int(values.min()), int(values.max())
        narrow = next((t for t in kinds if np.iinfo(t).min <= low and high <= np.iinfo(t).max), None)
        if narrow is None:
            return values
        values = values.astype(narrow)
    if values.dtype.kind == "b" or str(values.dtype) not in _TYPED:
        return values
    spec = {"dtype": _TYPED[str(values.dtype)], "bdata": base64.b64encode(np.ascontiguousarray(values)).decode("ascii")}
    if values.ndim > 1:
        spec["shape"] = str(values.shape)[1:-1]
    return spec


_RAW_KEYS = frozenset(("geojson", "layer", "layers", "range"))  # what plotly never turns into typed arrays


def _figure(data: list[dict], title: str = "", xlabel: str | None = None, ylabel: str | None = None,
            layers_down: bool = False, **layout) -> go.Figure:
    """A figure from plain trace and layout dicts (a ``SpecFigure``): built in one step, where ``add_trace`` /
    ``update_layout`` / ``add_hline`` walk the whole figure again on every call.
    layers_down: the y axis reversed (layer 0 on top)."""
    xaxis, yaxis = layout.pop("xaxis", {}), layout.pop("yaxis", {})
    if xlabel is not None:
        xaxis["title"] = dict(text=xlabel)
    if ylabel is not None:
        yaxis["title"] = dict(text=ylabel)
    if layers_down:
        yaxis["autorange"] = "reversed"
    return SpecFigure(dict(data=data, layout=dict(title=dict(text=title), xaxis=xaxis, yaxis=yaxis, **layout)))


def format_ratio(value: float | None, digits: int = 3) -> str:
    """A balance metric as text; None or NaN (no load) reads "no load"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NO_LOAD
    return f"{value:.{digits}f}"


def shared_range(*arrays) -> tuple[float, float]:
    """(zmin, zmax) covering every array, from 0: one color scale for panels shown side by side."""
    peak = max((float(np.nanmax(np.asarray(a))) for a in arrays if np.asarray(a).size), default=0.0)
    return 0.0, peak if peak > 0 else 1.0


def _grid(num_panels: int, columns: int | None) -> tuple[int, int]:
    cols = min(num_panels, columns or num_panels)
    return math.ceil(num_panels / cols), cols


def relative_scale(top: float) -> list[list]:
    """A colour scale over load / mean from 0 to top (>= 2) that turns at exactly 1.0: blue below the mean,
    white at it, red above (the GPUs the others wait for)."""
    turn = 1.0 / top
    return [[0.0, "#2166ac"], [turn / 2, "#92c5de"], [turn, "#f7f7f7"], [turn + (1 - turn) / 4, "#f4a582"],
            [1.0, "#b2182b"]]


def relative_load(loads) -> np.ndarray:
    """loads [layers, units] / each layer's mean; NaN for a layer without load."""
    loads = np.asarray(loads, dtype=float)
    mean = loads.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, loads / np.where(mean > 0, mean, 1.0), np.nan)


@dataclass(frozen=True)
class GpuHover:
    """The experts on each (layer, GPU), heaviest first, as numbers a fixed ``hovertemplate`` formats.

    experts, tokens: [L, G, shown] the ranked experts and their tokens (copies of one expert on one GPU
    summed), shown = min(slots_per_gpu, top); distinct: [L, G] how many experts the GPU holds. Only the
    first min(distinct, top) of a cell's columns are real: ``gpu_load_heatmaps`` draws the cells of each
    line count as one trace with its own template, so no cell shows a padded line.
    """

    experts: np.ndarray
    tokens: np.ndarray
    distinct: np.ndarray
    top: int


def gpu_hover(phy2log, slot_loads, num_gpus: int, *, top: int = 6) -> GpuHover:
    """The experts on every GPU with their tokens, heaviest first (ties: first slot first). [L, P] -> ``GpuHover``.

    Copies of one expert on one GPU are summed; past ``top`` experts the hover counts the rest.
    Array operations over all cells at once: no text is built per cell.
    """
    experts = np.asarray(phy2log).reshape(np.shape(phy2log)[0], num_gpus, -1)  # [L, G, slots_per_gpu]
    loads = np.asarray(slot_loads, dtype=float).reshape(experts.shape)
    same = experts[..., :, None] == experts[..., None, :]  # [L, G, S, S]: slots holding one expert
    summed = np.matmul(same, loads[..., None])[..., 0]  # [L, G, S]: tokens of each slot's expert on this GPU
    first = ~(same & np.tri(same.shape[-1], k=-1, dtype=bool)).any(axis=-1)  # each expert's first slot on its GPU
    order = np.argsort(np.where(first, -summed, np.inf), axis=-1, kind="stable")[..., :top]  # heaviest first
    return GpuHover(np.take_along_axis(experts, order, axis=-1), np.take_along_axis(summed, order, axis=-1),
                    first.sum(axis=-1), top)


def _hover_template(lines: int, more: bool, offset: int, shown: int) -> str:
    """The hover lines of a cell listing ``lines`` experts (and "and N more" when ``more``), read from
    ``customdata[offset:]`` laid out as ``_hover_columns`` lays it."""
    text = [f"expert %{{customdata[{offset + i}]}}: %{{customdata[{offset + shown + i}]:,.0f}} tokens"
            for i in range(lines)]
    return "<br>".join(text + ([f"and %{{customdata[{offset + 2 * shown}]}} more"] if more else []))


def _hover_columns(hover: GpuHover) -> np.ndarray:
    """[L, G, 2 * shown + 1]: the ranked experts, their tokens, and how many more the cell holds."""
    more = np.maximum(hover.distinct - hover.top, 0)[..., None]
    return np.concatenate([hover.experts, hover.tokens, more], axis=-1)


def _subplots(titles: Sequence[str], rows: int, cols: int, *, horizontal_spacing: float, vertical_spacing: float,
              shared_yaxes: bool) -> tuple[dict, list[tuple[str, str]]]:
    """The layout of a rows x cols grid of panels, titled, as a plain dict, and each panel's ("x2", "y2") refs.

    The same axes, domains and title annotations as ``plotly.subplots.make_subplots`` (row 1 on top,
    shared_yaxes: each row's axes match its first), written as one dict: a figure built from a dict in one
    ``go.Figure(...)`` call validates once, where make_subplots and later ``update_*`` calls each walk the
    layout again.
    """
    width = (1 - horizontal_spacing * (cols - 1)) / cols
    height = (1 - vertical_spacing * (rows - 1)) / rows
    layout: dict = {}
    annotations, refs = [], []
    for n in range(rows * cols):
        row, col = divmod(n, cols)
        suffix = str(n + 1) if n else ""
        x0, y1 = col * (width + horizontal_spacing), 1 - row * (height + vertical_spacing)
        layout[f"xaxis{suffix}"] = dict(anchor=f"y{suffix}", domain=[x0, x0 + width])
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", domain=[max(y1 - height, 0.0), y1])
        if shared_yaxes and col:
            first = str(row * cols + 1) if row else ""
            layout[f"yaxis{suffix}"] |= dict(matches=f"y{first}", showticklabels=False)
        refs.append((f"x{suffix}", f"y{suffix}"))
        if n < len(titles):
            annotations.append(dict(text=titles[n], x=x0 + width / 2, y=y1, xref="paper", yref="paper",
                                    xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    layout["annotations"] = annotations  # font 13: room for two titles side by side at 1024 px
    return layout, refs


def _node_lines(num_units: int, num_nodes: int, xref: str, yref: str) -> list[dict]:
    """Dotted vertical lines between nodes on one panel's GPU axis, as layout shapes (added in one update:
    ``add_vline`` per line costs a full layout pass each)."""
    per_node = num_units // num_nodes if num_nodes else 0
    return [dict(type="line", xref=xref, yref=f"{yref} domain", x0=boundary - 0.5, x1=boundary - 0.5, y0=0, y1=1,
                 line=dict(width=1.5, dash="dot", color="black"))
            for boundary in range(per_node, num_units, per_node or num_units)]


def _compact(values: np.ndarray, *, whole: bool = False) -> np.ndarray:
    """The hover numbers in the fewest bytes that print the same. whole: every value is printed to the unit, so
    it is rounded (half to even, as Python's ``f"{x:,.0f}"``) and sent as uint16 or int32 where it fits.
    Otherwise float32 where every value is under 2^22 in size (tokens still print to the unit, ratios to 0.01),
    else float64."""
    finite = values[np.isfinite(values)]
    if whole and finite.size == values.size:
        rounded = np.rint(values)
        for kind in ("uint16", "int32"):
            if not rounded.size or (np.iinfo(kind).min <= rounded.min() and rounded.max() <= np.iinfo(kind).max):
                return rounded.astype(kind)
    return values.astype(np.float32) if finite.size == 0 or np.abs(finite).max() < 2**22 else values


def _heatmap_traces(loads: np.ndarray, ratio: np.ndarray, relative: bool, hover: GpuHover | None, unit: str,
                    **trace) -> list[dict]:
    """One panel's heatmap: one trace, or, when cells list different numbers of experts, one trace per line
    count (the other cells left empty, no hover on them), each with its fixed ``hovertemplate``.

    Coloured by load / mean (relative), the ratio is read from z and customdata holds only whole numbers (the
    load, the experts and their tokens), sent in 2 bytes each when they fit."""
    z = (ratio if relative else loads).astype(np.float32)
    if relative:
        head = f"layer %{{y}}, {unit} %{{x}}<br>load %{{customdata[0]:,.0f}} tokens, %{{z:.2f}} x the layer's mean"
        first = [loads[..., None]]
    else:
        head = f"layer %{{y}}, {unit} %{{x}}<br>load %{{customdata[0]:,.0f}} tokens, %{{customdata[1]:.2f}} x " \
               "the layer's mean"
        first = [np.stack([loads, ratio], axis=-1)]
    offset = first[0].shape[-1]
    if hover is None:
        return [dict(trace, z=z, customdata=_compact(first[0], whole=relative), hovertemplate=head + "<extra></extra>")]
    shown = hover.experts.shape[-1]
    custom = _compact(np.concatenate([*first, _hover_columns(hover)], axis=-1), whole=relative)
    lines = np.minimum(hover.distinct, hover.top)
    kinds = 2 * lines + (hover.distinct > hover.top)  # [L, G]: line count, and whether "and N more" follows
    found, counts = np.unique(kinds, return_counts=True)
    traces = []
    for kind in found[np.argsort(-counts, kind="stable")]:  # the most common first
        template = _hover_template(int(kind) // 2, bool(kind % 2), offset, shown)
        traces.append(dict(trace, z=z if found.size == 1 else np.where(kinds == kind, z, np.float32(np.nan)),
                           customdata=custom, hovertemplate=f"{head}<br>{template}<extra></extra>",
                           **({} if found.size == 1 else dict(hoverongaps=False))))
    return traces


def gpu_load_heatmaps(panels: Mapping[str, object], *, columns: int | None = None,
                      zmin: float | None = None, zmax: float | None = None, relative: bool = False,
                      nodes: Sequence[int] | int | None = None, placements: Mapping[str, tuple] | None = None,
                      unit: str = "GPU") -> go.Figure:
    """Per-GPU load heatmaps, one panel per title, all on ONE color scale.

    panels: title -> loads [layers, GPUs] (e.g. ``PlacementReport.gpu_loads``). The
    scale runs from zmin (default 0) to zmax (default the largest load of any panel),
    so equal colors mean equal load across panels. relative: color each cell by its
    load / the layer's mean instead, diverging at exactly 1.0 (``relative_scale``), which
    shows the imbalance left after a rebalance. nodes: node count (per panel, or one
    for all) to draw node boundaries on the GPU axis. placements: title -> (phy2log [layers, P],
    slot_loads [layers, P]): a cell's hover then lists the experts on that GPU (``gpu_hover``), as
    numbers under a fixed template (no text per cell). columns: panels per row (default all).
    unit: what a column is ("GPU", or "node" for a per-node view).
    """
    arrays = {title: np.asarray(loads, dtype=float) for title, loads in panels.items()}
    low, high = shared_range(*arrays.values())
    zmin = low if zmin is None else zmin
    zmax = high if zmax is None else zmax
    rows, cols = _grid(len(arrays), columns)
    node_counts = [nodes] * len(arrays) if isinstance(nodes, int) or nodes is None else list(nodes)
    same_layers = len({a.shape[0] for a in arrays.values()}) == 1
    layout, refs = _subplots(list(arrays), rows, cols, horizontal_spacing=0.04 if same_layers else 0.08,
                             vertical_spacing=0.12, shared_yaxes=same_layers)
    traces, shapes = [], []
    for i, (title, loads) in enumerate(arrays.items()):
        num_layers, num_gpus = loads.shape
        hover = gpu_hover(*placements[title], num_gpus) if placements and title in placements else None
        xref, yref = refs[i]
        traces += _heatmap_traces(  # numbers as typed arrays (sent base64), formatted by the hover template
            loads, relative_load(loads), relative, hover, unit, type="heatmap", xaxis=xref, yaxis=yref,
            x=np.arange(num_gpus, dtype=np.int32), y=np.arange(num_layers, dtype=np.int32), coloraxis="coloraxis")
        if node_counts[i] and node_counts[i] > 1 and unit == "GPU":
            shapes += _node_lines(num_gpus, node_counts[i], xref, yref)
    for n, (xref, _) in enumerate(refs):
        x, y = layout["xaxis" + xref[1:]], layout["yaxis" + xref[1:]]
        if n // cols == rows - 1:  # bottom row only: clear of the titles of the row below
            x["title"] = dict(text=unit)
        y["autorange"] = "reversed"
        if n % cols == 0:
            y["title"] = dict(text="layer")
    if relative:
        peak = max((float(np.nanmax(relative_load(a))) for a in arrays.values()
                    if a.size and np.isfinite(relative_load(a)).any()), default=2.0)
        top = min(max(peak, 2.0), 4.0)  # 4 x the mean and more share the darkest red: the rest stays readable
        axis = dict(colorscale=relative_scale(top), cmin=0.0, cmax=top, colorbar=dict(title=dict(text="load / mean")))
    else:
        axis = dict(colorscale=named_scale(LOAD_SCALE), cmin=zmin, cmax=zmax, colorbar=dict(title=dict(text="tokens")))
    return SpecFigure(dict(data=traces, layout=layout | dict(
        coloraxis=axis, height=max(320, 300 * rows), margin=dict(t=40, b=40, l=50, r=20),
        **({"shapes": shapes} if shapes else {}))))


def load_heatmap(weight, *, title: str = "") -> go.Figure:
    """The load itself: tokens per (layer, logical expert), weight [layers, experts]; hot experts stand out."""
    w = np.asarray(weight, dtype=float)
    integer = np.all(np.mod(w, 1) == 0)
    return _figure([dict(
        type="heatmap", z=w.astype(np.int32) if integer and w.size and w.max() < 2**31 else w.astype(np.float32),
        x=np.arange(w.shape[1], dtype=np.int32), y=np.arange(w.shape[0], dtype=np.int32),
        customdata=relative_load(w).astype(np.float32), colorscale=named_scale("Hot_r"),
        colorbar=dict(title=dict(text="tokens")),
        hovertemplate="layer %{y}, expert %{x}<br>%{z:,.0f} tokens, %{customdata:.1f} x the layer's mean"
                      "<extra></extra>",
    )], title, "logical expert", "layer", layers_down=True, height=360, margin=dict(t=40, b=40, l=50, r=20))


def copy_ranks(phy2log_layer) -> np.ndarray:
    """Copy number of each slot's expert, from 1: the k-th lowest slot of an expert is copy k. [P] -> [P]."""
    experts = np.asarray(phy2log_layer)
    ranks = np.zeros(experts.shape, dtype=int)
    seen: dict[int, int] = {}
    for slot, expert in enumerate(experts.tolist()):
        seen[expert] = seen.get(expert, 0) + 1
        ranks[slot] = seen[expert]
    return ranks


def placement_heatmap(phy2log_layer, slot_loads_layer, num_gpus: int, *, title: str = "",
                      zmax: float | None = None) -> go.Figure:
    """One layer's placement: GPUs (rows) x slots (columns), colored by the load each copy carries.

    phy2log_layer: [P] logical expert in each slot; slot_loads_layer: [P] load of that
    copy (``eplb.metrics.slot_loads`` row). Cells print the expert id; hover names the
    expert, its copy number out of its copy count, and the copy's load.
    """
    experts = np.asarray(phy2log_layer)
    loads = np.asarray(slot_loads_layer, dtype=float)
    slots_per_gpu = experts.size // num_gpus
    ranks = copy_ranks(experts)
    counts = np.bincount(experts, minlength=int(experts.max()) + 1)[experts]
    grid = (num_gpus, slots_per_gpu)  # [GPUs, slots_per_gpu]
    custom = np.stack([experts, ranks, counts], axis=-1).reshape(*grid, 3)
    labels = {} if num_gpus > 32 else dict(text=experts.reshape(grid), texttemplate="%{text}")  # rows too thin
    return _figure([dict(  # for a label past 32 GPUs: the hover names the expert
        type="heatmap", z=loads.reshape(grid), x=np.arange(slots_per_gpu), y=np.arange(num_gpus), customdata=custom,
        colorscale=named_scale(LOAD_SCALE), zmin=0, zmax=zmax if zmax is not None else max(float(loads.max()), 1.0),
        colorbar=dict(title=dict(text="tokens")), xgap=1, ygap=1, **labels,
        hovertemplate=(
            "GPU %{y}, slot %{x}<br>expert %{customdata[0]} (copy %{customdata[1]} of %{customdata[2]})"
            "<br>load %{z:,.0f} tokens<extra></extra>"
        ),
    )], title, "slot on GPU", "GPU", layers_down=True, height=placement_height(num_gpus),
        margin=dict(t=40, b=40, l=50, r=20))


def placement_height(num_gpus: int) -> int:
    """The placement map's height in px: 22 px per GPU up to 32 GPUs, then thinner rows, never past 700 px."""
    return int(min(700, max(320, 22 * min(num_gpus, 32) + 120 + 4 * max(num_gpus - 32, 0))))


def replica_heatmap(logcnt, *, title: str = "") -> go.Figure:
    """Copies per logical expert: logcnt [layers, experts] as a heatmap.

    Two traces on one color axis, the experts with one copy and those with more (each with its own
    hover: "1 copy", "3 copies"; no hover on the other's cells): numbers sent base64, no text per cell.
    """
    counts = np.asarray(logcnt)
    num_layers, num_experts = counts.shape
    z, one = counts.astype(np.float32), counts == 1
    traces = [dict(
        type="heatmap", z=np.where(cells, z, np.float32(np.nan)), x=np.arange(num_experts, dtype=np.int32),
        y=np.arange(num_layers, dtype=np.int32), coloraxis="coloraxis", hoverongaps=False,
        hovertemplate=f"layer %{{y}}, expert %{{x}}<br>{copies}<extra></extra>",
    ) for cells, copies in ((one, "1 copy"), (~one, "%{z} copies"))]
    return _figure(traces, title, "logical expert", "layer", layers_down=True, height=360,
                   margin=dict(t=40, b=40, l=50, r=20),
                   coloraxis=dict(colorscale=named_scale(COUNT_SCALE), cmin=1, cmax=max(int(counts.max(initial=1)), 1),
                                  colorbar=dict(title=dict(text="copies"))))


def gpu_load_bars(series: Mapping[str, object], *, title: str = "") -> go.Figure:
    """Per-GPU load of one layer, one bar group per series (e.g. before / after), the mean drawn as a line.

    series: name -> loads [GPUs]. The mean is the same for every placement of the same
    load (copies only move tokens between GPUs); the first series' mean is drawn.
    """
    arrays = {name: np.asarray(loads, dtype=float) for name, loads in series.items()}
    bars = [dict(type="bar", x=np.arange(loads.size), y=loads, name=name, marker=dict(color=PALETTE[i % len(PALETTE)]),
                 hovertemplate=f"{name}<br>GPU %{{x}}: %{{y:,.0f}} tokens<extra></extra>")
            for i, (name, loads) in enumerate(arrays.items())]
    mean = float(next(iter(arrays.values())).mean()) if arrays else 0.0
    return _figure(
        bars, title, "GPU", "tokens", barmode="group", height=360, margin=dict(t=70, b=40, l=50, r=20),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
        shapes=[dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=mean, y1=mean,  # the mean, as
                     line=dict(dash="dash", color="black"))],  # ``add_hline`` draws it
        annotations=[dict(text=f"mean {mean:,.0f}", xref="x domain", yref="y", x=1, y=mean, xanchor="right",
                          yanchor="bottom", showarrow=False, bgcolor="rgba(255,255,255,0.8)")])


def balancedness_lines(series: Mapping[str, object], *, title: str = "", ylabel: str = "balancedness (mean / max)",
                       xlabel: str = "layer", bound=None) -> go.Figure:
    """Per-layer (or per-step: ``xlabel``) balancedness, one line per series (e.g. before, after, one per policy).

    series: name -> [layers] with NaN where a layer has no load (``layer_balancedness``).
    Such layers are shaded and marked "no load" (one label per stretch of them)
    instead of being drawn as 0 or a gap. bound: optional [layers] best reachable
    balancedness, drawn dotted.
    """
    arrays = {name: np.asarray(values, dtype=float) for name, values in series.items()}
    if bound is not None:
        arrays["bound (best possible)"] = np.asarray(bound, dtype=float)
    lines = [dict(
        type="scatter", x=np.arange(values.size), y=values, name=name,
        mode="lines+markers" if values.size < 80 else "lines",
        line=dict(dash="dot", color="gray") if name == "bound (best possible)"
        else dict(color=PALETTE[i % len(PALETTE)]),
        hovertemplate=f"{name}<br>{xlabel} %{{x}}: %{{y:.3f}}<extra></extra>",
    ) for i, (name, values) in enumerate(arrays.items())]
    no_load = np.flatnonzero(np.all([np.isnan(v) for v in arrays.values()], axis=0)) if arrays else np.array([])
    stretches = np.split(no_load, np.flatnonzero(np.diff(no_load) > 1) + 1) if no_load.size else []
    if stretches:
        middles = [int(stretch[len(stretch) // 2]) for stretch in stretches]
        lines.append(dict(
            type="scatter", x=middles, y=np.full(len(middles), 0.5), mode="text", text=[NO_LOAD] * len(middles),
            textfont=dict(color="dimgray"), name=NO_LOAD, hovertemplate=f"{xlabel} %{{x}}: no load<extra></extra>",
        ))
    return _figure(lines, title, xlabel, ylabel, yaxis=dict(range=[0, 1.05]), height=340,
                   margin=dict(t=70, b=40, l=50, r=20), legend=dict(orientation="h", y=1.02, yanchor="bottom"),
                   shapes=[dict(type="rect", xref="x", yref="y domain", x0=stretch[0] - 0.5, x1=stretch[-1] + 0.5,
                                y0=0, y1=1, fillcolor="lightgray", opacity=0.5, line=dict(width=0))
                           for stretch in stretches])


def metric_lines(x: Sequence, series: Mapping[str, Sequence], *, xlabel: str, ylabel: str, title: str = "",
                 dotted: Sequence[str] = ()) -> go.Figure:
    """Generic lines over a shared x axis (a sweep axis, replay steps); names in ``dotted`` are drawn dotted.

    None values become gaps (a point without load has no metric).
    """
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        y = [np.nan if v is None else v for v in values]
        fig.add_trace(go.Scatter(x=list(x), y=y, name=name, mode="lines+markers",
                                 line=dict(color=PALETTE[i % len(PALETTE)], dash="dot" if name in dotted else None)))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=360,
                      margin=dict(t=70, b=40, l=50, r=20), legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    return fig

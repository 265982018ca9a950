"""The Plotly builders on data: shapes, one color range for panels side by side, hover text, "no load"."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import plotly.graph_objects as go
import torch

import eplb
from eplb.metrics import evaluate, initial_phy2log, layer_balancedness, slot_loads
from eplb.presets import DEEPSEEK_README_WEIGHT
from ui import figures

WEIGHT = torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32)  # [2, 12]
TOPOLOGY = eplb.Topology(16, 4, 2, 8)


def readme_placements():
    after, log2phy, logcnt = eplb.rebalance_experts(WEIGHT, 16, 4, 2, 8)
    before = initial_phy2log(2, 12, 16)
    return before, after, log2phy, logcnt


def test_before_and_after_heatmaps_share_one_color_range():
    before, after, _, _ = readme_placements()
    loads_before = evaluate(WEIGHT, before, TOPOLOGY).gpu_loads
    loads_after = evaluate(WEIGHT, after, TOPOLOGY).gpu_loads
    fig = figures.gpu_load_heatmaps({"before": loads_before, "after": loads_after})
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 2
    assert all(np.asarray(h.z).shape == (2, 8) for h in heatmaps)
    assert {h.coloraxis for h in heatmaps} == {"coloraxis"}  # one scale, one colorbar
    peak = float(max(loads_before.max(), loads_after.max()))
    assert fig.layout.coloraxis.cmin == 0 and math.isclose(fig.layout.coloraxis.cmax, peak)
    assert peak == float(loads_before.max())  # the unbalanced side sets the top of the shared scale
    assert [a.text for a in fig.layout.annotations] == ["before", "after"]


def test_heatmap_grid_and_explicit_range():
    loads = {f"p{i}": torch.rand(3, 4) for i in range(5)}
    fig = figures.gpu_load_heatmaps(loads, columns=2, zmax=10.0)
    assert len(fig.data) == 5 and fig.layout.coloraxis.cmax == 10.0
    assert fig.data[4].xaxis == "x5" and fig.layout.height >= 3 * 300


def test_placement_heatmap_cells_and_hover_name_expert_copy_and_load():
    _, after, log2phy, logcnt = readme_placements()
    loads = slot_loads(WEIGHT, after)
    layer = 1
    fig = figures.placement_heatmap(after[layer], loads[layer], 8)
    heat = fig.data[0]
    z, text, custom = np.asarray(heat.z), np.asarray(heat.text), np.asarray(heat.customdata)
    assert z.shape == (8, 2) and text.shape == (8, 2) and custom.shape == (8, 2, 3)
    assert np.array_equal(text.flatten(), after[layer].numpy())
    assert np.allclose(z.flatten(), loads[layer].numpy())
    for slot in range(16):
        expert, copy, count = custom.reshape(16, 3)[slot]
        assert int(log2phy[layer, expert, copy - 1]) == slot  # copy k is log2phy's column k-1
        assert count == int(logcnt[layer, expert])
    assert "expert %{customdata[0]}" in heat.hovertemplate and "copy %{customdata[1]} of %{customdata[2]}" in \
        heat.hovertemplate and "load %{z" in heat.hovertemplate


def test_replica_heatmap_and_bars():
    _, after, _, logcnt = readme_placements()
    fig = figures.replica_heatmap(logcnt)
    z = np.fmax(*(np.asarray(trace.z, dtype=float) for trace in fig.data))  # each cell drawn by one trace
    assert z.shape == (2, 12) and np.array_equal(z, logcnt.numpy()) and fig.layout.coloraxis.cmin == 1
    report = evaluate(WEIGHT, after, TOPOLOGY)
    bars = figures.gpu_load_bars({"before": torch.arange(8.0), "after": report.gpu_loads[0]})
    assert [t.name for t in bars.data] == ["before", "after"] and len(bars.data[1].y) == 8
    mean_line = bars.layout.shapes[0]
    assert mean_line.y0 == mean_line.y1 == 3.5
    assert "mean" in bars.layout.annotations[0].text


def test_layers_without_load_show_as_no_load():
    weight = torch.tensor(DEEPSEEK_README_WEIGHT + [[0] * 12], dtype=torch.float32)  # layer 2 has no load
    phy2log = initial_phy2log(3, 12, 16)
    per_layer = layer_balancedness(evaluate(weight, phy2log, TOPOLOGY).gpu_loads)
    assert math.isnan(float(per_layer[2]))
    fig = figures.balancedness_lines({"before": per_layer})
    marks = [t for t in fig.data if t.name == figures.NO_LOAD]
    assert len(marks) == 1 and list(marks[0].x) == [2] and list(marks[0].text) == ["no load"]
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 1.5
    assert figures.format_ratio(None) == "no load" and figures.format_ratio(float("nan")) == "no load"
    assert figures.format_ratio(0.25) == "0.250"
    with_load = figures.balancedness_lines({"before": per_layer[:2]})
    assert not with_load.layout.shapes and all(t.name != figures.NO_LOAD for t in with_load.data)


def test_shared_range_and_metric_lines():
    assert figures.shared_range(np.zeros((2, 2))) == (0.0, 1.0)
    assert figures.shared_range(np.ones(3), np.full(2, 5.0)) == (0.0, 5.0)
    fig = figures.metric_lines([0, 8, 16], {"a": [0.5, None, 0.9], "bound": [1, 1, 1]},
                               xlabel="slots", ylabel="balancedness", dotted=["bound"])
    assert math.isnan(fig.data[0].y[1]) and fig.data[1].line.dash == "dot"


def _js_number(value: float) -> str:
    """A number as plotly.js prints a typed array's value without a format: 17.0 -> "17"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def rendered_hover(fig: go.Figure, xaxis: str, layer: int, gpu: int) -> str:
    """What the browser's hover box shows on one cell of one panel: the template of the panel's trace that
    draws the cell, its %{customdata[i]:format} fields filled as plotly.js (d3-format) fills them."""
    drawn = [t for t in fig.data if (t.xaxis or "x") == xaxis and np.isfinite(np.asarray(t.z, dtype=float)[layer, gpu])]
    assert len(drawn) == 1, "exactly one trace draws (and hovers) each cell"
    trace = drawn[0]
    assert len([t for t in fig.data if (t.xaxis or "x") == xaxis]) == 1 or trace.hoverongaps is False
    custom = None if trace.customdata is None else np.asarray(trace.customdata)[layer, gpu]
    z = np.asarray(trace.z, dtype=float)[layer, gpu]

    def field(match: re.Match) -> str:
        name, index, spec = match.groups()
        value = {"x": gpu, "y": layer, "z": z}[name] if index is None else custom[int(index)]
        return format(float(value), spec) if spec else _js_number(value)

    return re.sub(r"%\{(customdata|x|y|z)(?:\[(\d+)\])?(?::([^}]*))?\}", field, trace.hovertemplate)


def test_relative_scale_turns_white_at_the_mean_and_hover_lists_the_experts():
    from ui.figures import gpu_load_heatmaps, relative_load

    loads = np.array([[30.0, 10.0, 20.0, 20.0]])  # mean 20
    assert np.allclose(relative_load(loads), [[1.5, 0.5, 1.0, 1.0]])
    fig = gpu_load_heatmaps({"after": loads}, relative=True, nodes=2)
    axis = fig.layout.coloraxis
    white = next(stop for stop, color in axis.colorscale if color == "#f7f7f7")
    assert axis.cmin == 0 and axis.cmin + white * (axis.cmax - axis.cmin) == pytest.approx(1.0)
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == pytest.approx(1.5)  # between the 2 nodes
    phy2log = np.array([[0, 1, 2, 2, 3, 0]])  # 3 GPUs x 2 slots
    slot_loads = np.array([[5.0, 7.0, 4.0, 4.0, 9.0, 5.0]])
    fig = gpu_load_heatmaps({"after": np.array([[12.0, 8.0, 14.0]])}, placements={"after": (phy2log, slot_loads)})
    assert len(fig.data) == 2  # GPU 1 lists one expert, the others two: one template each
    assert rendered_hover(fig, "x", 0, 1) == ("layer 0, GPU 1<br>load 8 tokens, 0.71 x the layer's mean<br>"
                                              "expert 2: 8 tokens<extra></extra>")  # two copies of expert 2, summed
    assert rendered_hover(fig, "x", 0, 0).endswith("<br>expert 1: 7 tokens<br>expert 0: 5 tokens<extra></extra>")
    assert np.isnan(np.asarray(fig.data[0].z, dtype=float)[0, 1]) and np.isnan(np.asarray(fig.data[1].z)[0, 0])


def test_placement_map_keeps_a_readable_height():
    from ui.figures import placement_height

    assert placement_height(8) == 320  # 22 px per GPU, at least 320
    assert all(placement_height(g) == 700 for g in (32, 64, 256, 1024))  # never taller than 700 px
    fig = figures.placement_heatmap(np.arange(128) % 64, np.ones(128), 64)
    assert fig.layout.height == 700 and fig.data[0].texttemplate is None  # no labels in rows too thin for them


def test_copies_read_one_copy_not_one_copies():
    fig = figures.replica_heatmap(np.array([[1, 2], [3, 1]]))
    assert len(fig.data) == 2 and all(trace.hoverongaps is False for trace in fig.data)
    hovers = [[rendered_hover(fig, "x", layer, expert) for expert in range(2)] for layer in range(2)]
    expected = [["1 copy", "2 copies"], ["3 copies", "1 copy"]]
    assert hovers == [[f"layer {layer}, expert {expert}<br>{copies}<extra></extra>"
                       for expert, copies in enumerate(row)] for layer, row in enumerate(expected)]
    assert fig.layout.coloraxis.cmin == 1 and fig.layout.coloraxis.cmax == 3  # one scale for both traces


def test_gpu_hover_matches_a_per_cell_description_on_random_placements():
    rng = np.random.default_rng(7)
    for layers, gpus, slots, experts in ((3, 4, 9, 12), (2, 8, 2, 6), (2, 2, 20, 5), (2, 3, 4, 400)):
        phy2log = rng.integers(0, experts, (layers, gpus * slots))  # duplicates on one GPU, and over 6 experts
        slot_loads = rng.integers(0, 5000, (layers, gpus * slots)).astype(float) + 0.5
        tokens = slot_loads.reshape(layers, gpus, slots).sum(axis=-1)
        for big in (1.0, 2.0**30):  # token counts float32 prints exactly, and ones it does not
            fig = figures.gpu_load_heatmaps({"before": tokens * big, "after": tokens * big}, relative=True,
                                            placements={"after": (phy2log, slot_loads * big)})
            assert "expert" not in "".join(t.hovertemplate for t in fig.data if t.xaxis == "x")
            for layer in range(layers):
                for gpu in range(gpus):
                    on_gpu: dict[int, float] = {}
                    cells = slice(gpu * slots, (gpu + 1) * slots)
                    for e, w in zip(phy2log[layer, cells].tolist(), slot_loads[layer, cells].tolist()):
                        on_gpu[e] = on_gpu.get(e, 0.0) + w * big
                    ranked = sorted(on_gpu.items(), key=lambda item: -item[1])  # ties: first slot first
                    lines = [f"expert {e}: {w:,.0f} tokens" for e, w in ranked[:6]]
                    lines += [f"and {len(ranked) - 6} more"] if len(ranked) > 6 else []
                    load = tokens[layer, gpu] * big
                    head = f"layer {layer}, GPU {gpu}<br>load {load:,.0f} tokens, " \
                           f"{load / (tokens[layer].mean() * big):.2f} x the layer's mean"
                    assert rendered_hover(fig, "x2", layer, gpu) == "<br>".join([head, *lines]) + "<extra></extra>"


def test_a_cached_figure_is_built_and_turned_into_a_dict_once():
    from ui import compute

    cached = compute.CachedFigures(figures)
    loads = {"before": torch.tensor([3.0, 1.0]), "after": torch.tensor([2.0, 2.0])}
    fig = cached.gpu_load_bars(loads, title="once")
    assert cached.gpu_load_bars({k: v.clone() for k, v in loads.items()}, title="once") is fig
    assert fig.to_dict() is fig.to_dict()  # what st.plotly_chart serializes, made on the first call only
    assert fig.to_json() == figures.gpu_load_bars(loads, title="once").to_json()


def every_spec_figure() -> dict[str, go.Figure]:
    """One figure from each builder that returns a ``SpecFigure``, on data with every branch drawn: before and
    after maps with hover (one GPU holding two copies of an expert), node lines, a layer without load."""
    weight = torch.cat([WEIGHT, torch.zeros(1, 12)])  # [3, 12], the last layer without load
    before = initial_phy2log(3, 12, 16)
    after = torch.cat([readme_placements()[1], before[:1]])
    reports = {name: evaluate(weight, phy2log, TOPOLOGY) for name, phy2log in (("before", before), ("after", after))}
    placed = {name: (phy2log, slot_loads(weight, phy2log)) for name, phy2log in (("before", before), ("after", after))}
    loads = {name: r.gpu_loads for name, r in reports.items()}
    return {
        "maps, relative, hover": figures.gpu_load_heatmaps(loads, relative=True, nodes=2, placements=placed),
        "maps, tokens, per node": figures.gpu_load_heatmaps({k: r.node_loads for k, r in reports.items()},
                                                            nodes=2, unit="node", columns=1),
        "load": figures.load_heatmap(weight),
        "placement": figures.placement_heatmap(after[0], placed["after"][1][0], 8),
        "copies": figures.replica_heatmap(eplb.policies.base.copy_counts(after, 12)),
        "bars": figures.gpu_load_bars({k: v[0] for k, v in loads.items()}),
        "balancedness": figures.balancedness_lines({k: r.layer_balancedness for k, r in reports.items()},
                                                   bound=torch.tensor([0.9, 0.95, float("nan")])),
    }


@pytest.mark.parametrize("name", list(every_spec_figure()))
def test_a_spec_figure_sends_what_the_validated_figure_sends(name):
    import json

    import plotly.io as pio

    fig = every_spec_figure()[name]
    assert isinstance(fig, figures.SpecFigure) and "_spec" in fig.__dict__
    sent = fig.to_dict()
    assert fig.to_dict() is sent  # made once
    assert "_spec" in fig.__dict__  # st.plotly_chart reads to_dict only: nothing validated yet
    assert fig.layout is not None and "_spec" not in fig.__dict__  # any other use validates (raises if invalid)
    validated = fig.to_dict()
    assert validated is not sent
    assert json.loads(pio.to_json(sent, validate=False)) == json.loads(pio.to_json(validated, validate=False))


def test_a_spec_figure_is_encoded_once_as_st_plotly_chart_encodes_it():
    import plotly.io as pio

    fig = every_spec_figure()["maps, relative, hover"]
    sent = fig.to_dict()
    encoded = pio.to_json(sent, validate=False)  # what st.plotly_chart sends, on every rerun
    assert pio.to_json(sent, validate=False) is encoded  # the second rerun encodes nothing
    assert encoded == figures._PLOTLY_TO_JSON(fig.to_dict(), validate=False)  # plotly's own encoding
    plain = dict(sent)  # any other dict, and any other way of calling, goes to plotly unchanged
    assert pio.to_json(plain, validate=False) == encoded and pio.to_json(plain, validate=False) is not encoded
    assert pio.to_json(sent, validate=False, pretty=True) != encoded

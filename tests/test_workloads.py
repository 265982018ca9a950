"""Synthetic workloads are reproducible, shaped as asked and skewed as named."""

from __future__ import annotations

import pytest
import torch

import eplb
from eplb.presets import PRESETS
from eplb.workloads import FAMILIES, generate_drifting_trace, generate_load, generate_trace


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_are_seeded_shaped_and_valid(family):
    a = generate_load(family, 4, 32, seed=7, tokens=1000, top_k=4)
    b = generate_load(family, 4, 32, seed=7, tokens=1000, top_k=4)
    c = generate_load(family, 4, 32, seed=8, tokens=1000, top_k=4)
    assert a.shape == (4, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert family == "uniform" or not torch.equal(a, c)
    eplb.validate_weight(a)
    assert not bool(torch.signbit(a).any()), "no -0.0 counts"
    assert a.sum(-1).sub(4000).abs().max() < 400  # about tokens * top_k per layer


def test_skew_orders_the_families():
    def top_share(weight):
        return float((weight.max(-1).values / weight.sum(-1)).mean())

    uniform = generate_load("uniform", 8, 64, seed=0)
    zipf = generate_load("zipf", 8, 64, seed=0, skew=1.2)
    steep = generate_load("zipf", 8, 64, seed=0, skew=2.0)
    assert top_share(uniform) < top_share(zipf) < top_share(steep)


def test_hot_and_zero_families():
    hot = generate_load("hot", 2, 64, seed=0, skew=1000.0, num_hot=3)
    ranked = hot.sort(-1, descending=True).values
    assert bool((ranked[:, 2] > 100 * ranked[:, 3]).all())
    zero = generate_load("zero", 2, 64, seed=0, skew=0.25)
    assert bool(((zero == 0).sum(-1) >= 16).all())


def test_trace_drifts_only_when_asked():
    still = generate_trace("lognormal", 30, 2, 16, seed=0, drift=0.0, tokens=100000)
    moving = generate_trace("lognormal", 30, 2, 16, seed=0, drift=0.2, tokens=100000)
    assert still.shape == (30, 2, 16)

    def change(trace):
        share = trace / trace.sum(-1, keepdim=True)
        return float((share[-1] - share[0]).abs().sum())

    assert change(moving) > 5 * change(still)


def _window_change(trace, num_windows):
    """Median relative change of an expert's summed load from one window to the next."""
    windows = trace.view(num_windows, -1, *trace.shape[1:]).sum(1).double()
    return float(((windows[1:] - windows[:-1]).abs() / windows[:-1]).median())


@pytest.mark.parametrize("family", FAMILIES)
def test_drifting_trace_is_seeded_shaped_and_valid(family):
    a = generate_drifting_trace(family, 3, 4, 2, 16, noise=0.2, seed=5)
    assert a.shape == (12, 2, 16) and a.dtype == torch.float32
    assert torch.equal(a, generate_drifting_trace(family, 3, 4, 2, 16, noise=0.2, seed=5))
    assert not torch.equal(a, generate_drifting_trace(family, 3, 4, 2, 16, noise=0.2, seed=6))
    eplb.validate_weight(a, history=True)
    if family == "zero":  # idle experts stay idle in every step
        idle = a.sum(0) == 0
        assert bool((idle.sum(-1) >= 4).all())


def test_drifting_trace_window_noise_is_as_asked():
    """The noise level is how far an expert's window load strays: the window-to-window change
    grows with it (sampling noise keeps a floor), and a 30% level changes windows by roughly that."""
    changes = [_window_change(generate_drifting_trace("lognormal", 6, 10, 8, 64, noise=n, drift=0.0, seed=1,
                                                      tokens=200000), 6) for n in (0.0, 0.05, 0.15, 0.30)]
    assert changes == sorted(changes)
    assert changes[0] < 0.02 and 0.2 < changes[3] < 0.5


def test_drifting_trace_steps_show_which_experts_swing():
    """Inside a window the steps stray like the windows do: an expert's spread over the steps
    of a window predicts its change to the next window."""
    trace = generate_drifting_trace("uniform", 2, 50, 1, 256, noise=0.3, drift=0.0, seed=2, tokens=10**6)
    steps = trace.view(2, 50, 256).double()
    spread = (steps[0].std(0) / steps[0].mean(0))  # [E]
    change = (steps[1].sum(0) / steps[0].sum(0)).log().abs()
    calm, swinging = spread.argsort()[:64], spread.argsort()[-64:]
    assert float(change[swinging].mean()) > 1.5 * float(change[calm].mean())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: generate_load("nope", 2, 4), "unknown workload family"),
        (lambda: generate_load("zipf", 0, 4), "num_layers must be a positive integer"),
        (lambda: generate_load("zipf", 2, 4, skew=-1), "skew must be"),
        (lambda: generate_load("zero", 2, 4, skew=1.0), "below 1"),
        (lambda: generate_trace("zipf", 3, 2, 4, drift=-0.1), "drift must be"),
        (lambda: generate_drifting_trace("zipf", 0, 2, 2, 4), "num_windows must be a positive integer"),
        (lambda: generate_drifting_trace("zipf", 2, 2, 2, 4, noise=float("nan")), "noise must be"),
        (lambda: generate_drifting_trace("zipf", 2, 2, 2, 4, drift=-1.0), "drift must be"),
    ],
)
def test_bad_generator_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_presets_have_the_published_shapes():
    v3 = PRESETS["DeepSeek-V3/R1"]
    assert (v3.num_layers, v3.num_experts, v3.num_groups, v3.top_k) == (58, 256, 8, 8)
    assert v3.expert_bytes == 3 * 7168 * 2048
    assert (PRESETS["Qwen3-235B-A22B"].num_layers, PRESETS["Qwen3-235B-A22B"].num_experts) == (94, 128)
    assert (PRESETS["Mixtral 8x7B"].num_experts, PRESETS["Mixtral 8x7B"].top_k) == (8, 2)
    assert PRESETS["Kimi K2"].num_experts == 384
    for preset in PRESETS.values():
        assert preset.num_experts % preset.num_groups == 0
        assert preset.source.startswith("https://")

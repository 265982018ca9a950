"""The default policy on windows of per-step loads, and its no-duplicate rule."""

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eplb
from eplb.metrics import balancedness, duplicate_gpus, gpu_loads
from eplb.policies import hedge
from eplb.policies.base import copy_counts
from eplb.workloads import FAMILIES, generate_drifting_trace, generate_load

from test_policy_joint import check_contract


def duplicates_allowed(num_experts, num_replicas, num_groups, num_nodes, num_gpus, mode):
    """joint's rule: a GPU may hold two copies of one expert only where it has more slots
    than its row (the layer, or the layer's node in hierarchical mode) has experts."""
    hierarchical = mode == "hierarchical" or (mode == "auto" and num_groups % num_nodes == 0)
    experts_per_row = num_experts // num_nodes if hierarchical else num_experts
    return num_replicas // num_gpus > experts_per_row


@st.composite
def topologies(draw):
    num_nodes = draw(st.sampled_from([1, 2, 4]))
    num_gpus = num_nodes * draw(st.integers(1, 6))
    num_groups = draw(st.sampled_from([g for g in (1, 2, 4, 8) if g % num_nodes == 0] + [1]))
    num_experts = num_groups * draw(st.integers(1, 8))
    fewest = -(-num_experts // num_gpus)
    num_replicas = num_gpus * draw(st.integers(fewest, fewest + 4))
    mode = draw(st.sampled_from(["global", "hierarchical", "auto"]))
    if mode == "hierarchical" and num_groups % num_nodes:
        mode = "global"
    return num_experts, num_replicas, num_groups, num_nodes, num_gpus, mode


@settings(max_examples=40, deadline=None)
@given(topologies(), st.sampled_from(FAMILIES + ("all-zero",)), st.integers(0, 99), st.booleans())
def test_no_gpu_holds_two_copies_of_one_expert_where_the_rule_allows(topology, family, seed, window):
    num_experts, replicas, groups, nodes, gpus, mode = topology
    if family == "all-zero":
        weight = torch.zeros(2, num_experts)
    elif window:
        weight = generate_drifting_trace(family, 1, 4, 2, num_experts, noise=0.3, seed=seed)  # [4, 2, E]
    else:
        weight = generate_load(family, 3, num_experts, seed=seed)
    phy2log, log2phy, logcnt = eplb.rebalance_experts(weight, replicas, groups, nodes, gpus, mode=mode)
    check_contract(weight.sum(0) if weight.dim() == 3 else weight, phy2log, log2phy, logcnt, replicas, gpus)
    if not duplicates_allowed(num_experts, replicas, groups, nodes, gpus, mode):
        assert duplicate_gpus(phy2log, gpus) == 0


def test_duplicates_where_a_gpu_has_more_slots_than_experts():
    """Four slots per GPU and two experts: some GPU must hold an expert twice."""
    weight = generate_load("zipf", 2, 2, seed=0)
    phy2log = eplb.rebalance_experts(weight, 8, 1, 1, 2)[0]
    assert duplicate_gpus(phy2log, 2) > 0


def test_volatility_sees_the_swing_of_each_expert():
    generator = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.0, 0.1, 0.3, 0.6], dtype=torch.float64)
    steps = 4000
    window = 1e6 * torch.exp(sigma * torch.randn(steps, 1, 4, generator=generator, dtype=torch.float64))
    swing = hedge.volatility(window)[0]
    assert swing.tolist() == pytest.approx(sigma.tolist(), abs=0.02)
    steady = torch.full((5, 2, 3), 7.0)
    assert bool((hedge.volatility(steady) == 0).all())
    assert bool((hedge.volatility(steady[:1]) == 0).all())


def test_volatility_takes_the_sampling_noise_of_token_counts_off():
    """Counts drawn around a fixed popularity only carry Poisson noise: no swing left."""
    generator = torch.Generator().manual_seed(1)
    counts = torch.poisson(torch.full((400, 1, 8), 300.0), generator=generator)
    assert float(hedge.volatility(counts).max()) < 0.03
    # The same loads as fractions are not counts: their whole spread, about 1 / sqrt(300), stays.
    assert float(hedge.volatility(counts / 1000).min()) == pytest.approx(300**-0.5, rel=0.15)


def test_a_window_without_swings_is_planned_on_its_sum():
    weight = generate_load("lognormal", 4, 64, seed=2)
    for window in (weight.unsqueeze(0), weight.expand(6, -1, -1) / 6):
        for mode in ("global", "hierarchical"):
            planned = eplb.rebalance_experts(window, 80, 8, 4, 16, mode=mode)[0]
            assert torch.equal(planned, eplb.rebalance_experts(window.sum(0), 80, 8, 4, 16, mode=mode)[0])


@pytest.mark.parametrize("mode", ["global", "hierarchical"])
def test_the_window_plan_is_the_best_of_its_candidates_on_the_scenarios(mode):
    """Per layer, the plan kept has the lightest expected heaviest GPU among the plan on the
    sum and the hedged plans, scored on the same scenarios."""
    window = generate_drifting_trace("lognormal", 1, 10, 6, 64, noise=0.3, seed=4)
    total = window.sum(0)
    chosen = eplb.rebalance_experts(window, 80, 8, 4, 16, mode=mode)[0]
    plain = eplb.rebalance_experts(total, 80, 8, 4, 16, mode=mode)[0]
    swing = hedge.volatility(window)
    scenarios = hedge.next_window_scenarios(total, swing, hedge.SCENARIOS)
    peak = {name: hedge.scenario_peaks(scenarios, p, 64, 16).mean(-1) for name, p in (("chosen", chosen), ("plain", plain))}
    assert bool((peak["chosen"] <= peak["plain"] + 1e-3).all())
    assert not torch.equal(chosen, plain)  # 30% swings: some layer takes a hedged plan


def test_the_next_window_is_centred_near_the_layer_mean_where_loads_differ_no_more_than_they_swing():
    """A uniform load's window deviations are its swings: the estimated levels shrink toward the
    layer's mean. A log-normal load's experts differ far more than 5% swings: kept."""
    window = generate_drifting_trace("uniform", 1, 20, 4, 64, noise=0.05, seed=0)
    swing = hedge.volatility(window)
    log_median, sigma = hedge.next_window_level(window.sum(0), swing)
    level = log_median - swing.square() / 2  # the estimated trend, without the steps' mean
    assert float(level.std(-1).mean()) < 0.4 * float(window.sum(0).log().std(-1).mean())
    assert bool((sigma >= swing - 1e-12).all()) and bool((sigma <= swing * 1.5 + 0.02).all())
    skewed = generate_drifting_trace("lognormal", 1, 20, 4, 64, noise=0.05, seed=0)
    log_median = hedge.next_window_level(skewed.sum(0), hedge.volatility(skewed))[0]
    assert float((log_median - skewed.sum(0).log()).abs().median()) < 0.01


def test_idle_experts_stay_idle_and_a_load_without_swings_is_its_own_scenario():
    window = generate_drifting_trace("zero", 1, 8, 3, 32, noise=0.3, seed=3)
    total = window.sum(0)
    scenarios = hedge.next_window_scenarios(total, hedge.volatility(window), 16)
    idle = (total == 0).unsqueeze(1).expand_as(scenarios)
    assert bool(idle.any()) and bool((scenarios[idle] == 0).all()) and bool((scenarios[~idle] > 0).all())
    steady = hedge.next_window_scenarios(total, torch.zeros_like(total), 5)
    assert torch.equal(steady, total.unsqueeze(1).expand(-1, 5, -1))
    # Without counts' Poisson noise and without swings, the level is the load itself.
    fractions = total.double() / 1000 + 0.5
    log_median, sigma = hedge.next_window_level(fractions, torch.zeros_like(fractions))
    assert torch.allclose(log_median, fractions.log()) and bool((sigma == 0).all())


def test_scenario_peaks_match_the_gpu_loads_of_each_scenario():
    weight = generate_load("zipf", 3, 16, seed=5)
    phy2log = eplb.rebalance_experts(weight, 24, 1, 1, 8)[0]
    scenarios = weight.unsqueeze(1) * torch.rand(3, 5, 16, generator=torch.Generator().manual_seed(0))
    direct = torch.stack([gpu_loads(scenarios[:, k], phy2log, 8).max(-1).values for k in range(5)]).mean(0)
    assert hedge.scenario_peaks(scenarios, phy2log, 16, 8).mean(-1).tolist() == pytest.approx(direct.tolist(), rel=1e-5)


def test_scenario_peaks_of_several_plans_at_once_are_each_plans_own():
    weight = generate_load("lognormal", 4, 32, seed=6)
    plans = torch.stack([eplb.rebalance_experts(weight * (1 + 0.3 * torch.rand(4, 32, generator=torch.Generator()
                                                                                .manual_seed(c))), 48, 1, 1, 8)[0]
                         for c in range(3)])
    scenarios = hedge.next_window_scenarios(weight, torch.full_like(weight, 0.2, dtype=torch.float64), 7)
    together = hedge.scenario_peaks(scenarios, plans, 32, 8)
    assert together.shape == (3, 4, 7)
    for c in range(3):
        assert torch.allclose(together[c], hedge.scenario_peaks(scenarios, plans[c], 32, 8))


def test_scenario_peaks_summed_by_copy_equal_the_product_with_the_share_matrices():
    """The CPU's compiled sum over each GPU's copies and the batched product other devices use
    give the same peaks (float32 sums in another order), however the scenarios are laid out."""
    weight = generate_load("zero", 5, 24, seed=2)
    plans = torch.stack([eplb.rebalance_experts(weight * (1 + 0.5 * torch.rand(5, 24, generator=torch.Generator()
                                                                                .manual_seed(c))), 36, 1, 1, 6)[0]
                         for c in range(4)])
    swing = torch.rand(5, 24, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 0.5
    scenarios = hedge.next_window_scenarios(weight, swing, 33)
    by_product = hedge.scenario_peaks_by_product(scenarios, plans, 24, 6)
    assert torch.allclose(hedge.scenario_peaks(scenarios, plans, 24, 6), by_product, rtol=1e-5)
    assert torch.allclose(hedge.scenario_peaks(scenarios.contiguous(), plans, 24, 6), by_product, rtol=1e-5)


def test_the_next_window_load_is_the_scenarios_mean_scaled_to_the_window():
    """The load the hedged plans are counted and packed on: each layer sums to the window's
    load, a uniform load's deviations shrink toward the layer's mean, a skewed load stays as
    it is, and an idle expert stays idle."""
    window = generate_drifting_trace("uniform", 1, 20, 4, 64, noise=0.05, seed=0)
    total = window.sum(0)
    expected = hedge.next_window_load(total, hedge.volatility(window))
    assert torch.allclose(expected.sum(-1), total.double().sum(-1))
    assert float(expected.log().std(-1).mean()) < 0.5 * float(total.log().std(-1).mean())
    skewed = generate_drifting_trace("lognormal", 1, 20, 4, 64, noise=0.05, seed=0).sum(0)
    swing = torch.zeros_like(skewed, dtype=torch.float64)
    assert torch.allclose(hedge.next_window_load(skewed / 1000 + 0.5, swing), (skewed / 1000 + 0.5).double())
    idle = generate_drifting_trace("zero", 1, 8, 3, 32, noise=0.3, seed=3)
    served = hedge.next_window_load(idle.sum(0), hedge.volatility(idle))
    assert bool((served[idle.sum(0) == 0] == 0).all()) and bool((served[idle.sum(0) > 0] > 0).all())
    # With 30% swings: the scenarios' mean over many draws, rescaled the same way.
    window = generate_drifting_trace("lognormal", 1, 20, 2, 64, noise=0.3, seed=1)
    total, swing = window.sum(0), hedge.volatility(window)
    scenarios = hedge.next_window_scenarios(total, swing, 4000).double().mean(1)
    scenarios *= total.double().sum(-1, keepdim=True) / scenarios.sum(-1, keepdim=True)
    assert float((scenarios / hedge.next_window_load(total, swing) - 1).abs().median()) < 0.01


@pytest.mark.parametrize("family", ["uniform", "lognormal", "zero"])
def test_planning_on_the_window_serves_the_next_window_better_than_its_sum(family):
    """Plan on window i, score on window i + 1 (the ADRS protocol), on swinging traces."""
    windows = generate_drifting_trace(family, 4, 10, 16, 64, noise=0.3, seed=0).view(4, 10, 16, 64)
    scores = {"window": [], "sum": []}
    for i in range(3):
        following = windows[i + 1].sum(0)
        for name, planned in (("window", windows[i]), ("sum", windows[i].sum(0))):
            phy2log = eplb.rebalance_experts(planned, 80, 1, 1, 16)[0]
            scores[name].append(balancedness(gpu_loads(following, phy2log, 16)))
    assert statistics.mean(scores["window"]) > statistics.mean(scores["sum"])


def test_pack_counts_keeps_the_counts_it_is_given():
    weight = generate_load("hot", 4, 32, seed=7).double()
    counts = torch.ones(4, 32, dtype=torch.int64)
    counts[:, :8] = 2
    phy2item = eplb.POLICIES["joint"].pack_counts(weight, counts, 8)
    assert torch.equal(copy_counts(phy2item, 32), counts)
    assert duplicate_gpus(phy2item, 8) == 0

"""Migration-aware rebalance: ``previous=`` relabels a plan onto the placement on the GPUs, and
``balance_tolerance=`` trades a bounded loss of balance for fewer moved copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_contract import check_contract, topologies

import eplb
from eplb.metrics import migration
from eplb.migration import (conform, copies_sent, groups_on_nodes, heaviest_gpu, match_slots,
                            next_window_estimate, recency_weighted_sum)
from eplb.policies.hedge import next_window_load, volatility
from eplb.policies.base import copy_counts, copy_loads

TRACE = "sample_data/traces/deepseek-v3-drift.npz"


def gpu_load_multiset(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> list[list[tuple]]:
    """Per layer, the sorted list of GPUs, each GPU its sorted copy loads: equal lists mean equal GPU loads."""
    copies = copy_loads(weight.double(), phy2log).view(phy2log.shape[0], num_gpus, -1).sort(-1).values
    return [sorted(tuple(gpu) for gpu in layer.tolist()) for layer in copies]


def resolved_nodes(case, mode) -> tuple[int, int, str]:
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    resolved = eplb.Topology(num_replicas, num_groups, num_nodes, num_gpus).validate(weight.shape[-1], mode)
    return (num_groups, num_nodes, resolved) if resolved == "hierarchical" else (1, 1, resolved)


def other_placement(case, mode, seed: int) -> torch.Tensor:
    """A valid placement for the case's topology, planned on an unrelated load (the one "on the GPUs")."""
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    other = torch.rand(weight.shape, generator=torch.Generator().manual_seed(seed)) * 100
    return eplb.rebalance_experts(other, num_replicas, num_groups, num_nodes, num_gpus, policy="zigzag",
                                  mode=mode)[0]


modes = pytest.mark.parametrize("mode", ["auto", "global", "hierarchical"])
policies = pytest.mark.parametrize("policy", sorted(eplb.POLICIES))
examples = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def applicable(case, mode) -> bool:
    _, _, num_groups, num_nodes, _ = case
    return not (mode == "hierarchical" and num_groups % num_nodes)


@policies
@modes
@examples
@given(case=topologies(), seed=st.integers(0, 2**16))
def test_relabelling_never_changes_any_gpu_load(policy, mode, case, seed):
    if not applicable(case, mode):
        return
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    fresh = eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy=policy, mode=mode)[0]
    previous = other_placement(case, mode, seed)
    kept = check_contract(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode, previous=previous)
    assert gpu_load_multiset(weight, kept, num_gpus) == gpu_load_multiset(weight, fresh, num_gpus)
    # the plan as it came is one of the labellings the matching chooses from
    sent = copies_sent(previous, kept, num_gpus, weight.shape[-1])
    assert bool((sent <= copies_sent(previous, fresh, num_gpus, weight.shape[-1])).all())
    groups, nodes, resolved = resolved_nodes(case, mode)
    if resolved == "hierarchical":  # a node's GPUs moved together: groups still on one node each
        assert bool(groups_on_nodes(kept, groups, nodes, weight.shape[-1]).all())


@policies
@modes
@examples
@given(case=topologies(), seed=st.integers(0, 2**16), tolerance=st.sampled_from([0.0, 0.01, 0.1, 0.5]))
def test_balance_tolerance_bounds_the_loss_on_the_planning_load(policy, mode, case, seed, tolerance):
    if not applicable(case, mode):
        return
    weight, num_replicas, num_groups, num_nodes, num_gpus = case
    fresh = eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy=policy, mode=mode)[0]
    previous = other_placement(case, mode, seed)
    kept = check_contract(weight, num_replicas, num_groups, num_nodes, num_gpus, policy, mode, previous=previous,
                          balance_tolerance=tolerance)
    limit = heaviest_gpu(weight, fresh, num_gpus) / (1 - tolerance)
    assert bool((heaviest_gpu(weight, kept, num_gpus) <= limit * (1 + 1e-9) + 1e-9).all())
    relabelled = eplb.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, policy=policy,
                                        mode=mode, previous=previous)[0]
    sent = copies_sent(previous, kept, num_gpus, weight.shape[-1])
    assert bool((sent <= copies_sent(previous, relabelled, num_gpus, weight.shape[-1])).all())
    groups, nodes, resolved = resolved_nodes(case, mode)
    if resolved == "hierarchical":
        assert bool(groups_on_nodes(kept, groups, nodes, weight.shape[-1]).all())


@policies
@modes
def test_window_weights_and_previous_for_every_policy_and_mode(policy, mode):
    window = torch.rand(3, 2, 12, generator=torch.Generator().manual_seed(1)) * 50  # [steps, layers, experts]
    previous = eplb.rebalance_experts(window[0], 16, 4, 2, 8, policy="deepseek", mode=mode)[0]
    plain = check_contract(window, 16, 4, 2, 8, policy, mode)
    kept = check_contract(window, 16, 4, 2, 8, policy, mode, previous=previous)
    assert gpu_load_multiset(window.sum(0), kept, 8) == gpu_load_multiset(window.sum(0), plain, 8)
    check_contract(window, 16, 4, 2, 8, policy, mode, previous=previous, balance_tolerance=0.05)


@policies
def test_a_plan_already_on_the_gpus_moves_nothing(policy):
    weight = torch.rand(4, 24, generator=torch.Generator().manual_seed(2)) * 100
    plan = eplb.rebalance_experts(weight, 32, 4, 2, 8, policy=policy)[0]
    shuffled = plan.view(4, 2, 4, 4)[:, [1, 0]][:, :, [2, 0, 3, 1]].flip(-1).reshape(4, 32)  # nodes, GPUs, slots
    for previous in (plan, shuffled):
        again = eplb.rebalance_experts(weight, 32, 4, 2, 8, policy=policy, previous=previous)[0]
        assert torch.equal(again, previous)


def test_match_slots_keeps_every_copy_whose_expert_the_slot_holds():
    new = torch.tensor([[3, 1, 2, 2], [5, 6, 7, 8]])
    old = torch.tensor([[2, 9, 3, 2], [8, 0, 0, 5]])
    assert match_slots(new, old).tolist() == [[2, 1, 3, 2], [8, 6, 7, 5]]


README = torch.tensor(eplb.presets.DEEPSEEK_README_WEIGHT, dtype=torch.float32)
PLAN = eplb.rebalance_experts(README, 16, 4, 2, 8, policy="deepseek")[0]


@pytest.mark.parametrize(
    "previous, options, message",
    [
        (PLAN[:1], {}, r"previous must be phy2log of shape \[layers, num_replicas\] = \[2, 16\], got shape \(1, 16\)"),
        (PLAN[:, :8], {}, r"got shape \(2, 8\)"),
        (PLAN.double(), {}, "integer expert ids"),
        (PLAN.clone().index_put_((torch.tensor([1]), torch.tensor([4])), torch.tensor(12)), {},
         r"expert id 12 at layer 1, slot 4: expert ids must be in 0..11"),
        (PLAN - 1, {}, "expert id -1"),
        (torch.zeros(2, 16, dtype=torch.int64), {}, "no copy of expert 1 in layer 0"),
        ("not a placement", {}, "previous must be a"),
        (PLAN, {"balance_tolerance": 1.0}, "balance_tolerance is a fraction"),
        (PLAN, {"balance_tolerance": -0.1}, "balance_tolerance is a fraction"),
        (None, {"balance_tolerance": 0.1}, "balance_tolerance needs previous="),
    ],
)
def test_invalid_previous_names_the_rule(previous, options, message):
    with pytest.raises(ValueError, match=message):
        eplb.rebalance_experts(README, 16, 4, 2, 8, previous=previous, **options)


@pytest.mark.parametrize("seed", range(6))
def test_conform_gives_previous_the_plans_copy_counts_changing_only_the_surplus_slots(seed):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.rand(5, 24, generator=generator) * 100
    previous = eplb.rebalance_experts(torch.rand(5, 24, generator=generator) * 100, 40, 1, 1, 8, mode="global")[0]
    plan = eplb.rebalance_experts(weight, 40, 1, 1, 8, mode="global")[0]
    start = conform(previous, plan, weight.double(), 8)
    have, want = copy_counts(previous, 24), copy_counts(plan, 24)
    assert torch.equal(copy_counts(start, 24), want)
    changed = (start != previous).sum(-1)
    assert torch.equal(changed, (want - have).clamp(min=0).sum(-1))  # every other slot keeps its expert


def test_deepseek_without_previous_is_unchanged_by_the_keywords():
    plain = eplb.rebalance_experts(README, 16, 4, 2, 8, policy="deepseek")[0]
    assert torch.equal(plain, eplb.rebalance_experts(README, 16, 4, 2, 8, policy="deepseek", previous=None)[0])


@pytest.mark.parametrize("mode", ["hierarchical", "global"])
def test_on_the_deepseek_v3_trace_the_knob_moves_far_fewer_copies(mode):
    """Two consecutive plans of the sample trace at DeepSeek-V3 shape: relabelling keeps some copies,
    tolerance 0 keeps many more at no loss on the next-window estimate, 1% more still."""
    trace = torch.from_numpy(np.load(TRACE)["trace"]).double()
    before, now = trace[0:8], trace[4:12]
    previous = eplb.rebalance_experts(before, 288, 8, 4, 32, mode=mode)[0]
    fresh = eplb.rebalance_experts(now, 288, 8, 4, 32, mode=mode)[0]
    sent = {"fresh": migration(previous, fresh, 32, 256).total_copies_sent}
    for name, tolerance in (("relabel", None), ("0", 0.0), ("1%", 0.01)):
        kept = eplb.rebalance_experts(now, 288, 8, 4, 32, mode=mode, previous=previous,
                                      balance_tolerance=tolerance)[0]
        sent[name] = migration(previous, kept, 32, 256).total_copies_sent
        load = now.sum(0) if tolerance is None else next_window_estimate(now)  # relabelling: the plan's loads
        limit = heaviest_gpu(load, fresh, 32) / (1 - (tolerance or 0))
        assert bool((heaviest_gpu(load, kept, 32) <= limit * (1 + 1e-9)).all())
    assert sent["fresh"] > sent["relabel"] > 2 * sent["0"] > 0
    assert sent["0"] >= sent["1%"]


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 8), seed=st.integers(0, 2**16), decay=st.sampled_from([0.3, 0.7, 1.0]))
def test_the_recency_weighted_sum_weights_the_latest_steps_most_on_the_sums_scale(steps, seed, decay):
    window = torch.rand(steps, 3, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    estimate = recency_weighted_sum(window, decay)
    weights = torch.linalg.lstsq(window.reshape(steps, -1).T, estimate.reshape(-1, 1)).solution.flatten()
    assert torch.allclose(weights.sum(), torch.tensor(float(steps), dtype=torch.float64), atol=1e-6)
    if steps == 1 or decay == 1.0:  # one step, or no decay: the plain sum
        assert torch.allclose(estimate, window.sum(0))
    else:  # each step weighs decay times the one after it
        assert torch.allclose(weights[:-1], decay * weights[1:], atol=1e-6)


def test_the_estimate_of_a_drifting_window_follows_its_latest_steps():
    """Expert 0's load rises over the window while expert 1's falls: the estimate gives 0 more than the sum."""
    rising = torch.tensor([[[1.0, 4.0, 4.0, 4.0]], [[2.0, 3.0, 4.0, 4.0]], [[4.0, 2.0, 4.0, 4.0]]])
    estimate = recency_weighted_sum(rising)
    summed = rising.sum(0)
    assert estimate[0, 0] / estimate[0, 1] > summed[0, 0] / summed[0, 1]


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_knobs_estimate_is_the_mean_of_the_recency_sum_and_the_plans_trend(steps, seed):
    """A 3-D window: halfway between its recency-weighted sum and the hedge's trend (the load the fresh plan is
    packed on), on the sum's scale; one step: the load itself."""
    window = torch.rand(steps, 3, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 100
    estimate = next_window_estimate(window)
    if steps == 1:
        assert torch.equal(estimate, window[0])
        return
    trend = next_window_load(window.sum(0), volatility(window))
    assert torch.allclose(2 * estimate - recency_weighted_sum(window), trend)
    per_step = window.sum(-1)  # [S, L]: each layer's total per step; the estimate is on S steps' scale
    assert bool((estimate.sum(-1) >= steps * per_step.amin(0) * (1 - 1e-9)).all())
    assert bool((estimate.sum(-1) <= steps * per_step.amax(0) * (1 + 1e-9)).all())

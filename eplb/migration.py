"""Migration-aware rebalance: keep a new plan's copies where the previous placement already has them.

A placement's balance depends only on which copies share a GPU, never on the GPUs'
or slots' labels. So a new plan can be relabelled, at no cost in balance, to overlap
as much as possible with the placement already on the GPUs (``previous``):

* slots inside a GPU are interchangeable;
* GPUs are interchangeable: all of them in global mode, those inside one node in
  hierarchical mode (a GPU may not leave its node: the node holds whole expert groups);
* nodes are interchangeable in hierarchical mode, a node's GPUs moving together.

Each level is an assignment problem solved with ``scipy.optimize.linear_sum_assignment``:
GPU to GPU on the number of copies a GPU already holds, node to node on the best
GPU matching between the two nodes. Inside a GPU the matching has a closed form (a
copy stays in the slot that already holds its expert).

``balance_tolerance`` goes further, in the spirit of DeepSeek EPLB's PR #13 and
vllm-ascend's incremental SwiftBalancer: instead of the plan, a layer may keep the
previous placement with a few copies swapped between GPUs or re-pointed to a hot
expert, the hottest GPU first, when that sends fewer copies and its heaviest GPU on
the next-window estimate (``next_window_estimate``: for a 3-D window the mean of its
steps weighted toward the latest and the hedge's trend estimate; a 2-D weight itself)
is at most ``1 / (1 - tolerance)`` times the plan's. So the whole placement's
balancedness on that estimate is at least ``1 - tolerance`` times the plan's; tolerance 0
moves fewer copies at no loss of balance on it.
In global mode a second edited placement competes, previous first given the plan's
copy counts (``conform``); of the two, a layer keeps the one that does better on the
next-window scenarios of ``eplb.policies.hedge``, under the same bound.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .policies.base import copy_counts, copy_loads
from .policies.hedge import next_window_load, next_window_scenarios, scenario_count, scenario_peaks, volatility


def validate_previous(previous, num_layers: int, num_replicas: int, num_experts: int, device) -> torch.Tensor:
    """Check the placement now on the GPUs: [layers, num_replicas] expert ids, each expert at least once per layer.

    Returns it as an int64 tensor on ``device``. Raises ValueError naming the broken rule.
    """
    if not isinstance(previous, torch.Tensor):
        try:
            previous = torch.as_tensor(previous)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"previous must be a [layers, num_replicas] array of expert ids: {exc}") from None
    if previous.dtype == torch.bool or previous.is_floating_point() or previous.is_complex():
        raise ValueError(f"previous must hold integer expert ids (a phy2log), got dtype {previous.dtype}")
    if tuple(previous.shape) != (num_layers, num_replicas):
        raise ValueError(
            f"previous must be phy2log of shape [layers, num_replicas] = [{num_layers}, {num_replicas}], "
            f"got shape {tuple(previous.shape)}"
        )
    previous = previous.to(device=device, dtype=torch.int64)
    low, high = int(previous.min()), int(previous.max())
    if low < 0 or high >= num_experts:
        bad = (previous < 0) | (previous >= num_experts)
        layer, slot = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"previous holds expert id {int(previous[layer, slot])} at layer {layer}, slot {slot}: "
            f"expert ids must be in 0..{num_experts - 1}"
        )
    missing = copy_counts(previous, num_experts) == 0
    if bool(missing.any()):
        layer, expert = (int(i) for i in missing.nonzero()[0])
        raise ValueError(
            f"previous has no copy of expert {expert} in layer {layer} ({int(missing.sum())} (layer, expert) "
            "pairs without a copy): a placement needs at least one copy of every expert"
        )
    return previous


def presence(phy2log: torch.Tensor, num_gpus: int, num_experts: int) -> torch.Tensor:
    """[L, num_gpus, num_experts] bool: the GPU holds at least one copy of the expert. phy2log: [L, P]."""
    num_layers = phy2log.shape[0]
    held = torch.zeros(num_layers, num_gpus, num_experts, dtype=torch.bool, device=phy2log.device)
    return held.scatter_(-1, phy2log.view(num_layers, num_gpus, -1), True)


def copies_sent(old: torch.Tensor, new: torch.Tensor, num_gpus: int, num_experts: int) -> torch.Tensor:
    """Expert copies GPUs must receive to go from placement old to new (both [L, P]): -> [L] int64."""
    return (presence(new, num_gpus, num_experts) & ~presence(old, num_gpus, num_experts)).flatten(1).sum(-1)


def overlap(new: torch.Tensor, old: torch.Tensor, num_experts: int) -> torch.Tensor:
    """How well each new GPU's copies fit each old GPU: new, old [L, G, s] -> [L, G, G] float64 score.

    score[l, g, h] = (P + 1) * (experts held by both new GPU g and old GPU h) + (further
    copies in common): sharing an expert saves sending it, which comes first whatever
    the rest; a second copy in common keeps one more slot unchanged.
    """
    num_layers, num_gpus, slots = new.shape

    def held(phy2log: torch.Tensor) -> torch.Tensor:  # [L, G, E] copies of each expert per GPU
        return copy_counts(phy2log.reshape(-1, slots), num_experts).view(num_layers, num_gpus, num_experts)

    count_new, count_old = held(new), held(old)
    score = torch.zeros(num_layers, num_gpus, num_gpus, dtype=torch.float64, device=new.device)
    for k in range(1, int(max(count_new.max(), count_old.max())) + 1):
        weight = float(num_gpus * slots + 1) if k == 1 else 1.0
        # float32 products are exact here: each entry counts at most E experts
        score += weight * ((count_new >= k).float() @ (count_old >= k).float().transpose(1, 2)).double()
    return score


def match_gpus(score: np.ndarray, num_nodes: int) -> np.ndarray:
    """Which new GPU goes where: score [L, G, G] (new x old) -> gpu_at [L, G], gpu_at[l, h] = new GPU at position h.

    num_nodes > 1 keeps every GPU inside its node and moves nodes whole: the node
    matching weighs node pairs by their best GPU matching.
    """
    num_layers, num_gpus, _ = score.shape
    per_node = num_gpus // num_nodes
    gpu_at = np.empty((num_layers, num_gpus), dtype=np.int64)
    blocks = score.reshape(num_layers, num_nodes, per_node, num_nodes, per_node)
    for layer in range(num_layers):
        inner = {}  # (new node, old node) -> (old GPU order within the node)
        node_score = np.empty((num_nodes, num_nodes))
        for n in range(num_nodes):
            for m in range(num_nodes):
                rows, cols = linear_sum_assignment(blocks[layer, n, :, m, :], maximize=True)
                inner[n, m] = cols
                node_score[n, m] = blocks[layer, n, rows, m, cols].sum()
        new_nodes, old_nodes = linear_sum_assignment(node_score, maximize=True)
        for n, m in zip(new_nodes, old_nodes):
            gpu_at[layer, m * per_node + inner[n, m]] = n * per_node + np.arange(per_node)
    return gpu_at


def match_slots(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Order each GPU's new copies so that as many as possible sit in a slot that holds their expert now.

    new, old: [R, s] expert ids of R GPUs' slots. Returns new's rows permuted. The
    k-th copy of an expert in new takes the slot of its k-th copy in old; the rest
    fill the remaining slots in order.
    """
    rows, slots = new.shape
    earlier = torch.ones(slots, slots, dtype=torch.bool, device=new.device).tril(-1)

    def keyed(ids: torch.Tensor) -> torch.Tensor:  # expert * s + (rank of this copy among its expert's in the row)
        rank = ((ids.unsqueeze(-1) == ids.unsqueeze(-2)) & earlier).sum(-1)
        return ids * slots + rank

    same = keyed(new).unsqueeze(-1) == keyed(old).unsqueeze(-2)  # [R, new slot, old slot], at most one per row
    stays, kept_slot = same.any(-1), same.int().argmax(-1)
    taken = same.any(-2)
    free = taken.int().argsort(dim=-1, stable=True)  # free old slots first, in slot order
    nth_free = (~stays).long().cumsum(-1) - 1
    target = torch.where(stays, kept_slot, free.gather(-1, nth_free.clamp(min=0)))
    return torch.empty_like(new).scatter_(-1, target, new)


def relabel(phy2log: torch.Tensor, previous: torch.Tensor, num_experts: int, num_gpus: int,
            num_nodes: int) -> torch.Tensor:
    """Relabel GPUs, nodes and slots of phy2log [L, P] to overlap most with previous [L, P]; same GPU loads.

    num_nodes: 1 when every GPU is interchangeable (global mode), else the node count
    (hierarchical mode: GPUs stay in their node, nodes move whole).
    """
    num_layers, num_replicas = phy2log.shape
    slots = num_replicas // num_gpus
    new = phy2log.view(num_layers, num_gpus, slots)
    old = previous.view(num_layers, num_gpus, slots)
    gpu_at = match_gpus(overlap(new, old, num_experts).cpu().numpy(), num_nodes)
    placed = new.gather(1, torch.from_numpy(gpu_at).to(new.device).unsqueeze(-1).expand(-1, -1, slots))
    return match_slots(placed.reshape(-1, slots), old.reshape(-1, slots)).view(num_layers, num_replicas)


def heaviest_gpu(weight: torch.Tensor, phy2log: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """Max GPU load per layer: weight [L, E], phy2log [L, P] -> [L] float64."""
    return copy_loads(weight.double(), phy2log).view(phy2log.shape[0], num_gpus, -1).sum(-1).max(-1).values


def repair(previous: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, budget: torch.Tensor, num_gpus: int,
           num_nodes: int, max_steps: int, origin: torch.Tensor | None = None) -> torch.Tensor:
    """Edit previous [L, P] a copy or two at a time until each layer's heaviest GPU is at most target [L].

    weight: [L, E] float64 planning load. Each step, in every layer still above its
    target, takes the better of two edits on the heaviest GPU, if either helps:

    * swap: one of its copies trades places with a copy on another GPU of the same
      node (two copies sent); copy counts stay;
    * re-point: one of its slots, holding an expert with another copy elsewhere, takes
      a new copy of the expert with the largest load per copy in the same node (one
      copy sent); copy counts change, so every GPU holding either expert is rescored.

    Edits are scored by how much they lower the load above target summed over GPUs,
    per copy sent, so that ties at the top still make progress.

    An edit never puts a second copy of an expert on a GPU, nor an expert on a node
    that does not hold it already (so groups stay on their nodes). A layer stops where
    no edit helps or once it has sent ``budget`` [L] copies (what the plan would send);
    the caller checks which layers reached their target.
    """
    phy2log = previous.clone()
    num_layers, num_replicas = phy2log.shape
    num_experts = weight.shape[-1]
    slots = num_replicas // num_gpus
    per_node = num_gpus // num_nodes
    layers = torch.arange(num_layers, device=phy2log.device)
    gpu_of_slot = torch.arange(num_replicas, device=phy2log.device) // slots  # [P]
    node_of_gpu = torch.arange(num_gpus, device=phy2log.device) // per_node  # [G]
    # copies of each expert per GPU, kept up to date edit by edit: [L, G * E] int32
    held = copy_counts(phy2log.view(-1, slots), num_experts).view(num_layers, -1).int()
    held_before = held > 0 if origin is None else copy_counts(origin.view(-1, slots), num_experts).view(num_layers, -1) > 0
    for _ in range(max_steps):
        logcnt = copy_counts(phy2log, num_experts)
        per_copy = weight / logcnt.clamp(min=1)  # [L, E]
        copy = per_copy.gather(-1, phy2log)  # [L, P]
        gpu = copy.view(num_layers, num_gpus, slots).sum(-1)  # [L, G]
        peak, hot = gpu.max(-1)
        # edits never make a duplicate, so each slot whose expert its GPU lacked before is one copy sent
        on_gpu = gpu_of_slot * num_experts + phy2log  # [L, P] index into held
        sent = (~held_before.gather(1, on_gpu)).sum(-1)
        active = (peak > target * (1 + 1e-12)) & (sent < budget)
        if not bool(active.any()):
            break
        hot_held = held.view(num_layers, num_gpus, num_experts)[layers, hot] > 0  # [L, E]
        hot_slots = hot.unsqueeze(-1) * slots + torch.arange(slots, device=phy2log.device)  # [L, s]
        hot_experts = phy2log.gather(-1, hot_slots)  # [L, s]
        hot_copy = copy.gather(-1, hot_slots)
        same_node = node_of_gpu[gpu_of_slot].unsqueeze(0) == node_of_gpu[hot].unsqueeze(-1)  # [L, P]

        # Swap slot i of the hot GPU with slot j elsewhere: loads hot - d, other + d, d = c_i - c_j.
        limit = target.view(-1, 1, 1)
        excess = (gpu - target.unsqueeze(-1)).clamp(min=0)  # [L, G] load above the target
        d = hot_copy.unsqueeze(-1) - copy.unsqueeze(1)  # [L, s, P]
        other = gpu.gather(-1, gpu_of_slot.expand(num_layers, -1)).unsqueeze(1)  # [L, 1, P] load of slot j's GPU
        swap_gain = ((peak.view(-1, 1, 1) - d - limit).clamp(min=0) + (other + d - limit).clamp(min=0)
                     - excess.gather(-1, hot.unsqueeze(-1)).unsqueeze(-1) - (other - limit).clamp(min=0))
        ok = (same_node & (gpu_of_slot.unsqueeze(0) != hot.unsqueeze(-1))).unsqueeze(1) & (d > 0)
        ok &= ~hot_held.gather(-1, phy2log).unsqueeze(1)  # the hot GPU must not hold slot j's expert
        holds_hot = held.view(num_layers, num_gpus, num_experts).gather(
            2, hot_experts.unsqueeze(1).expand(-1, num_gpus, -1)) > 0  # [L, G, s]
        ok &= ~holds_hot[:, gpu_of_slot].transpose(1, 2)  # nor slot j's GPU slot i's expert
        swap_gain = torch.where(ok, swap_gain / 2, torch.inf).flatten(1)  # change in excess per copy sent
        swap_best, swap_at = swap_gain.min(-1)

        # Re-point slot i of the hot GPU to a new copy of expert y (largest load per copy in the node).
        node_experts = torch.zeros(num_layers, num_experts, dtype=torch.bool, device=phy2log.device)
        node_experts.scatter_(-1, torch.where(same_node, phy2log, hot_experts[:, :1]), True)
        candidates = node_experts & ~hot_held
        y = torch.where(candidates, per_copy, -1.0).argmax(-1)  # [L]
        new_count = logcnt.unsqueeze(1).expand(-1, slots, -1).clone()  # [L, s, E]
        new_count.scatter_add_(-1, hot_experts.unsqueeze(-1), torch.full_like(hot_experts.unsqueeze(-1), -1))
        new_count.scatter_add_(-1, y.view(-1, 1, 1).expand(-1, slots, 1), torch.ones_like(hot_experts.unsqueeze(-1)))
        moved = phy2log.unsqueeze(1).expand(-1, slots, -1).clone()  # [L, s, P]
        moved.scatter_(-1, hot_slots.unsqueeze(-1), y.view(-1, 1, 1).expand(-1, slots, 1))
        moved_gpu = (weight.unsqueeze(1) / new_count.clamp(min=1)).gather(-1, moved).view(
            num_layers, slots, num_gpus, slots).sum(-1)  # [L, s, G]
        point_gain = (moved_gpu - limit).clamp(min=0).sum(-1) - excess.sum(-1, keepdim=True)  # [L, s]
        point_ok = (logcnt.gather(-1, hot_experts) > 1) & candidates.gather(-1, y.unsqueeze(-1))
        point_gain = torch.where(point_ok, point_gain, torch.inf)
        point_best, point_at = point_gain.min(-1)

        use_point = point_best <= swap_best
        best = torch.minimum(point_best, swap_best)
        improve = active & (best < -1e-9 * target)
        if not bool(improve.any()):
            break
        rows = (improve & use_point).nonzero().flatten()  # re-points
        slot = hot_slots[rows, point_at[rows]]
        old, new = phy2log[rows, slot], y[rows]
        move(held, rows, gpu_of_slot[slot] * num_experts, old, new)
        phy2log[rows, slot] = new
        rows = (improve & ~use_point).nonzero().flatten()  # swaps
        i, j = hot_slots[rows, swap_at[rows] // num_replicas], swap_at[rows] % num_replicas
        a, b = phy2log[rows, i], phy2log[rows, j]
        move(held, rows, gpu_of_slot[i] * num_experts, a, b)
        move(held, rows, gpu_of_slot[j] * num_experts, b, a)
        phy2log[rows, i], phy2log[rows, j] = b, a
    return phy2log


def move(held: torch.Tensor, rows: torch.Tensor, gpu_offset: torch.Tensor, old: torch.Tensor,
         new: torch.Tensor) -> None:
    """On each GPU (rows of held [L, G * E], GPU g at offset g * E) one copy of old becomes one of new."""
    held.index_put_((rows, gpu_offset + old), torch.full_like(old, -1, dtype=held.dtype), accumulate=True)
    held.index_put_((rows, gpu_offset + new), torch.ones_like(new, dtype=held.dtype), accumulate=True)


def conform(previous: torch.Tensor, plan: torch.Tensor, weight: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """previous [L, P] given the plan's [L, P] copy counts: surplus copies hand their slots to missing ones.

    weight: [L, E] planning load. Per layer, an expert with more copies than the plan
    gives up its copies on the heaviest GPUs; the missing copies, heaviest first, take
    the freed slot on the lightest GPU not holding their expert (a GPU that holds it
    only when no other freed slot is left). Loads count each copy at the plan's split.
    """
    num_layers, num_replicas = previous.shape
    num_experts = weight.shape[-1]
    slots = num_replicas // num_gpus
    out = previous.cpu().numpy().copy()
    have = copy_counts(previous, num_experts).cpu().numpy()
    want = copy_counts(plan, num_experts).cpu().numpy()
    load = weight.double().cpu().numpy() / np.maximum(want, 1)
    for layer in np.nonzero((have != want).any(-1))[0]:
        row, per_copy, need = out[layer], load[layer], want[layer] - have[layer]
        gpu = per_copy[row].reshape(num_gpus, slots).sum(-1)
        freed = []
        for expert in np.nonzero(need < 0)[0]:
            at = np.nonzero(row == expert)[0]
            for slot in at[np.argsort(-gpu[at // slots], kind="stable")][: -need[expert]]:
                gpu[slot // slots] -= per_copy[expert]
                freed.append(slot)
                row[slot] = -1
        missing = np.repeat(np.arange(num_experts), np.maximum(need, 0))
        free = np.array(freed)
        for expert in missing[np.argsort(-per_copy[missing], kind="stable")]:
            gpus = free // slots
            holds = (row.reshape(num_gpus, slots) == expert).any(-1)[gpus]
            pick = np.argmin(gpu[gpus] + np.where(holds, np.inf if not holds.all() else 0.0, 0.0))
            row[free[pick]] = expert
            gpu[gpus[pick]] += per_copy[expert]
            free = np.delete(free, pick)
    return torch.from_numpy(out).to(previous.device)


def doubled(phy2log: torch.Tensor, num_gpus: int, num_experts: int) -> torch.Tensor:
    """(GPU, expert) pairs with more than one copy of the expert on the GPU, per layer: phy2log [L, P] -> [L]."""
    num_layers, num_replicas = phy2log.shape
    held = copy_counts(phy2log.reshape(-1, num_replicas // num_gpus), num_experts)
    return (held > 1).view(num_layers, -1).sum(-1)


def groups_on_nodes(phy2log: torch.Tensor, num_groups: int, num_nodes: int, num_experts: int) -> torch.Tensor:
    """[L] bool: every expert group of the layer sits on one node (hierarchical mode's rule). phy2log: [L, P]."""
    group = phy2log // (num_experts // num_groups)
    held = presence(group, num_nodes, num_groups)  # [L, nodes, groups]
    return (held.sum(1) == 1).all(-1)


RECENCY_DECAY = 0.7
"""Weight of a window's step against the step after it in ``recency_weighted_sum`` (1: the plain sum)."""


def recency_weighted_sum(window: torch.Tensor, decay: float = RECENCY_DECAY) -> torch.Tensor:
    """A window's steps weighted toward the latest: window [S, L, E] -> [L, E] float64.

    Step k weighs decay^(S - 1 - k), scaled so that the weights sum to S (the plain sum's
    scale): a drifting load's latest steps tell more of what comes next than its oldest.
    """
    steps = window.shape[0]
    weights = decay ** torch.arange(steps - 1, -1, -1, dtype=torch.float64, device=window.device)
    return torch.einsum("s,sle->le", weights * (steps / weights.sum()), window.double())


def next_window_estimate(window: torch.Tensor, swing: torch.Tensor | None = None) -> torch.Tensor:
    """The load the knob edits toward: window [S, L, E] -> [L, E] float64, on the sum's scale.

    swing: ``volatility(window)`` [L, E] where the caller has it already (computed when None).

    The mean of two guesses of the next window: ``recency_weighted_sum`` (the latest steps
    count most) and the hedge's trend estimate, the load the fresh plan is packed on
    (``eplb.policies.hedge.next_window_load``). Either alone loses more somewhere: edited on
    the recency sum alone, a layer stops short of the plan's trend on drifting traces (t = 0
    lost 1.8% of the next window on drifting Zipf, global); on the trend alone the edits
    follow the plan so closely that few copies are saved (4.1x on the sample trace, global).
    One step (a 2-D weight): the load itself.
    """
    if window.shape[0] == 1:
        return window[0].double()
    swing = volatility(window) if swing is None else swing
    return (recency_weighted_sum(window) + next_window_load(window.double().sum(0), swing)) / 2


def keep_in_place(phy2log: torch.Tensor, previous: torch.Tensor, weight: torch.Tensor, num_groups: int,
                  num_nodes: int, num_gpus: int, balance_tolerance: float | None = None) -> torch.Tensor:
    """The plan phy2log [L, P] moved as little as it can from previous [L, P], the placement on the GPUs.

    weight: the planning load, [L, E] or a window of per-step loads [S, L, E] (its
    ``next_window_estimate`` edited on, its steps' swings kept
    for the next-window scenarios). num_groups, num_nodes: 1, 1 in global mode.
    balance_tolerance None: relabel only (the plan's GPU loads, relabelled). A number t in
    [0, 1): a layer may instead take previous edited a copy or two at a time (``repair``),
    when that sends fewer copies and its heaviest GPU on the estimate is at most
    1 / (1 - t) times the plan's (t = 0: no loss of balance on the estimate; with a 2-D
    weight, on the load itself). In global mode two edited placements compete: previous as it is, and
    previous first given the plan's copy counts (``conform``); a layer takes, of those
    that reach the target and hold no more doubled (GPU, expert) pairs than the plan, the
    one whose heaviest GPU is lightest on average over the next-window scenarios of
    ``eplb.policies.hedge`` (with a 2-D weight: on the load itself).
    """
    num_experts = weight.shape[-1]
    kept = relabel(phy2log, previous, num_experts, num_gpus, num_nodes)
    if balance_tolerance is None:
        return kept
    window = weight.double() if weight.dim() == 3 else weight.double().unsqueeze(0)
    swing = volatility(window)  # [L, E]: for the estimate and the next-window scenarios
    weight = next_window_estimate(window, swing)
    target = heaviest_gpu(weight, phy2log, num_gpus) / (1 - balance_tolerance)
    budget = copies_sent(previous, kept, num_gpus, num_experts)
    if num_nodes > 1:  # a previous layer with a group split over nodes is no hierarchical placement to edit
        budget = torch.where(groups_on_nodes(previous, num_groups, num_nodes, num_experts), budget, 0)
    steps = min(max(4 * num_gpus, 32), 512)  # a few edits per GPU: each step fixes one GPU per layer
    edited = [repair(previous, weight, target, budget, num_gpus, num_nodes, steps)]
    if num_nodes == 1:  # conform may put an expert on any GPU: only where groups need not stay on nodes
        start = conform(previous, phy2log, weight, num_gpus)
        edited.append(repair(start, weight, target, budget, num_gpus, num_nodes, steps, origin=previous))
    reached = torch.stack([(heaviest_gpu(weight, e, num_gpus) <= target * (1 + 1e-12))
                           & (copies_sent(previous, e, num_gpus, num_experts) < budget) for e in edited])  # [C, L]
    if len(edited) > 1:  # conform may double an expert on a GPU where no other slot was free: not beyond the plan
        reached[1] &= doubled(edited[1], num_gpus, num_experts) <= doubled(phy2log, num_gpus, num_experts)
    if len(edited) == 1:
        return torch.where(reached[0].unsqueeze(-1), edited[0], kept)
    scenarios = next_window_scenarios(weight, swing, scenario_count(*weight.shape))
    score = torch.stack([scenario_peaks(scenarios, e, num_experts, num_gpus).double().mean(-1) for e in edited])
    best = torch.where(reached, score, torch.inf).argmin(0)  # [L]
    chosen = torch.stack(edited).gather(0, best.view(1, -1, 1).expand(1, -1, edited[0].shape[-1]))[0]
    return torch.where(reached.any(0).unsqueeze(-1), chosen, kept)

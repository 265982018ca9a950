"""DeepSeek's greedy EPLB, bit for bit: the reference every other policy is measured against.

Follows deepseek-ai/EPLB ``eplb.py``: replication repeatedly adds a copy to the
expert with the largest load per copy; packing takes items heaviest first and
puts each on the lightest pack that still has room. The result is DeepSeek's
``phy2log`` exactly, on every input, which takes the published code's arithmetic
as well as its algorithm:

* loads are planned in float32 on the CPU, whatever the input's dtype and device
  (the published code calls ``weight.float().cpu()``);
* items are taken in the order of torch's default sort, descending, on the same
  float32 rows. That sort is not stable: on the CPU, equal loads come out as its
  introsort or x86-simd-sort leaves them, which is not input order once a row has
  17 or more items. Calling the same sort on the same rows reproduces it;
* pack loads are summed in float32, one item at a time, and ties between packs go
  to the lowest pack index;
* inside a pack, items take slots in the order they arrived;
* a redundant copy goes to the first expert with the largest float32 load per copy.

The published packing is a Python loop per row that scans every pack for every
item. Here the same greedy runs on all rows at once (one numpy step per item), or,
for a handful of rows, per row with a heap of packs: the same choices, several
times faster.
"""

from __future__ import annotations

import heapq
from array import array

import numpy as np
import torch

from .base import PlacementSteps, Policy

LOCKSTEP_ROWS = 8
"""From this many rows on, packing steps through all rows at once; below it, row by row."""

FLOAT32_SAFE = 1e38
"""Rows whose load stays below this can never reach float32 infinity in a partial sum."""


def heaviest_first(weight: torch.Tensor) -> torch.Tensor:
    """The published item order: torch's default (unstable) descending sort. [B, n] -> [B, n] int64."""
    return weight.sort(dim=-1, descending=True).indices


def inverse(perm: torch.Tensor) -> torch.Tensor:
    """Inverse of each row's permutation: [B, n] int64 -> [B, n] int64."""
    positions = torch.arange(perm.shape[1], dtype=torch.int64).expand(perm.shape)
    return torch.empty_like(perm).scatter_(1, perm, positions)


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's greedy packing: n items into num_packs packs of n // num_packs each.

    weight: [B, n] float32 on the CPU, n divisible by num_packs. Returns
    (pack_index, rank_in_pack), both [B, n] int64: each item's pack and its place
    among the pack's items in the order they were packed.
    """
    num_rows, num_items = weight.shape
    per_pack = num_items // num_packs
    if per_pack == 1:  # the published code keeps items in place when each pack takes one
        return torch.arange(num_items).expand(num_rows, -1).clone(), torch.zeros(num_rows, num_items, dtype=torch.int64)
    order = heaviest_first(weight)
    if num_packs == 1:
        return torch.zeros(num_rows, num_items, dtype=torch.int64), inverse(order)
    in_order = weight.gather(1, order)  # [B, n] float32, heaviest first
    safe = float(in_order.double().sum(-1).max()) < FLOAT32_SAFE
    if num_rows >= LOCKSTEP_ROWS and safe:
        packs, ranks = _pack_in_lockstep(in_order.numpy(), num_packs, per_pack)
    else:
        packs, ranks = _pack_row_by_row(in_order.tolist(), num_packs, per_pack)
    # packs[b, k], ranks[b, k]: pack and rank of the k-th item taken, order[b, k].
    return torch.empty_like(packs).scatter_(1, order, packs), torch.empty_like(ranks).scatter_(1, order, ranks)


def _pack_in_lockstep(in_order: np.ndarray, num_packs: int, per_pack: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy on all rows at once, one step per item: in_order [B, n] float32 -> (packs, ranks) [B, n] int64.

    Full packs read as +inf, so argmin (the first minimum) finds the lightest pack with
    room, lowest index first; the caller makes sure no real load reaches +inf.
    """
    num_rows, num_items = in_order.shape
    load = np.zeros((num_rows, num_packs), dtype=np.float32)
    flat_load, count = load.reshape(-1), np.zeros(num_rows * num_packs, dtype=np.int64)
    row_start = np.arange(num_rows) * num_packs
    columns = np.ascontiguousarray(in_order.T)  # [n, B]: the k-th item of every row
    packs = np.empty((num_items, num_rows), dtype=np.int64)
    ranks = np.empty((num_items, num_rows), dtype=np.int64)
    full = np.float32(np.inf)
    for k in range(num_items):
        pack = load.argmin(axis=1)
        packs[k] = pack
        flat = row_start + pack
        rank = count[flat]
        ranks[k] = rank
        count[flat] = rank + 1
        flat_load[flat] = np.where(rank + 1 == per_pack, full, flat_load[flat] + columns[k])  # float32 sums
    return torch.from_numpy(packs.T.copy()), torch.from_numpy(ranks.T.copy())


def _pack_row_by_row(in_order: list[list[float]], num_packs: int, per_pack: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy one row at a time, with a heap of (load, pack): in_order [B][n] -> (packs, ranks) [B, n] int64.

    The heap's smallest entry is the lightest pack with room, lowest index on ties; a
    full pack leaves the heap. Loads are rounded to float32 after every addition (by
    storing them in a float32 array), as the published code's float32 tensors do.
    """
    as_float32 = array("f", [0.0])
    start = [(0.0, pack) for pack in range(num_packs)]  # sorted, so already a heap
    packs, ranks = [], []
    for row in in_order:
        heap, count, row_packs, row_ranks = list(start), [0] * num_packs, [], []
        for item_load in row:
            load, pack = heap[0]
            rank = count[pack]
            row_packs.append(pack)
            row_ranks.append(rank)
            count[pack] = rank + 1
            if rank + 1 == per_pack:
                heapq.heappop(heap)
            else:
                as_float32[0] = load + item_load
                heapq.heapreplace(heap, (as_float32[0], pack))
        packs.append(row_packs)
        ranks.append(row_ranks)
    return torch.tensor(packs, dtype=torch.int64), torch.tensor(ranks, dtype=torch.int64)


def replicate_experts(weight: torch.Tensor, num_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's replication: weight [B, n] float32 -> (phy2item [B, num_slots], logcnt [B, n]) int64.

    Slot i < n holds item i; each further slot holds a copy of the item with the
    largest load per copy (the first such item on ties), which then has one copy more.
    """
    num_rows, num_items = weight.shape
    rows = torch.arange(num_rows)
    logcnt = torch.ones(num_rows, num_items, dtype=torch.int64)
    extra = []
    for _ in range(num_slots - num_items):
        hottest = (weight / logcnt).max(dim=-1).indices  # [B]
        extra.append(hottest)
        logcnt[rows, hottest] += 1
    phy2item = torch.arange(num_items).repeat(num_rows, 1)
    return (torch.cat([phy2item, torch.stack(extra, dim=1)], dim=1) if extra else phy2item), logcnt


class DeepSeekGreedy(Policy):
    name = "deepseek"
    summary = "DeepSeek's reference: greedy copies by largest load per copy, greedy equal-count packing."

    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        return balanced_packing(weight.float().cpu(), num_packs)[0].to(weight.device)

    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        return replicate_experts(weight.float().cpu(), num_slots)[0].to(weight.device)

    def steps(
        self, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
    ) -> PlacementSteps:
        """The published hierarchical placement, step by step (see ``PlacementSteps``).

        Groups and copies take slots in the order the packing took them, which is where
        DeepSeek's placement differs from ``Policy.steps`` (heaviest first, ties in
        input order) when loads tie.
        """
        device = weight.device
        weight = weight.float().cpu()
        num_layers, num_experts = weight.shape
        group_size = num_experts // num_groups
        experts_per_node = num_experts // num_nodes

        # Step 1: groups onto nodes; a node's groups in the order it took them.
        group_load = weight.unflatten(-1, (num_groups, group_size)).sum(-1)  # [L, groups]
        group_node, group_rank = balanced_packing(group_load, num_nodes)
        group_order = inverse(group_node * (num_groups // num_nodes) + group_rank)  # [L, groups], node-major
        mlog2log = (group_order.unsqueeze(-1) * group_size + torch.arange(group_size)).flatten(1)  # [L, E]

        # Step 2: replicate inside every node, pack each node's copies onto its GPUs.
        node_weight = weight.gather(-1, mlog2log).view(num_layers * num_nodes, experts_per_node)
        phy2mlog, logcnt = replicate_experts(node_weight, num_replicas // num_nodes)  # [L * N, P / N]
        copy_load = (node_weight / logcnt).gather(-1, phy2mlog)
        copy_gpu, copy_rank = balanced_packing(copy_load, num_gpus // num_nodes)
        slot_copy = inverse(copy_gpu * (num_replicas // num_gpus) + copy_rank)  # [L * N, P / N]
        node_phy2mlog = phy2mlog.gather(-1, slot_copy)
        node_offset = torch.arange(num_nodes).view(1, -1, 1) * experts_per_node
        phy2mlog = (node_phy2mlog.view(num_layers, num_nodes, -1) + node_offset).flatten(1)  # [L, P]
        return PlacementSteps(
            group_load=group_load.to(device),
            group_node=group_node.to(device),
            mlog2log=mlog2log.to(device),
            node_weight=node_weight.view(num_layers, num_nodes, experts_per_node).to(device),
            node_phy2mlog=node_phy2mlog.view(num_layers, num_nodes, -1).to(device),
            phy2log=mlog2log.gather(1, phy2mlog).to(device),
        )

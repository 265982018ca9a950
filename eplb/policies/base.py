"""The policy plug-in interface and the hierarchical placement every policy shares.

A policy answers two questions, both batched over independent rows (layers, or
layers x nodes):

* ``pack(weight, num_packs)``: split ``n`` items into ``num_packs`` packs of
  exactly ``n // num_packs`` items each, keeping the heaviest pack light;
* ``replicate_and_pack(weight, num_slots, num_bins)``: give every item one or
  more copies, ``num_slots`` copies in all, and lay them out bin by bin.

``Policy.place`` composes them the way DeepSeek's EPLB does:

1. sum each expert group's load and pack the groups onto nodes;
2. inside each node, replicate its experts into the node's slots and pack the
   copies onto the node's GPUs.

Global mode is the same with a single group on a single node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


def order_by_pack(pack_index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Order items pack by pack, heaviest first inside a pack (ties keep input order).

    pack_index, weight: [B, n]. Returns [B, n] item indices: the items of pack 0,
    then pack 1, and so on. This is the slot order DeepSeek's packing produces,
    where each pack fills in the order of decreasing weight.
    """
    by_weight = weight.sort(dim=-1, descending=True, stable=True).indices
    by_pack = pack_index.gather(-1, by_weight).sort(dim=-1, stable=True).indices
    return by_weight.gather(-1, by_pack)


def copy_counts(phy2log: torch.Tensor, num_logical: int) -> torch.Tensor:
    """Copies per logical item. phy2log: [B, S] int64 -> logcnt [B, num_logical] int64."""
    logcnt = torch.zeros(phy2log.shape[0], num_logical, dtype=torch.int64, device=phy2log.device)
    return logcnt.scatter_add_(1, phy2log, torch.ones_like(phy2log))


def copies_from_counts(logcnt: torch.Tensor) -> torch.Tensor:
    """Expand counts into a copy list: logcnt [B, n] (each row summing to S) -> [B, S].

    Row b lists item 0 logcnt[b, 0] times, then item 1, and so on.
    """
    num_rows, num_items = logcnt.shape
    items = torch.arange(num_items, device=logcnt.device).repeat(num_rows)
    return items.repeat_interleave(logcnt.flatten()).view(num_rows, -1)


def copy_loads(weight: torch.Tensor, phy2log: torch.Tensor) -> torch.Tensor:
    """Load each copy carries, the item's load split evenly over its copies.

    weight: [B, n] float, phy2log: [B, S] -> [B, S] float.
    """
    logcnt = copy_counts(phy2log, weight.shape[-1])
    return (weight / logcnt.clamp(min=1)).gather(-1, phy2log)


class Policy(ABC):
    """An EPLB policy. Subclasses define packing and (optionally) replication."""

    name: str = ""
    summary: str = ""

    @abstractmethod
    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        """Assign items to packs with equal item counts.

        weight: [B, n] float, n divisible by num_packs.
        Returns pack_index [B, n] int64 in [0, num_packs), each pack used n // num_packs times.
        """

    @abstractmethod
    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        """Choose copies: weight [B, n] -> copy list [B, num_slots] of item ids.

        Every item appears at least once. The list order is the tie-break order
        used when the copies are packed.
        """

    def replicate_and_pack(self, weight: torch.Tensor, num_slots: int, num_bins: int,
                           rows_per_layer: int = 1) -> torch.Tensor:
        """Replicate then pack: weight [B, n] -> phy2log [B, num_slots], bins contiguous.

        Slot s belongs to bin s // (num_slots // num_bins). Rows come in runs of
        ``rows_per_layer`` (a layer's nodes in hierarchical mode): only the heaviest bin
        of a run counts for balancedness, which a search may use to stop early on the
        others. Policies that choose copy counts and packing together override this.
        """
        phy2item = self.replicate(weight, num_slots)
        loads = copy_loads(weight, phy2item)
        bins = self.pack(loads, num_bins)
        return phy2item.gather(-1, order_by_pack(bins, loads))

    def steps(
        self, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
    ) -> "PlacementSteps":
        """Hierarchical placement with every intermediate result kept (see ``PlacementSteps``).

        weight: [L, E] float, already validated. Global mode calls this with one group on one node.
        """
        num_layers, num_experts = weight.shape
        group_size = num_experts // num_groups
        experts_per_node = num_experts // num_nodes
        if num_groups == 1 and num_nodes == 1:  # global mode: every map in step 1 is the identity
            node_phy2mlog = self.replicate_and_pack(weight, num_replicas, num_gpus)
            return PlacementSteps(
                group_load=weight.sum(-1, keepdim=True),
                group_node=torch.zeros(num_layers, 1, dtype=torch.int64, device=weight.device),
                mlog2log=torch.arange(num_experts, device=weight.device).expand(num_layers, -1),
                node_weight=weight.view(num_layers, 1, num_experts),
                node_phy2mlog=node_phy2mlog.view(num_layers, 1, -1),
                phy2log=node_phy2mlog,
            )

        # Step 1: groups onto nodes.
        group_load = weight.view(num_layers, num_groups, group_size).sum(-1)  # [L, groups]
        if num_nodes == 1:  # one pack takes everything (global mode): nothing to search
            group_node = torch.zeros(group_load.shape, dtype=torch.int64, device=weight.device)
        else:
            group_node = self.pack(group_load, num_nodes)
        group_order = order_by_pack(group_node, group_load)  # [L, groups], node-major
        in_group = torch.arange(group_size, device=weight.device)
        mlog2log = (group_order.unsqueeze(-1) * group_size + in_group).flatten(1)  # [L, E]

        # Step 2: replicate and pack inside every node at once.
        node_weight = weight.gather(1, mlog2log).view(num_layers * num_nodes, experts_per_node)
        node_phy2mlog = self.replicate_and_pack(node_weight, num_replicas // num_nodes, num_gpus // num_nodes,
                                                rows_per_layer=num_nodes)
        node_offset = torch.arange(num_nodes, device=weight.device).view(1, -1, 1) * experts_per_node
        phy2mlog = (node_phy2mlog.view(num_layers, num_nodes, -1) + node_offset).flatten(1)  # [L, P]
        return PlacementSteps(
            group_load=group_load,
            group_node=group_node,
            mlog2log=mlog2log,
            node_weight=node_weight.view(num_layers, num_nodes, experts_per_node),
            node_phy2mlog=node_phy2mlog.view(num_layers, num_nodes, -1),
            phy2log=mlog2log.gather(1, phy2mlog),
        )

    def place(
        self, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
    ) -> torch.Tensor:
        """Hierarchical placement: weight [L, E] float -> phy2log [L, num_replicas] int64."""
        return self.steps(weight, num_replicas, num_groups, num_nodes, num_gpus).phy2log

    def place_window(
        self, window: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
    ) -> torch.Tensor:
        """Plan from a window of per-step loads: window [S, L, E] float -> phy2log [L, num_replicas] int64.

        The placement will serve the steps after the window. This default plans on the
        window's sum, as DeepSeek's and vLLM's EPLB do; a policy that uses the steps'
        spread (to hedge experts whose load swings) overrides it.
        """
        return self.place(window.sum(0), num_replicas, num_groups, num_nodes, num_gpus)


@dataclass(frozen=True)
class PlacementSteps:
    """The intermediate results of one hierarchical placement (L layers, N nodes).

    group_load: [L, groups] summed load of each expert group.
    group_node: [L, groups] node each group is packed onto.
    mlog2log: [L, E] logical expert at each node-major position (node n owns
        positions n * E/N .. (n+1) * E/N - 1).
    node_weight: [L, N, E/N] load of each node's experts, in node-major order.
    node_phy2mlog: [L, N, P/N] node-local expert position in each of the node's slots.
    phy2log: [L, P] the final placement.
    """

    group_load: torch.Tensor
    group_node: torch.Tensor
    mlog2log: torch.Tensor
    node_weight: torch.Tensor
    node_phy2mlog: torch.Tensor
    phy2log: torch.Tensor

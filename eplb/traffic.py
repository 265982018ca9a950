"""What each mode's placement asks of the network: tokens (and bytes) dispatch sends between nodes.

Hierarchical mode balances worse than global mode on the same topology (every expert
group stays on one node), and it is chosen anyway because it keeps each token's
dispatch inside fewer nodes. ``dispatch_traffic`` prices that in expected tokens
and bytes per step, under this model (also in docs/whatif.md and the Explore page's help):

1. Tokens start spread evenly over the nodes (data-parallel attention), and a token
   goes over the network once to every *other* node that holds one of its experts
   (DeepEP-style dispatch: one copy per destination node, forwarded inside it).
   Experts on the token's own node cost no network traffic.
2. Routing is uniform: which groups or experts a token picks does not depend on the
   node it starts on, and every choice is equally likely. Hot experts are not
   modelled; this is the price of the mode, not of one load.
3. Hierarchical mode with group-limited routing (the preset's ``topk_group``, and
   routing groups that nest inside the topology's groups): each node holds
   ``routing groups / nodes`` whole groups, and a token reaches the nodes of the
   ``topk_group`` groups it picks (each picked group is assumed to get at least one
   of its experts: an upper estimate when top_k >= topk_group).
4. Otherwise (global mode, or routing that is not group-limited): a token's top_k
   distinct experts are drawn from all E, ``E / nodes`` of them on each node. Copies
   are ignored: the copy a token is routed to is not assumed to sit on its own node.

With t picks out of U units (groups or experts), U / N on each of N nodes, drawn
without replacement: a node is reached with probability
``1 - prod_{i<t} (U - U/N - i) / (U - i)`` (= 1 - C(U - U/N, t) / C(U, t)); the
expected nodes reached is D = N times that, the token's own node is among them
with probability D / N, so a token sends ``D (N - 1) / N`` copies to other nodes.
Bytes per MoE layer = tokens x those copies x hidden_size x bytes per element
(BF16 activations: 2 by default); a step runs every MoE layer; the combine step
sends the same amount back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .presets import ModelPreset
from .rebalance import Topology

DISPATCH_BYTES = 2
"""Bytes per hidden-state element sent by dispatch: BF16 activations."""


def nodes_reached(num_units: int, picks: int, num_nodes: int) -> float:
    """Expected distinct nodes a token reaches when it picks ``picks`` of ``num_units`` units spread evenly on nodes."""
    if num_nodes <= 1 or picks <= 0:
        return float(min(num_nodes, 1) if picks > 0 else 0)
    per_node = num_units / num_nodes
    missed = 1.0  # probability that none of the picks lands on one given node
    for i in range(picks):
        missed *= max(num_units - per_node - i, 0.0) / (num_units - i)
    return num_nodes * (1.0 - missed)


@dataclass(frozen=True)
class Traffic:
    """Expected inter-node dispatch of one mode on one topology.

    routing: what a token picks, e.g. "4 of 8 groups" or "8 of 256 experts";
    nodes_reached: expected distinct nodes a token's experts are on;
    remote_copies: expected copies of a token sent to other nodes;
    tokens: tokens per MoE layer per step; num_layers: MoE layers per step.
    """

    mode: str
    routing: str
    nodes_reached: float
    remote_copies: float
    tokens: float
    num_layers: int
    hidden_size: int
    bytes_per_element: float = DISPATCH_BYTES

    @property
    def tokens_per_layer(self) -> float:
        """Token copies sent between nodes by one MoE layer's dispatch, per step."""
        return self.tokens * self.remote_copies

    @property
    def bytes_per_layer(self) -> float:
        return self.tokens_per_layer * self.hidden_size * self.bytes_per_element

    @property
    def bytes_per_step(self) -> float:
        """Dispatch bytes between nodes in one step (every MoE layer); combine sends as much back."""
        return self.bytes_per_layer * self.num_layers


def group_limited(topology: Topology, mode: str, model: ModelPreset) -> bool:
    """Whether hierarchical placement keeps the model's routing groups whole on nodes (rule 3 of the model)."""
    return (mode == "hierarchical" and model.topk_group is not None
            and model.num_groups % topology.num_groups == 0 and model.num_groups % topology.num_nodes == 0)


def dispatch_traffic(topology: Topology, mode: str, model: ModelPreset, tokens: float, *,
                     num_layers: int | None = None, bytes_per_element: float = DISPATCH_BYTES) -> Traffic:
    """Expected inter-node dispatch traffic of ``mode`` ("hierarchical" or "global") on ``topology``.

    tokens: tokens per MoE layer per step (``tokens_per_step`` of a load); num_layers:
    MoE layers per step (default the model's). The model is the module docstring's.
    """
    if mode not in ("hierarchical", "global"):
        raise ValueError(f"mode must be 'hierarchical' or 'global' (resolve 'auto' first), got {mode!r}")
    if group_limited(topology, mode, model):
        units, picks, what = model.num_groups, model.topk_group, "groups"
    else:
        units, picks, what = model.num_experts, min(model.top_k, model.num_experts), "experts"
    reached = nodes_reached(units, picks, topology.num_nodes)
    remote = reached * (topology.num_nodes - 1) / topology.num_nodes
    return Traffic(mode, f"{picks} of {units} {what}", reached, remote, float(tokens),
                   model.num_layers if num_layers is None else num_layers, model.hidden_size, bytes_per_element)


def tokens_per_step(weight: torch.Tensor, top_k: int) -> float:
    """Tokens per MoE layer in a load weight [layers, experts]: the mean routed load per layer / top_k."""
    return float(weight.double().sum(-1).mean()) / max(top_k, 1)

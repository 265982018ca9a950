"""One rebalance of one layer, opened up for teaching: every intermediate result, step by step.

Nothing here decides a placement. ``walkthrough`` runs the policy's own
``Policy.steps`` (the code ``rebalance_experts`` runs) and reads its intermediate
results; where the policy composes "replicate, then pack" the base way, it also
calls the policy's own ``replicate`` and ``pack`` on the same rows to recover the
order of its choices. The final placement is the one ``rebalance_experts`` returns.

    walk = walkthrough(DEEPSEEK_README_WEIGHT, Topology(16, 4, 2, 8), layer=0, policy="deepseek")
    walk.groups            # step 1: groups packed onto nodes (a Packing)
    walk.nodes[0].added    # step 2: the expert each extra copy went to, in the order chosen
    walk.nodes[0].packing  # step 3: the node's copies packed onto its GPUs
    walk.phy2log, walk.gpu_load, walk.gpu_load_before  # step 4: result against the "before" map

Shapes: E experts, P slots, G GPUs, N nodes of the layer; a node holds n = E/N experts
(E in global mode, which is one group on one node) in S = P/N slots on G/N GPUs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .metrics import gpu_loads, initial_phy2log, layer_balancedness
from .policies import DEFAULT_POLICY, POLICIES, Policy
from .policies.base import copy_counts, copy_loads
from .presets import DEEPSEEK_README_WEIGHT
from .rebalance import Topology, validate_weight
from .workloads import generate_load

README_TOPOLOGY = Topology(num_replicas=16, num_groups=4, num_nodes=2, num_gpus=8)
"""The topology of DeepSeek's README example (its load is ``eplb.presets.DEEPSEEK_README_WEIGHT``)."""


@dataclass(frozen=True)
class Idea:
    """A policy's two choices in a sentence each, for a reader who has not seen the code."""

    replicate: str
    pack: str

    def packing(self, items: str, bin: str) -> str:
        """The packing idea for one level: packing("groups", "node") or packing("copies", "GPU")."""
        return self.pack.format(items=items, bin=bin)


IDEAS: dict[str, Idea] = {
    "deepseek": Idea(
        replicate="Extra copies are added one at a time, each to the expert whose copies carry the most load "
                  "each at that moment; its load is then split over one more copy.",
        pack="The {items} are taken heaviest first; each goes to the lightest {bin} that still has room "
             "(every {bin} takes the same number of {items}).",
    ),
    "zigzag": Idea(
        replicate="Copies are handed out in proportion to load, all at once: an expert with twice the load gets "
                  "about twice the copies (at least one each).",
        pack="The {items} are sorted heaviest first and dealt out in a zigzag: {bin} 0, 1, ..., last, then last, "
             "..., 1, 0, so a {bin} that got a heavy one early gets a light one next. No loads are compared "
             "while dealing.",
    ),
    "joint": Idea(
        replicate="Copy counts are chosen together with the packing: several candidate count vectors "
                  "(DeepSeek's, one that gives the hottest experts exactly one copy per GPU between them, and, "
                  "with two slots per GPU, every possibility) are each packed, and the one whose busiest GPU "
                  "is lightest wins.",
        pack="The {items} are dealt heaviest first, one per {bin} per round, each round's heaviest to the "
             "currently lightest {bin}; then the busiest {bin}s trade {items} with the lightest ones wherever a "
             "swap evens a pair out.",
    ),
}
"""Plain-language ideas per policy name; a policy without an entry is described by its ``summary``.

``pack`` has the placeholders {items} and {bin}: "groups"/"node" in step 1, "copies"/"GPU" in step 3.
"""


def idea(policy: str) -> Idea:
    """The plain-language idea of a registered policy."""
    summary = POLICIES[policy].summary
    return IDEAS.get(policy) or Idea(replicate=summary, pack=summary.replace("{", "{{").replace("}", "}}"))


@dataclass(frozen=True)
class Packing:
    """Items packed into equal-count bins, replayed heaviest first (the order greedy packers take them).

    load: [n] float load of each item; pack: [n] int64 bin of each item;
    order: [n] item ids heaviest first, ties in item order;
    bin_load_before: [n, M] float64, each bin's load just before item order[k] went in;
    bin_count_before: [n, M] items each bin held at that moment;
    capacity: items per bin (n // M).
    """

    load: torch.Tensor
    pack: torch.Tensor
    order: torch.Tensor
    bin_load_before: torch.Tensor
    bin_count_before: torch.Tensor
    capacity: int

    @property
    def num_bins(self) -> int:
        return self.bin_load_before.shape[1]

    @property
    def bin_load(self) -> torch.Tensor:
        """Final load per bin: [M] float64."""
        return torch.zeros(self.num_bins, dtype=torch.float64).index_add_(0, self.pack, self.load.double())

    def to_lightest_with_room(self) -> torch.Tensor:
        """[n] bool: whether the k-th item (in ``order``) went to a bin that was the lightest among those with room."""
        room = self.bin_count_before < self.capacity
        lightest = self.bin_load_before.masked_fill(~room, torch.inf).min(dim=1).values
        chosen = self.pack[self.order]
        return self.bin_load_before.gather(1, chosen.unsqueeze(1)).squeeze(1) == lightest


def replay_packing(load: torch.Tensor, pack: torch.Tensor, num_bins: int) -> Packing:
    """Replay a finished packing heaviest first. load: [n] float, pack: [n] int64 in [0, num_bins)."""
    order = load.sort(descending=True, stable=True).indices
    placed = torch.nn.functional.one_hot(pack[order], num_bins)  # [n, M]
    # Running sums in float64 and in placement order, as a greedy packer adds them up.
    added_load = placed * load[order].double().unsqueeze(1)
    start = torch.zeros(1, num_bins, dtype=torch.float64)
    return Packing(
        load=load, pack=pack, order=order,
        bin_load_before=torch.cat([start, added_load.cumsum(0)[:-1]]),
        bin_count_before=placed.cumsum(0) - placed,
        capacity=load.numel() // num_bins,
    )


@dataclass(frozen=True)
class NodeSteps:
    """Replication and packing inside one node.

    experts: [n] logical expert ids the node holds; load: [n] their load;
    logcnt: [n] final copies of each (from the final placement);
    added: [S - n] node-local index of the expert each extra copy went to, in the
        order the policy added them; None when the policy picks all counts at once;
    copies: [S] logical expert of each copy, in the order the packer received them;
    packing: the copies packed onto the node's GPUs (bins numbered from 0 inside the node);
    first_gpu: global id of the node's first GPU.
    """

    experts: torch.Tensor
    load: torch.Tensor
    logcnt: torch.Tensor
    added: torch.Tensor | None
    copies: torch.Tensor
    packing: Packing
    first_gpu: int

    @property
    def per_copy(self) -> torch.Tensor:
        """Load each copy of each expert carries after replication: [n]."""
        return self.load / self.logcnt

    def per_copy_before_each_choice(self) -> torch.Tensor:
        """[S - n, n]: every expert's load per copy just before each extra copy was added (needs ``added``)."""
        extra = torch.nn.functional.one_hot(self.added, self.load.numel())  # [X, n]
        counts_before = 1 + extra.cumsum(0) - extra
        return self.load / counts_before


@dataclass(frozen=True)
class Walkthrough:
    """One layer's rebalance under one policy, with every intermediate result.

    weight: [E] the layer's load; mode: "hierarchical" or "global" (resolved);
    groups: step 1, the expert groups packed onto nodes (one group on one node in global mode);
    group_size: experts per group (E in global mode);
    nodes: steps 2 and 3, one NodeSteps per node;
    sequential: the policy replicates, then packs (the base composition), so the
        order of its choices in ``added`` and the packing replay is its real order;
    phy2log: [P] the final placement, equal to ``rebalance_experts``'s row for this layer;
    before: [P] vLLM's initial map (slot i holds expert i % E);
    gpu_load, gpu_load_before: [G] tokens per GPU after and before.
    """

    policy: str
    layer: int
    topology: Topology
    mode: str
    weight: torch.Tensor
    groups: Packing
    group_size: int
    nodes: tuple[NodeSteps, ...]
    sequential: bool
    phy2log: torch.Tensor
    before: torch.Tensor
    gpu_load: torch.Tensor
    gpu_load_before: torch.Tensor

    @property
    def logcnt(self) -> torch.Tensor:
        """Copies per logical expert: [E]."""
        return copy_counts(self.phy2log.unsqueeze(0), self.weight.numel())[0]

    @property
    def slot_load(self) -> torch.Tensor:
        """Load each slot's copy carries: [P]."""
        return copy_loads(self.weight.double().unsqueeze(0), self.phy2log.unsqueeze(0))[0]

    @property
    def balancedness(self) -> float:
        """Mean / max GPU load after (NaN for a layer without load)."""
        return float(layer_balancedness(self.gpu_load.unsqueeze(0))[0])

    @property
    def balancedness_before(self) -> float:
        return float(layer_balancedness(self.gpu_load_before.unsqueeze(0))[0])


def case_problem(weight, topology: Topology, mode: str = "auto") -> str | None:
    """What is wrong with a classroom case, in words that say what to change; None when it runs.

    weight: [L, E] loads as typed into a table (NaN for an empty cell).
    """
    try:
        weight = validate_weight(weight)
    except ValueError as exc:
        return f"The loads table has a problem: {exc}. Type a token count of 0 or more in that cell."
    try:
        topology.validate(weight.shape[1], mode)
    except ValueError as exc:
        return f"This topology does not fit the {weight.shape[1]} experts in the table: {exc}."
    return None


def walkthrough(weight, topology: Topology, layer: int = 0, policy: str | None = None,
                mode: str = "auto") -> Walkthrough:
    """Rebalance ``weight`` [L, E] on ``topology`` as ``rebalance_experts`` does; keep every step of ``layer``.

    Raises ValueError with eplb's message on an invalid load, topology, mode, policy or layer.
    """
    weight = validate_weight(weight)
    resolved = topology.validate(weight.shape[1], mode)
    name = DEFAULT_POLICY if policy is None else policy
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    if not 0 <= layer < weight.shape[0]:
        raise ValueError(f"layer {layer} does not exist: the load has layers 0 to {weight.shape[0] - 1}")
    chosen = POLICIES[name]
    # The whole matrix in the dtype rebalance_experts hands the policy: a policy may break ties
    # differently for another batch shape, and this must be the placement rebalance_experts returns.
    load = weight.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    num_groups, num_nodes = (topology.num_groups, topology.num_nodes) if resolved == "hierarchical" else (1, 1)
    num_layers, num_experts = load.shape
    num_gpus, num_replicas = topology.num_gpus, topology.num_replicas
    steps = chosen.steps(load, num_replicas, num_groups, num_nodes, num_gpus)

    experts_per_node, gpus_per_node = num_experts // num_nodes, num_gpus // num_nodes
    sequential = type(chosen).replicate_and_pack is Policy.replicate_and_pack
    node_weight = steps.node_weight.flatten(0, 1)  # [L * N, n], the rows replicate_and_pack gets
    placed = steps.node_phy2mlog[layer]  # [N, S]
    if sequential:  # the policy's own two calls, as replicate_and_pack makes them
        copy_list = chosen.replicate(node_weight, num_replicas // num_nodes)  # [L * N, S]
        copy_load = copy_loads(node_weight, copy_list)
        copy_gpu = chosen.pack(copy_load, gpus_per_node)
        rows = slice(layer * num_nodes, (layer + 1) * num_nodes)
        copy_list, copy_load, copy_gpu = copy_list[rows], copy_load[rows], copy_gpu[rows]  # [N, S]
    else:  # counts and packing chosen together: only the final layout is known
        copy_list, copy_load = placed, copy_loads(steps.node_weight[layer], placed)
        copy_gpu = torch.arange(placed.shape[1]).div(placed.shape[1] // gpus_per_node, rounding_mode="floor")
        copy_gpu = copy_gpu.expand_as(placed)
    node_experts = steps.mlog2log[layer].view(num_nodes, experts_per_node)
    in_order = torch.arange(experts_per_node)
    nodes = tuple(
        NodeSteps(
            experts=node_experts[node], load=steps.node_weight[layer, node],
            logcnt=copy_counts(placed[node : node + 1], experts_per_node)[0],
            added=copy_list[node, experts_per_node:]
            if sequential and torch.equal(copy_list[node, :experts_per_node], in_order) else None,
            copies=node_experts[node][copy_list[node]],
            packing=replay_packing(copy_load[node], copy_gpu[node], gpus_per_node),
            first_gpu=node * gpus_per_node,
        )
        for node in range(num_nodes)
    )
    row = load[layer : layer + 1]
    phy2log = steps.phy2log[layer : layer + 1]
    before = initial_phy2log(1, num_experts, num_replicas)
    return Walkthrough(
        policy=name, layer=layer, topology=topology, mode=resolved, weight=row[0],
        groups=replay_packing(steps.group_load[layer], steps.group_node[layer], num_nodes),
        group_size=num_experts // num_groups, nodes=nodes, sequential=sequential,
        phy2log=phy2log[0], before=before[0],
        gpu_load=gpu_loads(row, phy2log, num_gpus)[0], gpu_load_before=gpu_loads(row, before, num_gpus)[0],
    )


def tokens(value: float) -> str:
    """A load as text: thousands separated, at most one decimal (82.5, 1,133)."""
    text = f"{value:,.1f}"
    return text[:-2] if text.endswith(".0") else text


def plural(count: int, word: str, words: str | None = None) -> str:
    """ "1 node", "2 nodes", "3 copies" """
    return f"{count} {word if count == 1 else words or word + 's'}"


def expert_span(first: int, size: int) -> str:
    """The experts of a group as text: "experts 3-5", or "expert 3" for a group of one."""
    return f"expert {first}" if size == 1 else f"experts {first}-{first + size - 1}"


def _busiest(gpu_load: torch.Tensor) -> str:
    """ "GPU 3 serves 255 tokens, 1.80x the even share" """
    peak = int(gpu_load.argmax())
    share = float(gpu_load.mean())
    ratio = f", {float(gpu_load[peak]) / share:.2f}x the even share" if share > 0 else ""
    return f"GPU {peak} serves {tokens(float(gpu_load[peak]))} tokens{ratio}"


def describe_case(walk: Walkthrough) -> str:
    """Caption of the case: the load, the slots, the groups and the "before" map."""
    t, w = walk.topology, walk.weight
    num_experts = w.numel()
    total = float(w.sum())
    lines = [
        f"Layer {walk.layer} routes {tokens(total)} tokens to {num_experts} experts; the busiest, expert "
        f"{int(w.argmax())}, gets {tokens(float(w.max()))}. They must fit in {t.num_replicas} slots on "
        f"{t.num_gpus} GPUs ({t.slots_per_gpu} per GPU) on {plural(t.num_nodes, 'node')}, so "
        f"{t.num_replicas - num_experts} slots can hold extra copies of busy experts.",
        f"Colors show the {t.num_groups} expert groups of {num_experts // t.num_groups}: DeepSeek-V3 routes each "
        "token to a few groups, so keeping a group on one node keeps its traffic inside the node.",
        f"An even split gives every GPU {tokens(total / t.num_gpus)} tokens. Before rebalancing, slot i holds "
        f"expert i mod {num_experts} (vLLM's starting map): {_busiest(walk.gpu_load_before)}.",
    ]
    if walk.mode == "global":
        lines.append("This topology runs in global mode (the groups do not divide evenly over the nodes), "
                     "so the policy treats the layer as one group on one node.")
    return "\n\n".join(lines)


def describe_groups(walk: Walkthrough) -> str:
    """Caption of step 1: group loads and how the groups are packed onto nodes."""
    if walk.mode == "global":
        return ("Global mode: all experts form one group on one node, so there is nothing to pack at this level. "
                "The whole layer goes to step 2 as a single node.")
    groups = walk.groups
    heaviest = int(groups.order[0])
    first = heaviest * walk.group_size
    text = (f"Step 1 adds up each group's load: group {heaviest} ({expert_span(first, walk.group_size)}) is the "
            f"heaviest with {tokens(float(groups.load[heaviest]))} tokens. ")
    if groups.capacity == 1:
        text += "There are as many nodes as groups, so each node simply takes one group. "
    else:
        text += f"Each node takes {groups.capacity} groups. {idea(walk.policy).packing('groups', 'node')} "
    node_load = groups.bin_load
    return text + ("Node loads: " + ", ".join(f"node {n}: {tokens(float(v))}" for n, v in enumerate(node_load))
                   + f" (even share {tokens(float(node_load.mean()))}).")


def describe_replication(walk: Walkthrough) -> str:
    """Caption of step 2: which experts get extra copies, and why."""
    node = walk.nodes[0]
    slots, experts = node.copies.numel(), node.load.numel()
    where = "Each node" if len(walk.nodes) > 1 else "The node"
    text = (f"{where} has {slots} slots for its {experts} experts: {slots - experts} extra copies to hand out. "
            f"{idea(walk.policy).replicate} ")
    if node.added is not None and node.added.numel():
        before = node.per_copy_before_each_choice()
        choice = int(node.added[0])
        text += (f"On node 0 the first extra copy goes to expert {int(node.experts[choice])}, whose "
                 f"{tokens(float(before[0, choice]))} tokens per copy is the most; it then carries "
                 f"{tokens(float(node.load[choice]) / 2)} per copy. The table lists every choice.")
    else:
        more = [f"expert {int(e)} x{int(c)}" for n in walk.nodes for e, c in zip(n.experts, n.logcnt) if c > 1]
        text += "Experts with more than one copy: " + (", ".join(more) or "none") + "."
    return text


def describe_packing(walk: Walkthrough) -> str:
    """Caption of step 3: how the copies are packed onto GPUs."""
    t = walk.topology
    text = (f"Step 3 packs each node's {walk.nodes[0].copies.numel()} copies onto its {t.gpus_per_node} GPUs, "
            f"{plural(t.slots_per_gpu, 'copy', 'copies')} per GPU. {idea(walk.policy).packing('copies', 'GPU')} ")
    if not walk.sequential:
        text += ("This policy chooses counts and packing together, so the bars show the final layout with each "
                 "GPU's copies heaviest first, not the order it tried them. ")
    return text + f"Result: {_busiest(walk.gpu_load)}."


def describe_result(walk: Walkthrough) -> str:
    """Caption of step 4: the final placement and per-GPU load against the "before" map."""
    if float(walk.weight.sum()) == 0:
        return "This layer has no load: every placement is equally balanced."
    return (f"Before: {_busiest(walk.gpu_load_before)}. After: {_busiest(walk.gpu_load)}. "
            f"Balancedness (mean / max GPU load, vLLM's metric) goes from {walk.balancedness_before:.3f} to "
            f"{walk.balancedness:.3f}; 1.000 would mean every GPU finishes at the same time.{_node_floor(walk)}")


def _node_floor(walk: Walkthrough) -> str:
    """Why the busiest GPU cannot get lighter inside its node: step 1 fixed the node's load."""
    if walk.mode == "global" or walk.topology.num_nodes == 1:
        return ""
    busiest = int(walk.gpu_load.argmax())
    node = busiest // walk.topology.gpus_per_node
    node_load = float(walk.groups.bin_load[node])
    floor = node_load / walk.topology.gpus_per_node
    if float(walk.gpu_load[busiest]) > floor * (1 + 1e-6):
        return ""
    return (f" GPU {busiest} cannot do better: step 1 gave node {node} {tokens(node_load)} tokens, "
            f"which its {walk.topology.gpus_per_node} GPUs can at best share evenly ({tokens(floor)} each).")


def describe_difference(walk: Walkthrough, reference: Walkthrough) -> str:
    """Caption comparing ``walk``'s policy with ``reference``'s on the same case."""
    ideas = idea(walk.policy)
    text = f"**{walk.policy}**: {ideas.replicate} {ideas.packing('copies', 'GPU')} "
    if torch.equal(walk.phy2log, reference.phy2log):
        return text + f"On this case it places every copy exactly where {reference.policy} does."
    changed = (walk.logcnt != reference.logcnt).nonzero().flatten().tolist()
    if changed:
        text += "Copy counts that differ from " + reference.policy + ": " + ", ".join(
            f"expert {e}: {plural(int(walk.logcnt[e]), 'copy', 'copies')} instead of {int(reference.logcnt[e])}"
            for e in changed) + ". "
    else:
        text += f"It gives every expert the same number of copies as {reference.policy}; only the packing differs. "
    if float(walk.weight.sum()) == 0:
        return text
    peak, reference_peak = float(walk.gpu_load.max()), float(reference.gpu_load.max())
    verdict = "lighter than" if peak < reference_peak else "heavier than" if peak > reference_peak else "the same as"
    return text + (f"Its busiest GPU serves {tokens(peak)} tokens, {verdict} {reference.policy}'s "
                   f"{tokens(reference_peak)} (balancedness {walk.balancedness:.3f} against "
                   f"{reference.balancedness:.3f}).")


def group_rows(walk: Walkthrough) -> list[dict]:
    """Step 1 as table rows, one per group in the order it was placed (heaviest first)."""
    groups = walk.groups
    return [
        {"order": k + 1, "group": g, "experts": expert_span(g * walk.group_size, walk.group_size),
         "load": float(groups.load[g]), "node": int(groups.pack[g]),
         "node loads before": " | ".join(tokens(float(v)) for v in groups.bin_load_before[k]),
         "lightest node with room": bool(lightest)}
        for k, (g, lightest) in enumerate(zip(groups.order.tolist(), groups.to_lightest_with_room().tolist()))
    ]


def choice_rows(walk: Walkthrough) -> list[dict]:
    """Step 2 as table rows: every extra copy in the order it was added (policies that add them one by one)."""
    rows = []
    for n, node in enumerate(walk.nodes):
        if node.added is None:
            continue
        before = node.per_copy_before_each_choice()  # [X, n]
        for k, choice in enumerate(node.added.tolist()):
            others = before[k].clone()
            others[choice] = -torch.inf
            runner_up = int(others.argmax())
            copies = int((node.added[: k + 1] == choice).sum()) + 1
            rows.append({
                "node": n, "choice": k + 1, "expert": int(node.experts[choice]),
                "load per copy before": float(before[k, choice]),
                "next most per copy": f"expert {int(node.experts[runner_up])}: {tokens(float(before[k, runner_up]))}"
                if node.load.numel() > 1 else "",
                "copies after": copies, "load per copy after": float(node.load[choice]) / copies,
            })
    return rows


def copy_rows(walk: Walkthrough) -> list[dict]:
    """Step 3 as table rows: every copy in the order it was packed (heaviest first), node by node.

    Empty for a policy that chooses counts and packing together (``walk.sequential`` False).
    """
    if not walk.sequential:  # the final layout carries no placement order
        return []
    rows = []
    for n, node in enumerate(walk.nodes):
        packing = node.packing
        for k, (item, lightest) in enumerate(zip(packing.order.tolist(), packing.to_lightest_with_room().tolist())):
            rows.append({
                "node": n, "order": k + 1, "expert": int(node.copies[item]), "copy load": float(packing.load[item]),
                "GPU": node.first_gpu + int(packing.pack[item]),
                "GPU loads before": " | ".join(tokens(float(v)) for v in packing.bin_load_before[k]),
                "lightest GPU with room": bool(lightest),
            })
    return rows


def readme_case() -> tuple[torch.Tensor, Topology]:
    """DeepSeek's README example: load [2, 12] and its topology (16 slots, 4 groups, 2 nodes, 8 GPUs)."""
    return torch.tensor(DEEPSEEK_README_WEIGHT, dtype=torch.float32), README_TOPOLOGY


def random_case(seed: int, num_layers: int = 2) -> tuple[torch.Tensor, Topology]:
    """A small valid classroom case: load [num_layers, E] and a hierarchical topology that fits it.

    1-2 nodes of 3-4 GPUs with 2-3 slots each, 1-2 groups per node, and between half the
    slots (at least 4) and all but one as experts (so at least one slot holds an extra copy).
    The load is a skewed workload from ``eplb.workloads`` of about 64 tokens per expert.
    """
    rng = random.Random(seed)
    num_nodes, gpus_per_node, slots_per_gpu = rng.choice((1, 2)), rng.choice((3, 4)), rng.choice((2, 3))
    num_groups = num_nodes * rng.choice((1, 2))
    num_replicas = num_nodes * gpus_per_node * slots_per_gpu
    # num_replicas >= 3 * num_groups, so this range always holds a multiple of num_groups.
    num_experts = rng.choice([e for e in range(max(4, num_replicas // 2), num_replicas) if e % num_groups == 0])
    family = rng.choice(("zipf", "lognormal", "hot"))
    weight = generate_load(family, num_layers, num_experts, seed=seed, tokens=8 * num_experts, top_k=8)
    return weight, Topology(num_replicas, num_groups, num_nodes, num_nodes * gpus_per_node)

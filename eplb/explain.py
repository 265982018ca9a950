"""One rebalance of one layer, opened up for teaching: the cases, every intermediate result, the captions.

Nothing here decides a placement. ``walkthrough`` runs the policy's own
``Policy.steps`` (the code ``rebalance_experts`` runs) and reads its intermediate
results; where the policy composes "replicate, then pack" the base way, it also
calls the policy's own ``replicate`` and ``pack`` on the same rows to recover the
order of its choices. The final placement is the one ``rebalance_experts`` returns.

    case = LESSONS["readme"]                     # DeepSeek's README example (a Case)
    walk = walkthrough(case.tensor, case.topology, layer=0, policy="deepseek")
    walk.groups            # step 1: groups packed onto nodes (a Packing)
    walk.nodes[0].added    # step 2: the expert each extra copy went to, in the order chosen
    walk.nodes[0].packing  # step 3: the node's copies packed onto its GPUs
    walk.phy2log, walk.gpu_load, walk.gpu_load_before  # step 4: result against the "before" map
    describe_groups(walk)  # step 1 in short sentences, with the case's own numbers

A classroom case is small (``LIMITS``): ``case_problem`` says what to change when it
is not, and ``teach_case`` turns one layer of any load into a lesson-sized case.

Shapes: E experts, P slots, G GPUs, N nodes of the layer; a node holds n = E/N experts
(E in global mode, which is one group on one node) in S = P/N slots on G/N GPUs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import torch

from .metrics import gpu_loads, initial_phy2log, layer_balancedness
from .policies import DEFAULT_POLICY, POLICIES, Policy
from .policies.base import copy_counts, copy_loads
from .presets import DEEPSEEK_README_WEIGHT
from .rebalance import MODES, Topology, validate_weight
from .workloads import generate_load

# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """A classroom case: a small load, its topology, and what to call it.

    weight: [L][E] token counts as nested tuples, so a case is hashable (a cache key);
    mode: as ``rebalance_experts`` takes it; top_k: experts each token is routed to
    (the opening's picture); about: what the case is for, in a sentence; note: what a
    reader must know about how the case was made (a reduced layer), "" for nothing.
    """

    label: str
    weight: tuple[tuple[float, ...], ...]
    topology: Topology
    mode: str = "auto"
    top_k: int = 2
    about: str = ""
    note: str = ""

    @classmethod
    def of(cls, label: str, weight, topology: Topology, **options) -> Case:
        """A case from any [L, E] array of numbers (tensor, nested lists)."""
        rows = torch.as_tensor(weight, dtype=torch.float64).tolist()
        return cls(label, tuple(tuple(row) for row in rows), topology, **options)

    @property
    def tensor(self) -> torch.Tensor:
        """The load as a float32 tensor [L, E]."""
        return torch.tensor(self.weight, dtype=torch.float32)

    @property
    def num_layers(self) -> int:
        return len(self.weight)

    @property
    def num_experts(self) -> int:
        return len(self.weight[0])


README_TOPOLOGY = Topology(num_replicas=16, num_groups=4, num_nodes=2, num_gpus=8)
"""The topology of DeepSeek's README example (its load is ``eplb.presets.DEEPSEEK_README_WEIGHT``)."""

LESSONS: dict[str, Case] = {
    "readme": Case.of(
        "DeepSeek's README example", DEEPSEEK_README_WEIGHT, README_TOPOLOGY,
        about="The worked example of DeepSeek's EPLB README: 12 experts in 4 groups, 2 nodes of 4 GPUs.",
    ),
    "hot": Case.of(
        "One hot expert", [[400, 100, 50, 30, 20]], Topology(num_replicas=8, num_groups=1, num_nodes=1, num_gpus=4),
        about="Expert 0 gets two thirds of the tokens: the policies give it different numbers of copies.",
    ),
}
"""The built-in lessons. On "hot" the policies differ: DeepSeek's greedy gives expert 0 four copies
and two of them land on one GPU; ``joint`` gives it three, one per GPU."""


def readme_case() -> tuple[torch.Tensor, Topology]:
    """DeepSeek's README example: load [2, 12] and its topology (16 slots, 4 groups, 2 nodes, 8 GPUs)."""
    return LESSONS["readme"].tensor, README_TOPOLOGY


@dataclass(frozen=True)
class LessonLimits:
    """The largest case a lesson takes.

    A lesson draws every GPU, slot and expert on one projected screen, and these bounds
    keep that readable; they also cap what one case costs the server (a walkthrough of
    the largest case takes milliseconds and a few hundred KB).
    """

    nodes: int = 4
    gpus_per_node: int = 8
    gpus: int = 16
    slots_per_gpu: int = 4
    experts: int = 32
    layers: int = 8
    load: float = 1e6  # tokens in one cell: only the ratios matter, and bigger numbers crowd the pictures

    @property
    def slots(self) -> int:
        return self.gpus * self.slots_per_gpu


LIMITS = LessonLimits()

SCREEN = "every GPU and slot is drawn, and more do not fit one projected screen"
"""Why a lesson has limits, in the words its messages use."""


def _count(value: int) -> str:
    """A count for a message: digits, or a short float for an absurdly large one (a raw control value)."""
    return str(value) if abs(value) < 10**12 else f"{float(value):.3g}"


def _limit_problem(topology: Topology) -> str | None:
    """A topology a lesson cannot draw, said in the page's own words; None when it fits ``LIMITS``."""
    t, lim = topology, LIMITS
    for value, name in ((t.num_nodes, "nodes"), (t.num_gpus, "GPUs"), (t.num_replicas, "slots"),
                        (t.num_groups, "expert groups")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"The number of {name} must be a whole number of at least 1, got {value!r}."
    if t.num_nodes > lim.nodes:
        return (f"A lesson takes at most {lim.nodes} nodes (here {_count(t.num_nodes)}): {SCREEN}. "
                f"Use {lim.nodes} or fewer.")
    per_node = t.num_gpus // t.num_nodes
    if per_node > lim.gpus_per_node:
        return (f"A lesson takes at most {lim.gpus_per_node} GPUs per node (here {_count(per_node)}): {SCREEN}. "
                f"Use {lim.gpus_per_node} or fewer.")
    if t.num_gpus > lim.gpus:
        return (f"A lesson takes at most {lim.gpus} GPUs in all (here {_count(t.num_nodes)} nodes x "
                f"{_count(per_node)} = {_count(t.num_gpus)}): {SCREEN}. Use fewer nodes or fewer GPUs per node.")
    if t.num_replicas > lim.slots:
        return (f"A lesson takes at most {lim.slots} slots in all ({lim.gpus} GPUs x {lim.slots_per_gpu} slots; "
                f"here {_count(t.num_replicas)}): {SCREEN}. Use {lim.slots} or fewer.")
    if t.num_replicas > t.num_gpus * lim.slots_per_gpu:
        return (f"A lesson takes at most {lim.slots_per_gpu} slots per GPU: with {t.num_gpus} GPUs that is "
                f"{t.num_gpus * lim.slots_per_gpu} slots in all (here {_count(t.num_replicas)}): {SCREEN}.")
    return None


def case_problem(weight, topology: Topology, mode: str = "auto") -> str | None:
    """What is wrong with a classroom case, in words that say what to change; None when it runs.

    weight: [L, E] loads as typed into a table (NaN for an empty cell). Checks the
    lesson's ``LIMITS`` first, so nothing large is ever built from a control's value.
    """
    problem = _limit_problem(topology)
    if problem:
        return problem
    try:
        weight = validate_weight(weight)
    except ValueError as exc:
        return f"The loads table has a problem: {exc}. Type a token count of 0 or more in that cell."
    layers, experts = weight.shape
    if experts > LIMITS.experts or layers > LIMITS.layers:
        return (f"A lesson takes at most {LIMITS.experts} experts and {LIMITS.layers} layers (here {experts} "
                f"and {layers}): {SCREEN}.")
    peak = float(weight.max())
    if peak > LIMITS.load:
        where = tuple(int(i) for i in (weight == weight.max()).nonzero()[0])
        return (f"A lesson takes at most {LIMITS.load:,.0f} tokens in one cell (layer {where[0]}, expert {where[1]} "
                f"holds {peak:,.0f}): bigger numbers crowd the pictures, and only the ratios matter. "
                "Scale the loads down.")
    if mode not in MODES:
        return f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}."
    try:
        topology.validate(experts, mode)
    except ValueError as exc:
        return f"This topology does not fit the {experts} experts in the table: {exc}."
    return None


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


TEACH_EXPERTS = 16
"""The most experts a layer keeps when ``teach_case`` reduces it (merging neighbours)."""
TEACH_GPUS = 8
"""The most GPUs a reduced layer is drawn on."""


def _largest_divisor(n: int, at_most: int, multiple_of: int = 1) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0 and d % multiple_of == 0)


def lesson_sized(row: torch.Tensor, topology: Topology, mode: str = "auto"
                 ) -> tuple[torch.Tensor, Topology, str, str | None]:
    """One layer's load made small enough to follow by hand.

    row: [E] loads of one layer on a topology that fits it. Returns (row' [E'], topology',
    resolved mode, note): unchanged with note None when it already fits ``LIMITS``; else
    every b = E / E' consecutive experts merge into one (loads added; E' <= TEACH_EXPERTS,
    a multiple of the kept group count, so no merged expert straddles two groups), on at
    most 2 nodes and TEACH_GPUS GPUs, with about the original share of spare slots (at
    least one when the original had any). The note says what changed. Raises ValueError
    when the topology does not fit the row.
    """
    num_experts, t = row.numel(), topology
    resolved = t.validate(num_experts, mode)
    if _limit_problem(t) is None and num_experts <= LIMITS.experts:
        return row, t, resolved, None
    groups = _largest_divisor(t.num_groups, TEACH_EXPERTS)
    experts = _largest_divisor(num_experts, TEACH_EXPERTS, multiple_of=groups)
    nodes = min(t.num_nodes, 2)
    if resolved == "hierarchical" and groups % nodes:
        nodes = 1
    least_spare = 1 if t.num_replicas > num_experts else 0
    gpus_per_node = min(t.gpus_per_node, TEACH_GPUS // nodes)
    gpus_per_node = max(gpus_per_node, min(TEACH_GPUS // nodes,
                                           math.ceil((experts + least_spare) / (LIMITS.slots_per_gpu * nodes))))
    gpus = nodes * gpus_per_node
    spare_share = (t.num_replicas - num_experts) / num_experts
    spare = min(max(round(experts * spare_share), least_spare), gpus * LIMITS.slots_per_gpu - experts)
    slots = math.ceil((experts + spare) / gpus) * gpus
    reduced = Topology(slots, groups, nodes, gpus)
    block = num_experts // experts
    merged = row.reshape(experts, block).sum(dim=1)
    parts = [f"This layer has {num_experts} experts on {t.num_gpus} GPUs, too many to follow by hand."]
    if block > 1:
        parts.append(f"The lesson merges every {block} neighbouring experts into one (their loads added): "
                     f"expert j here stands for experts {block}j to {block}j + {block - 1}.")
    parts.append(f"It keeps {plural(groups, 'group')} and draws {plural(nodes, 'node')} x {gpus_per_node} GPUs "
                 f"with {slots} slots, {slots - experts} of them spare (the layer has {t.num_replicas - num_experts} "
                 f"spare for {num_experts} experts).")
    return merged, reduced, resolved, " ".join(parts)


def teach_case(weight, topology: Topology, mode: str, layer: int, label: str) -> Case:
    """One layer of any load [L, E] (on a topology that fits it) as a lesson-sized ``Case``.

    label names the data (user-supplied text: escape it before showing it as Markdown).
    Raises ValueError when the layer does not exist or the topology does not fit.
    """
    weight = validate_weight(weight)
    if not 0 <= layer < weight.shape[0]:
        raise ValueError(f"layer {layer} does not exist: the load has layers 0 to {weight.shape[0] - 1}")
    row, reduced, resolved, note = lesson_sized(weight[layer].double(), topology, mode)
    return Case.of(f"layer {layer} of {label}", row.unsqueeze(0), reduced, mode=resolved, note=note or "")


# ---------------------------------------------------------------- the policies' ideas


@dataclass(frozen=True)
class Idea:
    """A policy's two choices in a short sentence or two each, for a reader who has not seen the code."""

    replicate: str
    pack: str

    def packing(self, items: str, bin: str) -> str:
        """The packing idea for one level: packing("groups", "node") or packing("copies", "GPU")."""
        return self.pack.format(items=items, bin=bin)


IDEAS: dict[str, Idea] = {
    "deepseek": Idea(
        replicate="Each extra copy goes to the expert with the most tokens per copy at that moment.",
        pack="Heaviest {items} first, each to the lightest {bin} that still has room. "
             "Every {bin} takes the same number of {items}.",
    ),
    "zigzag": Idea(
        replicate="Copies are handed out in proportion to load, all at once: twice the load, about twice the copies.",
        pack="The {items}, heaviest first, are dealt like cards: {bin} 0, 1, ..., last, then back from the last. "
             "No loads are compared.",
    ),
    "joint": Idea(
        replicate="It tries several sets of copy counts and keeps the one whose busiest GPU ends up lightest.",
        pack="It deals the {items} heaviest first to the lightest {bin}, then swaps {items} between the busiest "
             "and the lightest {bin}s.",
    ),
}
"""Plain-language ideas per policy name; a policy without an entry is described by its ``summary``.

``pack`` has the placeholders {items} and {bin}: "groups"/"node" in step 1, "copies"/"GPU" in step 3.
"""


def idea(policy: str) -> Idea:
    """The plain-language idea of a registered policy."""
    summary = POLICIES[policy].summary
    return IDEAS.get(policy) or Idea(replicate=summary, pack=summary.replace("{", "{{").replace("}", "}}"))


# ---------------------------------------------------------------- one layer's rebalance, step by step


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


# ---------------------------------------------------------------- the captions, in short sentences


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


def busiest(gpu_load: torch.Tensor) -> str:
    """ "GPU 3 serves 255 tokens, 1.98x the even share" """
    peak = int(gpu_load.argmax())
    share = float(gpu_load.mean())
    ratio = f", {float(gpu_load[peak]) / share:.2f}x the even share" if share > 0 else ""
    return f"GPU {peak} serves {tokens(float(gpu_load[peak]))} tokens{ratio}"


def _sentences(text: str) -> list[str]:
    """An idea's text split at its sentence ends (ideas are written as short sentences)."""
    return [part if part.endswith(".") else part + "." for part in text.split(". ") if part]


def describe_opening(walk: Walkthrough, top_k: int) -> list[str]:
    """The opening, for a student who never heard of EPLB: MoE, expert parallelism, the slowest GPU, copies."""
    t, num_experts = walk.topology, walk.weight.numel()
    spare = t.num_replicas - num_experts
    lines = [
        f"A Mixture-of-Experts (MoE) layer holds many small expert networks: {num_experts} here, 256 in DeepSeek-V3.",
        "A router sends each token to only its top k experts "
        f"(the arrows: one token, its top {min(top_k, num_experts)}).",
        f"The experts are spread over {plural(t.num_gpus, 'GPU')}: expert parallelism. Each GPU has "
        f"{plural(t.slots_per_gpu, 'slot')}, each holding one copy of an expert.",
        "The next layer waits for the last GPU to finish: the busiest GPU (red) sets the pace.",
    ]
    if spare:
        lines.append("A redundant copy of a busy expert, in a spare slot, splits its tokens between two GPUs.")
    else:
        lines.append("This case has no spare slot, so no expert can get a second copy; only the places change.")
    lines.append(f"EPLB decides how many copies each expert gets and which GPU holds each. "
                 f"Next: how {walk.policy} does it.")
    return lines


def describe_case(walk: Walkthrough) -> list[str]:
    """The case: the load, the slots, the groups and the "before" map."""
    t, w = walk.topology, walk.weight
    num_experts = w.numel()
    total = float(w.sum())
    lines = [
        f"Layer {walk.layer} routes {tokens(total)} tokens to {num_experts} experts. The busiest, expert "
        f"{int(w.argmax())}, gets {tokens(float(w.max()))}.",
        f"{t.num_replicas} slots on {plural(t.num_gpus, 'GPU')} ({t.slots_per_gpu} per GPU, "
        f"{plural(t.num_nodes, 'node')}): {plural(t.num_replicas - num_experts, 'slot')} spare for extra copies.",
    ]
    if t.num_groups > 1:
        lines.append(f"Colours show the {t.num_groups} expert groups of {num_experts // t.num_groups}. DeepSeek-V3 "
                     "sends each token to experts of a few groups, so a group kept on one node keeps its traffic "
                     "inside the node.")
    lines += [
        f"Before rebalancing, slot i holds expert i mod {num_experts} (vLLM's starting map).",
        f"So {busiest(walk.gpu_load_before)}; an even split gives every GPU {tokens(total / t.num_gpus)}.",
    ]
    if walk.mode == "global":
        lines.append("This case runs in global mode, so the policy treats the layer as one group on one node.")
    return lines


def describe_groups(walk: Walkthrough) -> list[str]:
    """The policy's first step: group loads and how the groups are packed onto nodes."""
    if walk.mode == "global":
        return ["Global mode: all experts form one group on one node, so there is nothing to place at this level.",
                "Every expert waits beside the GPUs for the next step."]
    groups, size, t = walk.groups, walk.group_size, walk.topology
    if t.num_nodes == 1:
        return ["First the expert groups go onto nodes. There is one node, so it takes every group: "
                "nothing to decide here.", "Every expert waits beside the GPUs for the next step."]
    heaviest = int(groups.order[0])
    lines = [f"First each group of {plural(size, 'expert')} goes onto one node, whole, so a token's group "
             "stays inside a node."]
    if groups.capacity == 1:
        lines.append("There are as many nodes as groups, so each node takes one group.")
    else:
        lines += [f"Each node takes {groups.capacity} groups.",
                  *_sentences(idea(walk.policy).packing("groups", "node"))]
    node_load = groups.bin_load
    lines += [
        f"Group {heaviest} ({expert_span(heaviest * size, size)}) is the heaviest: "
        f"{tokens(float(groups.load[heaviest]))} tokens.",
        "Node loads: " + ", ".join(f"node {n} {tokens(float(v))}" for n, v in enumerate(node_load)) + ".",
        "The bars show the best each GPU can do now: its node's load shared evenly by the node's GPUs.",
    ]
    return lines


def describe_replication(walk: Walkthrough) -> list[str]:
    """The policy's second step: which experts get extra copies, and why."""
    node = walk.nodes[0]
    slots, experts = node.copies.numel(), node.load.numel()
    if slots == experts:
        return ["There is no spare slot, so every expert keeps a single copy.",
                "The next step places the copies on the GPUs."]
    where = "Each node" if len(walk.nodes) > 1 else "The node"
    extra = plural(slots - experts, "extra copy", "extra copies")
    lines = [f"{where} has {slots} slots for its {experts} experts: {extra} to hand out.",
             *_sentences(idea(walk.policy).replicate)]
    if node.added is not None:
        before = node.per_copy_before_each_choice()
        choice = int(node.added[0])
        lines.append(f"{'On node 0 the' if len(walk.nodes) > 1 else 'The'} first goes to expert "
                     f"{int(node.experts[choice])}: {tokens(float(before[0, choice]))} tokens per copy, the most. "
                     f"With two copies, each carries {tokens(float(node.load[choice]) / 2)}.")
    else:
        more = [f"expert {int(e)} x{int(c)}" for n in walk.nodes for e, c in zip(n.experts, n.logcnt) if c > 1]
        lines.append("Experts with more than one copy: " + (", ".join(more) or "none") + ".")
    lines.append("New copies have a black frame.")
    return lines


def describe_packing(walk: Walkthrough) -> list[str]:
    """The policy's third step: how the copies are packed onto GPUs."""
    t = walk.topology
    lines = [f"Now each node's {walk.nodes[0].copies.numel()} copies move onto its {plural(t.gpus_per_node, 'GPU')}, "
             f"{plural(t.slots_per_gpu, 'copy', 'copies')} per GPU.",
             *_sentences(idea(walk.policy).packing("copies", "GPU"))]
    if not walk.sequential:
        lines.append("This policy chooses counts and packing together; the picture shows its final layout.")
    lines.append(f"Result: {busiest(walk.gpu_load)}.")
    return lines


def describe_result(walk: Walkthrough) -> list[str]:
    """The result: the final placement and per-GPU load against the "before" map."""
    if float(walk.weight.sum()) == 0:
        return ["This layer has no load: every placement is equally balanced."]
    lines = [f"Before: {busiest(walk.gpu_load_before)}.", f"After {walk.policy}: {busiest(walk.gpu_load)}.",
             f"Balancedness, vLLM's measure (mean / max GPU load), goes from {walk.balancedness_before:.3f} to "
             f"{walk.balancedness:.3f}. At 1.000 every GPU would finish at the same time."]
    floor = _node_floor(walk)
    return lines + ([floor] if floor else [])


def _node_floor(walk: Walkthrough) -> str:
    """Why the busiest GPU cannot get lighter inside its node: placing the groups fixed the node's load."""
    if walk.mode == "global" or walk.topology.num_nodes == 1:
        return ""
    peak = int(walk.gpu_load.argmax())
    node = peak // walk.topology.gpus_per_node
    node_load = float(walk.groups.bin_load[node])
    floor = node_load / walk.topology.gpus_per_node
    if float(walk.gpu_load[peak]) > floor * (1 + 1e-6):
        return ""
    return (f"GPU {peak} cannot do better: placing the groups gave node {node} {tokens(node_load)} tokens, which its "
            f"{walk.topology.gpus_per_node} GPUs at best share evenly ({tokens(floor)} each).")


def doubled_up(walk: Walkthrough) -> list[tuple[int, int, int]]:
    """(GPU, expert, copies) for every GPU holding two or more copies of one expert: slots that buy nothing."""
    per_gpu = walk.phy2log.view(walk.topology.num_gpus, -1)
    found = []
    for gpu, slots in enumerate(per_gpu.tolist()):
        for expert in sorted(set(slots)):
            if slots.count(expert) > 1:
                found.append((gpu, expert, slots.count(expert)))
    return found


def differs(walk: Walkthrough, reference: Walkthrough) -> torch.Tensor:
    """[P] bool: slots holding a copy that ``reference``'s placement does not have on that GPU.

    Copies are compared GPU by GPU, as many copies of an expert as the GPU holds there,
    so the same copies in another slot order on a GPU are no difference.
    """
    slots = walk.topology.slots_per_gpu
    changed = []
    for mine, theirs in zip(walk.phy2log.view(-1, slots).tolist(), reference.phy2log.view(-1, slots).tolist()):
        left = Counter(theirs)
        for expert in mine:
            changed.append(left[expert] == 0)
            left[expert] -= 1
    return torch.tensor(changed)


MAX_LISTED = 4
"""Copy-count differences listed one by one; more are counted."""


def describe_difference(walk: Walkthrough, reference: Walkthrough) -> list[str]:
    """``walk``'s policy against ``reference``'s on the same case, in short sentences."""
    ideas = idea(walk.policy)
    lines = [f"How {walk.policy} works: {ideas.replicate[0].lower()}{ideas.replicate[1:]}",
             *_sentences(ideas.packing("copies", "GPU"))]
    if torch.equal(walk.phy2log, reference.phy2log):
        return lines + [f"On this case it puts every copy exactly where {reference.policy} does."]
    changed = (walk.logcnt != reference.logcnt).nonzero().flatten().tolist()
    lines += [f"Expert {e}: {plural(int(walk.logcnt[e]), 'copy', 'copies')} instead of {int(reference.logcnt[e])}."
              for e in changed[:MAX_LISTED]]
    if len(changed) > MAX_LISTED:
        lines.append(f"{len(changed) - MAX_LISTED} more experts get a different number of copies.")
    if not changed:
        lines.append(f"Every expert gets as many copies as with {reference.policy}; only their places differ.")
    for name, placed in ((reference.policy, reference), (walk.policy, walk)):
        for gpu, expert, copies in doubled_up(placed)[:2]:
            lines.append(f"{name} puts {copies} copies of expert {expert} on GPU {gpu}: that GPU serves them all, "
                         "so the extra slot buys nothing.")
    lines.append(f"A black frame marks a copy that {reference.policy} puts on another GPU.")
    peak, reference_peak = float(walk.gpu_load.max()), float(reference.gpu_load.max())
    if peak == reference_peak:
        lines.append(f"The busiest GPU serves {tokens(peak)} tokens with both, so on this case {walk.policy} is "
                     "no faster.")
    else:
        lines += [f"Busiest GPU: {tokens(peak)} tokens with {walk.policy}, {tokens(reference_peak)} with "
                  f"{reference.policy}.",
                  f"Balancedness: {walk.balancedness:.3f} against {reference.balancedness:.3f}."]
    return lines


# ---------------------------------------------------------------- the steps as tables


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



"""The topology sliders' values, and what is wrong with a topology, in the controls' own words. No Streamlit here.

The sidebar draws Nodes, GPUs per node, Redundant slots and Expert groups as sliders
over ``choices(...)``: only values that fit the rest of the topology, so an invalid
topology cannot be picked from them. A value that came from a link (or a control
changed elsewhere) and does not fit stays on its slider, added to the choices, and
``problem(...)`` says what to set instead, e.g. "set Redundant slots to 64 or 128".
Nodes and GPUs per node step in powers of two; a link can still set any count (say 3 nodes).
"""

from __future__ import annotations

from eplb.whatif import divisors, nearest, redundant_choices

NODE_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # powers of two: a step keeps the slots even more often
GPUS_PER_NODE_CHOICES = (1, 2, 4, 8, 16, 32, 64)
LABELS = {"nodes": "Nodes", "gpus_per_node": "GPUs per node", "redundant": "Redundant slots",
          "groups": "Expert groups", "mode": "Mode"}


def redundant_limit(num_experts: int, num_gpus: int, ceiling: int) -> int:
    """The Redundant slots slider's top: 8 slots per GPU or twice the experts, whichever is more, within ceiling."""
    return min(ceiling, max(8 * num_gpus, 2 * num_experts))


def fitting_redundant(num_experts: int, num_gpus: int, ceiling: int = 4096) -> list[int]:
    """The Redundant slots counts that spread evenly over num_gpus, up to the slider's top."""
    return redundant_choices(num_experts, num_gpus, redundant_limit(num_experts, num_gpus, ceiling))


def next_fitting(num_experts: int, num_gpus: int, wanted: int, ceiling: int = 4096) -> int:
    """The smallest fitting Redundant slots count at or above wanted (never fewer copies than asked), else the top."""
    fits = fitting_redundant(num_experts, num_gpus, ceiling)
    return min((r for r in fits if r >= wanted), default=fits[-1])


def choices(name: str, num_experts: int, num_gpus: int, current: int, ceiling: int = 4096) -> list[int]:
    """The slider values of one topology control, the current value included even when it does not fit."""
    values = {
        "nodes": list(NODE_CHOICES),
        "gpus_per_node": list(GPUS_PER_NODE_CHOICES),
        "redundant": redundant_choices(num_experts, num_gpus, redundant_limit(num_experts, num_gpus, ceiling)),
        "groups": divisors(num_experts),
    }[name]
    return sorted(set(values) | {int(current)})


def _either(values: list[int]) -> str:
    return " or ".join(str(v) for v in values)


def problem(num_experts: int, nodes: int, gpus_per_node: int, redundant: int, groups: int, mode: str) -> str | None:
    """Why this sidebar topology does not fit num_experts experts, naming the controls and the nearest valid values.

    None when it fits (the rules of ``eplb.Topology.validate``, as the sidebar's controls express them).
    """
    for name, value in (("nodes", nodes), ("gpus_per_node", gpus_per_node), ("groups", groups)):
        if value < 1:
            return f"{LABELS[name]} must be at least 1 (it is {value}): set {LABELS[name]} to 1 or more."
    if redundant < 0:
        return f"Redundant slots cannot be negative (it is {redundant}): set Redundant slots to 0 or more."
    num_gpus = nodes * gpus_per_node
    if num_experts % groups:
        return (f"Expert groups ({groups}) must divide the {num_experts} experts evenly: set Expert groups to "
                f"{_either(nearest(divisors(num_experts), groups))}.")
    if (num_experts + redundant) % num_gpus:
        fits = nearest(redundant_choices(num_experts, num_gpus, redundant + 2 * num_gpus), redundant)
        return (f"Redundant slots ({redundant}) do not spread evenly over the {num_gpus} GPUs ({nodes} nodes x "
                f"{gpus_per_node} GPUs per node): {num_experts} experts + {redundant} = {num_experts + redundant} "
                f"slots, and every GPU needs the same number. Set Redundant slots to {_either(fits)}.")
    if mode == "hierarchical" and groups % nodes:
        fits = nearest(divisors(groups), nodes)
        return (f"Hierarchical mode keeps whole expert groups on each node, so Expert groups ({groups}) must be a "
                f"multiple of Nodes ({nodes}): set Mode to auto or global, or Nodes to {_either(fits)}.")
    return None

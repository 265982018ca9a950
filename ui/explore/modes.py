"""Explore's result cards, and the two modes side by side with the network price that justifies hierarchical.

    before, after = compute.baseline(...), compute.placement(...)
    modes.result_cards(shown, before, after)
    modes.mode_comparison(shown, after)
"""

from __future__ import annotations

import pyarrow as pa
import streamlit as st

from eplb.analysis import applicable_modes
from eplb.presets import PRESETS
from eplb.traffic import Traffic, dispatch_traffic, tokens_per_step
from ui import compute
from ui.analysis_figures import format_bytes
from ui.figures import format_ratio
from ui.state import Inputs

TRAFFIC_HELP = (
    "An estimate, not a measurement. Tokens start evenly spread over the nodes and go once to every other node "
    "holding one of their experts; routing is uniform (hot experts are not modelled). Hierarchical mode with "
    "group-limited routing (DeepSeek-V3: 4 of 8 groups) keeps each group on one node, so a token reaches the nodes "
    "of its groups only; otherwise its top-k experts are spread over all nodes. Bytes = tokens x hidden size x 2 "
    "(BF16); combine sends as much back. See docs/whatif.md."
)


def _mode_words(shown: Inputs, mode: str) -> str:
    """Why this mode: chosen by hand, or what auto's rule saw."""
    t = shown.topology
    if shown.mode != "auto":
        return f"{mode} mode, as chosen in the sidebar"
    if mode == "hierarchical":
        return f"hierarchical mode: auto picks it because the {t.num_groups} expert groups divide over the " \
               f"{t.num_nodes} nodes"
    return f"global mode: auto picks it because the {t.num_groups} expert groups do not divide over the " \
           f"{t.num_nodes} nodes"


def result_cards(shown: Inputs, before, after) -> None:
    """The metric cards, each with its unit and denominator, before and after both shown."""
    ratio, b, a = format_ratio, before.report, after.report
    st.markdown(f"Result in **{after.mode}** mode, policy **{after.policy}** ({_mode_words(shown, after.mode)}).")
    cards = [*st.columns(3), *st.columns(3)]
    # the definition sits on the after card: a help icon on this one would cut its label at 1024 px
    cards[0].metric("Balancedness before (vLLM)", ratio(b.balancedness))
    cards[1].metric("Balancedness after (vLLM)", ratio(a.balancedness),
                    delta=None if a.balancedness is None or b.balancedness is None
                    else f"{a.balancedness - b.balancedness:+.3f} from {b.balancedness:.3f}",
                    help="vLLM's definition: sum over layers of the mean GPU load / sum over layers of the max GPU "
                         f"load (1 = perfectly even). After: {after.policy}'s placement in {after.mode} mode. "
                         "Before: vLLM's initial map, slot i holds expert i % experts.")
    cards[2].metric("Bound's balancedness", ratio(a.bound_balancedness),
                    help=f"The best balancedness any placement could reach in {after.mode} mode on this topology "
                         "(a proven bound); the other mode's bound is in the table below.")
    cards[3].metric("Max / mean after", ratio(a.straggler_factor, 2),
                    delta=None if a.straggler_factor is None or b.straggler_factor is None
                    else f"{a.straggler_factor - b.straggler_factor:+.2f} from {b.straggler_factor:.2f}",
                    delta_color="inverse",
                    help="Busiest GPU's tokens / the mean GPU's tokens, over all layers (1 / balancedness): how "
                         "much longer the busiest GPU works.")
    cards[4].metric("Rebalance runtime", f"{after.runtime_ms:.1f} ms",
                    help=f"policy {after.policy}, {after.mode} mode, on this server's CPU")
    pairs = a.gpu_loads.numel()
    cards[5].metric("Duplicate copies", f"{a.duplicate_gpus:,} of {pairs:,}", delta="(layer, GPU) pairs",
                    delta_color="off", delta_arrow="off",
                    help=f"(layer, GPU) pairs, out of {a.gpu_loads.shape[0]} layers x {a.gpu_loads.shape[1]} GPUs, "
                         "where one GPU holds two or more copies of the same expert: slots that add no balance.")


def traffic_by_mode(shown: Inputs, modes: list[str]) -> dict[str, Traffic] | None:
    """Each mode's dispatch estimate for the sidebar's data, None when the data's model is unknown."""
    return _traffic(shown.digest, shown.topology, tuple(modes), shown.model)


@compute.cached
def _traffic(digest: str, topology, modes: tuple[str, ...], model_name: str | None) -> dict[str, Traffic] | None:
    """``traffic_by_mode`` for the registered load ``digest``, computed once per topology and model."""
    model = PRESETS.get(model_name) if model_name else None
    weight = compute.lookup(digest)
    if model is None or model.num_experts != weight.shape[1]:
        return None
    tokens = tokens_per_step(weight, model.top_k)
    return {mode: dispatch_traffic(topology, mode, model, tokens, num_layers=weight.shape[0]) for mode in modes}


def _tokens(value: float) -> str:
    return f"{value:,.0f}"


def mode_comparison(shown: Inputs, after) -> None:
    """Both modes' balancedness, bound and network traffic on this topology (one mode when only one fits)."""
    modes = applicable_modes(shown.topology, shown.num_experts)
    traffic = traffic_by_mode(shown, modes)
    rows = []
    for mode in modes:
        run = after if mode == after.mode else compute.placement(shown.digest, shown.topology, mode, shown.policy)
        row = {"Mode": f"{mode} (shown)" if mode == after.mode else mode,
               "Balancedness after": format_ratio(run.report.balancedness),
               "Bound (best possible)": format_ratio(run.report.bound_balancedness)}
        if traffic:
            t = traffic[mode]
            row |= {"A token reaches (nodes)": f"{t.nodes_reached:.2f} of {shown.topology.num_nodes}",
                    "Routing": t.routing,
                    "Tokens between nodes, per MoE layer": _tokens(t.tokens_per_layer),
                    "Dispatch bytes between nodes, per step": format_bytes(t.bytes_per_step)}
        rows.append(row)
    st.table(pa.Table.from_pylist(rows), hide_index=True, border="horizontal")  # 20x cheaper than pandas
    t = shown.topology
    if len(modes) == 1:
        st.caption(f"Only global mode fits: hierarchical mode needs Expert groups ({t.num_groups}) to be a multiple "
                   f"of Nodes ({t.num_nodes}).")
        return
    if traffic is None:
        st.caption("The network estimate needs the data's model (a sample's, a preset's, or the one chosen under the "
                   "uploader).")
        return
    h, g = traffic["hierarchical"], traffic["global"]
    saved = g.bytes_per_step - h.bytes_per_step
    if t.num_nodes == 1:
        st.caption("On one node no token crosses the network, so hierarchical mode saves nothing here.")
    elif saved > 0:
        st.caption(f"Why pay for hierarchical: a token reaches {h.nodes_reached:.2f} nodes instead of "
                   f"{g.nodes_reached:.2f}, so dispatch sends {_tokens(g.tokens_per_layer - h.tokens_per_layer)} "
                   f"fewer tokens between nodes per MoE layer ({format_bytes(saved)} less per step, as much again "
                   f"on combine).", help=TRAFFIC_HELP)
    else:
        st.caption(f"Hierarchical mode saves no network traffic here: this model's routing ({h.routing} per token) "
                   "is not group-limited over these groups and nodes, so its tokens spread as widely as in global "
                   "mode.", help=TRAFFIC_HELP)

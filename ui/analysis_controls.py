"""Controls shared by the analysis pages: the size of one expert, and where a replay's trace comes from.

    expert_bytes = analysis_controls.expert_bytes_input(num_layers, num_experts, key="sweep")
    picked = analysis_controls.trace_picker(inputs)   # a PickedTrace, or None with the message shown
    topology = analysis_controls.replay_topology(picked, inputs)   # the trace's deployment or the sidebar's
    keep_copies, balance_tolerance = analysis_controls.migration_knob()
"""

from __future__ import annotations

from dataclasses import dataclass

import dataclasses

import streamlit as st
import torch

import eplb
from eplb.analysis import preset_for_shape
from eplb.replay import TRADEOFF_SETTINGS
from eplb.formats import read_load
from eplb.formats.safe import MAX_ELEMENTS
from eplb.workloads import DEFAULT_SKEW, FAMILIES
from ui import analysis_compute
from ui.analysis_figures import format_bytes
from ui.data import LOAD_EXTENSIONS
from ui.state import Inputs
from ui.text import escape

TRACE_SOURCES = {"data": "Sidebar data", "sample": "Sample trace", "generate": "Generate", "upload": "Upload"}
_UPLOADED = "replay__uploaded"  # (trace, label) of the last upload that held a trace
_UPLOAD_SEEN = "replay__upload_seen"
_UPLOAD_ERROR = "replay__upload_error"


def expert_bytes_input(num_layers: int, num_experts: int, *, key: str) -> int:
    """A number input for one expert's size in MiB, preset from the model with this shape; returns bytes.

    The widget is keyed by the shape, so new data of another model starts from that model's size.
    """
    preset = preset_for_shape(num_layers, num_experts)
    mib = st.number_input(
        "One expert's weights (MiB)", min_value=0.0, step=1.0, format="%.2f",
        value=round(preset.expert_bytes / 2**20, 2) if preset else 0.0,
        key=f"{key}_expert_mib_{num_layers}x{num_experts}",
        help="Gate, up and down projections: 3 x hidden size x MoE intermediate size x bytes per parameter.",
    )
    if preset:
        st.caption(f"Preset from {preset.name} ({num_layers} MoE layers x {num_experts} experts): "
                   f"{format_bytes(preset.expert_bytes)} per expert, per its published config.")
    elif mib == 0:
        st.caption(f"No model preset has {num_layers} layers x {num_experts} experts: enter one expert's size "
                   "to price the copies in bytes.")
    return int(mib * 2**20)


@dataclass(frozen=True)
class PickedTrace:
    """A trace [steps, layers, experts] to replay, where it came from, and the deployment it comes with (if any)."""

    trace: torch.Tensor
    label: str
    deployment: eplb.Topology | None = None


def replay_topology(picked: PickedTrace, inputs: Inputs) -> eplb.Topology:
    """The topology to replay on: a sample trace's own deployment (said so), unless the user asks for the sidebar's.

    The sidebar's topology gets its slots counted on the trace's experts.
    """
    sidebar = dataclasses.replace(inputs.topology, num_replicas=picked.trace.shape[-1] + inputs.redundant)
    if picked.deployment is None:
        return sidebar
    if st.toggle("Replay on the sidebar's topology", key="replay_sidebar_topology",
                 help="Off: the deployment this sample trace was made for, from its manifest "
                      "(sample_data/traces/traces.json)."):
        return sidebar
    d = picked.deployment
    st.caption(f"Replayed on the deployment this sample trace comes with: {d.num_nodes} nodes x {d.gpus_per_node} "
               f"GPUs, {d.num_replicas - picked.trace.shape[-1]} redundant slots, {d.num_groups} expert groups "
               "(from its manifest). Switch on the toggle to use the sidebar's topology instead.")
    return d


def migration_knob() -> tuple[bool, float | None]:
    """How much a rebalance may keep of the placement on the GPUs: (keep_copies, balance_tolerance)."""
    labels = [label for label, _, _ in TRADEOFF_SETTINGS]
    chosen = st.select_slider(
        "Keep copies in place", labels, value="tolerance 0%", key="replay_knob",
        help="Fresh plan: every plan packed from scratch. Relabel only: the same plan, its GPUs, nodes and slots "
             "renamed to keep the copies already in place (same balance). Tolerance t: a layer may instead keep "
             "its placement with a few copies swapped or re-pointed, when that moves fewer copies and its heaviest "
             "GPU on a next-window estimate (the window's latest steps weighted most, averaged with the "
             "plan's own trend estimate) is at most 1 / (1 - t) times the plan's (0%: no loss there).",
    )
    _, keep_copies, balance_tolerance = TRADEOFF_SETTINGS[labels.index(chosen)]
    return keep_copies, balance_tolerance


def _read_upload(uploaded) -> None:
    """Read a new upload once; keep it when it holds a trace, else keep the message and the previous trace."""
    if uploaded is None or st.session_state.get(_UPLOAD_SEEN) == uploaded.file_id:
        return
    st.session_state[_UPLOAD_SEEN] = uploaded.file_id
    try:
        loaded = read_load(uploaded.getvalue(), uploaded.name)
        if loaded.trace is None:
            raise ValueError(f"{uploaded.name} holds one load matrix ({loaded.description}), not a trace: a trace "
                             "has one matrix per step, [steps, layers, experts] (.npy, .npz, .pt, or vLLM's "
                             "expert-load.json history); a single matrix belongs in the sidebar's upload")
        st.session_state[_UPLOADED] = PickedTrace(loaded.trace, f"upload: {uploaded.name} ({loaded.description})")
        st.session_state[_UPLOAD_ERROR] = None
    except ValueError as exc:  # FormatError and the message above
        st.session_state[_UPLOAD_ERROR] = escape(
            f"Could not use {uploaded.name}: {exc}. Keeping the current trace.", 900)


def trace_picker(inputs: Inputs) -> PickedTrace | None:
    """Draw the trace source controls; return the trace to replay, or None (with a message shown) if none yet."""
    sources = [s for s in TRACE_SOURCES if s != "data" or inputs.trace is not None]
    source = st.segmented_control(  # a sidebar trace, once there is one, is the first choice
        "Trace", sources, format_func=TRACE_SOURCES.get, default=sources[0],
        key="replay_source_data" if inputs.trace is not None else "replay_source",
    ) or sources[0]
    if source == "data":
        st.caption(f"The trace loaded in the sidebar: {escape(inputs.label, 300)}.")
        return PickedTrace(inputs.trace, inputs.label)
    if source == "sample":
        options = analysis_compute.sample_traces()
        same_shape = [n for n in options if analysis_compute.load_sample_trace(n).shape[1:] == inputs.weight.shape]
        name = st.selectbox("Sample trace", list(options), format_func=lambda n: options[n].label,
                            index=list(options).index(same_shape[0]) if same_shape else 0, key="replay_sample",
                            help="Made by eplb.workloads.generate_trace in real model shapes (sample_data/traces/).")
        return PickedTrace(analysis_compute.load_sample_trace(name), f"sample trace: {options[name].label}",
                           analysis_compute.trace_deployment(name))
    if source == "generate":
        left, middle, right = st.columns(3)
        family = left.selectbox("Workload family", list(FAMILIES), index=list(FAMILIES).index("zipf"),
                                key="replay_family")
        skew = middle.number_input("Skew", min_value=0.0, step=0.1, value=float(DEFAULT_SKEW[family]),
                                   key=f"replay_skew_{family}")
        drift = right.number_input("Drift per step", min_value=0.0, max_value=2.0, step=0.01, value=0.05,
                                   key="replay_drift",
                                   help="Step of the random walk the experts' log-popularity takes.")
        most = max(2, min(256, MAX_ELEMENTS // inputs.weight.numel()))  # a trace is at most what a file may hold
        steps = left.number_input("Steps", min_value=2, max_value=most, step=8, value=min(64, most), key="replay_steps",
                                  help=f"2 to {most} here: a trace holds at most {MAX_ELEMENTS:,} values, as a file.")
        seed = middle.number_input("Seed", min_value=0, step=1, value=0, key="replay_seed")
        layers, experts = inputs.weight.shape
        preset = preset_for_shape(layers, experts)
        try:
            trace = analysis_compute.generated_trace(family, int(steps), layers, experts, skew=skew, drift=drift,
                                                     seed=int(seed), top_k=preset.top_k if preset else 8)
        except ValueError as exc:
            st.error(f"Cannot generate this trace: {exc}")
            return None
        return PickedTrace(trace, f"generated trace: {family} (skew {skew:g}), drift {drift:g}, {steps} steps, "
                                  f"seed {seed}, in the sidebar data's shape ({layers} layers x {experts} experts)")
    uploaded = st.file_uploader(
        "Trace file", type=list(LOAD_EXTENSIONS), key="replay_upload",
        help="A [steps, layers, experts] array (.npy, .npz, torch .pt, JSON) or vLLM's expert-load.json history.",
    )
    _read_upload(uploaded)
    if st.session_state.get(_UPLOAD_ERROR):
        st.error(st.session_state[_UPLOAD_ERROR])
    picked = st.session_state.get(_UPLOADED)
    if picked is None:
        st.info("Upload a trace to replay it.")
    return picked

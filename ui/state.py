"""The data and topology every page works on: sidebar controls, session state and the URL.

Call ``page_inputs()`` at the top of a page. It draws the data and topology controls
in the sidebar (``sidebar()``) and returns the ``Inputs`` to draw: the current ones,
or the last valid ones beside the message (``valid_inputs()``)::

    shown = state.page_inputs()
    result = compute.placement(shown.digest, shown.topology, shown.mode, shown.policy)

What the sidebar guarantees, on every page:

* The choices survive page switches (session state, widgets with ``persist_state="session"``) and are
  mirrored in ``st.query_params``, so a what-if is a shareable link. The link
  carries a sample name or the generator's parameters; an uploaded file cannot
  travel in a link, so a link made while an upload is shown carries the topology only.
* A bad upload never replaces the current data: the previous data stays and the
  reader's message is shown under the uploader.
* A topology the contract rejects yields ``Inputs.error`` (eplb's message, which
  says what to change) shown inline under the controls, never a traceback.
* ``Inputs.digest`` is the key for the cached functions in ``ui.compute``; the
  matrix is registered there on every rerun.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import streamlit as st
import torch

import eplb
from ui import compute, data, text
from ui import topology as sliders

SOURCES = {"sample": "Sample", "generate": "Generate", "upload": "Upload"}

DEFAULTS: dict[str, object] = {
    "data": "sample",
    "sample": data.DEFAULT_SAMPLE,
    "preset": "DeepSeek-V3/R1",
    "family": "zipf",
    "skew": data.DEFAULT_SKEW["zipf"],
    "seed": 0,
    "nodes": 4,
    "gpus_per_node": 8,
    "redundant": 32,
    "groups": 8,
    "mode": "auto",
    "policy": eplb.DEFAULT_POLICY,
}
"""First open: the DeepSeek-V3-shaped sample on 4 nodes x 8 GPUs with 32 redundant slots."""

LIMITS = {
    "nodes": (1, 512), "gpus_per_node": (1, 64), "redundant": (0, 4096), "groups": (1, 4096),
    "seed": (0, 2**31 - 1), "skew": (0.0, 1e6),
}
"""Allowed range of each numeric control; the links and the controls' raw values are checked against it too."""

MAX_SLOT_LAYERS = 2**20
MAX_SLOTS = 2**15
"""Most layers x physical slots, and most slots per layer (num_replicas), the server balances for one
topology. One rebalance's peak memory grows with the slot-layers, by up to 750 bytes each for the
``joint`` policy (80-140 for the others) as measured on every shape at the limit (docs/robustness.md),
so one rebalance at the limit stays under 1 GiB, and at most two run at once (``ui.compute``). More
slots per layer cost ``joint`` more per slot (2.4 KB and 40 s at 2^18)."""

LIMITS_WHY = {
    "nodes": "at most 512 nodes: 512 x 64 GPUs is already twice the largest expert-parallel group deployed",
    "gpus_per_node": "at most 64 GPUs per node",
    "redundant": f"at most 4096 redundant slots, experts + redundant at most {MAX_SLOTS:,} and layers x (experts "
                 f"+ redundant) at most {MAX_SLOT_LAYERS:,} slot-layers: the memory one rebalance on this server may "
                 "take",
    "groups": "at most 4096 expert groups",
    "seed": "a whole number from 0 to 2^31 - 1",
    "skew": "from 0 to 10^6",
}
"""Why each control stops where it does, for its help text and its messages."""

TOPOLOGY_PARAMS = ("nodes", "gpus_per_node", "redundant", "groups", "mode", "policy")
DATA_PARAMS = {"sample": ("sample",), "generate": ("preset", "family", "skew", "seed"), "upload": ()}

_KEY = "eplb_{}".format  # widget and session keys: eplb_nodes, eplb_policy, ...
_DATA = "eplb__data"  # the current LoadedData
_UPLOADED = "eplb__uploaded"  # the last upload that read cleanly
_UPLOAD_SEEN = "eplb__upload_seen"  # file_id of the last upload processed
_UPLOAD_ERROR = "eplb__upload_error"
_UPLOAD_MODEL = "eplb_upload_model"  # the model question under the uploader (a widget key)
_LAST_VALID = "eplb__last_valid"
_NOTES = "eplb__notes"  # messages about the link the session was opened with, and about refused raw values
_GOOD = "eplb__good"  # the last usable value of each numeric control
MAX_NOTES = 16  # notes kept for a session: the link's (at most one per parameter) and the latest refused values
_TOPOLOGY_NOTE = "eplb__topology_note"  # what a slider change adjusted, shown once
_KEEP = {"persist_state": "session"}  # a control keeps its value on pages that do not draw it
# Whole-number controls are float inputs shown without decimals: Streamlit resets a non-finite raw value
# of a float input to its default, while an integer input raises on one; ``_check_controls`` then takes
# only whole numbers in range.
_WHOLE_INPUT = {"step": 1.0, "format": "%.0f"}


@dataclass(frozen=True, eq=False)
class Inputs:
    """What a page computes on.

    weight: [layers, experts] load; trace: [steps, layers, experts] or None;
    digest / trace_digest: keys of weight / trace in ``ui.compute``'s registry;
    topology: ``eplb.Topology`` (num_replicas = experts + redundant slots);
    mode: as chosen ("auto", "hierarchical", "global"); resolved_mode: what "auto"
    became, None when invalid; policy: a name in ``eplb.POLICIES``; label: where the
    data came from; error: why the topology does not fit the data (None when it does).
    """

    weight: torch.Tensor
    trace: torch.Tensor | None
    digest: str
    trace_digest: str | None
    topology: eplb.Topology
    mode: str
    resolved_mode: str | None
    policy: str
    label: str
    error: str | None
    model: str | None = None

    @property
    def num_layers(self) -> int:
        return self.weight.shape[0]

    @property
    def num_experts(self) -> int:
        return self.weight.shape[1]

    @property
    def redundant(self) -> int:
        return self.topology.num_replicas - self.num_experts

    def describe(self) -> str:
        """One line: data, topology, mode and policy, as Markdown (the label, which may hold a file name, escaped)."""
        t = self.topology
        shape = f"{self.num_layers} layers x {self.num_experts} experts"
        data_part = text.escape(self.label, 300) + ("" if shape in self.label else f" · {shape}")  # said once
        return (f"{data_part} · {t.num_nodes} nodes x "
                f"{t.gpus_per_node} GPUs, {t.num_replicas} slots ({self.redundant} redundant), {t.num_groups} groups"
                f" · mode {self.resolved_mode or self.mode} · policy {self.policy}")


def _choices(name: str) -> tuple | None:
    """Allowed values of a categorical parameter (None: numeric)."""
    choices = {
        "data": lambda: tuple(SOURCES),
        "sample": lambda: tuple(data.samples()),
        "preset": lambda: tuple(data.PRESETS),
        "family": lambda: tuple(data.FAMILIES),
        "mode": lambda: tuple(eplb.MODES),
        "policy": lambda: tuple(eplb.POLICIES),
    }.get(name)
    return None if choices is None else choices()


_WHOLE = re.compile(r"[+-]?[0-9]{1,12}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)


def _number(name: str, raw: str) -> int | float | None:
    """The number a link's text spells for a numeric control, or None: plain ASCII decimals only (no
    "inf", "nan", "1_0", "1e400", 100,000 digits); a whole-number control takes whole numbers only."""
    if isinstance(DEFAULTS[name], int):
        return int(raw) if _WHOLE.fullmatch(raw) else None
    value = float(raw) if _DECIMAL.fullmatch(raw) else math.nan
    return value if math.isfinite(value) else None


def link_value(name: str, raw: str) -> tuple[object, str | None]:
    """The value a link's ``name=raw`` gives a control, and None; or the default and a note saying why
    not (the note is escaped Markdown: the link's text shows as typed, never as a link or an image)."""
    default = DEFAULTS[name]
    choices = _choices(name)
    shown = repr(raw if len(raw) <= 60 else raw[:57] + "...")
    if choices is not None:
        if raw in choices:
            return raw, None
        why = f"is not one of {', '.join(map(str, choices[:8]))}{' ...' if len(choices) > 8 else ''}"
    else:
        value = _number(name, raw)
        low, high = LIMITS[name]
        if value is not None and low <= value <= high:
            return value, None
        kind = "a whole number" if isinstance(default, int) else "a number"
        why = f"is not {kind} from {low:g} to {high:g} ({LIMITS_WHY[name]})"
    return default, text.escape(f"The link's {name}={shown} {why}: using {default}.", 600)


def _from_url() -> None:
    """First run of a session: seed every control from the link, or from DEFAULTS."""
    notes = []
    for name in DEFAULTS:
        raw = st.query_params.get(name)
        value, note = (DEFAULTS[name], None) if raw is None else link_value(name, raw)
        if note:
            notes.append(note)
        st.session_state[_KEY(name)] = value
    sample = data.samples().get(st.session_state[_KEY("sample")])
    if st.session_state[_KEY("data")] == "sample" and sample and not any(p in st.query_params
                                                                         for p in TOPOLOGY_PARAMS[:4]):
        _apply_deployment(sample)  # a link naming a sample and no topology opens on the sample's deployment
    if st.session_state[_KEY("data")] == "upload":
        notes.append("The link was made from an uploaded file, which cannot travel in a link: "
                     "showing the default sample with the link's topology; upload the file to see it.")
    st.session_state[_NOTES] = notes


def control_value(name: str, value: object) -> int | float | None:
    """A numeric control's value as the app uses it, or None when it is not one the control allows (NaN,
    infinity, a fraction for a whole-number control, out of range, not a number: what a hand-made
    websocket message can send)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    if isinstance(DEFAULTS[name], int):
        if value != int(value):
            return None
        value = int(value)
    else:
        value = float(value)
    low, high = LIMITS[name]
    return value if low <= value <= high else None


def _check_controls() -> None:
    """Put every numeric control whose raw value the app cannot use back to its last good value, with a note."""
    good = st.session_state.setdefault(_GOOD, {})
    for name in LIMITS:
        key = _KEY(name)
        if key not in st.session_state:
            continue
        raw = st.session_state[key]
        value = control_value(name, raw)
        if value is None:
            value = good.get(name, DEFAULTS[name])
            note = text.escape(
                f"{name} = {str(raw)[:40]} is not a value this control takes ({LIMITS_WHY[name]}): back to {value}.",
                400)
            kept = [n for n in st.session_state.get(_NOTES, []) if n != note]
            st.session_state[_NOTES] = [*kept, note][-MAX_NOTES:]  # a client sending bad values forever grows nothing
        if value is not raw:
            st.session_state[key] = value
        good[name] = value


def _carry_over() -> None:
    """Keep every control's value across a page switch.

    Streamlit drops a widget's state on the first run of a page that draws the widget
    anew (a new page means new widget identities); assigning the values back to their
    keys before the widgets are drawn makes them plain session values the new widgets
    start from.
    """
    for name in DEFAULTS:
        key = _KEY(name)
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def _bounds(name: str) -> tuple[float, float]:
    """A whole-number control's ``LIMITS`` as the floats its input takes."""
    return tuple(map(float, LIMITS[name]))


def _suggest_groups(num_groups: int) -> None:
    st.session_state[_KEY("groups")] = num_groups


def _apply_deployment(sample: data.Sample) -> None:
    """Set the topology a sample fits (its manifest's deployment and its model's groups)."""
    _suggest_groups(sample.num_groups)
    for name, value in sample.deployment.items():
        st.session_state[_KEY(name)] = value


def _on_sample_change() -> None:
    sample = data.samples()[st.session_state[_KEY("sample")]]
    _apply_deployment(sample)
    st.session_state[_TOPOLOGY_NOTE] = f"{sample.label} opens on its deployment: {sample.describe_deployment()}."


def _on_preset_change() -> None:
    preset = data.PRESETS[st.session_state[_KEY("preset")]]
    _suggest_groups(preset.num_groups)
    _snap_redundant(preset.num_experts)


def _on_family_change() -> None:
    st.session_state[_KEY("skew")] = data.DEFAULT_SKEW[st.session_state[_KEY("family")]]


def _read_upload(uploaded: list) -> None:
    """Process newly uploaded files once: keep them when they read, else keep the error and the old data."""
    seen = tuple(f.file_id for f in uploaded or ())
    if not seen or st.session_state.get(_UPLOAD_SEEN) == seen:
        return
    st.session_state[_UPLOAD_SEEN] = seen
    accept_uploads([(f.name, f.getvalue()) for f in uploaded])


def accept_upload(content: bytes, filename: str) -> bool:
    """``accept_uploads`` on one file."""
    return accept_uploads([(filename, content)])


def accept_uploads(files: list[tuple[str, bytes]]) -> bool:
    """Read uploaded files into the session (the path the sidebar's uploader takes; tests call it directly).

    On success the upload becomes the session's uploaded data, its model question starts
    on the model told from the shape, and True is returned. On a reader error the
    message is kept for display, the previous data stays, and False is returned.
    """
    try:
        loaded = data.from_uploads(files)
    except ValueError as exc:  # FormatError and eplb's ValueErrors
        names = [name for name, _ in files]
        fault = next((name for name in names if str(exc).startswith(name)), names[0])  # the reader names it first
        others = [name for name in names if name != fault]
        with_others = f" (uploaded with {', '.join(others[:3])}{' ...' if len(others) > 3 else ''})" if others else ""
        st.session_state[_UPLOAD_ERROR] = text.escape(
            f"Could not use {fault}{with_others}: {exc}. Keeping the current data.", 900)
        return False
    st.session_state[_UPLOADED] = loaded
    st.session_state[_UPLOAD_MODEL] = loaded.model or ""
    st.session_state[_UPLOAD_ERROR] = None
    return True


def _upload_model(uploaded: data.LoadedData) -> data.LoadedData:
    """Ask which model an upload belongs to (engine files that index decoder layers need it); return it with it."""
    side = st.sidebar
    num_rows, num_experts = uploaded.weight.shape
    options = ["", *(name for name, p in data.PRESETS.items() if p.num_experts == num_experts)]
    # kept as a plain session value across page switches, as _carry_over does for the other controls
    st.session_state[_UPLOAD_MODEL] = st.session_state.get(_UPLOAD_MODEL) if \
        st.session_state.get(_UPLOAD_MODEL) in options else ""
    choice = side.selectbox(
        "Model of this file", options, key=_UPLOAD_MODEL,
        format_func=lambda name: name or "another model (not listed)",
        help="SGLang's and TensorRT-LLM's placement files index decoder layers, dense layers included, and "
             "vllm-ascend's MoE layers only, so their downloads need the model. It is told from the shape when "
             "exactly one preset fits.",
    )
    if not choice:
        side.caption(f"Which model is this file from? No model is known for {num_rows} rows x {num_experts} experts, "
                     "so the SGLang, TensorRT-LLM and vllm-ascend downloads are off; the other downloads work.")
        return dataclasses.replace(uploaded, model=None)
    try:
        data.PRESETS[choice].check_rows(num_rows, num_experts)
    except ValueError as exc:
        side.warning(f"{text.escape(exc, 400)}: the engine downloads that need the model stay off.")
        return dataclasses.replace(uploaded, model=None)
    return dataclasses.replace(uploaded, model=choice)


def _data_controls() -> data.LoadedData:
    """Draw the data controls; return the data to use (the previous data when the choice fails)."""
    side = st.sidebar
    side.header("Data")
    source = side.segmented_control("Source", list(SOURCES), format_func=SOURCES.get, **_KEEP, key=_KEY("data"))
    source = source or "sample"  # a deselected control means the default
    previous = st.session_state.get(_DATA)
    chosen, problem = None, None
    if source == "sample":
        options = data.samples()
        side.selectbox("Sample", list(options), format_func=lambda n: options[n].label, **_KEEP, key=_KEY("sample"),
                       on_change=_on_sample_change, help="Made by eplb.workloads in real model shapes (sample_data/).")
        chosen = data.load_sample(st.session_state[_KEY("sample")])
    elif source == "generate":
        side.selectbox("Model shape", list(data.PRESETS), **_KEEP, key=_KEY("preset"), on_change=_on_preset_change)
        side.selectbox("Workload family", list(data.FAMILIES), **_KEEP, key=_KEY("family"), on_change=_on_family_change)
        left, right = side.columns(2)
        left.number_input("Skew", *LIMITS["skew"], step=0.1, **_KEEP, key=_KEY("skew"),
                          help="zipf: exponent; lognormal: sigma; hot: hot/mean ratio; zero: idle fraction (< 1).")
        right.number_input("Seed", *_bounds("seed"), **_WHOLE_INPUT, **_KEEP, key=_KEY("seed"))
        try:
            chosen = data.generate(*(st.session_state[_KEY(p)] for p in DATA_PARAMS["generate"]))
        except ValueError as exc:
            problem = f"Cannot generate: {exc}"
    else:
        uploaded = side.file_uploader(
            "Load file(s)", type=list(data.LOAD_EXTENSIONS), key="eplb_upload", accept_multiple_files=True,
            help="A load: CSV (layers x experts, header optional), .npy/.npz, torch .pt, JSON list of lists, "
                 "expert-load.json; an SGLang expert-distribution dump (every rank's file, or a zip of them); "
                 "TensorRT-LLM expert statistics (meta_info.json and every rank*.safetensors, or a zip of the "
                 "folder). Several files are summed as one engine's rank files.",
        )
        _read_upload(uploaded)
        problem = st.session_state.get(_UPLOAD_ERROR)
        chosen = st.session_state.get(_UPLOADED)
        if chosen is not None:
            chosen = _upload_model(chosen)
        side.caption("An uploaded file cannot travel in a shareable link; the link keeps the topology only.")
    if problem:
        side.error(problem)
    current = chosen or previous or data.load_sample(data.DEFAULT_SAMPLE)
    st.session_state[_DATA] = current
    return current


def _snap_redundant(num_experts: int | None = None) -> None:
    """After Nodes, GPUs per node or the model moved: keep Redundant slots spreading evenly, at the next count
    that does. num_experts: the new data's (default: the current data's)."""
    loaded = st.session_state.get(_DATA)
    if num_experts is None and loaded is None:
        return
    num_experts = loaded.weight.shape[1] if num_experts is None else num_experts
    num_gpus = int(st.session_state[_KEY("nodes")]) * int(st.session_state[_KEY("gpus_per_node")])
    redundant = int(st.session_state[_KEY("redundant")])
    if (num_experts + redundant) % num_gpus:
        snapped = sliders.next_fitting(num_experts, num_gpus, redundant, LIMITS["redundant"][1])
        st.session_state[_KEY("redundant")] = snapped
        st.session_state[_TOPOLOGY_NOTE] = (f"Redundant slots moved from {redundant} to {snapped}, so that the "
                                            f"{num_experts + snapped} slots spread evenly over the {num_gpus} GPUs.")


def _topology_controls(num_experts: int) -> None:
    """Sliders over the values that fit the rest of the topology (``ui.topology.choices``), mode and policy."""
    side = st.sidebar
    side.header("Topology")
    value = {name: int(st.session_state[_KEY(name)]) for name in ("nodes", "gpus_per_node", "redundant", "groups")}
    num_gpus = max(value["nodes"] * value["gpus_per_node"], 1)
    options = {name: sliders.choices(name, num_experts, num_gpus, value[name], LIMITS["redundant"][1])
               for name in value}
    left, right = side.columns(2)
    left.select_slider("Nodes", options["nodes"], **_KEEP, key=_KEY("nodes"), on_change=_snap_redundant)
    right.select_slider("GPUs per node", options["gpus_per_node"], **_KEEP, key=_KEY("gpus_per_node"),
                        on_change=_snap_redundant)
    side.select_slider("Redundant slots", options["redundant"], **_KEEP, key=_KEY("redundant"),
                       help=f"Physical slots beyond one per expert (slots = experts + redundant); only counts that "
                            f"spread evenly over the {num_gpus} GPUs are offered. Limit: {LIMITS_WHY['redundant']}.")
    side.select_slider("Expert groups", options["groups"], **_KEEP, key=_KEY("groups"),
                       help=f"The divisors of the {num_experts} experts. DeepSeek-V3's group-limited routing uses "
                            "8; models without groups use 1.")
    note = st.session_state.pop(_TOPOLOGY_NOTE, None)
    if note:
        side.info(note)
    side.selectbox("Mode", list(eplb.MODES), **_KEEP, key=_KEY("mode"),
                   help="auto: hierarchical when groups divide evenly over nodes, else global.")
    side.selectbox("Policy", list(eplb.POLICIES), **_KEEP, key=_KEY("policy"),
                   help="\n\n".join(f"**{name}**: {p.summary}" for name, p in eplb.POLICIES.items()))


def _sync_url(loaded: data.LoadedData) -> None:
    """Mirror the choices in the address bar; touch only this module's parameters."""
    wanted = {"data": st.session_state[_KEY("data")], **loaded.params}
    wanted.update({name: str(st.session_state[_KEY(name)]) for name in TOPOLOGY_PARAMS})
    for name in ("data", *(p for params in DATA_PARAMS.values() for p in params), *TOPOLOGY_PARAMS):
        if name in wanted and st.query_params.get(name) != str(wanted[name]):
            st.query_params[name] = str(wanted[name])
        elif name not in wanted and name in st.query_params:
            del st.query_params[name]


def sidebar() -> Inputs:
    """Draw the data and topology controls in the sidebar; return the current ``Inputs``.

    Never raises on user input: a failing data choice keeps the previous data (with
    the message under the control), a rejected topology sets ``Inputs.error``.
    """
    if _KEY("data") not in st.session_state:
        _from_url()
    else:
        _carry_over()
    _check_controls()
    for note in st.session_state.get(_NOTES, []):
        st.sidebar.info(note)
    loaded = _data_controls()
    _topology_controls(loaded.weight.shape[1])
    nodes, gpus_per_node, redundant, groups, mode, policy = (st.session_state[_KEY(p)] for p in TOPOLOGY_PARAMS)
    num_experts = loaded.weight.shape[1]
    topology = eplb.Topology(num_experts + int(redundant), int(groups), int(nodes), int(nodes) * int(gpus_per_node))
    try:
        too_large(loaded.weight.shape[0], num_experts, topology.num_replicas)
        resolved, error = topology.validate(num_experts, mode), None
        st.sidebar.caption(f"{topology.num_gpus} GPUs · {topology.num_replicas} slots "
                           f"({topology.slots_per_gpu} per GPU) · {resolved} mode")
    except ValueError as exc:
        words = sliders.problem(num_experts, int(nodes), int(gpus_per_node), int(redundant), int(groups), mode)
        resolved, error = None, f"This topology does not fit the data. {words or exc}"
        st.sidebar.error(error)
    inputs = Inputs(
        weight=loaded.weight, trace=loaded.trace, digest=compute.register(loaded.weight),
        trace_digest=None if loaded.trace is None else compute.register(loaded.trace),
        topology=topology, mode=mode, resolved_mode=resolved, policy=policy, label=loaded.label, error=error,
        model=loaded.model,
    )
    if error is None:
        st.session_state[_LAST_VALID] = inputs
    else:
        last = st.session_state.get(_LAST_VALID)
        if last is not None:  # keep its matrix registered while it is on screen
            compute.register(last.weight)
    _sync_url(loaded)
    return inputs


def max_redundant(num_layers: int, num_experts: int) -> int:
    """Most redundant slots a topology may have on this load (``LIMITS``, ``MAX_SLOTS``, ``MAX_SLOT_LAYERS``);
    negative when the load alone is over the budget."""
    return min(LIMITS["redundant"][1], MAX_SLOTS - num_experts, MAX_SLOT_LAYERS // max(num_layers, 1) - num_experts)


def too_large(num_layers: int, num_experts: int, num_replicas: int) -> None:
    """Raise ValueError, with the limit, why, and what to change, when the slots are over ``MAX_SLOTS`` per layer
    or ``MAX_SLOT_LAYERS`` in all."""
    if num_layers * num_replicas <= MAX_SLOT_LAYERS and num_replicas <= MAX_SLOTS:
        return
    most = max_redundant(num_layers, num_experts)
    change = f"use at most {most} redundant slots" if most >= 0 else \
        "this load alone is over it, so balance it with the command line (python -m eplb), which has no such limit"
    raise ValueError(f"{num_layers} layers x {num_replicas} slots make {num_layers * num_replicas:,} slot-layers; "
                     f"this server balances at most {MAX_SLOT_LAYERS:,} slot-layers and {MAX_SLOTS:,} slots per layer "
                     f"(the memory one rebalance may take); {change}")


def valid_inputs(inputs: Inputs) -> Inputs | None:
    """The inputs to draw: these when valid; otherwise show the message and return the last valid ones (or None)."""
    if inputs.error is None:
        return inputs
    st.error(inputs.error, icon="⚠️")
    last = st.session_state.get(_LAST_VALID)
    if last is not None:
        st.info(f"Showing the last valid setting: {last.describe()}")
    return last


def page_inputs(*, describe: bool = True) -> Inputs:
    """The opening of every page that works on the sidebar's data.

    Draws the sidebar, shows a rejected topology's message, and returns the inputs to
    draw: the current ones, or the last valid ones beside the message. Stops the page
    when there never were valid ones. ``describe`` adds the one-line summary.
    """
    shown = valid_inputs(sidebar())
    if shown is None:
        st.stop()
    if describe:
        st.markdown(f"**{shown.describe()}**")
    return shown

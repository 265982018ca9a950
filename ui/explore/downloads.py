"""Explore's downloads: the placement for every engine, named after the topology, and the per-GPU loads as CSV.

    downloads.download_buttons(shown, before, after)
"""

from __future__ import annotations

import re

import streamlit as st

from eplb.formats import PLACEMENT_FORMATS, placement_problem, write_placement
from eplb.presets import PRESETS
from ui import compute, data, text
from ui.state import Inputs


def _short_model(name: str | None) -> str:
    """"DeepSeek-V3/R1" -> "dsv3", "Qwen3-30B-A3B" -> "qwen3-30b-a3b": a file-name part."""
    if not name:
        return "custom"
    special = {"DeepSeek-V3/R1": "dsv3", "DeepSeek-V2-Lite": "dsv2-lite", "DeepSeek EPLB README toy": "readme-toy"}
    return special.get(name) or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def file_stem(kind: str, shown: Inputs) -> str:
    """E.g. "placement-sglang-dsv3-288slots-32gpus": what, engine, model and topology, safe as a file name."""
    t = shown.topology
    return f"{kind}-{_short_model(shown.model)}-{t.num_replicas}slots-{t.num_gpus}gpus"


@compute.cached
def format_problems(digest: str, topology, mode: str, policy: str, model: str | None) -> dict[str, str | None]:
    """Format -> why ``write_placement`` refuses the sidebar's placement (``compute.placement``), None where it
    writes: checked once per placement, not on every rerun."""
    phy2log = compute.placement(digest, topology, mode, policy).phy2log
    preset = PRESETS.get(model) if model else None
    return {fmt: "it needs the data's model: choose it under the uploader in the sidebar"
            if preset is None and writer.layers != "any" else
            placement_problem(fmt, phy2log, topology, mode=mode, model=preset)
            for fmt, writer in PLACEMENT_FORMATS.items()}


def download_buttons(shown: Inputs, before, after) -> None:
    """One button per placement format (off, with the reason, where it does not apply) and the loads CSV."""
    buttons = st.container(horizontal=True)
    model = PRESETS.get(shown.model) if shown.model else None
    unavailable: dict[str, list[str]] = {}  # why -> the formats it turns off
    problems = format_problems(shown.digest, shown.topology, shown.mode, shown.policy, shown.model)
    for fmt, writer in PLACEMENT_FORMATS.items():
        problem = problems[fmt]
        buttons.download_button(
            writer.label,
            lambda fmt=fmt: write_placement(fmt, after.phy2log, shown.topology, mode=shown.mode, policy=shown.policy,
                                            model=model),
            file_name=f"{file_stem('placement-' + fmt.split('-')[0], shown)}{writer.extension}", mime=writer.mime,
            on_click="ignore", key=f"download_{fmt}", disabled=problem is not None,
        )
        if problem:
            unavailable.setdefault(problem, []).append(writer.label)
    buttons.download_button(
        "Per-GPU loads (CSV)",
        lambda: data.gpu_loads_csv({"before": before.report.gpu_loads, "after": after.report.gpu_loads}),
        file_name=f"{file_stem('gpu-loads', shown)}.csv", mime="text/csv", on_click="ignore",
        key="download_gpu_loads",
    )
    for problem, labels in unavailable.items():
        st.caption(text.escape(f"Off: {'; '.join(labels)}. Why: {problem}.", 800))

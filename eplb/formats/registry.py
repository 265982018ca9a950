"""What a format plug-in declares: the layouts it reads and the files it writes.

Each engine module (``plain``, ``sglang``, ``adrs``, ``native``, ``ascend``,
``trtllm``) lists its ``LOAD_LAYOUTS``, ``PLACEMENT_LAYOUTS``, ``LOAD_FORMATS``
and ``PLACEMENT_FORMATS``; ``eplb.formats`` gathers them into one registry and
never branches on a format's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from ..presets import ModelPreset
from ..rebalance import Topology
from .safe import Parsed
from .values import LoadData


@dataclass(frozen=True)
class LoadLayout:
    """One engine's load file layout.

    name: what the description calls it ("SGLang stat dump"); hint: how such a file
    looks, for the message about a file no layout knows; detect: whether an opened file
    is of this layout; read: all the files of this layout given together -> one load;
    several: whether several files combine (one per rank) or each is read alone.
    """

    name: str
    hint: str
    detect: Callable[[Parsed], bool]
    read: Callable[[list[Parsed]], LoadData]
    several: bool = False


@dataclass(frozen=True)
class PlacementLayout:
    """One engine's placement file layout: detect an opened file, read it -> phy2log [rows, P] int64."""

    name: str
    detect: Callable[[Parsed], bool]
    read: Callable[[Parsed], torch.Tensor]


@dataclass(frozen=True)
class Placement:
    """A placement ready for a writer, the layer rule already applied.

    phy2log: [rows, P] int64, one row per layer the format wants (``Writer.layers``);
    layer_ids: the decoder layer index of each row (0, 1, ... when the format keeps
    rows as given); topology, the resolved mode and the policy that made it.
    """

    phy2log: torch.Tensor
    layer_ids: tuple[int, ...]
    topology: Topology
    mode: str
    policy: str
    model: ModelPreset | None


class Writer(NamedTuple):
    """One file format written: what a download button or ``--format`` needs.

    label, extension (".json") and MIME type; write: a ``Placement`` (placement formats)
    or a load [rows, experts] / trace [steps, rows, experts] (load formats) -> bytes;
    default: the format an output file with this extension gets without ``--format``
    (at most one per extension; ".json" has none, so it must be named); layers:
    "decoder" (one row per decoder layer, dense layers included), "moe" (one per MoE
    layer) or "any" (the rows as given): the first two need the model; check: what the
    engine refuses beyond the shared checks (ValueError), run before ``write``.
    """

    label: str
    extension: str
    mime: str
    write: Callable[..., bytes]
    default: bool = False
    layers: str = "any"
    check: Callable[[Placement], None] | None = None

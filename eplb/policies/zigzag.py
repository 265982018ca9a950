"""The vectorized Sort-and-Zigzag policy (the project's seed), with its failures fixed.

Copies are proportional to load; items are packed by sorting them heaviest
first and dealing them to bins in a zigzag (0..M-1, then M-1..0, ...), so a
heavy item's bin receives a light item on the next pass. Every step is a
tensor operation across all rows: no loop over layers or experts.

Fixes over the seed: proportional counts floored with a minimum of one copy can
exceed the slot budget, so surplus copies are now taken back from the experts
that lose least by it; the zigzag pattern is built arithmetically, so a bin of a
single item works; global mode goes through the shared placement.
"""

from __future__ import annotations

import torch

from .base import Policy, copies_from_counts


def zigzag_bins(items_per_bin: int, num_bins: int, device: torch.device) -> torch.Tensor:
    """Bin of the k-th heaviest item: [items_per_bin * num_bins] int64, zigzag order."""
    column = torch.arange(num_bins, device=device)
    row_is_odd = (torch.arange(items_per_bin, device=device) % 2 == 1).unsqueeze(1)
    return torch.where(row_is_odd, num_bins - 1 - column, column).flatten()


def proportional_counts(weight: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Copies proportional to load, at least one each, exactly num_slots per row.

    weight: [B, n] -> logcnt [B, n] int64. Counts are floor(w * scale) with a minimum
    of one, the largest remainders taking the slots left over. The seed used
    scale = num_slots / sum(w), but the minimum of one can then overshoot the
    budget; rows that overshoot get the largest scale that fits, by bisection.
    """
    num_items = weight.shape[-1]
    w = weight.double()
    total = w.sum(dim=-1, keepdim=True)
    w = torch.where(total > 0, w, 1.0)  # a row without load is spread evenly
    scale = num_slots / w.sum(dim=-1, keepdim=True)

    def floored(scale: torch.Tensor) -> torch.Tensor:
        return (w * scale).floor().clamp(min=1)

    over = floored(scale).sum(dim=-1, keepdim=True) > num_slots
    if bool(over.any()):
        low, high = torch.zeros_like(scale), scale.clone()
        for _ in range(48):
            mid = (low + high) / 2
            fits = floored(mid).sum(dim=-1, keepdim=True) <= num_slots
            low, high = torch.where(fits, mid, low), torch.where(fits, high, mid)
        scale = torch.where(over, low, scale)
    logcnt = floored(scale).long()

    # The slots left over go to the largest remainders, at most one each per round.
    remainder = w * scale - logcnt
    missing = num_slots - logcnt.sum(dim=-1, keepdim=True)
    while bool((missing > 0).any()):
        largest = remainder.argsort(dim=-1, descending=True, stable=True)
        add = torch.arange(num_items, device=weight.device) < missing
        logcnt.scatter_add_(-1, largest, add.long())
        remainder = remainder - torch.zeros_like(remainder).scatter_(-1, largest, add.double())
        missing = num_slots - logcnt.sum(dim=-1, keepdim=True)
    return logcnt


class Zigzag(Policy):
    name = "zigzag"
    summary = "The seed: proportional copy counts, sort-and-zigzag packing, fully vectorized."

    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        num_items = weight.shape[-1]
        heaviest_first = weight.argsort(dim=-1, descending=True, stable=True)
        bins = zigzag_bins(num_items // num_packs, num_packs, weight.device).expand_as(heaviest_first)
        return torch.empty_like(heaviest_first).scatter_(-1, heaviest_first, bins)

    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        return copies_from_counts(proportional_counts(weight, num_slots))

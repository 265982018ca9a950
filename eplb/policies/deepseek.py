"""DeepSeek's greedy EPLB, the reference every other policy is measured against.

Follows deepseek-ai/EPLB ``eplb.py``: replication repeatedly adds a copy to the
expert with the largest load per copy; packing takes items heaviest first and
puts each on the lightest pack that still has room. The packing keeps the
reference's per-row Python loop on purpose: it is the yardstick, including for
speed, and it reproduces the published example exactly.
"""

from __future__ import annotations

import torch

from .base import Policy


class DeepSeekGreedy(Policy):
    name = "deepseek"
    summary = "DeepSeek's reference: greedy copies by largest load per copy, greedy equal-count packing."

    def pack(self, weight: torch.Tensor, num_packs: int) -> torch.Tensor:
        num_rows, num_items = weight.shape
        per_pack = num_items // num_packs
        if per_pack == 1:  # the reference keeps items in place when each pack takes one
            return torch.arange(num_items, device=weight.device).expand(num_rows, -1).clone()
        order = weight.sort(dim=-1, descending=True, stable=True).indices.tolist()
        loads_in = weight.tolist()
        pack_index = [[0] * num_items for _ in range(num_rows)]
        for row in range(num_rows):
            pack_load = [0.0] * num_packs
            pack_items = [0] * num_packs
            for item in order[row]:
                pack = min((p for p in range(num_packs) if pack_items[p] < per_pack), key=pack_load.__getitem__)
                pack_index[row][item] = pack
                pack_load[pack] += loads_in[row][item]
                pack_items[pack] += 1
        return torch.tensor(pack_index, dtype=torch.int64, device=weight.device)

    def replicate(self, weight: torch.Tensor, num_slots: int) -> torch.Tensor:
        num_rows, num_items = weight.shape
        rows = torch.arange(num_rows, device=weight.device)
        logcnt = torch.ones(num_rows, num_items, dtype=torch.int64, device=weight.device)
        phy2item = torch.arange(num_items, device=weight.device).repeat(num_rows, 1)
        extra = []
        for _ in range(num_slots - num_items):
            hottest = (weight / logcnt).argmax(dim=-1)  # [B]
            extra.append(hottest)
            logcnt[rows, hottest] += 1
        if extra:
            phy2item = torch.cat([phy2item, torch.stack(extra, dim=1)], dim=1)
        return phy2item

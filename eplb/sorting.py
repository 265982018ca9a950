"""Row-wise sorting that is fast on a CPU.

Sorting rows of a few dozen to a few hundred entries is the costliest tensor
operation of the vectorised policies: torch sorts CPU rows with a scalar
comparison sort, while numpy sorts with SIMD instructions (x86-simd-sort on
AVX2 / AVX-512 machines), several times faster on such rows. These helpers take
and return torch tensors; on the CPU they sort with numpy, sharing memory with
the tensors (results carry no gradient), and on any other device (CUDA) with
torch. As with torch's default sort, the order among equal keys is unspecified,
but the same input always gives the same output.
"""

from __future__ import annotations

import numpy as np
import torch

NUMPY_DTYPES = (torch.float32, torch.float64, torch.int32, torch.int64)
"""CPU dtypes sorted with numpy; others (float16, bfloat16, ...) use torch."""


SHORT_ROW = 16
"""Rows shorter than this sort as fast with torch (numpy's speed does not pay for the conversion)."""


def _on_numpy(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in NUMPY_DTYPES and x.shape[-1] >= SHORT_ROW


def argsort_rows(x: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Indices that sort each row: x [..., n] -> [..., n] int64."""
    if not _on_numpy(x):
        return x.argsort(dim=-1, descending=descending)
    values = x.detach().numpy()
    return torch.from_numpy(np.argsort(-values if descending else values, axis=-1)).long()

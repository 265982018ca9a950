"""Row-wise sorting that is fast on a CPU.

Sorting rows of a few dozen to a few hundred entries is the costliest tensor
operation of the vectorised policies: torch sorts CPU rows with a scalar
comparison sort, while numpy sorts with SIMD instructions (x86-simd-sort on
AVX2 / AVX-512 machines), several times faster on such rows. numpy's argsort is
not vectorised on AVX2, its sort of 64-bit integers is: float32 rows (the loads'
usual type) are argsorted as one sort of 64-bit keys, the value's bits above its
position (``kernels.float32_sort_keys``; 58 x 256 loads 195 against 92 us on the
project's CPU), ties then in position order. These helpers take and return torch
tensors; on the CPU they sort with numpy, sharing memory with the tensors (results
carry no gradient), and on any other device (CUDA) with torch. As with torch's
default sort, the order among equal keys is unspecified, but the same input always
gives the same output.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernels

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
    if x.dtype == torch.float32:
        keys = kernels.float32_sort_keys(np.ascontiguousarray(values.reshape(-1, x.shape[-1])), descending)
        keys.sort(axis=-1)
        return torch.from_numpy(kernels.key_positions(keys).reshape(x.shape))
    return torch.from_numpy(np.argsort(-values if descending else values, axis=-1)).long()

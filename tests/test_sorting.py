"""Row sorting helpers: the same orders as torch's sort, whichever library sorts."""

import pytest
import torch

from eplb.sorting import argsort_rows, topk_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.bfloat16])
@pytest.mark.parametrize("descending", [False, True])
def test_argsort_rows_orders_every_row(dtype, descending):
    x = (torch.rand(7, 33, generator=torch.Generator().manual_seed(0)) * 100).to(dtype)
    order = argsort_rows(x, descending=descending)
    assert order.dtype == torch.int64 and order.shape == x.shape
    assert torch.equal(torch.sort(order, dim=-1).values, torch.arange(33).expand(7, -1))  # a permutation
    assert torch.equal(x.gather(1, order), x.sort(dim=-1, descending=descending).values)


@pytest.mark.parametrize("width, k", [(20, 8), (64, 1), (64, 8), (64, 20), (64, 64), (256, 100)])
def test_topk_rows_matches_torch_topk_for_small_and_large_k(width, k):
    x = torch.rand(6, width, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    values, indices = topk_rows(x, k)
    expected = x.topk(k, dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(x.gather(1, indices), expected.values)


def test_rows_of_a_tensor_that_requires_grad_sort_too():
    x = torch.rand(3, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.equal(argsort_rows(x), x.detach().argsort(dim=-1))

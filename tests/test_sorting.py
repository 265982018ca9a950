"""Row sorting helpers: the same orders as torch's sort, whichever library sorts."""

import pytest
import torch

from eplb.sorting import argsort_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.bfloat16])
@pytest.mark.parametrize("descending", [False, True])
def test_argsort_rows_orders_every_row(dtype, descending):
    x = (torch.rand(7, 33, generator=torch.Generator().manual_seed(0)) * 100).to(dtype)
    order = argsort_rows(x, descending=descending)
    assert order.dtype == torch.int64 and order.shape == x.shape
    assert torch.equal(torch.sort(order, dim=-1).values, torch.arange(33).expand(7, -1))  # a permutation
    assert torch.equal(x.gather(1, order), x.sort(dim=-1, descending=descending).values)


def test_rows_of_a_tensor_that_requires_grad_sort_too():
    x = torch.rand(3, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    assert torch.equal(argsort_rows(x), x.detach().argsort(dim=-1))

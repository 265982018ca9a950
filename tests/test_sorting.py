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


@pytest.mark.parametrize("descending", [False, True])
def test_float32_rows_sort_stably_with_signs_zeros_and_infinities(descending):
    """float32 rows go through 64-bit keys: the order of torch's stable sort, ties by position,
    on negative values, -0.0 beside 0.0, infinities and many ties."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(-4, 5, (6, 300), generator=generator).float()
    x[0, ::7] = -0.0
    x[1, ::5] = float("inf")
    x[2, ::3] = -float("inf")
    x[3] = torch.rand(300, generator=generator) * 1e-30  # subnormal and tiny values
    x[4] = torch.rand(300, generator=generator) * 3e38
    expected = x.sort(dim=-1, descending=descending, stable=True).indices
    assert torch.equal(argsort_rows(x, descending=descending), expected)
    assert torch.equal(argsort_rows(x.view(2, 3, 300), descending=descending), expected.view(2, 3, 300))

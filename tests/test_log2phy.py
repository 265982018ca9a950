"""log2phy from phy2log: copy k of an expert in column k, -1 padding, whichever memory it lives in."""

import io
import pickle

import pytest
import torch

import eplb.rebalance as rebalance


def random_placement(num_layers, num_experts, num_replicas, seed):
    """phy2log [L, P]: every expert once, the other slots random, shuffled per layer."""
    gen = torch.Generator().manual_seed(seed)
    extra = torch.randint(0, num_experts, (num_layers, num_replicas - num_experts), generator=gen)
    slots = torch.cat([torch.arange(num_experts).expand(num_layers, -1), extra], dim=1)
    shuffle = torch.rand(num_layers, num_replicas, generator=gen).argsort(dim=1)
    return slots.gather(1, shuffle)


def expected_log2phy(phy2log, num_experts):
    width = phy2log.shape[1] - num_experts + 1
    log2phy = torch.full((phy2log.shape[0], num_experts, width), -1, dtype=torch.int64)
    for layer, row in enumerate(phy2log.tolist()):
        copies = [0] * num_experts
        for slot, expert in enumerate(row):
            log2phy[layer, expert, copies[expert]] = slot
            copies[expert] += 1
    return log2phy


@pytest.mark.parametrize("huge_pages", [False, True])
def test_log2phy_lists_each_experts_slots_in_order(monkeypatch, huge_pages):
    if huge_pages:  # the path of tensors above glibc's mmap threshold, on a small case
        monkeypatch.setattr(rebalance, "HUGE_PAGE_BYTES", 0)
    for seed, (layers, experts, replicas) in enumerate([(3, 8, 16), (2, 5, 5), (4, 12, 30), (1, 1, 4)]):
        phy2log = random_placement(layers, experts, replicas, seed)
        log2phy, logcnt = rebalance.log2phy_from_phy2log(phy2log, experts)
        assert log2phy.dtype == torch.int64 and log2phy.is_contiguous()
        assert torch.equal(log2phy, expected_log2phy(phy2log, experts))
        assert torch.equal(logcnt, (log2phy >= 0).sum(-1))


def test_a_log2phy_in_huge_pages_is_an_ordinary_tensor(monkeypatch):
    monkeypatch.setattr(rebalance, "HUGE_PAGE_BYTES", 0)
    log2phy, _ = rebalance.log2phy_from_phy2log(random_placement(2, 6, 12, 0), 6)
    copy = log2phy.clone()
    assert torch.equal(pickle.loads(pickle.dumps(log2phy)), copy)
    buffer = io.BytesIO()
    torch.save(log2phy, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=True), copy)
    log2phy[0, 0, 0] = 99  # writable, and its own memory
    assert int(copy[0, 0, 0]) != 99 and (log2phy.numpy()[1] == copy.numpy()[1]).all()


def test_log2phy_above_the_mmap_threshold():
    """1000 layers x 256 experts on 288 slots: a 64 MiB log2phy."""
    phy2log = random_placement(1000, 256, 288, 1)
    log2phy, logcnt = rebalance.log2phy_from_phy2log(phy2log, 256)
    assert log2phy.numel() * 8 >= rebalance.HUGE_PAGE_BYTES and log2phy.shape == (1000, 256, 33)
    used = log2phy >= 0
    assert torch.equal(used.sum(-1), logcnt) and bool((used[..., :-1] | ~used[..., 1:]).all())
    layer, expert, _ = used.nonzero(as_tuple=True)
    assert torch.equal(phy2log[layer, log2phy[used]], expert)
    assert torch.equal(log2phy[:2], expected_log2phy(phy2log[:2], 256))

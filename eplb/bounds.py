"""Proven lower bounds on the best achievable max GPU load, per layer.

For a layer with loads w_e (E experts), P slots on G GPUs (S = P / G each), every
placement that satisfies the contract has max GPU load >= each of:

1. Mean bound: sum_e w_e / G. The GPU loads sum to the layer's load.

2. Copy bound: T* = min over counts c (c_e >= 1, sum_e c_e = P) of
   max_e w_e / min(c_e, K), with K = min(G, P - E + 1). Proof: an expert with c_e
   copies puts load w_e * k / c_e on a GPU holding k of them; some GPU holds
   k >= ceil(c_e / G) copies, and w_e * ceil(c_e / G) / c_e >= w_e / min(c_e, G).
   An expert can have at most P - E + 1 copies since every other expert needs one.
   Whatever counts the placement uses, its max is therefore >= T*. Adding copies
   one at a time to the expert with the largest w_e / c_e (stopping at K) minimises
   the largest w_e / c_e, so that greedy computes T* exactly. It removes, one by one,
   the X = P - E largest of the quotients w_e / c (1 <= c < K), each expert's in
   decreasing order, so T* = max(the (X + 1)-th largest quotient, max_e w_e / K):
   ``copy_bound`` finds that quotient among the few near the water level T with
   sum_e min(K - 1, w_e / T) = X, without the loop.

3. Hierarchical mode only, node bound: every node holds q = groups / nodes whole
   groups and its load is shared by its G / N GPUs. With group loads sorted
   g_1 >= g_2 >= ..., for j = 0..q-1 the top jN + 1 groups put j + 1 of them on
   one node (pigeonhole); that node carries at least g_{jN+1-j} + ... + g_{jN+1}
   (the j + 1 smallest of the top jN + 1) plus its q - j - 1 other groups, which
   weigh at least the q - j - 1 lightest groups (these never overlap the first
   set, since qN - q + j + 2 > jN + 1). Divide by G / N GPUs. The copy bound
   also tightens: an expert's copies stay on its node, so K = min(G / N, P / N - E / N + 1).

4. Global mode only, big-copy bound (``big_copy_bound``), sharp when a few experts
   carry most of the load. Suppose some placement has max GPU load <= T. Let
   S = P / G slots per GPU, X = P - E extra copies, and call a copy "big" when its
   load w_e / c_e exceeds T / 2. Then:

   a. Two big copies never share a GPU (together they exceed T), so at most G copies
      are big, and an expert with a big copy has all its c_e copies big (copies
      split the load evenly), on c_e distinct GPUs.
   b. c_e >= a_e = ceil(w_e / T), since one copy alone is at most T. Only "heavy"
      experts, w_e > T / 2, can be big; a heavy expert that is not big has
      c_e >= b_e = ceil(2 w_e / T) copies (and b_e > a_e). Extra copies sum to X.
   c. Light-slot lemma. Let D = sum of (c_e - 1) over the non-big experts. Any k
      slots holding non-big copies carry at least Q(k - D), where Q(j) is the sum
      of the j smallest expert loads (Q(j) = 0 for j <= 0, j capped at E - 1).
      Proof: say the k slots cover all c_e copies of m experts and j_e < c_e
      copies of others. Then k <= m + sum over those experts of (c_e - 1) <= m + D,
      so m >= k - D; the fully covered experts contribute their whole loads, which
      are distinct non-big experts (never all E), so at least Q(k - D).
   d. The c_e GPUs of a big expert e hold one copy of e and S - 1 non-big copies
      each, so c_e T >= w_e + Q(c_e (S - 1) - D), with D = X - sum over big f of
      (c_f - 1).

   Test for T: for the h heaviest experts (h <= ``EXACT_SPLITS``) every split into
   big (set B) and not big is tried; heavy experts beyond them are only charged
   their a_e - 1 extra copies (a relaxation). For e in B, m_e is the smallest
   c >= a_e satisfying (d) with D replaced by its upper bound X - sum_B (m_f - 1)
   (two rounds, each m a lower bound on c_e). A split survives if every m_e < b_e,
   sum_B m_e <= G and sum_B (m_e - 1) + sum over the other top-h heavy experts of
   (b_e - 1) + sum over the rest of (a_e - 1) <= X. If no split survives, no
   placement reaches max load T, so the optimum exceeds T. Bisection per layer
   keeps the largest T so refuted (never more than a refuted value, so the bound
   stays proven whatever the tolerance).

With one node, hierarchical mode is global mode (the one node holds every group),
so the big-copy bound applies there too.

The bound's balancedness, sum of per-layer means / sum of per-layer bounds, is
the best balancedness any placement could reach.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .policies.joint import two_slot_search
from .rebalance import Topology

EXACT_SPLITS = 5
"""Heaviest experts whose big / not-big split the big-copy bound enumerates (2**h splits)."""

SCAN_COPIES = 6
"""Copy counts a_e .. a_e + SCAN_COPIES - 1 scanned per big expert; beyond, a_e + SCAN_COPIES is used
as a lower bound on its count."""


def copy_bound(weight: torch.Tensor, num_replicas: int, max_copies: int) -> torch.Tensor:
    """T*: the least possible largest load per copy. weight [L, E] -> [L] float64.

    The (X + 1)-th largest quotient w_e / c (1 <= c < K = max_copies, X = P - E) is
    found among the quotients between two water levels: U, where the quotients above
    number at most X, and a lower one where those above number more than X + E. Each
    expert's quotients above the band count as removed; the band (about 3E quotients
    per layer) is sorted. A layer whose band does not provably hold the answer (it is
    checked) takes the one-copy-at-a-time greedy instead, as do layers without load;
    both give the same value.
    """
    w = weight.double()
    num_layers, num_experts = w.shape
    extra, k = num_replicas - num_experts, max_copies
    if extra == 0:
        return w.max(dim=-1).values
    x = w.cpu().numpy()
    capped = (x / k).max(axis=-1)  # the largest load per copy of an expert at K copies
    if k == 1 or num_experts * (k - 1) <= extra:  # every quotient is removed
        return torch.from_numpy(capped).to(w.device)
    descending = -np.sort(-x, axis=-1)
    heaviest_sum = np.pad(descending.cumsum(-1), ((0, 0), (1, 0)))  # [L, E + 1]: the j heaviest
    upper = np.maximum(water_level(heaviest_sum, extra, k), np.finfo(np.float64).tiny)[:, None]
    lower = water_level(heaviest_sum, extra + num_experts + 1, k)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf where a level is 0
        first = np.clip(np.floor(x / upper), 1, k)  # quotients of c < first lie above U: removed
        last = np.where(lower > 0, np.ceil(x / lower) + 1, k - 1.0)
    last = np.maximum(np.minimum(last, k - 1), first - 1)  # quotients of c > last lie below the band
    idle = heaviest_sum[:, -1:] == 0  # left to the greedy, which stops at once
    first = np.where(idle, 1.0, first)
    width = np.where(idle, 0, last - first + 1).astype(np.int64)  # [L, E]
    rank = extra - (first - 1).sum(-1).astype(np.int64)  # the answer's rank inside the band, from 0: [L]
    in_band = width.sum(-1)
    found = (rank >= 0) & (in_band > rank)
    value = np.full(num_layers, -np.inf)
    if found.any():
        band = np.sort(band_quotients(x, first, width, in_band), axis=-1)  # ascending, -inf padded
        position = np.clip(band.shape[1] - 1 - rank, 0, band.shape[1] - 1)
        value = np.where(found, band[np.arange(num_layers), position], value)
        # The band holds the answer when no quotient counted as removed lies below it and
        # none left out below the band lies above it.
        with np.errstate(divide="ignore"):
            removed_low = np.where(first > 1, x / np.maximum(first - 1, 1), np.inf).min(axis=-1)
            below_high = np.where(last < k - 1, x / (last + 1), -np.inf).max(axis=-1)
        found &= (removed_low >= value) & (below_high <= value)
    bound = torch.from_numpy(np.maximum(value, capped)).to(w.device)
    if not found.all():
        rows = torch.from_numpy((~found).nonzero()[0]).to(w.device)
        bound = bound.index_put((rows,), copy_bound_by_greedy(w[rows], num_replicas, k))
    return bound


def water_level(heaviest_sum: np.ndarray, target: int, max_copies: int) -> np.ndarray:
    """T with sum_e min(K - 1, w_e / T) = target (0 where no T > 0 reaches it): [L].

    heaviest_sum: [L, E + 1], entry j = the load of the j heaviest experts. With those
    j capped the sum is j (K - 1) + (the rest of the load) / T; the level is the least
    of the T solving that over every j with j (K - 1) < target.
    """
    rest = np.maximum(heaviest_sum[:, -1:] - heaviest_sum, 0)
    share = target - np.arange(heaviest_sum.shape[1]) * (max_copies - 1.0)
    return np.where(share > 0, rest / np.maximum(share, 1), np.inf).min(axis=-1)


def band_quotients(weight: np.ndarray, first: np.ndarray, width: np.ndarray, in_band: np.ndarray) -> np.ndarray:
    """w_e / c for c = first_e .. first_e + width_e - 1, each layer's in one row: [L, max in_band], -inf padded.

    weight, first: [L, E] float64; width: [L, E] int64; in_band: [L] its row sums.
    """
    flat_width = width.reshape(-1)
    total = int(in_band.sum())
    within = np.arange(total) - np.repeat(flat_width.cumsum() - flat_width, flat_width)
    quotient = np.repeat(weight.reshape(-1), flat_width) / (np.repeat(first.reshape(-1), flat_width) + within)
    row = np.repeat(np.arange(weight.shape[0]), in_band)
    column = np.arange(total) - np.repeat(in_band.cumsum() - in_band, in_band)
    band = np.full((weight.shape[0], max(int(in_band.max()), 1)), -np.inf)
    band[row, column] = quotient
    return band


def copy_bound_by_greedy(weight: torch.Tensor, num_replicas: int, max_copies: int) -> torch.Tensor:
    """T* by its definition: one copy at a time to the largest load per copy. weight [L, E] -> [L] float64."""
    num_layers, num_experts = weight.shape
    w = weight.double()
    logcnt = torch.ones_like(w)
    rows = torch.arange(num_layers, device=w.device)
    for _ in range(num_replicas - num_experts):
        per_copy = torch.where(logcnt < max_copies, w / logcnt, -1.0)
        hottest = per_copy.argmax(dim=-1)
        can_add = per_copy[rows, hottest] > 0
        if not bool(can_add.any()):
            break
        logcnt[rows, hottest] += can_add.double()
    return (w / logcnt.clamp(max=max_copies)).max(dim=-1).values


def node_bound(group_load: torch.Tensor, num_nodes: int, gpus_per_node: int) -> torch.Tensor:
    """Pigeonhole bound on the heaviest node's load per GPU. group_load [L, groups] -> [L]."""
    num_groups = group_load.shape[-1]
    per_node = num_groups // num_nodes
    g = group_load.double().sort(dim=-1, descending=True).values
    best = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    for j in range(per_node):
        top = g[:, j * num_nodes - j : j * num_nodes + 1].sum(-1)  # the j+1 smallest of the top jN+1
        rest = g[:, num_groups - (per_node - j - 1) :].sum(-1) if per_node - j - 1 > 0 else 0.0
        best = torch.maximum(best, top + rest)
    return best / gpus_per_node


@lru_cache(maxsize=8)
def _splits(h: int) -> np.ndarray:
    """Every subset of h items as a mask: [2**h, h] bool (row k = the binary digits of k)."""
    return (np.arange(2**h)[:, None] >> np.arange(h)) & 1 == 1


@lru_cache(maxsize=8)
def _split_sums(h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_splits(h)`` as [h, 2**h] float64 matrices that sum over each split and over the rest, and each split's size."""
    inside = _splits(h).T.astype(np.float64)
    return inside, 1 - inside, inside.sum(0)


def first_check(heaviest: np.ndarray, t: np.ndarray, extra: int, num_gpus: int, can_be_big: np.ndarray | None = None):
    """The big-copy test's first check of every split at every limit, with each m_e = a_e.

    heaviest: [L, H] heaviest first; t: [L, 1] the limit (scaled); can_be_big: [L, H] bool,
    the experts a split may call big (default: the heavy ones, w_e > t / 2, with a_e < b_e
    as m_e < b_e needs). A split passes when all its big experts may be, sum_B a_e <= G and
    sum_B (a_e - 1) + the others' extra copies (b_e - 1 for the other heavy ones among the
    h = min(H, EXACT_SPLITS) heaviest, a_e - 1 for heavy ones beyond) <= X. Returns, over
    the h heaviest and the K = 2**h splits: w, a, b [L, h]; big [K, h] bool; big_extra
    [L, K] = sum_B (a_e - 1) where it passes; not_big_extra [L, K]; others [L]; passes [L, K].
    """
    h = min(heaviest.shape[1], EXACT_SPLITS)
    heavy = heaviest[:, :h] > t / 2
    per_copy = heaviest / t
    fewest = np.maximum(np.ceil(per_copy), 1.0)  # a_e
    w, a, b = heaviest[:, :h], fewest[:, :h], np.ceil(2 * per_copy[:, :h])  # b_e: doubling is exact
    # a_e - 1 is 0 for an expert that is not heavy (w_e / t <= 1 / 2)
    others = (fewest[:, h:] - 1).sum(-1) if heaviest.shape[1] > h else np.zeros(heaviest.shape[0])  # [L]
    big, inside, outside, size = _splits(h), *_split_sums(h)
    can_be_big = heavy & (a < b) if can_be_big is None else can_be_big[:, :h]
    # Sums over each split (integers, exact in float64); an expert that may not be big counts more than G.
    big_extra = np.where(can_be_big, a - 1, num_gpus + 1.0) @ inside  # [L, K]
    not_big_extra = np.where(heavy, b - 1, 0.0) @ outside  # [L, K]
    passes = (big_extra <= num_gpus - size) & (big_extra + not_big_extra + others[:, None] <= extra)
    return w, a, b, big, big_extra, not_big_extra, others, passes

def big_copies_fit(heaviest: np.ndarray, smallest_sums: np.ndarray, limit: np.ndarray,
                   slots_per_gpu: int, extra: int, num_gpus: int, layer: np.ndarray | None = None) -> np.ndarray:
    """The test of bound 4: False where no placement can keep every GPU at or below ``limit``.

    heaviest: [L, H] the H heaviest loads of each layer, heaviest first (H covers every
    expert above limit / 2); smallest_sums: [L, E + 1], entry j = sum of the j smallest
    loads; limit: [n] > 0, limit i tested on layer ``layer[i]`` (default: on layer i, n = L);
    extra: P - E; all float64 numpy arrays (numpy's per-call cost on these small arrays is
    a fraction of torch's). Returns [n] bool (True: not refuted).

    Copy counts only ever rise from a_e, so a split that fails with every m_e = a_e fails
    for good: the counts m are worked out only for the splits that pass that first check
    (usually one per layer), and only for their big experts.

    Monotone in the limit: if it passes at T, it passes at every T' > T (floating point
    included: each quantity below is a monotone function of t, and rounding keeps that).
    At T' every a_e, b_e and the others' charge are no larger, and "heavy" holds for
    fewer experts. Take the split B passing at T, less the experts no longer heavy and
    those with b_e(T') <= m_e(T) (charged b_e(T') - 1 <= m_e(T) - 1 as not big). Its
    spare D in each round is no smaller, so Q(covered) is no larger, c t' no smaller and
    the scan starts no higher: each m_e(T') <= m_e(T) (the cap a_e + SCAN_COPIES too),
    so every check of the split still holds. The bisection relies on this.
    """
    num_experts = smallest_sums.shape[-1] - 1
    layer = np.arange(limit.shape[0]) if layer is None else layer
    heaviest, num_layers = heaviest[layer], limit.shape[0]
    t = (limit * (1 + 1e-12))[:, None]  # a hair above: rounding never refutes a reachable T
    w, a, b, big, big_extra, not_big_extra, others, passes = first_check(heaviest, t, extra, num_gpus)
    result = np.zeros(num_layers, dtype=bool)
    if not passes.any():  # as at the lower bound of a hot layer: refuted by the first check alone
        return result
    case_row, case_split = passes.nonzero()  # [C] the (layer, split) cases left
    pair_case, item = big[case_split].nonzero()  # [N] each case's big experts
    row = case_row[pair_case]
    a_pair, w_pair, b_pair = a[row, item], w[row, item, None], b[row, item]  # [N], [N, 1], [N]
    count = a_pair[:, None] + np.arange(SCAN_COPIES, dtype=np.float64)  # [N, J]
    reach = count * t[row]  # what c copies of the expert's GPUs can carry
    first_sum = (layer[row] * (num_experts + 1))[:, None]  # where each layer's smallest_sums start
    last_sum = first_sum + (num_experts - 1)
    slots = ((slots_per_gpu - 1) * count).astype(np.int64) + first_sum  # light-slot lemma slots, offset
    ok = np.ones((row.size, SCAN_COPIES + 1), dtype=bool)  # the last column: none of the J fits
    num_cases = case_row.size
    m, extra_big = a_pair, big_extra[case_row, case_split]  # sum_B (m_e - 1) per case: [C]
    for _ in range(2):
        spare = (extra - extra_big).astype(np.int64)[pair_case]  # bound on D
        covered = slots - spare[:, None]
        np.minimum(np.maximum(covered, first_sum, out=covered), last_sum, out=covered)
        light = smallest_sums.take(covered)  # Q(covered): [N, J]
        np.greater_equal(reach, np.add(light, w_pair, out=light), out=ok[:, :SCAN_COPIES])
        m = np.maximum(m, a_pair + ok.argmax(-1))
        extra_big = np.bincount(pair_case, m - 1, num_cases)
    # m_e < b_e, sum_B m_e <= G and the extra copies; a count m_e >= b_e counts more than G.
    copies = np.bincount(pair_case, np.where(m < b_pair, m, num_gpus + 1.0), num_cases)
    fits = (copies <= num_gpus) & (extra_big + not_big_extra[case_row, case_split] + others[case_row] <= extra)
    result[case_row[fits]] = True
    return result


GRID = 2.0 ** -np.arange(2, 12, 2)
"""Relative steps above the lower bound tested first, at once: lower x (1 + GRID) (1/4, 1/16, .., 1/1024; on hot
loads the turn lies 1/16 to 1/700 above the lower bound, and a turn outside the grid is searched among more
breakpoints)."""

SEARCH_TESTS = 5
"""Limits tested per layer and call while searching for the breakpoint where the test turns."""

MAX_BREAKPOINTS = 1 << 18
"""Breakpoints listed at most (all layers together); beyond, bisection alone finds the limit."""

ALL_AT_ONCE = 8
"""A layer with at most this many limits left untested between its closest refuted and fitting ones tests them all."""

NEAR = 1e-10
"""Relative offset of the two limits tested either side of a breakpoint (far below the tolerance)."""


def big_copy_bound(weight: torch.Tensor, num_replicas: int, num_gpus: int, lower: torch.Tensor,
                   tolerance: float = 1e-7) -> torch.Tensor:
    """Bound 4 (global mode): ``lower`` [L] raised by bisection on the big-copy test. -> [L] float64.

    weight: [L, E]. Only layers the test refutes at ``lower`` are bisected, from
    [lower, total load], until every interval is ``tolerance`` of its limit wide; the
    result is the largest refuted limit, exactly plain bisection's. The test is monotone
    in the limit (``big_copies_fit``), so a midpoint at or below a refuted limit is
    refuted and one at or above a fitting limit fits without being tested: the limits
    tested first close in on the limit where the test turns (``bracket_the_turn``), and
    the bisection (``bisect_monotone``) then tests only the midpoints left undecided.
    The test runs on numpy arrays on the CPU (its arithmetic is float64 either way).
    """
    w = weight.double()
    num_layers, num_experts = w.shape
    lower = lower.double()
    extra = num_replicas - num_experts
    x, bound = w.cpu().numpy(), lower.cpu().numpy()  # numpy: a few dozen operations on small arrays
    num_heavy = int((x > bound[:, None] / 2).sum(-1).max()) if num_layers else 0
    if num_heavy == 0 or extra == 0:
        return lower
    ascending = np.sort(x, axis=-1)
    heaviest = ascending[:, ::-1][:, :num_heavy]
    # Layers where every heavy expert can afford its small copies pass without the full test.
    t = bound[:, None] * (1 + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):  # layers without load: left out below
        tight = np.where(heaviest > t / 2, np.ceil(2 * heaviest / t) - 1, 0.0).sum(-1) > extra
    rows = np.nonzero(tight & (bound > 0))[0]
    if rows.size == 0:
        return lower
    smallest_sums = np.zeros((rows.size, num_experts + 1))
    np.cumsum(ascending[rows], axis=-1, out=smallest_sums[:, 1:])  # as torch's cumsum: one sum after another
    total = w[torch.from_numpy(rows).to(w.device)].sum(-1).cpu().numpy()  # torch's sum, as plain bisection's
    heaviest, low = heaviest[rows], bound[rows]
    args = (num_replicas // num_gpus, extra, num_gpus)
    refuted = ~big_copies_fit(heaviest, smallest_sums, low, *args)
    if not refuted.any():
        return lower
    rows = torch.from_numpy(rows[refuted]).to(w.device)
    heaviest, smallest_sums, low = heaviest[refuted], smallest_sums[refuted], low[refuted]
    high = total[refuted]  # at the total load the test always passes

    def fits(layer: np.ndarray, limit: np.ndarray) -> np.ndarray:  # limit [n] tested on layer [n]
        return big_copies_fit(heaviest, smallest_sums, limit, *args, layer=layer)

    breakpoints = lambda below, above: limit_breakpoints(heaviest, smallest_sums, below, above, *args)  # noqa: E731
    refuted_at, fitting_at = bracket_the_turn(fits, breakpoints, low, high)
    low = bisect_monotone(fits, low, high, tolerance, refuted_at, fitting_at)
    return lower.index_put((rows,), torch.from_numpy(low).to(lower.device))


def limit_breakpoints(heaviest: np.ndarray, smallest_sums: np.ndarray, below: np.ndarray, above: np.ndarray,
                     slots_per_gpu: int, extra: int, num_gpus: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Limits strictly between below and above where ``big_copies_fit``'s result may turn.

    heaviest: [L, H]; smallest_sums: [L, E + 1]; below, above: [L]. Its comparisons
    change at t = limit (1 + 1e-12) equal to w_e / c (a_e), 2 w_e / c (b_e, and c = 1:
    heavy), and (w_e + Q(j)) / c (the light-slot lemma) for the counts c it scans between
    the limits (a_e .. a_e + SCAN_COPIES - 1) and the j = (S - 1) c - D it reads, with
    0 <= D <= ``most_spare`` (the spare counts a split passing just above the turn can
    leave). The list need not be complete: it only guides which limits are tested. Returns
    (layer [M], limit [M]) sorted by layer, then limit, without repeats; None when more
    than MAX_BREAKPOINTS would be listed.
    """
    num_layers, num_heavy = heaviest.shape
    num_experts = smallest_sums.shape[1] - 1
    w = heaviest[:, : min(num_heavy, EXACT_SPLITS), None]  # [L, h, 1]
    scale = 1 + 1e-12
    lo_t, hi_t = (below * scale)[:, None, None], (above * scale)[:, None, None]  # [L, 1, 1]
    spare = most_spare(heaviest, below * scale, above * scale, extra, num_gpus)  # [L, h]
    # The light-slot lemma: counts c = a_e(above) .. a_e(below) + SCAN_COPIES - 1, at most G + SCAN_COPIES.
    fewest, most = np.maximum(np.ceil(w / hi_t), 1), np.minimum(np.ceil(w / lo_t) + SCAN_COPIES, num_gpus + SCAN_COPIES + 1)
    span = max(int((most - fewest).max()), 1)
    copies = fewest + np.arange(span)  # [L, h, span]
    num_spare = max(int(spare.max()) + 1, 1)
    if copies.size * num_spare > MAX_BREAKPOINTS:
        return None
    covered = (slots_per_gpu - 1) * copies.astype(np.int64)[..., None] - np.arange(num_spare)  # [L, h, span, D]
    light = np.take_along_axis(smallest_sums, covered.clip(0, num_experts - 1).reshape(num_layers, -1), axis=1)
    listed = (copies < most)[..., None] & (np.arange(num_spare) <= spare[:, :, None, None])
    on_slots = np.where(listed, (w[..., None] + light.reshape(covered.shape)) / copies[..., None], np.inf)
    # a_e = ceil(w_e / t) and b_e = ceil(2 w_e / t) change at t = w_e / c and 2 w_e / c (c = 1: heavy).
    per_copy = (heaviest[:, :, None] * np.array([1.0, 2.0])).reshape(num_layers, -1, 1)  # [L, 2H, 1]
    fewest = np.maximum(np.floor(per_copy / hi_t), 1)
    span = max(int((np.ceil(per_copy / lo_t) - fewest).max()) + 1, 1)
    quotient = per_copy / (fewest + np.arange(span))  # [L, 2H, span]
    value = np.concatenate([on_slots.reshape(num_layers, -1), quotient.reshape(num_layers, -1)], axis=1) / scale
    value.sort(axis=1)
    keep = (value > below[:, None]) & (value < above[:, None])  # inf left out
    keep[:, 1:] &= value[:, 1:] != value[:, :-1]  # w_e / c is also 2 w_e / 2c and (w_e + Q(0)) / c
    layer, column = keep.nonzero()
    return layer, value[layer, column]

def most_spare(heaviest: np.ndarray, below: np.ndarray, above: np.ndarray, extra: int, num_gpus: int) -> np.ndarray:
    """Per layer and expert, the largest spare D the test can read for the expert at a turn in (below, above).

    heaviest: [L, H]; below, above: [L] scaled limits. A split B that passes just above
    the turn t passes the first check there; at ``above`` (every a_e, b_e and charge no
    larger) with B's experts heavy at ``below``, so does it. Both rounds of its spare lie
    in [0, X - sum_B (a_e(t) - 1)] (the counts m it ends with meet the last check), at most
    X - sum_B (a_e(above) - 1). -> [L, h] int64, the largest over such splits holding e
    (-1 where none holds it).
    """
    limit = above[:, None]
    _, _, _, big, big_extra, _, _, passes = first_check(heaviest, limit, extra, num_gpus, heaviest > below[:, None] / 2)
    spare = np.where(passes, extra - big_extra, -1.0)  # [L, K]
    return np.where(big, spare[:, :, None], -1.0).max(axis=1).astype(np.int64)  # [L, K, h] -> [L, h]


def bracket_the_turn(fits, breakpoints, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest refuted and the smallest fitting limit tested, per layer, closing in on the turn.

    fits(layer [n], limit [n]) -> [n] bool is monotone in the limit; low [L] is refuted,
    high [L] fits. One call tests low x (1 + GRID); then the limits NEAR either side of
    each breakpoint listed between the closest refuted and fitting limits
    (``breakpoints(below, above)`` -> (layer [M], limit [M]) sorted) are searched,
    SEARCH_TESTS a layer per call, for the two neighbours where the test turns: the turn
    is then within NEAR of a breakpoint (or between two, where the list is incomplete).
    -> (refuted [L], fitting [L]).
    """
    num_layers = low.shape[0]
    refuted, fitting = low.copy(), high.copy()
    grid = low[:, None] * (1 + GRID)
    inside = grid < high[:, None]
    layer, limit = np.nonzero(inside)[0], grid[inside]
    fit = fits(layer, limit)
    np.maximum.at(refuted, layer[~fit], limit[~fit])
    np.minimum.at(fitting, layer[fit], limit[fit])
    listed = breakpoints(refuted, fitting)
    if listed is None:
        return refuted, fitting
    layer, value = listed
    near = np.stack([value * (1 - NEAR), value * (1 + NEAR)], axis=-1).reshape(-1)  # [2M], sorted per layer
    count = 2 * np.bincount(layer, minlength=num_layers)
    start = count.cumsum() - count
    # Boundaries of a layer: 0 = refuted, 1 .. count = its near limits, count + 1 = fitting.
    below, above = np.zeros(num_layers, dtype=np.int64), count + 1
    while True:
        open_rows = np.nonzero(above - below > 1)[0]
        if open_rows.size == 0:
            break
        span = (above - below)[open_rows, None]
        step = np.arange(1, max(SEARCH_TESTS, ALL_AT_ONCE) + 1)
        every = span <= ALL_AT_ONCE + 1  # few enough left: test them all and finish the layer
        k = below[open_rows, None] + np.where(every, step, (span * step + SEARCH_TESTS) // (SEARCH_TESTS + 1))
        row = np.broadcast_to(open_rows[:, None], k.shape)
        valid = (k < above[open_rows, None]) & (every | (step <= SEARCH_TESTS))
        row, k = row[valid], k[valid]
        fit = fits(row, near[start[row] + k - 1])
        np.maximum.at(below, row[~fit], k[~fit])
        np.minimum.at(above, row[fit], k[fit])
    rows = np.nonzero(below > 0)[0]
    refuted[rows] = near[start[rows] + below[rows] - 1]
    rows = np.nonzero(above <= count)[0]
    fitting[rows] = near[start[rows] + above[rows] - 1]
    return refuted, fitting


def bisect_monotone(fits, low: np.ndarray, high: np.ndarray, tolerance: float,
                    refuted: np.ndarray, fitting: np.ndarray) -> np.ndarray:
    """Plain bisection of every layer's [low, high] for a monotone test, testing only undecided midpoints.

    Each step halves every interval (every layer steps until all are ``tolerance`` of
    high wide): mid = (low + high) / 2 becomes high where it fits, else low. A midpoint
    at or below refuted [L] (a limit known to be refuted) is refuted, one at or above
    fitting [L] fits; the others are tested, all layers' in one call of
    fits(layer [n], limit [n]) -> [n] bool, and narrow refuted / fitting in turn.
    low, high: [L] -> low [L], exactly what testing every midpoint gives.

    The steps are walked in runs as if every midpoint were decided (fitting where at or
    above ``fitting``) and checked at once after the run, which is kept up to its first
    step that bisection does not take (every interval narrow enough: the result) or
    whose midpoint is undecided (tested, then the walk goes on from there).
    """
    refuted, fitting = refuted.copy(), fitting.copy()
    while True:
        ratio = (high - low) / np.where(high > 0, tolerance * high, 1.0)
        steps = int(np.ceil(np.log2(max(float(ratio.max()), 1.0)))) + 2  # the steps left, or a little more
        lows, highs, mids = np.empty((steps + 1, low.size)), np.empty((steps + 1, low.size)), np.empty((steps, low.size))
        lows[0], highs[0] = low, high
        for k in range(steps):
            np.divide(lows[k] + highs[k], 2, out=mids[k])
            fit = mids[k] >= fitting
            lows[k + 1], highs[k + 1] = np.where(fit, lows[k], mids[k]), np.where(fit, mids[k], highs[k])
        taken = ((highs - lows) > tolerance * highs).any(-1)  # [steps + 1]: bisection takes step k from state k
        undecided = ((mids > refuted) & (mids < fitting)).any(-1)  # [steps]
        done = int(np.argmin(taken)) if not taken.all() else steps + 1
        tested = int(np.argmax(undecided)) if undecided.any() else steps
        if done <= tested:
            return lows[done]
        low, high = lows[tested], highs[tested]
        if tested == steps:  # the run ended with nothing to test and bisection still going
            continue
        mid = mids[tested]
        rows = np.nonzero((mid > refuted) & (mid < fitting))[0]
        fit = fits(rows, mid[rows])
        refuted[rows] = np.where(fit, refuted[rows], mid[rows])
        fitting[rows] = np.where(fit, mid[rows], fitting[rows])
        fit = mid >= fitting
        low, high = np.where(fit, low, mid), np.where(fit, mid, high)

def lower_bound(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int, mode: str = "auto"
) -> torch.Tensor:
    """Proven lower bound on the max GPU load of any valid placement, per layer: [L] float64."""
    topology = Topology(num_replicas, num_groups, num_nodes, num_gpus)
    resolved = topology.validate(weight.shape[-1], mode)
    num_experts = weight.shape[-1]
    w = weight.double()
    bound = w.sum(-1) / num_gpus
    if resolved == "global" or num_nodes == 1:  # one node holds every group: the global problem
        max_copies = min(num_gpus, num_replicas - num_experts + 1)
        bound = torch.maximum(bound, copy_bound(w, num_replicas, max_copies))
        return big_copy_bound(w, num_replicas, num_gpus, bound)
    gpus_per_node = num_gpus // num_nodes
    max_copies = min(gpus_per_node, (num_replicas - num_experts) // num_nodes + 1)
    group_load = w.view(w.shape[0], num_groups, -1).sum(-1)
    bound = torch.maximum(bound, node_bound(group_load, num_nodes, gpus_per_node))
    return torch.maximum(bound, copy_bound(w, num_replicas, max_copies))


def bound_balancedness(weight: torch.Tensor, bound: torch.Tensor, num_gpus: int) -> float | None:
    """Best reachable vLLM balancedness: sum of means / sum of per-layer bounds; None without load."""
    total = bound.sum()
    return float(weight.double().sum() / num_gpus / total) if total > 0 else None


def exact_two_slot_optimum(weight: torch.Tensor, num_gpus: int) -> torch.Tensor | None:
    """The least possible max GPU load in global mode with two slots per GPU, per layer: [L] float64.

    Exact, by enumerating every count vector (see ``two_slot_search``); None when the
    count vectors are too many (more than ``MAX_ENUMERATED``). Mixtral's 8 experts on
    8 GPUs with 2 slots each have C(15, 7) = 6435.
    """
    result = two_slot_search(weight.double(), num_gpus)
    return None if result is None else result[0]

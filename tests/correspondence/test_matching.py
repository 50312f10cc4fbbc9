"""Label transfer and discovery against brute-force (per-pixel loop) and full-matrix versions."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from afford.correspondence.matching import (
    discover,
    nearest_neighbors,
    predicted_part_mask,
    transfer,
)
from afford.errors import AffordError


def _rand(shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _mask(h, w, seed, p=0.6):
    m = torch.rand(h, w, generator=torch.Generator().manual_seed(seed)) < p
    m[0, 0] = True
    return m


def _signs(shape, seed):
    """+-1 features with D = 16: every cosine is an exact multiple of 1/16 (exact arithmetic in
    any summation order), and many exact ties."""
    return torch.where(_rand(shape, seed) > 0, 1.0, -1.0).float()


# ------------------------------------------------------------------ brute force (Python loops)
def _cos(u, v):
    return _dot(u, v) / math.sqrt(_dot(u, u) * _dot(v, v))


def _dot(u, v):
    return sum(float(a) * float(b) for a, b in zip(u, v))


def _pixels(mask):
    h, w = mask.shape
    return [(r, c) for r in range(h) for c in range(w) if mask[r, c]]


def _best(feat_a, p, feat_b, cands):
    best, arg = -math.inf, None
    for q in cands:  # row-major; strict > keeps the lowest index on ties
        v = _cos(feat_a[:, p[0], p[1]], feat_b[:, q[0], q[1]])
        if v > best:
            best, arg = v, q
    return arg, best


def _brute_transfer(fs, ft, pts, allowed):
    cands = _pixels(allowed)
    return [_best(fs, tuple(p), ft, cands)[0] for p in pts.tolist()]


def _brute_discover_list(fs, ft, sm, tm):
    Q, K = _pixels(sm), _pixels(tm)
    fwd = [_best(fs, p, ft, K) for p in Q]
    back = [_best(ft, q, fs, Q)[0] for q, _ in fwd]
    s = [v for _, v in fwd]
    d = [math.dist(p, pb) for p, pb in zip(Q, back)]

    def mm(x, deg):
        lo, hi = min(x), max(x)
        return [(v - lo) / (hi - lo) for v in x] if hi > lo else [deg] * len(x)

    sh, dh = mm(s, 1.0), mm(d, 0.0)
    score = [(1 - b) * a for a, b in zip(sh, dh)]
    order = sorted(range(len(Q)), key=lambda k: (-score[k], k))
    return [Q[k] for k in order], [fwd[k][0] for k in order], [score[k] for k in order]


# ------------------------------------------------------------------ full matrix (naive)
def _load_naive_discover():
    """``naive_discover`` of benchmarks/matching.py: builds the whole (Hs*Ws, Ht*Wt) matrix."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "matching.py"
    spec = importlib.util.spec_from_file_location("benchmarks_matching", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_discover


_naive_discover_list = _load_naive_discover()


# ------------------------------------------------------------------ transfer
def test_transfer_matches_brute_force():
    fs, ft = _rand((5, 6, 7), 0), _rand((5, 5, 6), 1)
    tm = _mask(5, 6, 2)
    pts = torch.tensor([[0, 0], [5, 6], [2, 3], [4, 1], [2, 3]])
    got = transfer(fs, ft, pts, tm)
    assert got.dtype == torch.long and got.shape == (5, 2)
    assert [tuple(p) for p in got.tolist()] == _brute_transfer(fs, ft, pts, tm)
    assert bool(tm[got[:, 0], got[:, 1]].all())
    # (1,D,H,W) inputs and a tiny block give the same answer
    got2 = transfer(fs[None], ft[None], pts, tm, block=2)
    assert torch.equal(got, got2)


def test_transfer_with_part_mask_and_fallback():
    fs, ft = _rand((4, 6, 6), 3), _rand((4, 6, 6), 4)
    tm = _mask(6, 6, 5, p=0.8)
    part = torch.zeros(6, 6, dtype=torch.bool)
    part[1:4, 2:5] = True
    pts = torch.tensor([[r, c] for r in range(6) for c in range(6)])
    got = transfer(fs, ft, pts, tm, tgt_part=part)
    assert [tuple(p) for p in got.tolist()] == _brute_transfer(fs, ft, pts, tm & part)
    assert bool((tm & part)[got[:, 0], got[:, 1]].all())
    # predicted part disjoint from the object: the object mask alone is searched
    got = transfer(fs, ft, pts, tm, tgt_part=~tm)
    assert [tuple(p) for p in got.tolist()] == _brute_transfer(fs, ft, pts, tm)


def test_transfer_ties_pick_lowest_index():
    fs = _rand((3, 4, 4), 6)
    ft = torch.ones(3, 4, 4)  # every target pixel equally similar
    tm = torch.zeros(4, 4, dtype=torch.bool)
    tm[2, 1] = tm[3, 3] = tm[1, 2] = True
    got = transfer(fs, ft, torch.tensor([[0, 0], [3, 3]]), tm)
    assert got.tolist() == [[1, 2], [1, 2]]


def test_transfer_bad_inputs():
    fs, ft = _rand((3, 4, 4), 0), _rand((3, 4, 4), 1)
    tm = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(AffordError, match="bool"):
        transfer(fs, ft, torch.tensor([[0, 0]]), tm.float())
    with pytest.raises(AffordError, match="outside"):
        transfer(fs, ft, torch.tensor([[4, 0]]), tm)
    with pytest.raises(AffordError, match="empty"):
        transfer(fs, ft, torch.tensor([[0, 0]]), ~tm)
    with pytest.raises(AffordError, match="channels"):
        transfer(fs, ft[:2], torch.tensor([[0, 0]]), tm)
    with pytest.raises(AffordError, match="integer"):
        transfer(fs, ft, torch.tensor([[0.5, 0.0]]), tm)
    assert transfer(fs, ft, torch.zeros(0, 2, dtype=torch.long), tm).shape == (0, 2)


# ------------------------------------------------------------------ discover
def _as_lists(res):
    return [tuple(p) for p in res.src.tolist()], [tuple(p) for p in res.tgt.tolist()]


@pytest.mark.parametrize("block", [1, 3, 1024])
def test_discover_matches_brute_force(block):
    fs, ft = _rand((5, 6, 7), 10), _rand((5, 5, 6), 11)
    sm, tm = _mask(6, 7, 12), _mask(5, 6, 13)
    res = discover(fs, ft, sm, tm, block=block)
    src, tgt, score = _brute_discover_list(fs, ft, sm, tm)
    assert _as_lists(res) == (src, tgt)
    torch.testing.assert_close(res.score, torch.tensor(score, dtype=res.score.dtype))
    assert len(src) == int(sm.sum())
    assert bool((res.score[:-1] >= res.score[1:]).all())


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_blockwise_equals_naive_exactly(block):
    fs, ft = _signs((16, 9, 8), 20), _signs((16, 8, 9), 21)
    sm, tm = _mask(9, 8, 22, p=0.7), _mask(8, 9, 23, p=0.7)
    res = discover(fs, ft, sm, tm, block=block)
    src, tgt, score = _naive_discover_list(fs, ft, sm, tm)
    assert torch.equal(res.src, src) and torch.equal(res.tgt, tgt)
    assert torch.equal(res.score, score)


def test_blockwise_equals_naive_random_features():
    fs, ft = _rand((8, 10, 10), 30, torch.float32), _rand((8, 10, 10), 31, torch.float32)
    sm, tm = _mask(10, 10, 32), _mask(10, 10, 33)
    res = discover(fs, ft, sm, tm, block=5)
    src, tgt, score = _naive_discover_list(fs, ft, sm, tm)
    assert torch.equal(res.src, src) and torch.equal(res.tgt, tgt)
    torch.testing.assert_close(res.score, score, atol=1e-6, rtol=0)


def test_discover_ties_are_deterministic():
    fs, ft = _signs((16, 6, 6), 40), _signs((16, 6, 6), 41)
    ft[:, 3:, :] = ft[:, :3, :]  # duplicated target rows: exact forward ties
    sm, tm = torch.ones(6, 6, dtype=torch.bool), torch.ones(6, 6, dtype=torch.bool)
    res = discover(fs, ft, sm, tm, block=4)
    src, tgt, score = _brute_discover_list(fs, ft, sm, tm)
    assert _as_lists(res) == (src, tgt)
    assert all(r < 3 for r, _ in tgt)  # the lower duplicate wins


def test_discover_part_lists_first():
    fs, ft = _rand((4, 7, 7), 50), _rand((4, 6, 6), 51)
    sm, tm = _mask(7, 7, 52, p=0.8), _mask(6, 6, 53, p=0.8)
    sp = torch.zeros(7, 7, dtype=torch.bool)
    sp[:3] = True
    tp = torch.zeros(6, 6, dtype=torch.bool)
    tp[:, :3] = True
    res = discover(fs, ft, sm, tm, sp, tp)
    n_part = int((sm & sp).sum())
    assert res.src.shape[0] == int(sm.sum())
    s1, t1, c1 = _brute_discover_list(fs, ft, sm & sp, tm & tp)
    s2, t2, c2 = _brute_discover_list(fs, ft, sm & ~sp, tm & ~tp)
    assert _as_lists(res) == (s1 + s2, t1 + t2)
    torch.testing.assert_close(res.score, torch.tensor(c1 + c2, dtype=res.score.dtype))
    assert bool(sp[res.src[:n_part, 0], res.src[:n_part, 1]].all())
    assert bool(tp[res.tgt[:n_part, 0], res.tgt[:n_part, 1]].all())
    assert not bool(sp[res.src[n_part:, 0], res.src[n_part:, 1]].any())
    assert not bool(tp[res.tgt[n_part:, 0], res.tgt[n_part:, 1]].any())


def test_discover_empty_target_part_searches_whole_object():
    fs, ft = _rand((4, 5, 5), 60), _rand((4, 5, 5), 61)
    sm, tm = _mask(5, 5, 62), _mask(5, 5, 63)
    sp = torch.zeros(5, 5, dtype=torch.bool)
    sp[:2] = True
    tp = torch.zeros(5, 5, dtype=torch.bool)  # predicted target part is empty
    res = discover(fs, ft, sm, tm, sp, tp)
    s1, t1, _ = _brute_discover_list(fs, ft, sm & sp, tm)
    s2, t2, _ = _brute_discover_list(fs, ft, sm & ~sp, tm)
    assert _as_lists(res) == (s1 + s2, t1 + t2)


def test_discover_bad_inputs():
    fs, ft = _rand((3, 4, 4), 0), _rand((3, 4, 4), 1)
    m = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(AffordError, match="both"):
        discover(fs, ft, m, m, src_part=m)
    with pytest.raises(AffordError, match="shape"):
        discover(fs, ft, m[:3], m)
    with pytest.raises(AffordError, match="empty"):
        discover(fs, ft, m, ~m)
    with pytest.raises(AffordError, match=r"\(D,H,W\)"):
        discover(fs[0], ft, m, m)


def test_nearest_neighbors_tile_cap_does_not_change_results():
    q, k = _rand((37, 6), 70, torch.float32), _rand((23, 6), 71, torch.float32)
    s1, i1 = nearest_neighbors(q, k, block=1024)
    s2, i2 = nearest_neighbors(q, k, block=1024, max_tile_bytes=1)  # one row per tile
    ref = (q @ k.t()).max(dim=1)
    assert torch.equal(i1, ref.indices) and torch.equal(i2, ref.indices)
    torch.testing.assert_close(s2, ref.values)


def test_predicted_part_mask():
    logit = torch.tensor([[2.0, -1.0], [0.0, 0.3]])
    obj = torch.tensor([[True, True], [True, False]])
    assert predicted_part_mask(logit, obj).tolist() == [[True, False], [False, False]]

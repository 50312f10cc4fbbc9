"""Label transfer and discovery metrics (REFERENCE_NOTES C): hand cases and brute force."""

import numpy as np
import pytest

from afford.errors import AffordError
from afford.metrics.correspondence import average_results, discovery, label_transfer


def test_label_transfer_hand_case():
    gt = np.array([[50, 50]] * 6, dtype=float)
    offsets = np.array([[0, 0], [0, 10], [15, 0], [0, -23], [24, 0], [6, 8]], dtype=float)
    r = label_transfer(gt + offsets, gt)
    errors = [0, 10, 15, 23, 24, 10]
    assert set(r) == {"norm_dist", "pck@23", "pck@15", "pck@10"}
    assert r["norm_dist"] == pytest.approx(np.mean(errors) / 223.0)
    assert r["pck@23"] == pytest.approx(5 / 6)  # error == k counts
    assert r["pck@15"] == pytest.approx(4 / 6)
    assert r["pck@10"] == pytest.approx(3 / 6)
    strict = label_transfer(gt + offsets, gt, inclusive=False)
    assert strict["pck@10"] == pytest.approx(1 / 6)
    assert strict["pck@23"] == pytest.approx(4 / 6)  # 0, 10, 15, 10 < 23
    custom = label_transfer(gt + offsets, gt, thresholds=(5, 2.5), norm=224.0)
    assert set(custom) == {"norm_dist", "pck@5", "pck@2.5"}
    assert custom["norm_dist"] == pytest.approx(np.mean(errors) / 224.0)


def test_label_transfer_perfect_and_bad_input():
    pts = np.random.default_rng(0).integers(0, 224, (20, 2))
    r = label_transfer(pts, pts)
    assert r == {"norm_dist": 0.0, "pck@23": 1.0, "pck@15": 1.0, "pck@10": 1.0}
    with pytest.raises(AffordError, match="shape"):
        label_transfer(pts[:3], pts)
    with pytest.raises(AffordError, match=r"\(N,2\)"):
        label_transfer(pts[:, :1], pts[:, :1])
    with pytest.raises(AffordError, match="empty"):
        label_transfer(np.zeros((0, 2)), np.zeros((0, 2)))


GT_SRC = np.array([[10, 10], [100, 100]], dtype=float)
GT_TGT = np.array([[50, 50], [150, 150]], dtype=float)
PRED_SRC = np.array([[10, 12], [10, 10], [100, 107], [200, 200]], dtype=float)
PRED_TGT = np.array([[50, 49], [150, 150], [150, 150], [0, 0]], dtype=float)


def test_discovery_tiny_hand_case():
    r = discovery(PRED_SRC, PRED_TGT, GT_SRC, GT_TGT)
    # prediction 1 has its source near GT 0 and its target near GT 1: never correct (one index)
    # k in {23, 10}: correct = [1, 0, 1, 0]; GT 0 first matched at rank 0, GT 1 at rank 2
    # top_k: 1 (t=25..49%), 2 (50..74%), 3 (75..99%), 4 (100%)
    for k in (23, 10):
        assert r[f"ap@{k}"] == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
        assert r[f"best_f1@{k}"] == pytest.approx(0.8)
    # k = 15 behaves as 10; k = 5: only prediction 0 is correct
    assert r["ap@15"] == pytest.approx(0.5 + 1 / 3)
    assert r["ap@5"] == pytest.approx(0.5)
    assert r["best_f1@5"] == pytest.approx(2 / 3)
    c = r["curves"][10]
    assert c["t"][0] == 0.0 and c["precision"][0] == 1.0 and c["recall"][0] == 0.0
    assert len(c["t"]) == 1 + 76  # 24 steps with top_k = 0 skipped
    assert c["top_k"][1] == 1 and c["t"][1] == pytest.approx(0.25)
    np.testing.assert_allclose(np.unique(c["precision"][1:]), [0.5, 2 / 3, 1.0])
    assert c["recall"][-1] == 1.0 and c["precision"][-1] == 0.5
    assert set(r) == {f"{m}@{k}" for m in ("ap", "best_f1") for k in (23, 15, 10, 5)} | {"curves"}


def test_discovery_boundary_is_inclusive():
    gs, gt = np.array([[50.0, 50.0]]), np.array([[60.0, 60.0]])
    ps, pt = np.array([[50.0, 73.0]]), np.array([[63.0, 64.0]])  # distances 23 and 5
    r = discovery(ps, pt, gs, gt, ks=(23, 22.9))
    assert r["best_f1@23"] == 1.0 and r["ap@23"] == 1.0
    assert r["best_f1@22.9"] == 0.0 and r["ap@22.9"] == 0.0


def test_discovery_empty_predictions_and_perfect():
    r = discovery(np.zeros((0, 2)), np.zeros((0, 2)), GT_SRC, GT_TGT)
    for k in (23, 15, 10, 5):
        assert r[f"best_f1@{k}"] == 0.0 and r[f"ap@{k}"] == 0.0
        assert r["curves"][k]["recall"].tolist() == [0.0]
    perfect = discovery(GT_SRC, GT_TGT, GT_SRC, GT_TGT)
    assert perfect["ap@5"] == 1.0 and perfect["best_f1@5"] == 1.0
    with pytest.raises(AffordError, match="no ground-truth"):
        discovery(GT_SRC, GT_TGT, np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(AffordError, match="differ"):
        discovery(GT_SRC, GT_TGT[:1], GT_SRC, GT_TGT)


def _brute(ps, pt, gs, gt, ks, ts):
    """Independent M x G reference with Python loops over the sweep."""
    m, g = len(ps), len(gs)
    ds = np.linalg.norm(ps[:, None, :] - gs[None, :, :], axis=2)
    dt = np.linalg.norm(pt[:, None, :] - gt[None, :, :], axis=2)
    out = {}
    for k in ks:
        ok = (ds <= k) & (dt <= k)
        precs, recs = [1.0], [0.0]
        for t in ts:
            top_k = int(m * t)
            if top_k == 0:
                continue
            precs.append(ok[:top_k].any(axis=1).sum() / top_k)
            recs.append(ok[:top_k].any(axis=0).sum() / g)
        f1 = [2 * p * r / (p + r) if p + r > 0 else 0.0 for p, r in zip(precs[1:], recs[1:])]
        ap = sum((recs[n] - recs[n - 1]) * precs[n] for n in range(1, len(recs)))
        out[k] = (max(f1, default=0.0), ap, np.array(precs), np.array(recs))
    return out


@pytest.mark.parametrize(
    "m,g,integer,seed",
    [(37, 30, True, 0), (250, 40, True, 1), (180, 25, False, 2), (99, 60, True, 3)],
)
def test_discovery_matches_brute_force(m, g, integer, seed):
    rng = np.random.default_rng(seed)
    if integer:
        gs = rng.integers(0, 48, (g, 2)).astype(float)
        gt = rng.integers(0, 48, (g, 2)).astype(float)
        ps = rng.integers(0, 48, (m, 2)).astype(float)
        pt = rng.integers(0, 48, (m, 2)).astype(float)
    else:
        gs, gt = rng.random((g, 2)) * 60, rng.random((g, 2)) * 60
        ps, pt = rng.random((m, 2)) * 60, rng.random((m, 2)) * 60
    ks = (23, 15, 10, 5, 7.5)
    ts = np.arange(1, 101) / 100.0
    ref = _brute(ps, pt, gs, gt, ks, ts)
    for chunk in (None, 7):
        r = discovery(ps, pt, gs, gt, ks=ks, chunk=chunk)
        for k in ks:
            key = str(int(k)) if float(k).is_integer() else repr(k)
            f1, ap, precs, recs = ref[k]
            assert r[f"best_f1@{key}"] == f1
            assert r[f"ap@{key}"] == pytest.approx(ap, abs=1e-12)
            np.testing.assert_array_equal(r["curves"][k]["precision"], precs)
            np.testing.assert_array_equal(r["curves"][k]["recall"], recs)
        assert 0.0 < r["ap@23"] <= 1.0  # the case is not degenerate


def test_discovery_custom_sweep_and_bad_ts():
    r = discovery(PRED_SRC, PRED_TGT, GT_SRC, GT_TGT, ks=(10,), ts=[0.5, 1.0])
    # top_k 2 (P=.5, R=.5) then 4 (P=.5, R=1)
    assert r["ap@10"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    assert r["best_f1@10"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    # top_k = int(M * t) with the float t = i / 100: for M = 100, t = 0.29 gives 28
    rng = np.random.default_rng(5)
    pts = rng.integers(0, 224, (100, 2))
    c = discovery(pts, pts, pts, pts, ks=(5,))["curves"][5]
    assert c["top_k"][1:30].tolist() == [int(100 * (i / 100)) for i in range(1, 30)]
    assert c["top_k"][29] == 28 and c["top_k"][30] == 30
    with pytest.raises(AffordError, match="ts"):
        discovery(PRED_SRC, PRED_TGT, GT_SRC, GT_TGT, ts=[0.0, 2.0])


def test_average_results():
    a = {"best_f1@5": 0.2, "ap@5": 0.1, "curves": {5: {}}}
    b = {"best_f1@5": 0.4, "ap@5": 0.3, "curves": {5: {}}}
    assert average_results([a, b]) == pytest.approx({"n": 2, "best_f1@5": 0.3, "ap@5": 0.2})
    lt = [
        label_transfer(np.zeros((2, 2)), np.zeros((2, 2))),
        label_transfer(np.array([[0.0, 0.0]]), np.array([[0.0, 30.0]])),
    ]
    avg = average_results(lt)
    assert avg["pck@23"] == pytest.approx(0.5)
    assert avg["norm_dist"] == pytest.approx(30 / 223 / 2)
    with pytest.raises(AffordError, match="keys"):
        average_results([a, {"ap@5": 0.1}])
    with pytest.raises(AffordError, match="empty"):
        average_results([])


def test_distinct_fraction():
    from afford.metrics.correspondence import distinct_fraction

    assert distinct_fraction(np.array([[1, 2], [3, 4], [5, 6], [7, 8]])) == 1.0
    # collapse: every source point on one pixel (float predictions round to pixels)
    assert distinct_fraction(np.array([[5, 5], [5.2, 4.9], [5, 5], [4.8, 5]])) == 0.25
    assert distinct_fraction(np.array([[0, 0], [0, 1], [0, 0]])) == pytest.approx(2 / 3)
    with pytest.raises(AffordError, match="empty"):
        distinct_fraction(np.zeros((0, 2)))

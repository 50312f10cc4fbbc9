"""Eq. 1 prototypes, local mean, rho (Eq. 6), pIoU, saliency, K-means, part discovery, Eq. 7."""

import math

import pytest
import torch

from afford.errors import AffordError
from afford.grounding.parts import (
    affinity_saliency,
    dino_saliency,
    discover_exo_parts,
    ego_positive,
    exo_object_affinity,
    kmeans,
    kmeans_init,
    local_mean3x3,
    minmax,
    piou,
    rho,
)
from afford.grounding.prototypes import phi_neg, phi_pos, pool_norm


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_phi_pos_phi_neg_by_hand():
    g = torch.Generator().manual_seed(0)
    b, d, h, w = 2, 3, 2, 3
    z = torch.randn(b, d, h, w, generator=g)
    m = torch.rand(b, h, w, generator=g)
    c = torch.randn(b, h, w, generator=g)
    for beta in (1.0, 0.5):
        pp, pn, pl = phi_pos(z, m), phi_neg(z, m, c, beta=beta), pool_norm(z)
        for i in range(b):
            vp, vn, vl = [0.0] * d, [0.0] * d, [0.0] * d
            for k in range(d):
                for r in range(h):
                    for q in range(w):
                        x = float(z[i, k, r, q])
                        vp[k] += x * float(m[i, r, q]) / (h * w)
                        vn[k] += x * (beta - float(m[i, r, q]) * float(c[i, r, q])) / (h * w)
                        vl[k] += x / (h * w)
            assert pp[i].tolist() == pytest.approx(_norm(vp), abs=1e-6)
            assert pn[i].tolist() == pytest.approx(_norm(vn), abs=1e-6)
            assert pl[i].tolist() == pytest.approx(_norm(vl), abs=1e-6)
    with pytest.raises(AffordError):
        phi_pos(z, m[:, :1])


def test_local_mean3x3_by_hand():
    x = torch.randn(2, 3, 4, 5)
    y = local_mean3x3(x)
    assert y.shape == x.shape
    for a in range(2):
        for e in range(3):
            for i in range(4):
                for j in range(5):
                    vals = [
                        float(x[a, e, ii, jj])
                        for ii in range(i - 1, i + 2)
                        for jj in range(j - 1, j + 2)
                        if 0 <= ii < 4 and 0 <= jj < 5
                    ]
                    assert float(y[a, e, i, j]) == pytest.approx(sum(vals) / len(vals), abs=1e-6)
    # corner of a 2-D map averages 4 cells
    m = torch.arange(9.0).view(3, 3)
    assert float(local_mean3x3(m)[0, 0]) == pytest.approx((0 + 1 + 3 + 4) / 4)


def test_exo_object_affinity():
    ent, act = torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3)
    assert torch.allclose(exo_object_affinity(ent, act), local_mean3x3(ent) * act)


def test_rho_by_hand():
    a = torch.randn(3, 4, 2, 5)
    r = rho(a)
    for b in range(3):
        want = min(max(a[b, e].flatten().tolist()) for e in range(4))
        assert float(r[b]) == pytest.approx(want)


def test_piou_by_hand():
    a = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    s = torch.tensor([1, 0, 1, 0])
    # row 0: inter 1, |A| 2, |S| 2, union 3; row 1: empty A -> 0 + |S|/|S|; row 2: 2/4, 2/4
    want = [0.5 * (1 / 2 + 2 / 3), 0.5 * (0 + 1.0), 0.5 * (2 / 4 + 2 / 4)]
    assert piou(a, s).tolist() == pytest.approx(want, abs=1e-6)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(5, 30, generator=g) > 0.5
    s = torch.rand(30, generator=g) > 0.4
    got = piou(a, s)
    for k in range(5):
        inter = sum(1 for n in range(30) if a[k, n] and s[n])
        union = sum(1 for n in range(30) if a[k, n] or s[n])
        ref = 0.5 * (inter / (int(a[k].sum()) + 1e-10) + int(s.sum()) / (union + 1e-10))
        assert float(got[k]) == pytest.approx(ref, abs=1e-6)


def test_minmax():
    x = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    assert minmax(x).flatten().tolist() == pytest.approx([0, 0.5, 0.25, 1.0], abs=1e-8)
    assert torch.equal(minmax(torch.ones(1, 2, 2)), torch.zeros(1, 2, 2))


def test_dino_saliency_by_hand():
    g = torch.Generator().manual_seed(1)
    att = torch.rand(2, 6, 3, 4, generator=g)
    sal = dino_saliency(att, (0, 1, 3))
    for b in range(2):
        avg = [[0.0] * 4 for _ in range(3)]
        for hd in (0, 1, 3):
            vals = att[b, hd].flatten().tolist()
            mean = sum(vals) / len(vals)
            for i in range(3):
                for j in range(4):
                    avg[i][j] += (1.0 if float(att[b, hd, i, j]) > mean else 0.0) / 3
        flat = [v for row in avg for v in row]
        lo, hi = min(flat), max(flat)
        nrm = [(v - lo) / (hi - lo + 1e-10) for v in flat]
        mu = sum(nrm) / len(nrm)
        assert sal[b].flatten().tolist() == [v > mu for v in nrm]
    with pytest.raises(AffordError, match="saliency_heads"):
        dino_saliency(att[:, :3], (0, 1, 3))
    s = torch.tensor([[[0.1, 0.5], [0.2, 0.4]]])
    assert affinity_saliency(s).flatten().tolist() == [False, True, False, True]


def _lloyd_reference(x, valid, init_idx, k, iters):
    """Plain-Python Lloyd from given initial indices (one sample)."""
    pts = [x[i].tolist() for i in range(len(x)) if valid[i]]
    vidx = [i for i in range(len(x)) if valid[i]]
    cent = [x[i].tolist() for i in init_idx]
    assign = None
    for _ in range(iters):
        new = []
        for p in pts:
            dists = [sum((a - b) ** 2 for a, b in zip(p, c)) for c in cent]
            new.append(dists.index(min(dists)))
        if new == assign:
            break
        assign = new
        for j in range(k):
            mem = [p for p, a in zip(pts, assign) if a == j]
            if mem:
                cent[j] = [sum(col) / len(mem) for col in zip(*mem)]
    return cent, dict(zip(vidx, assign))


def test_kmeans_matches_reference_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    b, n, d, k = 3, 40, 4, 3
    x = torch.randn(b, n, d, generator=g)
    valid = torch.rand(b, n, generator=g) > 0.3
    x[~valid] = 1e3  # padding far away must not matter
    c1, a1 = kmeans(x, valid, k=k, iters=50, generator=torch.Generator().manual_seed(7))
    c2, a2 = kmeans(x, valid, k=k, iters=50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    init = kmeans_init(x, valid, k, torch.Generator().manual_seed(7))
    assert torch.equal(init, kmeans_init(x, valid, k, torch.Generator().manual_seed(7)))
    assert bool(torch.gather(valid, 1, init).all())  # seeds are valid points
    c3, a3 = kmeans(x, valid, k=k, iters=50, init=init)
    assert torch.equal(c1, c3) and torch.equal(a1, a3)
    for i in range(b):
        cent, assign = _lloyd_reference(x[i], valid[i].tolist(), init[i].tolist(), k, 50)
        assert c1[i].flatten().tolist() == pytest.approx(sum(cent, []), abs=1e-5)
        for j in range(n):
            assert int(a1[i, j]) == (assign[j] if valid[i, j] else -1)


def test_kmeanspp_seeds_distinct_locations():
    # 3 distinct locations, many duplicates: D^2 sampling can only pick a new location
    locs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    x = locs[torch.tensor([0] * 10 + [1] * 3 + [2] * 2)][None].repeat(4, 1, 1)
    for seed in range(5):
        init = kmeans_init(
            x, torch.ones(4, 15, dtype=torch.bool), 3, torch.Generator().manual_seed(seed)
        )
        for row in init:
            picked = {tuple(x[0, j].tolist()) for j in row.tolist()}
            assert len(picked) == 3


def test_kmeans_separates_blobs():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    g = torch.Generator().manual_seed(2)
    pts = torch.cat([c + 0.1 * torch.randn(20, 2, generator=g) for c in centres])
    cent, assign = kmeans(pts[None], torch.ones(1, 60, dtype=torch.bool), k=3)
    found = sorted(cent[0].round().tolist())
    assert found == sorted(centres.tolist())
    for blob in range(3):
        assert len(set(assign[0, blob * 20 : (blob + 1) * 20].tolist())) == 1


def _parts_problem():
    """Exo descriptors in 3 clusters; the ego's left half matches cluster 0 = saliency."""
    b, e, d, h, w = 2, 3, 3, 4, 4
    # cluster 2 points away from cluster 0 so only cluster 0's ego map matches the saliency
    dirs = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [-5.0, 0.0, 5.0]])
    exo = torch.zeros(b, e, d, h, w)
    for j in range(w):  # column j of every exo image belongs to cluster min(j, 2)
        exo[:, :, :, :, j] = dirs[min(j, 2)].view(1, 1, d, 1)
    exo = exo + 0.01 * torch.randn(b, e, d, h, w, generator=torch.Generator().manual_seed(0))
    ego = torch.zeros(b, d, h, w)
    ego[:, :, :, :2] = dirs[0].view(1, d, 1, 1)
    ego[:, :, :, 2:] = dirs[1].view(1, d, 1, 1)
    sal = torch.zeros(b, h, w, dtype=torch.bool)
    sal[:, :, :2] = True
    return exo, ego, sal


def test_discover_exo_parts_finds_part_and_part_maps_by_hand():
    exo, ego, sal = _parts_problem()
    b, e, d, h, w = exo.shape
    mask = torch.ones(b, e, h, w)
    mask[0, 0, 0, 0] = 0.0  # sample 0: after min-max every other cell = 1 > gamma1
    mask[1, :, 0, 0] = 0.5  # sample 1: min-max over each exo image -> these cells 0
    res = discover_exo_parts(mask, exo, ego, sal, gamma1=0.6, alpha=0.6, k=3, iters=100)
    assert res.reliable.tolist() == [True, True]
    # per-image min-max: a constant exo map normalises to 0 (no descriptors from it)
    assert res.num_desc.tolist() == [h * w - 1, e * h * w - e]
    assert torch.allclose(res.centroid, torch.tensor([[1.0, 0, 0]]).expand(b, -1), atol=1e-2)
    assert res.best_piou.tolist() == pytest.approx([1.0, 1.0])
    # part maps by hand: 0.5 * (cos + softmax over pixels of -distance)
    c = res.centroid
    for i in range(b):
        ego_d = ego[i].flatten(1).T
        cos = torch.nn.functional.cosine_similarity(ego_d, c[i][None], dim=1)
        dist = torch.tensor([float(torch.linalg.norm(v - c[i])) for v in ego_d])
        want = 0.5 * (cos + torch.softmax(-dist, 0))
        assert torch.allclose(res.ego_part[i].flatten(), want, atol=1e-5)
        exo_d = exo[i].permute(0, 2, 3, 1).reshape(-1, d)  # joint over E*hw
        cos = torch.nn.functional.cosine_similarity(exo_d, c[i][None], dim=1)
        dist = torch.tensor([float(torch.linalg.norm(v - c[i])) for v in exo_d])
        want = 0.5 * (cos + torch.softmax(-dist, 0))
        assert torch.allclose(res.exo_part[i].flatten(), want, atol=1e-5)


def test_discover_exo_parts_fallbacks():
    exo, ego, sal = _parts_problem()
    b, e, d, h, w = exo.shape
    # fewer than K descriptors: only 2 cells above gamma1 in sample 0
    mask = torch.zeros(b, e, h, w)
    mask[0, 0, 0, 0] = mask[0, 1, 0, 0] = 1.0
    mask[1] = 1.0
    mask[1, 0, 0, 0] = 0.0
    res = discover_exo_parts(mask, exo, ego, sal, k=3)
    assert res.num_desc[0] == 2 and not res.reliable[0] and res.best_piou[0] == 0
    assert res.reliable[1]
    # saliency that matches no cluster map well -> below alpha
    bad_sal = torch.zeros_like(sal)
    bad_sal[:, 0, 0] = True
    res = discover_exo_parts(mask, exo, ego, bad_sal, k=3, alpha=0.6)
    assert not res.reliable.any()
    assert bool((res.best_piou < 0.6).all())


def test_ego_positive_eq7_by_hand():
    s = torch.tensor([[[0.1, 0.3], [0.25, 0.2]], [[0.1, 0.2], [0.15, 0.12]]])
    r = torch.tensor([0.22, 0.5])  # sample 0 has pixels over rho; sample 1 does not
    pos, in_j = ego_positive(s, r, gamma2=0.6)
    assert in_j.tolist() == [True, False]
    assert pos[0].flatten().tolist() == [False, True, True, False]
    # sample 1: min-max -> [0, 1, 0.5, 0.2] > 0.6
    assert pos[1].flatten().tolist() == [False, True, False, False]
    pos, in_j = ego_positive(s, r, gamma2=0.6, part_level=False)
    assert in_j.tolist() == [False, False]
    # sample 0 min-max: [0, 1, 0.75, 0.5] > 0.6
    assert pos[0].flatten().tolist() == [False, True, True, False]

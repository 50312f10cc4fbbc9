"""Camera geometry, visible points and GT curation (afford.geometry), crops (afford.data.crops),
on analytic scenes."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from afford.data import crops
from afford.errors import AffordError
from afford.geometry import camera as C
from afford.geometry import curation as A
from afford.geometry import visible as V

sys.path.insert(0, str(Path(__file__).parent))
import sphere_scenes as scenes  # noqa: E402


def _two_assets():
    """Kettle-like source (body + small 'spout' sphere) and a differently shaped target."""
    src = scenes.SphereObject(np.array([[0.0, 0, 0], [0.28, 0, 0.12]]), np.array([0.25, 0.12]))
    tgt = scenes.SphereObject(np.array([[0.0, 0, -0.05], [0, 0.3, 0.2]]), np.array([0.3, 0.1]))
    f_src = np.eye(4)
    f_src[:3, 3] = src.centres[1]
    # target functional frame: rotated 90 deg about z, origin at its part centre
    f_tgt = np.eye(4)
    f_tgt[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    f_tgt[:3, 3] = tgt.centres[1]
    return src, tgt, f_src, f_tgt


def _rendered_pair(n_views):
    """:func:`_two_assets` seen by ``n_views`` 48 px ring cameras, with 8000-point clouds.

    Returns f_src, f_tgt, the source part map p1 and surface points x1, the target points x2,
    and each asset's cloud and cloud part labels (c1, l1, c2, l2).
    """
    src, tgt, f_src, f_tgt = _two_assets()
    K, R, t = scenes.ring_cameras(n_views, size=48, focal=60)
    _, p1, x1 = scenes.render_views(src, K, R, t, 48)
    _, _, x2 = scenes.render_views(tgt, K, R, t, 48)
    c1, l1 = src.cloud(8000)
    c2, l2 = tgt.cloud(8000)
    return f_src, f_tgt, p1, x1, x2, c1, l1, c2, l2


def test_backproject_matches_analytic_surface():
    obj = scenes.SphereObject(np.array([[0.0, 0, 0]]), np.array([0.3]))
    K, R, t = scenes.ring_cameras(2, size=48)
    depth, _, pts = scenes.render_views(obj, K, R, t, 48)
    bp = C.backproject(depth, K, R, t)
    assert bp.shape == (2, 48, 48, 3)
    fg = np.isfinite(depth)
    assert fg.sum() > 200
    np.testing.assert_allclose(bp[fg], pts[fg], atol=1e-5)
    assert np.isnan(bp[~fg]).all()
    # every back-projected point is on the sphere
    np.testing.assert_allclose(np.linalg.norm(bp[fg], axis=-1), 0.3, atol=1e-5)


def test_project_inverts_backproject():
    K, R, t = scenes.ring_cameras(1, size=32)
    depth = np.full((32, 32), 2.0, np.float32)
    pts = C.backproject(depth, K[0], R[0], t[0])
    rc, z = C.project(pts.reshape(-1, 3), K[0], R[0], t[0])
    grid = np.argwhere(np.ones((32, 32), bool))
    np.testing.assert_allclose(rc, grid, atol=1e-4)
    np.testing.assert_allclose(z, 2.0, atol=1e-5)


def test_multiview_correspondences_reproject_and_respect_occlusion():
    obj = scenes.SphereObject(np.array([[0.0, 0, 0], [0.3, 0.0, 0.1]]), np.array([0.3, 0.15]))
    K, R, t = scenes.ring_cameras(4, size=64)
    depth, _, pts = scenes.render_views(obj, K, R, t, 64)
    i, j = 0, 1
    src, dst = V.multiview_correspondences(
        pts[i], K[j], R[j], t[j], depth[j], np.isfinite(depth[j])
    )
    assert len(src) > 100
    p3 = pts[i][src[:, 0], src[:, 1]]
    rc, _ = C.project(p3, K[j], R[j], t[j])
    assert np.abs(rc - dst).max() < 0.5  # stored dst is the reprojection
    near = np.floor(dst + 0.5).astype(int)
    assert np.abs(dst - near).max() <= 0.5
    # the pixel it lands on sees (nearly) the same surface point: pixel footprint ~ 2/80 units
    # (more on grazing surfaces, where one pixel spans a long stretch of surface)
    gap = np.linalg.norm(pts[j][near[:, 0], near[:, 1]] - p3, axis=1)
    assert np.median(gap) < 0.015 and np.mean(gap < 0.03) > 0.9 and gap.max() < 0.1
    # independent brute-force visibility: a ray from camera j to the point hits nothing more
    # than the depth tolerance (1%, + float margin) before it
    cam_j = -R[j].T @ t[j]
    all_src = np.argwhere(np.isfinite(depth[i]))
    all_p = pts[i][all_src[:, 0], all_src[:, 1]].astype(float)
    d = all_p - cam_j
    length = np.linalg.norm(d, axis=1)
    d /= length[:, None]
    blocked = np.zeros(len(all_p), bool)
    for c, r in zip(obj.centres, obj.radii):
        oc = cam_j - c
        b = d @ oc
        disc = b**2 - (oc @ oc - r**2)
        lam = -b - np.sqrt(np.maximum(disc, 0))
        blocked |= (disc > 0) & (lam > 1e-6) & (lam < length * (1 - 0.012))
    rc_all, _ = C.project(all_p, K[j], R[j], t[j])
    in_img = ((rc_all > -0.5) & (rc_all < 63.5)).all(axis=1)
    brute = {tuple(p) for p in all_src[~blocked & in_img]}
    mine = {tuple(p) for p in src}
    assert mine <= brute  # never an occluded point
    # recall on clearly visible points (facing camera j within 60 degrees; grazing points may
    # fail the depth test, which is conservative)
    own = np.argmin(
        [np.abs(np.linalg.norm(all_p - c, axis=1) - r) for c, r in zip(obj.centres, obj.radii)], 0
    )
    normal = all_p - obj.centres[own]
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    facing = -(normal * d).sum(1) > 0.5
    clear = {tuple(p) for p in all_src[~blocked & in_img & facing]}
    assert len(clear) >= 80
    assert len(mine & clear) >= 0.93 * len(clear)  # misses: sub-pixel silhouettes


def test_farthest_point_sampling_is_greedy_farthest():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 50, size=(60, 2))
    idx = A.farthest_point_sampling(pts, 12, start=3)
    assert idx[0] == 3 and len(set(idx.tolist())) == 12
    for k in range(1, 12):
        chosen = pts[idx[:k]]
        dmin = np.sqrt(((pts[:, None] - chosen[None]) ** 2).sum(-1)).min(1)
        assert dmin[idx[k]] == pytest.approx(dmin.max())
    # n >= N returns every point once
    assert sorted(A.farthest_point_sampling(pts[:5], 10).tolist()) == [0, 1, 2, 3, 4]
    # spread: FPS of the 4 corners + interior picks the corners first
    square = np.array([[0, 0], [0, 10], [10, 0], [10, 10], [5, 5], [4, 6], [6, 5]], float)
    assert set(A.farthest_point_sampling(square, 4, start=0).tolist()) == {0, 1, 2, 3}


def test_hungarian_is_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    for n1, n2 in [(5, 5), (4, 6), (6, 3)]:
        a, b = rng.normal(size=(n1, 3)), rng.normal(size=(n2, 3))
        i1, i2 = A.hungarian_match(a, b)
        assert len(i1) == min(n1, n2) and len(set(i1)) == len(i1) and len(set(i2)) == len(i2)
        cost = np.linalg.norm(a[i1] - b[i2], axis=1).sum()
        best = np.inf
        if n1 <= n2:
            for perm in itertools.permutations(range(n2), n1):
                best = min(best, np.linalg.norm(a - b[list(perm)], axis=1).sum())
        else:
            for perm in itertools.permutations(range(n1), n2):
                best = min(best, np.linalg.norm(a[list(perm)] - b, axis=1).sum())
        assert cost == pytest.approx(best)


def test_alignment_transform_maps_target_frame_onto_source_frame():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    fs = np.eye(4)
    fs[:3, :3], fs[:3, 3] = q, [0.1, 0.2, -0.3]
    ft = np.eye(4)
    ft[:3, 3] = [0.4, 0, 0]
    T = A.alignment_transform(fs, ft)
    np.testing.assert_allclose(T @ ft, fs, atol=1e-12)
    # the target frame origin lands on the source frame origin
    np.testing.assert_allclose(C.transform_points(T, ft[:3, 3]), fs[:3, 3], atol=1e-12)


def test_curate_pair_points_on_parts_and_respect_alignment():
    src, tgt, f_src, f_tgt = _two_assets()
    size = 56
    K, R, t = scenes.ring_cameras(5, size=size, focal=70)
    d1, p1, x1 = scenes.render_views(src, K, R, t, size)
    d2, p2, x2 = scenes.render_views(tgt, K, R, t, size)
    c1, l1 = src.cloud(12000)
    c2, l2 = tgt.cloud(12000)
    pair = A.curate_pair(x1, c1, l1 == 1, f_src, x2, c2, l2 == 1, f_tgt, max_points=10000)
    assert pair is not None
    # source view: (close to) the most visible part pixels by the renderer's part ids
    counts = (p1 == 1).sum(axis=(1, 2))
    assert counts[pair.source_view] >= 0.9 * counts.max()
    n = len(pair.points1)
    assert n == len(pair.points2) > 20
    on1 = p1[pair.source_view][pair.points1[:, 0], pair.points1[:, 1]]
    on2 = p2[pair.target_view][pair.points2[:, 0], pair.points2[:, 1]]
    assert (on1 == 1).all() and (on2 == 1).all()  # every GT point on the functional part
    assert len({tuple(p) for p in pair.points1}) == n  # unique per pixel
    assert len({tuple(p) for p in pair.points2}) == n
    # n = min(n1, n2) of visible part pixels (cloud-matched)
    vis1 = (V.match_to_cloud(x1[pair.source_view], c1) >= 0) & (p1[pair.source_view] == 1)
    vis2 = (V.match_to_cloud(x2[pair.target_view], c2) >= 0) & (p2[pair.target_view] == 1)
    assert n == min(vis1.sum(), vis2.sum())
    # xyz are the pixels' surface points, target mapped by T
    np.testing.assert_allclose(pair.xyz1, x1[pair.source_view][tuple(pair.points1.T)], atol=1e-5)
    np.testing.assert_allclose(
        pair.xyz2,
        C.transform_points(pair.T, x2[pair.target_view][tuple(pair.points2.T)]),
        atol=1e-5,
    )
    # alignment respected: matched 3-D distance far below a random pairing and below the
    # part size; the Hungarian cost is minimal, so no swap of two pairs lowers it
    dist = np.linalg.norm(pair.xyz1 - pair.xyz2, axis=1)
    rng = np.random.default_rng(0)
    rand = np.mean(
        [
            np.linalg.norm(pair.xyz1 - pair.xyz2[rng.permutation(n)], axis=1).mean()
            for _ in range(20)
        ]
    )
    assert dist.mean() < 0.5 * rand
    assert dist.mean() < 0.1
    a, b = rng.integers(0, n, 200), rng.integers(0, n, 200)
    swapped = np.linalg.norm(pair.xyz1[a] - pair.xyz2[b], axis=1) + np.linalg.norm(
        pair.xyz1[b] - pair.xyz2[a], axis=1
    )
    assert (swapped >= dist[a] + dist[b] - 1e-6).all()


def test_curate_pair_subsamples_with_fps():
    f_src, f_tgt, p1, x1, x2, c1, l1, c2, l2 = _rendered_pair(3)
    pair = A.curate_pair(
        x1, c1, l1 == 1, f_src, x2, c2, l2 == 1, f_tgt, max_points=15, source_view=0, target_view=1
    )
    assert pair.source_view == 0 and pair.target_view == 1
    assert len(pair.points1) == 15
    # the 15 source points are spread out: min pairwise distance beats a random 15-subset's
    rc = np.argwhere((V.match_to_cloud(x1[0], c1) >= 0) & (p1[0] == 1))

    def min_gap(p):
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)) + np.eye(len(p)) * 1e9
        return d.min()

    rng = np.random.default_rng(0)
    rand = np.median([min_gap(rc[rng.choice(len(rc), 15, replace=False)]) for _ in range(30)])
    assert min_gap(pair.points1.astype(float)) > rand


def test_square_crop_box_hand_case_and_roundtrip():
    mask = np.zeros((40, 50), bool)
    mask[10:20, 20:30] = True  # 10 x 10, centre (14.5, 24.5)
    box = crops.square_crop_box(mask, 1.2)
    assert box.tolist() == [9, 19, 12]  # size 12 centred: rows 9..20, cols 19..30
    pts = np.array([[14.5, 24.5], [9.0, 19.0], [20.0, 30.0]])
    c = crops.view_to_crop(pts, box, 224)
    np.testing.assert_allclose(c[0], [111.5, 111.5])  # bbox centre -> crop centre
    np.testing.assert_allclose(crops.crop_to_view(c, box, 224), pts)
    # first/last box pixel centres map to the crop's edge pixel blocks
    assert -0.5 < c[1, 0] < 224 / 12 and 223 - 224 / 12 < c[2, 0] < 223.5
    with pytest.raises(AffordError):
        crops.square_crop_box(np.zeros((5, 5), bool))


def test_crop_array_identity_and_outside_fill():
    arr = np.arange(36, dtype=np.float32).reshape(6, 6)
    np.testing.assert_array_equal(crops.crop_array(arr, np.array([0, 0, 6]), 6), arr)
    # 2x upsampling: each pixel duplicated
    up = crops.crop_array(arr, np.array([0, 0, 6]), 12)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(arr, 2, 0), 2, 1))
    out = crops.crop_array(arr, np.array([-2, -2, 6]), 6, fill=np.nan)
    assert np.isnan(out[:2]).all() and np.isnan(out[:, :2]).all()
    np.testing.assert_array_equal(out[2:, 2:], arr[:4, :4])
    # the crop image and the coordinate map agree: a bright pixel lands where view_to_crop says
    img = np.zeros((30, 40, 3), np.uint8)
    img[12, 17] = 255
    box = np.array([5, 10, 15])
    cropped = crops.crop_image(img, box, 45)  # 3x upsampling
    peak = np.unravel_index(np.argmax(cropped[..., 0]), cropped.shape[:2])
    np.testing.assert_allclose(peak, crops.view_to_crop(np.array([12.0, 17.0]), box, 45), atol=0.5)


def test_curate_pair_source_rank_and_pixel_part_restriction():
    f_src, f_tgt, p1, x1, x2, c1, l1, c2, l2 = _rendered_pair(4)
    counts = [
        (
            (V.match_to_cloud(x1[v], c1) >= 0)
            & (l1[np.maximum(V.match_to_cloud(x1[v], c1), 0)] == 1)
        ).sum()
        for v in range(4)
    ]
    order = np.argsort(-np.array(counts), kind="stable")
    second = A.curate_pair(x1, c1, l1 == 1, f_src, x2, c2, l2 == 1, f_tgt, source_rank=1)
    assert second.source_view == order[1]
    # a pixel-part restriction removes the pixels outside it
    keep = np.zeros_like(p1, dtype=bool)
    keep[:, :, :24] = True
    sub = A.curate_pair(
        x1,
        c1,
        l1 == 1,
        f_src,
        x2,
        c2,
        l2 == 1,
        f_tgt,
        source_view=int(order[0]),
        target_view=0,
        source_pixel_part=keep,
    )
    full = A.curate_pair(
        x1, c1, l1 == 1, f_src, x2, c2, l2 == 1, f_tgt, source_view=int(order[0]), target_view=0
    )
    left = (full.points1[:, 1] < 24).sum()
    assert 0 < left < len(full.points1)  # the restriction matters in this view
    assert (sub.points1[:, 1] < 24).all() and len(sub.points1) <= max(left, len(full.points2))

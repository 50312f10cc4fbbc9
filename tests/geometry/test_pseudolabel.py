"""Pseudo-labelling (afford.geometry.pseudolabel): box clustering, voting, Otsu, masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from afford.geometry import pseudolabel as P
from afford.geometry.camera import project

sys.path.insert(0, str(Path(__file__).parent))
import sphere_scenes as scenes  # noqa: E402


def test_box_iou_hand_values():
    a = np.array([[0.0, 0, 10, 10]])
    b = np.array([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(P.box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_cluster_boxes_keeps_largest_cluster_mean():
    boxes = np.array(
        [
            [50, 50, 60, 60],  # outlier
            [0, 0, 10, 10],
            [1, 0, 11, 10],
            [np.nan] * 4,  # miss
            [0, 1, 10, 11],
        ],
        dtype=float,
    )
    np.testing.assert_allclose(P.cluster_boxes(boxes), [1 / 3, 1 / 3, 31 / 3, 31 / 3])
    # a tie goes to the cluster holding the earliest sample
    np.testing.assert_allclose(P.cluster_boxes(boxes[[0, 1]]), [50, 50, 60, 60])
    assert P.cluster_boxes(np.full((4, 4), np.nan)) is None
    # degenerate boxes (zero width) are not valid
    assert P.valid_boxes(np.array([[0, 0, 0, 5], [0, 0, 1, 5]])).tolist() == [False, True]


def _brute_otsu(values, bins=256):
    """Exhaustive between-class variance over the histogram bin edges, with explicit loops."""
    hist, edges = np.histogram(values, bins=bins, range=(0, 1))
    centres = (edges[:-1] + edges[1:]) / 2
    best, best_t = -1.0, None
    for k in range(bins - 1):
        n0, n1 = hist[: k + 1].sum(), hist[k + 1 :].sum()
        if n0 == 0 or n1 == 0:
            continue
        m0 = (hist[: k + 1] * centres[: k + 1]).sum() / n0
        m1 = (hist[k + 1 :] * centres[k + 1 :]).sum() / n1
        var = n0 * n1 * (m0 - m1) ** 2
        if var > best + 1e-9:
            best, best_t = var, edges[k + 1]
    return best_t


def test_otsu_matches_exhaustive_search_and_separates_modes():
    rng = np.random.default_rng(0)
    v = np.clip(np.concatenate([rng.normal(0.2, 0.05, 500), rng.normal(0.75, 0.08, 200)]), 0, 1)
    thr = P.otsu_threshold(v)
    assert thr == pytest.approx(_brute_otsu(v))
    assert 0.35 < thr < 0.6
    assert abs(thr - threshold_otsu(v)) < 2 / 256
    assert P.otsu_threshold(np.full(10, 0.3)) is None  # undefined -> caller's fallback


def test_heat_to_mask_blur_otsu_closing_and_object_product():
    cfg = P.PseudoLabelConfig(blur_sigma=1.0, close_kernel=5)
    obj = np.zeros((64, 64), bool)
    obj[8:56, 8:56] = True
    heat = np.zeros((64, 64), np.float32)
    heat[20:36, 10:40] = 1.0
    heat[27, 20:23] = 0.0  # a small hole inside the voted region: closed again
    heat[2:6, 2:6] = 1.0  # votes outside the object are cut by the object mask
    mask, thr = P.heat_to_mask(heat, obj, scale=64 / 224 * (224 / 64), cfg=cfg)
    assert 0 < thr < 1
    assert mask[27, 20:23].all()  # hole closed
    assert not mask[~obj].any()  # multiplied by the object mask
    expected = np.zeros_like(obj)
    expected[20:36, 10:40] = True
    iou = (mask & expected).sum() / (mask | expected).sum()
    assert iou > 0.9
    # constant heat: Otsu undefined -> fixed fallback threshold, nothing above it
    flat, thr2 = P.heat_to_mask(np.full((64, 64), 0.2, np.float32), obj, 1.0, cfg)
    assert thr2 == cfg.fallback_threshold and not flat.any()


def _scene(n_views=6, size=64):
    obj = scenes.SphereObject(np.array([[0.0, 0, 0], [0.3, 0.0, 0.15]]), np.array([0.28, 0.14]))
    K, R, t = scenes.ring_cameras(n_views, size=size, focal=70)
    depth, part, pts = scenes.render_views(obj, K, R, t, size)
    cloud, labels = obj.cloud(6000)
    return obj, K, R, t, depth, part, pts, cloud, labels


def _true_boxes(pts, part, n_samples, rng, jitter=1.0):
    """Boxes around the visible part pixels of each view, with small jitter."""
    out = np.full((len(part), n_samples, 4), np.nan)
    for v in range(len(part)):
        rr, cc = np.nonzero(part[v] == 1)
        if len(rr) == 0:
            continue
        box = np.array([cc.min() - 0.5, rr.min() - 0.5, cc.max() + 0.5, rr.max() + 0.5])
        out[v] = box + rng.normal(0, jitter, (n_samples, 4))
    return out


def test_pseudo_labels_recover_the_part():
    _, K, R, t, depth, part, pts, cloud, labels = _scene()
    boxes = _true_boxes(pts, part, 4, np.random.default_rng(0))
    res = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes)
    assert res.voted.all()
    gt = part == 1
    good = res.valid & (gt.sum(axis=(1, 2)) > 30)
    assert good.sum() >= 3
    for v in np.flatnonzero(good):
        iou = (res.mask[v] & gt[v]).sum() / (res.mask[v] | gt[v]).sum()
        assert iou > 0.6, (v, iou)
    # votes concentrate on the part's cloud points
    assert res.votes[labels == 1].mean() > 3 * res.votes[labels == 0].mean()
    assert not (res.mask & ~np.isfinite(depth)).any()


def test_views_with_two_or_fewer_boxes_are_skipped():
    _, K, R, t, depth, part, pts, cloud, labels = _scene()
    rng = np.random.default_rng(1)
    boxes = _true_boxes(pts, part, 4, rng)
    # views 4, 5: only two valid samples, both on the WRONG region (a strip of the body's side
    # away from the part)
    mask4 = depth[4] < np.inf
    cols = np.flatnonzero(mask4.any(0))
    rows = np.flatnonzero(mask4.any(0 + 1))
    wrong = np.array([cols[0] - 0.5, rows[0] - 0.5, cols[0] + 5.5, rows[-1] + 0.5])
    far_from_part = ~(part[4] == 1)[:, : cols[0] + 6].any()
    assert far_from_part
    for v in (4, 5):
        boxes[v] = np.nan
        boxes[v, :2] = wrong
    res = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes)
    assert res.voted.tolist() == [True, True, True, True, False, False]
    assert np.isnan(res.kept_boxes[4:]).all()
    assert res.votes.max() <= 4  # at most one vote per voting view
    # the same two views with a third valid box do vote: at most 2 extra votes per point, and
    # the body points inside the wrong box of view 4 gain votes
    boxes3 = boxes.copy()
    for v in (4, 5):
        boxes3[v, 2] = wrong
    res3 = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes3)
    assert res3.voted.all()
    extra = res3.votes - res.votes
    assert extra.min() >= 0 and extra.max() <= 2
    rc4 = project(cloud, K[4], R[4], t[4])[0]
    in_wrong = P.points_in_boxes(rc4[None], wrong[None])[0] & (labels == 0)
    assert extra[in_wrong].sum() > 10
    assert extra[labels == 1].sum() == 0  # the part is not in the wrong boxes


def test_votes_count_boxes_containing_visible_projections():
    cloud = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.0, 0.1, 0]])
    K = np.array([[[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]] * 2)
    R = np.stack([np.eye(3)] * 2)
    t = np.array([[0.0, 0, 2], [0.0, 0, 2]])
    # projections: (50,50), (50,55) [row, col], (55,50)
    boxes = np.array([[48.0, 48, 52, 52], [48.0, 48, 60, 52]])  # view1 box holds points 0, 1
    visible = np.ones((2, 3), bool)
    np.testing.assert_array_equal(P.vote(cloud, visible, K, R, t, boxes), [2, 1, 0])
    visible[1, 1] = False  # hidden in view 1: no vote from its box
    np.testing.assert_array_equal(P.vote(cloud, visible, K, R, t, boxes), [2, 0, 0])
    boxes[1] = np.nan
    np.testing.assert_array_equal(P.vote(cloud, visible, K, R, t, boxes), [1, 0, 0])


def test_small_masks_are_dropped():
    _, K, R, t, depth, part, pts, cloud, _ = _scene(n_views=4)
    boxes = _true_boxes(pts, part, 4, np.random.default_rng(2))
    res = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes)
    v = int(np.argmax(res.mask.sum(axis=(1, 2))))
    area_224 = res.mask[v].sum() * (224 / 64) ** 2  # crop side 64 -> 224
    assert res.valid[v] and area_224 > 0
    cfg = P.PseudoLabelConfig(min_area=int(np.floor(area_224)) + 1)
    res2 = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes, cfg=cfg)
    assert not res2.valid[v] and not res2.mask[v].any()
    cfg = P.PseudoLabelConfig(min_area=int(np.floor(area_224)))
    res3 = P.pseudo_label_masks(cloud, pts, np.isfinite(depth), K, R, t, boxes, cfg=cfg)
    assert res3.valid[v]

"""KLD / SIM / NSS of the AGD20K protocol (REFERENCE_NOTES B) against hand computations."""

import math

import cv2
import numpy as np
import pytest
import torch

from afford.errors import AffordError
from afford.metrics.saliency import (
    aggregate,
    evaluate_map,
    evaluate_maps_torch,
    resize_bilinear,
    unbatch,
)

N = 224 * 224


def _blob(size=224, center=(100, 120), sigma=20.0):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2))


def test_perfect_prediction():
    gt = _blob()
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    r = evaluate_map(gt.copy(), gt)
    assert abs(r["kld"]) < 1e-6
    assert r["sim"] == pytest.approx(1.0, abs=1e-6)
    # NSS by hand: z-scored prediction averaged over the GT pixels above 0.1
    z = (gt - gt.mean()) / gt.std()
    assert r["nss"] == pytest.approx(z[gt > 0.1].mean(), rel=1e-9)
    assert r["nss"] > 1.0


def test_uniform_prediction():
    gt = _blob()
    r = evaluate_map(np.full((14, 14), 0.3), gt)
    # constant prediction -> min-max gives zeros -> p = 0 everywhere
    g = gt / (gt.sum() + 1e-12)
    assert r["kld"] == pytest.approx(np.sum(g * np.log(g / 1e-12 + 1e-12)), rel=1e-12)
    assert r["sim"] == 0.0
    assert r["nss"] == 0.0


def test_disjoint_halves():
    gt = np.zeros((224, 224))
    gt[:, :112] = 1.0
    pred = np.zeros((224, 224))
    pred[:, 112:] = 1.0
    r = evaluate_map(pred, gt)
    assert r["sim"] == 0.0
    # all GT mass (2/N per pixel) where p = 0
    assert r["kld"] == pytest.approx(math.log((2.0 / N) / 1e-12 + 1e-12), rel=1e-9)
    # binary prediction: z = +-1, the GT region holds z = -1
    assert r["nss"] == pytest.approx(-1.0, rel=1e-9)


def test_shifted_prediction_half_overlap():
    gt = np.zeros((224, 224))
    gt[:, :112] = 1.0
    pred = np.zeros((224, 224))
    pred[:, 56:168] = 1.0  # shifted right by 56: half of it overlaps the GT
    r = evaluate_map(pred, gt)
    assert r["sim"] == pytest.approx(0.5, rel=1e-9)
    # KLD: half of the GT mass sits where p = g (log 1), the other half where p = 0
    expected = 0.5 * math.log(1.0 + 1e-12) + 0.5 * math.log((2.0 / N) / 1e-12 + 1e-12)
    assert r["kld"] == pytest.approx(expected, rel=1e-6)
    # z = +1 on the prediction, -1 elsewhere; GT: half +1, half -1
    assert r["nss"] == pytest.approx(0.0, abs=1e-9)
    perfect = evaluate_map(gt, gt)
    assert r["kld"] > perfect["kld"] and r["sim"] < perfect["sim"]


def test_all_zero_gt_is_finite():
    pred = np.random.default_rng(0).random((14, 14))
    r = evaluate_map(pred, np.zeros((300, 400)))
    assert all(math.isfinite(v) for v in r.values())
    assert r == {"kld": 0.0, "sim": 0.0, "nss": 0.0}
    t = evaluate_maps_torch(torch.from_numpy(pred)[None], torch.zeros(1, 300, 400))
    assert all(float(v[0]) == 0.0 for v in t.values())


def test_half_pixel_bilinear_upsampling():
    # 2 -> 4 with half-pixel centres: [0, 1] -> [0, .25, .75, 1] (align_corners would give thirds)
    pred = np.array([[0.0, 1.0], [0.0, 1.0]])
    up = resize_bilinear(pred, 4)
    np.testing.assert_allclose(up, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-7)
    gt = np.zeros((4, 4))
    gt[:, 3] = 1.0
    r = evaluate_map(pred, gt, size=4)
    s = np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)) / (1.0 + 1e-10)
    p = s / (s.sum() + 1e-12)
    g = gt / (gt.sum() + 1e-12)
    assert r["kld"] == pytest.approx(np.sum(g * np.log(g / (p + 1e-12) + 1e-12)), rel=1e-6)
    assert r["sim"] == pytest.approx(np.minimum(p, g).sum(), rel=1e-6)
    assert r["nss"] == pytest.approx(((s - s.mean()) / s.std())[:, 3].mean(), rel=1e-6)


def test_nss_threshold_is_strict_and_on_minmaxed_gt():
    pred = np.arange(16, dtype=float).reshape(4, 4)
    gt = np.zeros((4, 4))
    gt[0, :] = 0.5  # minmax -> 1
    gt[1, :] = 0.05  # minmax -> 0.1 (not > 0.1 : excluded)
    gt[2, :] = 0.0501  # minmax -> 0.1002 (included)
    r = evaluate_map(pred, gt, size=4)
    s = pred / (15 + 1e-10)
    z = (s - s.mean()) / s.std()
    assert r["nss"] == pytest.approx(z[[0, 2]].mean(), rel=1e-9)


def test_boolean_gt_mask_equals_float_mask():
    pred = np.random.default_rng(3).random((14, 14))
    mask = np.zeros((50, 60), dtype=bool)
    mask[10:30, 20:40] = True
    assert evaluate_map(pred, mask) == evaluate_map(pred, mask.astype(float))


def test_bad_inputs():
    with pytest.raises(AffordError, match="2-D"):
        evaluate_map(np.zeros((1, 14, 14)), np.zeros((224, 224)))
    with pytest.raises(AffordError, match="NaN"):
        evaluate_map(np.full((14, 14), np.nan), np.zeros((224, 224)))
    with pytest.raises(AffordError, match=r"\[0, 1\]"):
        evaluate_map(np.zeros((14, 14)), np.full((10, 10), 255.0))
    with pytest.raises(AffordError, match="batch"):
        evaluate_maps_torch(torch.zeros(2, 14, 14), torch.zeros(3, 224, 224))
    with pytest.raises(AffordError):
        evaluate_maps_torch(torch.zeros(14, 14), torch.zeros(224, 224))


@pytest.mark.parametrize(
    "pred_hw,gt_hw",
    [
        ((14, 14), (224, 224)),
        ((16, 16), (480, 640)),
        ((7, 9), (100, 150)),
        ((224, 224), (448, 448)),
        ((30, 20), (300, 225)),
        ((14, 14), (1000, 90)),
    ],
)
def test_torch_matches_numpy(pred_hw, gt_hw):
    rng = np.random.default_rng(sum(pred_hw) + sum(gt_hw))
    b = 3
    pred = rng.random((b, *pred_hw)) ** 3
    gt = cv2.GaussianBlur(rng.random((b, *gt_hw)).transpose(1, 2, 0), (0, 0), 5).transpose(2, 0, 1)
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    gt[1] = 0.0  # all-zero GT in the batch
    pred[2] = 0.7  # constant prediction in the batch
    out = evaluate_maps_torch(torch.from_numpy(pred).float(), torch.from_numpy(gt))
    for i in range(b):
        ref = evaluate_map(pred[i].astype(np.float32), gt[i])
        for k in ("kld", "sim", "nss"):
            assert out[k].shape == (b,)
            assert abs(float(out[k][i]) - ref[k]) < 1e-5, (k, i, float(out[k][i]), ref[k])


def test_torch_resize_equals_cv2_up_and_down():
    from afford.metrics.saliency import resize_bilinear_torch

    rng = np.random.default_rng(1)
    for hw in [(14, 14), (480, 640), (448, 448), (225, 223)]:
        x = rng.random(hw)
        ref = cv2.resize(x, (224, 224), interpolation=cv2.INTER_LINEAR)
        got = resize_bilinear_torch(torch.from_numpy(x)[None], 224)[0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_aggregate_and_unbatch():
    res = [
        {"kld": 1.0, "sim": 0.5, "nss": 2.0},
        {"kld": 3.0, "sim": 0.1, "nss": 0.0},
        {"kld": 2.0, "sim": 0.3, "nss": 1.0},
    ]
    agg = aggregate(res, groups=["hold", "cut", "hold"])
    assert agg["n"] == 3
    assert agg["kld"] == pytest.approx(2.0) and agg["sim"] == pytest.approx(0.3)
    assert agg["groups"]["hold"] == pytest.approx({"n": 2, "kld": 1.5, "sim": 0.4, "nss": 1.5})
    assert agg["groups"]["cut"] == pytest.approx({"n": 1, "kld": 3.0, "sim": 0.1, "nss": 0.0})
    rows = unbatch({"kld": torch.tensor([1.0, 2.0]), "sim": np.array([0.5, 0.25])})
    assert rows == [{"kld": 1.0, "sim": 0.5}, {"kld": 2.0, "sim": 0.25}]
    with pytest.raises(AffordError, match="non-finite"):
        aggregate([{"kld": float("nan")}])
    with pytest.raises(AffordError, match="groups"):
        aggregate(res, groups=["a"])
    with pytest.raises(AffordError, match="keys"):
        aggregate([{"kld": 1.0}, {"sim": 1.0}])

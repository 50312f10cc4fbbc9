"""Saliency metrics of the AGD20K / HICO-IIF protocol: KLD, SIM and NSS (REFERENCE_NOTES B).

Per image (then a plain mean over images, see :func:`aggregate`):

1. ``pred``: the grid map (e.g. 14x14) resized bilinearly to ``size x size`` and min-max
   normalised, ``(x - min) / (max - min + 1e-10)``.
2. ``gt``: the GT png / 255 at its own size, resized bilinearly to ``size x size``.
3. ``p = pred / (sum pred + 1e-12)``, ``g = gt / (sum gt + 1e-12)``.
4. ``KLD = sum g * log(g / (p + 1e-12) + 1e-12)``.
5. ``SIM = sum min(p, g)``.
6. ``NSS``: ``z = (pred - mean) / std`` (population std), ``F = [minmax(gt) > 0.1]`` (strict),
   ``NSS = sum(z * F) / sum(F + 1e-12)``.

Both resizes are OpenCV ``INTER_LINEAR`` (half-pixel centres, border clamping, no antialiasing
when shrinking). The torch version uses ``F.interpolate(mode="bilinear", align_corners=False,
antialias=False)``, which is the same formula for up- and down-sampling (tests check it
against ``cv2.resize`` for GT maps smaller and larger than 224).

Two cases the published formulas leave undefined are made finite here:
- an all-zero GT map (one exists in AGD20K Seen): ``g = 0`` everywhere, so KLD = SIM = 0 and
  ``F`` is empty, NSS = 0;
- a constant prediction: after min-max it is all zeros, ``std = 0``; NSS is defined as 0
  (the released formula would give 0/0 = NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from afford.errors import AffordError

METRIC_KEYS = ("kld", "sim", "nss")

EPS_MINMAX_PRED = 1e-10  # step 1
EPS_MINMAX_GT = 1e-12  # step 6, min-max of the GT before the 0.1 threshold
EPS_SUM = 1e-12  # steps 3, 4 and 6
NSS_THRESHOLD = 0.1  # step 6, strict ">"


def _check_map(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise AffordError(f"evaluate_map: `{name}` must be a 2-D map (H,W), got shape {arr.shape}")
    if arr.size == 0:
        raise AffordError(f"evaluate_map: `{name}` is empty (shape {arr.shape})")
    if not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise AffordError(f"evaluate_map: `{name}` must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise AffordError(f"evaluate_map: `{name}` contains NaN or inf values")
    return arr


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """OpenCV ``INTER_LINEAR`` resize of a 2-D float map to (size, size) (float64)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape == (size, size):
        return x.copy()
    return cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR)


def evaluate_map(pred: Any, gt: Any, size: int = 224) -> dict[str, float]:
    """KLD, SIM and NSS of one predicted heatmap against its GT map (REFERENCE_NOTES B).

    Args:
        pred: (h,w) float map at any resolution (e.g. the 14x14 grid map); any range.
        gt: (H,W) GT map in [0, 1] (the GT png / 255) at its own size.
        size: evaluation resolution (224 in the protocol).

    Returns:
        ``{"kld": float, "sim": float, "nss": float}`` (KLD lower is better, SIM and NSS
        higher is better).
    """
    pred = _check_map(pred, "pred")
    gt = _check_map(gt, "gt")
    if int(size) != size or size < 1:
        raise AffordError(f"evaluate_map: `size` must be a positive integer, got {size!r}")
    if gt.min() < 0.0 or gt.max() > 1.0:
        raise AffordError(
            f"evaluate_map: `gt` must lie in [0, 1] (divide the GT png by 255), got range "
            f"[{gt.min():g}, {gt.max():g}]"
        )
    size = int(size)
    # 1. prediction: bilinear upsample, min-max normalise
    s = resize_bilinear(pred, size)
    s = (s - s.min()) / (s.max() - s.min() + EPS_MINMAX_PRED)
    # 2. GT: bilinear resize
    g_map = resize_bilinear(gt, size)
    # 3. distributions
    p = s / (s.sum() + EPS_SUM)
    g = g_map / (g_map.sum() + EPS_SUM)
    # 4. KLD
    kld = float(np.sum(g * np.log(g / (p + EPS_SUM) + EPS_SUM)))
    # 5. SIM
    sim = float(np.sum(np.minimum(p, g)))
    # 6. NSS
    std = s.std()
    z = (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    g_mm = (g_map - g_map.min()) / (g_map.max() - g_map.min() + EPS_MINMAX_GT)
    fix = (g_mm > NSS_THRESHOLD).astype(np.float64)
    nss = float(np.sum(z * fix) / np.sum(fix + EPS_SUM))
    return {"kld": kld, "sim": sim, "nss": nss}


def resize_bilinear_torch(x: Any, size: int) -> Any:
    """Batched OpenCV-``INTER_LINEAR``-equivalent resize: (B,h,w) -> (B,size,size)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(
        x[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )[:, 0]


def evaluate_maps_torch(pred: Any, gt: Any, size: int = 224, dtype: Any = None) -> dict[str, Any]:
    """Batched torch version of :func:`evaluate_map` (same steps; agrees to 1e-5).

    Args:
        pred: (B,h,w) predicted maps at any resolution, any range.
        gt: (B,H,W) GT maps in [0, 1] at any resolution (e.g. already ``size x size``).
        size: evaluation resolution.
        dtype: computation dtype; default float64 (float32 on devices without float64,
            e.g. MPS).

    Returns:
        ``{"kld": (B,), "sim": (B,), "nss": (B,)}`` tensors on the device of ``pred``.
    """
    if not torch.is_tensor(pred) or not torch.is_tensor(gt):
        raise AffordError("evaluate_maps_torch: `pred` and `gt` must be torch tensors")
    if pred.ndim != 3 or gt.ndim != 3:
        raise AffordError(
            f"evaluate_maps_torch: `pred` and `gt` must be (B,h,w) and (B,H,W), got "
            f"{tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    if pred.shape[0] != gt.shape[0]:
        raise AffordError(
            f"evaluate_maps_torch: batch sizes differ: pred {pred.shape[0]}, gt {gt.shape[0]}"
        )
    if pred.shape[0] == 0 or pred.shape[1] * pred.shape[2] == 0 or gt.shape[1] * gt.shape[2] == 0:
        raise AffordError(
            f"evaluate_maps_torch: empty input, pred {tuple(pred.shape)}, gt {tuple(gt.shape)}"
        )
    if int(size) != size or size < 1:
        raise AffordError(f"evaluate_maps_torch: `size` must be a positive integer, got {size!r}")
    if dtype is None:
        dtype = torch.float32 if pred.device.type == "mps" else torch.float64
    pred = pred.detach().to(dtype)
    gt = gt.detach().to(device=pred.device, dtype=dtype)
    if not bool(torch.isfinite(pred).all()):
        raise AffordError("evaluate_maps_torch: `pred` contains NaN or inf values")
    if not bool(torch.isfinite(gt).all()):
        raise AffordError("evaluate_maps_torch: `gt` contains NaN or inf values")
    if bool((gt < 0).any()) or bool((gt > 1).any()):
        raise AffordError(
            "evaluate_maps_torch: `gt` must lie in [0, 1] (divide the GT png by 255), got range "
            f"[{float(gt.min()):g}, {float(gt.max()):g}]"
        )
    size = int(size)
    b = pred.shape[0]
    # 1. prediction
    s = resize_bilinear_torch(pred, size).reshape(b, -1)
    s_min = s.min(dim=1, keepdim=True).values
    s_max = s.max(dim=1, keepdim=True).values
    s = (s - s_min) / (s_max - s_min + EPS_MINMAX_PRED)
    # 2. GT
    g_map = resize_bilinear_torch(gt, size).reshape(b, -1)
    # 3. distributions
    p = s / (s.sum(dim=1, keepdim=True) + EPS_SUM)
    g = g_map / (g_map.sum(dim=1, keepdim=True) + EPS_SUM)
    # 4-5.
    kld = (g * torch.log(g / (p + EPS_SUM) + EPS_SUM)).sum(dim=1)
    sim = torch.minimum(p, g).sum(dim=1)
    # 6. NSS (population std; constant prediction -> 0)
    std = s.std(dim=1, correction=0, keepdim=True)
    centred = s - s.mean(dim=1, keepdim=True)
    z = torch.where(std > 0, centred / torch.where(std > 0, std, 1.0), torch.zeros_like(s))
    g_min = g_map.min(dim=1, keepdim=True).values
    g_max = g_map.max(dim=1, keepdim=True).values
    g_mm = (g_map - g_min) / (g_max - g_min + EPS_MINMAX_GT)
    fix = (g_mm > NSS_THRESHOLD).to(dtype)
    nss = (z * fix).sum(dim=1) / (fix + EPS_SUM).sum(dim=1)
    return {"kld": kld, "sim": sim, "nss": nss}


def unbatch(results: Mapping[str, Any]) -> list[dict[str, float]]:
    """Split a dict of (B,) tensors/arrays (from :func:`evaluate_maps_torch`) into B dicts."""
    cols = {
        k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in results.items()
    }
    lengths = {k: v.shape for k, v in cols.items()}
    if len({s for s in lengths.values()}) != 1 or any(len(s) != 1 for s in lengths.values()):
        raise AffordError(f"unbatch: every value must be a (B,) array of one length, got {lengths}")
    n = next(iter(lengths.values()))[0] if cols else 0
    return [{k: float(v[i]) for k, v in cols.items()} for i in range(n)]


def aggregate(
    results: Sequence[Mapping[str, float]], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """Plain mean over images, overall and per group (e.g. per affordance class).

    Args:
        results: one dict per image with the same scalar keys (e.g. from :func:`evaluate_map`).
        groups: optional group name per image (same length as ``results``).

    Returns:
        ``{"n": N, <key>: mean, ...}`` plus, with ``groups``, ``"groups": {name: {"n": n_g,
        <key>: mean}}`` (names sorted).
    """
    if len(results) == 0:
        raise AffordError("aggregate: no results to average (empty list)")
    keys = list(results[0].keys())
    for i, r in enumerate(results):
        if set(r.keys()) != set(keys):
            raise AffordError(
                f"aggregate: result {i} has keys {sorted(r.keys())}, expected {sorted(keys)}"
            )
    table = np.empty((len(results), len(keys)), dtype=np.float64)
    for i, r in enumerate(results):
        for j, k in enumerate(keys):
            v = float(r[k])
            if not math.isfinite(v):
                raise AffordError(f"aggregate: result {i} has a non-finite {k!r} ({v})")
            table[i, j] = v
    out: dict[str, Any] = {"n": len(results)}
    out.update({k: float(m) for k, m in zip(keys, table.mean(axis=0))})
    if groups is not None:
        if len(groups) != len(results):
            raise AffordError(
                f"aggregate: `groups` has {len(groups)} entries for {len(results)} results"
            )
        names = np.asarray([str(g) for g in groups])
        per: dict[str, Any] = {}
        for name in sorted(set(names.tolist())):
            sel = table[names == name]
            per[name] = {"n": int(sel.shape[0])}
            per[name].update({k: float(m) for k, m in zip(keys, sel.mean(axis=0))})
        out["groups"] = per
    return out

"""Correspondence between two arbitrary images (``afford correspond``).

Each image is cropped like the training data (a square of 1.2 x the object's longer side around
its mask, resized to 224), features come from a row of :mod:`afford.correspondence.baselines`
(a trained model, or the DINO baseline without a checkpoint), and the result is mapped back to
the original image pixels.

Masks: given as files (non-zero = object), else :func:`estimate_foreground`: pixels whose colour
differs from the median border colour by more than an Otsu threshold, largest connected
component, holes filled. If that finds less than 1% or more than 95% of the image the full
image is used (documented fallback; pass ``--mask1/--mask2`` for cluttered photos).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from afford.correspondence.matching import discover, transfer
from afford.data.crops import crop_array, crop_image, crop_to_view, square_crop_box, view_to_crop
from afford.errors import AffordError
from afford.geometry.pseudolabel import otsu_threshold

CROP = 224


def estimate_foreground(
    image: np.ndarray, min_frac: float = 0.01, max_frac: float = 0.95
) -> np.ndarray:
    """A simple object mask (H,W) bool for an object photographed on a plain background."""
    img = image.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    dist = np.linalg.norm(img - np.median(border, axis=0), axis=-1)
    full = np.ones(image.shape[:2], bool)
    dist = dist / max(float(dist.max()), 1e-6)  # Otsu works on [0, 1]
    thr = otsu_threshold(dist.ravel())
    if thr is None:
        return full
    fg = dist > thr
    labels, n = ndimage.label(fg)
    if n == 0:
        return full
    sizes = np.bincount(labels.ravel())[1:]
    fg = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    frac = fg.mean()
    return fg if min_frac <= frac <= max_frac else full


def prepare(image: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Square crop around the mask -> ``image`` (224,224,3), ``mask`` (224,224), ``box``."""
    if mask.shape != image.shape[:2]:
        raise AffordError(f"mask shape {mask.shape} differs from the image {image.shape[:2]}")
    if not mask.any():
        raise AffordError("the object mask is empty")
    box = square_crop_box(mask)
    return {
        "image": crop_image(image, box, CROP),
        "mask": crop_array(mask, box, CROP, fill=False),
        "box": box,
    }


def correspond(
    row,
    image1: np.ndarray,
    image2: np.ndarray,
    function: str,
    mask1: np.ndarray | None = None,
    mask2: np.ndarray | None = None,
    points: np.ndarray | None = None,
    top: int = 30,
    stride: int = 2,
) -> dict[str, np.ndarray]:
    """Label transfer of ``points`` (n,2) (row, col) of image 1, or the ``top`` discovered
    matches when ``points`` is None (discovery on every ``stride``-th crop pixel). Returns
    ``pts1``, ``pts2`` (n,2) in original image pixels
    and ``score`` (n,) (similarity rank score; 1 for transferred points)."""
    m1 = estimate_foreground(image1) if mask1 is None else mask1.astype(bool)
    m2 = estimate_foreground(image2) if mask2 is None else mask2.astype(bool)
    c1, c2 = prepare(image1, m1), prepare(image2, m2)
    f1 = row.features(c1["image"], c1["mask"], function)
    f2 = row.features(c2["image"], c2["mask"], function)
    part2 = None if f2["part"] is None else torch.from_numpy(f2["part"])
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        h, w = image1.shape[:2]
        if (pts < 0).any() or (pts[:, 0] >= h).any() or (pts[:, 1] >= w).any():
            raise AffordError(f"--points: every point must lie inside IMG1 ({h} rows x {w} cols)")
        src = np.clip(np.rint(view_to_crop(pts, c1["box"], CROP)), 0, CROP - 1).astype(np.int64)
        pred = transfer(
            f1["feat"], f2["feat"], torch.from_numpy(src), torch.from_numpy(c2["mask"]), part2
        ).numpy()
        return {
            "pts1": pts,
            "pts2": crop_to_view(pred, c2["box"], CROP),
            "score": np.ones(len(pts)),
        }
    st = max(1, int(stride))
    sub = (slice(None), slice(None, None, st), slice(None, None, st))
    parts = (None, None)
    if f1["part"] is not None and part2 is not None:
        parts = (torch.from_numpy(f1["part"][::st, ::st].copy()), part2[::st, ::st])
    d = discover(
        f1["feat"][sub],
        f2["feat"][sub],
        torch.from_numpy(c1["mask"][::st, ::st].copy()),
        torch.from_numpy(c2["mask"][::st, ::st].copy()),
        *parts,
    )
    # top matches, spread out: greedy skip of sources within 8 px of an already kept one
    keep: list[int] = []
    src = d.src.numpy().astype(np.float64) * st
    for i in range(src.shape[0]):
        if len(keep) >= top:
            break
        if not keep or np.min(np.linalg.norm(src[keep] - src[i], axis=1)) >= 8:
            keep.append(i)
    k = np.asarray(keep, dtype=np.int64)
    return {
        "pts1": crop_to_view(src[k], c1["box"], CROP),
        "pts2": crop_to_view(d.tgt.numpy()[k].astype(np.float64) * st, c2["box"], CROP),
        "score": d.score.numpy()[k],
    }

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

import cv2
import numpy as np
import torch
from scipy import ndimage

from afford.correspondence.matching import discover, transfer
from afford.data.crops import crop_array, crop_image, crop_to_view, square_crop_box, view_to_crop
from afford.errors import AffordError, UsageError
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


def object_masks(image1, image2, mask1=None, mask2=None) -> tuple[np.ndarray, np.ndarray]:
    """The bool object masks of both images: the given ones, else :func:`estimate_foreground`."""
    m1 = estimate_foreground(image1) if mask1 is None else np.asarray(mask1).astype(bool)
    m2 = estimate_foreground(image2) if mask2 is None else np.asarray(mask2).astype(bool)
    return m1, m2


def pair_features(row, image1, image2, function: str, mask1=None, mask2=None) -> dict[str, Any]:
    """Crops and dense features of both images: ``hw1``, ``hw2`` (their sizes), ``c1``, ``c2``
    (:func:`prepare`), ``f1``,
    ``f2`` (``row.features``: ``feat`` (D,224,224), ``part`` (224,224) bool or None)."""
    m1, m2 = object_masks(image1, image2, mask1, mask2)
    c1, c2 = prepare(image1, m1), prepare(image2, m2)
    return {
        "hw1": tuple(image1.shape[:2]),
        "hw2": tuple(image2.shape[:2]),
        "c1": c1,
        "c2": c2,
        "f1": row.features(c1["image"], c1["mask"], function),
        "f2": row.features(c2["image"], c2["mask"], function),
    }


def _unit(feat: torch.Tensor, pts: np.ndarray) -> torch.Tensor:
    """(D,S,S) map, (N,2) int crop pixels -> (N,D) L2-normalised features."""
    p = torch.as_tensor(pts, dtype=torch.long)
    return torch.nn.functional.normalize(feat[:, p[:, 0], p[:, 1]].t().float(), dim=1)


def _part(f: dict) -> torch.Tensor | None:
    return None if f["part"] is None else torch.from_numpy(np.asarray(f["part"]))


def check_points(points, hw: tuple[int, int], arg: str = "--points") -> np.ndarray:
    """(N,2) float64 (row, col) points inside an (H,W) image, else UsageError."""
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{arg}: expected (N,2) (row, col) points ({exc})") from None
    if not np.isfinite(pts).all():
        raise UsageError(f"{arg}: points contain NaN or inf")
    h, w = hw
    if (pts < 0).any() or (pts[:, 0] > h - 1).any() or (pts[:, 1] > w - 1).any():
        raise UsageError(f"{arg}: every point must lie inside the image ({h} rows x {w} cols)")
    return pts


def transfer_points(
    pf: dict[str, Any], points: np.ndarray, both_directions: bool = False
) -> dict[str, np.ndarray | None]:
    """Label transfer of ``points`` (N,2) (row, col) of image 1 into image 2.

    Returns ``pts1`` (N,2), ``pts2`` (N,2) in original image pixels, ``score`` (N,) the cosine
    similarity of each source point and its match, and with ``both_directions`` also
    ``back`` (N,2) (the match carried back into image 1), ``reverse_score`` (N,) its cosine
    similarity and ``cycle_error`` (N,) the distance from the source point in image-1 pixels
    (else those three are None).
    """
    c1, c2, f1, f2 = pf["c1"], pf["c2"], pf["f1"], pf["f2"]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    src = np.clip(np.rint(view_to_crop(pts, c1["box"], CROP)), 0, CROP - 1).astype(np.int64)
    pred = transfer(
        f1["feat"], f2["feat"], torch.from_numpy(src), torch.from_numpy(c2["mask"]), _part(f2)
    ).numpy()
    score = (_unit(f1["feat"], src) * _unit(f2["feat"], pred)).sum(1).numpy()
    out: dict[str, np.ndarray | None] = {
        "pts1": pts,
        "pts2": crop_to_view(pred, c2["box"], CROP),
        "score": score.astype(np.float64),
        "back": None,
        "reverse_score": None,
        "cycle_error": None,
    }
    if both_directions and len(pts):
        back = transfer(
            f2["feat"], f1["feat"], torch.from_numpy(pred), torch.from_numpy(c1["mask"]), _part(f1)
        ).numpy()
        rs = (_unit(f2["feat"], pred) * _unit(f1["feat"], back)).sum(1).numpy()
        back_view = crop_to_view(back, c1["box"], CROP)
        out.update(
            back=back_view,
            reverse_score=rs.astype(np.float64),
            cycle_error=np.linalg.norm(back_view - pts, axis=1),
        )
    return out


def discover_matches(
    pf: dict[str, Any], top: int = 30, stride: int = 2, min_dist: float = 8.0
) -> dict[str, np.ndarray]:
    """The ``top`` discovered matches (cycle-consistency ranking on every ``stride``-th crop
    pixel), spread out: a source within ``min_dist`` crop pixels of a kept one is skipped.
    Returns ``pts1``, ``pts2`` (n,2) in original pixels and ``score`` (n,) (best first)."""
    c1, c2, f1, f2 = pf["c1"], pf["c2"], pf["f1"], pf["f2"]
    st = max(1, int(stride))
    sub = (slice(None), slice(None, None, st), slice(None, None, st))
    parts = (None, None)
    if f1["part"] is not None and f2["part"] is not None:
        parts = (
            torch.from_numpy(np.ascontiguousarray(f1["part"][::st, ::st])),
            torch.from_numpy(np.ascontiguousarray(f2["part"][::st, ::st])),
        )
    d = discover(
        f1["feat"][sub],
        f2["feat"][sub],
        torch.from_numpy(c1["mask"][::st, ::st].copy()),
        torch.from_numpy(c2["mask"][::st, ::st].copy()),
        *parts,
    )
    src = d.src.numpy().astype(np.float64) * st
    keep = spread(src, int(top), float(min_dist))
    return {
        "pts1": crop_to_view(src[keep], c1["box"], CROP),
        "pts2": crop_to_view(d.tgt.numpy()[keep].astype(np.float64) * st, c2["box"], CROP),
        "score": d.score.numpy()[keep].astype(np.float64),
    }


def spread(points: np.ndarray, top: int, min_dist: float) -> np.ndarray:
    """Indices of at most ``top`` of the ranked ``points`` (M,2), greedily skipping any within
    ``min_dist`` of one already kept (vectorised per candidate block)."""
    keep: list[int] = []
    for i in range(points.shape[0]):
        if len(keep) >= top:
            break
        if not keep or np.min(np.linalg.norm(points[keep] - points[i], axis=1)) >= min_dist:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def pull_map(pf: dict[str, Any], source_map: np.ndarray, stride: int = 2) -> np.ndarray:
    """Carry a per-pixel map of image 1 (H1,W1) onto image 2 through the correspondence.

    Every ``stride``-th pixel of image 2's object crop takes the value of its nearest
    neighbour (label transfer from image 2 to image 1, restricted to image 1's object) in the
    cropped source map; the (224,224) result (0 off the object) is upsampled and mapped back
    to image 2's pixels (0 outside the crop). Returns (H2,W2) float32.
    """
    c1, c2, f1, f2 = pf["c1"], pf["c2"], pf["f1"], pf["f2"]
    st = max(1, int(stride))
    src_crop = crop_array(np.asarray(source_map, dtype=np.float32), c1["box"], CROP, fill=0.0)
    tmask = c2["mask"]
    grid = np.zeros((CROP, CROP), np.float32)
    rr, cc = np.nonzero(tmask[::st, ::st])
    if rr.size:
        q = np.stack([rr * st, cc * st], axis=1).astype(np.int64)
        back = transfer(
            f2["feat"], f1["feat"], torch.from_numpy(q), torch.from_numpy(c1["mask"]), _part(f1)
        ).numpy()
        small = np.zeros(tmask[::st, ::st].shape, np.float32)
        small[rr, cc] = src_crop[back[:, 0], back[:, 1]]
        grid = cv2.resize(small, (CROP, CROP), interpolation=cv2.INTER_LINEAR) * tmask
    return uncrop_map(grid, c2["box"], pf["hw2"])


def uncrop_map(grid: np.ndarray, box: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(S,S) crop-space map -> (H,W) view map (bilinear through the crop box; 0 outside)."""
    top, left, size = (float(v) for v in box)
    h, w = int(hw[0]), int(hw[1])
    s = grid.shape[0] / size
    # view pixel (r, c) -> crop coordinate (r - top + 0.5) * s - 0.5
    mx = ((np.arange(w, dtype=np.float32) - left + 0.5) * s - 0.5)[None, :].repeat(h, 0)
    my = ((np.arange(h, dtype=np.float32) - top + 0.5) * s - 0.5)[:, None].repeat(w, 1)
    return cv2.remap(
        grid.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )  # fmt: skip


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
    ``pts1``, ``pts2`` (n,2) in original image pixels and ``score`` (n,) (cosine similarity
    for transferred points, the cycle-consistency score for discovered ones)."""
    pf = pair_features(row, image1, image2, function, mask1, mask2)
    if points is not None:
        pts = check_points(points, image1.shape[:2])
        res = transfer_points(pf, pts)
        return {"pts1": res["pts1"], "pts2": res["pts2"], "score": res["score"]}
    return discover_matches(pf, top=top, stride=stride)

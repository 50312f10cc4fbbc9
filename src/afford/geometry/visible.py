"""Visible surface points of views: pixel -> dense-cloud matching, multi-view correspondences.

REFERENCE_NOTES C/D: every pixel's back-projected depth point matched to the nearest point of
a dense surface point cloud (within ``NN_TOL``) gives pixel -> surface-point index maps; a
surface point seen by view i corresponds to a pixel of view j when it projects onto an object
pixel of view j at the depth that view sees (spatial loss, Eq. 2).  Cameras are OpenCV
(:mod:`afford.geometry.camera`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from afford.geometry.camera import project

__all__ = [
    "NN_TOL",
    "match_to_cloud",
    "visible_cloud_points",
    "multiview_correspondences",
    "pair_correspondences",
    "neighbour_view_pairs",
    "stratified_subsample",
]

NN_TOL = 0.01  # nearest-neighbour tolerance (object units, max |coord| = 0.5): REFERENCE_NOTES C


def match_to_cloud(
    pixel_points: np.ndarray, cloud: np.ndarray, tol: float = NN_TOL, tree=None
) -> np.ndarray:
    """Nearest dense-cloud point of every back-projected pixel point (REFERENCE_NOTES C).

    Args:
        pixel_points: (..., 3) surface points (nan = background).
        cloud: (P, 3) dense surface samples.
        tol: maximum NN distance for a match.
        tree: optional prebuilt ``scipy.spatial.cKDTree(cloud)``.

    Returns:
        (...) int64 cloud index, -1 where background or no cloud point within ``tol``.
    """
    pts = np.asarray(pixel_points)
    flat = pts.reshape(-1, 3)
    out = np.full(flat.shape[0], -1, dtype=np.int64)
    ok = np.isfinite(flat).all(axis=1)
    if ok.any():
        tree = tree if tree is not None else cKDTree(np.asarray(cloud, dtype=np.float64))
        dist, idx = tree.query(flat[ok].astype(np.float64), k=1, distance_upper_bound=tol)
        idx = np.where(np.isfinite(dist), idx, -1)
        out[ok] = idx
    return out.reshape(pts.shape[:-1])


def visible_cloud_points(cloud_index: np.ndarray, n_points: int) -> np.ndarray:
    """Which dense-cloud points each view sees: matched by at least one of its pixels.

    Args:
        cloud_index: (V, H, W) ``match_to_cloud`` indices (-1 = none).
        n_points: P, the size of the cloud.

    Returns:
        (V, P) bool visibility.
    """
    idx = np.asarray(cloud_index)
    n_views = idx.shape[0]
    visible = np.zeros((n_views, n_points), dtype=bool)
    vv, flat = np.nonzero(idx.reshape(n_views, -1) >= 0)
    visible[vv, idx.reshape(n_views, -1)[vv, flat]] = True
    return visible


def multiview_correspondences(
    points_i: np.ndarray,
    K_j: np.ndarray,
    R_j: np.ndarray,
    t_j: np.ndarray,
    depth_j: np.ndarray,
    mask_j: np.ndarray,
    rel_tol: float = 0.01,
    valid_i: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel correspondences from view i to view j of the same asset (spatial loss, Eq. 2).

    The surface point of every object pixel of view i is projected into view j; it corresponds
    when its nearest pixel in view j is an object pixel that sees a surface at the point's
    camera depth ``z`` (``|depth_j - z| <= rel_tol * z``), i.e. the point is visible there and
    not hidden behind another surface.  Conservative: points on grazing surfaces, whose depth
    changes quickly from pixel to pixel, may be rejected; points behind an occluder always are.

    Args:
        points_i: (H, W, 3) surface points of view i (nan = background).
        K_j, R_j, t_j: camera of view j; depth_j: (H', W') z-depth; mask_j: (H', W') bool.
        valid_i: optional (H, W) bool, the pixels of view i with a surface point (default:
            finite ``points_i``; pass it to save the check when pairing one view many times).

    Returns:
        src: (M, 2) int64 ``(row, col)`` pixels of view i (row-major order);
        dst: (M, 2) float64 exact projections in view j.
    """
    pts = np.asarray(points_i)
    valid = np.isfinite(pts).all(axis=-1) if valid_i is None else np.asarray(valid_i, dtype=bool)
    src = np.argwhere(valid)
    if src.shape[0] == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.float64)
    rc, z = project(pts[valid], K_j, R_j, t_j)
    depth_j = np.asarray(depth_j, dtype=np.float64)
    h, w = depth_j.shape
    with np.errstate(invalid="ignore"):
        near = np.floor(rc + 0.5)
        inside = (z > 0) & (near[:, 0] >= 0) & (near[:, 0] < h) & (near[:, 1] >= 0)
        inside &= near[:, 1] < w
    near = np.where(inside[:, None], near, 0).astype(np.int64)
    ok = inside & np.asarray(mask_j, dtype=bool)[near[:, 0], near[:, 1]]
    with np.errstate(invalid="ignore"):
        ok &= np.abs(depth_j[near[:, 0], near[:, 1]] - z) <= rel_tol * z
    return src[ok], rc[ok]


def stratified_subsample(inside: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` items: up to n/2 with ``inside`` True, the rest from the others
    (topped up from either group when one is short)."""
    ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
    k_in = min(len(ins), max(n // 2, n - len(outs)))
    k_out = min(len(outs), n - k_in)
    pick = np.concatenate(
        [rng.choice(ins, k_in, replace=False), rng.choice(outs, k_out, replace=False)]
    )
    return np.sort(pick)


def neighbour_view_pairs(centres: np.ndarray, k: int) -> np.ndarray:
    """(P, 2) ordered view pairs: each view with its k nearest views by camera direction."""
    d = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    ang = np.arccos(np.clip(d @ d.T, -1, 1))
    np.fill_diagonal(ang, np.inf)
    k = min(k, len(centres) - 1)
    near = np.argsort(ang, axis=1, kind="stable")[:, :k]
    return np.stack([np.repeat(np.arange(len(centres)), k), near.ravel()], 1).astype(np.int32)


def pair_correspondences(
    pairs: np.ndarray,
    points: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray,
    budget: int,
    pick: Callable[[int, int, np.ndarray], np.ndarray],
    *,
    candidates: Callable[[int, int], np.ndarray | None] | None = None,
    part_id: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multi-view correspondences of an asset's view pairs, at most ``budget`` per pair (Eq. 2).

    For pair ``p = (i, j)``: :func:`multiview_correspondences` from view i to view j (on the
    pixels ``candidates(p, i)`` when given, else every finite point); when more than
    ``budget`` are found, ``pick(p, i, src)`` returns the indices kept.

    Args:
        pairs: (P, 2) view pairs (:func:`neighbour_view_pairs`).
        points: (V, H, W, 3) surface points; K, R, t: (V, ...) cameras; depth: (V, H, W);
            mask: (V, H, W) bool.
        part_id: optional (V, H, W) part ids of the pixels (default: -1 for every match).

    Returns:
        src, dst: (M, 2) float32 ``(row, col)`` of view i / exact projections in view j,
        the pairs one after another; offsets: (P + 1,) int64, pair p is
        ``offsets[p]:offsets[p + 1]``; part: (M,) int16 part id of every src pixel.
    """
    srcs, dsts, offsets = [], [], [0]
    for p, (i, j) in enumerate(pairs):
        valid_i = None if candidates is None else candidates(p, i)
        src, dst = multiview_correspondences(
            points[i], K[j], R[j], t[j], depth[j], mask[j], valid_i=valid_i
        )
        if len(src) > budget:
            keep = pick(p, i, src)
            src, dst = src[keep], dst[keep]
        srcs.append(src)
        dsts.append(dst)
        offsets.append(offsets[-1] + len(src))
    src = np.concatenate(srcs).astype(np.float32) if srcs else np.zeros((0, 2), np.float32)
    dst = np.concatenate(dsts).astype(np.float32) if dsts else np.zeros((0, 2), np.float32)
    offsets = np.asarray(offsets, np.int64)
    if part_id is not None and len(src):
        src_view = np.asarray(pairs)[:, 0].repeat(np.diff(offsets))
        part = part_id[src_view, src[:, 0].astype(int), src[:, 1].astype(int)].astype(np.int16)
    else:
        part = np.full(len(src), -1, np.int16)
    return src, dst, offsets, part

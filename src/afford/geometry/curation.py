"""Evaluation GT curation for dense functional correspondence by 3-D functional alignment.

Paper Sec. 3.1-3.2 (and its supplement, REFERENCE_NOTES C "Evaluation GT curation"): two
assets supporting the same function are aligned so that their functional parts coincide;
for an image pair, the visible functional-part pixels are lifted to 3-D surface points and
matched by minimum-cost (Hungarian) assignment on their 3-D distance after alignment, which
realises the definition ``f = argmin sum_p ||pi^-1(p) - pi^-1(f(p))||`` of Sec. 3.1.

Everything here works on generic inputs (depth maps, cameras, dense surface point clouds with
part labels, 4x4 transforms), so real assets (Objaverse, HANDAL) use the same code as the
synthetic world.  Cameras are OpenCV: ``x_cam = R x_obj + t``; pixel points are ``(row, col)``
with pixel centres on integers (docs/correspondence-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from afford.errors import AffordError
from afford.geometry.camera import transform_points
from afford.geometry.visible import NN_TOL, match_to_cloud

__all__ = [
    "MAX_POINTS",
    "alignment_transform",
    "farthest_point_sampling",
    "hungarian_match",
    "part_pixels",
    "score_target_views",
    "CuratedPair",
    "curate_pair",
]

MAX_POINTS = 10000  # n = min(10000, n1, n2): REFERENCE_NOTES C


# ---------------------------------------------------------------------------------------------
# alignment


def alignment_transform(frame_source: np.ndarray, frame_target: np.ndarray) -> np.ndarray:
    """Target-object -> source-object transform that makes the two functional frames coincide.

    Args:
        frame_source, frame_target: (4, 4) object-from-functional-frame transforms of the
            functional parts (origin + axes).

    Returns:
        (4, 4) ``T = F_source @ F_target^-1``: a target point ``x`` maps to ``T x`` in the source
        object frame, where the functional parts overlap (Sec. 3.1 alignment).
    """
    fs = np.asarray(frame_source, dtype=np.float64)
    ft = np.asarray(frame_target, dtype=np.float64)
    if fs.shape != (4, 4) or ft.shape != (4, 4):
        raise AffordError("alignment_transform: functional frames must be 4x4 matrices")
    return fs @ np.linalg.inv(ft)


# ---------------------------------------------------------------------------------------------
# sampling and matching


def farthest_point_sampling(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Farthest point sampling: ``n`` indices, each the point farthest from those chosen so far.

    Args:
        points: (N, d) coordinates (here 2-D pixel coordinates).
        n: number of samples (clipped to N).
        start: index of the first sample.

    Returns:
        (n,) int64 indices (distinct; the first is ``start``).
    """
    pts = np.asarray(points, dtype=np.float64)
    count = pts.shape[0]
    n = int(min(n, count))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if not 0 <= start < count:
        raise AffordError(f"farthest_point_sampling: start {start} outside [0, {count})")
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = start
    dist = ((pts - pts[start]) ** 2).sum(axis=1)
    for k in range(1, n):
        nxt = int(np.argmax(dist))
        chosen[k] = nxt
        dist = np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(axis=1))
    return chosen


def hungarian_match(xyz1: np.ndarray, xyz2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment on 3-D Euclidean distance (``scipy.optimize.linear_sum_assignment``).

    Args:
        xyz1: (n1, 3), xyz2: (n2, 3) points in one (aligned) frame.

    Returns:
        (i1, i2): (min(n1, n2),) int64 index arrays; ``xyz1[i1[k]] <-> xyz2[i2[k]]`` minimise
        ``sum_k ||xyz1[i1[k]] - xyz2[i2[k]]||``.
    """
    cost = cdist(np.asarray(xyz1, np.float64), np.asarray(xyz2, np.float64))
    i1, i2 = linear_sum_assignment(cost)
    return i1.astype(np.int64), i2.astype(np.int64)


def part_pixels(
    crop_points: np.ndarray, cloud_index: np.ndarray, cloud_part: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible functional-part points of one view, one per crop pixel.

    Args:
        crop_points: (S, S, 3) surface point of every crop pixel (nan = background).
        cloud_index: (S, S) matched dense-cloud index (``match_to_cloud``), -1 = none.
        cloud_part: (P,) bool, the cloud points on the functional part (from part labels or
            an annotated 3-D box).

    Returns:
        rc: (m, 2) int64 crop pixels (row-major), xyz: (m, 3) their surface points,
        idx: (m,) their cloud indices.
    """
    idx = np.asarray(cloud_index)
    on = idx >= 0
    on[on] = np.asarray(cloud_part, dtype=bool)[idx[on]]
    rc = np.argwhere(on)
    return rc, np.asarray(crop_points)[on].astype(np.float64), idx[on]


def score_target_views(
    source_xyz: np.ndarray, target_xyz_aligned: list[np.ndarray], radius: float = 0.05
) -> np.ndarray:
    """Score candidate target views by overlap with the aligned part and part visibility.

    ``score_v = overlap_v + visibility_v`` with ``overlap_v`` the fraction of the source view's
    visible part points that have an aligned visible target part point of view v within
    ``radius`` and ``visibility_v = n_v / max_u n_u`` (REFERENCE_NOTES C, target view choice).

    Args:
        source_xyz: (m, 3) visible part points of the source view (source frame).
        target_xyz_aligned: per target view, (n_v, 3) visible part points mapped into the
            source frame.

    Returns:
        (V,) float64 scores (0 for views without visible part points).
    """
    counts = np.array([len(x) for x in target_xyz_aligned], dtype=np.float64)
    scores = np.zeros(len(target_xyz_aligned), dtype=np.float64)
    if counts.max(initial=0) == 0 or len(source_xyz) == 0:
        return scores
    for v, pts in enumerate(target_xyz_aligned):
        if len(pts) == 0:
            continue
        dist, _ = cKDTree(pts).query(source_xyz, k=1)
        scores[v] = float((dist <= radius).mean()) + counts[v] / counts.max()
    return scores


@dataclass
class CuratedPair:
    """Dense GT correspondences of one image pair.

    ``points1[i] <-> points2[i]`` are ``(row, col)`` crop pixels; ``xyz1``/``xyz2`` their
    surface points in the source frame (target points aligned by ``T``).
    """

    source_view: int
    target_view: int
    points1: np.ndarray  # (n, 2) int32
    points2: np.ndarray  # (n, 2) int32
    xyz1: np.ndarray  # (n, 3) float32
    xyz2: np.ndarray  # (n, 3) float32, aligned into the source frame
    T: np.ndarray  # (4, 4) target -> source


def curate_pair(
    source_points: np.ndarray,
    source_cloud: np.ndarray,
    source_part: np.ndarray,
    source_frame: np.ndarray,
    target_points: np.ndarray,
    target_cloud: np.ndarray,
    target_part: np.ndarray,
    target_frame: np.ndarray,
    *,
    source_view: int | None = None,
    target_view: int | None = None,
    source_rank: int = 0,
    source_index: np.ndarray | None = None,
    target_index: np.ndarray | None = None,
    source_pixel_part: np.ndarray | None = None,
    target_pixel_part: np.ndarray | None = None,
    max_points: int = MAX_POINTS,
    tol: float = NN_TOL,
    overlap_radius: float = 0.05,
    min_points: int = 1,
) -> CuratedPair | None:
    """Dense GT correspondences between a source and a target asset for one function.

    Steps (REFERENCE_NOTES C): align by functional frames; per view, visible surface points =
    crop-pixel points matched to the dense cloud (NN within ``tol``); source view = the view
    with most visible part points (unless given; ``source_rank`` k > 0 takes the view ranked k,
    to draw several image pairs from one asset pair); target view = best ``score_target_views``
    (unless given); visible part pixels of both crops subsampled to
    ``n = min(max_points, n1, n2)`` by 2-D farthest point sampling; Hungarian matching on the
    3-D distance of the aligned points gives the GT pixel pairs.

    Args:
        source_points: (Vs, S, S, 3) surface point of every crop pixel of each source view
            (nan = background); target_points: (Vt, S, S, 3) likewise.
        source_cloud: (P1, 3), target_cloud: (P2, 3) dense surface samples (object frames).
        source_part: (P1,) bool, target_part: (P2,) bool functional-part membership.
        source_frame, target_frame: (4, 4) object-from-functional-frame transforms.
        source_index, target_index: optional precomputed (V, S, S) ``match_to_cloud`` indices
            of the view points (reuse them across the pairs of one asset).
        source_pixel_part, target_pixel_part: optional (V, S, S) bool per-pixel part masks
            (e.g. rendered part ids); when given, part pixels must also lie in them, so
            pixels whose nearest cloud point crosses a part boundary are excluded.

    Returns:
        a ``CuratedPair``, or None when either side has fewer than ``min_points`` visible
        part pixels.
    """
    src_pts = np.asarray(source_points)
    tgt_pts = np.asarray(target_points)
    if src_pts.ndim != 4 or tgt_pts.ndim != 4 or src_pts.shape[-1] != 3:
        raise AffordError("curate_pair: view points must be (V, S, S, 3) arrays")
    T = alignment_transform(source_frame, target_frame)
    src_tree = cKDTree(np.asarray(source_cloud, np.float64)) if source_index is None else None
    tgt_tree = cKDTree(np.asarray(target_cloud, np.float64)) if target_index is None else None

    def visible_parts(points, tree, part, views, index, pixel_part):
        out = {}
        for v in views:
            idx = match_to_cloud(points[v], None, tol, tree=tree) if index is None else index[v]
            if pixel_part is not None:
                idx = np.where(pixel_part[v], idx, -1)
            out[v] = part_pixels(points[v], idx, part)
        return out

    src_views = range(src_pts.shape[0]) if source_view is None else [source_view]
    src_vis = visible_parts(
        src_pts, src_tree, source_part, src_views, source_index, source_pixel_part
    )
    if source_view is None:
        counts = np.array([len(src_vis[v][0]) for v in src_views])
        order = np.argsort(-counts, kind="stable")
        source_view = int(order[min(int(source_rank), len(order) - 1)])
    rc1, xyz1, _ = src_vis[source_view]
    if len(rc1) < min_points:
        return None

    tgt_views = range(tgt_pts.shape[0]) if target_view is None else [target_view]
    tgt_vis = visible_parts(
        tgt_pts, tgt_tree, target_part, tgt_views, target_index, target_pixel_part
    )
    if target_view is None:
        aligned = [transform_points(T, tgt_vis[v][1]) for v in tgt_views]
        scores = score_target_views(xyz1, aligned, overlap_radius)
        target_view = int(np.argmax(scores))
    rc2, xyz2, _ = tgt_vis[target_view]
    if len(rc2) < min_points:
        return None
    xyz2 = transform_points(T, xyz2)

    n = min(max_points, len(rc1), len(rc2))
    s1 = farthest_point_sampling(rc1, n)
    s2 = farthest_point_sampling(rc2, n)
    i1, i2 = hungarian_match(xyz1[s1], xyz2[s2])
    a, b = s1[i1], s2[i2]
    return CuratedPair(
        source_view=int(source_view),
        target_view=int(target_view),
        points1=rc1[a].astype(np.int32),
        points2=rc2[b].astype(np.int32),
        xyz1=xyz1[a].astype(np.float32),
        xyz2=xyz2[b].astype(np.float32),
        T=T,
    )

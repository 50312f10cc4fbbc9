"""Functional-part pseudo-labels from noisy 2-D boxes, aggregated in 3-D (paper Sec. 4.1).

Pipeline (REFERENCE_NOTES C, "Pseudo-labelling"):

1. A grounding labeler (a VLM such as CogVLM, or the synthetic world's simulated labeler)
   returns S box samples per view for a (category, function, part prompt) query.
2. Per view, the valid boxes are clustered (IoU graph) and the largest cluster's mean box
   is kept; views with <= 2 valid boxes are skipped (they cast no votes).
3. Every visible point of a dense surface point cloud collects one vote per kept box that
   contains its projection.
4. Per view, every object pixel takes the vote count of its surface point (nearest cloud
   point); the heat is min-max normalised, Gaussian-blurred, thresholded by Otsu (fixed
   fallback threshold), closed morphologically and multiplied by the object mask; masks
   smaller than 32 px at 224 x 224 are dropped (``valid = False``).

All inputs are generic arrays (cameras, depth-derived surface points, masks), so real VLM
boxes on real renders go through the same code.  Boxes are ``[x0, y0, x1, y1]`` with x = col,
y = row, pixel centres on integers (docs/correspondence-format.md).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from afford.errors import AffordError
from afford.geometry.camera import project
from afford.geometry.visible import NN_TOL, match_to_cloud, visible_cloud_points

__all__ = [
    "PartQuery",
    "BoxLabeler",
    "PseudoLabelConfig",
    "PseudoLabels",
    "valid_boxes",
    "box_iou",
    "cluster_boxes",
    "points_in_boxes",
    "vote",
    "otsu_threshold",
    "heat_to_mask",
    "pseudo_label_masks",
    "SIMULATED_DEFAULTS",
    "SimulatedBoxLabeler",
    "keyed_rng",
]


@dataclass(frozen=True)
class PartQuery:
    """What to ask the labeler: a functional part of an object category."""

    category: str
    function: str
    part: str  # the part prompt (name and/or appearance description), e.g. "spout"


@runtime_checkable
class BoxLabeler(Protocol):
    """Anything that proposes boxes for a functional part in a view image.

    ``__call__(image, query, view)`` gets a uint8 (H, W, 3) view image, a ``PartQuery`` and the
    view index, and returns a (S, 4) float array of ``[x0, y0, x1, y1]`` box samples in that
    image's pixels; a row of nan is a sample with no box (the labeler found nothing).
    """

    def __call__(self, image: np.ndarray, query: PartQuery, view: int) -> np.ndarray: ...


@dataclass
class PseudoLabelConfig:
    """Parameters of the pseudo-labelling procedure (sizes refer to a 224 x 224 crop)."""

    min_boxes: int = 3  # views with <= 2 valid boxes are skipped
    cluster_iou: float = 0.5  # boxes with IoU >= this are linked in one cluster
    nn_tol: float = NN_TOL  # pixel point -> dense cloud matching tolerance (object units)
    blur_sigma: float = 2.0  # Gaussian blur of the normalised heat, px at 224
    otsu_bins: int = 256
    fallback_threshold: float = 0.5  # used when Otsu is undefined (constant heat)
    close_kernel: int = 5  # elliptical structuring element side, px at 224
    min_area: int = 32  # px at 224
    ref_size: int = 224


@dataclass
class PseudoLabels:
    """Result of ``pseudo_label_masks`` for one asset and one query."""

    mask: np.ndarray  # (V, H, W) bool functional-part masks (all False where not valid)
    valid: np.ndarray  # (V,) bool, mask usable for training
    voted: np.ndarray  # (V,) bool, the view had > 2 valid boxes and cast votes
    kept_boxes: np.ndarray  # (V, 4) float, cluster mean box (nan if skipped)
    votes: np.ndarray  # (P,) int32 votes per cloud point
    heat: np.ndarray  # (V, H, W) float32 min-max normalised vote heat (before blur)
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (V,) used thresholds


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) boxes -> (...) bool: finite with positive width and height."""
    b = np.asarray(boxes, dtype=np.float64)
    finite = np.isfinite(b).all(axis=-1)
    with np.errstate(invalid="ignore"):
        return finite & (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) ``[x0, y0, x1, y1]`` boxes -> (N, M)."""
    a = np.asarray(a, dtype=np.float64)[:, None, :]
    b = np.asarray(b, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def cluster_boxes(boxes: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray | None:
    """Keep the mean box of the largest cluster of box samples.

    Clusters are the connected components of the graph linking valid boxes with
    IoU >= ``iou_threshold``; ties go to the cluster holding the earliest sample.

    Args:
        boxes: (S, 4) samples, nan rows = no box.

    Returns:
        (4,) float64 mean box of the largest cluster, or None without any valid box.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = b[valid_boxes(b)]
    if len(b) == 0:
        return None
    _, labels = connected_components(box_iou(b, b) >= iou_threshold, directed=False)
    sizes = np.bincount(labels)
    best = np.flatnonzero(sizes == sizes.max())
    # earliest sample among the largest clusters
    first = min(best, key=lambda c: int(np.flatnonzero(labels == c)[0]))
    return b[labels == first].mean(axis=0)


def points_in_boxes(rc: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(V, P, 2) ``(row, col)`` points and (V, 4) boxes -> (V, P) bool containment.

    A nan box contains nothing.
    """
    rc = np.asarray(rc, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64)[:, None, :]
    with np.errstate(invalid="ignore"):
        return (
            (rc[..., 1] >= b[..., 0])
            & (rc[..., 1] <= b[..., 2])
            & (rc[..., 0] >= b[..., 1])
            & (rc[..., 0] <= b[..., 3])
        )


def vote(
    cloud: np.ndarray,
    visible: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    boxes: np.ndarray,
) -> np.ndarray:
    """3-D voting: each cloud point gets one vote per view whose box contains its projection.

    Args:
        cloud: (P, 3) dense surface points; visible: (V, P) bool visibility per view.
        K, R: (V, 3, 3); t: (V, 3) cameras; boxes: (V, 4) kept boxes (nan = view skipped).

    Returns:
        (P,) int32 vote counts.
    """
    cloud = np.asarray(cloud, dtype=np.float64)
    rc = np.stack([project(cloud, K[v], R[v], t[v])[0] for v in range(len(K))])  # (V,P,2)
    hit = points_in_boxes(rc, boxes) & np.asarray(visible, dtype=bool)
    return hit.sum(axis=0).astype(np.int32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float | None:
    """Otsu's threshold of values in [0, 1] (maximises the between-class variance).

    Returns the threshold ``t`` (a value is foreground when ``> t``), or None when undefined
    (fewer than two distinct histogram bins are occupied).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return None
    hist, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    if np.count_nonzero(hist) < 2:
        return None
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist).astype(np.float64)  # class "<= t" sizes for t = bin k upper edge
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    k = int(np.argmax(between))
    return float(edges[k + 1])


def heat_to_mask(
    heat: np.ndarray, object_mask: np.ndarray, scale: float, cfg: PseudoLabelConfig
) -> tuple[np.ndarray, float]:
    """Blur, Otsu (fixed fallback), closing, object-mask product for one view.

    Args:
        heat: (H, W) min-max normalised vote heat in [0, 1].
        object_mask: (H, W) bool.
        scale: view pixels per 224-crop pixel (sizes in ``cfg`` are at 224).

    Returns:
        (H, W) bool mask and the threshold used.
    """
    heat = np.asarray(heat, dtype=np.float32)
    obj = np.asarray(object_mask, dtype=bool)
    sigma = max(cfg.blur_sigma * scale, 1e-3)
    blurred = cv2.GaussianBlur(heat, (0, 0), sigmaX=sigma, sigmaY=sigma)
    thr = otsu_threshold(blurred[obj], cfg.otsu_bins) if obj.any() else None
    if thr is None:
        thr = cfg.fallback_threshold
    binary = (blurred > thr).astype(np.uint8)
    k = max(1, int(round(cfg.close_kernel * scale)))
    if k > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        binary = cv2.morphologyEx(
            binary, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
        )
    return binary.astype(bool) & obj, float(thr)


def pseudo_label_masks(
    cloud: np.ndarray,
    view_points: np.ndarray,
    object_masks: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    boxes: np.ndarray,
    crop_sizes: np.ndarray | None = None,
    cfg: PseudoLabelConfig | None = None,
    cloud_index: np.ndarray | None = None,
) -> PseudoLabels:
    """Functional-part masks for all views of one asset from S box samples per view.

    Args:
        cloud: (P, 3) dense surface samples of the asset (object frame).
        view_points: (V, H, W, 3) per-pixel surface points (``afford.geometry.camera.backproject``; nan =
            background).
        object_masks: (V, H, W) bool.
        K, R: (V, 3, 3); t: (V, 3) OpenCV cameras.
        boxes: (V, S, 4) labeler samples ``[x0, y0, x1, y1]`` (nan rows = no box).
        crop_sizes: (V,) side of each view's square training crop in view pixels (sets the
            224-pixel scale of blur, closing and the minimum area); default ``max(H, W)``.
        cfg: procedure parameters.
        cloud_index: optional precomputed (V, H, W) ``match_to_cloud(view_points, cloud)``
            (share it between the functions of one asset).

    Returns:
        ``PseudoLabels``.
    """
    cfg = cfg or PseudoLabelConfig()
    pts = np.asarray(view_points)
    masks = np.asarray(object_masks, dtype=bool)
    boxes = np.asarray(boxes, dtype=np.float64)
    if pts.ndim != 4 or pts.shape[-1] != 3 or masks.shape != pts.shape[:3]:
        raise AffordError(
            f"pseudo_label_masks: view_points must be (V,H,W,3) and masks (V,H,W); got "
            f"{pts.shape} and {masks.shape}"
        )
    n_views, h, w = masks.shape
    if boxes.ndim != 3 or boxes.shape[0] != n_views or boxes.shape[2] != 4:
        raise AffordError(f"pseudo_label_masks: boxes must be (V={n_views},S,4), got {boxes.shape}")
    cloud = np.asarray(cloud, dtype=np.float64)
    crop_sizes = (
        np.full(n_views, max(h, w), dtype=np.float64)
        if crop_sizes is None
        else np.asarray(crop_sizes, dtype=np.float64)
    )

    # 2. per-view box clustering; views with too few valid samples are skipped
    n_valid = valid_boxes(boxes).sum(axis=1)
    voted = n_valid >= cfg.min_boxes
    kept = np.full((n_views, 4), np.nan)
    for v in np.flatnonzero(voted):
        kept[v] = cluster_boxes(boxes[v], cfg.cluster_iou)

    # 3. visibility of cloud points (matched by some pixel of the view) and voting
    if cloud_index is None:
        idx = match_to_cloud(pts, None, cfg.nn_tol, tree=cKDTree(cloud))  # (V,H,W)
    else:
        idx = np.asarray(cloud_index)
        if idx.shape != masks.shape:
            raise AffordError(
                f"pseudo_label_masks: cloud_index must be {masks.shape}, got {idx.shape}"
            )
    idx = np.where(masks, idx, -1)
    votes = vote(cloud, visible_cloud_points(idx, len(cloud)), K, R, t, kept)

    # 4. per-view heat -> mask
    heat = np.where(idx >= 0, votes[np.maximum(idx, 0)], 0).astype(np.float32)
    out = np.zeros_like(masks)
    valid = np.zeros(n_views, dtype=bool)
    thresholds = np.full(n_views, np.nan)
    norm = np.zeros_like(heat)
    for v in range(n_views):
        obj = masks[v] & (idx[v] >= 0)
        if not obj.any():
            continue
        lo, hi = heat[v][obj].min(), heat[v][obj].max()
        if hi <= lo:  # no vote contrast (e.g. no votes at all): no label for this view
            continue
        norm[v] = np.where(obj, (heat[v] - lo) / (hi - lo), 0.0)
        scale = crop_sizes[v] / cfg.ref_size
        m, thresholds[v] = heat_to_mask(norm[v], masks[v], scale, cfg)
        area_224 = m.sum() / scale**2
        if area_224 >= cfg.min_area:
            out[v] = m
            valid[v] = True
    return PseudoLabels(
        mask=out,
        valid=valid,
        voted=voted,
        kept_boxes=kept,
        votes=votes,
        heat=norm,
        thresholds=thresholds,
    )


# ---------------------------------------------------------------------------------------------
# simulated labeler (the synthetic world's VLM stand-in; also ``--labeler simulated``)

#: default noise of ``SimulatedBoxLabeler`` (the synthetic writer's ``CorrSynthConfig.labeler``)
SIMULATED_DEFAULTS: dict[str, float] = {
    "p_miss": 0.12,
    "p_wrong": 0.08,
    "jitter": 0.08,
    "small_part_px": 40.0,
    "p_miss_small": 0.6,
}


def keyed_rng(*keys: int | str) -> np.random.Generator:
    """Generator for a tuple of keys (strings hashed with crc32): process independent."""
    return np.random.default_rng(
        [k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys]
    )


class SimulatedBoxLabeler:
    """A ``BoxLabeler`` that imitates a grounding VLM from rendered part ids.

    Per sample: with probability ``p_miss`` (``p_miss_small`` when the part shows fewer than
    ``small_part_px`` pixels at 224, and mostly when it is invisible) no box; with probability
    ``p_wrong`` the box of another part (or a random box on the object); otherwise the true
    box of the visible part pixels with Gaussian jitter of ``jitter`` x its side.

    Args:
        part_id: (V, H, W) int part index per pixel (-1 background).
        parts: part names (index order); function_parts: function -> part names.
        seed: asset seed (each (view, function) draws from its own generator).
        options: the probabilities above (missing keys: ``SIMULATED_DEFAULTS``).
    """

    def __init__(
        self,
        part_id: np.ndarray,
        parts: list[str],
        function_parts: dict[str, list[str]],
        seed: int,
        options: dict[str, float] | None = None,
    ):
        self.part_id = np.asarray(part_id)
        if self.part_id.ndim != 3:
            raise AffordError(
                f"SimulatedBoxLabeler: part_id must be (V, H, W), got {self.part_id.shape}"
            )
        self.parts = list(parts)
        self.function_parts = function_parts
        self.seed = int(seed)
        self.opt = {**SIMULATED_DEFAULTS, **dict(options or {})}

    @staticmethod
    def _box(sel: np.ndarray) -> np.ndarray | None:
        rows = np.flatnonzero(sel.any(axis=1))
        cols = np.flatnonzero(sel.any(axis=0))
        if rows.size == 0:
            return None
        return np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5])

    def __call__(self, image: np.ndarray | None, query: PartQuery, view: int, samples: int = 4):
        if query.function not in self.function_parts:
            raise AffordError(
                f"SimulatedBoxLabeler: no parts for function {query.function!r}; "
                f"known: {sorted(self.function_parts)}"
            )
        return self.sample(view, self.function_parts[query.function], query.function, samples)

    def sample(self, view: int, target_parts: list[str], key: str, samples: int = 4) -> np.ndarray:
        """(samples, 4) noisy boxes of ``target_parts`` in ``view`` (generator keyed by ``key``)."""
        if not 0 <= int(view) < len(self.part_id):
            raise AffordError(f"SimulatedBoxLabeler: view {view} outside [0, {len(self.part_id)})")
        unknown = [n for n in target_parts if n not in self.parts]
        if unknown:
            raise AffordError(f"SimulatedBoxLabeler: unknown parts {unknown}; parts: {self.parts}")
        pid = self.part_id[view]
        h, w = pid.shape
        target = [self.parts.index(n) for n in target_parts]
        sel = np.isin(pid, target)
        scale224 = 224.0 / max(h, w)
        true_box = self._box(sel)
        area = sel.sum() * scale224**2
        rng = keyed_rng(self.seed, int(view), key, "labeler")
        others = [k for k in range(len(self.parts)) if k not in target and (pid == k).any()]
        out = np.full((samples, 4), np.nan)
        p_miss = (
            self.opt["p_miss"] if area >= self.opt["small_part_px"] else self.opt["p_miss_small"]
        )
        if true_box is None:
            p_miss = 0.8
        for s in range(samples):
            u = rng.uniform()
            if u < p_miss:
                continue
            if true_box is None or u < p_miss + self.opt["p_wrong"]:
                if others and rng.uniform() < 0.7:
                    box = self._box(pid == others[int(rng.integers(len(others)))])
                else:
                    obj = self._box(pid >= 0)
                    if obj is None:
                        continue
                    c = rng.uniform(obj[:2], obj[2:])
                    half = rng.uniform(0.1, 0.3, 2) * (obj[2:] - obj[:2])
                    box = np.concatenate([c - half, c + half])
            else:
                side = true_box[2:] - true_box[:2]
                box = true_box + rng.normal(0, self.opt["jitter"], 4) * np.tile(side, 2)
            out[s] = box
        return out

"""Dense functional correspondence metrics: label transfer and discovery (REFERENCE_NOTES C).

Points are (N,2) arrays of (row, col) pixels at 224x224.

Label transfer (paper Sec. 5.1): each GT source point was mapped by the model to a predicted
target point; the error is the Euclidean distance to the GT target point.
``norm_dist = mean(error) / 223`` and ``pck@k = mean(error <= k)``, k in {23, 15, 10}.

Discovery (paper Sec. 5.1): the model proposes M pairs (p, q), ranked best first. For
t = 1 %, ..., 100 % the top ``int(M * t)`` pairs are "discovered" (steps with zero pairs are
skipped). A pair is correct if ONE GT index i has ``||p - gt_src_i|| <= k`` and
``||q - gt_tgt_i|| <= k``. ``Precision_t = correct / top_k``, ``Recall_t`` = fraction of GT
pairs matched by at least one discovered pair, ``Best F1 = max_t 2PR / (P + R)`` and
``AP = sum_t (R_t - R_{t-1}) P_t`` with (R = 0, P = 1) prepended; k in {23, 15, 10, 5}.

Implementation: the candidate (prediction, GT) pairs are enumerated once with a 4-D k-d tree
on (p, q) and (gt_src, gt_tgt) under the Chebyshev norm (a box of half-width max(k); both
2-D conditions imply it), in chunks of predictions so memory stays bounded; the exact 2-D
distances are checked per k. Correctness of every prediction and the first rank at which
every GT pair is matched then give the whole t-sweep with two cumulative sums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from afford.errors import AffordError

LABEL_TRANSFER_THRESHOLDS = (23, 15, 10)
DISCOVERY_KS = (23, 15, 10, 5)
NORM = 223.0


def _fmt(k: float) -> str:
    """Key suffix for a threshold: 23 -> "23", 7.5 -> "7.5"."""
    k = float(k)
    return str(int(k)) if k.is_integer() else repr(k)


def _check_points(x: Any, name: str, fn: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise AffordError(f"{fn}: `{name}` must be an (N,2) array of (row, col), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise AffordError(f"{fn}: `{name}` must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise AffordError(f"{fn}: `{name}` contains NaN or inf values")
    return arr


def _check_thresholds(ks: Sequence[float], name: str, fn: str) -> tuple[float, ...]:
    ks = tuple(float(k) for k in ks)
    if len(ks) == 0 or any(not math.isfinite(k) or k < 0 for k in ks):
        raise AffordError(f"{fn}: `{name}` must be non-empty, finite and >= 0, got {ks}")
    if len({_fmt(k) for k in ks}) != len(ks):
        raise AffordError(f"{fn}: `{name}` has duplicates: {ks}")
    return ks


def label_transfer(
    pred_tgt: Any,
    gt_tgt: Any,
    thresholds: Sequence[float] = LABEL_TRANSFER_THRESHOLDS,
    norm: float = NORM,
    inclusive: bool = True,
) -> dict[str, float]:
    """Normalised distance and PCK of transferred points (one pair, one direction).

    Args:
        pred_tgt: (N,2) predicted target points (row, col), one per GT source point.
        gt_tgt: (N,2) GT target points (row, col).
        thresholds: PCK thresholds in pixels.
        norm: pixel-error normaliser (223 = 224 - 1 in the released code).
        inclusive: ``error <= k`` counts as correct (released code, default); ``False`` uses
            the paper's ``error < k``.

    Returns:
        ``{"norm_dist": float, "pck@23": float, "pck@15": float, "pck@10": float}``.
    """
    fn = "label_transfer"
    pred = _check_points(pred_tgt, "pred_tgt", fn)
    gt = _check_points(gt_tgt, "gt_tgt", fn)
    if pred.shape != gt.shape:
        raise AffordError(f"{fn}: `pred_tgt` {pred.shape} and `gt_tgt` {gt.shape} differ in shape")
    if pred.shape[0] == 0:
        raise AffordError(f"{fn}: no ground-truth points (empty `gt_tgt`)")
    if not (math.isfinite(norm) and norm > 0):
        raise AffordError(f"{fn}: `norm` must be a positive number, got {norm!r}")
    ks = _check_thresholds(thresholds, "thresholds", fn)
    err = np.sqrt(np.sum((pred - gt) ** 2, axis=1))
    out = {"norm_dist": float(err.mean() / norm)}
    for k in ks:
        ok = err <= k if inclusive else err < k
        out[f"pck@{_fmt(k)}"] = float(ok.mean())
    return out


def label_transfer_chance(
    gt_tgt: Any,
    region: Any,
    thresholds: Sequence[float] = LABEL_TRANSFER_THRESHOLDS,
    norm: float = NORM,
    inclusive: bool = True,
    max_points: int = 512,
    chunk: int = 1 << 22,
) -> dict[str, float]:
    """The expected :func:`label_transfer` metrics of *chance*: every prediction a uniformly
    random pixel of the target ``region`` (the object mask), computed exactly (no draw).

    Expected PCK@k is, per GT point, the fraction of region pixels within ``k`` px of it;
    the expected normalised distance is the mean distance to the region pixels over ``norm``.
    More than ``max_points`` GT points are thinned to that many, evenly spaced in their order
    (the per-point values are exact; their mean is then over the kept points).

    Args:
        gt_tgt: (N,2) GT target points (row, col).
        region: (H,W) bool, the pixels a prediction may land on (non-empty).
    Returns: the keys of :func:`label_transfer`.
    """
    fn = "label_transfer_chance"
    gt = _check_points(gt_tgt, "gt_tgt", fn)
    ks = _check_thresholds(thresholds, "thresholds", fn)
    if len(gt) > max_points:
        gt = gt[np.linspace(0, len(gt) - 1, max_points).round().astype(int)]
    pix = np.argwhere(np.asarray(region, dtype=bool)).astype(np.float64)  # (M,2)
    if len(pix) == 0 or len(gt) == 0:
        raise AffordError(f"{fn}: empty region or no GT points")
    step = max(1, chunk // len(pix))
    dist_sum = 0.0
    hits = np.zeros(len(ks))
    for s in range(0, len(gt), step):
        d = np.sqrt(((gt[s : s + step, None, :] - pix[None]) ** 2).sum(-1))  # (n,M)
        dist_sum += float(d.mean(axis=1).sum())
        for i, k in enumerate(ks):
            hits[i] += float(((d <= k) if inclusive else (d < k)).mean(axis=1).sum())
    out = {"norm_dist": dist_sum / len(gt) / norm}
    out.update({f"pck@{_fmt(k)}": float(h / len(gt)) for k, h in zip(ks, hits)})
    return out


def distinct_fraction(pred_tgt: Any) -> float:
    """Fraction of distinct target pixels among label-transfer predictions (one pair, one
    direction): 1 when every source point lands on its own pixel, 1/N when all N land on one.
    A mode-collapse diagnostic (paper Sec. 4.2: with the functional loss alone, "the whole
    spout ... would have the same features", so many source points share one nearest neighbour).

    Args: pred_tgt (N,2) predicted (row, col), N >= 1.
    """
    pred = _check_points(pred_tgt, "pred_tgt", "distinct_fraction")
    if pred.shape[0] == 0:
        raise AffordError("distinct_fraction: no predictions (empty `pred_tgt`)")
    return float(np.unique(np.rint(pred).astype(np.int64), axis=0).shape[0] / pred.shape[0])


def _candidate_pairs(tree_gt: Any, pred4: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """All (prediction j, GT i) whose 4-D points are within ``radius`` in Chebyshev distance.

    Returns (j, i) int64 arrays: a superset of the pairs within ``radius`` in both 2-D halves.
    """
    pairs = cKDTree(pred4).sparse_distance_matrix(tree_gt, radius, p=np.inf, output_type="ndarray")
    return pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)


def _sq_dist(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Squared distances ``||a[ia] - b[ib]||^2`` for (2,N) coordinate-major point arrays."""
    d = np.take(a[0], ia)
    d -= np.take(b[0], ib)
    d *= d
    e = np.take(a[1], ia)
    e -= np.take(b[1], ib)
    e *= e
    d += e
    return d


def sweep_top_k(m: int, ts: np.ndarray) -> np.ndarray:
    """``top_k = int(M * t)`` for every sweep step (float product, as written in the notes)."""
    return np.floor(m * ts).astype(np.int64)


def pr_from_ranks(
    correct: np.ndarray, first_rank: np.ndarray, ts: np.ndarray
) -> dict[str, np.ndarray | float]:
    """PR sweep from per-prediction correctness and per-GT first matching rank.

    Args:
        correct: (M,) bool, prediction j (rank order) is correct.
        first_rank: (G,) int, smallest rank j of a prediction matching GT pair i (M if none).
        ts: (T,) fractions of the ranked list in (0, 1].

    Returns:
        dict with ``t``, ``top_k``, ``precision``, ``recall`` (arrays whose first entry is the
        prepended point t = 0, top_k = 0, P = 1, R = 0, followed by the steps with top_k > 0),
        ``best_f1`` and ``ap`` (floats).
    """
    m, g = correct.shape[0], first_rank.shape[0]
    top_k = sweep_top_k(m, ts)
    keep = top_k > 0
    ts, top_k = ts[keep], top_k[keep]
    n_correct = np.cumsum(correct, dtype=np.int64)
    matched_at = np.bincount(first_rank[first_rank < m], minlength=m)
    n_matched = np.cumsum(matched_at, dtype=np.int64)
    if top_k.size:
        precision = n_correct[top_k - 1] / top_k
        recall = n_matched[top_k - 1] / g
    else:
        precision = recall = np.zeros(0)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    best_f1 = float(f1.max()) if f1.size else 0.0
    r_full = np.concatenate([[0.0], recall])
    p_full = np.concatenate([[1.0], precision])
    ap = float(np.sum((r_full[1:] - r_full[:-1]) * p_full[1:]))
    return {
        "t": np.concatenate([[0.0], ts]),
        "top_k": np.concatenate([[0], top_k]),
        "precision": p_full,
        "recall": r_full,
        "best_f1": best_f1,
        "ap": ap,
    }


def discovery(
    pred_src: Any,
    pred_tgt: Any,
    gt_src: Any,
    gt_tgt: Any,
    ks: Sequence[float] = DISCOVERY_KS,
    ts: Any = None,
    chunk: int | None = None,
    max_pairs: int = 300_000,
) -> dict[str, Any]:
    """Correspondence discovery: best F1 and AP of a ranked list of predicted pairs.

    Args:
        pred_src: (M,2) predicted source points (row, col), ordered best first.
        pred_tgt: (M,2) their predicted target points.
        gt_src: (G,2) GT source points.
        gt_tgt: (G,2) GT target points (pair i = (gt_src[i], gt_tgt[i])).
        ks: distance thresholds in pixels (both end points within k, inclusive).
        ts: sweep fractions; default ``np.arange(1, 101) / 100`` (1 %, ..., 100 %).
        chunk: predictions per k-d tree query; None adapts it so that about ``max_pairs``
            candidate pairs are held at a time. Affects speed and memory, never the result.
        max_pairs: target number of candidate pairs per query when ``chunk`` is None.

    Returns:
        ``{"best_f1@k": float, "ap@k": float for each k, "curves": {k: {"t", "top_k",
        "precision", "recall"}}}``; each curve starts with the prepended (R=0, P=1) point at
        t = 0 and holds only the steps with top_k > 0. M = 0 gives best F1 = AP = 0.
    """
    fn = "discovery"
    ps = _check_points(pred_src, "pred_src", fn)
    pt = _check_points(pred_tgt, "pred_tgt", fn)
    gs = _check_points(gt_src, "gt_src", fn)
    gtt = _check_points(gt_tgt, "gt_tgt", fn)
    if ps.shape != pt.shape:
        raise AffordError(f"{fn}: `pred_src` {ps.shape} and `pred_tgt` {pt.shape} differ in shape")
    if gs.shape != gtt.shape:
        raise AffordError(f"{fn}: `gt_src` {gs.shape} and `gt_tgt` {gtt.shape} differ in shape")
    if gs.shape[0] == 0:
        raise AffordError(f"{fn}: no ground-truth pairs (empty `gt_src`); recall is undefined")
    ks = _check_thresholds(ks, "ks", fn)
    if ts is None:
        ts = np.arange(1, 101) / 100.0
    ts = np.asarray(ts, dtype=np.float64).reshape(-1)
    if ts.size == 0 or not np.all((ts > 0) & (ts <= 1)) or np.any(np.diff(ts) < 0):
        raise AffordError(f"{fn}: `ts` must be non-decreasing fractions in (0, 1], got {ts}")
    if chunk is not None and int(chunk) < 1:
        raise AffordError(f"{fn}: `chunk` must be >= 1 or None, got {chunk}")
    if int(max_pairs) < 1:
        raise AffordError(f"{fn}: `max_pairs` must be >= 1, got {max_pairs}")
    m, g = ps.shape[0], gs.shape[0]

    kmax = max(ks)
    # Tiny slack so the tree's floating-point box test never drops a boundary pair; the exact
    # 2-D test below decides.
    radius = kmax * (1 + 1e-9) + 1e-9
    tree_gt = cKDTree(np.hstack([gs, gtt]))
    pred4 = np.hstack([ps, pt])
    # coordinate-major copies: 1-D gathers are much faster than (N,2) fancy indexing
    ps_t, pt_t, gs_t, gtt_t = (np.ascontiguousarray(x.T) for x in (ps, pt, gs, gtt))
    correct = {k: np.zeros(m, dtype=bool) for k in ks}
    first_rank = {k: np.full(g, m, dtype=np.int64) for k in ks}
    step = int(chunk) if chunk is not None else 1024
    start = 0
    while start < m:
        j, i = _candidate_pairs(tree_gt, pred4[start : start + step], radius)
        j += start
        n_done = min(step, m - start)
        start += n_done
        if chunk is None:  # next chunk: about max_pairs candidates at the observed density
            per_pred = max(j.size / n_done, 1e-3)
            step = int(np.clip(max_pairs / per_pred, 64, 1 << 17))
        # both end points within k <=> the larger squared 2-D distance <= k^2
        d_both = np.maximum(_sq_dist(ps_t, gs_t, j, i), _sq_dist(pt_t, gtt_t, j, i))
        for k in ks:
            valid = d_both <= k * k
            jv, iv = j[valid], i[valid]
            correct[k][jv] = True
            np.minimum.at(first_rank[k], iv, jv)

    out: dict[str, Any] = {}
    curves: dict[Any, dict[str, np.ndarray]] = {}
    for k in ks:
        res = pr_from_ranks(correct[k], first_rank[k], ts)
        key = _fmt(k)
        out[f"best_f1@{key}"] = res["best_f1"]
        out[f"ap@{key}"] = res["ap"]
        curves[int(k) if float(k).is_integer() else k] = {
            name: res[name] for name in ("t", "top_k", "precision", "recall")
        }
    out["curves"] = curves
    return out


def average_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every scalar metric over (pair, direction) results.

    Non-scalar entries (the PR ``curves`` of :func:`discovery`) are not averaged; they are
    per pair. Every result must hold the same scalar keys.

    Returns:
        ``{"n": N, <key>: mean, ...}``.
    """
    if len(results) == 0:
        raise AffordError("average_results: no results to average (empty list)")

    def scalar_keys(r: Mapping[str, Any]) -> set[str]:
        return {k for k, v in r.items() if np.ndim(v) == 0 and not isinstance(v, Mapping)}

    keys = scalar_keys(results[0])
    for n, r in enumerate(results):
        if scalar_keys(r) != keys:
            raise AffordError(
                f"average_results: result {n} has scalar keys {sorted(scalar_keys(r))}, "
                f"expected {sorted(keys)}"
            )
    out: dict[str, Any] = {"n": len(results)}
    for k in sorted(keys):
        vals = np.asarray([float(r[k]) for r in results], dtype=np.float64)
        if not np.isfinite(vals).all():
            raise AffordError(
                f"average_results: non-finite {k!r} in result(s) "
                f"{np.flatnonzero(~np.isfinite(vals)).tolist()}"
            )
        out[k] = float(vals.mean())
    return out

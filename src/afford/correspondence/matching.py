"""Label transfer and correspondence discovery from dense features (Sec. 5.1; REFERENCE_NOTES C).

Both work on dense feature maps (D,H,W) (or (1,D,H,W)) of the source and target images, e.g.
``FunctionalCorrespondenceModel.dense(...)["feat"][0]`` or upsampled backbone features, and
compare pixels by cosine similarity (features are L2-normalised here, so raw backbone maps
work too). Pixels are ``(row, col)`` of the feature map grid (= image pixels for dense maps).

Memory: nearest neighbours are found block by block (``block`` query rows against all
candidate pixels at a time, capped so one similarity tile is at most ``MAX_TILE_BYTES``), so the
full (H*W) x (H*W) similarity matrix is never built. At 224x224 vs 224x224 the extra memory
is the two gathered feature matrices (2 * 50176 * D * 4 bytes) plus one tile (<= 128 MB).

Tie-breaking (deterministic): among equally similar candidates the lowest row-major pixel
index wins (a tile holds all candidates of its query rows, candidates are in ascending
row-major order, and ``torch.max`` returns the first maximum of a row). Equal discovery scores
keep the row-major order of the source pixels (stable sort).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from afford.errors import AffordError

MAX_TILE_BYTES = 128 * 2**20
_EPS = 1e-12


class Discovery(NamedTuple):
    """Ranked discovered matches, best first: ``src`` (M,2), ``tgt`` (M,2) long ``(row, col)``
    pixels and ``score`` (M,) in [0,1]. Unpacks as ``src, tgt, score = discover(...)``."""

    src: Tensor
    tgt: Tensor
    score: Tensor


# --------------------------------------------------------------------------- input checks
def _fmap(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise AffordError(f"{name} must be a torch tensor (D,H,W), got {type(x).__name__}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise AffordError(
            f"{name} must be a dense feature map (D,H,W) or (1,D,H,W), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise AffordError(f"{name} must be a floating point tensor, got {x.dtype}")
    return x


def _common_dtype(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    dt = torch.promote_types(a.dtype, b.dtype)
    return a.to(dt), b.to(dt)


def _feature_pair(feat_src: Tensor, feat_tgt: Tensor) -> tuple[Tensor, Tensor]:
    """Checked (D,Hs,Ws) source and (D,Ht,Wt) target maps of one common dtype."""
    fs, ft = _fmap(feat_src, "feat_src"), _fmap(feat_tgt, "feat_tgt")
    if fs.shape[0] != ft.shape[0]:
        raise AffordError(f"feat_src has {fs.shape[0]} channels but feat_tgt {ft.shape[0]}")
    return _common_dtype(fs, ft)


def _mask(m: Tensor | None, name: str, hw: tuple[int, int], *, required: bool) -> Tensor | None:
    if m is None:
        if required:
            raise AffordError(f"{name} is required (bool (H,W) mask)")
        return None
    if not isinstance(m, Tensor):
        m = torch.as_tensor(m)
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != hw:
        raise AffordError(
            f"{name} has shape {tuple(m.shape)}; expected {hw} (the feature map's H,W)"
        )
    if m.dtype != torch.bool:
        raise AffordError(
            f"{name} must be a bool mask, got {m.dtype}; threshold it first "
            "(e.g. predicted part: torch.sigmoid(mask_logit) > 0.5)"
        )
    return m


def _flat_feats(fmap: Tensor, flat_idx: Tensor) -> Tensor:
    """(D,H,W) map, (K,) row-major pixel indices -> (K,D) L2-normalised features."""
    d = fmap.shape[0]
    f = fmap.reshape(d, -1).index_select(1, flat_idx).t()
    return F.normalize(f, dim=1, eps=_EPS)


def _coords(flat_idx: Tensor, width: int) -> Tensor:
    return torch.stack((flat_idx // width, flat_idx % width), dim=1)


def predicted_part_mask(mask_logit: Tensor, object_mask: Tensor) -> Tensor:
    """Mask-head prediction as a bool part mask: ``sigmoid(logit) > 0.5`` inside the object
    (REFERENCE_NOTES C). Shapes: (...,H,W) logits and bool object mask -> (...,H,W) bool."""
    if object_mask.dtype != torch.bool:
        raise AffordError(f"object_mask must be a bool mask, got {object_mask.dtype}")
    return (torch.sigmoid(mask_logit) > 0.5) & object_mask


# --------------------------------------------------------------------------- core
def nearest_neighbors(
    queries: Tensor, keys: Tensor, block: int = 1024, max_tile_bytes: int = MAX_TILE_BYTES
) -> tuple[Tensor, Tensor]:
    """Blockwise maximum inner product search.

    Args:
        queries: (Nq,D); keys: (Nk,D), Nk >= 1 (normalise them first for cosine similarity).
        block: query rows per tile; reduced so a (rows, Nk) tile fits in ``max_tile_bytes``.
    Returns: ``(sim (Nq,), idx (Nq,) long)`` with ``idx[i] = argmax_k q_i . k_k``, lowest index
    on ties, and ``sim[i]`` the maximum.
    """
    if keys.shape[0] == 0:
        raise AffordError("nearest_neighbors: no candidate pixels (empty key set)")
    if int(block) <= 0:
        raise AffordError(f"block must be a positive integer, got {block!r}")
    nq, nk = queries.shape[0], keys.shape[0]
    rows = max(1, min(int(block), max_tile_bytes // max(1, nk * keys.element_size())))
    sim = queries.new_empty(nq)
    idx = torch.empty(nq, dtype=torch.long, device=queries.device)
    kt = keys.t()
    for s in range(0, nq, rows):
        tile = queries[s : s + rows] @ kt  # (rows, Nk), the only large temporary
        v, i = tile.max(dim=1)  # first maximum within the row: lowest index on ties
        sim[s : s + rows] = v
        idx[s : s + rows] = i
        del tile
    return sim, idx


def transfer(
    feat_src: Tensor,
    feat_tgt: Tensor,
    src_points: Tensor,
    tgt_mask: Tensor,
    tgt_part: Tensor | None = None,
    block: int = 1024,
) -> Tensor:
    """Label transfer: each source point -> the most similar target pixel (REFERENCE_NOTES C).

    Args:
        feat_src: (D,Hs,Ws) source features; feat_tgt: (D,Ht,Wt) target features.
        src_points: (N,2) integer ``(row, col)`` source pixels.
        tgt_mask: (Ht,Wt) bool target object mask; the search is restricted to it.
        tgt_part: optional (Ht,Wt) bool predicted functional-part mask (mask head,
            ``sigmoid > 0.5``); the search is restricted to ``tgt_mask & tgt_part``. If that
            intersection is empty the object mask alone is used.
    Returns: (N,2) long predicted target ``(row, col)``; ties -> lowest row-major index.
    """
    fs, ft = _feature_pair(feat_src, feat_tgt)
    hs, ws = fs.shape[1:]
    ht, wt = ft.shape[1:]
    tm = _mask(tgt_mask, "tgt_mask", (ht, wt), required=True)
    tp = _mask(tgt_part, "tgt_part", (ht, wt), required=False)
    pts = torch.as_tensor(src_points, device=fs.device)
    if pts.dim() != 2 or pts.shape[1] != 2:
        raise AffordError(f"src_points must be (N,2) (row, col), got shape {tuple(pts.shape)}")
    if pts.is_floating_point():
        if not torch.equal(pts, pts.round()):
            raise AffordError("src_points must be integer pixel indices (row, col)")
    pts = pts.long()
    if pts.numel() and (
        pts[:, 0].min() < 0 or pts[:, 0].max() >= hs or pts[:, 1].min() < 0 or pts[:, 1].max() >= ws
    ):
        raise AffordError(f"src_points fall outside the source map of size {(hs, ws)}")
    if not bool(tm.any()):
        raise AffordError("tgt_mask is empty: no target object pixel to transfer to")
    allowed = tm
    if tp is not None and bool((tm & tp).any()):
        allowed = tm & tp
    cand = allowed.reshape(-1).nonzero()[:, 0]  # ascending row-major indices
    if pts.shape[0] == 0:
        return torch.empty((0, 2), dtype=torch.long, device=fs.device)
    q = _flat_feats(fs, pts[:, 0] * ws + pts[:, 1])
    k = _flat_feats(ft, cand)
    _, j = nearest_neighbors(q, k, block)
    return _coords(cand[j], wt)


def _minmax(x: Tensor, degenerate: float) -> Tensor:
    lo, hi = x.min(), x.max()
    if hi > lo:
        return (x - lo) / (hi - lo)
    return torch.full_like(x, degenerate)


def _discover_list(
    fs: Tensor, ft: Tensor, src_sel: Tensor, tgt_sel: Tensor, block: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Cycle-consistency ranking of one source pixel set against one target pixel set.

    Returns src flat idx, tgt flat idx, score, sorted best first (stable).
    """
    ws = fs.shape[2]
    qi = src_sel.reshape(-1).nonzero()[:, 0]
    ki = tgt_sel.reshape(-1).nonzero()[:, 0]
    fq, fk = _flat_feats(fs, qi), _flat_feats(ft, ki)
    s, j = nearest_neighbors(fq, fk, block)  # forward: p -> q, similarity s
    uniq, inv = torch.unique(j, return_inverse=True)
    _, back = nearest_neighbors(fk.index_select(0, uniq), fq, block)  # backward: q -> p'
    p_back = back[inv]  # index into qi
    d = (_coords(qi, ws) - _coords(qi[p_back], ws)).to(s.dtype).norm(dim=1)
    # degenerate (constant) values get the neutral factor: s_hat = 1, d_hat = 0
    score = (1.0 - _minmax(d, 0.0)) * _minmax(s, 1.0)
    order = torch.sort(score, descending=True, stable=True).indices
    return qi[order], ki[j[order]], score[order]


def discover(
    feat_src: Tensor,
    feat_tgt: Tensor,
    src_mask: Tensor,
    tgt_mask: Tensor,
    src_part: Tensor | None = None,
    tgt_part: Tensor | None = None,
    block: int = 1024,
) -> Discovery:
    """Correspondence discovery ranked by cycle consistency (Sec. 5.1; REFERENCE_NOTES C).

    For every source pixel ``p`` in ``src_mask``: forward nearest neighbour ``q`` among the
    target pixels (similarity ``s``), backward nearest neighbour ``p'`` of ``q`` among the source
    pixels, ``d = ||p - p'||`` (pixels). ``s`` and ``d`` are min-max normalised over the query
    pixels (a constant vector normalises to ``s_hat = 1`` / ``d_hat = 0``) and
    ``score = (1 - d_hat) * s_hat``.

    With predicted part masks (both or neither), part pixels (``src_mask & src_part``) are
    matched against target part pixels and non-part pixels against target non-part pixels
    (backward search within the same source set); each list is normalised and ranked on its
    own and the part list comes first. No query is dropped: if a list's target set is empty,
    its queries search the whole target mask.

    Args:
        feat_src (D,Hs,Ws), feat_tgt (D,Ht,Wt): dense features. src_mask (Hs,Ws), tgt_mask
        (Ht,Wt): bool object masks. src_part / tgt_part: optional bool part masks.
        block: query rows per similarity tile (memory bound, see module docstring).
    Returns: ``Discovery(src (M,2), tgt (M,2), score (M,))`` with M = ``src_mask.sum()``, best
    first; equal scores keep row-major source order.
    """
    fs, ft = _feature_pair(feat_src, feat_tgt)
    hs, ws = fs.shape[1:]
    ht, wt = ft.shape[1:]
    sm = _mask(src_mask, "src_mask", (hs, ws), required=True)
    tm = _mask(tgt_mask, "tgt_mask", (ht, wt), required=True)
    sp = _mask(src_part, "src_part", (hs, ws), required=False)
    tp = _mask(tgt_part, "tgt_part", (ht, wt), required=False)
    if (sp is None) != (tp is None):
        raise AffordError("give both src_part and tgt_part, or neither")
    if not bool(tm.any()):
        raise AffordError("tgt_mask is empty: no target object pixel to match")
    if sp is None:
        lists = [(sm, tm)]
    else:
        lists = [(sm & sp, tm & tp), (sm & ~sp, tm & ~tp)]
    srcs, tgts, scores = [], [], []
    for s_sel, t_sel in lists:
        if not bool(s_sel.any()):
            continue
        if not bool(t_sel.any()):
            t_sel = tm
        qi, ki, sc = _discover_list(fs, ft, s_sel, t_sel, block)
        srcs.append(_coords(qi, ws))
        tgts.append(_coords(ki, wt))
        scores.append(sc)
    if not srcs:
        empty = torch.empty((0, 2), dtype=torch.long, device=fs.device)
        return Discovery(empty, empty.clone(), fs.new_empty(0))
    return Discovery(torch.cat(srcs), torch.cat(tgts), torch.cat(scores))

"""Object affinity maps and part discovery (Sec. 3.2-3.4; REFERENCE_NOTES A).

* Object affinity: ``S_ego`` = raw cosine of CLIP patch and action prompt; exocentric
  ``A_exo = LocalMean3x3(cos(patch, entity prompt)) * cos(patch, action prompt)``.
* Exocentric part discovery (Sec. 3.3, LOCATE's algorithm refined with the object affinity
  map): descriptors of the exo mask above gamma1, K-means (K = 3), pIoU of each centroid's
  ego similarity map against a saliency map, the best centroid if its pIoU >= alpha.
* Egocentric part criterion ``rho`` (Eq. 6) and the positive pixel set Q+ (Eq. 7).

Everything is batched over the mini-batch; the K-means runs on all samples at once with a
validity mask (no per-sample or per-pixel Python loops).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from afford.errors import AffordError

EPS = 1e-10


# --------------------------------------------------------------------------- small helpers
def minmax(x: Tensor, dims: Sequence[int] = (-2, -1), eps: float = EPS) -> Tensor:
    """Min-max normalise ``x`` over ``dims``: ``(x - min) / (max - min + eps)``."""
    dims = tuple(dims)
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo + eps)


def local_mean3x3(x: Tensor) -> Tensor:
    """3x3 local mean of maps (...,H,W); border windows average only their valid cells.

    Equivalent to average pooling with kernel 3, stride 1, padding 1 without counting the
    padding (REFERENCE_NOTES A, LocalMean3x3).
    """
    if x.dim() < 2:
        raise AffordError(f"local_mean3x3: expected (...,H,W), got shape {tuple(x.shape)}")
    lead = x.shape[:-2]
    y = x.reshape(-1, 1, *x.shape[-2:])
    y = F.avg_pool2d(y, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    return y.reshape(*lead, *x.shape[-2:])


def exo_object_affinity(exo_entity: Tensor, exo_action: Tensor) -> Tensor:
    """``A_exo = LocalMean3x3(entity cosine) * action cosine``, (B,E,h,w) -> (B,E,h,w)."""
    if exo_entity.shape != exo_action.shape:
        raise AffordError(
            f"exo_entity {tuple(exo_entity.shape)} and exo_action {tuple(exo_action.shape)}"
            " must have the same shape (B,E,h,w)"
        )
    return local_mean3x3(exo_entity) * exo_action


def rho(exo_affinity: Tensor) -> Tensor:
    """Egocentric part criterion (Eq. 6): ``rho = min_e max_{h,w} A^exo``.

    Args:
        exo_affinity: (B,E,H,W) exocentric affinity to the action prompt.

    Returns:
        (B,) the weakest exo image's peak response.
    """
    if exo_affinity.dim() != 4:
        raise AffordError(f"rho: expected (B,E,H,W), got shape {tuple(exo_affinity.shape)}")
    return exo_affinity.amax(dim=(2, 3)).amin(dim=1)


def piou(cluster_masks: Tensor, saliency: Tensor) -> Tensor:
    """LOCATE's part score "pIoU" of each cluster mask against a saliency mask.

    ``0.5 * (|A and S| / (|A| + eps) + |S| / (|A or S| + eps))``, eps = 1e-10 (the second
    term is |S| / |union|, not IoU).

    Args:
        cluster_masks: (K,N) binary.
        saliency: (N,) binary.

    Returns:
        (K,) scores.
    """
    if cluster_masks.dim() != 2 or saliency.dim() != 1:
        raise AffordError(
            f"piou: expected (K,N) and (N,), got {tuple(cluster_masks.shape)}"
            f" and {tuple(saliency.shape)}"
        )
    return piou_batched(cluster_masks.unsqueeze(0), saliency.unsqueeze(0))[0]


def piou_batched(cluster_masks: Tensor, saliency: Tensor) -> Tensor:
    """Batched :func:`piou`: (B,K,N) and (B,N) binary -> (B,K)."""
    a = cluster_masks.float()
    s = saliency.float().unsqueeze(1)
    inter = (a * s).sum(-1)
    union = ((a + s) > 0).float().sum(-1)
    return 0.5 * (inter / (a.sum(-1) + EPS) + s.sum(-1) / (union + EPS))


# --------------------------------------------------------------------------- saliency
def dino_saliency(cls_attn: Tensor, heads: Sequence[int] = (0, 1, 3)) -> Tensor:
    """Binary DINO saliency of the egocentric image (REFERENCE_NOTES A, step 6).

    The CLS->patch attention of ``heads`` is binarised per head at its own mean, averaged,
    min-max normalised and binarised at its mean.

    Args:
        cls_attn: (B,heads,h,w).
        heads: head indices (released code: 0, 1, 3).

    Returns:
        (B,h,w) bool.
    """
    if cls_attn.dim() != 4:
        raise AffordError(f"dino_saliency: expected (B,heads,h,w), got {tuple(cls_attn.shape)}")
    nh = cls_attn.shape[1]
    if max(heads) >= nh:
        raise AffordError(
            f"saliency_heads {list(heads)} out of range for {nh} attention heads;"
            " set GroundingConfig.saliency_heads to indices < num_heads"
        )
    a = cls_attn[:, list(heads)]
    b = (a > a.mean(dim=(-2, -1), keepdim=True)).float().mean(dim=1)
    b = minmax(b)
    return b > b.mean(dim=(-2, -1), keepdim=True)


def affinity_saliency(s_ego: Tensor) -> Tensor:
    """Object affinity map used in place of DINO attention (Sec. 3.3): ``S_ego > mean(S_ego)``.

    Same binarisation as one DINO head (at the map's mean). (B,h,w) -> (B,h,w) bool.
    """
    return s_ego > s_ego.mean(dim=(-2, -1), keepdim=True)


# --------------------------------------------------------------------------- K-means
def kmeans_init(x: Tensor, valid: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding, batched: indices (B,k) of the initial centroids.

    The first centre is a uniformly random valid point; each next one is drawn with
    probability proportional to the squared distance to the nearest chosen centre (valid
    points only). All draws come from ``generator`` (CPU), so the result is deterministic.
    Rows whose weights are all zero (fewer distinct valid points than k) fall back to
    uniform over valid points (or over all points if there are none).
    """
    b, n, _ = x.shape
    w = valid.float()
    w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
    first = torch.multinomial(w.cpu(), 1, generator=generator).to(x.device)  # (B,1)
    idx = [first]
    d2 = ((x - torch.gather(x, 1, first.unsqueeze(-1).expand(-1, -1, x.shape[2]))) ** 2).sum(-1)
    for _ in range(1, k):
        p = d2.clamp(min=0) * valid.to(d2.dtype)
        p = torch.where(p.sum(1, keepdim=True) > 0, p, w.to(p.dtype))
        nxt = torch.multinomial(p.double().cpu(), 1, generator=generator).to(x.device)
        idx.append(nxt)
        c = torch.gather(x, 1, nxt.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        d2 = torch.minimum(d2, ((x - c) ** 2).sum(-1))
    return torch.cat(idx, dim=1)


def kmeans(
    x: Tensor,
    valid: Tensor,
    k: int = 3,
    iters: int = 300,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched Euclidean K-means (Lloyd) over padded point sets.

    Initialisation: k-means++ (:func:`kmeans_init`) from ``generator`` (a CPU generator;
    same seed -> same result), or the given ``init`` indices (B,k). Iterates until no
    assignment changes in any sample or ``iters`` iterations; an empty cluster keeps its
    centroid.

    Args:
        x: (B,N,D) points; rows with ``valid`` False are padding.
        valid: (B,N) bool.
        k: number of clusters.
        iters: maximum iterations.
        generator: torch.Generator for the initialisation (default: seeded with 0).
        init: optional (B,k) initial centroid indices.

    Returns:
        centroids (B,k,D) and assignments (B,N) long (padding rows get -1). Samples with
        fewer than k valid points get meaningless centroids; callers must treat them as
        "no clusters" (see :func:`discover_exo_parts`).
    """
    if x.dim() != 3 or valid.shape != x.shape[:2]:
        raise AffordError(
            f"kmeans: expected x (B,N,D) and valid (B,N), got {tuple(x.shape)}"
            f" and {tuple(valid.shape)}"
        )
    b, n, _ = x.shape
    if n < k:
        raise AffordError(f"kmeans: {n} points per sample is fewer than k={k}")
    if init is None:
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        init = kmeans_init(x, valid, k, generator)
    cent = torch.gather(x, 1, init.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[2]))
    vf = valid.to(x.dtype).unsqueeze(-1)
    assign = torch.full((b, n), -1, dtype=torch.long, device=x.device)
    for _ in range(iters):
        new_assign = torch.cdist(x, cent).argmin(dim=-1)
        new_assign = torch.where(valid, new_assign, torch.full_like(new_assign, -1))
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
        onehot = F.one_hot(assign.clamp(min=0), k).to(x.dtype) * vf  # (B,N,k)
        counts = onehot.sum(dim=1)  # (B,k)
        sums = onehot.transpose(1, 2) @ x  # (B,k,D)
        cent = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp(min=1).unsqueeze(-1), cent)
    return cent, assign


# --------------------------------------------------------------------------- part discovery
@dataclass
class PartDiscovery:
    """Result of :func:`discover_exo_parts` for a batch of B samples.

    Attributes:
        reliable: (B,) bool, a part was found (the index set I of Eq. 2).
        centroid: (B,D) chosen L2-normalised centroid (meaningless where not reliable).
        ego_part: (B,h,w) ego part affinity map A_part^ego (from the chosen centroid).
        exo_part: (B,E,h,w) exo part affinity maps A_part^exo.
        best_piou: (B,) best cluster pIoU (0 where fewer than K descriptors).
        num_desc: (B,) number of exo descriptors above gamma1.
    """

    reliable: Tensor
    centroid: Tensor
    ego_part: Tensor
    exo_part: Tensor
    best_piou: Tensor
    num_desc: Tensor

    def rows(self, sl: slice) -> PartDiscovery:
        """The samples ``sl`` of the batch (e.g. this rank's chunk of a global batch)."""
        return PartDiscovery(*(getattr(self, f.name)[sl] for f in dataclasses.fields(self)))


def part_maps(desc: Tensor, centroid: Tensor, cos_desc: Tensor | None = None) -> Tensor:
    """Part affinity map of each sample: mean of a cosine map and a softmax of -distance.

    Args:
        desc: (B,M,D) raw descriptors (M = hw for ego, E*hw for exo: the softmax over pixels
            then runs jointly over all E images).
        centroid: (B,D) chosen centroid.
        cos_desc: descriptors for the cosine term (default ``desc``; official mode uses the
            S_ego-weighted ego descriptors).

    Returns:
        (B,M) ``0.5 * (cos(cos_desc, c) + softmax_M(-||desc - c||))``.
    """
    cos_desc = desc if cos_desc is None else cos_desc
    cos = (F.normalize(cos_desc, dim=-1) * F.normalize(centroid, dim=-1).unsqueeze(1)).sum(-1)
    dist = torch.cdist(desc, centroid.unsqueeze(1)).squeeze(-1)
    return 0.5 * (cos + torch.softmax(-dist, dim=1))


@torch.no_grad()
def discover_exo_parts(
    exo_mask: Tensor,
    exo_desc: Tensor,
    ego_desc: Tensor,
    saliency: Tensor,
    *,
    gamma1: float = 0.6,
    alpha: float = 0.6,
    k: int = 3,
    iters: int = 300,
    seed: int = 0,
    ego_weight: Tensor | None = None,
) -> PartDiscovery:
    """Exocentric part discovery (Sec. 3.3; REFERENCE_NOTES A steps 2-9), batched.

    Args:
        exo_mask: (B,E,h,w) interaction-region map (A_exo, or relu(A_exo) * relu(CAM_exo);
            LOCATE: the exo CAM). Min-max normalised per exo image here.
        exo_desc: (B,E,D,h,w) raw frozen DINO keys of the exo images.
        ego_desc: (B,D,h,w) raw frozen DINO keys of the ego image.
        saliency: (B,h,w) bool ego saliency (:func:`dino_saliency` / :func:`affinity_saliency`).
        gamma1: descriptor threshold on the normalised exo mask.
        alpha: pIoU threshold for a reliable part.
        k, iters, seed: K-means clusters, max iterations and initialisation seed.
        ego_weight: optional (B,h,w) weight of the ego descriptors for the cosine maps
            (official: raw S_ego).

    Returns:
        :class:`PartDiscovery`. Samples with fewer than ``k`` descriptors or best pIoU below
        ``alpha`` are not reliable (their part maps must be replaced by the object-level
        fallback by the caller).
    """
    b, e, d, h, w = exo_desc.shape
    if exo_mask.shape != (b, e, h, w) or ego_desc.shape != (b, d, h, w):
        raise AffordError(
            f"discover_exo_parts: shapes exo_mask {tuple(exo_mask.shape)}, exo_desc"
            f" {tuple(exo_desc.shape)}, ego_desc {tuple(ego_desc.shape)} do not agree"
        )
    if saliency.shape != (b, h, w):
        raise AffordError(f"discover_exo_parts: saliency must be (B,h,w), got {saliency.shape}")
    n = e * h * w
    mask_n = minmax(exo_mask.float())
    valid = (mask_n > gamma1).reshape(b, n)
    x = exo_desc.permute(0, 1, 3, 4, 2).reshape(b, n, d).float()
    num = valid.sum(dim=1)
    enough = num >= k
    gen = torch.Generator().manual_seed(int(seed))
    cent, _ = kmeans(x, valid, k=k, iters=iters, generator=gen)
    cent = F.normalize(cent, dim=-1)  # (B,k,D)

    ego_raw = ego_desc.flatten(2).transpose(1, 2).float()  # (B,hw,D)
    ego_cos = ego_raw if ego_weight is None else ego_raw * ego_weight.reshape(b, h * w, 1)
    sim = F.normalize(ego_cos, dim=-1) @ cent.transpose(1, 2)  # (B,hw,k)
    sim = minmax(sim.transpose(1, 2), dims=(-1,))  # (B,k,hw)
    cluster_masks = sim > sim.mean(dim=-1, keepdim=True)
    scores = piou_batched(cluster_masks, saliency.reshape(b, h * w))
    scores = torch.where(enough.unsqueeze(1), scores, torch.zeros_like(scores))
    best, idx = scores.max(dim=1)
    reliable = enough & (best >= alpha)
    chosen = torch.gather(cent, 1, idx.view(b, 1, 1).expand(-1, 1, d)).squeeze(1)  # (B,D)

    ego_part = part_maps(ego_raw, chosen, ego_cos).reshape(b, h, w)
    exo_part = part_maps(x, chosen).reshape(b, e, h, w)
    return PartDiscovery(
        reliable=reliable,
        centroid=chosen,
        ego_part=ego_part,
        exo_part=exo_part,
        best_piou=best,
        num_desc=num,
    )


# --------------------------------------------------------------------------- Eq. 7
def ego_positive(
    s_ego: Tensor, rho_b: Tensor, gamma2: float = 0.6, part_level: bool = True
) -> tuple[Tensor, Tensor]:
    """Positive egocentric pixels Q+ (Eq. 7) and the index set J.

    Args:
        s_ego: (B,h,w) raw egocentric object affinity A_obj^ego.
        rho_b: (B,) criterion of Eq. 6.
        gamma2: object-level threshold on min-max(S_ego) (as in the released code and the
            calibration of Sec. 3.5; raw CLIP cosines are far below 0.6).
        part_level: False -> J is empty (object-level learning only, Table 2 rows d/e/g).

    Returns:
        positive (B,h,w) bool (Q+; Q- is its complement) and in_j (B,) bool.
    """
    part = s_ego > rho_b.view(-1, 1, 1)
    in_j = part.flatten(1).any(dim=1)
    if not part_level:
        in_j = torch.zeros_like(in_j)
    obj = minmax(s_ego) > gamma2
    return torch.where(in_j.view(-1, 1, 1), part, obj), in_j

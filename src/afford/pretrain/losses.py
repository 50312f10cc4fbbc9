"""The pre-training objective (pure math on tensors; see ``afford.pretrain`` for the whole
recipe).

- (D1) dense pixel-contrastive InfoNCE between the student's patch embedding ``q_i`` of view a
  and the EMA teacher's view-b map ``k_i`` sampled at the same source point, the other sampled
  pairs of the batch being the negatives::

      L_dense = -1/P sum_i log( exp(q_i . k_i / tau_d) / sum_j exp(q_i . k_j / tau_d) )

- (G1) image-level InfoNCE on the CLS projections ``u`` (student, view a) and ``v`` (teacher,
  view b)::

      L_img = -1/B sum_b log( exp(u_b . v_b / tau_g) / sum_c exp(u_b . v_c / tau_g) )

- ``L = lambda_dense * mean_heads L_dense + lambda_global * L_img``, symmetrised over (a, b)
  and (b, a) (:func:`ssl_losses`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from afford.pretrain.augment import image_to_view, view_to_image
from afford.pretrain.config import PretrainModel


def patch_centres(grid: int) -> torch.Tensor:
    """(grid*grid, 2) normalised (row, col) centres of a grid x grid patch layout, row-major."""
    c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    rr, cc = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], -1)


def sample_map(fmap: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (B,D,h,w) at normalised (row, col) points (B,N,2) -> (B,N,D)."""
    grid = torch.stack([points[..., 1], points[..., 0]], -1)[:, :, None] * 2 - 1
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


def info_nce(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (D1)/(G1): q, k (P,D) L2-normalised; row i's positive is k_i, negatives k_j, j != i.
    Returns mean_i -log softmax_j(q_i . k_j / tau)[i] (a scalar)."""
    logits = q @ k.t() / tau
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


def dense_pairs(
    boxes_a: torch.Tensor,
    flips_a: torch.Tensor,
    boxes_b: torch.Tensor,
    flips_b: torch.Tensor,
    grid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch centres of view a mapped into view b.

    Returns ``pts_b`` (B, grid*grid, 2) normalised view-b coordinates of each view-a patch
    centre (row-major patch order) and ``valid`` (B, grid*grid) bool: the point lies inside
    view b."""
    b = boxes_a.shape[0]
    c = patch_centres(grid).to(boxes_a.dtype)[None].expand(b, -1, -1)
    pts_b = image_to_view(view_to_image(c, boxes_a, flips_a), boxes_b, flips_b)
    valid = ((pts_b >= 0) & (pts_b <= 1)).all(-1)
    return pts_b, valid


def flow_pairs(
    boxes_a: torch.Tensor,
    flips_a: torch.Tensor,
    boxes_b: torch.Tensor,
    flips_b: torch.Tensor,
    grid: int,
    flow: torch.Tensor,
    fvalid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_pairs` across two cameras: view a's patch centres -> source a -> (nearest
    cell of ``flow`` (B,G,G,2), normalised (row, col) in source b) -> view b.

    Returns ``pts_b`` (B, grid*grid, 2) and ``valid`` (B, grid*grid): the flow cell is valid
    (``fvalid`` (B,G,G)) and the point lies inside view b."""
    b, g = flow.shape[0], flow.shape[1]
    c = patch_centres(grid).to(boxes_a.dtype)[None].expand(b, -1, -1)
    src = view_to_image(c, boxes_a, flips_a)
    cell = (src * g).floor().long().clamp(0, g - 1)
    lin = cell[..., 0] * g + cell[..., 1]  # (B,P)
    src_b = torch.gather(flow.reshape(b, g * g, 2), 1, lin[..., None].expand(-1, -1, 2))
    ok = torch.gather(fvalid.reshape(b, g * g), 1, lin)
    pts_b = image_to_view(src_b.to(boxes_b.dtype), boxes_b, flips_b)
    return pts_b, ok & ((pts_b >= 0) & (pts_b <= 1)).all(-1)


def dense_loss(
    q_map: torch.Tensor,
    k_map: torch.Tensor,
    pts_b: torch.Tensor,
    valid: torch.Tensor,
    tau: float,
    select: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (D1) for one dense head.

    q_map (B,D,g,g): student map of view a; k_map (B,D,g',g'): teacher map of view b (any
    grid); pts_b, valid from :func:`dense_pairs`; ``select`` optional (P,) indices into the
    flattened valid pairs (a random subset; default all). Both embeddings are L2-normalised
    here. Returns a scalar (0 with a graph when there is no valid pair)."""
    b, d = q_map.shape[:2]
    q = F.normalize(q_map.flatten(2).transpose(1, 2), dim=-1)  # (B, g*g, D)
    k = F.normalize(sample_map(k_map, pts_b), dim=-1)  # (B, g*g, D)
    q, k = q[valid], k[valid]
    if select is not None:
        select = select.to(q.device)
        q, k = q[select], k[select]
    if q.shape[0] == 0:
        return q_map.sum() * 0
    return info_nce(q, k, tau)


def ssl_losses(
    student: Callable[[torch.Tensor], dict],
    teacher: Callable[[torch.Tensor], dict],
    views: tuple[torch.Tensor, torch.Tensor],
    geoms: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    cfg: PretrainModel,
    gen: torch.Generator,
    flows: tuple | None = None,
) -> dict[str, torch.Tensor]:
    """Symmetrised objective (Eq. D1 per dense head + Eq. G1) for two normalised view batches
    (B,3,S,S) and their crop geometries ((boxes, flips), (boxes, flips)). ``flows`` (for
    renders from two cameras): ((flow, valid) from source a to b, (flow, valid) from b to a),
    see :func:`flow_pairs`; None = same camera. ``student`` / ``teacher`` map a view batch to
    ``{"cls": (B,P), "dense": {head: (B,C,g,g)}}`` (:class:`afford.pretrain.model.SSLNet`);
    ``cfg`` gives the temperatures, weights and the number of sampled pairs; ``gen`` draws the
    pair subset. Returns "total", "img" and "dense:<head>"."""
    s_out = [student(v) for v in views]
    with torch.no_grad():
        t_out = [teacher(v) for v in views]
    terms: dict[str, torch.Tensor] = {}
    img = 0.0
    dense: dict[str, torch.Tensor] = {}
    for a, b in ((0, 1), (1, 0)):
        u = F.normalize(s_out[a]["cls"], dim=-1)
        v = F.normalize(t_out[b]["cls"], dim=-1)
        img = img + 0.5 * info_nce(u, v, cfg.tau_global)
        g = next(iter(s_out[a]["dense"].values())).shape[-1]
        if flows is None:
            pts_b, valid = dense_pairs(*geoms[a], *geoms[b], g)
        else:
            pts_b, valid = flow_pairs(*geoms[a], *geoms[b], g, *flows[a])
        n_valid = int(valid.sum())
        sel = None
        if n_valid > cfg.pairs:
            sel = torch.randperm(n_valid, generator=gen)[: cfg.pairs]
        for name, q_map in s_out[a]["dense"].items():
            term = 0.5 * dense_loss(
                q_map, t_out[b]["dense"][name], pts_b, valid, cfg.tau_dense, sel
            )
            dense[name] = dense.get(name, 0.0) + term
    terms["img"] = img
    for name, val in dense.items():
        terms[f"dense:{name}"] = val
    mean_dense = sum(dense.values()) / len(dense)
    terms["total"] = cfg.lambda_dense * mean_dense + cfg.lambda_global * img
    return terms

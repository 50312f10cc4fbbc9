"""Training losses of the correspondence paper (Sec. 4.2, Eqs. 1-3; REFERENCE_NOTES C, "Losses").

All features are L2-normalised outputs of ``g(p | I, F)``; similarities are dot products.
Notation per pair (P pairs, N points each): ``a0_i`` / ``b0_n`` part / non-part features of
image 0, ``a1_j`` / ``b1_n`` of image 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from afford.config import MODES, Mode
from afford.errors import AffordError


def _check_feats(names: tuple[str, ...], feats: tuple[Tensor, ...]) -> None:
    shape = tuple(feats[0].shape)
    for n, f in zip(names, feats):
        if f.dim() != 3 or tuple(f.shape) != shape:
            raise AffordError(
                f"{n} has shape {tuple(f.shape)}; all of {', '.join(names)} must be (P,N,D) "
                f"with the same shape (got {names[0]} {shape})"
            )


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise AffordError(f"tau must be positive, got {tau!r}")


def functional_loss(
    a0: Tensor,
    b0: Tensor,
    a1: Tensor,
    b1: Tensor,
    tau: float = 0.1,
    negneg: bool = True,
    mode: Mode = "paper",
) -> Tensor:
    """Functional part contrastive loss, L_func (Eq. 1), one cross-entropy row per positive pair.

    For every pair p and every positive pair ``(i, j)`` of part points the logits are::

        [a0_i.a1_j | a0_x.b1_n (n=1..N) | a1_j.b0_n (n=1..N) | b0_y.b1_n (n=1..N)] / tau

    with the positive at index 0; the last block (non-part vs non-part, the ``p1^-, p2^-``
    term of Eq. 1) only when ``negneg``. ``mode="paper"``: ``x = y = i`` (the image-0 anchor's
    own negatives); ``mode="official"``: ``x = y = j`` (the released code's broadcasting).

    Args:
        a0, b0, a1, b1: (P,N,D) features (same shape).
        tau: temperature.
    Returns: scalar, mean over all P*N*N rows.

    Vectorised: a row's log-sum-exp is ``logsumexp(pos_ij, A_x, B_j, C_y)`` where
    ``A_x = lse_n(a0_x.b1_n)``, ``B_j = lse_n(a1_j.b0_n)``, ``C_y = lse_n(b0_y.b1_n)`` are
    per-point (P,N) quantities, so nothing larger than (P,N,N) is built.
    """
    if mode not in MODES:
        raise AffordError(f"mode must be one of {MODES}, got {mode!r}")
    _check_tau(tau)
    _check_feats(("a0", "b0", "a1", "b1"), (a0, b0, a1, b1))
    pos = torch.einsum("pid,pjd->pij", a0, a1) / tau  # (P,N,N) [i,j]
    lse_a = torch.logsumexp(torch.einsum("pxd,pnd->pxn", a0, b1) / tau, dim=-1)  # (P,N) [x]
    lse_b = torch.logsumexp(torch.einsum("pjd,pnd->pjn", a1, b0) / tau, dim=-1)  # (P,N) [j]
    n = pos.shape[1]
    if mode == "paper":  # x = i: varies along dim 1 of (P,i,j)
        a_term = lse_a[:, :, None].expand(-1, -1, n)
    else:  # x = j: varies along dim 2
        a_term = lse_a[:, None, :].expand(-1, n, -1)
    terms = [pos, a_term, lse_b[:, None, :].expand(-1, n, -1)]
    if negneg:
        lse_c = torch.logsumexp(torch.einsum("pyd,pnd->pyn", b0, b1) / tau, dim=-1)  # [y]
        terms.append(
            lse_c[:, :, None].expand(-1, -1, n)
            if mode == "paper"
            else lse_c[:, None, :].expand(-1, n, -1)
        )
    lse = torch.logsumexp(torch.stack(terms, dim=0), dim=0)  # (P,N,N)
    return (lse - pos).mean()


def spatial_loss(f0: Tensor, f1: Tensor, tau: float = 0.1) -> Tensor:
    """Multi-view spatial contrastive loss, L_spatial (Eq. 2).

    Args: f0, f1: (P,N,D) features of N corresponding points in two views of one asset
    (``f0[p, i]`` corresponds to ``f1[p, i]``). Row i has logits ``f0_i . f1_k / tau`` for all
    k with the positive at k = i (one direction, view 0 -> view 1).
    Returns: scalar mean cross-entropy over the P*N rows.
    """
    _check_tau(tau)
    _check_feats(("f0", "f1"), (f0, f1))
    logits = torch.einsum("pid,pkd->pik", f0, f1) / tau  # (P,N,N)
    return (torch.logsumexp(logits, dim=-1) - torch.diagonal(logits, dim1=1, dim2=2)).mean()


def mask_loss(pos0: Tensor, pos1: Tensor, neg0: Tensor, neg1: Tensor) -> Tensor:
    """Mask-head loss, L_mask: BCE-with-logits, part points label 1, non-part points label 0.

    Args: mask-head logits of the part points (``pos0``, ``pos1``) and on-object non-part points
    (``neg0``, ``neg1``) of images 0 and 1, any shapes. Returns the mean of the four per-tensor
    mean BCE terms.
    """
    terms = []
    for name, x, label in (
        ("pos0", pos0, 1.0),
        ("pos1", pos1, 1.0),
        ("neg0", neg0, 0.0),
        ("neg1", neg1, 0.0),
    ):
        if x.numel() == 0:
            raise AffordError(f"mask_loss: {name} is empty; sample at least one point")
        terms.append(F.binary_cross_entropy_with_logits(x, torch.full_like(x, label)))
    return torch.stack(terms).mean()


def total_loss(
    func: Tensor | None,
    spatial: Tensor | None,
    mask: Tensor | None = None,
    lambda_spatial: float = 10.0,
    lambda_mask: float = 1.0,
) -> Tensor:
    """Weighted total (Eq. 3, normalised as in the released code)::

        (L_func + lambda_mask L_mask + lambda_spatial L_spatial) / (1 + lambda_mask + lambda_spatial)

    A term given as ``None`` is dropped together with its weight in the denominator (no mask
    head -> ``(L_func + 10 L_spatial) / 11``; the "functional only" / "spatial only" ablations
    pass ``spatial=None`` / ``func=None``). The normalisation only rescales Eq. 3 (a learning-rate
    factor). At least one term must be given.
    """
    num, den = None, 0.0
    for value, weight in ((func, 1.0), (mask, lambda_mask), (spatial, lambda_spatial)):
        if value is None:
            continue
        num = weight * value if num is None else num + weight * value
        den += weight
    if num is None:
        raise AffordError("total_loss: all of func, spatial and mask are None; give one")
    if den <= 0:
        raise AffordError(f"total_loss: the weights of the given terms sum to {den} (must be > 0)")
    return num / den

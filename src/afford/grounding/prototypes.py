"""Prototypes of Eq. 1 (Sec. 3.3).

``Phi+(Z, M) = norm(Pool(Z . M))`` and ``Phi-(Z, M, C) = norm(Pool(Z . (beta - M . C)))`` with
Pool = spatial average pooling and norm = L2 normalisation over the channel axis; ``.`` is the
Hadamard product broadcast over channels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from afford.errors import AffordError


def _check(z: Tensor, *maps: Tensor) -> None:
    if z.dim() != 4:
        raise AffordError(f"prototypes: z must be (B,D,H,W), got shape {tuple(z.shape)}")
    for m in maps:
        if m.shape != (z.shape[0], *z.shape[2:]):
            raise AffordError(
                f"prototypes: map shape {tuple(m.shape)} does not match z {tuple(z.shape)};"
                " expected (B,H,W)"
            )


def pool_norm(z: Tensor) -> Tensor:
    """``norm(Pool(Z))``: the unweighted image prototype (Eq. 2 anchor, b not in I).

    z (B,D,H,W) -> (B,D), L2-normalised.
    """
    _check(z)
    return F.normalize(z.mean(dim=(2, 3)), dim=1)


def phi_pos(z: Tensor, m: Tensor) -> Tensor:
    """Positive prototype ``Phi+(Z, M)`` (Eq. 1).

    Args:
        z: features (B,D,H,W).
        m: target clue M (B,H,W) (part or object affinity map).

    Returns:
        (B,D) L2-normalised spatial mean of ``z * m``.
    """
    _check(z, m)
    return F.normalize((z * m.unsqueeze(1)).mean(dim=(2, 3)), dim=1)


def phi_neg(z: Tensor, m: Tensor, c: Tensor, beta: float = 1.0) -> Tensor:
    """Negative (background) prototype ``Phi-(Z, M, C)`` (Eq. 1).

    Args:
        z: features (B,D,H,W).
        m: target clue M (B,H,W).
        c: CAM prediction C (B,H,W).
        beta: bias term (paper: 1).

    Returns:
        (B,D) L2-normalised spatial mean of ``z * (beta - m * c)``.
    """
    _check(z, m, c)
    w = beta - m * c
    return F.normalize((z * w.unsqueeze(1)).mean(dim=(2, 3)), dim=1)


__all__ = ["phi_neg", "phi_pos", "pool_norm"]

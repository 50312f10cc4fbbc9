"""LOCATE baseline losses (REFERENCE_NOTES A, "LOCATE baseline").

* Part prototype distillation: ``max(0, 1 - cos(e, proto) - margin)`` with
  ``e = sum(desc * minmax(CAM)) / sum(minmax(CAM))`` over the egocentric projection features,
  for samples with a reliable part (from the 2nd epoch; weight 1).
* Concentration loss on every class map (weight 0.07): the spatial variance of each
  normalised, rectified map around its centre of mass (grid-cell units).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from afford.grounding.parts import minmax


def cam_weighted_embedding(desc: Tensor, cam: Tensor, eps: float = 1e-10) -> Tensor:
    """``e = sum_hw(desc * minmax(cam)) / sum_hw(minmax(cam))``: (B,D,h,w), (B,h,w) -> (B,D)."""
    w = minmax(cam)
    return (desc * w.unsqueeze(1)).sum(dim=(2, 3)) / (w.sum(dim=(1, 2)).unsqueeze(1) + eps)


def part_distillation_loss(
    desc: Tensor, cam: Tensor, proto: Tensor, valid: Tensor, margin: float = 0.5
) -> Tensor:
    """LOCATE part-prototype distillation, mean over ``valid`` samples (0 with graph if none).

    Args:
        desc: (B,D,h,w) egocentric projection features.
        cam: (B,h,w) egocentric CAM of the GT class.
        proto: (B,D) part prototype (chosen centroid).
        valid: (B,) bool, a reliable part was found.
        margin: hinge margin (0.5).
    """
    e = cam_weighted_embedding(desc, cam)
    per = F.relu(1.0 - F.cosine_similarity(e, proto.to(e.dtype), dim=1) - margin)
    if not bool(valid.any()):
        return desc.sum() * 0.0 + cam.sum() * 0.0
    return per[valid].mean()


def concentration_loss(maps: Tensor, eps: float = 1e-10) -> Tensor:
    """Mean spatial variance of the class maps around their centres of mass.

    Args:
        maps: (B,C,h,w) class activation maps (all classes).

    Returns:
        Scalar: mean over (b,c) of ``sum_u p(u) ||u - mu||^2`` with ``p = relu(map) / sum``
        and ``u`` the (row, col) grid coordinates.
    """
    b, c, h, w = maps.shape
    p = F.relu(maps)
    p = p / (p.sum(dim=(2, 3), keepdim=True) + eps)
    rows = torch.arange(h, device=maps.device, dtype=maps.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=maps.device, dtype=maps.dtype).view(1, 1, 1, w)
    mu_r = (p * rows).sum(dim=(2, 3), keepdim=True)
    mu_c = (p * cols).sum(dim=(2, 3), keepdim=True)
    var = (p * ((rows - mu_r) ** 2 + (cols - mu_c) ** 2)).sum(dim=(2, 3))
    return var.mean()

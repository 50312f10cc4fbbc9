"""Trainable heads on frozen DINO keys (Sec. 3.1; REFERENCE_NOTES A "Trainable heads").

Module names follow the released code so its state dicts map one-to-one
(:data:`RELEASED_KEY_MAP` documents the layout):

* ``aff_proj``: :class:`AffProj` (``norm`` LayerNorm, ``fc1`` Linear D->4D, GELU, ``fc2``
  Linear 4D->D) on every key token; LOCATE adds a residual.
* ``aff_ego_proj`` / ``aff_exo_proj``: ``nn.Sequential`` of 2 x [Conv3x3, BN, ReLU]
  (indices 0,1,2,3,4,5; parameters at 0/1/3/4).
* ``aff_classifier``: Conv1x1 D->C shared by both views.
* ``K_contrast_projection`` / ``pixel_contrast_projection``: Conv1x1 D->D for the prototype and
  pixel losses.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

# Our state-dict key prefix -> released-code prefix (identical by construction).
RELEASED_KEY_MAP: dict[str, str] = {
    "aff_proj.norm.": "aff_proj.norm.",
    "aff_proj.fc1.": "aff_proj.fc1.",
    "aff_proj.fc2.": "aff_proj.fc2.",
    "aff_ego_proj.": "aff_ego_proj.",
    "aff_exo_proj.": "aff_exo_proj.",
    "aff_classifier.": "aff_classifier.",
    "K_contrast_projection.": "K_contrast_projection.",
    "pixel_contrast_projection.": "pixel_contrast_projection.",
}


class AffProj(nn.Module):
    """Token MLP ``fc2(GELU(fc1(LayerNorm(x))))`` (+ ``x`` if ``residual``) on a feature map.

    (B,D,h,w) -> (B,D,h,w); hidden width 4D.
    """

    def __init__(self, dim: int, residual: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        t = x.permute(0, 2, 3, 1)  # (B,h,w,D)
        y = self.fc2(self.act(self.fc1(self.norm(t))))
        if self.residual:
            y = y + t
        return y.permute(0, 3, 1, 2).contiguous()


def conv_block(dim: int) -> nn.Sequential:
    """2 x [Conv3x3 D->D, BatchNorm, ReLU] (``aff_ego_proj`` / ``aff_exo_proj``)."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(dim),
        nn.ReLU(inplace=True),
        nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(dim),
        nn.ReLU(inplace=True),
    )

"""Frozen DINOv2 ViT-B/14 at 224x224 (timm ``vit_base_patch14_dinov2``, img_size 224).

Returns the patch tokens of the last 3 blocks before the final norm as (B, 768, 16, 16) maps
(REFERENCE_NOTES C), using timm's own ``forward_intermediates``.

The released DINOv2 weights carry a position embedding for 518x518 inputs (37x37 grid). Meta's
model interpolates it at run time (bicubic, no antialiasing, scale factor (16 + 0.1) / 37);
we do the same interpolation once at load time, so a 224 input sees exactly the position
embedding Meta's hub model would use.
"""

from __future__ import annotations

import math
import os

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from afford.backbones.common import FrozenBackbone, seeded
from afford.backbones.registry import INPUT_SIZE, TINY_SEED
from afford.backbones.registry import family as family_spec
from afford.backbones.registry import variant as variant_spec
from afford.backbones.weights import load_family_vit
from afford.errors import AffordError

NUM_LAYERS_OUT = family_spec("dinov2").num_layers_out
INTERPOLATE_OFFSET = 0.1


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize a ViT position embedding (1, 1+M*M, D) to (1, 1+grid*grid, D) as DINOv2 does at
    run time: bicubic, no antialiasing, scale factor (grid + 0.1) / M; the CLS entry is kept."""
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    if m * m != n:
        raise AffordError(f"DINOv2 pos_embed has {n} patch entries, not a square grid")
    if m == grid:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    dim = patch_pos.shape[-1]
    scale = (grid + INTERPOLATE_OFFSET) / m
    patch = patch_pos.float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patch.shape[-2:] != (grid, grid):
        raise AffordError(f"DINOv2 pos_embed interpolation gave {tuple(patch.shape[-2:])}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch], dim=1)


def build_vit(variant: str) -> VisionTransformer:
    """timm DINOv2 ViT at img_size 224 for registry ``variant`` ("vitb14" | "tiny" |
    "tiny-synth", the last two the same architecture), seeded random init."""
    spec = variant_spec("dinov2", variant)
    with seeded(TINY_SEED):
        if spec.arch != "tiny":
            return timm.create_model(
                spec.arch, pretrained=False, num_classes=0, img_size=INPUT_SIZE
            )
        return VisionTransformer(img_size=INPUT_SIZE, num_classes=0, **spec.tiny_args)


def convert_state_dict(sd: dict[str, torch.Tensor], vit: nn.Module) -> dict[str, torch.Tensor]:
    """Meta-layout (``mask_token``, 518px ``pos_embed``) or timm-layout DINOv2 weights -> the
    state dict of ``vit`` (timm's own converter after DINOv2's pos-embed interpolation)."""
    sd = dict(sd)
    if "pos_embed" in sd:
        sd["pos_embed"] = interpolate_pos_embed(sd["pos_embed"], vit.patch_embed.grid_size[0])
    return checkpoint_filter_fn(sd, vit)


class Dinov2Backbone(FrozenBackbone):
    """Frozen DINOv2; ``forward(images (B,3,224,224) in [0,1])`` returns a list of 3 maps
    (B, D, 16, 16): patch tokens of the last 3 blocks (oldest first), before the final norm.

    Attributes: ``feat_dim`` (D), ``num_heads``, ``patch_size``, ``grid`` (16), ``input_size``,
    ``model_id``, ``vit`` (the timm model).
    """

    def __init__(self, vit: nn.Module, model_id: str) -> None:
        super().__init__(model_id=model_id, normalize=family_spec("dinov2").normalize)
        self.vit = vit
        self.feat_dim = int(vit.embed_dim)
        self.num_heads = int(vit.blocks[-1].attn.num_heads)
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.grid = self.input_size // self.patch_size
        self.freeze()

    @property
    def inner(self) -> nn.Module:
        """The wrapped timm model (what ``save_weights`` writes)."""
        return self.vit

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.prepare(images)
        return self.vit.forward_intermediates(
            x, indices=NUM_LAYERS_OUT, norm=False, output_fmt="NCHW", intermediates_only=True
        )


def load_dinov2(
    weights: str | os.PathLike | None = None,
    variant: str = "vitb14",
    device: str | torch.device | None = None,
) -> Dinov2Backbone:
    """Frozen DINOv2 backbone.

    Args:
        weights: path to a weight file (Meta's ``dinov2_vitb14_pretrain.pth``, a timm
            ``model.safetensors``, or for ``variant="tiny"`` a tiny checkpoint); None resolves
            the real weights for "vitb14" and gives the deterministic random init for "tiny";
            "random" gives the deterministic random init of either variant.
        variant: "vitb14" (ViT-B/14, D=768), "tiny" (patch 14, D=96, 4 blocks, deterministic
            random init) or "tiny-synth" (the tiny architecture with the weights shipped in
            ``afford/assets/``, self-supervised on synthetic renders without labels;
            docs/tiny-backbones.md; ``weights=PATH`` loads another such file).
        device: where to put the module (default: CPU).
    """
    vit, model_id = load_family_vit("dinov2", variant, weights, build_vit, convert_state_dict)
    module = Dinov2Backbone(vit, model_id)
    return module.to(device) if device is not None else module

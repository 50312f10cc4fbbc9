"""Frozen DINO ViT-S/16 (timm ``vit_small_patch16_224``): last-block keys and CLS attention.

The descriptors of Selective Contrastive Learning (REFERENCE_NOTES A) are the last block's
attention **keys**, laid out with channel = d * num_heads + head, plus the last block's
CLS->patch attention of every head. Both are re-computed from the output of the last block's
``attn.qkv`` projection, captured by a forward hook while timm runs its own forward pass.
"""

from __future__ import annotations

import os

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from afford.backbones.common import FrozenBackbone, seeded
from afford.backbones.registry import INPUT_SIZE, TINY_SEED
from afford.backbones.registry import family as family_spec
from afford.backbones.registry import variant as variant_spec
from afford.backbones.weights import load_family_vit
from afford.errors import AffordError


def split_qkv(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a qkv projection output (B, N, 3*D) into q, k, v each (B, heads, N, D/heads),
    using timm's layout (the 3*D axis is [q | k | v], each head-major)."""
    b, n, three_d = qkv.shape
    head_dim = three_d // (3 * num_heads)
    q, k, v = qkv.reshape(b, n, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def keys_map(k: torch.Tensor, grid: int) -> torch.Tensor:
    """Patch keys (B, heads, 1+grid^2, hd) -> map (B, hd*heads, grid, grid) with
    channel = d * heads + head (the released code's interleaved layout); the CLS token is
    dropped."""
    b, h, n, hd = k.shape
    flat = k[:, :, 1:].permute(0, 3, 1, 2).reshape(b, hd * h, n - 1)
    return flat.reshape(b, hd * h, grid, grid)


def cls_attention(q: torch.Tensor, k: torch.Tensor, grid: int) -> torch.Tensor:
    """CLS->patch attention (B, heads, grid, grid) of one block: softmax over all tokens of
    q_cls . k^T / sqrt(hd), then the CLS column is dropped (rows do not re-normalise)."""
    b, h, n, hd = q.shape
    logits = (q[:, :, :1] @ k.transpose(-2, -1)) * hd**-0.5  # (B, h, 1, N)
    attn = logits.softmax(dim=-1)[:, :, 0, 1:]
    return attn.reshape(b, h, grid, grid)


def build_vit(variant: str) -> VisionTransformer:
    """timm ViT for registry ``variant`` ("vits16" | "tiny" | "tiny-synth", the last two the
    same architecture), random init (seeded for reproducibility)."""
    spec = variant_spec("dino", variant)
    with seeded(TINY_SEED):
        if spec.arch != "tiny":
            return timm.create_model(spec.arch, pretrained=False, num_classes=0)
        return VisionTransformer(img_size=INPUT_SIZE, num_classes=0, **spec.tiny_args)


class DinoBackbone(FrozenBackbone):
    """Frozen DINO ViT; ``forward(images (B,3,224,224) in [0,1])`` returns a dict:

    - ``keys`` (B, D, 14, 14): last block's attention keys, channel = d * num_heads + head;
    - ``cls_attn`` (B, num_heads, 14, 14): last block's CLS->patch attention (softmax over all
      197 tokens, CLS column dropped);
    - ``tokens`` (B, 196, D): patch tokens of the final output (after the final norm).

    Attributes: ``feat_dim`` (D), ``num_heads``, ``patch_size``, ``input_size``, ``grid``,
    ``model_id``, ``vit`` (the timm model).
    """

    def __init__(self, vit: nn.Module, model_id: str) -> None:
        super().__init__(model_id=model_id, normalize=family_spec("dino").normalize)
        self.vit = vit
        attn = vit.blocks[-1].attn
        if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.k_norm, nn.Identity):
            raise AffordError("DINO backbone: qk-norm ViTs are not supported")
        self.feat_dim = int(vit.embed_dim)
        self.num_heads = int(attn.num_heads)
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.grid = self.input_size // self.patch_size
        self._recording = False
        self._qkv: torch.Tensor | None = None
        attn.qkv.register_forward_hook(self._capture)
        self.freeze()

    @property
    def inner(self) -> nn.Module:
        """The wrapped timm model (what ``save_weights`` writes)."""
        return self.vit

    def _capture(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        """Forward hook on the last block's qkv Linear: keep its output (B, N, 3*D)."""
        if self._recording:
            self._qkv = output

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.prepare(images)
        self._recording, self._qkv = True, None
        try:
            out = self.vit.forward_features(x)
            qkv = self._qkv
        finally:
            self._recording, self._qkv = False, None
        if qkv is None:
            raise AffordError("DINO backbone: the last block's qkv projection was not called")
        q, k, _ = split_qkv(qkv, self.num_heads)
        return {
            "keys": keys_map(k, self.grid),
            "cls_attn": cls_attention(q, k, self.grid),
            "tokens": out[:, self.vit.num_prefix_tokens :],
        }


def _timm_filter(state_dict: dict, vit: nn.Module) -> dict:
    """Official DINO keys -> timm's (timm's own checkpoint filter)."""
    return checkpoint_filter_fn(state_dict, vit)


def load_dino(
    weights: str | os.PathLike | None = None,
    variant: str = "vits16",
    device: str | torch.device | None = None,
) -> DinoBackbone:
    """Frozen DINO backbone.

    Args:
        weights: path to a weight file (official ``dino_deitsmall16_pretrain.pth``, a timm
            ``model.safetensors``, or for ``variant="tiny"`` a tiny checkpoint in the same
            layout); None resolves the real weights (AFFORD_WEIGHTS, hub caches) for "vits16"
            and gives the deterministic random init for "tiny"; "random" gives the
            deterministic random init of either variant (tests, benchmarks).
        variant: "vits16" (ViT-S/16, D=384, 6 heads), "tiny" (D=96, 6 heads, 4 blocks,
            deterministic random init) or "tiny-synth" (the tiny architecture with the weights
            shipped in ``afford/assets/``, self-supervised on synthetic renders without labels;
            docs/tiny-backbones.md; ``weights=PATH`` loads another such file).
        device: where to put the module (default: CPU).
    """
    vit, model_id = load_family_vit("dino", variant, weights, build_vit, _timm_filter)
    module = DinoBackbone(vit, model_id)
    return module.to(device) if device is not None else module

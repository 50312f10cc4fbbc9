"""The pre-training network: a tiny timm ViT of the DINO family with projection heads
(:class:`SSLNet`), its EMA teacher (:class:`StudentTeacher`), and the frozen afford backbone
around the trained ViT (:func:`wrap_backbone`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from afford.backbones import dino, dinov2
from afford.backbones.common import FrozenBackbone
from afford.errors import AffordError

LAYERSCALE_INIT = 0.1  # DINOv2 tiny: LayerScale gammas at the start of pre-training
#: family -> (tiny ViT builder, frozen backbone class)
BUILDERS = {
    "dino": (dino.build_vit, dino.DinoBackbone),
    "dinov2": (dinov2.build_vit, dinov2.Dinov2Backbone),
}


class Projector(nn.Module):
    """MLP head D -> 256 -> out (GELU), applied per token: (B,N,D) -> (B,N,out)."""

    def __init__(self, dim: int, out: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def embed_any_size(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch + position embedding of a timm ViT for a square input of any multiple of the
    patch size: (B,3,S,S) -> (B,1+(S/p)^2,D). The position embedding is resampled (bicubic,
    differentiable, as timm's dynamic_img_size) when S differs from the model's 224, so short
    pre-training can run on smaller views (like DINO's local crops) and still train the
    224-resolution parameters."""
    pe = vit.patch_embed
    t = pe.norm(pe.proj(x).flatten(2).transpose(1, 2))
    g = x.shape[-1] // int(pe.patch_size[0])
    pos = vit.pos_embed
    if g != pe.grid_size[0]:
        pos = resample_abs_pos_embed(
            pos, new_size=(g, g), old_size=pe.grid_size, num_prefix_tokens=1
        )
    t = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), t], 1) + pos
    return vit.norm_pre(vit.patch_drop(vit.pos_drop(t)))


class SSLNet(nn.Module):
    """A timm ViT plus projection heads; ``forward(x normalised (B,3,S,S))`` -> dict:

    - ``cls`` (B,P): CLS projection (image-level loss);
    - ``dense`` dict of dense maps (B,C,g,g): "tokens" (projection of the final normed patch
      tokens) and, for DINO, "keys" (last block's attention keys, all heads concatenated) or,
      for DINOv2, "last3" (mean of the L2-normalised last-3-block token maps, before the norm).
    """

    def __init__(self, vit: nn.Module, family: str, proj_dim: int) -> None:
        super().__init__()
        self.vit, self.family = vit, family
        dim = int(vit.embed_dim)
        self.cls_head = Projector(dim, proj_dim)
        self.tok_head = Projector(dim, proj_dim)

    def forward(self, x: torch.Tensor) -> dict:
        vit = self.vit
        h = embed_any_size(vit, x)
        g = x.shape[-1] // int(vit.patch_embed.patch_size[0])
        outs = []
        for blk in vit.blocks:
            outs.append(h)
            h = blk(h)
        outs.append(h)  # outs[i] = input of block i; outs[-1] = last block output
        p = int(vit.num_prefix_tokens)
        final = vit.norm(h)
        b = x.shape[0]

        def to_map(t: torch.Tensor) -> torch.Tensor:
            return t[:, p:].transpose(1, 2).reshape(b, -1, g, g)

        dense = {"tokens": to_map(self.tok_head(final))}
        if self.family == "dino":
            last = vit.blocks[-1]
            d = int(vit.embed_dim)
            keys = last.attn.qkv(last.norm1(outs[-2]))[..., d : 2 * d]
            dense["keys"] = to_map(keys)
        else:
            maps = [F.normalize(to_map(t), dim=1) for t in outs[-3:]]
            dense["last3"] = torch.stack(maps).mean(0)
        return {"cls": self.cls_head(final[:, 0]), "dense": dense}


def build_student(family: str, proj_dim: int, seed: int) -> SSLNet:
    """The tiny ViT of ``family`` (deterministic random init, as ``variant="tiny"``; for DINOv2
    the LayerScale gammas are reset from 1e-5 to ``LAYERSCALE_INIT`` so that a run of a few
    hundred steps can use the blocks at all) plus heads seeded with ``seed``; trainable."""
    if family not in BUILDERS:
        raise AffordError(f"--family must be one of {tuple(BUILDERS)}, got {family!r}")
    vit = BUILDERS[family][0]("tiny")
    with torch.no_grad():  # DINOv2's LayerScale starts at 1e-5: too small for a short run
        for blk in vit.blocks:
            for ls in (blk.ls1, blk.ls2):
                if hasattr(ls, "gamma"):
                    ls.gamma.fill_(LAYERSCALE_INIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SSLNet(vit, family, proj_dim)
    return net.train()


class StudentTeacher(nn.Module):
    """The student :class:`SSLNet` (trained) and its EMA teacher (a copy, no gradients): the
    module the training loop checkpoints, so a resumed run continues both."""

    def __init__(self, student: SSLNet) -> None:
        super().__init__()
        self.student = student
        self.teacher = copy.deepcopy(student).requires_grad_(False)

    @torch.no_grad()
    def update_teacher(self, m: float) -> None:
        """``theta_t <- m theta_t + (1 - m) theta_s`` for every parameter."""
        for pt, ps in zip(self.teacher.parameters(), self.student.parameters()):
            pt.mul_(m).add_(ps.detach(), alpha=1 - m)


def wrap_backbone(vit: nn.Module, family: str, model_id: str) -> FrozenBackbone:
    """The frozen afford backbone (``DinoBackbone`` / ``Dinov2Backbone``) around a trained
    tiny ViT, e.g. for ``afford.backbones.save_weights``."""
    return BUILDERS[family][1](vit, model_id)

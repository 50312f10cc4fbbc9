"""Frozen CLIP ViT-B/16 (open_clip) with ClearCLIP dense patch embeddings.

``dense(images, clearclip=True)`` follows REFERENCE_NOTES A: all blocks but the last run as
usual (open_clip's own blocks); the last block is replaced by its attention branch alone with
query-query attention, softmax(q q^T / sqrt(d_head)) v, then the out-projection -- no
residual, no MLP -- and ``ln_post`` and the projection are applied to every token. With
``clearclip=False`` the last block runs unchanged (vanilla dense features).

Weights are OpenAI-layout state dicts (``ViT-B-16.pt``, a TorchScript archive or a plain
state dict) or open_clip ``open_clip_model.safetensors`` files; the architecture is read off
the file, and an OpenAI-layout file implies QuickGELU as in OpenAI's model. Tokenisation uses
open_clip's bundled BPE vocabulary (works offline).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from afford.backbones.common import NORMALIZATIONS, FrozenBackbone, seeded
from afford.backbones.registry import TINY_SEED
from afford.backbones.registry import variant as variant_spec
from afford.backbones.weights import file_fingerprint, load_into, read_state_dict, resolve_weights
from afford.errors import AffordError

HEAD_WIDTH = 64  # OpenAI CLIP: heads = width // 64 in both towers
REQUIRED_KEYS = (
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "ln_final.weight",
    "text_projection",
)
# Not weights: OpenAI's TorchScript file stores its config as tensors; a traced model also
# carries the (recomputed) causal text mask.
NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def config_from_state_dict(sd: dict[str, torch.Tensor], source: str) -> dict:
    """open_clip CLIP config (embed_dim, vision_cfg, text_cfg) read off an OpenAI-layout state
    dict: widths from conv1 / ln_final, depths from the resblock indices, heads = width // 64."""
    missing = [k for k in REQUIRED_KEYS if k not in sd]
    if missing:
        raise AffordError(
            f"weight file {source} is not an OpenAI/open_clip CLIP ViT state dict "
            f"(missing {missing[:4]}); expected e.g. OpenAI's ViT-B-16.pt or open_clip's "
            "open_clip_model.safetensors"
        )

    def depth(prefix: str) -> int:
        ids = {int(k[len(prefix) :].split(".")[0]) for k in sd if k.startswith(prefix)}
        return max(ids) + 1 if ids else 0

    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    text_width = sd["ln_final.weight"].shape[0]
    return {
        "embed_dim": int(sd["text_projection"].shape[1]),
        "vision_cfg": {
            "image_size": int(patch * grid),
            "layers": depth("visual.transformer.resblocks."),
            "width": int(width),
            "patch_size": int(patch),
        },
        "text_cfg": {
            "context_length": int(sd["positional_embedding"].shape[0]),
            "vocab_size": int(sd["token_embedding.weight"].shape[0]),
            "width": int(text_width),
            "heads": int(text_width // HEAD_WIDTH),
            "layers": depth("transformer.resblocks."),
        },
    }


def build_clip(cfg: dict, quick_gelu: bool = True) -> nn.Module:
    """open_clip ``CLIP`` from a config dict, fp32, seeded random init."""
    with seeded(TINY_SEED):
        return open_clip.CLIP(
            cfg["embed_dim"],
            vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
            text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]),
            quick_gelu=quick_gelu,
        )


def _quick_gelu_for(path: Path) -> bool:
    """QuickGELU unless an open_clip config next to the file says otherwise (OpenAI layout
    implies QuickGELU; a non-OpenAI open_clip checkpoint ships open_clip_config.json)."""
    cfg_path = path.parent / "open_clip_config.json"
    if path.suffix == ".safetensors" and cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text())
            return bool(cfg.get("model_cfg", {}).get("quick_gelu", False))
        except (OSError, ValueError) as exc:
            raise AffordError(f"cannot parse {cfg_path}: {exc}") from exc
    return True


def clearclip_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP's last block (REFERENCE_NOTES A) for an open_clip ResidualAttentionBlock.

    x: (B, N, W) block input (batch first). Returns (B, N, W):
    ls_1(out_proj(softmax(q q^T / sqrt(d_head)) v)) with q, v from the block's in-projection of
    ln_1(x); no residual, no MLP.
    """
    attn: nn.MultiheadAttention = block.attn
    b, n, w = x.shape
    heads = attn.num_heads
    q, _, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q = q.reshape(b, n, heads, w // heads).transpose(1, 2)
    v = v.reshape(b, n, heads, w // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, q, v)  # default scale 1/sqrt(d_head)
    out = out.transpose(1, 2).reshape(b, n, w)
    return block.ls_1(attn.out_proj(out))


class ClipBackbone(FrozenBackbone):
    """Frozen CLIP with ``encode_text(list[str]) -> (B, E)`` and
    ``dense(images (B,3,224,224) in [0,1], clearclip=True) -> (B, E, 14, 14)``.

    Outputs are raw (not L2-normalised) embeddings in CLIP's joint space. Attributes:
    ``embed_dim`` (E), ``patch_size``, ``grid``, ``input_size``, ``context_length``,
    ``normalize`` ("clip" | "imagenet"), ``model_id``, ``clip`` (the open_clip model).
    """

    def __init__(self, clip: nn.Module, model_id: str, normalize: str) -> None:
        super().__init__(model_id=model_id, normalize=normalize)
        self.clip = clip
        visual = clip.visual
        if (
            visual.attn_pool is not None
            or not isinstance(visual.proj, nn.Parameter)
            or len(visual.transformer.resblocks) < 2
        ):
            raise AffordError("CLIP backbone: only plain OpenAI-style ViT towers are supported")
        self.embed_dim = int(visual.output_dim)
        self.patch_size = int(visual.patch_size[0])
        self.input_size = int(visual.image_size[0])
        self.grid = self.input_size // self.patch_size
        self.context_length = int(clip.context_length)
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)
        self.freeze()

    @property
    def inner(self) -> nn.Module:
        """The wrapped open_clip model (what ``save_weights`` writes)."""
        return self.clip

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """BPE token ids (B, context_length); AffordError for non-strings or too-long texts."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list | tuple) or not texts:
            raise AffordError(f"texts: expected a non-empty list of strings, got {texts!r}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise AffordError(f"texts[{i}]: expected a string, got {type(t).__name__}")
            n = len(self.tokenizer.encode(t)) + 2
            if n > self.context_length:
                raise AffordError(
                    f"texts[{i}] is {n} tokens long; CLIP accepts at most "
                    f"{self.context_length} (shorten the prompt): {t[:60]!r}"
                )
        return self.tokenizer(list(texts))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Text embeddings (B, E) of a list of B prompts (raw, not normalised)."""
        tokens = self.tokenize(texts).to(self.device)
        return self.clip.encode_text(tokens)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embeddings (B, E) (open_clip's pooled CLS output, raw)."""
        return self.clip.encode_image(self.prepare(images))

    @torch.no_grad()
    def dense(self, images: torch.Tensor, clearclip: bool = True) -> torch.Tensor:
        """Patch embeddings (B, E, grid, grid) in the joint space (grid = 14 for ViT-B/16).

        clearclip=True: ClearCLIP last block (see ``clearclip_attention``); False: the last
        block unchanged. ``ln_post`` and ``proj`` are applied to every token in both cases.
        """
        visual = self.clip.visual
        blocks = visual.transformer.resblocks
        # tokens entering the last block: open_clip's intermediates after block L-2
        inter = visual.forward_intermediates(
            self.prepare(images),
            indices=[len(blocks) - 2],
            stop_early=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        x = torch.cat(
            [inter["image_intermediates_prefix"][0], inter["image_intermediates"][0]], dim=1
        )  # (B, 1+grid^2, W)
        if clearclip:
            x = clearclip_attention(blocks[-1], x)
        else:
            x = _run_block(blocks[-1], x, visual.transformer.batch_first)
        tokens = visual.ln_post(x) @ visual.proj  # (B, N, E)
        b = tokens.shape[0]
        patches = tokens[:, 1:].transpose(1, 2)
        return patches.reshape(b, self.embed_dim, self.grid, self.grid)

    def forward(self, images: torch.Tensor, clearclip: bool = True) -> torch.Tensor:
        """Same as ``dense``."""
        return self.dense(images, clearclip=clearclip)


def _run_block(block: nn.Module, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    if batch_first:
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def load_clip(
    weights: str | os.PathLike | None = None,
    variant: str = "vitb16",
    normalize: str = "clip",
    device: str | torch.device | None = None,
    quick_gelu: bool | None = None,
) -> ClipBackbone:
    """Frozen CLIP backbone.

    Args:
        weights: path to an OpenAI-layout file (``ViT-B-16.pt``, TorchScript or state dict) or
            an open_clip ``.safetensors``; the architecture is read off the file (so a tiny
            checkpoint saved in this layout loads with ``variant="tiny"``). None resolves the
            real ViT-B/16 weights for "vitb16" and gives the deterministic random init for
            "tiny"; "random" gives the deterministic random init of either variant.
        variant: "vitb16" (ViT-B/16, E=512) or "tiny" (vision width 128 x 3 blocks, text width
            128 x 2 blocks, E=64, the same BPE tokenizer).
        normalize: "clip" (CLIP's own mean/std; paper mode) or "imagenet" (what the released
            SelectiveCL code feeds CLIP; official mode).
        device: where to put the module (default: CPU).
        quick_gelu: override the activation; default QuickGELU (OpenAI) unless an
            ``open_clip_config.json`` beside a safetensors file says otherwise.
    """
    spec = variant_spec("clip", variant)
    if normalize not in NORMALIZATIONS:
        raise AffordError(
            f"normalize={normalize!r} is not supported; choose one of {sorted(NORMALIZATIONS)}"
        )
    if weights == "random" or (weights is None and variant == "tiny"):
        cfg = spec.tiny_args if spec.arch == "tiny" else open_clip.get_model_config(spec.arch)
        qg = True if quick_gelu is None else quick_gelu
        clip = build_clip(cfg, quick_gelu=qg)
        tag = f"random{TINY_SEED}"
    else:
        path = resolve_weights("clip", weights) if spec.weights == "real" else Path(weights)
        if not path.is_file():
            raise AffordError(f"CLIP tiny weight file {path} does not exist (weights={weights!r})")
        sd = read_state_dict(path)
        for key in NON_WEIGHT_KEYS:
            sd.pop(key, None)
        cfg = config_from_state_dict(sd, str(path))
        qg = _quick_gelu_for(path) if quick_gelu is None else quick_gelu
        clip = build_clip(cfg, quick_gelu=qg)
        if "logit_scale" in sd:
            sd["logit_scale"] = sd["logit_scale"].reshape(clip.logit_scale.shape)
        load_into(clip, sd, str(path))
        tag = file_fingerprint(path)
    act = "" if qg else "-gelu"
    module = ClipBackbone(clip, f"clip-{variant}{act}@{tag}+{normalize}", normalize)
    return module.to(device) if device is not None else module

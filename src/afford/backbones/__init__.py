"""Frozen backbones: DINO ViT-S/16, DINOv2 ViT-B/14, CLIP ViT-B/16 (ClearCLIP), each with a
deterministic ``tiny`` variant (and, for DINO/DINOv2, ``tiny-synth``: the tiny architecture
self-supervised on synthetic renders, weights shipped in ``afford/assets/``; see
``afford.pretrain``). Built on timm and open_clip; see each module for outputs. Every backbone
fact (variants, dimensions, depths, patch and grid, timm / open_clip names, weight files, hub
ids, shipped files) lives in one registry, ``afford.backbones.registry``.

- ``load_dino(weights=None, variant="vits16"|"tiny", device=None)`` -> module; ``module(images)``
  -> {"keys" (B,D,14,14), "cls_attn" (B,heads,14,14), "tokens" (B,196,D)}.
- ``load_dinov2(weights=None, variant="vitb14"|"tiny", device=None)`` -> module;
  ``module(images)`` -> list of 3 maps (B,D,16,16).
- ``load_clip(weights=None, variant="vitb16"|"tiny", normalize="clip"|"imagenet", device=None)``
  -> module with ``encode_text(list[str])`` (B,E) and ``dense(images, clearclip=True)``
  (B,E,14,14).
- ``save_weights(module, path)`` writes a backbone (e.g. a trained tiny one) in the layout
  its loader reads.
- ``weights_status()`` -> {"dino"|"dinov2"|"clip": {"found", "path", "hint"}}.
- ``FAMILIES`` (``afford.backbones.registry``): {family: FamilySpec(variants, weights, ...)}.

Images are float (B,3,224,224) in [0,1]; every module normalises internally.
"""

from afford.backbones.clip import ClipBackbone, load_clip
from afford.backbones.dino import DinoBackbone, load_dino
from afford.backbones.dinov2 import Dinov2Backbone, load_dinov2
from afford.backbones.registry import FAMILIES
from afford.backbones.weights import resolve_weights, save_weights, weights_status

__all__ = [
    "ClipBackbone",
    "DinoBackbone",
    "Dinov2Backbone",
    "FAMILIES",
    "load_clip",
    "load_dino",
    "load_dinov2",
    "resolve_weights",
    "save_weights",
    "weights_status",
]

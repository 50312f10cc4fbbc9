"""Label-free self-supervised pre-training of the tiny DINO / DINOv2 (the task layer).

Why: the deterministic *random* tiny backbones carry almost no dense signal, so the CPU
benchmarks of both papers cannot learn on top of them. The real backbones are self-supervised
on natural images; the tiny ones get a small self-supervised pre-training on renders of the
synthetic world instead. The input is **RGB pixels only**, a bare ``(N,R,H,W,3) uint8`` array
(R renders of each scene) and, for renders from two cameras, their multi-view geometry
(``flow``/``valid``: which pixel of the other view sees the same surface point, the classic
self-supervision of dense object descriptors). The app layer renders them
(``afford.synth.pretrain_views``, ``afford pretrain-backbone``); this package never sees the
synthetic world.

Objective (two augmented views ``a``, ``b`` of the same scene; a student network ``s`` and an
EMA teacher ``t``; all embeddings L2-normalised; DenseCL/PixPro/VADeR style dense contrast plus
MoCo-v3 style image-level contrast):

1. Views: two different renders of the same scene, each cut by a random resized crop (scale
   ``data.crop_scale``, aspect 3/4..4/3, resized to ``data.view_size``) with a known box and a
   random horizontal flip, then colour jitter, grayscale, blur and solarisation
   (:mod:`afford.pretrain.augment`).
2. Dense pixel-contrastive loss (D1) between the student's embedding at each view-a patch and
   the teacher's view-b map sampled at the same source point (exact crop geometry; through the
   flow for two cameras), the other sampled pairs being the negatives; applied to a projection
   of the final tokens **and** directly to the last block's attention keys (DINO; what
   grounding reads) or the mean of the L2-normalised last-3-block maps (DINOv2; what
   correspondence reads) (:mod:`afford.pretrain.losses`).
3. Image-level InfoNCE (G1) on the CLS projections.
4. ``L = lambda_dense * mean_heads L_dense + lambda_global * L_img``, symmetrised. Teacher:
   ``theta_t <- m theta_t + (1 - m) theta_s``, ``m`` rising ``train.momentum[0]`` ->
   ``[1]`` (cosine). AdamW, linear warm-up then cosine decay, per step
   (:mod:`afford.pretrain.recipe`, on :func:`afford.engine.fit`).

Everything is seeded from ``train.seed``, so a run with the same seed, data and steps gives
the same weights (single-process CPU), also across an interruption and resume.

- ``pretrain(images, cfg, flow=None, valid=None) -> PretrainResult`` (``.vit``, ``.history``);
- ``PretrainConfig`` (sections ``data``, ``model``, ``train``), loaded with
  ``afford.config.load(PretrainConfig, "pretrain/tiny-synth-dino", sets)``;
- ``wrap_backbone(vit, family, model_id)`` -> the frozen ``DinoBackbone`` / ``Dinov2Backbone``
  (``afford.backbones.save_weights`` writes it).
"""

from afford.pretrain.config import PretrainConfig, PretrainData, PretrainModel, PretrainTrain
from afford.pretrain.model import wrap_backbone
from afford.pretrain.recipe import PretrainResult, pretrain

__all__ = [
    "PretrainConfig",
    "PretrainData",
    "PretrainModel",
    "PretrainResult",
    "PretrainTrain",
    "pretrain",
    "wrap_backbone",
]

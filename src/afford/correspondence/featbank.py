"""Precomputed frozen-backbone outputs for correspondence training (a CPU speed-up).

The DINOv2 backbone is frozen (paper Sec. 4.2), so its layer maps depend only on the input
image. The only randomness in a training image is the background randomisation
(:func:`~afford.correspondence.sampling.randomize_background`). A :class:`FeatureBank` runs the
backbone once on ``K`` background randomisations of every training view; batches then draw one
of the ``K`` versions per image instead of running the backbone. Training computes the same
losses on the same kind of inputs, with ``K`` backgrounds per view instead of a fresh one per
draw. With ``K = 0`` (the default of ``sampling.feature_augs``,
:class:`~afford.correspondence.config.CorrSampling`) the backbone runs on every batch, as in
the paper.

Memory: ``views * K * layers * C * h * w`` half floats, e.g. 1,653 views x 4 x 3 x 96 x 16 x 16
= 0.91 GiB for the tiny DINOv2 and 7.3 GiB for ViT-B/14 (C = 768).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from afford.correspondence.sampling import randomize_background, seeded_generator
from afford.engine import dist
from afford.engine.fabric import Progress
from afford.errors import AffordError

log = logging.getLogger(__name__)


def bank_generator(seed: int, chunk: int) -> torch.Generator:
    """The generator of chunk ``chunk`` of a bank with seed ``seed`` (independent of the
    training batches' generators, which are seeded by ``(seed, step)``)."""
    return seeded_generator(seed, 0xBA4C, chunk)


class FeatureBank:
    """Layer maps of a frozen backbone for ``augs`` background randomisations of every view.

    Args:
        maps: per backbone layer, a (V*K, C, h, w) float16 tensor; row ``v * K + k`` is view
            ``v`` under randomisation ``k``.
        augs: K.
    """

    def __init__(self, maps: list[Tensor], augs: int) -> None:
        if augs < 1:
            raise AffordError(f"FeatureBank: augs must be >= 1, got {augs}")
        if not maps or any(m.shape[0] != maps[0].shape[0] for m in maps):
            raise AffordError("FeatureBank: maps must be a non-empty list of equal-length tensors")
        if maps[0].shape[0] % augs:
            raise AffordError(f"FeatureBank: {maps[0].shape[0]} rows is not a multiple of {augs}")
        self.maps, self.augs = maps, int(augs)
        self.n_views = maps[0].shape[0] // self.augs

    @property
    def nbytes(self) -> int:
        return sum(m.numel() * m.element_size() for m in self.maps)

    def gather(
        self, views: Tensor, augs: Tensor, device: torch.device | str = "cpu"
    ) -> list[Tensor]:
        """Layer maps of images (view ``views[b]``, randomisation ``augs[b]``).

        Args: views, augs (B,) int64. Returns per layer a (B, C, h, w) float32 tensor.
        """
        views, augs = views.long(), augs.long()
        if views.shape != augs.shape or views.ndim != 1:
            raise AffordError("FeatureBank.gather: views and augs must be equal-length 1-D")
        if views.numel() and (int(views.min()) < 0 or int(views.max()) >= self.n_views):
            raise AffordError(f"FeatureBank.gather: view index outside [0, {self.n_views})")
        if augs.numel() and (int(augs.min()) < 0 or int(augs.max()) >= self.augs):
            raise AffordError(f"FeatureBank.gather: augmentation index outside [0, {self.augs})")
        rows = views * self.augs + augs
        return [m.index_select(0, rows).to(device=device, dtype=torch.float32) for m in self.maps]


@torch.no_grad()
def build_feature_bank(
    backbone: torch.nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    augs: int,
    seed: int = 0,
    noise: float = 50.0,
    p_noise: float = 0.5,
    batch: int = 32,
    progress: bool = True,
) -> FeatureBank:
    """Run a frozen backbone on ``augs`` background randomisations of every view.

    Args:
        backbone: returns a list of (B, C, h, w) layer maps for (B, 3, S, S) images in [0, 1].
        images: (V, S, S, 3) uint8 crops; masks: (V, S, S) bool object masks.
        augs: K >= 1 randomisations per view; seed: the bank is a function of (seed, data).
        noise, p_noise: as in :func:`~afford.correspondence.sampling.randomize_background`.

    With several processes (:mod:`afford.engine.dist`) each rank computes every
    ``world``-th chunk of ``batch`` images and the shards are exchanged, so every rank holds
    the same bank as one process would build.
    """
    if augs < 1:
        raise AffordError(f"feature bank: augs must be >= 1, got {augs}")
    v = int(images.shape[0])
    if v == 0 or masks.shape[0] != v:
        raise AffordError(f"feature bank: {v} images and {masks.shape[0]} masks")
    try:
        device = next(backbone.parameters()).device
    except StopIteration:  # pragma: no cover - backbones have parameters
        device = torch.device("cpu")
    order = torch.arange(v * augs) // augs  # row r = view r // K, randomisation r % K
    ims, ms = torch.from_numpy(images), torch.from_numpy(masks)
    chunks = list(enumerate(range(0, v * augs, batch)))
    world, rank = dist.world_size(), dist.rank()
    mine = chunks[rank::world]  # with several processes each computes its share of chunks
    done: dict[int, list[Tensor]] = {}
    bar = Progress(len(mine), "feature bank (chunks)", enabled=progress)
    for c, lo in mine:
        idx = order[lo : lo + batch]
        x = randomize_background(ims[idx], ms[idx], bank_generator(seed, c), noise, p_noise)
        done[c] = [m.to(torch.float16).cpu() for m in backbone(x.to(device))]
        bar.update()
    bar.close()
    if world > 1:  # every rank gets every chunk (chunk c is a function of (seed, c) only)
        shards: list = [None] * world
        torch.distributed.all_gather_object(shards, done)
        done = {c: maps for shard in shards for c, maps in shard.items()}
    first = done[0]
    bank = FeatureBank(
        [torch.cat([done[c][k] for c, _ in chunks]) for k in range(len(first))], augs
    )
    log.info("feature bank: %d views x %d backgrounds, %.2f GB", v, augs, bank.nbytes / 1024**3)
    return bank

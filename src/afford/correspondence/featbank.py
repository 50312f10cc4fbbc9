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

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from afford.backbones.policy import tensor_digest
from afford.correspondence.sampling import randomize_background, seeded_generator
from afford.data.io import atomic_path, read_json, write_json
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
    cache_dir: str | Path | None = None,
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

    With ``cache_dir`` every chunk is also written there (``chunk_<c>.safetensors``, atomically,
    by the rank that computed it; ``index.json`` lists the chunks and the bank's fingerprint:
    settings, data and backbone weights).  A build interrupted at any point resumes: chunks on
    disk under the same fingerprint are loaded instead of computed; a folder holding another
    bank's chunks is refused.
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
    store = None
    if cache_dir is not None:
        key = bank_fingerprint(backbone, images, masks, augs, seed, noise, p_noise, batch)
        store = _ChunkStore(Path(cache_dir), key, len(chunks), write_index=rank == 0)
    done: dict[int, list[Tensor]] = {}
    bar = Progress(len(mine), "feature bank (chunks)", enabled=progress)
    for c, lo in mine:
        cached = store.load(c) if store is not None else None
        if cached is None:
            idx = order[lo : lo + batch]
            x = randomize_background(ims[idx], ms[idx], bank_generator(seed, c), noise, p_noise)
            cached = [m.to(torch.float16).cpu() for m in backbone(x.to(device))]
            if store is not None:
                store.save(c, cached)
        done[c] = cached
        bar.update()
    bar.close()
    if store is not None:
        log.info("feature bank: %d of %d chunks of this rank read from %s", store.hits,
                 len(mine), store.root)  # fmt: skip
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


def bank_fingerprint(
    backbone: torch.nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    augs: int,
    seed: int,
    noise: float,
    p_noise: float,
    batch: int,
) -> str:
    """``"sha256:<hex>"`` identifying a feature bank: its settings, the exact training views
    and masks, and the backbone's weights (:func:`afford.backbones.policy.tensor_digest`)."""
    h = hashlib.sha256()
    settings = {"augs": int(augs), "seed": int(seed), "noise": float(noise),
                "p_noise": float(p_noise), "batch": int(batch), "shape": list(images.shape)}  # fmt: skip
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(masks, dtype=bool).tobytes())
    h.update(tensor_digest(backbone.state_dict()).encode())
    return f"sha256:{h.hexdigest()}"


class _ChunkStore:
    """The on-disk chunks of one feature bank (see :func:`build_feature_bank`)."""

    FORMAT = "afford-feature-bank"

    def __init__(self, root: Path, key: str, n_chunks: int, write_index: bool) -> None:
        self.root, self.key, self.n_chunks, self.hits = root, key, n_chunks, 0
        index = root / "index.json"
        if index.is_file():
            meta = read_json(index)
            if not isinstance(meta, dict) or meta.get("format") != self.FORMAT:
                raise AffordError(f"{index}: not a feature-bank index (format {self.FORMAT!r})")
            if meta.get("fingerprint") != key:
                raise AffordError(
                    f"{root}: holds the feature bank of other settings, data or backbone "
                    "weights; remove the folder or use another"
                )
        else:  # every rank writes its own chunks; rank 0 the index
            root.mkdir(parents=True, exist_ok=True)
        if write_index and not index.is_file():
            write_json(index, {"format": self.FORMAT, "version": 1, "fingerprint": key,
                               "chunks": [self.name(c) for c in range(n_chunks)]})  # fmt: skip

    @staticmethod
    def name(c: int) -> str:
        return f"chunk_{c:06d}.safetensors"

    def load(self, c: int) -> list[Tensor] | None:
        """The maps of chunk ``c`` if it is on disk (complete by construction: atomic)."""
        path = self.root / self.name(c)
        if not path.is_file():
            return None
        try:
            t = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise AffordError(f"{path}: unreadable feature-bank chunk ({exc}); remove it") from exc
        self.hits += 1
        return [t[f"layer{k}"] for k in range(len(t))]

    def save(self, c: int, maps: list[Tensor]) -> None:
        with atomic_path(self.root / self.name(c)) as tmp:
            save_file({f"layer{k}": m.contiguous() for k, m in enumerate(maps)}, str(tmp))

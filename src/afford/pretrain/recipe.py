"""The pre-training recipe on the one loop (:func:`afford.engine.fit`).

Per step (:class:`ViewSampler`, then :func:`afford.pretrain.losses.ssl_losses`): a batch of
scenes, two different renders of each, each cut by a random resized crop and colour-augmented;
the symmetrised objective (D1) + (G1); AdamW (no decay on norms, biases, position embedding
and CLS token) with a per-step linear warm-up + cosine schedule (:func:`schedule`), gradient
clipping, then the EMA teacher update (:func:`ema_momentum`) in ``fit``'s ``after_step`` hook.
The sampler's random stream (one ``torch.Generator`` seeded with ``train.seed``, also drawing
the dense-pair subsets) is saved with every checkpoint, so an interrupted run resumed from
``<train.out>/last`` ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from afford.backbones.common import IMAGENET_MEAN, IMAGENET_STD
from afford.config import ConfigError, to_dict
from afford.data.io import read_json
from afford.engine import TrainState, fit
from afford.engine.fabric import build_engine
from afford.errors import AffordError, UsageError
from afford.pretrain.augment import colour_augment, crop_views, sample_crops
from afford.pretrain.config import PretrainConfig
from afford.pretrain.losses import ssl_losses
from afford.pretrain.model import StudentTeacher, build_student

#: train keys a resumed run may change (the rest must match the checkpoint's config)
RESUME_FREE = ("out", "resume", "progress", "threads", "device", "minutes", "accelerator",
               "workers", "logger", "log_every", "checkpoint_every", "max_steps", "precision")  # fmt: skip


def check_rgb_array(images: object) -> np.ndarray:
    """The pre-training input must be a bare RGB array, uint8 (N,H,W,3) or (N,R,H,W,3) (R
    re-renders of each scene), nothing else. Returns it as (N,R,H,W,3)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise AffordError(
            "pretrain: images must be a numpy uint8 array (N,H,W,3) or (N,R,H,W,3) of RGB "
            f"pixels, got {type(images).__name__}"
            f"{'/' + str(images.dtype) if hasattr(images, 'dtype') else ''}"
        )
    if images.ndim not in (4, 5) or images.shape[-1] != 3 or images.shape[0] < 2:
        raise AffordError(
            f"pretrain: images must have shape (N>=2,[R,]H,W,3), got {tuple(images.shape)}"
        )
    return images if images.ndim == 5 else images[:, None]


def check_flow(images: np.ndarray, flow: object, valid: object) -> None:
    """``flow`` (N,R,G,G,2) float and ``valid`` (N,R,G,G) bool of the (N,R,...) ``images``:
    for render r of scene n, where each grid cell lands in the other render (multi-view
    geometry, see ``afford.synth.pretrain_views.MultiviewRenders``)."""
    n, r = images.shape[:2]
    ok = (
        isinstance(flow, np.ndarray)
        and isinstance(valid, np.ndarray)
        and flow.ndim == 5
        and flow.shape[:2] == (n, r)
        and flow.shape[-1] == 2
        and valid.shape == flow.shape[:-1]
        and valid.dtype == bool
        and np.issubdtype(flow.dtype, np.floating)
    )
    if not ok:
        raise AffordError(
            f"pretrain: flow must be a float array ({n},{r},G,G,2) and valid a bool array "
            f"({n},{r},G,G), got {getattr(flow, 'shape', type(flow).__name__)} and "
            f"{getattr(valid, 'shape', type(valid).__name__)}"
        )


def schedule(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to 1 % of ``base``."""
    w = max(1, int(warmup * total))
    if step < w:
        return base * (step + 1) / w
    t = (step - w) / max(1, total - w)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """:func:`schedule` as a per-step LR scheduler (``fit(..., scheduler_interval="step")``):
    the learning rate of optimisation step k is ``schedule(k, total, base_lr, warmup)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, warmup: float) -> None:
        self.total, self.warmup = total, warmup
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [schedule(self.last_epoch, self.total, b, self.warmup) for b in self.base_lrs]


def ema_momentum(step: int, total: int, start: float, end: float) -> float:
    """Teacher momentum after step ``step`` of ``total``: ``start`` -> ``end`` (cosine)."""
    return end - (end - start) * 0.5 * (1 + math.cos(math.pi * step / max(1, total - 1)))


class ViewSampler:
    """The batches of a run: ``batches(epoch)`` yields ``steps_per_epoch`` tuples
    ``(views, geoms, flows)``:

    - views: two normalised view batches (B,3,S,S) (two different renders of each scene,
      random resized crop, colour augmentation);
    - geoms: their crop geometries ((boxes (B,4), flips (B,)), (boxes, flips));
    - flows: None (renders from the same camera) or ((flow (B,G,G,2), valid (B,G,G)) from
      render a to b, (flow, valid) from b to a).

    Scenes are drawn without replacement (a new permutation when the current one runs out).
    ``gen`` is the run's one random stream; ``state_dict`` / ``load_state_dict`` carry it (and
    the permutation) across a resume.
    """

    def __init__(
        self,
        images: np.ndarray,
        cfg: PretrainConfig,
        flow: np.ndarray | None = None,
        valid: np.ndarray | None = None,
    ) -> None:
        self.data = torch.from_numpy(images).permute(0, 1, 4, 2, 3)  # uint8 (N,R,3,H,W)
        self.flow, self.valid = flow, valid
        self.cfg = cfg
        self.batch = min(cfg.train.batch_size, len(images))
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.order = torch.randperm(len(images), generator=self.gen)
        self.pos = 0

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state().tolist(), "order": self.order.tolist(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["rng"], dtype=torch.uint8))
        self.order = torch.tensor(state["order"], dtype=torch.int64)
        self.pos = int(state["pos"])

    def batches(self, epoch: int) -> Iterator[tuple]:  # noqa: ARG002 -- the stream is the state
        for _ in range(self.cfg.train.steps_per_epoch):
            yield self.next_batch()

    def next_batch(self) -> tuple:
        gen, batch, n_r = self.gen, self.batch, self.data.shape[1]
        if self.pos + batch > len(self.order):
            self.order, self.pos = torch.randperm(len(self.order), generator=gen), 0
        idx = self.order[self.pos : self.pos + batch]
        self.pos += batch
        ra = torch.randint(n_r, (batch,), generator=gen)
        rb = (ra + torch.randint(1, max(n_r, 2), (batch,), generator=gen)) % n_r
        flows = None
        if self.flow is not None:  # the two renders come from two cameras: pairs via the flow
            flows = tuple(
                (torch.from_numpy(self.flow[idx.numpy(), r.numpy()]),
                 torch.from_numpy(self.valid[idx.numpy(), r.numpy()]))
                for r in (ra, rb)
            )  # fmt: skip
        views, geoms = [], []
        for r in (ra, rb):  # two different renders of each scene
            src = self.data[idx, r].float() / 255
            boxes, flips = sample_crops(gen, batch, self.cfg.data.crop_scale)
            v = colour_augment(crop_views(src, boxes, flips, self.cfg.data.view_size), gen)
            views.append((v - self.mean) / self.std)
            geoms.append((boxes, flips))
        return (views[0], views[1]), (geoms[0], geoms[1]), flows


def _to(x, device: torch.device):
    """Tensors of a nested tuple moved to ``device`` (None stays None)."""
    if isinstance(x, tuple):
        return tuple(_to(v, device) for v in x)
    return x.to(device) if x is not None else None


def check_resumable(cfg: PretrainConfig) -> None:
    """A resumed run must be the same experiment: every key but ``train.{RESUME_FREE}`` equal
    to the config stored in ``<train.out>/last``; ConfigError naming the first that is not."""
    meta = Path(cfg.train.out) / "last" / "config.json"
    if not (cfg.train.resume and meta.is_file()):
        return
    old = read_json(meta).get("config", {})
    for section, values in to_dict(cfg).items():
        for key, value in values.items():
            was = old.get(section, {}).get(key)
            if (section == "train" and key in RESUME_FREE) or was == value:
                continue
            raise ConfigError(
                f"{section}.{key}",
                f"{value!r} differs from {was!r} of the run in {cfg.train.out} being resumed "
                "(use another train.out, or train.resume: false to restart)",
            )


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: the trained ViT and its loss history.

    ``history``: one row per step ({"epoch", "step" (1-based), "total", "img",
    "dense:<head>", "lr"}); ``steps``: steps done (all of them, also those before a resume);
    ``seconds``: training time of this call."""

    vit: nn.Module
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


def pretrain(
    images: np.ndarray,
    cfg: PretrainConfig,
    flow: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> PretrainResult:
    """Self-supervised pre-training of the tiny ``cfg.model.family`` ViT on ``images``.

    Args:
        images: (N,R,H,W,3) (or (N,H,W,3)) uint8 RGB renders -- the only input; no labels of
            any kind. The two views of a pair come from two different renders r.
        cfg: the experiment; ``train.epochs x train.steps_per_epoch`` steps (deterministic for
            ``train.seed``), checkpoints in ``train.out`` (resumed from ``last`` when
            ``train.resume``); ``train.minutes`` is an optional wall-clock cap (stops early,
            recorded in the result).
        flow, valid: for renders from two cameras, where each grid cell of render r lands in
            the other (:func:`check_flow`; still no labels): dense pairs then follow the flow.
    Returns: :class:`PretrainResult` with the student's ViT (the teacher is discarded).
    """
    images = check_rgb_array(images)
    if flow is not None or valid is not None:
        check_flow(images, flow, valid)
    t, m = cfg.train, cfg.model
    check_resumable(cfg)
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.devices * t.num_nodes > 1:
        raise UsageError(
            "pretrain-backbone runs in one process: its sampler is one random stream (views, "
            "crops and dense-pair subsets) and its image-level loss compares every scene of "
            "the batch; use --devices 1 (precision, logger and max-steps work)"
        )
    engine = build_engine(t, out=t.out)
    device = engine.device
    sampler = ViewSampler(images, cfg, flow, valid)
    pair = StudentTeacher(build_student(m.family, m.proj_dim, t.seed)).to(device)
    decay, no_decay = [], []
    for name, p in pair.student.named_parameters():
        (no_decay if p.ndim < 2 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=t.lr,
    )
    start = time.monotonic()

    def step(batch: tuple, epoch: int) -> dict:  # noqa: ARG001
        views, geoms, flows = _to(batch, device)
        terms = ssl_losses(pair.student, pair.teacher, views, geoms, m, sampler.gen, flows)
        return {**terms, "lr": opt.param_groups[0]["lr"]}

    def after_step(state: TrainState) -> bool:
        pair.update_teacher(ema_momentum(state.step - 1, t.steps, *t.momentum))
        late = t.minutes is not None and time.monotonic() - start > 60 * t.minutes
        return late and state.step < t.steps

    state = fit(
        pair,
        opt,
        sampler.batches,
        step,
        epochs=t.epochs,
        out_dir=t.out,
        config=to_dict(cfg),
        scheduler=WarmupCosine(opt, t.steps, t.warmup),
        scheduler_interval="step",
        after_step=after_step,
        stateful={"sampler": sampler},
        resume=t.resume,
        steps_per_epoch=t.steps_per_epoch,
        grad_clip=t.grad_clip,
        progress=t.progress,
        desc=f"pretrain {m.family}",
        engine=engine,
        samples_per_step=sampler.batch,
    )
    vit = pair.student.vit.cpu().requires_grad_(False)
    return PretrainResult(
        vit=vit,
        history=state.history,
        steps=state.step,
        seconds=time.monotonic() - start,
        stopped_early=state.stopped_early,
    )

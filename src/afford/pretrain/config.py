"""The pre-training experiment as a tree of dataclasses on :mod:`afford.config`.

Sections ``data`` (what to render, how to cut the views), ``model`` (the network and the
objective) and ``train`` (the shared :class:`afford.config.TrainConfig` keys plus the
pre-training schedule). Defaults are the historical ``PretrainConfig`` defaults; the run is
``train.epochs x train.steps_per_epoch`` optimisation steps (600 by default), the schedule
(warm-up + cosine, teacher momentum) spans all of them, and every epoch ends with a resumable
checkpoint in ``train.out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from afford.backbones.registry import PRETRAIN_FAMILIES, variant
from afford.config import TrainConfig, config_error, option

#: The families with a pre-training recipe (the registry's, as config choices).
Family = Literal[PRETRAIN_FAMILIES]  # type: ignore[valid-type]


def _check_range(key: str, value: tuple[float, ...], lo: float, hi: float, what: str) -> None:
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise config_error(key, list(value), what)


@dataclass
class PretrainData:
    """What the app layer renders and how the two views of a pair are cut."""

    images: int = option(512, min=2, help="scenes to render (two renders each)")
    multiview_deg: float = option(
        0.0,
        min=0,
        help="the two renders come from two cameras up to this many degrees apart (azimuth; "
        "half in elevation), pairs follow the rendered geometry; 0: same camera",
    )
    view_size: int = option(112, min=1, help="augmented view side (px, a multiple of the patch)")
    crop_scale: tuple[float, ...] = option(
        factory=lambda: (0.2, 0.8), help="random-resized-crop area range [min, max]"
    )

    def __post_init__(self) -> None:
        _check_range(
            "crop_scale", self.crop_scale, 1e-6, 1.0, "[min, max] with 0 < min <= max <= 1"
        )


@dataclass
class PretrainModel:
    """The tiny ViT of ``family`` with its projection heads, and the objective."""

    family: Family = option("dino", help="tiny backbone to pre-train")
    proj_dim: int = option(128, min=1, help="projection head output dimension")
    tau_dense: float = option(0.2, min=0, min_exclusive=True, help="temperature of Eq. (D1)")
    tau_global: float = option(0.2, min=0, min_exclusive=True, help="temperature of Eq. (G1)")
    lambda_dense: float = option(1.0, min=0, help="weight of the dense loss (D1)")
    lambda_global: float = option(1.0, min=0, help="weight of the image-level loss (G1)")
    pairs: int = option(1024, min=1, help="dense pairs sampled per direction and step")


@dataclass
class PretrainTrain(TrainConfig):
    """Shared training keys plus the pre-training schedule."""

    epochs: int = option(6, min=1, help="epochs of steps_per_epoch steps (a checkpoint each)")
    steps_per_epoch: int = option(100, min=1, help="optimisation steps per epoch")
    batch_size: int = option(16, min=2, help="scenes per step")
    weight_decay: float = option(0.04, min=0, help="AdamW weight decay (not on norms, biases)")
    warmup: float = option(0.1, min=0, max=1, help="linear warm-up, share of all steps")
    momentum: tuple[float, ...] = option(
        factory=lambda: (0.9, 0.99), help="EMA teacher momentum [start, end] (cosine)"
    )
    grad_clip: float | None = option(3.0, min=0, min_exclusive=True, help="max grad norm")
    minutes: float | None = option(
        None, min=0, min_exclusive=True, help="wall-clock cap (stops early, recorded)"
    )
    out: str = option("runs/pretrain", help="run folder (checkpoints, history)")

    def __post_init__(self) -> None:
        _check_range("momentum", self.momentum, 0.0, 1.0, "[start, end] in [0, 1]")

    @property
    def steps(self) -> int:
        """All optimisation steps of the run (the schedule's length)."""
        return self.epochs * self.steps_per_epoch


@dataclass
class PretrainConfig:
    """One self-supervised pre-training run (``afford pretrain-backbone``)."""

    data: PretrainData = option(factory=PretrainData)
    model: PretrainModel = option(factory=PretrainModel)
    train: PretrainTrain = option(factory=PretrainTrain)

    def __post_init__(self) -> None:
        patch = variant(self.model.family, "tiny").patch_size
        if self.data.view_size % patch:
            raise config_error(
                "data.view_size",
                self.data.view_size,
                f"a multiple of the {self.model.family} patch size {patch}",
            )

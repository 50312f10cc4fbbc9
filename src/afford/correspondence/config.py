"""The experiment of a correspondence training run (paper Sec. 4.2-4.3), on the one config system.

``afford.config.load(CorrExperiment, "correspondence/synth-tiny", ["train.epochs=2"])`` reads a
YAML file (or a shipped config name) with ``--set`` overrides, strictly typed; checkpoints store
``afford.config.to_dict(cfg)`` and are rebuilt with ``afford.config.from_dict``.  Sections::

    data:     root, labels (pseudo | gt), val_fraction
    backbone: dinov2 {variant, weights}, clip {variant, weights}
    model:    proj_dim, hidden, out_dim, mask_head, mode (paper | official)
    loss:     functional, spatial, mask, tau, negneg, lambda_spatial, lambda_mask
    sampling: pairs, points, spatial_points, spatial_region, noise, p_noise, feature_augs
    train:    the shared keys (epochs, lr, weight_decay, seed, device, out, resume, threads,
              progress, grad_clip) + name, iters_per_epoch, val_batches

The defaults are the paper's setting (REFERENCE_NOTES C): DINOv2 ViT-B/14 + CLIP ViT-B/16,
50 pairs x 128 part / 128 non-part points, tau 0.1, lambda_spatial 10, AdamW lr 1e-4, weight
decay 0.01, 100 epochs x 1000 iterations.  The loss switches give the paper's Table 1
ablations: functional only, spatial only, full, full with the mask head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from afford.config import (
    ClipWeights,
    ConfigError,
    Mode,
    TrainConfig,
    WeightsSpec,
    config_error,
    option,
)


@dataclass
class CorrData:
    """``data.*``: the training dataset (``afford-correspondence`` format)."""

    root: str = option("data/synth-corr", help="dataset folder holding dataset.json")
    labels: Literal["pseudo", "gt"] = option(
        "pseudo", help="functional-part masks: pseudo (paper) | gt (oracle ablation)"
    )
    val_fraction: float = option(
        0.15, min=0, help="seeded fraction of the training assets held out for validation, < 1"
    )

    def __post_init__(self) -> None:
        if not self.val_fraction < 1:
            raise config_error("val_fraction", self.val_fraction, "a value < 1")


@dataclass
class Dinov2Weights(WeightsSpec):
    """The frozen DINOv2 image backbone (``backbone.dinov2``)."""

    variant: str = option("vitb14", help="vitb14 (paper) | tiny | tiny-synth")


@dataclass
class CorrBackbone:
    """``backbone.*``: the frozen encoders."""

    dinov2: Dinov2Weights = option(factory=Dinov2Weights, help="image backbone")
    clip: ClipWeights = option(factory=ClipWeights, help="text encoder")


@dataclass
class CorrModel:
    """``model.*``: :class:`~afford.correspondence.model.FunctionalCorrespondenceModel`."""

    proj_dim: int = option(512, min=1, help="P: projection of the fused DINOv2 layers")
    hidden: int = option(1024, min=1, help="hidden width of the MLP")
    out_dim: int = option(256, min=1, help="O: output feature size")
    mask_head: bool = option(False, help="functional-part mask head (Table 1 'full-mask')")
    mode: Mode = option(
        "paper", help="paper | official (pixel convention, functional-loss anchors)"
    )


@dataclass
class CorrLoss:
    """``loss.*``: Eqs. 1-3 and their weights."""

    functional: bool = option(True, help="functional contrastive loss (Eq. 1)")
    spatial: bool = option(True, help="spatial contrastive loss (Eq. 2)")
    mask: bool = option(False, help="mask loss (needs model.mask_head)")
    tau: float = option(0.1, min=0, min_exclusive=True, help="contrastive temperature")
    negneg: bool = option(True, help="negative-negative term of Eq. 1")
    lambda_spatial: float = option(10.0, min=0, help="weight of the spatial loss")
    lambda_mask: float = option(1.0, min=0, help="weight of the mask loss")

    def __post_init__(self) -> None:
        if not (self.functional or self.spatial):
            raise ConfigError("functional", "enable at least one of 'functional' and 'spatial'")


@dataclass
class CorrSampling:
    """``sampling.*``: the training batches."""

    pairs: int = option(50, min=1, help="image pairs per batch")
    points: int = option(128, min=1, help="functional-part and non-part points per image")
    spatial_points: int = option(128, min=1, help="multi-view correspondences per pair")
    spatial_region: Literal["object", "part"] | None = option(
        None,
        help="where spatial correspondences start: object (paper Eq. 2) | part (released "
        "code) | null (follow model.mode)",
    )
    noise: float = option(50.0, min=0, help="background noise amplitude")
    p_noise: float = option(0.5, min=0, max=1, help="probability of a noise background")
    feature_augs: int = option(
        0,
        min=0,
        help="0: the frozen backbone runs on every batch (paper); K > 0: its outputs are "
        "precomputed for K background randomisations per view (afford.correspondence.featbank)",
    )


@dataclass
class CorrTrain(TrainConfig):
    """``train.*``: the shared keys with correspondence's defaults, plus the iteration plan."""

    epochs: int = option(100, min=1, help="training epochs")
    lr: float = option(1e-4, min=0, min_exclusive=True, help="AdamW learning rate")
    weight_decay: float = option(0.01, min=0, help="AdamW weight decay")
    out: str = option("runs/correspondence/synth-full", help="output folder")
    name: str = option("full", help="row name (results, plots)")
    iters_per_epoch: int = option(1000, min=1, help="iterations per epoch")
    val_batches: int = option(4, min=1, help="fixed validation batches (held-out assets)")


@dataclass
class CorrExperiment:
    """A correspondence training run: every section of the YAML config."""

    data: CorrData = option(factory=CorrData)
    backbone: CorrBackbone = option(factory=CorrBackbone)
    model: CorrModel = option(factory=CorrModel)
    loss: CorrLoss = option(factory=CorrLoss)
    sampling: CorrSampling = option(factory=CorrSampling)
    train: CorrTrain = option(factory=CorrTrain)

    def __post_init__(self) -> None:
        if self.loss.mask and not self.model.mask_head:
            raise ConfigError("loss.mask", "'loss.mask: true' needs 'model.mask_head: true'")

    @property
    def spatial_region_used(self) -> str:
        """The spatial loss region: ``sampling.spatial_region`` if set, else "object" in paper
        mode and "part" in official mode."""
        if self.sampling.spatial_region is not None:
            return self.sampling.spatial_region
        return "object" if self.model.mode == "paper" else "part"

"""Configuration of the grounding method (selective contrastive learning, LOCATE, CE only)
and of a grounding experiment (:class:`GroundingExperiment`: ``data``, ``backbone``, ``model``,
``train`` sections, read strictly by :func:`afford.config.load`).

Hyper-parameters default to the paper's (Sec. 4): alpha = gamma1 = gamma2 = 0.6, beta = 1,
tau = 0.5, lambda1 = lambda2 = 1, E = 3, K = 3.

Every row of the paper's Table 2 is a switch combination (see :meth:`GroundingConfig.table2_row`):

====  ============  ============  ============  ============  ===========
row   Proto. Obj.   Proto. P.     Pixel Obj.    Pixel P.      Cali.
====  ============  ============  ============  ============  ===========
(a)   -             -             -             -             -
(b)   -             -             -             -             yes
(c)   yes           -             -             -             -
(d)   yes           -             yes           -             -
(e)   yes           -             yes           -             yes
(f)   yes           yes           -             -             -
(g)   yes           yes           yes           -             -
(h)   yes           yes           yes           yes           -
(i)   yes           yes           yes           yes           yes
====  ============  ============  ============  ============  ===========

"Obj." alone means the object-level branch of Eq. 2 / Eq. 7 for every sample (no part
discovery: the index sets I and J are empty); "P." switches part-level learning on, with the
object level as the selective fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from afford.config import (
    ClipWeights,
    ConfigError,
    Mode,
    TrainConfig,
    WeightsSpec,
    from_dict,
    option,
    to_dict,
)

Method = Literal["selective", "locate", "ce"]
Calibration = Literal["binary", "soft", "none"]
Saliency = Literal["dino", "affinity"]
Dataset = Literal["agd20k_seen", "agd20k_unseen", "hico_iif", "folders"]
Affinity = Literal["clip", "simulated", "online"]

# letter -> (use_proto, proto_part, use_pixel, pixel_part, calibrated)
TABLE2_ROWS: dict[str, tuple[bool, bool, bool, bool, bool]] = {
    "a": (False, False, False, False, False),
    "b": (False, False, False, False, True),
    "c": (True, False, False, False, False),
    "d": (True, False, True, False, False),
    "e": (True, False, True, False, True),
    "f": (True, True, False, False, False),
    "g": (True, True, True, False, False),
    "h": (True, True, True, True, False),
    "i": (True, True, True, True, True),
}


def table2_switches(letter: str, mode: str) -> dict[str, Any]:
    """The switches of row ``letter`` ("a".."i", "(c)" too) of the paper's Table 2 in ``mode``.

    Rows (a)/(b) are the classification-only baseline (``method="ce"``), the others
    ``method="selective"``; "Cali." selects the mode's calibration ("binary" paper, "soft"
    official), else "none"."""
    key = str(letter).strip().lower().strip("()")
    if key not in TABLE2_ROWS:
        raise ConfigError(
            "table2_row", f"unknown row {letter!r}; rows are {', '.join(sorted(TABLE2_ROWS))}"
        )
    use_proto, proto_part, use_pixel, pixel_part, cali = TABLE2_ROWS[key]
    return {
        "method": "selective" if (use_proto or use_pixel) else "ce",
        "use_proto": use_proto,
        "proto_part": proto_part,
        "use_pixel": use_pixel,
        "pixel_part": pixel_part,
        "calibration": ("soft" if mode == "official" else "binary") if cali else "none",
    }


class _HybridMethod:
    """Descriptor: ``Cls.f(...)`` gets ``base=None``; ``obj.f(...)`` gets ``base=obj``."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        def bound(*args, **kwargs):
            return self.func(cls, obj, *args, **kwargs)

        bound.__doc__ = self.func.__doc__
        bound.__name__ = self.func.__name__
        return bound


# ------------------------------------------------------------------------ hyper-parameters
@dataclass
class GroundingParams:
    """Every switch and hyper-parameter of the grounding method, with its type and bounds.

    Shared by the runtime :class:`GroundingConfig` and the YAML ``model:`` section
    (:class:`GroundingModelSpec`); see :class:`GroundingConfig` for the meaning of each.
    """

    method: Method = option("selective", help="selective (paper) | locate | ce")
    mode: Mode = option("paper", help="paper (equations) | official (released code)")
    class_names: list[str] = option(factory=list, help="affordance names, label order")
    feat_dim: int = option(384, min=1, help="D of the frozen DINO keys")
    alpha: float = option(0.6, min=0, max=1, help="pIoU threshold of a reliable exo part")
    gamma1: float = option(0.6, min=0, max=1, help="exo mask threshold for K-means")
    gamma2: float = option(0.6, min=0, max=1, help="min-max(S_ego) threshold (Eq. 7)")
    beta: float = option(1.0, min=0, help="negative prototype bias (Eq. 1)")
    tau: float = option(0.5, min=0, min_exclusive=True, help="temperature (Eq. 3, 8)")
    base_tau: float = option(0.07, min=0, min_exclusive=True, help="official loss scale")
    lambda_proto: float = option(1.0, min=0, help="lambda1")
    lambda_pixel: float = option(1.0, min=0, help="lambda2")
    num_exo: int = option(3, min=1, help="E, exocentric images per sample")
    k: int = option(3, min=1, help="K of K-means")
    kmeans_iters: int = option(300, min=1, help="max Lloyd iterations")
    kmeans_seed: int = option(0, min=0, help="seed of the K-means initialisation")
    use_proto: bool = option(True, help="prototype loss (Eq. 3-5)")
    proto_part: bool = option(True, help="part-level prototypes (else object level)")
    use_pixel: bool = option(True, help="pixel loss (Eq. 8)")
    pixel_part: bool = option(True, help="part-level Q+ via rho (else gamma2 only)")
    object_fallback: bool = option(True, help="object-level clues without a reliable part")
    calibration: Calibration | None = option(None, help="binary | soft | none; null: mode's")
    part_saliency: Saliency = option("dino", help="dino (CLS attention) | affinity (S_ego)")
    saliency_heads: tuple[int, ...] = option((0, 1, 3), help="DINO heads of the saliency")
    cam_start_epoch: int = option(1, min=0, help="first epoch of the exo CAM in part masks")
    locate_weight: float = option(1.0, min=0, help="LOCATE part distillation weight")
    locate_margin: float = option(0.5, min=0, help="LOCATE distillation margin")
    locate_conc_weight: float = option(0.07, min=0, help="LOCATE concentration weight")
    locate_start_epoch: int = option(1, min=0, help="LOCATE first epoch of distillation")

    def __post_init__(self) -> None:
        heads = self.saliency_heads
        if not heads or any(h < 0 for h in heads):
            raise ConfigError(
                "saliency_heads", f"must be a non-empty list of head indices, got {heads!r}"
            )


@dataclass
class GroundingConfig(GroundingParams):
    """All switches and hyper-parameters of :class:`afford.grounding.model.GroundingModel`.

    Attributes:
        method: "selective" (the paper), "locate" (LOCATE baseline) or "ce" (classification
            only; the proto/pixel switches are ignored).
        mode: "paper" (equations as written) or "official" (released code, REFERENCE_NOTES A).
        class_names: affordance names in label-index order (C = len(class_names)).
        feat_dim: D of the frozen DINO keys (384 for ViT-S/16, 96 for the tiny backbone).
        alpha: pIoU threshold for a reliable exocentric part.
        gamma1: threshold on the min-max normalised exo mask for K-means descriptors.
        gamma2: threshold on min-max(S_ego) for the object-level Q+ (Eq. 7) and binary
            calibration (Sec. 3.5).
        beta: bias of the negative prototype (Eq. 1).
        tau: contrastive temperature (Eq. 3, Eq. 8).
        base_tau: official-mode loss scale tau / base_tau (released code: 0.07).
        lambda_proto, lambda_pixel: lambda1, lambda2 of the total loss.
        num_exo: E, exocentric images per sample.
        k: K of K-means; kmeans_iters: max Lloyd iterations; kmeans_seed: seed of the
            generator for the K-means initialisation (deterministic).
        use_proto / proto_part: prototype loss on; part-level (else object level only).
        use_pixel / pixel_part: pixel loss on; part-level Q+ via rho (else gamma2 only).
        object_fallback: use object-level clues for samples without a reliable part (the
            paper's selectivity). False drops those samples from the contrastive losses.
        calibration: "binary" (paper), "soft" (official test output) or "none"; ``None``
            resolves to the mode's default ("binary" paper, "soft" official) for
            ``method="selective"`` and to "none" for the LOCATE / CE baselines.
        part_saliency: "dino" (CLS attention, heads ``saliency_heads``) or "affinity"
            (S_ego in place of DINO attention, Sec. 3.3).
        cam_start_epoch: from this epoch on the exo mask for part discovery includes the
            exo CAM (relu(A_exo) * relu(CAM)); before it A_exo alone (LOCATE: exo CAM).
        locate_weight, locate_margin, locate_conc_weight, locate_start_epoch: LOCATE
            part-distillation weight and margin, concentration weight, first epoch.

    Build it from a plain mapping with :func:`afford.config.from_dict` (strict: unknown keys,
    wrong types and out-of-range values are one-line :class:`~afford.config.ConfigError`
    naming the field); serialise with :func:`afford.config.to_dict`.
    """

    def __post_init__(self) -> None:
        if self.calibration is None:
            if self.method != "selective":
                self.calibration = "none"  # the baselines' own output: the plain CAM
            else:
                self.calibration = "soft" if self.mode == "official" else "binary"
        if isinstance(self.saliency_heads, list):
            self.saliency_heads = tuple(self.saliency_heads)
        if isinstance(self.class_names, tuple):
            self.class_names = list(self.class_names)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`~afford.config.ConfigError` naming the first bad field.

        Types, choices and bounds are the config system's (checked on a copy, so a config
        built in Python is held to the same rules as a YAML file); then the class list."""
        from_dict(GroundingParams, {f.name: getattr(self, f.name) for f in fields(GroundingParams)})
        names = self.class_names
        if not names:
            raise ConfigError("class_names", "must be a non-empty list of affordance names")
        if not all(names):
            raise ConfigError("class_names", "every entry must be a non-empty string")
        if len(set(names)) != len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ConfigError("class_names", f"duplicate names {dup}")

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        """C, the number of affordance classes."""
        return len(self.class_names)

    @property
    def official(self) -> bool:
        """True in ``mode="official"``."""
        return self.mode == "official"

    # ------------------------------------------------------------------ Table 2
    @_HybridMethod
    def table2_row(cls, base, letter: str, **overrides: Any) -> GroundingConfig:  # noqa: N805
        """Configuration of row ``letter`` ("a".."i") of the paper's Table 2.

        Called on the class (``GroundingConfig.table2_row("i", class_names=[...])``) the other
        fields take their defaults plus ``overrides``; called on an instance
        (``cfg.table2_row("c")``) they are copied from that instance. The row's switches
        (:func:`table2_switches`) take precedence over ``overrides``.
        """
        d: dict[str, Any] = to_dict(base) if base is not None else {}
        d.update(overrides)
        d.update(table2_switches(letter, d.get("mode", "paper")))
        return from_dict(cls, d)


# ------------------------------------------------------------------------ the experiment
@dataclass
class GroundingModelSpec(GroundingParams):
    """The ``model:`` section of a grounding experiment: :class:`GroundingParams` plus
    ``table2_row``, a Table 2 letter giving the switches (method, use_proto, proto_part,
    use_pixel, pixel_part, calibration) that the section leaves unset (``null``); a switch
    set in the section wins over the row's.  ``class_names`` / ``feat_dim`` / ``num_exo``
    are left to the data and the DINO backbone."""

    table2_row: str | None = option(None, help="Table 2 row a..i: the unset switches")
    method: Method | None = option(None, help="selective | locate | ce; null: row / selective")
    use_proto: bool | None = option(None, help="null: the row's / true")
    proto_part: bool | None = option(None, help="null: the row's / true")
    use_pixel: bool | None = option(None, help="null: the row's / true")
    pixel_part: bool | None = option(None, help="null: the row's / true")
    class_names: list[str] | None = option(None, help="default: the dataset's classes")
    feat_dim: int | None = option(None, min=1, help="default: the DINO backbone's width")
    num_exo: int | None = option(None, min=1, help="default: data.num_exo")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.table2_row is not None:
            table2_switches(self.table2_row, self.mode)

    def build(self, **fill: Any) -> GroundingConfig:
        """The runtime :class:`GroundingConfig`: the ``table2_row`` switches, this section's
        values on top (``null`` ones take the row's, else GroundingConfig's defaults), then
        ``fill`` (e.g. ``class_names``, ``feat_dim``).  Errors name ``model.<key>``."""
        d = {k: v for k, v in to_dict(self).items() if v is not None}
        row = d.pop("table2_row", None)
        if row is not None:
            d = {**table2_switches(row, self.mode), **d}
        d.update(fill)
        return from_dict(GroundingConfig, d, "model")


@dataclass
class GroundingData:
    """``data:``: the dataset tree, its affinity maps and the views."""

    dataset: Dataset = option("folders", help="agd20k_seen | agd20k_unseen | hico_iif | folders")
    root: str | None = option(None, help="dataset folder (<root>/{trainset,testset})")
    cache: str | None = option(None, help="map cache; default <root>/cache or <root>/../cache")
    affinity: Affinity = option("clip", help="clip (cached) | simulated | online (per step)")
    val_fraction: float = option(0.1, min=0, max=1, help="validation split of trainset")
    val_seed: int = option(0, min=0, help="seed of the validation split")
    resize: int = option(256, min=1, help="resize before the crop")
    crop: int = option(224, min=1, help="crop size")
    num_exo: int = option(3, min=1, help="E, exocentric images per sample")
    preload: bool = option(False, help="decode every image once into memory")
    augment: bool = option(True, help="crop/flip; false: DINO outputs memoised (fast CPU)")
    affinity_batch: int = option(16, min=1, help="batch size of the CLIP cache fill")

    def __post_init__(self) -> None:
        if self.affinity == "online" and not self.augment:
            raise ConfigError("affinity", "'online' needs data.augment: true")


@dataclass
class DinoSpec(WeightsSpec):
    """``backbone.dino``: the frozen DINO (ViT-S/16 as in the paper)."""

    variant: str = option("vits16", help="vits16 | tiny | tiny-synth")


@dataclass
class ClipSpec(ClipWeights):
    """``backbone.clip``: the frozen CLIP (ViT-B/16) and its input normalisation."""

    normalize: Literal["clip", "imagenet"] | None = option(
        None, help="null: imagenet in official mode (released code), else clip"
    )


@dataclass
class GroundingBackbones:
    """``backbone:``: the two frozen encoders."""

    dino: DinoSpec = option(factory=DinoSpec)
    clip: ClipSpec = option(factory=ClipSpec)


@dataclass
class GroundingTrain(TrainConfig):
    """``train:``: the shared keys (grounding's defaults) and the released optimiser."""

    batch_size: int = option(8, min=1, help="samples per step")
    weight_decay: float = option(5e-4, min=0, help="weight decay")
    out: str = option("runs/grounding", help="run folder")
    optimizer: Literal["sgd", "adam"] = option("sgd", help="sgd (released) | adam")
    momentum: float = option(0.9, min=0, max=1, help="SGD momentum")
    nesterov: bool = option(True, help="SGD Nesterov momentum")
    fc_lr_mult: float = option(10.0, min=0, help='lr multiplier of "fc" weights')
    fc_bias_lr_mult: float = option(20.0, min=0, help='lr multiplier of "fc" biases')
    bias_lr_mult: float = option(2.0, min=0, help="lr multiplier of the other biases")
    scheduler: Literal["none", "step"] = option("none", help="none | step (StepLR)")
    step_size: int = option(5, min=1, help="StepLR period in epochs")
    gamma: float = option(0.1, min=0, min_exclusive=True, help="StepLR factor")
    select_on_test: bool = option(False, help="select on TEST (only to compare with release)")
    max_batches_per_epoch: int | None = option(None, min=1, help="cap on steps per epoch")
    eval_batch_size: int = option(16, min=1, help="batch size of validation")


@dataclass
class GroundingExperiment:
    """One grounding experiment (``afford train grounding --config``): build it with
    :func:`afford.config.load` (YAML + ``--set``) or :func:`afford.config.from_dict`."""

    data: GroundingData = option(factory=GroundingData)
    backbone: GroundingBackbones = option(factory=GroundingBackbones)
    model: GroundingModelSpec = option(factory=GroundingModelSpec)
    train: GroundingTrain = option(factory=GroundingTrain)

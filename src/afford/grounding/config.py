"""Configuration of the grounding method (selective contrastive learning, LOCATE, CE only).

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

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from afford.errors import AffordError

METHODS = ("selective", "locate", "ce")
MODES = ("paper", "official")
CALIBRATIONS = ("binary", "soft", "none")
SALIENCIES = ("dino", "affinity")

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


@dataclass
class GroundingConfig:
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
    """

    method: str = "selective"
    mode: str = "paper"
    class_names: list[str] = field(default_factory=list)
    feat_dim: int = 384
    alpha: float = 0.6
    gamma1: float = 0.6
    gamma2: float = 0.6
    beta: float = 1.0
    tau: float = 0.5
    base_tau: float = 0.07
    lambda_proto: float = 1.0
    lambda_pixel: float = 1.0
    num_exo: int = 3
    k: int = 3
    kmeans_iters: int = 300
    kmeans_seed: int = 0
    use_proto: bool = True
    proto_part: bool = True
    use_pixel: bool = True
    pixel_part: bool = True
    object_fallback: bool = True
    calibration: str | None = None
    part_saliency: str = "dino"
    saliency_heads: tuple[int, ...] = (0, 1, 3)
    cam_start_epoch: int = 1
    locate_weight: float = 1.0
    locate_margin: float = 0.5
    locate_conc_weight: float = 0.07
    locate_start_epoch: int = 1

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
        """Raise :class:`AffordError` naming the first bad field and the fix."""

        def bad(name: str, msg: str) -> AffordError:
            return AffordError(f"GroundingConfig.{name}: {msg}")

        if self.method not in METHODS:
            raise bad("method", f"{self.method!r} is not one of {list(METHODS)}")
        if self.mode not in MODES:
            raise bad("mode", f"{self.mode!r} is not one of {list(MODES)}")
        if self.calibration not in CALIBRATIONS:
            raise bad("calibration", f"{self.calibration!r} is not one of {list(CALIBRATIONS)}")
        if self.part_saliency not in SALIENCIES:
            raise bad("part_saliency", f"{self.part_saliency!r} is not one of {list(SALIENCIES)}")
        if not isinstance(self.class_names, list) or not self.class_names:
            raise bad("class_names", "must be a non-empty list of affordance names")
        if not all(isinstance(c, str) and c for c in self.class_names):
            raise bad("class_names", "every entry must be a non-empty string")
        if len(set(self.class_names)) != len(self.class_names):
            dup = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
            raise bad("class_names", f"duplicate names {dup}")
        for name in ("feat_dim", "num_exo", "k", "kmeans_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, f"must be a positive integer, got {v!r}")
        for name in ("alpha", "gamma1", "gamma2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise bad(name, f"must be a number in [0, 1], got {v!r}")
        for name in ("tau", "base_tau"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise bad(name, f"must be a positive number, got {v!r}")
        for name in (
            "beta",
            "lambda_proto",
            "lambda_pixel",
            "locate_weight",
            "locate_margin",
            "locate_conc_weight",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise bad(name, f"must be a non-negative number, got {v!r}")
        for name in ("kmeans_seed", "cam_start_epoch", "locate_start_epoch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, f"must be a non-negative integer, got {v!r}")
        for name in ("use_proto", "proto_part", "use_pixel", "pixel_part", "object_fallback"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, f"must be true or false, got {getattr(self, name)!r}")
        heads = self.saliency_heads
        if (
            not isinstance(heads, tuple)
            or not heads
            or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in heads)
        ):
            raise bad("saliency_heads", f"must be a non-empty list of head indices, got {heads!r}")

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        """C, the number of affordance classes."""
        return len(self.class_names)

    @property
    def official(self) -> bool:
        """True in ``mode="official"``."""
        return self.mode == "official"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, not tuples); ``from_dict(to_dict())`` round-trips."""
        d = dataclasses.asdict(self)
        d["saliency_heads"] = list(self.saliency_heads)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> GroundingConfig:
        """Build from a dict (e.g. the ``model:`` section of a YAML file).

        Unknown keys raise :class:`AffordError` naming ``source`` and listing the known keys.
        A ``table2_row: <letter>`` key applies that row's switches first; the other keys
        then override it.
        """
        if not isinstance(d, dict):
            raise AffordError(f"{source}: grounding config must be a mapping, got {type(d)}")
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        row = d.pop("table2_row", None)
        unknown = sorted(set(d) - known)
        if unknown:
            raise AffordError(
                f"{source}: unknown grounding config keys {unknown}; known keys: {sorted(known)}"
            )
        try:
            if row is not None:
                return cls.table2_row(str(row), **d)
            return cls(**d)
        except AffordError as e:
            raise AffordError(f"{source}: {e}") from None
        except TypeError as e:  # pragma: no cover - defensive
            raise AffordError(f"{source}: bad grounding config: {e}") from None

    def replace(self, **changes: Any) -> GroundingConfig:
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ Table 2
    @_HybridMethod
    def table2_row(cls, base, letter: str, **overrides: Any) -> GroundingConfig:  # noqa: N805
        """Configuration of row ``letter`` ("a".."i") of the paper's Table 2.

        Called on the class (``GroundingConfig.table2_row("i", class_names=[...])``) the other
        fields take their defaults plus ``overrides``; called on an instance
        (``cfg.table2_row("c")``) they are copied from that instance. Rows (a)/(b) are the
        classification-only baseline (``method="ce"``); the others ``method="selective"``.
        "Cali." selects the mode's calibration ("binary" paper, "soft" official), else "none".
        """
        key = str(letter).strip().lower().strip("()")
        if key not in TABLE2_ROWS:
            raise AffordError(
                f"table2_row: unknown row {letter!r}; rows are {', '.join(sorted(TABLE2_ROWS))}"
            )
        use_proto, proto_part, use_pixel, pixel_part, cali = TABLE2_ROWS[key]
        d: dict[str, Any] = base.to_dict() if base is not None else {}
        d.update(overrides)
        mode = d.get("mode", "paper")
        d.update(
            method="selective" if (use_proto or use_pixel) else "ce",
            use_proto=use_proto,
            proto_part=proto_part,
            use_pixel=use_pixel,
            pixel_part=pixel_part,
            calibration=("soft" if mode == "official" else "binary") if cali else "none",
        )
        return cls(**d)

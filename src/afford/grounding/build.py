"""Building and loading the grounding pieces of an experiment.

* the frozen backbones (:func:`build_dino`, :func:`build_clip`, :func:`clip_normalize`);
* the frozen-output cache of the CLIP affinity maps (:func:`cache_root`, :func:`open_cache`);
* the runtime model config (:func:`model_config`: the ``model:`` section with the data's
  classes and DINO's width);
* trained checkpoints (:func:`resolve_checkpoint`, :func:`checkpoint_experiment`,
  :func:`load_trained`).

Everything takes a :class:`~afford.grounding.config.GroundingExperiment`; training itself is
:mod:`afford.grounding.train`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from afford.backbones import load_clip, load_dino, policy
from afford.config import ConfigError, from_dict, load, to_dict
from afford.data.cache import MapCache
from afford.engine import load_checkpoint
from afford.errors import AffordError, DataError
from afford.grounding.affinity import cache_model_id
from afford.grounding.config import GroundingConfig, GroundingExperiment
from afford.grounding.model import GroundingModel

#: MapCache ``model_id`` of the simulated CLIP maps of the synthetic world.
SIMULATED_ID = "simulated-clip"
#: Key of the backbone records (:mod:`afford.backbones.policy`) in a checkpoint's config.
BACKBONES_KEY = "backbones"


# ------------------------------------------------------------------------------ backbones
def clip_normalize(exp: GroundingExperiment) -> str:
    """CLIP input normalisation: explicit, else "imagenet" in official mode (the released
    code's quirk) and CLIP's own in paper mode."""
    norm = exp.backbone.clip.normalize
    if norm:
        return norm
    return "imagenet" if exp.model.mode == "official" else "clip"


def build_dino(exp: GroundingExperiment, device: torch.device):
    """The frozen DINO of ``backbone.dino``."""
    spec = exp.backbone.dino
    return load_dino(weights=spec.weights, variant=spec.variant, device=device)


def build_clip(exp: GroundingExperiment, device: torch.device):
    """The frozen CLIP of ``backbone.clip`` (normalisation: :func:`clip_normalize`)."""
    spec = exp.backbone.clip
    return load_clip(
        weights=spec.weights, variant=spec.variant, normalize=clip_normalize(exp), device=device
    )


# ------------------------------------------------------------------------------ cache
def cache_root(exp: GroundingExperiment, data_root: Path) -> Path:
    """``data.cache`` or the first existing of ``<root>/cache``, ``<root>/../cache``."""
    if exp.data.cache:
        return Path(exp.data.cache).expanduser()
    for cand in (data_root / "cache", data_root.parent / "cache"):
        if cand.is_dir():
            return cand
    return data_root / "cache"


def open_cache(exp: GroundingExperiment, data_root: Path, clip=None) -> MapCache | None:
    """The MapCache holding the affinity maps of this experiment (None for ``online``)."""
    mode = exp.data.affinity
    root = cache_root(exp, data_root)
    if mode == "simulated":
        return MapCache.open(root, SIMULATED_ID)
    if mode == "clip":
        if clip is None:
            raise AffordError("open_cache: a CLIP backbone is needed for data.affinity 'clip'")
        return MapCache(root, cache_model_id(clip), meta={"clearclip": True})
    return None


# ------------------------------------------------------------------------------ model
def model_config(exp: GroundingExperiment, classes: list[str], feat_dim: int) -> GroundingConfig:
    """GroundingConfig from the ``model`` section, with the data's classes and DINO's width
    (``model.num_exo`` defaults to ``data.num_exo``)."""
    spec = exp.model
    if spec.class_names is not None and list(spec.class_names) != list(classes):
        raise ConfigError(
            "model.class_names",
            f"{spec.class_names} differ from the dataset's classes {classes}; "
            "remove model.class_names (it is read from the data)",
        )
    num_exo = spec.num_exo if spec.num_exo is not None else exp.data.num_exo
    return spec.build(class_names=list(classes), feat_dim=int(feat_dim), num_exo=num_exo)


# ------------------------------------------------------------------------------ checkpoints
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, or a run folder holding ``best/`` (preferred) or ``last/``."""
    p = Path(path).expanduser()
    if (p / "model.safetensors").is_file():
        return p
    for sub in ("best", "last"):
        if (p / sub / "model.safetensors").is_file():
            return p / sub
    raise DataError(
        f"{p}: not a grounding checkpoint (no model.safetensors here or in best/, last/)"
    )


def read_checkpoint(ckpt_dir: Path, map_location: str | torch.device = "cpu") -> dict:
    """:func:`afford.engine.load_checkpoint` with every unreadable file (truncated or empty
    weights, a pickle where safetensors belong, broken JSON) a one-line DataError naming it."""
    from safetensors import SafetensorError

    try:
        return load_checkpoint(ckpt_dir, map_location=map_location)
    except DataError:
        raise
    except AffordError as exc:
        raise DataError(str(exc)) from None
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"{ckpt_dir}: cannot read the checkpoint ({type(exc).__name__}: {reason})"
        ) from None


def _experiment(raw: object, ckpt_dir: Path, sets: Iterable[str]) -> GroundingExperiment:
    """The experiment stored in a checkpoint (weight paths relative to it made absolute),
    ``--set`` overrides on top."""
    source = ckpt_dir / "config.json"
    if isinstance(raw, dict) and raw.get("kind") not in (None, "grounding"):
        raise DataError(f"{source}: a {raw['kind']} checkpoint, not a grounding one")
    if not isinstance(raw, dict) or "model" not in raw or "backbone" not in raw:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        what = f" (a {kind} checkpoint)" if kind else ""
        raise DataError(f"{source}: not a grounding checkpoint{what}")
    raw = {k: v for k, v in raw.items() if k != BACKBONES_KEY}
    try:
        exp = from_dict(GroundingExperiment, raw)
    except ConfigError as e:
        raise DataError(f"{source}: {e}") from None
    for spec in (exp.backbone.dino, exp.backbone.clip):
        w = spec.weights
        if w is not None and w != "random" and not Path(w).is_absolute():
            if (ckpt_dir / w).exists():
                spec.weights = str(ckpt_dir / w)
    sets = list(sets)
    return load(GroundingExperiment, None, sets, base=to_dict(exp)) if sets else exp


def checkpoint_experiment(
    path: str | os.PathLike, sets: Iterable[str] = ()
) -> tuple[Path, GroundingExperiment]:
    """(checkpoint folder, its experiment with ``sets`` applied) without building the model."""
    ckpt_dir = resolve_checkpoint(path)
    return ckpt_dir, _experiment(read_checkpoint(ckpt_dir)["config"], ckpt_dir, sets)


def backbone_records(raw: object) -> dict:
    """The ``{"dino": record, "clip": record}`` stored in a checkpoint config ({} if none)."""
    recs = raw.get(BACKBONES_KEY) if isinstance(raw, dict) else None
    return recs if isinstance(recs, dict) else {}


def with_backbone_records(config: dict, **modules) -> dict:
    """``config`` (a checkpoint config dict) with the records of ``modules`` (dino=, clip=)."""
    return {**config, BACKBONES_KEY: policy.records(**modules)}


_FIX = {
    "dino": "point backbone.dino.weights to the training weights (--set backbone.dino.weights=FILE)",
    "clip": "point backbone.clip.weights to the training weights (--set backbone.clip.weights=FILE)",
}


def load_trained(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    with_clip: bool = False,
    sets: Iterable[str] = (),
    allow_backbone_mismatch: bool = False,
) -> tuple[GroundingModel, GroundingExperiment, object, object]:
    """(model, experiment, dino, clip|None) from a checkpoint written by
    :func:`afford.grounding.train.train` or the importer; ``sets`` (``--set key=value``)
    change the stored experiment first (e.g. ``data.root``, ``model.calibration``).

    The backbones built are checked against the checkpoint's records
    (:func:`afford.backbones.policy.check`): a different one is a UsageError naming both
    unless ``allow_backbone_mismatch``."""
    ckpt_dir = resolve_checkpoint(path)
    ckpt = read_checkpoint(ckpt_dir, map_location=device)
    exp = _experiment(ckpt["config"], ckpt_dir, sets)
    recs = backbone_records(ckpt["config"])
    model = GroundingModel(exp.model.build())
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(
            f"{ckpt_dir}: the weights do not fit the stored model config ({exc})"
        ) from None
    device = torch.device(device)
    model.to(device).eval()
    dino = build_dino(exp, device)
    policy.check(recs.get("dino"), dino, role="dino", checkpoint=ckpt_dir,
                 allow_mismatch=allow_backbone_mismatch, fix=_FIX["dino"])  # fmt: skip
    clip = build_clip(exp, device) if with_clip else None
    if clip is not None:
        policy.check(recs.get("clip"), clip, role="clip", checkpoint=ckpt_dir,
                     allow_mismatch=allow_backbone_mismatch, fix=_FIX["clip"])  # fmt: skip
    return model, exp, dino, clip

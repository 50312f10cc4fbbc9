"""``afford import-checkpoint``: convert a released SelectiveCL state dict into our checkpoint.

The released ``Net`` state dict (saved with ``torch.save``) holds:

* the trainable heads, whose names ours share one-to-one (:data:`afford.grounding.heads.
  RELEASED_KEY_MAP`): ``aff_proj.{norm,fc1,fc2}``, ``aff_ego_proj.*``, ``aff_exo_proj.*``,
  ``aff_classifier``, ``K_contrast_projection``, ``pixel_contrast_projection``;
* the frozen DINO ViT under ``vit_model.*`` (official DINO / timm ViT layout);
* the frozen CLIP under ``net.*`` (OpenAI CLIP layout).

Output: an afford checkpoint folder (``model.safetensors`` + ``config.json``, loadable by
``afford eval grounding`` / ``afford ground``) plus ``dino.safetensors`` and
``clip.safetensors`` beside it, referenced from the config by relative path.  The file is read
with ``torch.load(weights_only=True)`` (no code from the file is executed).

Released checkpoints reproduce the released code, so the default is ``mode="official"`` (soft
calibration, ImageNet-normalised CLIP input).  The class list comes from ``--dataset`` or,
when omitted, from the classifier width (36 Seen, 25 Unseen, 10 HICO-IIF).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from afford.config import from_dict, to_dict
from afford.data.agd20k import DATASETS
from afford.data.io import atomic_path
from afford.engine import save_checkpoint
from afford.errors import AffordError
from afford.grounding.config import GroundingConfig, GroundingExperiment
from afford.grounding.model import GroundingModel

HEAD_PREFIXES = (
    "aff_proj.",
    "aff_ego_proj.",
    "aff_exo_proj.",
    "aff_classifier.",
    "K_contrast_projection.",
    "pixel_contrast_projection.",
)
DINO_PREFIX = "vit_model."
CLIP_PREFIX = "net."
_BY_WIDTH = {36: "agd20k_seen", 25: "agd20k_unseen", 10: "hico_iif"}


def read_released(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a released ``torch.save`` file safely (``weights_only=True``) -> flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise AffordError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip failures have many types
        raise AffordError(f"{path}: cannot read as a torch.save state dict ({exc})") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise AffordError(f"{path}: does not hold a state dict")
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def split_released(sd: dict[str, torch.Tensor]) -> tuple[dict, dict, dict, list[str]]:
    """(heads, dino, clip, unknown keys) of a released state dict; prefixes of dino/clip removed."""
    heads, dino, clip, unknown = {}, {}, {}, []
    for k, v in sd.items():
        if k.startswith(HEAD_PREFIXES):
            heads[k] = v
        elif k.startswith(DINO_PREFIX):
            dino[k[len(DINO_PREFIX) :]] = v
        elif k.startswith(CLIP_PREFIX):
            clip[k[len(CLIP_PREFIX) :]] = v
        else:
            unknown.append(k)
    return heads, dino, clip, sorted(unknown)


def _variant(family: str, width: int) -> str:
    real = {"dino": 384, "clip": 768}[family]
    return {"dino": "vits16", "clip": "vitb16"}[family] if width == real else "tiny"


def import_checkpoint(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset: str | None = None,
    classes: list[str] | None = None,
    mode: str = "official",
    dino_weights: str | None = None,
    clip_weights: str | None = None,
) -> Path:
    """Convert the released state dict ``src`` into the checkpoint folder ``out``.

    Args:
        dataset: "agd20k_seen" | "agd20k_unseen" | "hico_iif" (class list); default from the
            classifier width.
        classes: explicit class list (overrides ``dataset``).
        mode: "official" (default; the released behaviour) or "paper".
        dino_weights, clip_weights: backbone weight files to reference when the release file
            does not contain ``vit_model.*`` / ``net.*``.

    Returns:
        ``out``.
    """
    src, out = Path(src), Path(out)
    heads, dino, clip, unknown = split_released(read_released(src))
    if unknown:
        raise AffordError(
            f"{src}: unexpected keys for a SelectiveCL state dict, e.g. {unknown[:5]} (expected "
            f"{', '.join(HEAD_PREFIXES)}, {DINO_PREFIX}*, {CLIP_PREFIX}*)"
        )
    for need in ("aff_proj.norm.weight", "aff_classifier.weight"):
        if need not in heads:
            raise AffordError(f"{src}: missing {need!r}; not a SelectiveCL/LOCATE state dict")
    feat_dim = int(heads["aff_proj.norm.weight"].shape[0])
    n_cls = int(heads["aff_classifier.weight"].shape[0])
    if classes is None:
        dataset = dataset or _BY_WIDTH.get(n_cls)
        if dataset is None or DATASETS.get(dataset) is None:
            raise AffordError(
                f"{src}: the classifier has {n_cls} classes; pass --dataset (agd20k_seen, "
                "agd20k_unseen, hico_iif) or --classes with that many names"
            )
        classes = list(DATASETS[dataset])  # type: ignore[arg-type]
    if len(classes) != n_cls:
        raise AffordError(
            f"{src}: the classifier has {n_cls} classes but {len(classes)} names were given"
        )
    method = "selective" if "K_contrast_projection.weight" in heads else "locate"
    gcfg = from_dict(
        GroundingConfig,
        {"method": method, "mode": mode, "class_names": list(classes), "feat_dim": feat_dim},
    )
    model = GroundingModel(gcfg)
    want = model.state_dict()
    missing = sorted(set(want) - set(heads))
    extra = sorted(set(heads) - set(want))
    if missing or extra:
        raise AffordError(
            f"{src}: head keys do not match the model (missing {missing[:6]}, unexpected {extra[:6]})"
        )
    bad = [k for k in want if tuple(want[k].shape) != tuple(heads[k].shape)]
    if bad:
        k = bad[0]
        raise AffordError(
            f"{src}: {k} has shape {tuple(heads[k].shape)}, expected {tuple(want[k].shape)}"
        )
    model.load_state_dict(heads)

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AffordError(f"{out}: already exists and is not empty; choose another --out")
    backbone: dict = {"clip": {"normalize": "imagenet" if mode == "official" else "clip"}}
    files: dict[str, dict[str, torch.Tensor]] = {}
    if dino:
        files["dino.safetensors"] = dino
        width = int(dino["cls_token"].shape[-1]) if "cls_token" in dino else feat_dim
        backbone["dino"] = {"variant": _variant("dino", width), "weights": "dino.safetensors"}
    elif dino_weights:
        backbone["dino"] = {"weights": str(dino_weights)}
    if clip:
        files["clip.safetensors"] = clip
        width = int(clip["visual.conv1.weight"].shape[0]) if "visual.conv1.weight" in clip else 768
        backbone["clip"].update(variant=_variant("clip", width), weights="clip.safetensors")
    elif clip_weights:
        backbone["clip"]["weights"] = str(clip_weights)
    exp = from_dict(
        GroundingExperiment,
        {"data": {"dataset": dataset or "folders"}, "backbone": backbone, "model": to_dict(gcfg)},
    )
    config = to_dict(exp)
    save_checkpoint(out, model, config, extra={"imported_from": str(src), "method": method})
    for name, tensors in files.items():
        with atomic_path(out / name) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return out

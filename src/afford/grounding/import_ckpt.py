"""``afford import-checkpoint``: convert a released SelectiveCL state dict into our checkpoint.

The released ``Net`` state dict (saved with ``torch.save``) holds:

* the trainable heads, whose names ours share one-to-one (:data:`afford.grounding.heads.
  RELEASED_KEY_MAP`): ``aff_proj.{norm,fc1,fc2}``, ``aff_ego_proj.*``, ``aff_exo_proj.*``,
  ``aff_classifier``, ``K_contrast_projection``, ``pixel_contrast_projection``;
* the frozen DINO ViT under ``vit_model.*`` (official DINO / timm ViT layout);
* the frozen CLIP under ``net.*`` (OpenAI CLIP layout).

Output: an afford checkpoint folder (``model.safetensors`` + ``config.json``, loadable by
``afford eval grounding`` / ``afford ground`` / ``afford.Grounder``).  The frozen backbones are
*referenced*, not copied: the release's ``vit_model.*`` / ``net.*`` tensors are compared with
the official DINO ViT-S/16 and CLIP ViT-B/16 files (``--dino-weights`` / ``--clip-weights``, or
resolved like every backbone: ``$AFFORD_WEIGHTS``, the hub caches), and when they are the same
weights the config names that backbone and stores its record (name + digest,
:mod:`afford.backbones.policy`); loading later checks the record.  A release whose backbone
differs from the official one, or backbones of the tiny width (tests), are written beside the
checkpoint (``dino.safetensors`` / ``clip.safetensors``, referenced by relative path), as is
everything with ``copy_backbones=True`` (``--copy-backbones``).  The file is read with
``torch.load(weights_only=True)`` (no code from the file is executed).

Released checkpoints reproduce the released code, so the default is ``mode="official"`` (soft
calibration, ImageNet-normalised CLIP input).  The class list comes from ``--dataset`` or,
when omitted, from the classifier width (36 Seen, 25 Unseen, 10 HICO-IIF).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from afford.backbones import load_clip, load_dino, policy
from afford.backbones.weights import read_state_dict, resolve_weights
from afford.config import from_dict, to_dict
from afford.data.agd20k import DATASETS
from afford.data.io import atomic_path
from afford.engine import save_checkpoint
from afford.errors import AffordError, DataError, UsageError
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
_FAMILY_ARG = {"dino": "--dino-weights", "clip": "--clip-weights"}

log = logging.getLogger(__name__)


def read_released(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a released ``torch.save`` file safely (``weights_only=True``) -> flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip failures have many types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"{path}: cannot read as a torch.save state dict (loaded with weights_only=True, "
            f"no code from the file runs: {reason})"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: does not hold a state dict")
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


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """True when ``a`` and ``b`` hold the same keys and values (floats compared in float32, so
    the fp16 OpenAI CLIP file equals an fp32 copy of it; non-tensor entries ignored)."""
    if set(a) != set(b):
        return False
    for k, va in a.items():
        vb = b[k]
        if tuple(va.shape) != tuple(vb.shape):
            return False
        if va.is_floating_point() or vb.is_floating_point():
            if not torch.equal(va.float(), vb.float()):
                return False
        elif not torch.equal(va, vb):
            return False
    return True


def _official(family: str, embedded: dict, weights) -> Path | None:
    """The official weight file of ``family`` when it holds exactly the ``embedded`` tensors;
    None when the release's backbone is another one. AffordError when no file is found."""
    try:
        path = resolve_weights(family, weights)
    except AffordError as exc:
        raise DataError(
            f"the release embeds the {family} backbone; to reference it instead of copying "
            f"686 MB, afford needs the official file: {exc}. Or pass {_FAMILY_ARG[family]} FILE, "
            "or --copy-backbones to store the release's own tensors"
        ) from None
    official = read_state_dict(path)
    if family == "clip":  # TorchScript extras (input_resolution, ...) are not weights
        official = {k: v for k, v in official.items() if k in embedded}
    return path if same_tensors(embedded, official) else None


def _record_of_file(family: str, path: Path, variant: str, normalize: str) -> dict:
    if family == "dino":
        return policy.record(load_dino(weights=path, variant=variant))
    return policy.record(load_clip(weights=path, variant=variant, normalize=normalize))


def import_checkpoint(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset: str | None = None,
    classes: list[str] | None = None,
    mode: str = "official",
    dino_weights: str | None = None,
    clip_weights: str | None = None,
    copy_backbones: bool = False,
) -> Path:
    """Convert the released state dict ``src`` into the checkpoint folder ``out``.

    Args:
        dataset: "agd20k_seen" | "agd20k_unseen" | "hico_iif" (class list); default from the
            classifier width.
        classes: explicit class list (overrides ``dataset``).
        mode: "official" (default; the released behaviour) or "paper".
        dino_weights, clip_weights: backbone weight files to reference (the official files;
            default: resolved like every backbone); needed when the release holds no
            ``vit_model.*`` / ``net.*``.
        copy_backbones: store the release's backbone tensors beside the checkpoint instead of
            referencing the official files.

    Returns:
        ``out``.
    """
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # before reading anything
        raise UsageError(f"--out {out}: already exists and is not empty; choose another folder")
    heads, dino, clip, unknown = split_released(read_released(src))
    if unknown:
        raise DataError(
            f"{src}: unexpected keys for a SelectiveCL state dict, e.g. {unknown[:5]} (expected "
            f"{', '.join(HEAD_PREFIXES)}, {DINO_PREFIX}*, {CLIP_PREFIX}*)"
        )
    for need in ("aff_proj.norm.weight", "aff_classifier.weight"):
        if need not in heads:
            raise DataError(f"{src}: missing {need!r}; not a SelectiveCL/LOCATE state dict")
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
        raise UsageError(
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
        raise DataError(
            f"{src}: head keys do not match the model (missing {missing[:6]}, unexpected {extra[:6]})"
        )
    bad = [k for k in want if tuple(want[k].shape) != tuple(heads[k].shape)]
    if bad:
        k = bad[0]
        raise DataError(
            f"{src}: {k} has shape {tuple(heads[k].shape)}, expected {tuple(want[k].shape)}"
        )
    model.load_state_dict(heads)

    normalize = "imagenet" if mode == "official" else "clip"
    backbone: dict = {"clip": {"normalize": normalize}, "dino": {}}
    files: dict[str, dict[str, torch.Tensor]] = {}
    refs: dict[str, tuple[Path, str]] = {}  # family -> (file, variant) for the records
    given = {"dino": dino_weights, "clip": clip_weights}
    for family, tensors in (("dino", dino), ("clip", clip)):
        if tensors:
            if family == "dino":
                width = int(tensors["cls_token"].shape[-1]) if "cls_token" in tensors else feat_dim
            else:
                w = tensors.get("visual.conv1.weight")
                width = int(w.shape[0]) if w is not None else 768
            variant = _variant(family, width)
            path = None
            if variant != "tiny" and not copy_backbones:
                path = _official(family, tensors, given[family])
                if path is None:
                    log.warning("the release's %s backbone differs from the official file; "
                                "storing its tensors beside the checkpoint", family)  # fmt: skip
            if path is None:
                files[f"{family}.safetensors"] = tensors
                backbone[family].update(variant=variant, weights=f"{family}.safetensors")
                refs[family] = (out / f"{family}.safetensors", variant)
            else:
                backbone[family].update(variant=variant, weights=str(path))
                refs[family] = (path, variant)
        elif given[family]:
            backbone[family]["weights"] = str(given[family])
    if not backbone["dino"]:
        del backbone["dino"]
    exp = from_dict(
        GroundingExperiment,
        {"data": {"dataset": dataset or "folders"}, "backbone": backbone, "model": to_dict(gcfg)},
    )
    config = to_dict(exp)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as td:
        written = {}
        for name, tensors in files.items():  # written first: the records are of these files
            written[name] = Path(td) / name
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(written[name]))
        records = {}
        for family, (path, variant) in refs.items():
            local = written.get(path.name) if path.parent == out else None
            records[family] = _record_of_file(family, local or path, variant, normalize)
        config["backbones"] = records
        save_checkpoint(out, model, config, extra={"imported_from": str(src), "method": method})
        for name, tmp_file in written.items():
            with atomic_path(out / name) as tmp:
                os.replace(tmp_file, tmp)
    return out

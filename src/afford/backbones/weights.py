"""Finding and reading backbone weight files.

Resolution order for a backbone's real weights (``resolve_weights``):

1. an explicit path (``weights=...``);
2. the ``AFFORD_WEIGHTS`` directory (any of the accepted file names: the family's
   ``WeightSpec`` in ``afford.backbones.registry``);
3. the Hugging Face hub cache (timm / open_clip repositories) and the torch hub / CLIP caches;
4. when network access is allowed (``HF_HUB_OFFLINE`` and ``AFFORD_OFFLINE`` unset), the
   official download URL, saved into ``AFFORD_WEIGHTS`` (or the torch hub cache).

Offline with nothing found raises one ``AffordError`` naming the file, where to put it and how
to fetch it. ``read_state_dict`` reads every accepted format: plain ``torch.save`` state dicts
(``.pth``/``.pt``/``.bin``), TorchScript archives (OpenAI's CLIP ``.pt``) and ``.safetensors``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import load_file, save_file

from afford.backbones.registry import FAMILIES, PRETRAIN_FAMILIES, TINY_SEED, WeightSpec
from afford.backbones.registry import family as family_spec
from afford.backbones.registry import variant as variant_spec
from afford.data.io import atomic_path
from afford.errors import AffordError, DataError

log = logging.getLogger(__name__)

ENV_DIR = "AFFORD_WEIGHTS"


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    """True when downloads are not allowed (``HF_HUB_OFFLINE`` or ``AFFORD_OFFLINE`` set)."""
    for var in ("HF_HUB_OFFLINE", "AFFORD_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _spec(family: str) -> WeightSpec:
    return family_spec(family).weights


def _env_dir() -> Path | None:
    value = os.environ.get(ENV_DIR, "").strip()
    return Path(value).expanduser() if value else None


def _hf_cached(repo_id: str, filename: str) -> Path | None:
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - a broken cache must not break resolution
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def candidate_paths(family: str) -> list[Path]:
    """Every place (in resolution order, explicit path excluded) searched for ``family``."""
    spec = _spec(family)
    out: list[Path] = []
    env = _env_dir()
    if env is not None:
        out += [env / name for name in spec.local_names]
    for repo_id, filename in spec.hf:
        hit = _hf_cached(repo_id, filename)
        if hit is not None:
            out.append(hit)
    out.append(_torch_hub_checkpoints() / spec.filename)
    out += [Path(d).expanduser() / spec.filename for d in spec.cache_dirs]
    return out


def find_weights(family: str) -> Path | None:
    """The first existing weight file for ``family`` (no download), or None."""
    for path in candidate_paths(family):
        if path.is_file():
            return path
    return None


def hint(family: str) -> str:
    """Human instructions: file name, where to put it, how to fetch it when online."""
    spec = _spec(family)
    env = _env_dir()
    hf = ", ".join(f"{r}/{f}" for r, f in spec.hf)
    if env is not None:
        where = f"${ENV_DIR} (= {env})"
        fetch = f"`wget {spec.url} -P {env}`"
    else:
        where = f"a directory named by ${ENV_DIR}"
        fetch = (
            f"`mkdir -p ~/afford-weights && wget {spec.url} -P ~/afford-weights && "
            f"export {ENV_DIR}=~/afford-weights`"
        )
    return (
        f"put {spec.filename} in {where} or pass weights=PATH; to fetch it when online: "
        f"{fetch} (or run once with network access and HF_HUB_OFFLINE unset, which downloads "
        f"it automatically; a Hugging Face cache of {hf} is also used)"
    )


def _download(family: str) -> Path:
    spec = _spec(family)
    target_dir = _env_dir() or _torch_hub_checkpoints()
    target = target_dir / spec.filename
    target_dir.mkdir(parents=True, exist_ok=True)

    log.info("downloading %s weights from %s to %s", family, spec.url, target)
    with atomic_path(target) as tmp:
        torch.hub.download_url_to_file(spec.url, str(tmp), progress=True)
    return target


def resolve_weights(family: str, weights: str | os.PathLike | None = None) -> Path:
    """Path of the real weights of ``family`` ("dino" | "dinov2" | "clip").

    An explicit ``weights`` path must exist. Otherwise ``AFFORD_WEIGHTS``, then the hub caches
    are searched; when online the official file is downloaded. Raises AffordError otherwise.
    """
    spec = _spec(family)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataError(
                f"{family} weight file {path} does not exist (weights={str(weights)!r}); "
                + hint(family)
            )
        return path
    found = find_weights(family)
    if found is not None:
        return found
    if offline():
        searched = ", ".join(str(p) for p in candidate_paths(family)) or "(nothing)"
        raise AffordError(
            f"{family} weights {spec.filename} not found and downloads are disabled "
            f"(offline). Searched: {searched}. Fix: " + hint(family)
        )
    try:
        return _download(family)
    except Exception as exc:  # noqa: BLE001 - network failures come in many types
        raise AffordError(
            f"{family} weights {spec.filename} not found locally and the download from "
            f"{spec.url} failed ({exc}). Fix: " + hint(family)
        ) from exc


def shipped_weights(family: str) -> Path:
    """Path of the tiny-synth weights shipped inside the package (``afford/assets/``) for
    ``family`` ("dino" | "dinov2"): tiny backbones pre-trained self-supervised on synthetic
    renders (``afford pretrain-backbone``, docs/tiny-backbones.md). The file may be missing in
    a source checkout that has not generated it."""
    if family not in PRETRAIN_FAMILIES:
        raise AffordError(
            f"no shipped tiny-synth weights for {family!r}; choose one of {list(PRETRAIN_FAMILIES)}"
        )
    return family_spec(family).shipped_path


def tiny_synth_weights(family: str, weights):
    """The weights to load for ``variant="tiny-synth"``: ``weights`` when given, else the
    shipped file of ``family``; an AffordError (with the command that regenerates it) when
    the shipped file is missing."""
    if weights is not None:
        return weights
    path = shipped_weights(family)
    if not path.is_file():
        raise AffordError(
            f"{family_spec(family).label} tiny-synth weights {path} are missing; generate them "
            f"with `afford pretrain-backbone --config pretrain/tiny-synth-{family} --out {path}` "
            "(docs/tiny-backbones.md)"
        )
    return path


def weights_status() -> dict[str, dict]:
    """For ``afford info``: {"dino"|"dinov2"|"clip": {"found", "path", "hint"}} (no download),
    plus "dino-tiny-synth" / "dinov2-tiny-synth" for the shipped pre-trained tiny weights."""
    out = {}
    for family in FAMILIES:
        path = find_weights(family)
        out[family] = {
            "found": path is not None,
            "path": str(path) if path is not None else None,
            "hint": hint(family),
        }
    for family in PRETRAIN_FAMILIES:
        path = shipped_weights(family)
        out[f"{family}-tiny-synth"] = {
            "found": path.is_file(),
            "path": str(path) if path.is_file() else None,
            "hint": f"self-supervised tiny weights in afford/assets; (re)generate with "
            f"`afford pretrain-backbone --config pretrain/tiny-synth-{family} --out {path}` "
            "(docs/tiny-backbones.md)",
        }
    return out


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weight file into a flat {name: tensor} dict on the CPU.

    Accepts ``.safetensors``, ``torch.save`` files (plain state dicts or training checkpoints
    with a "state_dict"/"model"/"teacher" entry; "module." and "backbone." prefixes are
    removed) and TorchScript archives such as OpenAI's CLIP ``.pt``. Raises AffordError when
    the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weight file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            obj: object = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            with warnings.catch_warnings():  # torch.jit.load is deprecated, still needed here
                warnings.simplefilter("ignore", category=FutureWarning)
                warnings.simplefilter("ignore", category=DeprecationWarning)
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - many formats, many failure types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"cannot read weight file {path}: {reason} (expected a .safetensors file, a "
            "torch.save state dict or a TorchScript archive; nothing in it was executed)"
        ) from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise DataError(f"weight file {path} does not hold a state dict (got {type(obj)})")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise DataError(f"weight file {path} holds no tensors")
    for prefix in ("module.", "backbone."):
        sd = _strip_prefix(sd, prefix)
    return sd


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` or ``code/`` entry."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Cheap stable fingerprint of a weight file: sha256 of its size, first and last MiB.

    Returns 12 hex characters. Used inside ``model_id`` (cache keys), so the same file gives
    the same id on every machine without hashing hundreds of MB.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(size - chunk, chunk))
            h.update(fh.read(chunk))
    return h.hexdigest()[:12]


def load_into(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with an AffordError naming ``source``
    and the mismatching keys/shapes when the layout does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:3]}{' ...' if len(shapes) > 3 else ''}")
        raise AffordError(
            f"weight file {source} does not match the {type(model).__name__} architecture: "
            + "; ".join(parts)
            + " (is it the right file for this backbone and variant?)"
        )
    with torch.no_grad():
        model.load_state_dict(
            {k: v.to(dtype=own[k].dtype) for k, v in state_dict.items()}, strict=True
        )


def save_weights(module: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write a backbone's weights in the layout its loader reads (atomic).

    ``module`` is a module returned by ``load_dino`` / ``load_dinov2`` / ``load_clip`` (e.g. a
    tiny backbone trained self-supervised); the file is ``.safetensors`` or, for any other
    suffix, a ``torch.save`` state dict. Keys are those of the official files (DINO/DINOv2:
    timm = DINO layout; CLIP: OpenAI layout), so ``load_*(weights=path, variant=...)`` reads it.
    """
    inner = getattr(module, "inner", None)
    if not isinstance(inner, torch.nn.Module):
        raise AffordError(
            f"save_weights: expected a backbone from afford.backbones, got {type(module).__name__}"
        )
    sd = {k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            save_file(sd, str(tmp))
        else:
            torch.save(sd, tmp)
    return path


def load_family_vit(
    family: str,
    variant: str,
    weights,
    build_vit: Callable[[str], torch.nn.Module],
    convert: Callable[[dict, torch.nn.Module], dict],
) -> tuple[torch.nn.Module, str]:
    """Build the timm ViT of a DINO-family ``variant`` and load its weights -> (vit, model_id).

    ``variant`` is one of the family's registry variants: the real one, "tiny" or
    "tiny-synth" (the tiny architecture with the shipped self-supervised weights).
    ``weights``: a path, "random" (seeded init), or None (real variant: resolve the official
    file; tiny: seeded init). ``convert`` maps an official state dict onto the timm model's
    keys. Unknown variants raise AffordError listing the registry's.
    """
    spec = family_spec(family)
    vspec = variant_spec(family, variant)
    model_variant = variant
    if vspec.weights == "shipped":  # the tiny architecture with pre-trained (shipped) weights
        variant = "tiny"
        weights = tiny_synth_weights(family, weights)
    if weights == "random" or (weights is None and variant == "tiny"):
        return build_vit(variant), f"{family}-{variant}@random{TINY_SEED}"
    real = vspec.weights == "real"
    path = resolve_weights(family, weights) if real else Path(weights)
    if not path.is_file():
        raise AffordError(
            f"{spec.label} tiny weight file {path} does not exist (weights={weights!r})"
        )
    sd = read_state_dict(path)
    vit = build_vit(variant)
    load_into(vit, convert(sd, vit), str(path))
    return vit, f"{family}-{model_variant}@{file_fingerprint(path)}"

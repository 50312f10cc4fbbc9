"""Which backbone a checkpoint was trained with, and one rule for loading it with another.

Every checkpoint written by training or by the importer stores, per frozen backbone, a
*record* (:func:`record`)::

    {"name": "dinov2-vitb14", "model_id": "dinov2-vitb14@3f2a...", "digest": "sha256:..."}

``name`` is the family and registry variant; ``digest`` identifies the weights:
``"random-init:<seed>"`` for a seeded random backbone, else ``"sha256:<hex>"`` of the weight
*tensors as loaded* (names, dtypes, shapes and bytes of the backbone's state dict, in key
order).  Hashing the loaded tensors rather than the file makes the same weights stored as
``.pth``, ``.safetensors`` or a TorchScript archive one backbone, while a different file of the
same architecture is another.  The digest is cached (in memory and in
``$XDG_CACHE_HOME/afford/backbone-digests.json``) by the backbone's ``model_id``, which already
contains a cheap file fingerprint, so a ViT-B is hashed once per machine.

Loading (:func:`check`) compares the stored record with the backbone actually built: a
different name or digest is a :class:`~afford.errors.UsageError` naming both, unless the caller
passes ``allow_mismatch`` (``--allow-backbone-mismatch``, ``allow_backbone_mismatch=True``),
which logs a warning instead.  Checkpoints older than the records (a bare ``model_id`` string
or nothing) are compared by ``model_id`` / accepted with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from afford.data.io import write_text
from afford.errors import UsageError

log = logging.getLogger(__name__)

ALLOW_HINT = "pass --allow-backbone-mismatch (API: allow_backbone_mismatch=True) to run anyway"
_MEMO: dict[str, str] = {}
_RANDOM = re.compile(r"@random(\d+)(?:\+|$)")


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "afford" / "backbone-digests.json"


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(model_id: str, digest: str) -> None:
    path = _cache_file()
    try:
        data = _read_cache()
        data[model_id] = digest
        write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError:  # a read-only home must not break loading
        pass


def tensor_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` of a state dict: every key (sorted), dtype, shape and the bytes."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def _module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(module, "inner", module)
    return dict(inner.state_dict())


def digest(module: torch.nn.Module) -> str:
    """The weight digest of a backbone from :mod:`afford.backbones` (cached by ``model_id``)."""
    model_id = str(getattr(module, "model_id", ""))
    m = _RANDOM.search(model_id)
    if m:
        return f"random-init:{m.group(1)}"
    if model_id and model_id in _MEMO:
        return _MEMO[model_id]
    if model_id:
        cached = _read_cache().get(model_id)
        if isinstance(cached, str) and cached.startswith("sha256:"):
            _MEMO[model_id] = cached
            return cached
    value = tensor_digest(_module_state(module))
    if model_id:
        _MEMO[model_id] = value
        _write_cache(model_id, value)
    return value


def name_of(model_id: str) -> str:
    """``"dinov2-vitb14"`` of a ``model_id`` such as ``"dinov2-vitb14@3f2a..."``."""
    return str(model_id).split("@", 1)[0]


def record(module: torch.nn.Module) -> dict[str, str]:
    """The record stored in a checkpoint for one frozen backbone."""
    model_id = str(getattr(module, "model_id", type(module).__name__))
    return {"name": name_of(model_id), "model_id": model_id, "digest": digest(module)}


def records(**modules: torch.nn.Module) -> dict[str, dict[str, str]]:
    """``{"dino": record(dino), "clip": record(clip), ...}`` for the keyword arguments."""
    return {k: record(m) for k, m in modules.items() if m is not None}


def describe(rec: Any) -> str:
    """One-line description of a stored record (or a legacy ``model_id`` string)."""
    if isinstance(rec, dict):
        return f"{rec.get('name', '?')} ({rec.get('digest', '?')[:23]})"
    return str(rec)


def check(
    stored: Any,
    module: torch.nn.Module,
    *,
    role: str,
    checkpoint: str | os.PathLike,
    allow_mismatch: bool = False,
    fix: str = "",
) -> bool:
    """Compare the backbone ``module`` just built with the ``stored`` record of ``role``
    ("dino", "dinov2", "clip") in ``checkpoint``.

    Returns True when they match (or nothing was stored), False for an allowed mismatch.
    Raises UsageError naming both backbones otherwise; ``fix`` is appended to the message
    (e.g. which ``--set`` points to the training weights).
    """
    if stored is None:
        log.info("%s: no %s backbone record (an older checkpoint); not checked", checkpoint, role)
        return True
    loaded = record(module) if isinstance(stored, dict) else None
    if isinstance(stored, dict):
        same = stored.get("name") == loaded["name"] and stored.get("digest") == loaded["digest"]
        got = describe(loaded)
    else:  # legacy: a bare model_id string
        got = str(getattr(module, "model_id", "?"))
        same = str(stored) == got
    if same:
        return True
    msg = (
        f"{checkpoint}: trained with {role} backbone {describe(stored)} but {got} was loaded"
        + (f"; {fix}" if fix else "")
        + f", or {ALLOW_HINT}"
    )
    if allow_mismatch:
        log.warning("%s (allowed)", msg)
        return False
    raise UsageError(msg)

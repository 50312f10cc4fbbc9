"""Resolving ``path_or_name`` and reading checkpoints for the API (one policy for both tasks)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from safetensors import SafetensorError

from afford.errors import AffordError, DataError, UsageError
from afford.models import demo_checkpoint

T = TypeVar("T")
DEMO = "demo"


def _config_of(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    conf = meta.get("config") if isinstance(meta, dict) else None
    return conf if isinstance(conf, dict) else None


def task_of(folder: Path) -> str | None:
    """ "grounding" | "correspondence" | None of a checkpoint folder (from its config.json)."""
    conf = _config_of(folder)
    if conf is None:
        return None
    if conf.get("kind") == "correspondence":
        return "correspondence"
    if "model" in conf and "backbone" in conf:
        return "grounding"
    return None


def resolve(path_or_name: str | os.PathLike, task: str) -> Path:
    """The checkpoint folder of ``path_or_name`` for ``task``: "demo" names the shipped model;
    a run folder means its ``best/`` (else ``last/``). DataError when missing or of the other
    task."""
    if isinstance(path_or_name, str) and path_or_name == DEMO:
        return demo_checkpoint(task)
    if not isinstance(path_or_name, str | os.PathLike):
        raise UsageError(
            f"checkpoint: expected a folder path or {DEMO!r}, got {type(path_or_name).__name__}"
        )
    p = Path(path_or_name).expanduser()
    if not p.exists():
        raise DataError(f"{p}: checkpoint folder not found (or pass {DEMO!r} for the demo model)")
    if not (p / "model.safetensors").is_file():
        for sub in ("best", "last"):
            if (p / sub / "model.safetensors").is_file():
                p = p / sub
                break
        else:
            raise DataError(
                f"{p}: not an afford checkpoint (no model.safetensors here or in best/, last/)"
            )
    found = task_of(p)
    if found is None:
        raise DataError(f"{p}: config.json is missing or unreadable; not an afford checkpoint")
    if found != task:
        cls = "Grounder" if found == "grounding" else "Corresponder"
        raise DataError(f"{p}: a {found} checkpoint, not a {task} one (load it with afford.{cls})")
    return p


def guarded(path: Path, load: Callable[[], T]) -> T:
    """Run ``load``; an unreadable or truncated file becomes a DataError naming ``path``."""
    try:
        return load()
    except AffordError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DataError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})"
        ) from exc


def backbone_info(module: Any) -> dict[str, str]:
    """The record of a loaded backbone (name, model_id, digest) for results' JSON."""
    from afford.backbones import policy

    return policy.record(module)

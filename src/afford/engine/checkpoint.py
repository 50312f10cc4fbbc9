"""Checkpoints as a folder: ``model.safetensors`` + ``config.json`` (no pickle anywhere).

Optionally ``optimizer.safetensors`` (+ its non-tensor state inside config.json) so training
can resume exactly.  Folders are written to a temporary sibling in the same folder, every
file fsynced, then renamed into place: ``<name>`` -> ``.<name>.old``, temporary -> ``<name>``.
A crash (even kill -9) leaves the old checkpoint or the new one: between the two renames
only ``.<name>.old`` exists, and :func:`recover_checkpoint` (run by the loop, the only writer, before
resuming) moves it back; :func:`load_checkpoint` reads it in place.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from afford.data.io import default_mode, fsync_path, read_json, write_json
from afford.errors import AffordError, DataError

FORMAT_VERSION = 1

_WRITES = [0]  # checkpoint writes of this process (the AFFORD_TEST_CRASH=write:N hook)


def _crash_mid_write() -> None:
    _WRITES[0] += 1
    if os.environ.get("AFFORD_TEST_CRASH", "") == f"write:{_WRITES[0]}":
        os.kill(os.getpid(), signal.SIGKILL)


def recover_checkpoint(directory: str | os.PathLike) -> Path:
    """Finish an interrupted :func:`save_checkpoint`: bring ``.<name>.old`` back when
    ``<name>`` is missing, drop stale temporaries and an old copy beside a complete one."""
    directory = Path(directory)
    old = directory.with_name(f".{directory.name}.old")
    if old.is_dir():
        if directory.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, directory)
    if directory.parent.is_dir():
        for tmp in directory.parent.glob(f".{directory.name}.tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module | dict[str, torch.Tensor],
    config: dict,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` weights, JSON ``config`` and optional optimizer/extra state to ``directory``.

    ``config`` must say how to rebuild the model (it is stored verbatim under "config");
    ``extra`` holds training state (epoch, metrics, history...).  Atomic: the folder appears
    complete or not at all.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "config": config, "extra": extra or {}}
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp"))
    try:
        save_file(tensors, str(tmp / "model.safetensors"))
        if optimizer is not None:
            opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer"] = opt_meta
        write_json(tmp / "config.json", meta)
        for f in tmp.iterdir():  # on disk before the rename, and readable like any result
            fsync_path(f)
            default_mode(f)
        default_mode(tmp, directory=True)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        _crash_mid_write()  # test hook: the worst moment (only .<name>.old on disk)
        os.replace(tmp, directory)
        fsync_path(directory.parent, directory=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _read_tensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """A safetensors file; truncated, empty or not safetensors at all (a pickle) -> DataError
    naming the file (safetensors never unpickles)."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"{path}: cannot read the checkpoint ({type(exc).__name__}: {reason})"
        ) from None


def load_checkpoint(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint folder -> {"state_dict", "config", "extra", "optimizer" (or None)}.

    Raises AffordError naming the folder when it is not a checkpoint.
    """
    directory = Path(directory)
    old = directory.with_name(f".{directory.name}.old")
    if not directory.is_dir() and old.is_dir():  # a write was interrupted between renames
        directory = old
    weights = directory / "model.safetensors"
    if not directory.is_dir() or not weights.is_file() or not (directory / "config.json").is_file():
        raise AffordError(
            f"{directory}: not an afford checkpoint (expected a folder with model.safetensors "
            "and config.json)"
        )
    meta = read_json(directory / "config.json")
    if meta.get("format") != FORMAT_VERSION:
        raise AffordError(f"{directory}: unsupported checkpoint format {meta.get('format')!r}")
    state = _read_tensors(weights, map_location)
    optimizer = None
    if "optimizer" in meta and (directory / "optimizer.safetensors").is_file():
        opt_tensors = _read_tensors(directory / "optimizer.safetensors", map_location)
        optimizer = _unflatten_optimizer(opt_tensors, meta["optimizer"])
    return {
        "state_dict": state,
        "config": meta["config"],
        "extra": meta.get("extra", {}),
        "optimizer": optimizer,
    }

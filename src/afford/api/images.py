"""Image inputs of the Python API: one function turns anything accepted into uint8 RGB.

Accepted (:func:`to_rgb`): a path (``str`` / ``os.PathLike``), a PIL image (any mode: grey,
RGBA, palette, 16-bit, float), a NumPy array (H,W), (H,W,1), (H,W,3) or (H,W,4) of uint8,
uint16 (scaled by 255/65535), bool, or float in [0,1], or a torch tensor (3,H,W), (1,3,H,W),
(H,W) or channel-last (H,W,3) with the same dtypes. Grey is replicated, alpha dropped (as
PIL's ``convert("RGB")`` does). Anything else is a :class:`~afford.errors.UsageError` naming
the argument; a file that cannot be read is a :class:`~afford.errors.DataError`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from afford.data.io import read_image
from afford.errors import AffordError, DataError, UsageError

ACCEPTED = "a path, a PIL image, a numpy array (H,W[,1|3|4]) or a torch tensor (3,H,W)"
MIN_SIDE = 2
MAX_SIDE = 16384


def _from_float(arr: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise UsageError(f"{name}: float image contains NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise UsageError(
            f"{name}: a float image must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}] "
            "(divide by 255 or pass uint8)"
        )
    return np.round(arr * 255.0).astype(np.uint8)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return _from_float(arr.astype(np.float64), name)
    raise UsageError(
        f"{name}: unsupported image dtype {arr.dtype} (use uint8, uint16, bool or float in [0,1])"
    )


def _channels_last(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise UsageError(f"{name}: expected an image (H,W) or (H,W,C), got shape {arr.shape}")
    c = arr.shape[2]
    if c not in (1, 3, 4):
        hint = " (channel-first? pass a torch tensor or transpose to (H,W,C))" if arr.shape[0] in (
            1, 3, 4) else ""  # fmt: skip
        raise UsageError(f"{name}: expected 1, 3 or 4 channels last, got shape {arr.shape}{hint}")
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 4:
        arr = arr[:, :, :3]
    return arr


def _check_size(arr: np.ndarray, name: str) -> np.ndarray:
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise UsageError(
            f"{name}: image of {h}x{w} pixels; each side must be {MIN_SIDE}..{MAX_SIDE} pixels"
        )
    return np.ascontiguousarray(arr)


def _from_pil(im: Image.Image, name: str) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im)
        if im.mode == "F":
            return _from_float(arr.astype(np.float64), name)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.round(np.clip(arr.astype(np.float64), 0, top) * (255.0 / top)).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise DataError(f"{name}: cannot decode the PIL image ({exc})") from exc


def to_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Any accepted image (module docstring) -> uint8 RGB (H,W,3), C-contiguous."""
    if isinstance(image, str | os.PathLike):
        try:
            arr = read_image(image)
        except AffordError as exc:
            msg = str(exc)
            raise DataError(msg if msg.startswith(name) else f"{name}: {msg}") from None
        try:
            return _check_size(arr, name)
        except UsageError as exc:  # a file of the wrong size is the data's problem
            raise DataError(str(exc)) from None
    elif isinstance(image, Image.Image):
        arr = _from_pil(image, name)
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[2] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        elif t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[2] in (1, 3, 4):
            t = t.permute(1, 2, 0)  # ambiguous tiny image: torch's convention, channel-first
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        if t.dtype not in (torch.uint8, torch.bool, torch.float32, torch.float64):
            raise UsageError(
                f"{name}: unsupported tensor dtype {t.dtype} (use uint8 or float in [0,1])"
            )
        arr = _channels_last(_to_uint8(t.numpy(), name), name)
    elif isinstance(image, np.ndarray):
        arr = _channels_last(_to_uint8(image, name), name)
    else:
        raise UsageError(f"{name}: expected {ACCEPTED}, got {type(image).__name__}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise UsageError(f"{name}: expected an RGB image, got shape {arr.shape}")
    return _check_size(arr, name)


def to_mask(mask: Any, hw: tuple[int, int], name: str = "mask") -> np.ndarray:
    """An object mask (path, PIL, numpy or torch; non-zero = object) -> (H,W) bool of the
    image's size ``hw``."""
    if isinstance(mask, str | os.PathLike):
        arr = to_rgb(mask, name).max(axis=2) > 0
    elif isinstance(mask, Image.Image):
        arr = np.asarray(mask.convert("L")) > 0
    elif isinstance(mask, torch.Tensor | np.ndarray):
        arr = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        elif arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise UsageError(f"{name}: expected a (H,W) mask, got shape {arr.shape}")
        arr = arr != 0
    else:
        raise UsageError(f"{name}: expected a (H,W) array, a PIL image or a path, got "
                         f"{type(mask).__name__}")  # fmt: skip
    if arr.shape != tuple(hw):
        raise UsageError(f"{name}: mask shape {arr.shape} differs from the image {tuple(hw)}")
    if not arr.any():
        raise UsageError(f"{name}: the object mask is empty")
    return arr

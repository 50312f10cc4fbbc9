"""Seeding and device selection."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from afford.errors import AffordError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise AffordError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- third-party code uses the global RNG
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(name: str | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else MPS if available, else CPU; or an explicit name.

    Raises AffordError for an unknown or unavailable device.
    """
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise AffordError(
            f"--device: unknown device {name!r} (use auto, cpu, cuda, cuda:N, mps)"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AffordError(
            f"--device {name}: CUDA is not available on this machine (use cpu or auto)"
        )
    return dev

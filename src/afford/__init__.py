"""afford: what objects are *for*.

Two ICCV 2025 methods on shared frozen encoders:

* ``afford.grounding`` -- Selective Contrastive Learning for weakly supervised affordance
  grounding (action -> heatmap of the part that affords it).
* ``afford.correspondence`` -- weakly supervised dense functional correspondence
  (two images + a function -> dense matches between the parts that do that job).

``afford.synth`` is a procedural, fully offline world with exact ground truth for both.

The Python API (``afford.Grounder``, ``afford.Corresponder``, ``afford.transfer``; docs/api.md)
is imported on first use, so ``import afford`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from afford.errors import AffordError, DataError, UsageError

__version__ = "0.1.0"
_API = ("Grounder", "GroundingResult", "Corresponder", "Matches", "TransferResult", "transfer")
__all__ = ["AffordError", "DataError", "UsageError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        # importlib, not an import statement: the root package must not depend on the API
        # layer (import-linter), and ``import afford`` must not load torch.
        return getattr(importlib.import_module("afford.api"), name)
    raise AttributeError(f"module 'afford' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

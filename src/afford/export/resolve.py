"""``--checkpoint`` values: a folder, or ``demo`` for the shipped demo model of the task."""

from __future__ import annotations

import os
from pathlib import Path

from afford.errors import DataError
from afford.models import demo_checkpoint

DEMO = "demo"


def checkpoint_path(task: str, checkpoint: str | os.PathLike) -> Path:
    """The checkpoint folder that ``--checkpoint`` names for ``task``."""
    if str(checkpoint) == DEMO:
        return demo_checkpoint(task)
    p = Path(checkpoint).expanduser()
    if not p.exists():
        raise DataError(f"--checkpoint {checkpoint}: no such file or folder")
    return p

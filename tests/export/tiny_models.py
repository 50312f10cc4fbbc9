"""Tiny trained checkpoints for the export and web-demo tests (seconds each, once per
session): grounding on the hand-made AGD20K-layout tree of tests/grounding, correspondence on
the hand-made rectangles of tests/correspondence, both on the tiny backbones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
for sub in ("grounding", "correspondence"):
    if str(TESTS / sub) not in sys.path:
        sys.path.insert(0, str(TESTS / sub))

from gtrain_helpers import tiny_config, write_tree  # noqa: E402
from tiny_data import write_tiny_dataset  # noqa: E402

from afford.cli import main  # noqa: E402
from afford.grounding.train import train  # noqa: E402


def grounding_checkpoint(base: Path) -> Path:
    """A 1-epoch grounding run (actions cut_with, hold) -> its run folder."""
    run = base / "grounding_run"
    if not (run / "best").is_dir() and not (run / "last").is_dir():
        train(tiny_config(write_tree(base / "agd"), run, epochs=1))
    return run


def correspondence_checkpoint(base: Path) -> Path:
    """A 2-step correspondence run (functions hold, pour-with) -> its run folder."""
    run = base / "corr_run"
    if not (run / "best").is_dir():
        root = write_tiny_dataset(base / "corr_data")
        cfg = base / "corr.yaml"
        cfg.write_text(
            f"data: {{root: {root}, val_fraction: 0.0}}\n"
            "backbone: {dinov2: {variant: tiny}, clip: {variant: tiny}}\n"
            "model: {proj_dim: 32, hidden: 64, out_dim: 16}\n"
            "sampling: {pairs: 2, points: 8, spatial_points: 8}\n"
            f"train: {{out: {run}, epochs: 1, iters_per_epoch: 2, device: cpu}}\n"
        )
        assert main(["train", "correspondence", "--config", str(cfg), "--no-progress"]) == 0
    return run


def coffee_224() -> np.ndarray:
    """skimage's coffee photo, centre-cropped to a square and resized to 224 x 224 (uint8)."""
    import skimage.data
    from PIL import Image

    img = skimage.data.coffee()  # (400, 600, 3)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = img[top : top + s, left : left + s]
    return np.array(Image.fromarray(sq).resize((224, 224), Image.BILINEAR))

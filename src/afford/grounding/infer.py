"""Grounding inference on new images: pure batched functions, and ``afford ground``'s writer.

* :func:`preprocess`: uint8 (H,W,3) images -> float (B,3,224,224) in [0,1] (the test
  protocol: the full image squashed to 224 x 224, antialiased bilinear).
* :func:`heatmap_grids`: the calibrated localisation maps (B,h,w) of a batch, one action per
  image (CLIP affinity of the action prompt, DINO keys, the model's calibrated CAM).
* :func:`to_image_heatmap`: a grid map -> (H,W) float32 in [0,1] at the input resolution
  (bilinear, half-pixel centres, then min-max; a constant map gives zeros).
* :func:`ground`: one image to files (the heatmap png and a sheet), used by ``afford demo``.

Batching never changes a result: every stage works per sample (eval-mode BatchNorm, ViTs
without cross-sample attention), so a batch equals the single-image calls up to float
rounding (tests/api).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from afford.data.io import read_image, write_image
from afford.engine import resolve_device
from afford.errors import UsageError
from afford.grounding.affinity import image_affinity
from afford.grounding.build import load_trained
from afford.grounding.prompts import action_prompt
from afford.viz import heatmap_to_uint8, image_grid, overlay_heatmap

INPUT_SIZE = 224


def check_action(action: str, classes: Sequence[str]) -> int:
    """Index of ``action`` in ``classes``; UsageError listing the known actions otherwise."""
    if not isinstance(action, str) or action not in classes:
        raise UsageError(
            f"--action {action!r} is not an affordance of this checkpoint; known actions: "
            f"{', '.join(classes)}"
        )
    return list(classes).index(action)


def preprocess(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 RGB images (H_i,W_i,3) -> (B,3,size,size) float in [0,1] (each squashed to
    ``size`` with antialiased bilinear resizing, as :meth:`CropFlip.resize_only` does)."""
    out = []
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        out.append(x.clamp_(0.0, 1.0))
    return torch.cat(out) if out else torch.empty((0, 3, size, size))


@torch.no_grad()
def heatmap_grids(
    model, dino, clip, batch: torch.Tensor, labels: Sequence[int], actions: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated maps of one batch.

    Args:
        model: an eval-mode :class:`~afford.grounding.model.GroundingModel`.
        dino, clip: its frozen backbones (``clip`` None only with calibration "none").
        batch: (B,3,224,224) float in [0,1]; labels (B,) class indices; actions (B,) names.
    Returns:
        (heat (B,h,w), clip affinity (B,h,w)) float on the CPU.
    """
    dev = next(model.parameters()).device
    x = batch.to(dev)
    if clip is not None:
        s_ego = image_affinity(clip, x, [action_prompt(a) for a in actions])
    else:
        s_ego = None
    keys = dino(x)["keys"]
    lab = torch.as_tensor(list(labels), device=dev, dtype=torch.long)
    heat = model.heatmap(keys, lab, s_ego)
    aff = s_ego if s_ego is not None else torch.zeros_like(heat)
    return heat.float().cpu(), aff.float().cpu()


def to_image_heatmap(grid: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h,w) map -> (H,W) float32 in [0,1]: bilinear resize (half-pixel centres), min-max."""
    arr = np.asarray(grid, dtype=np.float32)
    h, w = int(hw[0]), int(hw[1])
    if arr.shape != (h, w):
        arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_LINEAR)
        arr = arr.reshape(h, w)
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.zeros((h, w), np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def peak(heat: np.ndarray) -> tuple[int, int]:
    """(row, col) of the maximum of a 2-D map (first in row-major order on ties)."""
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(r), int(c)


def heatmap_stats(heat: np.ndarray) -> dict[str, float]:
    """Summary of a [0,1] map: min, max, mean, std, and the fraction of pixels >= 0.5."""
    h = np.asarray(heat, dtype=np.float64)
    return {
        "min": float(h.min()),
        "max": float(h.max()),
        "mean": float(h.mean()),
        "std": float(h.std()),
        "frac_above_0.5": float((h >= 0.5).mean()),
    }


def ground(
    image: str | os.PathLike,
    action: str,
    checkpoint: str | os.PathLike | None = None,
    out: str | os.PathLike = "heat.png",
    device: str = "auto",
) -> dict[str, Any]:
    """Heatmap of ``action`` on ``image`` written to ``out`` (grey png at the image's size) and
    ``<stem>_overlay.png`` (image | overlay | CLIP affinity); ``checkpoint`` None means the
    shipped demo model. Returns {"heatmap", "overlay" (paths), "grid" (h,w) array}."""
    if checkpoint is None:
        from afford.models import demo_checkpoint

        checkpoint = demo_checkpoint("grounding")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the heatmap is written as a .png")
    img = read_image(image)
    dev = resolve_device(device)
    model, _, dino, clip = load_trained(checkpoint, dev, with_clip=True)
    label = check_action(action, model.cfg.class_names)
    heat, aff = heatmap_grids(model, dino, clip, preprocess([img]), [label], [action])
    grid = heat[0].numpy()
    h, w = img.shape[:2]
    write_image(out, heatmap_to_uint8(grid, (h, w)))
    sheet = image_grid(
        [img, overlay_heatmap(img, grid), overlay_heatmap(img, aff[0].numpy())],
        ncols=3,
        titles=["image", f"{action}", "CLIP affinity"],
    )
    overlay_path = write_image(out.with_name(f"{out.stem}_overlay.png"), sheet)
    return {"heatmap": out, "overlay": overlay_path, "grid": np.asarray(grid)}

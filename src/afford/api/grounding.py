"""``afford.Grounder``: affordance heatmaps of images for an action, batched.

g = afford.Grounder.from_checkpoint("demo")          # or a checkpoint folder
r = g.predict("photo.jpg", "hold")                    # one image -> one GroundingResult
rs = g.predict([img1, img2, img3], "hold")            # a list -> a list (batched)
r.heatmap        # (H,W) float32 in [0,1] at the input image's resolution
r.peak           # (row, col) of its maximum
r.overlay()      # (H,W,3) uint8 image with the heatmap blended in
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afford.api._checkpoints import backbone_info, guarded, resolve
from afford.api.images import to_rgb
from afford.engine import resolve_device
from afford.errors import UsageError
from afford.grounding.build import load_trained
from afford.grounding.infer import (
    check_action,
    heatmap_grids,
    heatmap_stats,
    peak,
    preprocess,
    to_image_heatmap,
)
from afford.viz import overlay_heatmap


@dataclass
class GroundingResult:
    """One image's grounding: ``heatmap`` (H,W) float32 in [0,1] at the input resolution,
    ``peak`` (row, col), ``action``, ``image`` (the uint8 RGB input), ``grid`` (the model's
    raw (h,w) map), ``affinity`` (the CLIP affinity grid), ``info`` (checkpoint, backbones)."""

    heatmap: np.ndarray
    peak: tuple[int, int]
    action: str
    image: np.ndarray = field(repr=False)
    grid: np.ndarray = field(repr=False)
    affinity: np.ndarray | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        h, w = self.heatmap.shape
        return f"GroundingResult(action={self.action!r}, size={h}x{w}, peak={self.peak})"

    def overlay(self, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
        """(H,W,3) uint8: the image with the colour-mapped heatmap blended in."""
        return overlay_heatmap(self.image, self.heatmap, alpha=alpha, cmap=cmap)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: action, image size, peak, heatmap statistics, checkpoint."""
        return {
            "action": self.action,
            "image_size": [int(self.heatmap.shape[0]), int(self.heatmap.shape[1])],
            "peak": [int(self.peak[0]), int(self.peak[1])],
            "heatmap": heatmap_stats(self.heatmap),
            "grid_size": [int(self.grid.shape[0]), int(self.grid.shape[1])],
            **self.info,
        }


class Grounder:
    """A loaded grounding checkpoint: the model and its frozen DINO and CLIP, on ``device``."""

    def __init__(self, model, experiment, dino, clip, checkpoint: Path, device) -> None:
        self.model, self.experiment, self.dino, self.clip = model, experiment, dino, clip
        self.checkpoint = Path(checkpoint)
        self.device = device
        self._info: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path_or_name: str | os.PathLike = "demo",
        *,
        device: str = "auto",
        allow_backbone_mismatch: bool = False,
    ) -> Grounder:
        """Load a checkpoint folder (or a run folder's ``best/``); ``"demo"`` is the shipped
        toy model. A backbone different from the one the checkpoint was trained with is a
        UsageError naming both unless ``allow_backbone_mismatch``."""
        path = resolve(path_or_name, "grounding")
        dev = resolve_device(device)
        model, exp, dino, clip = guarded(
            path,
            lambda: load_trained(
                path, dev, with_clip=True, allow_backbone_mismatch=allow_backbone_mismatch
            ),
        )
        return cls(model, exp, dino, clip, path, dev)

    @property
    def actions(self) -> list[str]:
        """The affordances (actions) this checkpoint grounds."""
        return list(self.model.cfg.class_names)

    @property
    def info(self) -> dict[str, Any]:
        """{"checkpoint", "backbones": {"dino", "clip"}} (records: name, model_id, digest)."""
        if self._info is None:
            self._info = {
                "checkpoint": str(self.checkpoint),
                "backbones": {"dino": backbone_info(self.dino), "clip": backbone_info(self.clip)},
            }
        return self._info

    def predict(
        self, images: Any, action: str, *, batch_size: int = 8
    ) -> GroundingResult | list[GroundingResult]:
        """Heatmaps of ``action``: one image (path, PIL, numpy, tensor) -> one result, a list or
        tuple -> a list, computed ``batch_size`` images at a time."""
        single = not isinstance(images, list | tuple)
        items = [images] if single else list(images)
        if not items:
            return []
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
        label = check_action(action, self.actions)
        names = ["image"] if single else [f"images[{i}]" for i in range(len(items))]
        rgb = [to_rgb(x, n) for x, n in zip(items, names)]
        out: list[GroundingResult] = []
        info = self.info
        for s in range(0, len(rgb), batch_size):
            chunk = rgb[s : s + batch_size]
            heat, aff = heatmap_grids(
                self.model, self.dino, self.clip, preprocess(chunk), [label] * len(chunk),
                [action] * len(chunk),
            )  # fmt: skip
            for img, g, a in zip(chunk, heat.numpy(), aff.numpy()):
                full = to_image_heatmap(g, img.shape[:2])
                out.append(GroundingResult(full, peak(full), action, img, g, a, dict(info)))
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"Grounder({str(self.checkpoint)!r}, actions={self.actions}, device={self.device})"

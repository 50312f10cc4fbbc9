"""``afford ground IMAGE --action hold``: affordance heatmap of one image.

Writes ``--out`` (a grey png at the image's size, 255 = most affordant) and
``<out stem>_overlay.png`` (the image, the heatmap overlay and the object affinity map side by
side).  The image is resized to 224 x 224 (the test protocol); the CLIP affinity map for the
action prompt is computed with the checkpoint's CLIP backbone.

Without ``--checkpoint`` the default demo checkpoint is used when it exists:
``$AFFORD_GROUNDING_CHECKPOINT``, else ``$AFFORD_WEIGHTS/grounding-demo``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afford.data.io import read_image, write_image
from afford.data.transforms import CropFlip
from afford.engine import resolve_device
from afford.errors import AffordError
from afford.grounding.affinity import image_affinity
from afford.grounding.build import build_clip, load_trained
from afford.grounding.prompts import action_prompt
from afford.viz import heatmap_to_uint8, image_grid, overlay_heatmap

ENV_CHECKPOINT = "AFFORD_GROUNDING_CHECKPOINT"


def default_checkpoint() -> Path | None:
    """The demo checkpoint if one is installed, else None."""
    cands = []
    if os.environ.get(ENV_CHECKPOINT):
        cands.append(Path(os.environ[ENV_CHECKPOINT]).expanduser())
    if os.environ.get("AFFORD_WEIGHTS"):
        cands.append(Path(os.environ["AFFORD_WEIGHTS"]).expanduser() / "grounding-demo")
    for c in cands:
        if (c / "model.safetensors").is_file() or (c / "best" / "model.safetensors").is_file():
            return c
    return None


def check_action(action: str, classes: list[str]) -> int:
    """Index of ``action`` in ``classes``; AffordError listing the known actions otherwise."""
    if action not in classes:
        raise AffordError(
            f"--action {action!r} is not an affordance of this checkpoint; known actions: "
            f"{', '.join(classes)}"
        )
    return classes.index(action)


def ground(
    image: str | os.PathLike,
    action: str,
    checkpoint: str | os.PathLike | None = None,
    out: str | os.PathLike = "heat.png",
    device: str = "auto",
) -> dict[str, Any]:
    """Heatmap of ``action`` on ``image``; returns {"heatmap", "overlay", "grid" (h,w) array}."""

    if checkpoint is None:
        checkpoint = default_checkpoint()
        if checkpoint is None:
            raise AffordError(
                "no --checkpoint given and no default demo checkpoint installed (set "
                f"{ENV_CHECKPOINT} or put one in $AFFORD_WEIGHTS/grounding-demo). Train one with "
                "`afford train grounding --config configs/grounding/synth.yaml` or convert the "
                "released weights with `afford import-checkpoint`"
            )
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise AffordError(f"--out {out}: the heatmap is written as a .png")
    img = read_image(image)
    dev = resolve_device(device)
    model, exp, dino, _ = load_trained(checkpoint, dev)
    label = check_action(action, model.cfg.class_names)  # before loading CLIP
    clip = build_clip(exp, dev)
    x = CropFlip.resize_only(224).apply_image(
        torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    )[None]
    with torch.no_grad():
        s_ego = image_affinity(clip, x.to(dev), [action_prompt(action)])
        keys = dino(x.to(dev))["keys"]
        grid = (
            model.heatmap(keys, torch.tensor([label], device=dev), s_ego)[0].float().cpu().numpy()
        )
    h, w = img.shape[:2]
    heat = heatmap_to_uint8(grid, (h, w))
    write_image(out, heat)
    overlay = overlay_heatmap(img, grid)
    affin = overlay_heatmap(img, s_ego[0].float().cpu().numpy())
    sheet = image_grid(
        [img, overlay, affin], ncols=3, titles=["image", f"{action}", "CLIP affinity"]
    )
    overlay_path = out.with_name(f"{out.stem}_overlay.png")
    write_image(overlay_path, sheet)
    return {"heatmap": out, "overlay": overlay_path, "grid": np.asarray(grid)}

"""``afford.transfer``: carry a demonstration from one object to others.

"Where do I hold this new tool, given where I held the old one?": a grounding heatmap (or a
:class:`~afford.api.grounding.GroundingResult`) or user points on a *source* image are carried
to each *target* image through the functional correspondence of a
:class:`~afford.api.correspondence.Corresponder`:

* points: label transfer (each point -> its most similar target pixel for the function);
* a heatmap: every target object pixel takes the value of its nearest source pixel
  (:func:`afford.correspondence.infer.pull_map`), giving a target heatmap; its peak is
  ``points``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from afford.api.correspondence import Corresponder, _points_array
from afford.api.images import to_mask, to_rgb
from afford.correspondence.infer import check_points, pull_map, transfer_points
from afford.errors import UsageError
from afford.grounding.infer import peak
from afford.viz import draw_matches, overlay_heatmap


@dataclass
class TransferResult:
    """One target: ``points`` (N,2) (row, col) in the target image, ``scores`` (N,) (cosine
    similarity of each transferred point; the heatmap value at the peak for a heatmap),
    ``heatmap`` (H,W) float32 in [0,1] at the target's resolution (heatmap mode) or None,
    ``source_points`` (N,2) in the source image (points mode) or None."""

    points: np.ndarray
    scores: np.ndarray
    heatmap: np.ndarray | None
    function: str
    image: np.ndarray = field(repr=False)
    source_image: np.ndarray = field(repr=False)
    source_points: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        kind = "heatmap" if self.heatmap is not None else "points"
        return f"TransferResult({kind}, n={len(self.points)}, function={self.function!r})"

    def overlay(self) -> np.ndarray:
        """Heatmap mode: the target with the transferred heatmap blended in and its peak marked;
        points mode: source | target side by side with the transfer lines."""
        if self.heatmap is not None:
            out = np.ascontiguousarray(overlay_heatmap(self.image, self.heatmap))
            size = max(6, min(out.shape[:2]) // 20)
            for r, c in np.round(self.points).astype(int).tolist():
                cv2.drawMarker(out, (c, r), (255, 255, 255), cv2.MARKER_CROSS, size, 2)
            return out
        return draw_matches(self.source_image, self.image, self.source_points, self.points,
                            thickness=1, radius=3)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=np.float64).round(3).tolist()

        out = {
            "function": self.function,
            "image_size": list(self.image.shape[:2]),
            "points": arr(self.points),
            "scores": arr(self.scores),
            "source_points": arr(self.source_points),
        }
        if self.heatmap is not None:
            h = self.heatmap
            out["heatmap"] = {"max": float(h.max()), "mean": float(h.mean()),
                              "peak": [int(v) for v in peak(h)]}  # fmt: skip
        return {**out, **self.info}


def transfer(
    source_image: Any,
    target_images: Any,
    function: str,
    *,
    corresponder: Corresponder,
    heatmap: Any = None,
    points: Any = None,
    source_mask: Any = None,
    target_masks: Any = None,
    stride: int = 2,
) -> TransferResult | list[TransferResult]:
    """Carry ``heatmap`` ((H,W) map of the source image, or a GroundingResult) or ``points``
    ((N,2) row/col in the source) to one target image (-> one result) or a list (-> a list),
    through ``corresponder``'s correspondence for ``function``. Exactly one of ``heatmap`` and
    ``points``. Masks as in :meth:`Corresponder.match` (estimated when None)."""
    if not isinstance(corresponder, Corresponder):
        raise UsageError(
            "transfer: corresponder must be an afford.Corresponder "
            "(afford.Corresponder.from_checkpoint('demo'))"
        )
    if (heatmap is None) == (points is None):
        raise UsageError("transfer: give exactly one of heatmap= and points=")
    single = not isinstance(target_images, list | tuple)
    targets = [target_images] if single else list(target_images)
    if not targets:
        return []
    if target_masks is None:
        tmasks = [None] * len(targets)
    elif single:
        tmasks = [target_masks]
    else:
        tmasks = list(target_masks)
        if len(tmasks) != len(targets):
            raise UsageError(f"target_masks: {len(tmasks)} masks for {len(targets)} target images")
    src = to_rgb(source_image, "source_image")
    smask = None if source_mask is None else to_mask(source_mask, src.shape[:2], "source_mask")
    src_map = src_pts = None
    if heatmap is not None:
        src_map = np.asarray(getattr(heatmap, "heatmap", heatmap), dtype=np.float32)
        if src_map.shape != src.shape[:2]:
            raise UsageError(
                f"heatmap: shape {src_map.shape} differs from the source image {src.shape[:2]}"
            )
        if not np.isfinite(src_map).all():
            raise UsageError("heatmap: contains NaN or inf")
    else:
        src_pts = check_points(_points_array(points), src.shape[:2], arg="points")
    out = []
    for i, (tgt, tm) in enumerate(zip(targets, tmasks)):
        name = "target_images" if single else f"target_images[{i}]"
        t = to_rgb(tgt, name)
        pf = corresponder.features(src, t, function, masks=(smask, tm))
        if src_map is not None:
            lo, hi = float(src_map.min()), float(src_map.max())
            norm = (src_map - lo) / (hi - lo) if hi > lo else np.zeros_like(src_map)
            tmap = pull_map(pf, norm, stride=stride)
            tmap = np.clip(tmap, 0.0, 1.0).astype(np.float32)
            pk = np.asarray([peak(tmap)], dtype=np.float64)
            out.append(TransferResult(pk, np.asarray([float(tmap.max())]), tmap,
                                      pf["function"], t, src, None, dict(corresponder.info)))  # fmt: skip
        else:
            res = transfer_points(pf, src_pts)
            out.append(TransferResult(res["pts2"], res["score"], None, pf["function"], t, src,
                                      res["pts1"], dict(corresponder.info)))  # fmt: skip
    return out[0] if single else out

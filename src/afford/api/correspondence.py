"""``afford.Corresponder``: dense functional correspondence between two images.

    c = afford.Corresponder.from_checkpoint("demo")
    m = c.match(img_a, img_b, "pour-with", points=[[40, 52], [60, 70]])
    m.source_points, m.target_points, m.scores      # (N,2) row/col, (N,2), (N,)
    d = c.discover(img_a, img_b, "pour-with", top_k=50)   # ranked, with d.cycle_scores
    d.overlay()                                           # side-by-side with match lines

Each image is cropped around its object (a square of 1.2 x the object's longer side, resized
to 224, as in training); the object mask is given (``masks=(mask_a, mask_b)``) or estimated
(an object on a plain background; the full image when that fails). Coordinates are always in
the input images' pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afford.api._checkpoints import backbone_info, guarded, resolve
from afford.api.images import to_mask, to_rgb
from afford.correspondence.baselines import ModelRow
from afford.correspondence.infer import (
    check_points,
    discover_matches,
    object_masks,
    pair_features,
    transfer_points,
)
from afford.correspondence.text import check_function
from afford.correspondence.train import load_trained
from afford.engine import resolve_device
from afford.errors import AffordError, UsageError
from afford.viz import draw_matches

DEFAULT_POINTS = 64


@dataclass
class Matches:
    """Matched points: ``source_points`` (N,2) (row, col) in image A, ``target_points`` (N,2)
    in image B, ``scores`` (N,) (label transfer: cosine similarity of the matched features;
    discovery: the paper's cycle-consistency score, = ``cycle_scores``), ``reverse_scores``
    (N,) the similarity of the match carried back into A (``both_directions``) or None,
    ``cycle_errors`` (N,) the distance in A's pixels between a point and its round trip (or
    None), ``mode`` ("transfer" | "discovery")."""

    source_points: np.ndarray
    target_points: np.ndarray
    scores: np.ndarray
    function: str
    mode: str
    image_a: np.ndarray = field(repr=False)
    image_b: np.ndarray = field(repr=False)
    reverse_scores: np.ndarray | None = None
    cycle_errors: np.ndarray | None = None
    cycle_scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.source_points.shape[0])

    def __repr__(self) -> str:
        return f"Matches(n={len(self)}, mode={self.mode!r}, function={self.function!r})"

    def overlay(self, thickness: int = 1, radius: int = 2) -> np.ndarray:
        """(max(Ha,Hb), Wa+Wb, 3) uint8: both images side by side with a line per match."""
        return draw_matches(self.image_a, self.image_b, self.source_points, self.target_points,
                            thickness=thickness, radius=radius)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: function, mode, image sizes, every match (points, scores), checkpoint."""

        def arr(a):
            return None if a is None else np.asarray(a, dtype=np.float64).round(3).tolist()

        return {
            "function": self.function,
            "mode": self.mode,
            "n": len(self),
            "image_a_size": list(self.image_a.shape[:2]),
            "image_b_size": list(self.image_b.shape[:2]),
            "source_points": arr(self.source_points),
            "target_points": arr(self.target_points),
            "scores": arr(self.scores),
            "reverse_scores": arr(self.reverse_scores),
            "cycle_errors": arr(self.cycle_errors),
            "cycle_scores": arr(self.cycle_scores),
            **self.info,
        }


def grid_points(mask: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` (row, col) points on a regular grid over the True pixels of ``mask``."""
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return np.zeros((0, 2))
    step = max(1, int(np.ceil(np.sqrt(rr.size / max(1, n)))))
    while True:
        sel = ((rr - rr.min()) % step == step // 2) & ((cc - cc.min()) % step == step // 2)
        if sel.sum() <= n:
            break
        step += 1
    if not sel.any():
        sel[rr.size // 2] = True
    return np.stack([rr[sel], cc[sel]], 1).astype(np.float64)


class Corresponder:
    """A loaded correspondence checkpoint (model, frozen DINOv2, CLIP text encoder)."""

    def __init__(self, model, dino, clip, functions, conf, checkpoint: Path, device) -> None:
        self.model, self.dino, self.clip = model, dino, clip
        self.config = conf
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.row = ModelRow(model, dino, clip, list(functions))
        self._info: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path_or_name: str | os.PathLike = "demo",
        *,
        device: str = "auto",
        allow_backbone_mismatch: bool = False,
    ) -> Corresponder:
        """Load a checkpoint folder (or a run folder's ``best/``); ``"demo"`` is the shipped
        toy model. Backbone policy as for :meth:`afford.Grounder.from_checkpoint`."""
        path = resolve(path_or_name, "correspondence")
        dev = resolve_device(device)
        model, dino, clip, functions, conf = guarded(
            path,
            lambda: load_trained(path, dev, allow_backbone_mismatch=allow_backbone_mismatch),
        )
        return cls(model, dino, clip, functions, conf, path, dev)

    @property
    def functions(self) -> list[str]:
        """The functions ("pour-with", ...) this checkpoint was trained on."""
        return list(self.row.functions)

    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = {
                "checkpoint": str(self.checkpoint),
                "backbones": {"dinov2": backbone_info(self.dino), "clip": backbone_info(self.clip)},
            }
        return self._info

    # ------------------------------------------------------------------ internals
    def _check_function(self, function: str) -> str:
        if not isinstance(function, str):
            raise UsageError(f"function must be a string, got {type(function).__name__}")
        try:
            return check_function(function, self.functions, where="function")
        except AffordError as exc:
            raise UsageError(str(exc)) from None

    def _inputs(self, img_a, img_b, masks) -> tuple[np.ndarray, np.ndarray, Any, Any]:
        a, b = to_rgb(img_a, "img_a"), to_rgb(img_b, "img_b")
        if masks is None:
            ma = mb = None
        elif isinstance(masks, list | tuple) and len(masks) == 2:
            ma = None if masks[0] is None else to_mask(masks[0], a.shape[:2], "masks[0]")
            mb = None if masks[1] is None else to_mask(masks[1], b.shape[:2], "masks[1]")
        else:
            raise UsageError("masks: expected (mask_a, mask_b) (either may be None) or None")
        return a, b, ma, mb

    def features(self, img_a, img_b, function: str, masks=None) -> dict[str, Any]:
        """The crops and dense features of a pair (reusable for several transfers)."""
        fn = self._check_function(function)
        a, b, ma, mb = self._inputs(img_a, img_b, masks)
        ma, mb = object_masks(a, b, ma, mb)
        pf = pair_features(self.row, a, b, fn, ma, mb)
        pf.update(image_a=a, image_b=b, mask_a=ma, mask_b=mb, function=fn)
        return pf

    # ------------------------------------------------------------------ public
    def match(
        self,
        img_a: Any,
        img_b: Any,
        function: str,
        *,
        points: Any = None,
        masks: Any = None,
        both_directions: bool = False,
    ) -> Matches:
        """Label transfer of ``points`` ((N,2) row/col in ``img_a``; default: a grid of about
        64 points on A's object) to ``img_b`` for ``function``. ``both_directions`` also
        carries every match back into A (``reverse_scores``, ``cycle_errors``)."""
        pf = self.features(img_a, img_b, function, masks)
        a = pf["image_a"]
        if points is None:
            pts = grid_points(pf["mask_a"], DEFAULT_POINTS)
        else:
            pts = check_points(_points_array(points), a.shape[:2], arg="points")
        res = transfer_points(pf, pts, both_directions=bool(both_directions))
        return Matches(
            source_points=res["pts1"], target_points=res["pts2"], scores=res["score"],
            function=pf["function"], mode="transfer", image_a=a, image_b=pf["image_b"],
            reverse_scores=res["reverse_score"], cycle_errors=res["cycle_error"],
            info=dict(self.info),
        )  # fmt: skip

    def discover(
        self,
        img_a: Any,
        img_b: Any,
        function: str,
        *,
        top_k: int = 50,
        masks: Any = None,
        stride: int = 2,
    ) -> Matches:
        """Correspondence discovery: the ``top_k`` best cycle-consistent matches, spread out
        (ranked best first; ``scores`` = ``cycle_scores``), on every ``stride``-th crop
        pixel (1 = the paper's full resolution)."""
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise UsageError(f"top_k must be a positive integer, got {top_k!r}")
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise UsageError(f"stride must be a positive integer, got {stride!r}")
        pf = self.features(img_a, img_b, function, masks)
        res = discover_matches(pf, top=top_k, stride=stride)
        return Matches(
            source_points=res["pts1"], target_points=res["pts2"], scores=res["score"],
            function=pf["function"], mode="discovery", image_a=pf["image_a"],
            image_b=pf["image_b"], cycle_scores=res["score"], info=dict(self.info),
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Corresponder({str(self.checkpoint)!r}, functions={self.functions})"


def _points_array(points: Any) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"points: expected (N,2) numbers (row, col) ({exc})") from None
    if arr.ndim == 1 and arr.shape[0] == 2:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UsageError(f"points: expected (N,2) (row, col), got shape {arr.shape}")
    return arr

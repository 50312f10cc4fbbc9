"""Every row of the paper's Table 1 as a configuration ("row") that turns an image into dense
features for a function.

A row has ``name`` and ``features(image, mask, function) -> dict(feat (D,S,S), part (S,S) bool
| None)``; evaluation (``afford.correspondence.evaluate``) matches those features with
``afford.correspondence.matching``. Rows:

- ``ChanceRow``: i.i.d. Gaussian features per pixel, i.e. uniformly random nearest neighbours
  and random discovery scores ("Chance").
- ``BackboneRow``: frozen DINOv2 only ("DINO"): the last three layer maps, each L2-normalised,
  averaged with equal weights, bilinearly upsampled to the image and L2-normalised.
- ``PartBoxRow``: a row restricted to the functional-part box of a box labeler ("VLM + DINO"):
  label transfer searches only target pixels inside the target box; discovery matches source
  box pixels to target box pixels. Boxes come from a ``BoxLabeler``
  (``afford.geometry.pseudolabel``) or from the labeler boxes stored in a dataset; with
  :func:`gt_part_masks` the region is the ground-truth functional-part mask instead (an oracle
  diagnostic: "chance in GT part" is what a model scores that finds the part exactly but is
  collapsed inside it, the paper's mode collapse at its best).
- ``ModelRow``: a trained :class:`FunctionalCorrespondenceModel` ("Ours", any ablation), with
  the predicted part mask (``sigmoid > 0.5`` times the object mask) when it has a mask head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from afford.correspondence.text import check_function, encode_functions
from afford.data.crops import view_to_crop
from afford.errors import AffordError
from afford.geometry.pseudolabel import PartQuery, cluster_boxes

ROW_NAMES = ("chance", "dino", "vlm+dino")


def _to_batch(image: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """uint8 (S,S,3) -> float (1,3,S,S) in [0,1]."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise AffordError(f"expected a uint8 (H,W,3) image, got {image.dtype} {image.shape}")
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)


def upsample_features(fmap: Tensor, size: int) -> Tensor:
    """(B,D,h,w) -> (B,D,S,S) bilinear (align_corners=False), L2-normalised per pixel."""
    up = F.interpolate(fmap, size=(size, size), mode="bilinear", align_corners=False)
    return F.normalize(up, dim=1, eps=1e-12)


def raw_backbone_features(layer_maps: list[Tensor], size: int = 224) -> Tensor:
    """The "DINO" baseline's features: mean of the L2-normalised layer maps, upsampled to
    ``size`` and L2-normalised. layer_maps: L x (B,D,h,w) -> (B,D,S,S)."""
    fused = torch.stack([F.normalize(m.float(), dim=1, eps=1e-12) for m in layer_maps]).mean(0)
    return upsample_features(fused, size)


class ChanceRow:
    """Random features: every nearest neighbour and discovery score is uniformly random."""

    name = "chance"

    def __init__(self, seed: int = 0, dim: int = 16) -> None:
        self.seed, self.dim, self.calls = seed, dim, 0

    def features(self, image: np.ndarray, mask: np.ndarray, function: str) -> dict[str, Any]:
        """Features of one image (the function is ignored by this row)."""
        del mask, function
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        h, w = image.shape[:2]
        feat = F.normalize(torch.randn((self.dim, h, w), generator=gen), dim=0)
        return {"feat": feat, "part": None}


class BackboneRow:
    """Frozen DINOv2 nearest neighbours on the fused raw features ("DINO" row)."""

    name = "dino"

    def __init__(self, dino: torch.nn.Module) -> None:
        self.dino = dino

    @torch.no_grad()
    def features(self, image: np.ndarray, mask: np.ndarray, function: str) -> dict[str, Any]:
        """Features of one image (the function is ignored by this row)."""
        del mask, function
        maps = self.dino(_to_batch(image, self.dino.device))
        return {"feat": raw_backbone_features(maps, image.shape[0])[0].cpu(), "part": None}


class ModelRow:
    """A trained function-conditioned model ("Ours")."""

    def __init__(self, model, dino, clip, functions: list[str], name: str = "ours") -> None:
        self.model, self.dino, self.clip = model, dino, clip
        self.functions = list(functions)
        self.name = name

    @torch.no_grad()
    def features(self, image: np.ndarray, mask: np.ndarray, function: str) -> dict[str, Any]:
        check_function(function, self.functions)
        device = next(self.model.parameters()).device
        maps = [m.float() for m in self.dino(_to_batch(image, self.dino.device))]
        maps = [m.to(device) for m in maps]
        text = encode_functions(self.clip, [function]).to(device)
        out = self.model.dense(maps, text, image_size=image.shape[0])
        part = None
        if out["mask_logit"] is not None:
            part = (torch.sigmoid(out["mask_logit"][0]) > 0.5).cpu().numpy() & mask
        return {"feat": out["feat"][0].cpu(), "part": part}


def box_to_mask(box: np.ndarray | None, size: int) -> np.ndarray | None:
    """``[x0, y0, x1, y1]`` (x = col, y = row, pixel centres on integers) -> (S,S) bool."""
    if box is None or not np.isfinite(box).all():
        return None
    rr = np.arange(size)[:, None]
    cc = np.arange(size)[None, :]
    return (cc >= box[0]) & (cc <= box[2]) & (rr >= box[1]) & (rr <= box[3])


class PartBoxRow:
    """Restrict another row's matches to functional-part boxes ("VLM + DINO" rows).

    ``boxes`` maps an evaluation pair side to a crop-space region: it is called as
    ``boxes(pair_data, side)`` with side 1 (source) or 2 (target) and returns a box
    ``[x0,y0,x1,y1]``, an (S,S) bool mask, or None (no region: the object mask is used and the
    miss is counted in ``misses``).
    """

    def __init__(self, inner, boxes, name: str = "vlm+dino") -> None:
        self.inner, self.boxes, self.name = inner, boxes, name
        self.misses = 0

    def features(self, image: np.ndarray, mask: np.ndarray, function: str) -> dict[str, Any]:
        return self.inner.features(image, mask, function)

    def region(self, pair_data: dict, side: int, mask: np.ndarray) -> np.ndarray:
        r = self.boxes(pair_data, side)
        if r is not None and np.ndim(r) == 2:
            if np.shape(r) != mask.shape:
                raise AffordError(
                    f"{self.name}: region mask of side {side} has shape {np.shape(r)}, "
                    f"expected {mask.shape}"
                )
            m = np.asarray(r, dtype=bool)
        else:
            m = box_to_mask(r, mask.shape[0])
        if m is None or not (m & mask).any():
            self.misses += 1
            return mask
        return m & mask


def gt_part_masks(pair_data: dict, side: int) -> np.ndarray:
    """A region function for :class:`PartBoxRow`: the evaluation pair's ground-truth
    functional-part mask of ``side`` (1 source, 2 target), (S,S) bool. An oracle, for
    diagnostics only (e.g. "chance in GT part")."""
    m = pair_data.get(f"part_mask{side}")
    if m is None:
        pid = pair_data.get("id", "?")
        raise AffordError(f"evaluation pair {pid}: no part_mask{side}, needed for the GT-part row")
    return m


def dataset_part_boxes(dataset) -> Any:
    """A ``boxes(pair_data, side)`` function for :class:`PartBoxRow` from the labeler boxes stored
    in a dataset (``views.npz`` ``boxes``: the largest cluster's mean box, REFERENCE_NOTES C),
    mapped into the evaluation crop."""

    def boxes(pair_data: dict, side: int) -> np.ndarray | None:
        pair = pair_data["pair"]
        asset, view = (
            (pair.source_asset, pair.source_view)
            if side == 1
            else (pair.target_asset, pair.target_view)
        )
        info = dataset.asset(asset)
        v = dataset.views(asset)
        if "boxes" not in v or pair.function not in info.functions:
            return None
        box = cluster_boxes(v["boxes"][view, info.functions.index(pair.function)])
        if box is None:
            return None
        corners = view_to_crop(
            np.array([[box[1], box[0]], [box[3], box[2]]]), v["crop_box"][view], dataset.crop_size
        )
        return np.array([corners[0, 1], corners[0, 0], corners[1, 1], corners[1, 0]])

    return boxes


def labeler_part_boxes(labeler, category_of, part_of) -> Any:
    """A ``boxes(pair_data, side)`` function for :class:`PartBoxRow` from a ``BoxLabeler`` run on
    the evaluation crops: ``category_of(pair, side)`` / ``part_of(pair, side)`` name the query;
    the samples are reduced to the largest cluster's mean box."""

    def boxes(pair_data: dict, side: int) -> np.ndarray | None:
        pair = pair_data["pair"]
        query = PartQuery(category_of(pair, side), pair.function, part_of(pair, side))
        samples = labeler(pair_data[f"image{side}"], query, 0)
        return cluster_boxes(np.asarray(samples, dtype=np.float64).reshape(-1, 4))

    return boxes

"""Reader of the on-disk correspondence dataset format (docs/correspondence-format.md).

``CorrespondenceDataset(root)`` validates ``dataset.json`` and lazily loads per-asset arrays
(``views.npz``, ``multiview.npz``, ``geometry.npz``), view images, their 224 square crops, and
the evaluation pairs (``eval_pairs.json`` + ``eval/<pair>.npz``).  Every layout problem raises
:class:`~afford.errors.AffordError` naming the offending file and what was expected.

Crops follow the format's convention: crop box ``[top, left, size]`` in view pixels, crop side
``S``; view coordinates -> crop coordinates ``row_c = (row - top + 0.5) * S / size - 0.5``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afford.data.crops import crop_array, crop_image, view_to_crop
from afford.data.io import read_image, read_json, read_npz, write_npz
from afford.errors import AffordError, DataError

FORMAT = "afford-correspondence"
EVAL_FORMAT = "afford-correspondence-eval"
SPLITS = ("train", "val", "test")
ASSET_ID = re.compile(r"^[a-z0-9_-]+$")

VIEWS_REQUIRED = ("K", "R", "t", "mask", "pseudo_mask", "pseudo_valid", "crop_box")
MULTIVIEW_REQUIRED = ("view_pairs", "offsets", "src", "dst")
EVAL_REQUIRED = ("points1", "points2", "mask1", "mask2", "crop_box1", "crop_box2")


def dataset_index(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``dataset.json`` fields that index a dataset's asset ``records`` (id -> record):
    format, version, sorted categories and functions, asset ids per split, eval file."""
    return {
        "format": FORMAT,
        "format_version": 1,
        "categories": sorted({r["category"] for r in records.values()}),
        "functions": sorted({f for r in records.values() for f in r["functions"]}),
        "splits": {s: [a for a in sorted(records) if records[a]["split"] == s] for s in SPLITS},
        "eval_pairs": "eval_pairs.json",
    }


def eval_index(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``eval_pairs.json`` content listing the evaluation pair ``entries``
    (:func:`write_eval_pair`), 224 crops."""
    return {"format": EVAL_FORMAT, "format_version": 1, "crop_size": 224, "pairs": entries}


def write_asset_arrays(
    folder: Path,
    aid: str,
    views: dict[str, np.ndarray],
    geometry: dict[str, np.ndarray],
    pairs: np.ndarray,
    correspondences: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    compresslevel: int | None = None,
) -> dict[str, str]:
    """Write an asset's ``views.npz``, ``geometry.npz`` and ``multiview.npz`` into ``folder``
    (docs/correspondence-format.md); ``correspondences`` is ``(src, dst, offsets, part)`` of
    :func:`afford.geometry.visible.pair_correspondences` for the (P, 2) view ``pairs``.
    ``compresslevel``: the zlib level (:func:`afford.data.io.write_npz`).
    Returns the record's paths ``{"views": "assets/<aid>/views.npz", ...}``."""
    src, dst, offsets, part = correspondences
    z = compresslevel
    write_npz(folder / "views.npz", z, **views)
    write_npz(folder / "geometry.npz", z, **geometry)
    mv = dict(view_pairs=pairs, offsets=offsets, src=src, dst=dst, part=part)
    write_npz(folder / "multiview.npz", z, **mv)
    return {name: f"assets/{aid}/{name}.npz" for name in ("views", "geometry", "multiview")}


def write_eval_pair(
    root: Path,
    pair_id: str,
    split: str,
    function: str,
    assets: tuple[str, str],
    cross_category: bool,
    pair: Any,
    masks: tuple[np.ndarray, np.ndarray],
    part_masks: tuple[np.ndarray, np.ndarray],
    crop_boxes: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Write ``<root>/eval/<pair_id>.npz`` of a curated pair (docs/correspondence-format.md)
    and return its ``eval_pairs.json`` entry.

    Args:
        assets: (source, target) asset ids.
        pair: an :class:`afford.geometry.curation.CuratedPair` (views, points, xyz, T).
        masks, part_masks: (source, target) (224, 224) crop masks of the pair's views.
        crop_boxes: (source, target) ``[top, left, side]`` crop boxes of the pair's views.
    """
    sv, tv = pair.source_view, pair.target_view
    rel = f"eval/{pair_id}.npz"
    write_npz(
        root / rel,
        points1=pair.points1,
        points2=pair.points2,
        mask1=masks[0],
        mask2=masks[1],
        part_mask1=part_masks[0],
        part_mask2=part_masks[1],
        crop_box1=crop_boxes[0].astype(np.int32),
        crop_box2=crop_boxes[1].astype(np.int32),
        xyz1=pair.xyz1,
        xyz2=pair.xyz2,
        T=pair.T,
    )
    return {
        "id": pair_id,
        "split": split,
        "function": function,
        "source": {"asset": assets[0], "view": sv},
        "target": {"asset": assets[1], "view": tv},
        "cross_category": bool(cross_category),
        "n_points": len(pair.points1),
        "file": rel,
    }


def crop_masks(masks: np.ndarray, box: np.ndarray, size: int = 224) -> np.ndarray:
    """Nearest-neighbour crop of stacked boolean masks (...,H,W) -> (...,S,S) (outside False)."""
    lead = masks.shape[:-2]
    h, w = masks.shape[-2:]
    flat = masks.reshape(-1, h, w).transpose(1, 2, 0)  # (H,W,K)
    out = crop_array(flat, box, size, fill=False)  # (S,S,K)
    return out.transpose(2, 0, 1).reshape(*lead, size, size)


def views_to_crop(
    points: np.ndarray, views: np.ndarray, boxes: np.ndarray, size: int = 224
) -> np.ndarray:
    """Map (M,2) view points, each in view ``views[m]`` with crop box ``boxes[views[m]]``, to crop
    coordinates (M,2) float64 (``afford.data.crops.view_to_crop`` per view)."""
    out = np.empty((points.shape[0], 2), np.float64)
    for v in np.unique(views):
        sel = views == v
        out[sel] = view_to_crop(points[sel], boxes[v], size)
    return out


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class AssetInfo:
    """One asset entry of ``dataset.json`` (paths resolved against the root)."""

    id: str
    category: str
    split: str
    n_views: int
    image_size: tuple[int, int]
    rgb: tuple[Path, ...]
    views: Path
    geometry: Path | None
    multiview: Path | None
    functions: tuple[str, ...]
    parts: tuple[str, ...] = ()
    function_parts: dict[str, list[str]] = field(default_factory=dict)
    frames: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalPair:
    """One evaluation pair of ``eval_pairs.json``."""

    id: str
    split: str
    function: str
    source_asset: str
    source_view: int
    target_asset: str
    target_view: int
    cross_category: bool
    n_points: int
    file: Path


def _need(d: dict, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise DataError(
            f"{where}: missing required key {key!r} (see docs/correspondence-format.md)"
        )
    value = d[key]
    if kind is not None and not isinstance(value, kind):
        raise DataError(f"{where}: {key!r} has type {type(value).__name__}, expected {kind}")
    return value


class CorrespondenceDataset:
    """A dataset in the documented correspondence format.

    Args:
        root: dataset folder holding ``dataset.json``.

    Attributes: ``root``, ``meta`` (the manifest), ``assets`` (id -> :class:`AssetInfo`),
    ``functions`` (sorted), ``splits`` (split -> asset ids), ``crop_size`` (224).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        manifest = self.root / "dataset.json"
        if not manifest.is_file():
            raise DataError(
                f"{manifest}: not found; {self.root} is not a correspondence dataset "
                "(write one with `afford synth correspondence --out DIR`)"
            )
        meta = read_json(manifest)
        where = str(manifest)
        if meta.get("format") != FORMAT:
            raise DataError(f"{where}: 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("format_version") != 1:
            raise DataError(f"{where}: unsupported format_version {meta.get('format_version')!r}")
        self.meta = meta
        crop = meta.get("crop", {"size": 224})
        self.crop_size = int(crop.get("size", 224))
        splits = _need(meta, "splits", where, dict)
        assets = _need(meta, "assets", where, dict)
        self.splits: dict[str, list[str]] = {}
        seen: dict[str, str] = {}
        for name, ids in splits.items():
            if name not in SPLITS:
                raise DataError(f"{where}: unknown split {name!r} (expected one of {SPLITS})")
            for aid in ids:
                if aid in seen:
                    raise DataError(
                        f"{where}: asset {aid!r} is in splits {seen[aid]!r} and {name!r}; "
                        "splits must be disjoint"
                    )
                if aid not in assets:
                    raise DataError(f"{where}: split {name!r} lists unknown asset {aid!r}")
                seen[aid] = name
            self.splits[name] = list(ids)
        self.assets: dict[str, AssetInfo] = {}
        for aid, rec in assets.items():
            self.assets[aid] = self._asset(aid, rec, where, seen.get(aid))
        self.functions = sorted(
            set(meta.get("functions", [])) | {f for a in self.assets.values() for f in a.functions}
        )

    def _asset(self, aid: str, rec: dict, where: str, split: str | None) -> AssetInfo:
        w = f"{where}: assets[{aid!r}]"
        if not ASSET_ID.match(aid):
            raise DataError(f"{w}: asset id must match [a-z0-9_-]+")
        if split is None:
            split = rec.get("split")
            if split not in SPLITS:
                raise DataError(f"{w}: asset is in no split of 'splits'")
        rgb = _need(rec, "rgb", w, list)
        n_views = int(rec.get("n_views", len(rgb)))
        if len(rgb) != n_views or n_views < 1:
            raise DataError(f"{w}: 'rgb' lists {len(rgb)} files but n_views = {n_views}")
        size = rec.get("image_size")
        if size is None or len(size) != 2:
            raise DataError(f"{w}: 'image_size' must be [H, W]")

        def path(key: str, required: bool) -> Path | None:
            if key not in rec:
                if required:
                    raise DataError(f"{w}: missing required key {key!r}")
                return None
            return self.root / rec[key]

        return AssetInfo(
            id=aid,
            category=str(rec.get("category", aid)),
            split=split,
            n_views=n_views,
            image_size=(int(size[0]), int(size[1])),
            rgb=tuple(self.root / p for p in rgb),
            views=path("views", True),
            geometry=path("geometry", False),
            multiview=path("multiview", False),
            functions=tuple(_need(rec, "functions", w, list)),
            parts=tuple(rec.get("parts", ())),
            function_parts=dict(rec.get("function_parts", {})),
            frames=dict(rec.get("frames", {})),
        )

    # ------------------------------------------------------------------ assets
    def asset_ids(self, split: str | None = None) -> list[str]:
        """Asset ids of a split (all assets when None), in manifest order."""
        if split is None:
            return list(self.assets)
        if split not in SPLITS:
            raise AffordError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(self.splits.get(split, []))

    def asset(self, asset_id: str) -> AssetInfo:
        if asset_id not in self.assets:
            raise DataError(f"{self.root}: unknown asset {asset_id!r}")
        return self.assets[asset_id]

    @functools.lru_cache(maxsize=64)  # noqa: B019 -- one dataset object per run
    def views(self, asset_id: str) -> dict[str, np.ndarray]:
        """``views.npz`` of an asset, shape-checked: K (N,3,3), R, t, mask (N,H,W), pseudo_mask
        (N,F,H,W), pseudo_valid (N,F), crop_box (N,3) (+ optional part_id, gt_mask, boxes)."""
        info = self.asset(asset_id)
        arrays = read_npz(info.views)
        for key in VIEWS_REQUIRED:
            if key not in arrays:
                raise DataError(
                    f"{info.views}: missing array {key!r} (required: {', '.join(VIEWS_REQUIRED)})"
                )
        n, (h, w), f = info.n_views, info.image_size, len(info.functions)
        expect = {
            "K": (n, 3, 3),
            "R": (n, 3, 3),
            "t": (n, 3),
            "mask": (n, h, w),
            "pseudo_mask": (n, f, h, w),
            "pseudo_valid": (n, f),
            "crop_box": (n, 3),
            "gt_mask": (n, f, h, w),
            "part_id": (n, h, w),
        }
        for key, shape in expect.items():
            if key in arrays and tuple(arrays[key].shape) != shape:
                raise DataError(
                    f"{info.views}: array {key!r} has shape {tuple(arrays[key].shape)}, expected "
                    f"{shape} (n_views={n}, image_size={[h, w]}, {f} functions in dataset.json)"
                )
        for key in ("mask", "pseudo_mask", "pseudo_valid", "gt_mask"):
            if key in arrays:
                arrays[key] = arrays[key].astype(bool, copy=False)
        return arrays

    def rgb(self, asset_id: str, view: int) -> np.ndarray:
        """View image (H,W,3) uint8, checked against the asset's ``image_size``."""
        info = self.asset(asset_id)
        if not 0 <= view < info.n_views:
            raise DataError(f"asset {asset_id!r} has {info.n_views} views; no view {view}")
        img = read_image(info.rgb[view])
        if img.shape[:2] != info.image_size:
            raise DataError(
                f"{info.rgb[view]}: image is {img.shape[1]}x{img.shape[0]}, dataset.json says "
                f"image_size {list(info.image_size)} [H, W]"
            )
        return img

    def crop_view(self, asset_id: str, view: int) -> dict[str, np.ndarray]:
        """The 224 crop of one view: ``image`` (S,S,3) uint8 (background pixels as rendered),
        ``mask`` (S,S) bool, ``pseudo_mask`` (F,S,S), ``pseudo_valid`` (F,), ``crop_box`` (3,),
        and ``gt_mask`` (F,S,S) when present."""
        v = self.views(asset_id)
        box = v["crop_box"][view]
        s = self.crop_size
        out = {
            "image": crop_image(self.rgb(asset_id, view), box, s),
            "mask": crop_masks(v["mask"][view], box, s),
            "pseudo_mask": crop_masks(v["pseudo_mask"][view], box, s),
            "pseudo_valid": v["pseudo_valid"][view].copy(),
            "crop_box": box.copy(),
        }
        if "gt_mask" in v:
            out["gt_mask"] = crop_masks(v["gt_mask"][view], box, s)
        return out

    @functools.lru_cache(maxsize=64)  # noqa: B019
    def multiview(self, asset_id: str) -> dict[str, np.ndarray]:
        """``multiview.npz``: view_pairs (P,2), offsets (P+1,), src (M,2), dst (M,2) view pixels."""
        info = self.asset(asset_id)
        if info.multiview is None:
            raise DataError(
                f"{self.root / 'dataset.json'}: asset {asset_id!r} has no 'multiview' file "
                "(needed for the spatial loss)"
            )
        arrays = read_npz(info.multiview)
        for key in MULTIVIEW_REQUIRED:
            if key not in arrays:
                raise DataError(f"{info.multiview}: missing array {key!r}")
        pairs, off = arrays["view_pairs"], arrays["offsets"]
        m = arrays["src"].shape[0]
        if (
            pairs.ndim != 2
            or pairs.shape[1] != 2
            or off.shape != (pairs.shape[0] + 1,)
            or arrays["dst"].shape != (m, 2)
            or arrays["src"].shape != (m, 2)
            or (off.size and (off[0] != 0 or off[-1] != m or np.any(np.diff(off) < 0)))
        ):
            raise DataError(
                f"{info.multiview}: inconsistent arrays (view_pairs {pairs.shape}, offsets "
                f"{off.shape}, src {arrays['src'].shape}, dst {arrays['dst'].shape}); offsets "
                "must run from 0 to len(src)"
            )
        if pairs.size and (pairs.min() < 0 or pairs.max() >= info.n_views):
            raise DataError(
                f"{info.multiview}: view_pairs refer to views outside 0..{info.n_views - 1}"
            )
        return arrays

    def geometry(self, asset_id: str) -> dict[str, np.ndarray]:
        """``geometry.npz``: depth (N,H,W), surface_points (P,3), surface_part (P,)."""
        info = self.asset(asset_id)
        if info.geometry is None:
            raise DataError(f"{self.root / 'dataset.json'}: asset {asset_id!r} has no 'geometry'")
        return read_npz(info.geometry)

    # ------------------------------------------------------------------ evaluation
    @functools.cached_property
    def _eval_pairs(self) -> list[EvalPair]:
        rel = self.meta.get("eval_pairs", "eval_pairs.json")
        path = self.root / rel
        meta = read_json(path)
        if meta.get("format") != EVAL_FORMAT:
            raise DataError(f"{path}: 'format' is {meta.get('format')!r}, expected {EVAL_FORMAT!r}")
        out = []
        for n, p in enumerate(_need(meta, "pairs", str(path), list)):
            w = f"{path}: pairs[{n}]"
            src, tgt = _need(p, "source", w, dict), _need(p, "target", w, dict)
            pair = EvalPair(
                id=str(_need(p, "id", w)),
                split=str(_need(p, "split", w)),
                function=str(_need(p, "function", w)),
                source_asset=str(_need(src, "asset", w)),
                source_view=int(_need(src, "view", w)),
                target_asset=str(_need(tgt, "asset", w)),
                target_view=int(_need(tgt, "view", w)),
                cross_category=bool(p.get("cross_category", False)),
                n_points=int(p.get("n_points", 0)),
                file=self.root / _need(p, "file", w, str),
            )
            for aid in (pair.source_asset, pair.target_asset):
                if aid not in self.assets:
                    raise DataError(f"{w}: unknown asset {aid!r}")
                if self.assets[aid].split == "train":
                    raise DataError(
                        f"{w}: asset {aid!r} is a training asset; eval pairs "
                        "must use val/test assets"
                    )
            out.append(pair)
        return out

    def eval_pairs(self, split: str | None = None) -> list[EvalPair]:
        """Evaluation pairs of a split ("val" / "test"; all when None)."""
        return [p for p in self._eval_pairs if split is None or p.split == split]

    def load_pair(self, pair: EvalPair, images: bool = True) -> dict[str, Any]:
        """Arrays of one evaluation pair at the 224 crop.

        Returns dict: ``points1``, ``points2`` (n,2) int64 (row, col); ``mask1``, ``mask2``
        (S,S) bool; ``part_mask1``, ``part_mask2`` (or None); ``image1``, ``image2`` (S,S,3)
        uint8 crops of the views (when ``images``); ``function``, ``cross_category``, ``id``.
        """
        arrays = read_npz(pair.file)
        for key in EVAL_REQUIRED:
            if key not in arrays:
                raise DataError(f"{pair.file}: missing array {key!r}")
        s = self.crop_size
        p1, p2 = arrays["points1"], arrays["points2"]
        if p1.ndim != 2 or p1.shape[1] != 2 or p1.shape != p2.shape or p1.shape[0] < 1:
            raise DataError(
                f"{pair.file}: points1 {p1.shape} / points2 {p2.shape} must be equal (n,2), n >= 1"
            )
        if p1.min() < 0 or p2.min() < 0 or p1.max() >= s or p2.max() >= s:
            raise DataError(f"{pair.file}: points outside the {s}x{s} crop")
        for key in ("mask1", "mask2"):
            if arrays[key].shape != (s, s):
                raise DataError(
                    f"{pair.file}: {key} has shape {arrays[key].shape}, expected {(s, s)}"
                )
        out: dict[str, Any] = {
            "id": pair.id,
            "function": pair.function,
            "cross_category": pair.cross_category,
            "points1": p1.astype(np.int64),
            "points2": p2.astype(np.int64),
            "mask1": arrays["mask1"].astype(bool),
            "mask2": arrays["mask2"].astype(bool),
            "part_mask1": arrays["part_mask1"].astype(bool) if "part_mask1" in arrays else None,
            "part_mask2": arrays["part_mask2"].astype(bool) if "part_mask2" in arrays else None,
        }
        if images:
            out["image1"] = crop_image(
                self.rgb(pair.source_asset, pair.source_view), arrays["crop_box1"], s
            )
            out["image2"] = crop_image(
                self.rgb(pair.target_asset, pair.target_view), arrays["crop_box2"], s
            )
        return out

"""Evaluation pairs from aligned assets (issue 14 part 5; docs/eval-pairs.md).

Input: a dataset in the afford-correspondence format (rendered views with depth, cameras and
dense surface samples: ``afford prepare correspondence``, ``afford prepare handal`` or
``afford synth correspondence``) and an *alignments* JSON listing asset pairs, each with the
4x4 transform that makes the functional parts coincide (annotated in Blender, paper Sec. 3.2)
and, per asset, the 3-D box(es) of the functional part. Output: ``eval/<id>.npz`` and
``eval_pairs.json`` in the dataset folder, made by the curation of REFERENCE_NOTES C
(:func:`afford.geometry.curation.curate_pair`): visible surface points per view (back-projected
depth matched to the dense cloud), source view with the most visible part points, target view
by overlap with the aligned part + part visibility, 2-D farthest point sampling to
``n = min(max_points, n1, n2)`` and Hungarian matching on the aligned 3-D distance.

Part membership comes from the boxes (a surface point is on the part when it lies in one of
the asset's part boxes); an asset pair without boxes uses the dataset's part labels
(``geometry.npz: surface_part`` + the asset's ``function_parts``) when it has them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from afford.data.correspondence import CorrespondenceDataset, eval_index, write_eval_pair
from afford.data.crops import crop_array
from afford.data.io import read_format_json, read_json, write_json
from afford.errors import AffordError, DataError, UsageError
from afford.geometry.camera import backproject
from afford.geometry.curation import MAX_POINTS, curate_pair
from afford.geometry.visible import NN_TOL, match_to_cloud

__all__ = [
    "ALIGNMENTS_FORMAT",
    "PartBox",
    "AlignedPair",
    "read_alignments",
    "points_in_part_boxes",
    "to_normalized",
    "write_eval_pairs",
]

log = logging.getLogger(__name__)

ALIGNMENTS_FORMAT = "afford-alignments"
ALIGNMENTS_VERSION = 1
EVAL_SPLITS = ("val", "test")
CROP = 224
FRAMES = ("normalized", "mesh")


@dataclass(frozen=True)
class PartBox:
    """An oriented 3-D box in an asset's object frame: ``x`` is inside when
    ``|rotation^T (x - center)| <= size / 2`` on every axis."""

    center: np.ndarray  # (3,)
    size: np.ndarray  # (3,) full side lengths
    rotation: np.ndarray  # (3, 3) box axes as columns (object <- box)


@dataclass(frozen=True)
class AlignedPair:
    """One entry of the alignments file (docs/eval-pairs.md)."""

    id: str | None
    function: str
    source: str
    target: str
    T: np.ndarray  # (4, 4) target object frame -> source object frame
    source_boxes: tuple[PartBox, ...]  # empty: use the dataset's part labels
    target_boxes: tuple[PartBox, ...]
    source_view: int | None = None
    target_view: int | None = None
    rank: int = 0
    frame: str = "normalized"  # or "mesh": the assets' mesh-file coordinates (see to_normalized)


# ---------------------------------------------------------------------------------------------
# reading the alignments file


def _matrix(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected a {shape} array of numbers") from None
    if arr.shape != shape or not np.isfinite(arr).all():
        raise DataError(f"{where}: expected a finite {shape} array, got shape {arr.shape}")
    return arr


def _box(value: Any, where: str) -> PartBox:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected {{'center': [x, y, z], 'size': [dx, dy, dz]}}")
    unknown = sorted(set(value) - {"center", "size", "rotation"})
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown} (center, size, rotation)")
    for key in ("center", "size"):
        if key not in value:
            raise DataError(f"{where}: missing {key!r}")
    center = _matrix(value["center"], (3,), f"{where}.center")
    size = _matrix(value["size"], (3,), f"{where}.size")
    if (size <= 0).any():
        raise DataError(f"{where}.size: sides must be > 0, got {size.tolist()}")
    rot = _matrix(value.get("rotation", np.eye(3)), (3, 3), f"{where}.rotation")
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
        raise DataError(f"{where}.rotation: not a rotation matrix (orthonormal, det +1)")
    return PartBox(center, size, rot)


def _boxes(value: Any, where: str) -> tuple[PartBox, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return (_box(value, where),)
    if isinstance(value, list) and value:
        return tuple(_box(b, f"{where}[{i}]") for i, b in enumerate(value))
    raise DataError(f"{where}: expected a box object or a non-empty list of boxes")


def _rigid(T: np.ndarray, where: str) -> np.ndarray:
    R = T[:3, :3]
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{where}: the last row must be [0, 0, 0, 1]")
    # a uniform scale is allowed (assets are normalised separately); shear is not
    s = np.cbrt(abs(np.linalg.det(R)))
    if s <= 0 or not np.allclose(R.T @ R, (s * s) * np.eye(3), atol=1e-4 * max(1.0, s * s)):
        raise DataError(f"{where}: not a rotation + translation (+ uniform scale)")
    return T


def read_alignments(path: str | os.PathLike) -> list[AlignedPair]:
    """Parse an alignments JSON (docs/eval-pairs.md); errors name the file and the key."""
    path = Path(path)
    data = read_format_json(path, ALIGNMENTS_FORMAT, ALIGNMENTS_VERSION, f"--alignments {path}")
    where = str(path)
    unknown_top = sorted(set(data) - {"format", "format_version", "frame", "pairs", "notes"})
    if unknown_top:
        raise DataError(f"{where}: unknown top-level keys {unknown_top}")
    frame = data.get("frame", "normalized")
    if frame not in FRAMES:
        raise DataError(f"{where}: frame: expected one of {list(FRAMES)}, got {frame!r}")
    pairs = data.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise DataError(f"{where}: pairs: expected a non-empty list")
    keys = {
        "id",
        "function",
        "source",
        "target",
        "T",
        "source_box",
        "target_box",
        "source_view",
        "target_view",
        "rank",
    }
    out = []
    ids: set[str] = set()
    for n, p in enumerate(pairs):
        w = f"{where}: pairs[{n}]"
        if not isinstance(p, dict):
            raise DataError(f"{w}: expected an object")
        unknown = sorted(set(p) - keys)
        if unknown:
            raise DataError(f"{w}: unknown keys {unknown}; expected some of {sorted(keys)}")
        for key in ("function", "source", "target", "T"):
            if key not in p:
                raise DataError(f"{w}: missing {key!r}")
        for key in ("function", "source", "target"):
            if not isinstance(p[key], str) or not p[key]:
                raise DataError(f"{w}.{key}: expected a non-empty string")
        pid = p.get("id")
        if pid is not None:
            if not isinstance(pid, str) or not pid or "/" in pid or pid.startswith("."):
                raise DataError(f"{w}.id: expected a file-name-safe string, got {pid!r}")
            if pid in ids:
                raise DataError(f"{w}.id: duplicated id {pid!r}")
            ids.add(pid)
        views = {}
        for key in ("source_view", "target_view", "rank"):
            v = p.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise DataError(f"{w}.{key}: expected an integer >= 0, got {v!r}")
            views[key] = v
        out.append(
            AlignedPair(
                id=pid,
                function=p["function"],
                source=p["source"],
                target=p["target"],
                T=_rigid(_matrix(p["T"], (4, 4), f"{w}.T"), f"{w}.T"),
                source_boxes=_boxes(p.get("source_box"), f"{w}.source_box"),
                target_boxes=_boxes(p.get("target_box"), f"{w}.target_box"),
                source_view=views["source_view"],
                target_view=views["target_view"],
                rank=int(views["rank"] or 0),
                frame=frame,
            )
        )
    return out


def _normalizer(ds: CorrespondenceDataset, aid: str) -> np.ndarray:
    """(4, 4) ``N``: mesh-file coordinates -> the asset's normalised object frame,
    ``x_n = s (x - c)`` from the asset's ``normalization`` record in dataset.json."""
    rec = ds.meta["assets"][aid].get("normalization")
    where = f"{ds.root / 'dataset.json'}: assets.{aid}.normalization"
    if not isinstance(rec, dict) or "center" not in rec or "scale" not in rec:
        raise DataError(
            f"{where}: missing ({{'center': [x, y, z], 'scale': s}}); an alignments file in the "
            "'mesh' frame needs it, or write the boxes and T in the normalised frame"
        )
    c = _matrix(rec["center"], (3,), f"{where}.center")
    scale = float(rec["scale"])
    if not np.isfinite(scale) or scale <= 0:
        raise DataError(f"{where}.scale: expected a number > 0, got {rec['scale']!r}")
    N = np.eye(4)
    N[:3, :3] *= scale
    N[:3, 3] = -scale * c
    return N


def to_normalized(ds: CorrespondenceDataset, pair: AlignedPair) -> AlignedPair:
    """An alignment given in mesh-file coordinates -> the normalised object frames:
    ``T_n = N_s T N_t^-1``; box centres ``s (c_b - c)``, sizes ``s size``, same rotation."""
    if pair.frame == "normalized":
        return pair
    Ns, Nt = _normalizer(ds, pair.source), _normalizer(ds, pair.target)

    def boxes(bs: tuple[PartBox, ...], N: np.ndarray) -> tuple[PartBox, ...]:
        s = N[0, 0]
        return tuple(PartBox(N[:3, :3] @ b.center + N[:3, 3], s * b.size, b.rotation) for b in bs)

    return replace(
        pair,
        T=Ns @ pair.T @ np.linalg.inv(Nt),
        source_boxes=boxes(pair.source_boxes, Ns),
        target_boxes=boxes(pair.target_boxes, Nt),
        frame="normalized",
    )


def points_in_part_boxes(points: np.ndarray, boxes: tuple[PartBox, ...]) -> np.ndarray:
    """(..., 3) points (nan allowed) -> (...) bool: inside any of the oriented boxes."""
    pts = np.asarray(points, dtype=np.float64)
    inside = np.zeros(pts.shape[:-1], dtype=bool)
    with np.errstate(invalid="ignore"):
        for b in boxes:
            local = (pts - b.center) @ b.rotation  # box coordinates (R^T (x - c))
            inside |= (np.abs(local) <= b.size / 2).all(axis=-1)
    return inside


# ---------------------------------------------------------------------------------------------
# per-asset inputs of curate_pair


def _asset_inputs(
    ds: CorrespondenceDataset, aid: str, function: str, boxes: tuple[PartBox, ...], tol: float
) -> dict[str, Any]:
    """Crop-level view points, part pixels, cloud and cloud part flags of one asset."""
    info = ds.asset(aid)
    views = ds.views(aid)
    try:
        geom = ds.geometry(aid)
    except AffordError as exc:
        raise DataError(f"asset {aid!r}: {exc}") from None
    for key in ("depth", "surface_points"):
        if key not in geom:
            raise DataError(f"{info.geometry}: missing array {key!r} (needed for eval pairs)")
    crop_box = views["crop_box"]
    pts = backproject(geom["depth"], views["K"], views["R"], views["t"])
    crop = np.stack([crop_array(pts[v], crop_box[v], CROP, np.nan) for v in range(len(pts))])
    obj = np.stack(
        [crop_array(views["mask"][v], crop_box[v], CROP, False) for v in range(len(pts))]
    )
    crop = np.where(obj[..., None], crop, np.nan)
    cloud = np.asarray(geom["surface_points"], dtype=np.float64)
    if boxes:
        part = points_in_part_boxes(cloud, boxes)
        pixel_part = points_in_part_boxes(crop, boxes) & obj
        source = "boxes"
    else:
        names = info.function_parts.get(function)
        if not names or not info.parts or "surface_part" not in geom:
            raise DataError(
                f"asset {aid!r}: no part box for {function!r} in the alignments file and no part "
                "labels in the dataset (geometry.npz surface_part + function_parts)"
            )
        missing = [n for n in names if n not in info.parts]
        if missing:
            raise DataError(f"{ds.root / 'dataset.json'}: asset {aid!r}: unknown parts {missing}")
        idx = [info.parts.index(n) for n in names]
        part = np.isin(geom["surface_part"], idx)
        if "gt_mask" in views and function in info.functions:
            fi = info.functions.index(function)
            gt = views["gt_mask"][:, fi]
            pixel_part = np.stack(
                [crop_array(gt[v], crop_box[v], CROP, False) for v in range(len(gt))]
            )
        else:
            pixel_part = None
        source = "labels"
    if not part.any():
        raise DataError(
            f"asset {aid!r}: no surface sample on the {function!r} part ({source}); check the "
            "part box is in the asset's normalised object frame (docs/eval-pairs.md)"
        )
    sel = obj if pixel_part is None else pixel_part
    index = np.full(obj.shape, -1, dtype=np.int64)
    index[sel] = match_to_cloud(crop[sel], cloud, tol)
    return {
        "points": crop,
        "index": index,
        "cloud": cloud,
        "part": part,
        "pixel_part": pixel_part,
        "mask": obj,
        "crop_box": crop_box,
        "category": info.category,
        "split": info.split,
    }


def _pixel_part_masks(a: dict[str, Any], view: int) -> np.ndarray:
    """(224, 224) GT part mask of one view at the crop (visible part pixels)."""
    if a["pixel_part"] is not None:
        return a["pixel_part"][view]
    idx = a["index"][view]
    on = idx >= 0
    on[on] = a["part"][idx[on]]
    return on


# ---------------------------------------------------------------------------------------------
# entry point


def write_eval_pairs(
    dataset: str | os.PathLike,
    alignments: str | os.PathLike | list[AlignedPair],
    *,
    max_points: int = MAX_POINTS,
    overwrite: bool = False,
    tol: float = NN_TOL,
    overlap_radius: float = 0.05,
    progress: bool = True,
) -> dict[str, Any]:
    """Curate the pairs of ``alignments`` and write ``eval/*.npz`` + ``eval_pairs.json``.

    Args:
        dataset: a folder in the afford-correspondence format (with ``geometry.npz`` depth and
            surface samples for the assets of the pairs).
        alignments: the alignments JSON path, or parsed pairs.
        max_points: GT points per pair cap (paper: 10000).
        overwrite: replace existing evaluation pairs of the dataset.

    Returns:
        the ``eval_pairs.json`` dict (plus ``failed``: ids of pairs without visible part points).
    """
    root = Path(dataset)
    ds = CorrespondenceDataset(root)
    pairs = read_alignments(alignments) if not isinstance(alignments, list) else alignments
    eval_json = root / ds.meta.get("eval_pairs", "eval_pairs.json")
    old = []
    if eval_json.is_file():
        try:
            old = read_json(eval_json).get("pairs", [])
        except (AffordError, AttributeError):
            old = []
    if old and not overwrite:
        raise UsageError(
            f"{eval_json}: the dataset already has {len(old)} evaluation pairs; pass "
            "--overwrite to replace them"
        )

    # validate every pair before writing anything
    plan = []
    counters = {s: 0 for s in EVAL_SPLITS}
    for n, p in enumerate(pairs):
        w = f"pairs[{n}]" + (f" ({p.id})" if p.id else "")
        for aid in (p.source, p.target):
            if aid not in ds.assets:
                raise DataError(f"alignments {w}: asset {aid!r} is not in {root / 'dataset.json'}")
        sa, ta = ds.asset(p.source), ds.asset(p.target)
        if sa.split not in EVAL_SPLITS or ta.split not in EVAL_SPLITS:
            bad = p.source if sa.split not in EVAL_SPLITS else p.target
            raise DataError(
                f"alignments {w}: asset {bad!r} is in split {ds.asset(bad).split!r}; evaluation "
                "pairs use val/test assets (move it in dataset.json splits)"
            )
        if sa.split != ta.split:
            raise DataError(
                f"alignments {w}: {p.source!r} is in {sa.split!r} but {p.target!r} in "
                f"{ta.split!r}; both assets of a pair must be in one split"
            )
        for aid, v in ((p.source, p.source_view), (p.target, p.target_view)):
            if v is not None and v >= ds.asset(aid).n_views:
                raise DataError(
                    f"alignments {w}: view {v} of {aid!r} does not exist "
                    f"({ds.asset(aid).n_views} views)"
                )
        pid = p.id or f"{sa.split}_{counters[sa.split]:05d}"
        counters[sa.split] += 1
        plan.append((pid, sa.split, to_normalized(ds, p)))
    dup = sorted({pid for pid, _, _ in plan if [q for q, _, _ in plan].count(pid) > 1})
    if dup:
        raise DataError(f"alignments: pair ids {dup} are used twice (generated ids included)")

    if (root / "eval").is_dir() and overwrite:
        shutil.rmtree(root / "eval")
    cache: dict[tuple, dict[str, Any]] = {}

    def inputs(aid: str, function: str, boxes: tuple[PartBox, ...]) -> dict[str, Any]:
        key = (aid, function, tuple((b.center.tobytes(), b.size.tobytes(), b.rotation.tobytes())
                                    for b in boxes))  # fmt: skip
        if key not in cache:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = _asset_inputs(ds, aid, function, boxes, tol)
        return cache[key]

    entries, failed = [], []
    for pid, split, p in tqdm(plan, desc="eval pairs", disable=not progress, unit="pair"):
        a = inputs(p.source, p.function, p.source_boxes)
        b = inputs(p.target, p.function, p.target_boxes)
        pair = curate_pair(
            a["points"],
            a["cloud"],
            a["part"],
            p.T,
            b["points"],
            b["cloud"],
            b["part"],
            np.eye(4),  # alignment_transform(F_s, F_t) = F_s F_t^-1 = T
            source_view=p.source_view,
            target_view=p.target_view,
            source_rank=p.rank,
            source_index=a["index"],
            target_index=b["index"],
            source_pixel_part=a["pixel_part"],
            target_pixel_part=b["pixel_part"],
            max_points=max_points,
            tol=tol,
            overlap_radius=overlap_radius,
        )
        if pair is None:
            log.warning("%s: no visible part points in a chosen view; pair skipped", pid)
            failed.append(pid)
            continue
        sv, tv = pair.source_view, pair.target_view
        entry = write_eval_pair(
            root,
            pid,
            split,
            p.function,
            (p.source, p.target),
            a["category"] != b["category"],
            pair,
            (a["mask"][sv], b["mask"][tv]),
            (_pixel_part_masks(a, sv), _pixel_part_masks(b, tv)),
            (a["crop_box"][sv], b["crop_box"][tv]),
        )
        entries.append(entry)
    if not entries:
        raise DataError(
            f"alignments: none of the {len(plan)} pairs has visible part points in both assets "
            f"(failed: {failed}); check the part boxes and the alignment"
        )
    out = eval_index(entries)
    write_json(eval_json, out)
    _update_manifest(root, entries, failed)
    return {**out, "failed": failed}


def _update_manifest(root: Path, entries: list[dict], failed: list[str]) -> None:
    manifest = root / "dataset.json"
    meta = read_json(manifest)
    meta["eval_pairs"] = meta.get("eval_pairs", "eval_pairs.json")
    counts = dict(meta.get("counts", {}))
    counts["eval_pairs"] = {s: sum(e["split"] == s for e in entries) for s in EVAL_SPLITS}
    counts["eval_pairs_failed"] = failed
    counts["cross_category_fraction"] = round(
        float(np.mean([e["cross_category"] for e in entries])), 4
    )
    meta["counts"] = counts
    write_json(manifest, meta)

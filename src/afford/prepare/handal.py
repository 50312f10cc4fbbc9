"""Reader for HANDAL in the BOP layout -> the inputs of :mod:`afford.geometry.curation`.

Layout (BOP; HANDAL ships one folder per object category with this structure)::

    <root>/models/obj_<obj_id:06d>.ply            meshes (millimetres)
    <root>/<split>/<scene:06d>/rgb/<im:06d>.jpg   (or .png)
    <root>/<split>/<scene:06d>/mask/<im:06d>_<k:06d>.png        object silhouette (k = GT index)
    <root>/<split>/<scene:06d>/mask_visib/<im:06d>_<k:06d>.png  visible part of the object
    <root>/<split>/<scene:06d>/<part_dir>/<im:06d>_<k:06d>.png  functional-part mask (optional;
                                                                e.g. HANDAL's handle masks)
    <root>/<split>/<scene:06d>/scene_gt.json      {im: [{"cam_R_m2c": 9, "cam_t_m2c": 3 (mm),
                                                        "obj_id": int}, ...]}
    <root>/<split>/<scene:06d>/scene_camera.json  {im: {"cam_K": 9, ...}}

Objects are normalised as in the paper (max |coord| = 0.5 around the bounding-box centre):
``x_n = s (x - c)``, so a BOP pose ``x_cam = R x + t`` (mm) becomes ``x_cam_n = R x_n + s (R c
+ t)`` in object units. Visible surface points of every pixel come from ray casting the mesh
with the GT pose inside ``mask_visib`` (no depth needed); functional-part membership of the dense
surface samples comes from the part masks by majority vote over the views that see a sample.
``annotate_inputs`` returns the arrays ``curation.curate_pair`` takes (crop-level view points,
dense cloud, part flags); functional frames are set by hand per object (the paper's annotators
align assets in 3-D).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from tqdm.auto import tqdm

from afford import __version__
from afford.data.correspondence import eval_index, write_asset_arrays
from afford.data.crops import crop_array, crop_image, square_crop_box
from afford.data.io import (
    output_dir,
    read_gray,
    read_image,
    read_json,
    remove_entries,
    write_image,
    write_json,
)
from afford.errors import DataError, UsageError
from afford.geometry.camera import camera_directions, crop_intrinsics
from afford.geometry.pseudolabel import PartQuery, pseudo_label_masks
from afford.geometry.visible import (
    NN_TOL,
    match_to_cloud,
    neighbour_view_pairs,
    pair_correspondences,
)

CROP = 224


def _numbers(value: Any, n: int, where: str) -> None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.size != n or not np.isfinite(arr).all():
        raise DataError(f"{where}: expected {n} finite numbers, got {value!r}"[:300])


def _scene_gt(path: Path) -> dict[str, list[dict[str, Any]]]:
    """``scene_gt.json`` checked: ``{image id: [{cam_R_m2c: 9, cam_t_m2c: 3, obj_id}, ...]}``."""
    gt = read_json(path)
    if not isinstance(gt, dict):
        raise DataError(f"{path}: expected an object {{image id: [instances]}}")
    for im, insts in gt.items():
        if not str(im).isdigit():
            raise DataError(f"{path}: key {im!r} is not an image id")
        if not isinstance(insts, list):
            raise DataError(f"{path}: {im}: expected a list of instances")
        for k, inst in enumerate(insts):
            w = f"{path}: {im}[{k}]"
            if not isinstance(inst, dict):
                raise DataError(f"{w}: expected an object")
            for key in ("cam_R_m2c", "cam_t_m2c", "obj_id"):
                if key not in inst:
                    raise DataError(f"{w}: missing {key!r}")
            if not isinstance(inst["obj_id"], int) or isinstance(inst["obj_id"], bool):
                raise DataError(f"{w}.obj_id: expected an integer, got {inst['obj_id']!r}")
            _numbers(inst["cam_R_m2c"], 9, f"{w}.cam_R_m2c")
            _numbers(inst["cam_t_m2c"], 3, f"{w}.cam_t_m2c")
    return gt


def _scene_camera(path: Path) -> dict[str, dict[str, Any]]:
    """``scene_camera.json`` checked: ``{image id: {cam_K: 9, ...}}``."""
    cams = read_json(path)
    if not isinstance(cams, dict):
        raise DataError(f"{path}: expected an object {{image id: {{cam_K: ...}}}}")
    for im, cam in cams.items():
        if not isinstance(cam, dict) or "cam_K" not in cam:
            raise DataError(f"{path}: {im}: expected an object with 'cam_K'")
        _numbers(cam["cam_K"], 9, f"{path}: {im}.cam_K")
    return cams


@dataclass(frozen=True)
class HandalView:
    """One annotated object instance in one image (object units after normalisation)."""

    scene: str
    image_id: int
    gt_index: int
    obj_id: int
    rgb: Path
    K: np.ndarray  # (3,3)
    R: np.ndarray  # (3,3) object -> camera
    t: np.ndarray  # (3,) object units
    mask_visib: Path
    part_mask: Path | None


def cast_points(mesh, K: np.ndarray, R: np.ndarray, t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 first surface hit of the ray of every ``mask`` pixel (nan elsewhere and
    where the ray misses the mesh); camera ``x_cam = R x + t``, pixel centres on integers."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    rr, cc = np.nonzero(mask)
    out = np.full((h, w, 3), np.nan, np.float32)
    if rr.size == 0:
        return out
    dirs = camera_directions(K, rr, cc) @ R  # R^T d, as row vectors
    origin = -R.T @ t
    locs, ray_idx, _ = mesh.ray.intersects_location(
        np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=False
    )
    out[rr[ray_idx], cc[ray_idx]] = locs.astype(np.float32)
    return out


class HandalDataset:
    """HANDAL (BOP layout) reader.

    Args:
        root: folder holding ``models/`` and the split folders.
        split: split folder name (e.g. "test", "train").
        part_dir: folder of functional-part masks inside each scene (None: no part masks).
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "test", part_dir: str | None = "mask_parts"
    ) -> None:
        self.root = Path(root)
        self.split_dir = self.root / split
        if not (self.root / "models").is_dir():
            raise DataError(f"{self.root / 'models'}: not found; {self.root} is not a BOP tree")
        if not self.split_dir.is_dir():
            raise DataError(f"{self.split_dir}: split folder not found")
        self.part_dir = part_dir
        self._models: dict[int, tuple[Any, np.ndarray, float]] = {}

    def scenes(self) -> list[Path]:
        """Scene folders of the split; a folder that looks like a scene (``rgb/``,
        ``mask_visib/``) without its ``scene_gt.json`` is an error, not skipped."""
        out = []
        for p in sorted(q for q in self.split_dir.iterdir() if q.is_dir()):
            if (p / "scene_gt.json").is_file():
                out.append(p)
            elif (p / "rgb").is_dir() or (p / "mask_visib").is_dir():
                raise DataError(f"{p / 'scene_gt.json'}: file not found (BOP scene folder)")
        if not out:
            raise DataError(f"{self.split_dir}: no scene folders with a scene_gt.json")
        return out

    def object_ids(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in (self.root / "models").glob("obj_*.ply"))

    def model(self, obj_id: int):
        """(mesh in normalised object units, centre c (3,) mm, scale s) of an object."""
        if obj_id not in self._models:
            path = self.root / "models" / f"obj_{obj_id:06d}.ply"
            if not path.is_file():
                raise DataError(f"{path}: model file not found for obj_id {obj_id}")
            try:
                mesh = trimesh.load(path, force="mesh", process=False)
            except Exception as exc:  # noqa: BLE001 -- trimesh raises anything on a broken file
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise DataError(
                    f"{path}: cannot read the mesh ({type(exc).__name__}: {reason})"
                ) from None
            if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
                raise DataError(f"{path}: no triangle mesh in the file")
            if not np.isfinite(mesh.vertices).all() or float(np.ptp(mesh.vertices)) <= 0:
                raise DataError(f"{path}: degenerate mesh (nan/inf or zero extent)")
            lo, hi = mesh.bounds
            c = (lo + hi) / 2.0
            s = 0.5 / float(np.abs(mesh.vertices - c).max())
            norm = trimesh.Trimesh((mesh.vertices - c) * s, mesh.faces, process=False)
            self._models[obj_id] = (norm, c, s)
        return self._models[obj_id]

    def views(self, obj_id: int, stride: int = 1, max_views: int | None = None) -> list[HandalView]:
        """Every annotated instance of ``obj_id`` (every ``stride``-th image per scene)."""
        _, c, s = self.model(obj_id)
        out: list[HandalView] = []
        for scene in self.scenes():
            gt = _scene_gt(scene / "scene_gt.json")
            cams = _scene_camera(scene / "scene_camera.json")
            for n, im in enumerate(sorted(gt, key=int)):
                if n % stride:
                    continue
                if im not in cams:
                    raise DataError(f"{scene / 'scene_camera.json'}: no camera for image {im}")
                for k, inst in enumerate(gt[im]):
                    if int(inst["obj_id"]) != obj_id:
                        continue
                    R = np.asarray(inst["cam_R_m2c"], np.float64).reshape(3, 3)
                    t = np.asarray(inst["cam_t_m2c"], np.float64).reshape(3)
                    K = np.asarray(cams[im]["cam_K"], np.float64).reshape(3, 3)
                    name = f"{int(im):06d}_{k:06d}.png"
                    rgb = next(
                        (
                            scene / "rgb" / f"{int(im):06d}{e}"
                            for e in (".jpg", ".png")
                            if (scene / "rgb" / f"{int(im):06d}{e}").is_file()
                        ),
                        None,
                    )
                    if rgb is None:
                        raise DataError(f"{scene / 'rgb'}: no image {int(im):06d}.jpg/.png")
                    visib = scene / "mask_visib" / name
                    if not visib.is_file():
                        raise DataError(f"{visib}: visible-mask file not found")
                    part = None
                    if self.part_dir is not None and (scene / self.part_dir / name).is_file():
                        part = scene / self.part_dir / name
                    out.append(
                        HandalView(
                            scene.name, int(im), k, obj_id, rgb, K, R, s * (R @ c + t), visib, part
                        )
                    )
                    if max_views is not None and len(out) >= max_views:
                        return out
        if not out:
            raise DataError(f"{self.split_dir}: no annotated instance of obj_id {obj_id}")
        return out

    def surface_points(self, view: HandalView) -> np.ndarray:
        """(H,W,3) visible surface point of every pixel of ``mask_visib`` (nan elsewhere), by ray
        casting the normalised mesh with the GT pose."""
        mesh, _, _ = self.model(view.obj_id)
        return cast_points(mesh, view.K, view.R, view.t, read_gray(view.mask_visib) > 0)

    def annotate_inputs(
        self,
        obj_id: int,
        views: list[HandalView] | None = None,
        cloud_points: int = 20000,
        seed: int = 0,
        size: int = CROP,
        tol: float = NN_TOL,
    ) -> dict[str, Any]:
        """Inputs of :func:`afford.geometry.curation.curate_pair` for one object.

        Returns dict: ``views`` (list of HandalView), ``points`` (V,S,S,3) surface points at the
        224 crops (nan = background), ``crop_box`` (V,3), ``mask`` (V,S,S), ``cloud`` (P,3),
        ``part`` (P,) bool (majority of the views seeing a sample put it in the part mask;
        all False without part masks), ``part_votes`` (P,) and ``seen`` (P,) view counts.
        """
        views = views if views is not None else self.views(obj_id)
        mesh, _, _ = self.model(obj_id)
        cloud = np.asarray(
            trimesh.sample.sample_surface(mesh, cloud_points, seed=seed)[0], np.float64
        )
        pts, boxes, masks = [], [], []
        votes = np.zeros(len(cloud), np.int64)
        seen = np.zeros(len(cloud), np.int64)
        for v in views:
            full = self.surface_points(v)
            vis = np.isfinite(full).all(-1)
            if not vis.any():
                raise DataError(f"{v.mask_visib}: the object is not visible in this view")
            idx = match_to_cloud(full, cloud, tol)
            hit = idx >= 0
            np.add.at(seen, idx[hit], 1)
            if v.part_mask is not None:
                part = read_gray(v.part_mask) > 0
                if part.shape != vis.shape:
                    raise DataError(f"{v.part_mask}: size {part.shape} differs from the mask")
                np.add.at(votes, idx[hit & part], 1)
            box = square_crop_box(vis)
            boxes.append(box)
            pts.append(crop_array(full, box, size, fill=np.nan))
            masks.append(crop_array(vis, box, size, fill=False))
        part = (seen > 0) & (2 * votes > seen)
        return {
            "views": views,
            "points": np.stack(pts),
            "crop_box": np.stack(boxes),
            "mask": np.stack(masks),
            "cloud": cloud.astype(np.float32),
            "part": part,
            "part_votes": votes,
            "seen": seen,
        }


# ---------------------------------------------------------------------------------------------
# conversion to the afford-correspondence format (``afford prepare handal``)

CONVERTER_VERSION = "1"
_OWNED = ("dataset.json", "eval_pairs.json", "assets", "eval")


@dataclass
class HandalConvertConfig:
    """Options of :func:`write_handal_dataset` (CLI: ``afford prepare handal``)."""

    split: str = "test"  # BOP split folder read
    categories: list[str] | None = None  # one per root (default: from the folder names)
    objects: list[int] | None = None  # object ids (default: every model)
    function: str = "grasp"  # the function the part masks show
    part: str = "handle"  # the part name of the part masks
    part_dir: str | None = "mask_parts"
    stride: int = 1
    max_views: int = 24
    cloud_points: int = 20000
    neighbours: int = 4  # multi-view pairs: each view with its nearest views
    corr_per_pair: int = 256
    labeler: str | None = None  # --labeler spec for pseudo-labels (None: none)
    samples: int = 4
    device: str = "cpu"
    seed: int = 0


def category_name(root: Path) -> str:
    """A category name from a HANDAL folder name (``handal_dataset_mugs`` -> ``mugs``)."""
    name = root.resolve().name.lower()
    for prefix in ("handal_dataset_", "handal_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = re.sub(r"[^a-z0-9-]+", "_", name).strip("_")
    return name or "object"


def _prepare_out(out: Path, overwrite: bool) -> Path:
    out = output_dir(out, overwrite=overwrite, markers=("dataset.json",))
    if overwrite:
        remove_entries(out, _OWNED)
    return out


def _convert_object(
    ds: HandalDataset,
    obj_id: int,
    aid: str,
    category: str,
    cfg: HandalConvertConfig,
    out: Path,
    labelers: Any,
) -> dict[str, Any]:
    """Write one HANDAL object as an afford asset; returns its manifest record."""
    views = ds.views(obj_id, stride=cfg.stride, max_views=cfg.max_views)
    mesh, centre, scale = ds.model(obj_id)
    cloud = np.asarray(
        trimesh.sample.sample_surface(mesh, cfg.cloud_points, seed=cfg.seed + obj_id)[0],
        np.float64,
    )
    has_parts = cfg.part_dir is not None and all(v.part_mask is not None for v in views)
    Ks, masks, depths, points, part_masks, rgbs = [], [], [], [], [], []
    for n, v in enumerate(views):
        vis = read_gray(v.mask_visib) > 0
        if not vis.any():
            raise DataError(f"{v.mask_visib}: the object is not visible in this view")
        box = square_crop_box(vis)
        K = crop_intrinsics(v.K, box, CROP)
        m = crop_array(vis, box, CROP, fill=False)
        pts = cast_points(mesh, K, v.R, v.t, m)
        m &= np.isfinite(pts).all(-1)
        cam_z = np.einsum("hwk,k->hw", np.nan_to_num(pts), v.R[2]) + v.t[2]
        depths.append(np.where(m, cam_z, np.inf).astype(np.float32))
        Ks.append(K)
        masks.append(m)
        points.append(pts)
        rel = f"assets/{aid}/rgb/{n:02d}.png"
        write_image(out / rel, crop_image(read_image(v.rgb), box, CROP))
        rgbs.append(rel)
        if has_parts:
            part = read_gray(v.part_mask) > 0
            if part.shape != vis.shape:
                raise DataError(f"{v.part_mask}: size {part.shape} differs from the mask")
            part_masks.append(crop_array(part, box, CROP, fill=False) & m)
    K = np.stack(Ks)
    R = np.stack([v.R for v in views])
    t = np.stack([v.t for v in views])
    mask = np.stack(masks)
    depth = np.stack(depths)
    pts = np.stack(points)
    n_views = len(views)

    index = match_to_cloud(pts, cloud)  # (V, S, S), -1 = none
    seen = np.zeros(len(cloud), np.int64)
    hit = index >= 0
    np.add.at(seen, index[hit], 1)
    surface_part = np.full(len(cloud), -1, np.int16)
    arrays: dict[str, np.ndarray] = {}
    if has_parts:
        gt = np.stack(part_masks)  # (V, S, S)
        votes = np.zeros(len(cloud), np.int64)
        np.add.at(votes, index[hit & gt], 1)
        surface_part[seen > 0] = (2 * votes[seen > 0] > seen[seen > 0]).astype(np.int16)
        arrays["part_id"] = np.where(mask, gt.astype(np.int16), np.int16(-1))
        arrays["gt_mask"] = gt[:, None]
        parts = ["body", cfg.part]
    else:
        surface_part[seen > 0] = 0
        parts = []

    S = cfg.samples
    boxes = np.full((n_views, 1, S, 4), np.nan, np.float32)
    pseudo_mask = np.zeros((n_views, 1, CROP, CROP), bool)
    pseudo_valid = np.zeros((n_views, 1), bool)
    if labelers is not None:
        label = labelers.for_asset(
            aid, category, arrays.get("part_id"), parts if has_parts else None
        )
        query = PartQuery(category, cfg.function, cfg.part)
        for n in range(n_views):
            boxes[n, 0] = label(read_image(out / rgbs[n]), query, n)
        res = pseudo_label_masks(
            cloud, pts, mask, K, R, t, boxes[:, 0], cloud_index=np.where(mask, index, -1)
        )
        pseudo_mask[:, 0], pseudo_valid[:, 0] = res.mask, res.valid

    # multi-view correspondences (spatial loss), a seeded subsample per view pair
    centres = -np.einsum("vji,vj->vi", R, t)  # camera centres -R^T t (object frame)
    pairs = (
        neighbour_view_pairs(centres, cfg.neighbours) if n_views > 1 else np.zeros((0, 2), np.int32)
    )

    def pick(p: int, i: int, src: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([cfg.seed, obj_id, p])
        return np.sort(rng.choice(len(src), cfg.corr_per_pair, replace=False))

    mv = pair_correspondences(
        pairs, pts, K, R, t, depth, mask, cfg.corr_per_pair, pick,
        part_id=arrays["part_id"] if has_parts else None,
    )  # fmt: skip

    view_arrays = dict(
        K=K, R=R, t=t, mask=mask, pseudo_mask=pseudo_mask, pseudo_valid=pseudo_valid,
        boxes=boxes, crop_box=np.tile(np.array([0, 0, CROP], np.int32), (n_views, 1)), **arrays,
    )  # fmt: skip
    geometry = dict(depth=depth, surface_points=cloud.astype(np.float32), surface_part=surface_part)
    files = write_asset_arrays(out / "assets" / aid, aid, view_arrays, geometry, pairs, mv)
    record = {
        "category": category,
        "split": "test",
        "n_views": n_views,
        "image_size": [CROP, CROP],
        "rgb": rgbs,
        **files,
        "functions": [cfg.function],
        "function_parts": {cfg.function: [cfg.part]},
        # x_normalised = scale * (x_model - center), model units (BOP: mm)
        "normalization": {"center": np.asarray(centre).tolist(), "scale": float(scale)},
        "source": {
            "root": str(ds.root),
            "obj_id": obj_id,
            "images": [f"{v.scene}/{v.image_id:06d}/{v.gt_index}" for v in views],
        },
    }
    if parts:
        record["parts"] = parts
    return record


def write_handal_dataset(
    roots: list[str | os.PathLike],
    out: str | os.PathLike,
    cfg: HandalConvertConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    taxonomy: Any = None,
) -> dict[str, Any]:
    """Convert HANDAL object folders (BOP layout) into an afford-correspondence dataset.

    Every annotated instance becomes a view: the 224 crop (1.2 x the longer side of the visible
    mask) as the view image, its camera re-framed to the crop, the visible mask, z-depth and
    surface points by ray casting the normalised CAD model, the part mask (function
    ``cfg.function``, part ``cfg.part``) as GT; surface samples get the part by majority vote of
    the views that see them. All assets are in the ``test`` split; evaluation pairs come from
    an alignments file (:func:`afford.prepare.evalpairs.write_eval_pairs`). Pseudo-labels only
    with ``cfg.labeler`` (all invalid otherwise; ``taxonomy`` gives detector prompts their part
    descriptions). Returns the manifest.
    """
    cfg = cfg or HandalConvertConfig()
    roots = [Path(r) for r in roots]
    if cfg.categories is not None and len(cfg.categories) != len(roots):
        raise UsageError(
            f"--category: {len(cfg.categories)} names for {len(roots)} folders; give one per ROOT"
        )
    if cfg.stride < 1 or cfg.max_views < 1 or cfg.cloud_points < 100:
        raise UsageError("--stride and --max-views must be >= 1, --cloud-points >= 100")
    datasets = [HandalDataset(r, cfg.split, cfg.part_dir) for r in roots]
    cats = cfg.categories or [category_name(r) for r in roots]
    jobs = []
    for ds, cat in zip(datasets, cats):
        if not re.fullmatch(r"[a-z0-9_-]+", cat):
            raise UsageError(f"--category {cat!r}: use lower-case letters, digits, '_' or '-'")
        ids = ds.object_ids() if cfg.objects is None else list(cfg.objects)
        missing = [i for i in ids if i not in ds.object_ids()]
        if missing:
            raise UsageError(f"--objects: no models {missing} in {ds.root / 'models'}")
        jobs += [(ds, i, f"{cat}_{i:06d}", cat) for i in ids]
    if not jobs:
        raise DataError(f"{roots}: no object models found")
    dup = sorted({a for _, _, a, _ in jobs if [j[2] for j in jobs].count(a) > 1})
    if dup:
        raise UsageError(f"asset ids {dup} appear twice: give the folders distinct --category")
    labelers = None
    if cfg.labeler:
        from afford.prepare.labelers import open_labeler

        labelers = open_labeler(cfg.labeler, taxonomy, device=cfg.device, samples=cfg.samples)
    root = _prepare_out(Path(out), overwrite)
    records = {}
    for ds, obj_id, aid, cat in tqdm(jobs, desc="HANDAL objects", disable=not progress):
        records[aid] = _convert_object(ds, obj_id, aid, cat, cfg, root, labelers)
    n_views = sum(r["n_views"] for r in records.values())
    manifest = {
        "format": "afford-correspondence",
        "format_version": 1,
        "generator": {
            "name": "afford.prepare.handal",
            "version": CONVERTER_VERSION,
            "afford": __version__,
            "options": {k: v for k, v in asdict(cfg).items() if k != "device"},
        },
        "source": "handal",
        "crop": {"scale": 1.2, "size": CROP},
        "categories": sorted(set(cats)),
        "functions": [cfg.function],
        "splits": {"train": [], "val": [], "test": sorted(records)},
        "eval_pairs": "eval_pairs.json",
        "pseudo_labels": {
            "labeler": labelers.name if labelers is not None else None,
            "samples_per_view": cfg.samples,
        },
        "counts": {
            "assets": len(records),
            "views": n_views,
            "train_assets": 0,
            "eval_pairs": {"val": 0, "test": 0},
            "eval_pairs_failed": [],
        },
        "assets": records,
    }
    write_json(root / "eval_pairs.json", eval_index([]))
    write_json(root / "dataset.json", manifest)
    return manifest

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from afford.data.crops import crop_array, square_crop_box
from afford.data.io import read_gray, read_json
from afford.errors import AffordError
from afford.geometry.camera import camera_directions
from afford.geometry.visible import NN_TOL, match_to_cloud

CROP = 224


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
            raise AffordError(f"{self.root / 'models'}: not found; {self.root} is not a BOP tree")
        if not self.split_dir.is_dir():
            raise AffordError(f"{self.split_dir}: split folder not found")
        self.part_dir = part_dir
        self._models: dict[int, tuple[Any, np.ndarray, float]] = {}

    def scenes(self) -> list[Path]:
        return sorted(p for p in self.split_dir.iterdir() if (p / "scene_gt.json").is_file())

    def object_ids(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in (self.root / "models").glob("obj_*.ply"))

    def model(self, obj_id: int):
        """(mesh in normalised object units, centre c (3,) mm, scale s) of an object."""
        if obj_id not in self._models:
            path = self.root / "models" / f"obj_{obj_id:06d}.ply"
            if not path.is_file():
                raise AffordError(f"{path}: model file not found for obj_id {obj_id}")
            mesh = trimesh.load(path, force="mesh", process=False)
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
            gt = read_json(scene / "scene_gt.json")
            cams = read_json(scene / "scene_camera.json")
            for n, im in enumerate(sorted(gt, key=int)):
                if n % stride:
                    continue
                if im not in cams:
                    raise AffordError(f"{scene / 'scene_camera.json'}: no camera for image {im}")
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
                        raise AffordError(f"{scene / 'rgb'}: no image {int(im):06d}.jpg/.png")
                    visib = scene / "mask_visib" / name
                    if not visib.is_file():
                        raise AffordError(f"{visib}: visible-mask file not found")
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
            raise AffordError(f"{self.split_dir}: no annotated instance of obj_id {obj_id}")
        return out

    def surface_points(self, view: HandalView) -> np.ndarray:
        """(H,W,3) visible surface point of every pixel of ``mask_visib`` (nan elsewhere), by ray
        casting the normalised mesh with the GT pose."""
        mesh, _, _ = self.model(view.obj_id)
        mask = read_gray(view.mask_visib) > 0
        h, w = mask.shape
        rr, cc = np.nonzero(mask)
        out = np.full((h, w, 3), np.nan, np.float32)
        if rr.size == 0:
            return out
        dirs = camera_directions(view.K, rr, cc) @ view.R  # R^T d, as row vectors
        origin = -view.R.T @ view.t
        locs, ray_idx, _ = mesh.ray.intersects_location(
            np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=False
        )
        out[rr[ray_idx], cc[ray_idx]] = locs.astype(np.float32)
        return out

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
                raise AffordError(f"{v.mask_visib}: the object is not visible in this view")
            idx = match_to_cloud(full, cloud, tol)
            hit = idx >= 0
            np.add.at(seen, idx[hit], 1)
            if v.part_mask is not None:
                part = read_gray(v.part_mask) > 0
                if part.shape != vis.shape:
                    raise AffordError(f"{v.part_mask}: size {part.shape} differs from the mask")
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

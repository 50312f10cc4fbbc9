"""A tiny HANDAL-style BOP folder written by the tests: two objects (the second is the first
rotated by 90 degrees about z), RGB, masks, part masks (x > 30 mm in object 1's frame), poses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from afford.data.io import write_image

K = np.array([[220.0, 0, 64], [0, 220.0, 48], [0, 0, 1]])
H, W = 96, 128
RZ = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # object 2 = RZ @ object 1
POSES = [(0.5, 0.3), (-0.4, 0.5), (0.2, -0.6)]


def rot(ay: float, ax: float) -> np.ndarray:
    cy, sy, cx, sx = np.cos(ay), np.sin(ay), np.cos(ax), np.sin(ax)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rx @ ry


def cast(mesh, R, t):
    rr, cc = np.mgrid[0:H, 0:W]
    pix = np.stack([cc.ravel(), rr.ravel(), np.ones(H * W)], 1)
    dirs = (np.linalg.inv(K) @ pix.T).T @ R
    origin = -R.T @ t
    loc, ray, _ = mesh.ray.intersects_location(
        np.repeat(origin[None], len(dirs), 0), dirs, multiple_hits=False
    )
    out = np.full((H * W, 3), np.nan)
    out[ray] = loc
    return out.reshape(H, W, 3)


def write_tiny_bop(root: Path) -> Path:
    mesh1 = trimesh.creation.box(extents=(100, 60, 40)).subdivide().subdivide()
    mesh1.apply_translation([10, 5, 0])  # mm, off-centre on purpose
    mesh2 = trimesh.Trimesh(mesh1.vertices @ RZ.T, mesh1.faces, process=False)
    (root / "models").mkdir(parents=True)
    for obj_id, mesh, to_1 in ((1, mesh1, np.eye(3)), (2, mesh2, RZ.T)):
        mesh.export(root / f"models/obj_{obj_id:06d}.ply")
        scene = root / f"test/{obj_id:06d}"
        gt, cams = {}, {}
        for im, (ay, ax) in enumerate(POSES):
            R, t = rot(ay, ax), np.array([0.0, 0.0, 420.0])
            pts = cast(mesh, R, t)
            vis = np.isfinite(pts).all(-1)
            shade = (80 + 150 * vis * ((np.arange(W)[None] // 8) % 2)).astype(np.uint8)
            write_image(scene / f"rgb/{im:06d}.png", np.repeat(shade[..., None], 3, 2))
            write_image(scene / f"mask/{im:06d}_000000.png", vis.astype(np.uint8) * 255)
            write_image(scene / f"mask_visib/{im:06d}_000000.png", vis.astype(np.uint8) * 255)
            x1 = np.nan_to_num(pts, nan=-1e9) @ to_1.T  # the point in object 1's frame
            part = vis & (x1[..., 0] > 30)
            write_image(scene / f"mask_parts/{im:06d}_000000.png", part.astype(np.uint8) * 255)
            gt[str(im)] = [
                {"cam_R_m2c": R.ravel().tolist(), "cam_t_m2c": t.tolist(), "obj_id": obj_id}
            ]
            cams[str(im)] = {"cam_K": K.ravel().tolist(), "depth_scale": 1.0}
        (scene / "scene_gt.json").write_text(json.dumps(gt))
        (scene / "scene_camera.json").write_text(json.dumps(cams))
    return root

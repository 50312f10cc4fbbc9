"""Renderer: exact geometry (reprojection, depth), masks, occluders, cameras."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from trimesh.ray.ray_triangle import RayMeshIntersector as PyIntersector

from afford.errors import AffordError
from afford.geometry.camera import Camera, look_at, sphere_cameras
from afford.synth.assets import make_asset
from afford.synth.render import Scene, SceneMesh, make_background, render


def test_look_at_opencv_convention():
    cam = look_at([3.0, 0, 0], [0, 0, 0], up=[0, 0, 1], fov_deg=90, width=11, height=11)
    # camera looks along -x world; image right = -y world... check by projection
    uv, z = cam.project(np.array([[0.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]]))
    assert np.allclose(uv[0], [5, 5]) and np.isclose(z[0], 3.0)
    assert uv[1, 0] < 5 and np.isclose(uv[1, 1], 5)  # -y world is to the left from +x
    assert uv[2, 1] < 5  # world up is image up (smaller row)
    # focal length from the horizontal fov: f = (W/2) / tan(45 deg)
    assert np.isclose(cam.K[0, 0], 5.5)
    assert np.allclose(cam.R @ cam.R.T, np.eye(3)) and np.isclose(np.linalg.det(cam.R), 1)
    assert np.allclose(cam.center, [3, 0, 0])
    cam2 = Camera.from_dict(cam.to_dict())
    assert np.allclose(cam2.K, cam.K) and np.allclose(cam2.t, cam.t)


def test_sphere_cameras_deterministic_and_distinct():
    a, b = sphere_cameras(19), sphere_cameras(19)
    assert len(a) == 19
    centres = np.array([c.center for c in a])
    assert np.allclose(centres, [c.center for c in b])
    assert np.allclose(np.linalg.norm(centres, axis=1), 2.2)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(19) * 9
    assert d.min() > 0.3
    # every camera looks at the origin: it projects to the principal point
    for c in a:
        uv, z = c.project(np.zeros((1, 3)))
        assert np.allclose(uv[0], [(c.width - 1) / 2, (c.height - 1) / 2]) and z[0] > 0


@pytest.mark.parametrize("category", ["mug", "knife", "scissors"])
def test_points_reproject_and_depth(category):
    asset = make_asset(category, 0)
    cam = sphere_cameras(19, width=96, height=80)[4]
    v = render(asset, cam, background="noise", rng=1)
    assert v.rgb.shape == (80, 96, 3) and v.rgb.dtype == np.uint8
    assert v.mask.sum() > 40
    assert np.array_equal(v.mask, v.part_id >= 0)
    assert np.array_equal(v.mask, v.face_id >= 0)
    assert np.array_equal(v.mask, np.isfinite(v.points).all(-1))
    rows, cols = np.nonzero(v.mask)
    uv, z = cam.project(v.points[rows, cols].astype(np.float64))
    assert np.abs(uv[:, 0] - cols).max() < 0.5 and np.abs(uv[:, 1] - rows).max() < 0.5
    assert np.allclose(z, v.depth[rows, cols], atol=1e-4)
    assert np.isinf(v.depth[~v.mask]).all()
    # the part id is the label of the face hit
    assert np.array_equal(v.part_id[rows, cols], asset.face_part[v.face_id[rows, cols]])
    # surface points lie on the hit face (distance to that triangle's plane ~ 0)
    tri = asset.mesh.triangles[v.face_id[rows, cols]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    dist = np.abs(np.einsum("nc,nc->n", v.points[rows, cols] - tri[:, 0], n))
    assert dist.max() < 1e-5


def test_depth_matches_independent_ray_tracer():
    asset = make_asset("kettle", 2)
    cam = sphere_cameras(5, width=24, height=24)[1]
    v = render(asset, cam)
    origin, dirs = cam.pixel_rays()
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    locs, idx_ray, _ = PyIntersector(asset.mesh).intersects_location(
        np.broadcast_to(origin, unit.shape), unit, multiple_hits=True
    )
    ref = np.full(len(unit), np.inf)
    zc = cam.to_camera(locs)[:, 2]
    np.minimum.at(ref, idx_ray, zc)
    ref = ref.reshape(24, 24)
    hit = np.isfinite(ref)
    assert np.array_equal(hit, v.mask)
    assert np.allclose(ref[hit], v.depth[hit], atol=1e-4)


def test_pose_keeps_points_in_object_frame():
    asset = make_asset("hammer", 1)
    pose = trimesh.transformations.rotation_matrix(0.7, [0, 1, 1])
    pose[:3, 3] = [0.1, -0.2, 0.05]
    cam = look_at([0, -2.5, 0.5], width=40, height=40)
    v = render(asset, cam, pose=pose)
    rows, cols = np.nonzero(v.mask)
    world = trimesh.transform_points(v.points[rows, cols].astype(np.float64), pose)
    uv, _ = cam.project(world)
    assert np.abs(uv[:, 0] - cols).max() < 0.5 and np.abs(uv[:, 1] - rows).max() < 0.5
    uv2, _ = v.object_camera().project(v.points[rows, cols].astype(np.float64))
    assert np.allclose(uv, uv2, atol=1e-6)


def test_occluder_never_in_mask():
    asset = make_asset("mug", 0)
    cam = look_at([2.2, 0, 0.3], width=48, height=48)
    alone = render(asset, cam)
    # a box between camera and object, covering the left half of the view
    box = trimesh.creation.box(extents=[0.05, 0.6, 1.5])
    box.apply_translation([1.0, 0.3, 0.0])
    occ = SceneMesh(box, color=np.array([0.9, 0.7, 0.6]))
    v = render(asset, cam, extras=[occ])
    box_only = Scene(box).render(cam)
    in_front = box_only.mask & (box_only.depth < alone.depth)
    assert in_front.sum() > 20 and (alone.mask & in_front).sum() > 10
    assert np.array_equal(v.mask, alone.mask & ~in_front)
    assert np.array_equal(v.extra_id == 0, box_only.mask & (box_only.depth <= alone.depth))
    assert (v.part_id[in_front] == -1).all() and np.isnan(v.points[in_front]).all()
    # object pixels that are not occluded keep their exact data
    keep = v.mask
    assert np.array_equal(v.face_id[keep], alone.face_id[keep])


def test_shading_and_backgrounds():
    asset = make_asset("bottle", 0)
    cam = sphere_cameras(3, width=32, height=32)[0]
    a = render(asset, cam, background="solid", rng=3)
    b = render(asset, cam, background="solid", rng=3)
    c = render(asset, cam, background="solid", rng=4)
    assert np.array_equal(a.rgb, b.rgb) and not np.array_equal(a.rgb, c.rgb)
    bg = a.rgb[~a.mask]
    assert (bg == bg[0]).all()  # solid background
    img = np.full((32, 32, 3), 7, np.uint8)
    d = render(asset, cam, background=img)
    assert (d.rgb[~d.mask] == 7).all() and d.rgb[d.mask].std() > 0
    for kind in ("gradient", "noise", "clutter"):
        bgk = make_background(kind, 20, 30, np.random.default_rng(0))
        assert bgk.shape == (20, 30, 3) and bgk.min() >= 0 and bgk.max() <= 1 and bgk.std() > 0
    with pytest.raises(AffordError):
        make_background("stars", 4, 4, np.random.default_rng(0))

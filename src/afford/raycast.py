"""Exact CPU ray caster shared by the worlds: one embree ray per pixel, one batch per view.

Cameras are :class:`afford.geometry.camera.Camera` (OpenCV convention, pixel centres at
integer coordinates: the ray of pixel ``[row, col]`` goes through ``(u, v) = (col, row)``, so
``round(camera.project(points)[0])`` gives the pixel index of a point).

Per view :class:`Scene` returns RGB (Lambert + Blinn-Phong shading with a directional light;
the object's albedo from a *material*: any callable ``(faces, points, bary) -> (n, 3)``, e.g.
the synthetic world's procedural part textures or a real asset's UV-mapped base-colour
texture), z-depth, the object mask, part ids, face ids and the object-frame surface point of
every pixel.  Extra meshes (an actor's arm and hand, clutter) occlude the object but never
enter ``mask`` / ``part_id`` / ``points``; their pixels are reported in ``extra_id``.

Depth and surface points are computed in float64 from the exact ray-plane intersection of
the triangle embree reports, so re-projecting ``points`` lands on the pixel centre to
~1e-9 px.  Used by :mod:`afford.synth.render` (procedural assets) and
:mod:`afford.prepare.render` (real meshes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import trimesh
from trimesh.ray.ray_triangle import RayMeshIntersector as TriangleIntersector

from afford.errors import AffordError
from afford.geometry.camera import Camera, camera_directions

__all__ = [
    "Light",
    "random_light",
    "SceneMesh",
    "Scene",
    "View",
    "Material",
    "make_background",
    "barycentric",
    "corner_normals",
    "BACKGROUNDS",
]

#: ``material(faces (n,), points (n,3) object frame, bary (n,3)) -> (n,3)`` albedo in [0,1].
Material = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

BACKGROUNDS = ("solid", "gradient", "noise", "clutter")


# --------------------------------------------------------------------------------------
# lights and backgrounds


@dataclass
class Light:
    """Directional light in camera coordinates.

    Attributes:
        direction: (3,) unit vector from the surface towards the light, camera frame
            (z forward, so a light behind the camera has negative z).
        ambient, diffuse, specular: intensities.
        color: (3,) light colour.
    """

    direction: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.5, -0.8]))
    ambient: float = 0.35
    diffuse: float = 0.75
    specular: float = 0.6
    color: np.ndarray = field(default_factory=lambda: np.ones(3))

    def __post_init__(self):
        d = np.asarray(self.direction, dtype=np.float64)
        self.direction = d / np.linalg.norm(d)
        self.color = np.asarray(self.color, dtype=np.float64)


def random_light(rng: np.random.Generator) -> Light:
    """A random light from the camera-facing hemisphere with random intensities and tint."""
    d = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.4), -rng.uniform(0.5, 1.2)])
    return Light(
        direction=d,
        ambient=float(rng.uniform(0.25, 0.45)),
        diffuse=float(rng.uniform(0.6, 0.9)),
        specular=float(rng.uniform(0.3, 0.8)),
        color=1.0 + rng.uniform(-0.08, 0.08, 3),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random field in [0,1], shape (h,w)."""
    g = rng.uniform(0, 1, (cells + 1, cells + 1))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def make_background(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A background image (H,W,3) float in [0,1].

    kind: "solid" (one random colour), "gradient" (two colours, random direction), "noise"
    (smooth random colour field plus pixel noise) or "clutter" (gradient plus random
    rectangles and ellipses).
    """
    if kind not in BACKGROUNDS:
        raise AffordError(f"unknown background {kind!r}; choose one of {BACKGROUNDS}")
    c0 = rng.uniform(0.1, 0.95, 3)
    if kind == "solid":
        return np.broadcast_to(c0, (height, width, 3)).copy()
    rows, cols = np.mgrid[0:height, 0:width]
    a = rng.uniform(0, 2 * np.pi)
    proj = np.cos(a) * cols / max(width - 1, 1) + np.sin(a) * rows / max(height - 1, 1)
    proj = (proj - proj.min()) / max(np.ptp(proj), 1e-9)
    c1 = rng.uniform(0.1, 0.95, 3)
    img = c0 * (1 - proj[..., None]) + c1 * proj[..., None]
    if kind == "gradient":
        return img
    if kind == "noise":
        field_ = np.stack([_smooth_noise(rng, height, width, 6) for _ in range(3)], -1)
        img = 0.5 * img + 0.5 * field_
        return np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    # clutter: random axis-aligned rectangles and ellipses
    for _ in range(int(rng.integers(4, 10))):
        col = rng.uniform(0.05, 0.95, 3)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
        if rng.uniform() < 0.5:
            sel = (np.abs(rows - cy) < ry) & (np.abs(cols - cx) < rx)
        else:
            sel = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1
        img[sel] = col
    return img


# --------------------------------------------------------------------------------------
# scenes


@dataclass
class SceneMesh:
    """An extra mesh in world coordinates (actor, clutter): occludes, never in the mask.

    Attributes:
        mesh: trimesh in world coordinates.
        color: (3,) albedo in [0,1] or (F,3) per-face albedo.
        specular, shininess: Blinn-Phong parameters.
        name: free label.
    """

    mesh: trimesh.Trimesh
    color: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.6, 0.5]))
    specular: float = 0.1
    shininess: float = 10.0
    name: str = "extra"


@dataclass
class View:
    """One rendered view (H = camera.height, W = camera.width).

    Attributes:
        rgb: (H,W,3) uint8.
        depth: (H,W) float32 camera z of the first hit (object or extra); inf = background.
        mask: (H,W) bool, object visible (not occluded by extras).
        part_id: (H,W) int16 part index, -1 where not object.
        face_id: (H,W) int32 object face index, -1 where not object.
        points: (H,W,3) float32 object-frame surface point, nan where not object.
        extra_id: (H,W) int16 index of the visible extra mesh, -1 elsewhere.
        camera: the Camera (world frame; the object frame when the pose is identity).
        pose: (4,4) world-from-object transform used.
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    part_id: np.ndarray
    face_id: np.ndarray
    points: np.ndarray
    extra_id: np.ndarray
    camera: Camera
    pose: np.ndarray

    def object_camera(self) -> Camera:
        """The camera expressed in the object frame (projects ``points`` directly)."""
        E = self.camera.extrinsic @ self.pose
        return Camera(self.camera.K, E[:3, :3], E[:3, 3], self.camera.width, self.camera.height)


class Scene:
    """A mesh with a pose, a material and extra occluding meshes; ray-cast many views.

    The ray-casting acceleration structure is built once; render many views with
    :meth:`render`.

    Args:
        mesh: the object, a ``trimesh.Trimesh`` in its own (object) frame.
        pose: (4,4) world-from-object transform (default identity).
        extras: extra meshes (:class:`SceneMesh`) in world coordinates.
        material: albedo callable (see :data:`Material`); default the constant ``color``.
        color: (3,) albedo when there is no material.
        face_part: (F,) int part index of every object face (default 0).
        face_specular, face_shininess: (F,) Blinn-Phong parameters (default 0.2, 20).
        shading_normals: (F,3,3) object-frame normal per face corner (default
            :func:`corner_normals` of the mesh).
        cull: cast only the rays of the pixel window spanned by the projected vertices (exact
            when every vertex is in front of the camera, else all rays are cast; faster when
            the scene covers part of the view).
    """

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        pose: np.ndarray | None = None,
        extras=(),
        *,
        material: Material | None = None,
        color=(0.7, 0.7, 0.7),
        face_part: np.ndarray | None = None,
        face_specular: np.ndarray | None = None,
        face_shininess: np.ndarray | None = None,
        shading_normals: np.ndarray | None = None,
        cull: bool = False,
    ):
        if not isinstance(mesh, trimesh.Trimesh):
            raise AffordError(f"Scene: expected a trimesh.Trimesh, got {type(mesh).__name__}")
        self.pose = np.eye(4) if pose is None else np.asarray(pose, dtype=np.float64)
        self.pose_inv = np.linalg.inv(self.pose)
        self.n_obj = len(mesh.faces)
        self.face_part = (
            np.zeros(self.n_obj, dtype=np.int64) if face_part is None else np.asarray(face_part)
        )
        self.material = material
        self.color = np.asarray(color, dtype=np.float64)
        self.extras = list(extras)
        verts = [trimesh.transform_points(mesh.vertices, self.pose)]
        faces = [np.asarray(mesh.faces)]
        off = len(mesh.vertices)
        extra_of_face = [np.full(self.n_obj, -1, dtype=np.int64)]
        face_albedo = [np.zeros((self.n_obj, 3))]
        face_spec = [np.zeros(self.n_obj)]
        face_shin = [np.ones(self.n_obj)]
        for k, e in enumerate(self.extras):
            if not isinstance(e, SceneMesh):
                raise AffordError(f"Scene: extras[{k}] must be a SceneMesh")
            nf = len(e.mesh.faces)
            verts.append(np.asarray(e.mesh.vertices, dtype=np.float64))
            faces.append(np.asarray(e.mesh.faces) + off)
            off += len(e.mesh.vertices)
            extra_of_face.append(np.full(nf, k, dtype=np.int64))
            face_albedo.append(np.broadcast_to(np.asarray(e.color, dtype=np.float64), (nf, 3)))
            face_spec.append(np.full(nf, e.specular))
            face_shin.append(np.full(nf, e.shininess))
        self.mesh = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)
        self.extra_of_face = np.concatenate(extra_of_face)
        self.face_albedo = np.concatenate(face_albedo)
        self.face_spec = np.concatenate(face_spec)
        self.face_shin = np.concatenate(face_shin)
        self.face_spec[: self.n_obj] = 0.2 if face_specular is None else face_specular
        self.face_shin[: self.n_obj] = 20.0 if face_shininess is None else face_shininess
        tri = self.mesh.triangles
        self.v0 = tri[:, 0]
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        self.e1, self.e2 = e1, e2
        n = np.cross(e1, e2)
        self.face_normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
        # shading normals per face corner: the object's split at sharp edges, extras use
        # their own vertex normals
        obj_vn = corner_normals(mesh) if shading_normals is None else shading_normals
        if self.extras:
            vn = np.asarray(self.mesh.vertex_normals)[self.mesh.faces]  # (F,3,3)
            vn[: self.n_obj] = obj_vn @ self.pose[:3, :3].T
        else:
            vn = obj_vn @ self.pose[:3, :3].T
        cosang = np.einsum("fkc,fc->fk", vn, self.face_normals)
        self.smooth = np.all(cosang > np.cos(np.deg2rad(35.0)), axis=1)
        self.face_vn = vn
        self.cull = bool(cull)
        self._cull_points = np.asarray(self.mesh.vertices) if self.cull else None
        self._intersector = _make_intersector(self.mesh)

    def _window(self, camera: Camera) -> np.ndarray | None:
        """Flat indices of the pixels inside the bounding box of the projected vertices (None:
        all). A triangle in front of the camera projects inside its vertices' bounding box."""
        uv, z = camera.project(self._cull_points)
        if (z <= 1e-9).any():
            return None
        W, H = camera.width, camera.height
        c0 = int(max(0, np.floor(uv[:, 0].min()) - 1))
        c1 = int(min(W, np.ceil(uv[:, 0].max()) + 2))
        r0 = int(max(0, np.floor(uv[:, 1].min()) - 1))
        r1 = int(min(H, np.ceil(uv[:, 1].max()) + 2))
        if c0 >= c1 or r0 >= r1:
            return np.zeros(0, dtype=np.int64)
        rows, cols = np.mgrid[r0:r1, c0:c1]
        return (rows * W + cols).ravel()

    def cast(self, camera: Camera) -> dict[str, np.ndarray]:
        """Ray-cast every pixel. Returns flat arrays: tri (N,), depth (N,), world (N,3),
        dirs (N,3) (camera-z normalised directions), hit (N,)."""
        window = self._window(camera) if self.cull else None
        if window is None:
            origin, dirs = camera.pixel_rays()
            unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
            origins = np.broadcast_to(origin, dirs.shape)
            tri = np.asarray(self._intersector.intersects_first(origins, unit), dtype=np.int64)
        else:  # only the rays that can hit; the others are misses (dirs left 0)
            origin, W = camera.center, camera.width
            dirs = np.zeros((camera.width * camera.height, 3))
            tri = np.full(len(dirs), -1, dtype=np.int64)
            if len(window):
                d = camera_directions(camera.K, window // W, window % W) @ camera.R
                dirs[window] = d
                unit = d / np.linalg.norm(d, axis=1, keepdims=True)
                origins = np.broadcast_to(origin, d.shape)
                tri[window] = self._intersector.intersects_first(origins, unit)
        hit = tri >= 0
        ti = tri[hit]
        n = self.face_normals[ti]
        denom = np.einsum("nc,nc->n", n, dirs[hit])
        num = np.einsum("nc,nc->n", n, self.v0[ti] - origin)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = num / denom
        bad = ~np.isfinite(s) | (s <= 0)
        if bad.any():  # grazing rays: fall back to a miss
            hit_idx = np.flatnonzero(hit)
            tri[hit_idx[bad]] = -1
            hit = tri >= 0
            s, ti = s[~bad], ti[~bad]
        depth = np.full(len(tri), np.inf)
        depth[hit] = s
        world = np.full((len(tri), 3), np.nan)
        world[hit] = origin + s[:, None] * dirs[hit]
        return {"tri": tri, "depth": depth, "world": world, "dirs": dirs, "hit": hit}

    def render(
        self,
        camera: Camera,
        background: str | np.ndarray = "solid",
        light: Light | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> View:
        """Render one view (see :class:`View`).

        Args:
            camera: the camera (world frame).
            background: one of BACKGROUNDS or an (H,W,3) uint8/float image.
            light: a Light (camera frame); default random from ``rng``.
            rng: generator or seed for the light and the background (default seed 0).
        """
        rng = np.random.default_rng(rng if rng is not None else 0)
        H, W = camera.height, camera.width
        c = self.cast(camera)
        tri, hit = c["tri"], c["hit"]
        light = light if light is not None else random_light(rng)
        if isinstance(background, str):
            bg = make_background(background, H, W, rng)
        else:
            bg = np.asarray(background)
            if bg.shape != (H, W, 3):
                raise AffordError(f"background image must be ({H},{W},3), got {bg.shape}")
            bg = bg.astype(np.float64) / (255.0 if bg.dtype == np.uint8 else 1.0)
        N = H * W
        is_obj = hit & (tri < self.n_obj)
        obj_idx = np.flatnonzero(is_obj)
        points = np.full((N, 3), np.nan)
        part_id = np.full(N, -1, dtype=np.int64)
        face_id = np.full(N, -1, dtype=np.int64)
        if len(obj_idx):
            world = c["world"][obj_idx]
            identity = np.array_equal(self.pose_inv, np.eye(4))
            points[obj_idx] = world if identity else trimesh.transform_points(world, self.pose_inv)
            face_id[obj_idx] = tri[obj_idx]
            part_id[obj_idx] = self.face_part[tri[obj_idx]]
        extra_id = np.full(N, -1, dtype=np.int64)
        ex = hit & ~is_obj
        extra_id[ex] = self.extra_of_face[tri[ex]]

        # shading of hit pixels
        rgb = bg.reshape(N, 3).copy()
        hidx = np.flatnonzero(hit)
        if len(hidx):
            ti = tri[hidx]
            bary = barycentric(self.v0[ti], self.e1[ti], self.e2[ti], c["world"][hidx])
            normal = self._normals(ti, bary)
            d = c["dirs"][hidx]
            d = d / np.linalg.norm(d, axis=1, keepdims=True)
            flip = np.einsum("nc,nc->n", normal, d) > 0
            normal[flip] *= -1
            alb = self.face_albedo[ti].copy()
            on_obj = ti < self.n_obj
            if on_obj.any():
                if self.material is not None:
                    alb[on_obj] = self.material(ti[on_obj], points[hidx[on_obj]], bary[on_obj])
                else:
                    alb[on_obj] = self.color
            L = light.direction @ camera.R  # camera frame -> world
            lam = np.clip(normal @ L, 0, None)
            h = L[None] - d
            h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
            spec = np.clip(np.einsum("nc,nc->n", normal, h), 0, None) ** self.face_shin[ti]
            spec = spec * self.face_spec[ti] * light.specular * (lam > 0)
            col = alb * (light.ambient + light.diffuse * lam)[:, None] + spec[:, None]
            rgb[hidx] = col * light.color[None]
        rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(H, W, 3)
        return View(
            rgb=rgb,
            depth=c["depth"].reshape(H, W).astype(np.float32),
            mask=is_obj.reshape(H, W),
            part_id=part_id.reshape(H, W).astype(np.int16),
            face_id=face_id.reshape(H, W).astype(np.int32),
            points=points.reshape(H, W, 3).astype(np.float32),
            extra_id=extra_id.reshape(H, W).astype(np.int16),
            camera=camera,
            pose=self.pose.copy(),
        )

    def _normals(self, ti: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Shading normals: barycentric-interpolated corner normals on smooth faces, face
        normals elsewhere. ti (n,), bary (n,3) -> (n,3)."""
        fn = self.face_normals[ti].copy()
        sm = self.smooth[ti]
        if sm.any():
            b = bary[sm]
            vn = self.face_vn[ti[sm]]
            n = b[:, 0:1] * vn[:, 0] + b[:, 1:2] * vn[:, 1] + b[:, 2:3] * vn[:, 2]
            fn[sm] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return fn


def barycentric(v0: np.ndarray, e1: np.ndarray, e2: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (n,3) of points p (n,3) in triangles ``v0, v0+e1, v0+e2``."""
    w = p - v0
    d00 = np.einsum("nc,nc->n", e1, e1)
    d01 = np.einsum("nc,nc->n", e1, e2)
    d11 = np.einsum("nc,nc->n", e2, e2)
    d20 = np.einsum("nc,nc->n", w, e1)
    d21 = np.einsum("nc,nc->n", w, e2)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-300)
    b1 = (d11 * d20 - d01 * d21) / den
    b2 = (d00 * d21 - d01 * d20) / den
    return np.stack([1 - b1 - b2, b1, b2], axis=1)


def corner_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F,3,3) smooth-shading normals per face corner (split at edges sharper than 30 deg)."""
    shaded = trimesh.graph.smooth_shade(mesh, angle=np.radians(30), facet_minarea=None)
    if len(shaded.faces) == len(mesh.faces):
        return np.asarray(shaded.vertex_normals)[shaded.faces]
    return np.asarray(mesh.vertex_normals)[mesh.faces]  # pragma: no cover


def _make_intersector(mesh: trimesh.Trimesh):
    """Embree intersector when available (trimesh.ray.has_embree), else trimesh's own."""
    if trimesh.ray.has_embree:  # embreex: optional, checked by trimesh
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        return RayMeshIntersector(mesh)
    return TriangleIntersector(mesh)

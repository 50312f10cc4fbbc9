"""Pinhole cameras, projection and back-projection (OpenCV convention).

A world/object point ``X`` maps to camera coordinates ``x_cam = R @ X + t`` (x right, y down,
z forward) and to pixel coordinates ``(u, v, 1) ~ K @ x_cam`` with ``u`` the column and ``v``
the row.  **Pixel centres are at integer coordinates**: the ray of pixel ``[row, col]`` goes
through ``(u, v) = (col, row)``, so ``round(project(points)[0])`` gives the pixel index of a
point (docs/correspondence-format.md).  Everything here is numpy; the synthetic renderer,
real-data preparation and GT curation all share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from afford.errors import AffordError

__all__ = [
    "Camera",
    "look_at",
    "sphere_cameras",
    "camera_directions",
    "crop_intrinsics",
    "backproject",
    "project",
    "transform_points",
]


def crop_intrinsics(K: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """(3, 3) float64 intrinsics of the ``size`` x ``size`` resampled crop
    ``box = [top, left, side]`` of a view with intrinsics ``K``:
    ``row_c = (row - top + 0.5) * size / side - 0.5`` (docs/correspondence-format.md)."""
    top, left, side = (float(x) for x in box)
    a = size / side
    A = np.array([[a, 0, (0.5 - left) * a - 0.5], [0, a, (0.5 - top) * a - 0.5], [0, 0, 1.0]])
    return A @ np.asarray(K, np.float64)


def camera_directions(K: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Camera-frame ray directions ``K^-1 [col, row, 1]^T`` of pixels (camera z = 1).

    Args:
        K: (3, 3) intrinsics; rows, cols: (N,) pixel indices (pixel centres on integers).

    Returns:
        (N, 3) float64 directions; the point at depth ``z`` on the ray is ``z * d``.
    """
    pix = np.stack([cols, rows, np.ones_like(rows)], 1).astype(np.float64)  # (N,3) (u,v,1)
    return pix @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T


def project(
    points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) object-frame points.

    Returns:
        rc: (N, 2) float64 ``(row, col)`` pixel coordinates; z: (N,) camera depth.
    """
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64)
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ np.asarray(K, dtype=np.float64).T
        u = uvw[:, 0] / uvw[:, 2]
        v = uvw[:, 1] / uvw[:, 2]
    return np.stack([v, u], -1), z


def backproject(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Object-frame surface point of every pixel from a z-depth map.

    ``x_obj = R^T (depth * K^-1 [col, row, 1]^T - t)``.

    Args:
        depth: (H, W) or (V, H, W) z-depth, inf/nan = background.
        K, R: (3, 3) or (V, 3, 3); t: (3,) or (V, 3).

    Returns:
        (H, W, 3) or (V, H, W, 3) float32, nan where there is no surface.
    """
    depth = np.asarray(depth)
    single = depth.ndim == 2
    if single:
        depth, K, R, t = depth[None], np.asarray(K)[None], np.asarray(R)[None], np.asarray(t)[None]
    if depth.ndim != 3:
        raise AffordError(f"backproject: depth must be (H,W) or (V,H,W), got {depth.shape}")
    K = np.asarray(K, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    out = np.full(depth.shape + (3,), np.nan, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    for v in range(depth.shape[0]):
        rows, cols = np.nonzero(valid[v])
        if rows.size == 0:
            continue
        cam = camera_directions(K[v], rows, cols) * depth[v][rows, cols][:, None].astype(np.float64)
        out[v, rows, cols] = (cam - t[v]) @ R[v]  # R^T (x_cam - t), row-vector form
    return out[0] if single else out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (..., 3) points."""
    T = np.asarray(T, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    return pts @ T[:3, :3].T + T[:3, 3]


@dataclass
class Camera:
    """Pinhole camera, OpenCV convention (see module docstring).

    Attributes:
        K: (3,3) intrinsics.  R: (3,3) world-to-camera rotation.  t: (3,) translation.
        width, height: image size in pixels.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.width, self.height = int(self.width), int(self.height)

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates (-R^T t)."""
        return -self.R.T @ self.t

    @property
    def extrinsic(self) -> np.ndarray:
        """(4,4) world-to-camera transform [R t; 0 1]."""
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = self.R, self.t
        return E

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N,3) world points -> (N,3) camera coordinates."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (:func:`project` in ``(col, row)`` order).

        Args:
            points: (N,3) world (= object, for an unposed object) coordinates.
        Returns:
            uv: (N,2) float (col, row) pixel coordinates, pixel centres at integers.
            depth: (N,) z in camera coordinates (<= 0 means behind the camera).
        """
        rc, z = project(points, self.K, self.R, self.t)
        return np.ascontiguousarray(rc[:, ::-1]), z

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Rays of every pixel, row-major.

        Returns:
            origin: (3,) camera centre (world).
            dirs: (H*W,3) world directions scaled so that their camera-z component is 1
                (a point at ray parameter s has depth s).
        """
        rows, cols = np.mgrid[0 : self.height, 0 : self.width]
        return self.center, camera_directions(self.K, rows.ravel(), cols.ravel()) @ self.R

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (K, R, t as nested lists; width, height)."""
        return {
            "K": self.K.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Camera:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(d["K"], d["R"], d["t"], d["width"], d["height"])
        except (KeyError, ValueError) as exc:
            raise AffordError(f"camera dict is missing or malformed: {exc}") from exc

    @classmethod
    def look_at(
        cls,
        eye,
        target=(0.0, 0.0, 0.0),
        up=(0.0, 0.0, 1.0),
        fov_deg: float = 40.0,
        width: int = 224,
        height: int = 224,
    ) -> Camera:
        """Camera at ``eye`` looking at ``target``; image y points along -``up``.

        ``fov_deg`` is the horizontal field of view; square pixels; principal point at the
        image centre ((W-1)/2, (H-1)/2) in the pixel-centre-at-integer convention.
        """
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
        z = target - eye
        n = np.linalg.norm(z)
        if n < 1e-12:
            raise AffordError("look_at: eye and target coincide")
        z /= n
        x = np.cross(z, up)
        if np.linalg.norm(x) < 1e-9:  # looking along up: pick another up
            alt = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
            x = np.cross(z, alt)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        f = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)
        K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
        return cls(K, R, -R @ eye, width, height)


look_at = Camera.look_at


def sphere_cameras(
    n: int = 19,
    distance: float = 2.2,
    fov_deg: float = 35.0,
    width: int = 224,
    height: int = 224,
    elevation_deg: tuple[float, float] = (-15.0, 65.0),
    target=(0.0, 0.0, 0.0),
    up=(0.0, 0.0, 1.0),
) -> list[Camera]:
    """A fixed, deterministic set of ``n`` cameras on a sphere around ``target``.

    Cameras follow a Fibonacci spiral over the band of elevations ``elevation_deg``
    (uniform in area: sin(elevation) evenly spaced), azimuth advancing by the golden angle.
    With the defaults (distance 2.2, fov 35) an asset normalised to max |coord| = 0.5 stays
    inside the image from every view.
    """
    if n < 1:
        raise AffordError(f"sphere_cameras: n must be >= 1, got {n}")
    lo, hi = np.sin(np.deg2rad(elevation_deg[0])), np.sin(np.deg2rad(elevation_deg[1]))
    s = lo + (hi - lo) * (np.arange(n) + 0.5) / n
    el = np.arcsin(s)
    az = np.arange(n) * np.pi * (3.0 - np.sqrt(5.0))
    target = np.asarray(target, dtype=np.float64)
    cams = []
    for e, a in zip(el, az):
        eye = target + distance * np.array(
            [np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)]
        )
        cams.append(Camera.look_at(eye, target, up, fov_deg, width, height))
    return cams

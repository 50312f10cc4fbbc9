"""Renders for the self-supervised pre-training of the tiny backbones (``afford.pretrain``).

The world side of ``afford pretrain-backbone``: random assets of every category from random
viewpoints, lights and backgrounds. What leaves here is RGB pixels only
(:func:`render_pretraining_images`: (N,R,H,W,3) uint8, R re-renders of each scene from the same
camera) or, with :func:`render_multiview_pairs`, RGB from two cameras plus their multi-view
geometry (:class:`MultiviewRenders`: which pixel of the other view sees the same surface
point, :func:`flow_between`). The part ids, masks, depths, categories, affordances and
functions the renderer also knows are dropped inside the render loops; the app layer hands the
arrays to :func:`afford.pretrain.pretrain`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from afford.errors import AffordError
from afford.geometry.camera import Camera
from afford.synth import assets as A
from afford.synth.render import BACKGROUNDS, Scene, random_light

DATA_SEED_OFFSET = 7_000_000  # asset seeds of the pre-training renders (disjoint from datasets)


def orbit_camera(el: float, az: float, dist: float, target: np.ndarray, fov: float, size: int):
    """A ``size`` x ``size`` camera at elevation ``el`` / azimuth ``az`` (radians) and distance
    ``dist`` from the origin, looking at ``target``, vertical field of view ``fov`` degrees."""
    eye = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return Camera.look_at(eye, target, fov_deg=fov, width=size, height=size)


def render_pretraining_images(
    n: int,
    seed: int = 0,
    size: int = 224,
    views_per_asset: int = 4,
    renders: int = 2,
    categories: Sequence[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Render ``n`` scenes of random synthetic assets, each ``renders`` times with the same
    camera but an independent random light and background; returns (n, renders, size, size, 3)
    uint8.

    Assets cycle through every category (``afford.synth.assets.CATEGORIES``) with asset seeds
    ``DATA_SEED_OFFSET + seed * 100_000 + i`` (disjoint from the dataset writers' seeds);
    ``views_per_asset`` random cameras each (elevation -20..70 deg, distance 1.3..2.2, fov
    30..40, target jitter). The re-renders of one scene are the simulator's version of a
    photometric augmentation: the two views of a training pair come from two of them, so the
    background and lighting cannot identify the pair -- the object has to. **Only the RGB
    pixels are kept**: the renderer's part ids, masks, depths and points, and the asset's
    category and part metadata, are discarded here.
    """
    if n < 1:
        raise AffordError(f"--images must be >= 1, got {n}")
    cats = list(categories) if categories is not None else list(A.CATEGORIES)
    rng = np.random.default_rng([seed, 12345])
    out = np.empty((n, renders, size, size, 3), np.uint8)
    n_assets = math.ceil(n / views_per_asset)
    k = 0
    for i in tqdm(range(n_assets), desc="render", disable=not progress, leave=False):
        asset = A.make_asset(cats[i % len(cats)], DATA_SEED_OFFSET + seed * 100_000 + i)
        scene = Scene(asset)
        for _ in range(min(views_per_asset, n - k)):
            el = np.deg2rad(rng.uniform(-20, 70))
            az = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(1.3, 2.2)
            target = rng.uniform(-0.1, 0.1, 3)
            cam = orbit_camera(el, az, dist, target, rng.uniform(30, 40), size)
            for j in range(renders):
                bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
                view = scene.render(cam, background=bg, light=random_light(rng), rng=rng)
                out[k, j] = view.rgb  # RGB only: nothing else of the view leaves here
            k += 1
    return out


@dataclass
class MultiviewRenders:
    """Two renders of each scene from two *different* cameras, plus where each grid cell of
    one view lands in the other (multi-view geometry only; see :func:`flow_between`).

    Attributes:
        images: (N,2,S,S,3) uint8 RGB.
        flow: (N,2,G,G,2) float32: for view ``v``'s grid cell (i, j) (centre ((i+.5)/G,
            (j+.5)/G) in normalised (row, col)), the normalised (row, col) of the same surface
            point in view ``1 - v``.
        valid: (N,2,G,G) bool: the cell shows the object and its surface point is visible in
            the other view.
    """

    images: np.ndarray
    flow: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def flow_between(view_a, view_b, grid: int, tol: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Geometric correspondence of two renders of the same object (pure multi-view geometry:
    ``view_a.points`` projected by ``view_b``'s camera, with a depth test; no labels).

    Args:
        view_a, view_b: :class:`afford.synth.render.View` of the same scene, S x S pixels.
        grid: G; the flow is evaluated at the pixel under each cell centre of a G x G grid.
        tol: depth-test tolerance, relative to the camera depth.
    Returns:
        flow (G,G,2) float32 normalised (row, col) in view b (pixel centres at (k+.5)/S),
        valid (G,G) bool.
    """
    s = view_a.rgb.shape[0]
    pix = np.minimum(((np.arange(grid) + 0.5) * s / grid).astype(int), s - 1)
    rr, cc = np.meshgrid(pix, pix, indexing="ij")
    pts = view_a.points[rr, cc].reshape(-1, 3)
    ok = view_a.mask[rr, cc].reshape(-1) & np.isfinite(pts).all(1)
    flow = np.zeros((grid * grid, 2), np.float32)
    cam = view_b.object_camera()
    if ok.any():
        uv, z = cam.project(pts[ok])
        col, row = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (z > 0) & (row >= 0) & (row < s) & (col >= 0) & (col < s)
        rc, cc2 = np.clip(row, 0, s - 1), np.clip(col, 0, s - 1)
        seen = inside & view_b.mask[rc, cc2] & (np.abs(view_b.depth[rc, cc2] - z) < tol * z)
        flow[ok] = np.stack([(uv[:, 1] + 0.5) / s, (uv[:, 0] + 0.5) / s], 1)
        idx = np.flatnonzero(ok)
        ok[idx[~seen]] = False
    return flow.reshape(grid, grid, 2), ok.reshape(grid, grid)


def render_multiview_pairs(
    n: int,
    seed: int = 0,
    size: int = 224,
    views_per_asset: int = 4,
    max_offset_deg: float = 40.0,
    grid: int = 56,
    categories: Sequence[str] | None = None,
    progress: bool = True,
) -> MultiviewRenders:
    """Like :func:`render_pretraining_images`, but the two renders of a scene come from two
    cameras up to ``max_offset_deg`` apart in azimuth and half that in elevation (independent
    light and background each), and the cross-view :func:`flow_between` is kept. Only RGB and
    this geometry leave here: part ids, categories, affordances and functions are dropped."""
    if n < 1:
        raise AffordError(f"--images must be >= 1, got {n}")
    cats = list(categories) if categories is not None else list(A.CATEGORIES)
    rng = np.random.default_rng([seed, 54321])
    images = np.empty((n, 2, size, size, 3), np.uint8)
    flow = np.zeros((n, 2, grid, grid, 2), np.float32)
    valid = np.zeros((n, 2, grid, grid), bool)
    k = 0
    off = np.deg2rad(max_offset_deg)
    for i in tqdm(range(math.ceil(n / views_per_asset)), desc="render", disable=not progress,
                  leave=False):  # fmt: skip
        scene = Scene(A.make_asset(cats[i % len(cats)], DATA_SEED_OFFSET + seed * 100_000 + i))
        for _ in range(min(views_per_asset, n - k)):
            el0, az0 = np.deg2rad(rng.uniform(-10, 60)), rng.uniform(0, 2 * np.pi)
            dist, fov = rng.uniform(1.3, 2.2), rng.uniform(30, 40)
            target = rng.uniform(-0.1, 0.1, 3)
            views = []
            for el, az in (
                (el0, az0),
                (el0 + rng.uniform(-off, off) / 2, az0 + rng.uniform(-off, off)),
            ):
                cam = orbit_camera(el, az, dist, target, fov, size)
                bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
                views.append(scene.render(cam, background=bg, light=random_light(rng), rng=rng))
            for v in (0, 1):
                images[k, v] = views[v].rgb
                flow[k, v], valid[k, v] = flow_between(views[v], views[1 - v], grid)
            k += 1
    return MultiviewRenders(images, flow, valid)

"""Exact CPU renderer of the synthetic world: :mod:`afford.raycast` with procedural assets.

The ray caster, lights, backgrounds and :class:`View` live in :mod:`afford.raycast` (shared
with real-asset preparation, :mod:`afford.prepare`); this module adds the synthetic assets'
material (per-part procedural textures, :func:`afford.synth.assets.albedo`), their per-part
specularity, and the cached corner normals.  Cameras are
:class:`afford.geometry.camera.Camera` (OpenCV convention, pixel centres at integers).
"""

from __future__ import annotations

import numpy as np
import trimesh

from afford.errors import AffordError
from afford.geometry.camera import Camera
from afford.raycast import (
    BACKGROUNDS,
    Light,
    SceneMesh,
    View,
    corner_normals,
    make_background,
    random_light,
)
from afford.raycast import Scene as _RayScene
from afford.synth.assets import Asset, albedo

__all__ = [
    "Light",
    "random_light",
    "SceneMesh",
    "Scene",
    "View",
    "render",
    "make_background",
    "BACKGROUNDS",
]


class Scene(_RayScene):
    """An object (an Asset or a plain mesh) with a pose plus extra occluding meshes.

    The ray-casting acceleration structure is built once; render many views with
    :meth:`render` (:meth:`afford.raycast.Scene.render`).

    Args:
        obj: an :class:`afford.synth.assets.Asset` or a ``trimesh.Trimesh``.
        pose: (4,4) world-from-object transform (default identity).
        extras: extra meshes in world coordinates.
        color: albedo of a plain mesh (ignored for Assets, which use their part styles).
    """

    def __init__(self, obj, pose: np.ndarray | None = None, extras=(), color=(0.7, 0.7, 0.7)):
        if isinstance(obj, Asset):
            parts = obj.parts
            face_part = np.asarray(obj.face_part)
            super().__init__(
                obj.mesh,
                pose,
                extras,
                material=lambda faces, points, bary: albedo(parts, face_part[faces], points),
                face_part=face_part,
                face_specular=np.array([p.specular for p in parts])[face_part],
                face_shininess=np.array([p.shininess for p in parts])[face_part],
                shading_normals=_corner_normals(obj),
            )
            self.asset = obj
        elif isinstance(obj, trimesh.Trimesh):
            super().__init__(obj, pose, extras, color=color, shading_normals=_corner_normals(obj))
            self.asset = None
        else:
            raise AffordError(
                f"Scene: expected an Asset or trimesh.Trimesh, got {type(obj).__name__}"
            )


def _corner_normals(obj) -> np.ndarray:
    """(F,3,3) smooth-shading normals per face corner, cached on an Asset (its mesh never
    changes)."""
    if isinstance(obj, Asset):
        cached = obj._part_meshes.get("corner_normals")
        if cached is None:
            cached = obj._part_meshes["corner_normals"] = corner_normals(obj.mesh)
        return cached
    return corner_normals(obj)


def render(
    obj,
    camera: Camera,
    *,
    pose: np.ndarray | None = None,
    extras=(),
    background: str | np.ndarray = "solid",
    light: Light | None = None,
    rng: np.random.Generator | int | None = None,
) -> View:
    """Render one view of an Asset (or mesh) with optional pose and occluding extras.

    Convenience wrapper around ``Scene(obj, pose, extras).render(camera, ...)``; build a
    :class:`Scene` once to render many views of the same scene faster.
    """
    return Scene(obj, pose=pose, extras=extras).render(camera, background, light, rng)

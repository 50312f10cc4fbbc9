"""Watertight mesh primitives for the procedural assets (pure numpy + trimesh).

Every function returns a closed, consistently outward-oriented ``trimesh.Trimesh`` (unless
stated otherwise), so a part built from one primitive is watertight.  Coordinates are in
arbitrary units; :func:`afford.synth.assets.make_asset` normalises the finished asset.

- :func:`revolve`: surface of revolution of an (r, z) profile about the z axis.
- :func:`tube`: a circular tube swept along a 3-D polyline (spouts, handles, hooks).
- :func:`slab`: a star-shaped 2-D polygon extruded with per-vertex thickness (blades).
- :func:`box`, :func:`sphere`, :func:`cylinder`, :func:`capsule`: thin wrappers on trimesh.
- :func:`frame`: a 4x4 rigid transform from an origin and two axis hints.
"""

from __future__ import annotations

import numpy as np
import trimesh

__all__ = [
    "revolve",
    "tube",
    "slab",
    "box",
    "sphere",
    "cylinder",
    "capsule",
    "frame",
    "transform",
    "rot_x",
    "rot_y",
    "rot_z",
]


def _finish(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """Build a mesh, merge duplicate vertices and orient it outwards (positive volume)."""
    # vertices are built unique, so no merge pass is needed (keeps construction fast)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    return mesh


def revolve(profile: np.ndarray, sections: int = 40, closed: bool = False) -> trimesh.Trimesh:
    """Revolve an (r, z) profile about the z axis.

    Args:
        profile: (N, 2) points (radius >= 0, height). Open profiles must start and end on
            the axis (r = 0) to be watertight; interior points must have r > 0.
        sections: number of angular samples.
        closed: the profile is a closed loop (a ring / torus-like solid, all r > 0).

    Returns:
        A watertight mesh (outward normals).
    """
    p = np.asarray(profile, dtype=np.float64)
    n = len(p)
    ang = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    c, s = np.cos(ang), np.sin(ang)
    on_axis = p[:, 0] <= 1e-12
    verts: list[np.ndarray] = []
    index = np.zeros((n, sections), dtype=np.int64)
    count = 0
    for i in range(n):
        if on_axis[i]:
            verts.append(np.array([[0.0, 0.0, p[i, 1]]]))
            index[i] = count
            count += 1
        else:
            ring = np.stack([p[i, 0] * c, p[i, 0] * s, np.full(sections, p[i, 1])], axis=1)
            verts.append(ring)
            index[i] = count + np.arange(sections)
            count += sections
    faces = []
    pairs = [(i, i + 1) for i in range(n - 1)]
    if closed:
        pairs.append((n - 1, 0))
    j = np.arange(sections)
    jn = (j + 1) % sections
    for a, b in pairs:
        a0, a1, b0, b1 = index[a, j], index[a, jn], index[b, j], index[b, jn]
        if not on_axis[a]:
            faces.append(np.stack([a0, a1, b1], axis=1))
        if not on_axis[b]:
            faces.append(np.stack([a0, b1, b0], axis=1))
    return _finish(np.concatenate(verts), np.concatenate(faces))


def _perp(v: np.ndarray) -> np.ndarray:
    a = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(v, a)
    return u / np.linalg.norm(u)


def tube(
    path: np.ndarray, radius: float | np.ndarray, sides: int = 16, cap: bool = True
) -> trimesh.Trimesh:
    """Sweep a circle along a polyline (parallel-transport frames), capped at both ends.

    Args:
        path: (N, 3) centre-line points, N >= 2, no repeated consecutive points.
        radius: scalar or (N,) radius per path point.
        sides: circle resolution.
        cap: close both ends with a fan (watertight); False leaves them open.
    """
    path = np.asarray(path, dtype=np.float64)
    n = len(path)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    tang = np.gradient(path, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    normals = np.zeros_like(path)
    normals[0] = _perp(tang[0])
    for i in range(1, n):  # parallel transport (N is small: tens of points)
        v = normals[i - 1] - tang[i] * np.dot(normals[i - 1], tang[i])
        nv = np.linalg.norm(v)
        normals[i] = v / nv if nv > 1e-9 else _perp(tang[i])
    binormals = np.cross(tang, normals)
    ang = np.linspace(0.0, 2 * np.pi, sides, endpoint=False)
    ring = (
        path[:, None, :]
        + r[:, None, None]
        * (
            np.cos(ang)[None, :, None] * normals[:, None]
            + np.sin(ang)[None, :, None] * binormals[:, None]
        )
    ).reshape(-1, 3)
    j = np.arange(sides)
    jn = (j + 1) % sides
    faces = []
    for i in range(n - 1):
        a0, a1, b0, b1 = i * sides + j, i * sides + jn, (i + 1) * sides + j, (i + 1) * sides + jn
        faces += [np.stack([a0, b0, b1], 1), np.stack([a0, b1, a1], 1)]
    verts = [ring]
    if cap:
        c0, c1 = len(ring), len(ring) + 1
        verts.append(path[[0, -1]])
        faces.append(np.stack([np.full(sides, c0), j, jn], 1))
        last = (n - 1) * sides
        faces.append(np.stack([np.full(sides, c1), last + jn, last + j], 1))
    return _finish(np.concatenate(verts), np.concatenate(faces))


def slab(polygon: np.ndarray, thickness: float | np.ndarray, centre_thickness: float | None = None):
    """Extrude a star-shaped polygon in the x-z plane symmetrically along y.

    Args:
        polygon: (N, 2) (x, z) vertices, counter-clockwise, star-shaped w.r.t. its vertex mean.
        thickness: scalar or (N,) full thickness at each vertex (> 0); a thin edge gives a
            blade-like wedge.
        centre_thickness: thickness at the fan centre (default: mean of ``thickness``).
    """
    poly = np.asarray(polygon, dtype=np.float64)
    n = len(poly)
    t = np.broadcast_to(np.asarray(thickness, dtype=np.float64), (n,))
    ct = float(np.mean(t) if centre_thickness is None else centre_thickness)
    cen = poly.mean(axis=0)
    top = np.stack([poly[:, 0], t / 2, poly[:, 1]], 1)
    bot = np.stack([poly[:, 0], -t / 2, poly[:, 1]], 1)
    verts = np.concatenate([top, bot, [[cen[0], ct / 2, cen[1]], [cen[0], -ct / 2, cen[1]]]])
    j = np.arange(n)
    jn = (j + 1) % n
    ctop, cbot = 2 * n, 2 * n + 1
    faces = np.concatenate(
        [
            np.stack([np.full(n, ctop), j, jn], 1),
            np.stack([np.full(n, cbot), n + jn, n + j], 1),
            np.stack([j, n + j, n + jn], 1),
            np.stack([j, n + jn, jn], 1),
        ]
    )
    return _finish(verts, faces)


def box(extents, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """Axis-aligned box with the given full ``extents`` centred at ``center``."""
    return trimesh.creation.box(extents=extents, transform=transform(t=center))


def sphere(radius: float, center=(0.0, 0.0, 0.0), subdivisions: int = 2) -> trimesh.Trimesh:
    """Icosphere."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    m.apply_translation(center)
    return m


def cylinder(radius: float, p0, p1, sections: int = 32) -> trimesh.Trimesh:
    """Closed cylinder from point ``p0`` to ``p1``."""
    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1]), sections=sections)


def capsule(radius: float, p0, p1, count=(16, 16)) -> trimesh.Trimesh:
    """Capsule (cylinder with hemispherical ends) from ``p0`` to ``p1`` (centre points).

    ``count`` = (angular sections, samples per hemisphere arc).
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    length = max(float(np.linalg.norm(d)), 1e-6)
    k = max(int(count[1]) // 2, 2)
    a = np.linspace(-np.pi / 2, 0, k + 1)
    bottom = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    top = np.stack([radius * np.cos(a[::-1]), length - radius * np.sin(a[::-1])], 1)
    prof = np.concatenate([bottom, top])
    prof[0, 0] = prof[-1, 0] = 0.0
    m = revolve(prof, sections=max(int(count[0]), 6))
    m.apply_transform(frame(p0, x_hint=_perp(d / length), z=d / length))
    return m


def frame(origin, x_hint=None, z=None) -> np.ndarray:
    """4x4 transform with the given origin, exact z axis and x axis closest to ``x_hint``.

    If only ``x_hint`` is given (``z`` None) the x axis is exact and z is arbitrary-but-fixed.
    """
    origin = np.asarray(origin, dtype=np.float64)
    if z is None:
        x = np.asarray(x_hint, float)
        x = x / np.linalg.norm(x)
        z = _perp(x)
    else:
        z = np.asarray(z, float)
        z = z / np.linalg.norm(z)
        x = np.asarray(x_hint, float) if x_hint is not None else _perp(z)
        x = x - z * np.dot(x, z)
        if np.linalg.norm(x) < 1e-9:
            x = _perp(z)
        x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, origin
    return T


def transform(R=None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 from a rotation (3,3) and translation (3,)."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = np.asarray(R)[:3, :3]
    T[:3, 3] = t
    return T


def rot_x(a: float) -> np.ndarray:
    """3x3 rotation about x by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    """3x3 rotation about y by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    """3x3 rotation about z by ``a`` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

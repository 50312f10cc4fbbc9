"""Procedural, part-labelled assets: tools and containers with functions and affordances.

``make_asset(category, seed)`` builds one instance of a category.  Every face of the asset's
mesh carries a part index (``Asset.face_part``); every :class:`Part` lists

- ``functions``: correspondence functions (the dense-functional-correspondence paper's
  taxonomy style: ``"pour-with"``, ``"cut-with"``, ``"scoop-with"``, ``"pound-with"``,
  ``"pierce-with"``, ``"brush-with"``, ``"drink-with"``, ``"hang-onto"``, ``"grasp"``);
- ``affordances``: AGD20K-style action names (``"hold"``, ``"pour"``, ``"cut_with"``,
  ``"drink_with"``, ``"hit"``, ``"stir"``, ``"stick"``, ``"brush_with"``, ``"open"``);
- ``frame``: a canonical functional frame, a 4x4 object-from-functional transform whose
  origin is the part's functional point and whose axes follow the functional direction, so
  ``T = A.frame @ inv(B.frame)`` maps object B onto object A with their functional parts
  coincident (the paper's annotators do this alignment by hand).

Frame conventions (x = primary axis, z = secondary axis, y = z cross x):

==============  ===================================  ======================================
function        origin                               axes
==============  ===================================  ======================================
pour-with       outlet centre (spout tip, lip, neck)  x = outflow direction; z = "up" in the
                                                     plane of the outflow and object up axis
cut-with        midpoint of the cutting edge         x = along the edge towards the tip;
                                                     z = edge normal (cutting direction)
scoop-with      bowl/head centre                     x = towards the tip, away from handle;
                                                     z = opening normal (up)
pound-with      striking face centre                 x = strike direction; z = head-to-handle
pierce-with     tine tips centre                     x = towards the tips; z = tine-plane
                                                     normal
brush-with      bristle tips centre                  x = bristle direction; z = handle axis
drink-with      rim point opposite the handle        x = outwards from the axis; z = up
hang-onto       loop / hook centre                   x = loop axis; z = up
grasp           handle centre                        x = handle axis towards the working
                                                     end (or up); z = away from the object
==============  ===================================  ======================================

Objects are built with z up and the working end towards +x, then normalised: the bounding
box centre goes to the origin and the mesh is scaled so ``max |coord| = 0.5`` (the paper's
normalisation).  Every part is built from closed primitives (see :mod:`afford.synth.shapes`),
so every part submesh is watertight; the whole asset is a union of intersecting closed parts.

The deliberate confound
-----------------------
Many categories carry a salient, category-specific **decoration**: a brightly patterned
band, knob, cap, collar or label (``Part.decoration = True``) on or next to a part that does
*not* afford the category's labelled actions (e.g. the red/white chequered lid knob of a
kettle: the kettle is labelled "pour" and "hold", afforded by the spout and the handle).  A
classifier can recognise the action class by looking at the decoration, so a method that
grounds affordances via class activation maps tends to light up the wrong part.  This is
exactly the failure mode the selective contrastive learning paper targets.  Decorations
usually have no affordances; the bottle's label is the one decoration that is also held.
"""

from __future__ import annotations

import colorsys
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import trimesh

from afford.data.io import atomic_path
from afford.errors import AffordError
from afford.synth import shapes as S
from afford.taxonomy import Taxonomy

__all__ = [
    "Part",
    "Asset",
    "CATEGORIES",
    "FUNCTIONS",
    "AFFORDANCES",
    "PATTERNS",
    "make_asset",
    "asset_rng",
    "albedo",
    "export_asset",
    "category_affordances",
    "category_functions",
    "taxonomy",
]

PATTERNS = ("plain", "stripes", "checker", "dots", "grain", "noise")


@dataclass(frozen=True, eq=False)
class Part:
    """One labelled part of an asset.

    Attributes:
        name: part name, unique within the asset (e.g. "spout", "handle").
        functions: correspondence functions this part performs (e.g. ("pour-with",)).
        affordances: AGD20K-style actions it affords (e.g. ("pour",)).
        frame: (4,4) object-from-functional-frame transform (see module docstring).
        decoration: a salient category-specific decoration (the confound).
        color: (3,) base albedo in [0,1].
        pattern: one of PATTERNS (procedural solid texture evaluated per pixel).
        pattern_color: (3,) second albedo of the pattern.
        pattern_freq: pattern frequency in cycles per object unit (normalised frame).
        pattern_axis: (3,) unit axis for stripes/grain.
        specular: specular weight (metal ~0.6, plastic ~0.25, wood ~0.05).
        shininess: Blinn-Phong exponent.
    """

    name: str
    functions: tuple[str, ...]
    affordances: tuple[str, ...]
    frame: np.ndarray
    decoration: bool = False
    color: tuple[float, float, float] = (0.7, 0.7, 0.7)
    pattern: str = "plain"
    pattern_color: tuple[float, float, float] = (0.2, 0.2, 0.2)
    pattern_freq: float = 8.0
    pattern_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    specular: float = 0.2
    shininess: float = 20.0


@dataclass(eq=False)
class Asset:
    """A procedural object instance.

    Attributes:
        category: category name (one of CATEGORIES).
        seed: instance seed.
        mesh: trimesh.Trimesh in the object frame, max |coord| = 0.5, z up.
        face_part: (F,) int index into ``parts`` for every face.
        parts: the labelled parts.
    """

    category: str
    seed: int
    mesh: trimesh.Trimesh
    face_part: np.ndarray
    parts: list[Part]
    _part_meshes: dict = field(default_factory=dict, repr=False)

    def part_index(self, name: str) -> int:
        """Index of the part called ``name`` (AffordError if absent)."""
        for i, p in enumerate(self.parts):
            if p.name == name:
                return i
        raise AffordError(f"{self.category}: no part named {name!r}")

    def parts_with(self, function: str | None = None, affordance: str | None = None) -> list[int]:
        """Indices of parts that perform ``function`` and/or afford ``affordance``."""
        out = []
        for i, p in enumerate(self.parts):
            if function is not None and function not in p.functions:
                continue
            if affordance is not None and affordance not in p.affordances:
                continue
            out.append(i)
        return out

    def part_mesh(self, index: int) -> trimesh.Trimesh:
        """The closed submesh of part ``index`` (object frame)."""
        if index not in self._part_meshes:
            faces = np.flatnonzero(self.face_part == index)
            self._part_meshes[index] = trimesh.Trimesh(
                self.mesh.vertices, self.mesh.faces[faces], process=True
            )
        return self._part_meshes[index]

    def face_colors(self) -> np.ndarray:
        """(F,3) uint8 albedo baked at face centroids (for export and quick looks)."""
        rgb = albedo(self.parts, self.face_part, self.mesh.triangles_center)
        return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)

    @property
    def affordances(self) -> tuple[str, ...]:
        return tuple(sorted({a for p in self.parts for a in p.affordances}))

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(sorted({f for p in self.parts for f in p.functions}))


# --------------------------------------------------------------------------------------
# procedural textures


def _hash01(cells: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0,1) per integer cell (N,3)."""
    c = cells.astype(np.int64)
    h = (c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float64) / 65536.0


def pattern_mask(pattern: str, points: np.ndarray, freq: float, axis: np.ndarray) -> np.ndarray:
    """Pattern weight in [0,1] at object-frame ``points`` (N,3) (0 = base, 1 = pattern)."""
    p = np.asarray(points, dtype=np.float64) * freq
    u = p @ np.asarray(axis, dtype=np.float64)
    if pattern == "plain":
        return np.zeros(len(p))
    if pattern == "stripes":
        return (np.mod(u, 1.0) < 0.5).astype(np.float64)
    if pattern == "checker":
        return (np.floor(p).sum(axis=1) % 2).astype(np.float64)
    if pattern == "dots":
        d = np.linalg.norm(p - np.round(p), axis=1)
        return (d < 0.32).astype(np.float64)
    if pattern == "grain":
        v = p @ np.roll(np.asarray(axis, dtype=np.float64), 1)
        return 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * np.sin(3.0 * v)))
    if pattern == "noise":
        return _hash01(np.floor(p))
    raise AffordError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")


def albedo(parts: list[Part], part_index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per-point albedo (N,3) in [0,1] from each part's colour and procedural pattern.

    Args:
        parts: the asset's parts.
        part_index: (N,) index into ``parts`` (>= 0).
        points: (N,3) object-frame surface points.
    """
    part_index = np.asarray(part_index)
    out = np.zeros((len(part_index), 3), dtype=np.float64)
    for i, part in enumerate(parts):
        sel = part_index == i
        if not sel.any():
            continue
        m = pattern_mask(part.pattern, points[sel], part.pattern_freq, np.array(part.pattern_axis))
        base, pat = np.array(part.color), np.array(part.pattern_color)
        out[sel] = base[None] * (1 - m[:, None]) + pat[None] * m[:, None]
    return out


# --------------------------------------------------------------------------------------
# materials


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _metal(rng) -> dict:
    g = rng.uniform(0.55, 0.8)
    tint = rng.uniform(-0.03, 0.03, 3)
    c = tuple(float(x) for x in np.clip(g + tint, 0, 1))
    return dict(color=c, specular=0.7, shininess=40.0, pattern="plain")


def _wood(rng) -> dict:
    base = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.45, 0.7), rng.uniform(0.4, 0.7))
    dark = tuple(0.7 * x for x in base)
    return dict(
        color=base,
        pattern="grain",
        pattern_color=dark,
        pattern_freq=float(rng.uniform(6, 12)),
        specular=0.05,
        shininess=5.0,
    )


def _plastic(rng, hue=None, sat=(0.4, 0.8)) -> dict:
    h = rng.uniform() if hue is None else hue + rng.uniform(-0.04, 0.04)
    return dict(
        color=_hsv(h, rng.uniform(*sat), rng.uniform(0.35, 0.85)),
        specular=0.3,
        shininess=25.0,
        pattern="plain",
    )


def _ceramic(rng) -> dict:
    d = _plastic(rng, sat=(0.05, 0.45))
    d.update(specular=0.4, shininess=30.0)
    if rng.uniform() < 0.3:
        d.update(
            pattern="noise", pattern_freq=30.0, pattern_color=tuple(0.9 * c for c in d["color"])
        )
    return d


def _decoration(category: str, rng) -> dict:
    """Salient, category-specific decoration style (hue and pattern fixed per category)."""
    key = zlib.crc32(category.encode())
    hue = (key % 1000) / 1000.0
    pattern = ("checker", "stripes", "dots")[key % 3]
    return dict(
        color=_hsv(hue + rng.uniform(-0.02, 0.02), 0.95, 0.95),
        pattern=pattern,
        pattern_color=(0.97, 0.97, 0.95) if (key >> 3) % 2 else (0.05, 0.05, 0.05),
        pattern_freq=float(rng.uniform(14, 20)),
        pattern_axis=(0.0, 0.0, 1.0),
        specular=0.35,
        shininess=30.0,
        decoration=True,
    )


# --------------------------------------------------------------------------------------
# builder


class _Builder:
    def __init__(self):
        self.meshes: list[tuple[trimesh.Trimesh, int]] = []
        self.specs: list[dict] = []

    def part(
        self,
        name: str,
        meshes: trimesh.Trimesh | list[trimesh.Trimesh],
        frame: np.ndarray,
        functions=(),
        affordances=(),
        **style,
    ) -> None:
        idx = len(self.specs)
        for m in meshes if isinstance(meshes, list) else [meshes]:
            self.meshes.append((m, idx))
        self.specs.append(
            dict(
                name=name,
                functions=tuple(functions),
                affordances=tuple(affordances),
                frame=np.asarray(frame, dtype=np.float64),
                **style,
            )
        )

    def build(self, category: str, seed: int) -> Asset:
        verts, faces, fpart = [], [], []
        off = 0
        for m, idx in self.meshes:
            verts.append(np.asarray(m.vertices))
            faces.append(np.asarray(m.faces) + off)
            fpart.append(np.full(len(m.faces), idx, dtype=np.int64))
            off += len(m.vertices)
        v = np.concatenate(verts)
        lo, hi = v.min(0), v.max(0)
        centre = (lo + hi) / 2
        scale = 0.5 / np.abs(v - centre).max()
        v = (v - centre) * scale
        mesh = trimesh.Trimesh(v, np.concatenate(faces), process=False)
        parts = []
        for spec in self.specs:
            fr = spec["frame"].copy()
            fr[:3, 3] = (fr[:3, 3] - centre) * scale
            spec = dict(spec, frame=fr)
            if "pattern_freq" in spec:
                spec["pattern_freq"] = float(spec["pattern_freq"]) / scale
            parts.append(Part(**spec))
        return Asset(category, seed, mesh, np.concatenate(fpart), parts)


def _arc(center, radius_xz, a0: float, a1: float, n: int = 16) -> np.ndarray:
    """Points of an elliptic arc in the x-z plane (angles in radians)."""
    a = np.linspace(a0, a1, n)
    cx, cy, cz = center
    return np.stack(
        [cx + radius_xz[0] * np.cos(a), np.full(n, cy), cz + radius_xz[1] * np.sin(a)], 1
    )


def _side_handle(rng, x_attach: float, z0: float, z1: float, reach: float, r: float):
    """C-shaped handle on the -x side between heights z0 < z1 (a tube along an ellipse)."""
    zc = (z0 + z1) / 2
    rz = (z1 - z0) / 2
    shape = rng.integers(3)
    a = np.linspace(np.pi / 2, 3 * np.pi / 2, 20)
    if shape == 0:  # round
        x = x_attach + reach * np.cos(a)
        z = zc + rz * np.sin(a)
    elif shape == 1:  # D-shaped (squarer)
        x = x_attach + reach * np.sign(np.cos(a)) * np.abs(np.cos(a)) ** 0.5
        z = zc + rz * np.sin(a)
    else:  # ear-shaped: wider at the top
        x = x_attach + reach * np.cos(a) * (1.0 + 0.25 * np.sin(a))
        z = zc + rz * np.sin(a)
    # extend into the body so the handle attaches
    path = np.stack([x, np.zeros_like(x), z], 1)
    path = np.concatenate(
        [[[x_attach + 0.6 * r, 0, z[0]]], path[1:-1], [[x_attach + 0.6 * r, 0, z[-1]]]]
    )
    mid = np.array([x_attach - reach, 0.0, zc])
    fr = S.frame(mid, x_hint=(0, 0, 1), z=(-1, 0, 0))
    return S.tube(path, r, sides=14), fr


def _u(rng, a, b) -> float:
    return float(rng.uniform(a, b))


# --------------------------------------------------------------------------------------
# categories


def _drinking_rim(b: _Builder, R: float, H: float, w: float, rh: float, style: dict) -> None:
    """Add the ``rim`` part of a vessel: the top ``rh`` of a wall of outer radius R, thickness w."""
    rim = S.revolve([[R - w, H - rh], [R, H - rh], [R, H], [R - w, H]], closed=True)
    b.part(
        "rim",
        rim,
        S.frame([R, 0, H], (1, 0, 0), (0, 0, 1)),
        ("drink-with",),
        ("drink_with",),
        **style,
    )


def _mug(rng) -> _Builder:
    b = _Builder()
    R, H, w = _u(rng, 0.32, 0.5), _u(rng, 0.75, 1.1), _u(rng, 0.03, 0.05)
    taper = _u(rng, 0.85, 1.0)
    rh = 0.05
    body = S.revolve(
        [[0, 0], [R * taper, 0], [R, H - rh], [R - w, H - rh], [R * taper - w, 0.08], [0, 0.08]]
    )
    style = _ceramic(rng)
    b.part("body", body, S.frame([0, 0, H / 2], (1, 0, 0), (0, 0, 1)), **style)
    _drinking_rim(
        b, R, H, w, rh, dict(style, color=tuple(min(1.0, c * 1.1) for c in style["color"]))
    )
    handle, fr = _side_handle(
        rng, -R + 0.02, H * 0.2, H * 0.8, _u(rng, 0.2, 0.3), _u(rng, 0.035, 0.05)
    )
    b.part("handle", handle, fr, ("grasp", "hang-onto"), ("hold",), **style)
    z0 = _u(rng, 0.3, 0.5) * H
    band = S.revolve(
        [[R * 1.005, z0], [R * 1.02, z0], [R * 1.02, z0 + 0.18 * H], [R * 1.005, z0 + 0.18 * H]],
        closed=True,
    )
    b.part("band", band, S.frame([R, 0, z0], (1, 0, 0), (0, 0, 1)), **_decoration("mug", rng))
    return b


def _cup(rng) -> _Builder:
    b = _Builder()
    R, H, w = _u(rng, 0.3, 0.42), _u(rng, 0.8, 1.2), _u(rng, 0.02, 0.035)
    Rb = R * _u(rng, 0.6, 0.8)
    rh = 0.05
    body = S.revolve([[0, 0], [Rb, 0], [R, H - rh], [R - w, H - rh], [Rb - w, 0.06], [0, 0.06]])
    style = _plastic(rng) if rng.uniform() < 0.5 else _ceramic(rng)
    b.part(
        "body", body, S.frame([0, 0, H / 2], (0, 0, 1), (1, 0, 0)), ("grasp",), ("hold",), **style
    )
    _drinking_rim(b, R, H, w, rh, style)
    z0, z1 = 0.12 * H, 0.3 * H
    r0, r1 = Rb + (R - Rb) * 0.12 * 1.02 + 0.01, Rb + (R - Rb) * 0.3 + 0.012
    band = S.revolve([[r0 - 0.01, z0], [r0, z0], [r1, z1], [r1 - 0.01, z1]], closed=True)
    b.part("band", band, S.frame([r0, 0, z0], (1, 0, 0), (0, 0, 1)), **_decoration("cup", rng))
    return b


def _bottle(rng) -> _Builder:
    b = _Builder()
    R, H = _u(rng, 0.22, 0.35), _u(rng, 0.9, 1.4)
    rn, hn = R * _u(rng, 0.3, 0.45), _u(rng, 0.2, 0.35)
    sh = _u(rng, 0.15, 0.3)
    body = S.revolve([[0, 0], [R, 0], [R, H], [rn, H + sh], [0, H + sh]])
    neck = S.cylinder(rn, [0, 0, H + sh - 0.02], [0, 0, H + sh + hn], sections=24)
    cap = S.cylinder(rn * 1.15, [0, 0, H + sh + hn - 0.01], [0, 0, H + sh + hn + 0.08], sections=24)
    glass = _plastic(rng, sat=(0.3, 0.7))
    b.part(
        "body", body, S.frame([R, 0, H / 2], (0, 0, 1), (1, 0, 0)), ("grasp",), ("hold",), **glass
    )
    top = [0, 0, H + sh + hn]
    b.part(
        "neck",
        neck,
        S.frame(top, (0, 0, 1), (-1, 0, 0)),
        ("pour-with", "drink-with"),
        ("pour", "drink_with"),
        **glass,
    )
    b.part("cap", cap, S.frame(top, (0, 0, 1), (-1, 0, 0)), (), ("open",), **_plastic(rng))
    z0, z1 = H * _u(rng, 0.25, 0.35), H * _u(rng, 0.65, 0.8)
    label = S.revolve([[R, z0], [R * 1.02, z0], [R * 1.02, z1], [R, z1]], closed=True)
    b.part(
        "label",
        label,
        S.frame([R, 0, z0], (0, 0, 1), (1, 0, 0)),
        ("grasp",),
        ("hold",),
        **_decoration("bottle", rng),
    )
    return b


def _kettle(rng) -> _Builder:
    b = _Builder()
    R, H = _u(rng, 0.45, 0.6), _u(rng, 0.6, 0.9)
    bulge = _u(rng, 1.0, 1.15)
    rt = R * _u(rng, 0.5, 0.7)
    prof = [[0, 0], [R * 0.9, 0], [R * bulge, H * 0.35], [R, H * 0.7], [rt, H], [0, H]]
    body = S.revolve(prof)
    style = _metal(rng) if rng.uniform() < 0.5 else _plastic(rng)
    b.part("body", body, S.frame([0, 0, H / 2], (1, 0, 0), (0, 0, 1)), **style)
    lid = S.revolve([[0, H - 0.02], [rt * 1.05, H - 0.02], [rt * 0.9, H + 0.05], [0, H + 0.07]])
    b.part("lid", lid, S.frame([0, 0, H + 0.07], (0, 0, 1), (1, 0, 0)), (), ("open",), **style)
    knob = S.sphere(_u(rng, 0.06, 0.09), [0, 0, H + 0.12])
    b.part(
        "knob", knob, S.frame([0, 0, H + 0.12], (0, 0, 1), (1, 0, 0)), **_decoration("kettle", rng)
    )
    # spout: from the lower body at +x, rising outwards
    a = np.deg2rad(_u(rng, 35, 55))
    L = _u(rng, 0.45, 0.65)
    z0 = H * 0.3
    s = np.linspace(0, 1, 12)
    curve = _u(rng, 0.0, 0.15)
    path = np.stack(
        [
            R * 0.8 + s * L * np.cos(a) - curve * s**2,
            np.zeros_like(s),
            z0 + s * L * np.sin(a) + curve * s**2,
        ],
        1,
    )
    spout = S.tube(path, np.linspace(0.09, 0.035, 12), sides=16)
    tip = path[-1]
    d = path[-1] - path[-2]
    b.part("spout", spout, S.frame(tip, d, (0, 0, 1)), ("pour-with",), ("pour",), **style)
    if rng.uniform() < 0.5:  # side handle
        handle, fr = _side_handle(rng, -R * 0.95, H * 0.2, H * 0.85, _u(rng, 0.25, 0.35), 0.05)
    else:  # top arc handle
        hh = _u(rng, 0.3, 0.45)
        path = _arc([0, 0, H * 0.85], [R * 0.7, hh], 0.0, np.pi, 20)
        handle = S.tube(path, 0.045, sides=14)
        fr = S.frame([0, 0, H * 0.85 + hh], (1, 0, 0), (0, 0, 1))
    b.part("handle", handle, fr, ("grasp",), ("hold",), **_plastic(rng, sat=(0.0, 0.3)))
    return b


def _jug(rng) -> _Builder:
    b = _Builder()
    R, H = _u(rng, 0.35, 0.5), _u(rng, 0.9, 1.3)
    Rt = R * _u(rng, 0.8, 1.05)
    w = 0.04
    body = S.revolve(
        [[0, 0], [R, 0], [R * 1.05, H * 0.5], [Rt, H], [Rt - w, H], [R - w, 0.06], [0, 0.06]]
    )
    style = _ceramic(rng) if rng.uniform() < 0.5 else _plastic(rng)
    b.part("body", body, S.frame([0, 0, H / 2], (1, 0, 0), (0, 0, 1)), **style)
    a = np.deg2rad(_u(rng, 20, 40))
    L = _u(rng, 0.15, 0.25)
    poly = np.array([[0, -0.06], [L, 0.0], [L * 0.7, 0.06], [0, 0.04]])
    lip = S.slab(poly, np.array([0.3, 0.05, 0.05, 0.3]) * Rt)
    lip.apply_transform(S.transform(S.rot_y(-a), [Rt - 0.08, 0, H - 0.02]))
    tip = np.array([Rt - 0.08 + L * np.cos(a), 0, H - 0.02 + L * np.sin(a)])
    b.part(
        "lip",
        lip,
        S.frame(tip, (np.cos(a), 0, np.sin(a)), (0, 0, 1)),
        ("pour-with",),
        ("pour",),
        **style,
    )
    handle, fr = _side_handle(rng, -R * 1.02, H * 0.25, H * 0.85, _u(rng, 0.22, 0.32), 0.05)
    b.part("handle", handle, fr, ("grasp",), ("hold",), **style)
    z0 = H * _u(rng, 0.3, 0.45)
    rr = R * 1.05
    band = S.revolve(
        [[rr - 0.01, z0], [rr + 0.012, z0], [rr + 0.012, z0 + 0.15], [rr - 0.01, z0 + 0.15]],
        closed=True,
    )
    b.part("band", band, S.frame([rr, 0, z0], (1, 0, 0), (0, 0, 1)), **_decoration("jug", rng))
    return b


def _watering_can(rng) -> _Builder:
    b = _Builder()
    R, H = _u(rng, 0.35, 0.45), _u(rng, 0.6, 0.8)
    body = S.revolve([[0, 0], [R, 0], [R, H], [R * 0.8, H + 0.06], [0, H + 0.06]])
    style = _metal(rng) if rng.uniform() < 0.4 else _plastic(rng)
    b.part("body", body, S.frame([0, 0, H / 2], (1, 0, 0), (0, 0, 1)), **style)
    a = np.deg2rad(_u(rng, 35, 50))
    L = _u(rng, 0.8, 1.1)
    s = np.linspace(0, 1, 10)
    p0 = np.array([R * 0.7, 0, H * 0.15])
    path = p0 + s[:, None] * L * np.array([np.cos(a), 0, np.sin(a)])
    tube = S.tube(path, np.linspace(0.05, 0.03, 10), sides=14)
    rose_r = _u(rng, 0.06, 0.1)
    rose = S.revolve([[0, 0], [0.03, 0], [rose_r, 0.08], [rose_r, 0.1], [0, 0.1]], sections=24)
    d = np.array([np.cos(a), 0, np.sin(a)])
    rose.apply_transform(S.frame(path[-1] - 0.03 * d, x_hint=(0, 0, 1), z=d) @ np.eye(4))
    tip = path[-1] + 0.07 * d
    b.part("spout", [tube, rose], S.frame(tip, d, (0, 0, 1)), ("pour-with",), ("pour",), **style)
    hh = _u(rng, 0.3, 0.4)
    hpath = _arc([-R * 0.2, 0, H], [R * 0.75, hh], 0.0, np.pi, 18)
    handle = S.tube(hpath, 0.04, sides=12)
    b.part(
        "handle",
        handle,
        S.frame([-R * 0.2, 0, H + hh], (1, 0, 0), (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **style,
    )
    z0 = H * 0.45
    band = S.revolve(
        [[R - 0.01, z0], [R + 0.015, z0], [R + 0.015, z0 + 0.2], [R - 0.01, z0 + 0.2]], closed=True
    )
    b.part(
        "band", band, S.frame([R, 0, z0], (1, 0, 0), (0, 0, 1)), **_decoration("watering_can", rng)
    )
    return b


def _blade_poly(rng, L: float, W: float, kind: str) -> np.ndarray:
    """Counter-clockwise (x, z) outline of a blade with its edge along z = 0, tip at +x."""
    if kind == "knife":
        xs = np.linspace(0, L, 10)
        belly = np.minimum(W * 0.15 * np.sin(np.pi * xs / L), W * 0.1)
        edge = np.stack([xs, -0.3 * belly], 1)
        spine_z = W * (1 - (xs / L) ** _u(rng, 1.5, 3.0))
        spine = np.stack([xs[::-1], spine_z[::-1]], 1)
        return np.concatenate([edge, spine[1:-1]])
    # cleaver: rectangle with slightly rounded front
    return np.array([[0, 0], [L * 0.5, -0.01], [L, 0], [L * 1.02, W * 0.5], [L, W], [0, W]])


def _knife_like(rng, category: str) -> _Builder:
    b = _Builder()
    cleaver = category == "cleaver"
    L = _u(rng, 0.9, 1.2) if not cleaver else _u(rng, 0.8, 1.0)
    W = _u(rng, 0.14, 0.22) if not cleaver else _u(rng, 0.35, 0.5)
    poly = _blade_poly(rng, L, W, "cleaver" if cleaver else "knife")
    thick = np.where(poly[:, 1] <= W * 0.05, 0.004, 0.025 if not cleaver else 0.035)
    blade = S.slab(poly, thick, centre_thickness=0.02)
    b.part(
        "blade",
        blade,
        S.frame([L / 2, 0, 0], (1, 0, 0), (0, 0, -1)),
        ("cut-with",),
        ("cut_with",),
        **_metal(rng),
    )
    hl = _u(rng, 0.5, 0.7)
    hr = _u(rng, 0.045, 0.065)
    zc = W * 0.55 if not cleaver else W * 0.75
    if rng.uniform() < 0.5:
        handle = S.capsule(hr, [-hl, 0, zc], [-0.02, 0, zc])
    else:
        handle = S.box([hl, hr * 1.4, hr * 2.2], [-hl / 2 - 0.02, 0, zc])
    hstyle = _wood(rng) if rng.uniform() < 0.5 else _plastic(rng, sat=(0.0, 0.6))
    b.part(
        "handle",
        handle,
        S.frame([-hl / 2, 0, zc], (1, 0, 0), (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **hstyle,
    )
    if cleaver:
        cap = S.sphere(hr * 1.3, [-hl - 0.02, 0, zc])
        b.part(
            "end_cap",
            cap,
            S.frame([-hl - 0.02, 0, zc], (-1, 0, 0), (0, 0, 1)),
            **_decoration(category, rng),
        )
    else:
        bol = S.cylinder(hr * 1.25, [-0.06, 0, zc], [0.02, 0, zc], sections=20)
        b.part(
            "bolster",
            bol,
            S.frame([-0.02, 0, zc], (1, 0, 0), (0, 0, 1)),
            **_decoration(category, rng),
        )
    return b


def _scissors(rng) -> _Builder:
    b = _Builder()
    L = _u(rng, 0.6, 0.9)
    op = np.deg2rad(_u(rng, 8, 20))
    blades, style = [], _metal(rng)
    for sgn in (1, -1):
        poly = np.array(
            [[0, -0.05], [L, -0.005], [L, 0.005], [0, 0.06], [-0.1, 0.03], [-0.1, -0.03]]
        )
        bl = S.slab(poly, np.array([0.02, 0.004, 0.004, 0.02, 0.02, 0.02]))
        # blade lies in the x-y plane (slab is in x-z; rotate about x), opened by +-op/2
        bl.apply_transform(
            S.transform(S.rot_z(sgn * op / 2) @ S.rot_x(np.pi / 2), [0, 0, sgn * 0.012])
        )
        blades.append(bl)
    b.part(
        "blades",
        blades,
        S.frame([L / 2, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("cut-with",),
        ("cut_with",),
        **style,
    )
    loops = []
    lr = _u(rng, 0.1, 0.14)
    for sgn in (1, -1):
        ring = S.revolve(
            [[lr, -0.02], [lr + 0.035, -0.02], [lr + 0.035, 0.02], [lr, 0.02]], 28, closed=True
        )
        c = np.array([-0.1 - lr * 1.1, 0, 0]) + np.array([0, sgn * lr * 1.1, 0])
        ring.apply_translation(c)
        arm = S.capsule(0.025, [-0.08, sgn * 0.02, 0], c + np.array([lr * 0.9, -sgn * lr * 0.3, 0]))
        loops += [ring, arm]
    b.part(
        "loops",
        loops,
        S.frame([-0.1 - lr * 1.1, 0, 0], (1, 0, 0), (-1, 0, 0.0001)),
        ("grasp",),
        ("hold",),
        **_plastic(rng),
    )
    screw = S.cylinder(0.04, [0, 0, -0.04], [0, 0, 0.04], sections=20)
    b.part(
        "pivot", screw, S.frame([0, 0, 0.04], (1, 0, 0), (0, 0, 1)), **_decoration("scissors", rng)
    )
    return b


def _bowl_shell(R: float, depth: float, w: float, sx: float) -> trimesh.Trimesh:
    """Ellipsoidal open bowl (shell of thickness w), opening up at z = 0, scaled by sx in x."""
    a = np.linspace(0, np.pi / 2, 10)
    outer = np.stack([R * np.sin(a), -depth * np.cos(a)], 1)
    inner = np.stack([(R - w) * np.sin(a[::-1]), -(depth - w) * np.cos(a[::-1])], 1)
    prof = np.concatenate([outer, inner])
    prof[0, 0] = 0.0
    prof[-1, 0] = 0.0
    m = S.revolve(prof, sections=32)
    m.apply_scale([sx, 1, 1])
    return m


def _spoon_like(rng, category: str) -> _Builder:
    b = _Builder()
    style = _metal(rng) if rng.uniform() < 0.6 else _wood(rng)
    if category == "ladle":
        R, depth, sx = _u(rng, 0.25, 0.32), _u(rng, 0.18, 0.25), 1.0
    else:
        R, depth, sx = _u(rng, 0.1, 0.14), _u(rng, 0.03, 0.05), _u(rng, 1.3, 1.6)
    bowl = _bowl_shell(R, depth, 0.015, sx)
    b.part(
        "bowl",
        bowl,
        S.frame([0, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("scoop-with",),
        ("stir",),
        **style,
    )
    rise = np.deg2rad(_u(rng, 10, 25) if category == "spoon" else _u(rng, 45, 65))
    L = _u(rng, 0.6, 0.85) if category == "spoon" else _u(rng, 0.9, 1.2)
    s = np.linspace(0, 1, 12)
    d = np.array([-np.cos(rise), 0, np.sin(rise)])
    start = np.array([-R * sx * 0.85, 0, -0.01])
    path = start + s[:, None] * L * d
    hr = 0.022 if category == "spoon" else 0.028
    handle = S.tube(path, np.linspace(hr * 0.8, hr * 1.2, 12), sides=12)
    mid = start + 0.5 * L * d
    b.part("handle", handle, S.frame(mid, -d, (0, 0, 1)), ("grasp",), ("hold",), **style)
    end = path[-1]
    if category == "ladle":
        hook_path = np.concatenate(
            [
                end[None] + np.array([[-0.0, 0, 0.0]]),
                _arc(end + np.array([-0.08, 0, 0.02]), [0.08, 0.08], -0.2, np.pi + 0.6, 12),
            ]
        )
        hook = S.tube(hook_path[1:], 0.022, sides=10)
        hc = end + np.array([-0.08, 0, 0.02])
        b.part("hook", hook, S.frame(hc, (0, 1, 0), (0, 0, 1)), ("hang-onto",), (), **style)
        col = S.cylinder(hr * 1.8, start + 0.05 * d, start + 0.12 * d, sections=20)
        b.part("collar", col, S.frame(start + 0.1 * d, -d, (0, 0, 1)), **_decoration(category, rng))
    else:
        cap = S.capsule(hr * 1.7, end - 0.06 * d, end + 0.03 * d)
        b.part("end_cap", cap, S.frame(end, d, (0, 0, 1)), **_decoration(category, rng))
    return b


def _spatula(rng) -> _Builder:
    b = _Builder()
    Wd, Ln = _u(rng, 0.22, 0.32), _u(rng, 0.3, 0.42)
    tilt = np.deg2rad(_u(rng, 5, 20))
    poly = np.array([[0, -Wd * 0.35], [Ln, -Wd / 2], [Ln + 0.03, 0], [Ln, Wd / 2], [0, Wd * 0.35]])
    head = S.slab(poly, np.array([0.03, 0.008, 0.008, 0.008, 0.03]))
    head.apply_transform(S.transform(S.rot_y(tilt) @ S.rot_x(np.pi / 2)))
    hstyle = _plastic(rng)
    tipx = (Ln + 0.03) * np.cos(tilt)
    b.part(
        "head",
        head,
        S.frame([tipx / 2, 0, -(Ln / 2) * np.sin(tilt)], (1, 0, 0), (0, 0, 1)),
        ("scoop-with",),
        ("stir",),
        **hstyle,
    )
    L = _u(rng, 0.7, 0.9)
    rise = np.deg2rad(_u(rng, 5, 20))
    d = np.array([-np.cos(rise), 0, np.sin(rise)])
    start = np.array([0.02, 0, 0])
    handle = S.capsule(_u(rng, 0.03, 0.045), start, start + L * d)
    b.part(
        "handle",
        handle,
        S.frame(start + 0.5 * L * d, -d, (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **_wood(rng),
    )
    cap = S.sphere(0.06, start + L * d)
    b.part("end_cap", cap, S.frame(start + L * d, d, (0, 0, 1)), **_decoration("spatula", rng))
    return b


def _upright_handle(b: _Builder, handle: trimesh.Trimesh, L: float, style: dict) -> None:
    """Add the graspable ``handle`` of a striking tool: standing on +z from the origin, length L."""
    b.part(
        "handle",
        handle,
        S.frame([0, 0, L * 0.35], (0, 0, 1), (-1, 0, 0.001)),
        ("grasp",),
        ("hold",),
        **style,
    )


def _hammer(rng) -> _Builder:
    b = _Builder()
    L = _u(rng, 0.9, 1.2)
    hr = _u(rng, 0.04, 0.06)
    handle = S.capsule(hr, [0, 0, 0], [0, 0, L])
    _upright_handle(b, handle, L, _wood(rng) if rng.uniform() < 0.6 else _plastic(rng))
    hw = _u(rng, 0.08, 0.12)
    hx = _u(rng, 0.18, 0.26)
    metal = _metal(rng)
    if rng.uniform() < 0.5:
        head = S.cylinder(hw, [-0.05, 0, L], [hx, 0, L], sections=24)
    else:
        head = S.box([hx + 0.05, hw * 1.6, hw * 1.6], [(hx - 0.05) / 2, 0, L])
    face = S.cylinder(hw * 1.1, [hx - 0.01, 0, L], [hx + 0.04, 0, L], sections=24)
    b.part(
        "head",
        [head, face],
        S.frame([hx + 0.04, 0, L], (1, 0, 0), (0, 0, -1)),
        ("pound-with",),
        ("hit",),
        **metal,
    )
    cpath = _arc([-0.05, 0, L - 0.2], [0.22, 0.2], np.pi / 2, np.pi * 0.95, 10)
    claw = [
        S.tube(cpath + np.array([0, dy, 0]), np.linspace(0.045, 0.015, 10), sides=10)
        for dy in (-0.03, 0.03)
    ]
    b.part("claw", claw, S.frame(cpath[-1], (-1, 0, -1), (0, 0, 1)), (), (), **metal)
    col = S.cylinder(hr * 1.35, [0, 0, L - hw - 0.12], [0, 0, L - hw - 0.02], sections=20)
    b.part(
        "collar",
        col,
        S.frame([0, 0, L - hw - 0.07], (0, 0, 1), (1, 0, 0)),
        **_decoration("hammer", rng),
    )
    return b


def _mallet(rng) -> _Builder:
    b = _Builder()
    L = _u(rng, 0.8, 1.1)
    hr = _u(rng, 0.035, 0.05)
    handle = S.cylinder(hr, [0, 0, 0], [0, 0, L], sections=20)
    _upright_handle(b, handle, L, _wood(rng))
    hrad = _u(rng, 0.14, 0.2)
    hl = _u(rng, 0.22, 0.3)
    head = S.cylinder(hrad, [-hl, 0, L], [hl, 0, L], sections=32)
    b.part(
        "head",
        head,
        S.frame([hl, 0, L], (1, 0, 0), (0, 0, -1)),
        ("pound-with",),
        ("hit",),
        **(_plastic(rng, sat=(0.0, 0.4)) if rng.uniform() < 0.5 else _wood(rng)),
    )
    knob = S.sphere(hr * 2.0, [0, 0, -hr])
    b.part("knob", knob, S.frame([0, 0, -hr], (0, 0, -1), (1, 0, 0)), **_decoration("mallet", rng))
    return b


def _pan(rng) -> _Builder:
    b = _Builder()
    R, H, w = _u(rng, 0.4, 0.55), _u(rng, 0.12, 0.2), 0.03
    body = S.revolve([[0, 0], [R * 0.85, 0], [R, H], [R - w, H], [R * 0.85 - w, w], [0, w]])
    metal = _metal(rng)
    metal["color"] = tuple(0.35 * c for c in metal["color"])
    b.part("body", body, S.frame([0, 0, H / 2], (1, 0, 0), (0, 0, 1)), **metal)
    L = _u(rng, 0.6, 0.8)
    rise = np.deg2rad(_u(rng, 5, 20))
    d = np.array([-np.cos(rise), 0, np.sin(rise)])
    start = np.array([-R * 0.95, 0, H * 0.8])
    hh = _u(rng, 0.035, 0.05)
    handle = S.capsule(hh, start, start + L * d)
    b.part(
        "handle",
        handle,
        S.frame(start + 0.55 * L * d, -d, (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **_plastic(rng, sat=(0.0, 0.5)),
    )
    lr = 0.06
    loop = S.revolve(
        [[lr, -0.015], [lr + 0.03, -0.015], [lr + 0.03, 0.015], [lr, 0.015]], 24, closed=True
    )
    lc = start + L * d + (lr + 0.02) * d
    loop.apply_transform(S.transform(S.rot_y(-rise), lc))
    b.part("hang_loop", loop, S.frame(lc, (0, 0, 1), (1, 0, 0)), ("hang-onto",), (), **metal)
    disc = S.revolve([[0, w - 0.005], [R * 0.5, w - 0.005], [R * 0.5, w + 0.01], [0, w + 0.01]])
    b.part("base_disc", disc, S.frame([0, 0, w], (1, 0, 0), (0, 0, 1)), **_decoration("pan", rng))
    return b


def _fork(rng) -> _Builder:
    b = _Builder()
    style = _metal(rng)
    n = int(rng.integers(3, 5))
    tl = _u(rng, 0.2, 0.3)
    span = _u(rng, 0.12, 0.18)
    ys = np.linspace(-span / 2, span / 2, n)
    tines = [S.capsule(0.012, [0.0, y, 0], [tl, y, 0], count=(8, 8)) for y in ys]
    base = S.box([0.08, span + 0.04, 0.025], [-0.02, 0, 0])
    b.part(
        "tines",
        tines + [base],
        S.frame([tl, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("pierce-with",),
        ("stick",),
        **style,
    )
    L = _u(rng, 0.6, 0.8)
    handle = S.box([L, _u(rng, 0.045, 0.07), 0.025], [-0.06 - L / 2, 0, 0])
    b.part(
        "handle",
        handle,
        S.frame([-0.06 - L / 2, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **(style if rng.uniform() < 0.5 else _plastic(rng)),
    )
    cap = S.box([0.12, 0.09, 0.045], [-0.06 - L, 0, 0])
    b.part(
        "end_cap",
        cap,
        S.frame([-0.06 - L, 0, 0], (-1, 0, 0), (0, 0, 1)),
        **_decoration("fork", rng),
    )
    return b


def _brush(rng) -> _Builder:
    b = _Builder()
    L = _u(rng, 0.6, 0.8)
    hw = _u(rng, 0.06, 0.09)
    handle = S.box([L, hw, hw * 0.6], [-L / 2, 0, 0])
    b.part(
        "handle",
        handle,
        S.frame([-L / 2, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("grasp",),
        ("hold",),
        **_wood(rng),
    )
    bw = _u(rng, 0.25, 0.4)
    fer = S.box([0.12, bw, hw * 0.8], [0.06, 0, 0])
    b.part("ferrule", fer, S.frame([0.06, 0, 0], (1, 0, 0), (0, 0, 1)), **_decoration("brush", rng))
    bl = _u(rng, 0.15, 0.25)
    bristles = S.box([bl, bw * 0.95, hw * 0.7], [0.12 + bl / 2, 0, 0])
    st = _plastic(rng, sat=(0.0, 0.3))
    st.update(
        pattern="stripes",
        pattern_axis=(0.0, 1.0, 0.0),
        pattern_freq=60.0,
        pattern_color=tuple(0.75 * c for c in st["color"]),
    )
    b.part(
        "bristles",
        bristles,
        S.frame([0.12 + bl, 0, 0], (1, 0, 0), (0, 0, 1)),
        ("brush-with",),
        ("brush_with",),
        **st,
    )
    return b


_GENERATORS: dict[str, Callable[[np.random.Generator], _Builder]] = {
    "bottle": _bottle,
    "brush": _brush,
    "cleaver": partial(_knife_like, category="cleaver"),
    "cup": _cup,
    "fork": _fork,
    "hammer": _hammer,
    "jug": _jug,
    "kettle": _kettle,
    "knife": partial(_knife_like, category="knife"),
    "ladle": partial(_spoon_like, category="ladle"),
    "mallet": _mallet,
    "mug": _mug,
    "pan": _pan,
    "scissors": _scissors,
    "spatula": _spatula,
    "spoon": partial(_spoon_like, category="spoon"),
    "watering_can": _watering_can,
}

CATEGORIES: list[str] = sorted(_GENERATORS)


def asset_rng(category: str, seed: int, *extra: int) -> np.random.Generator:
    """The deterministic generator of (category, seed, *extra) (process independent)."""
    return np.random.default_rng([zlib.crc32(category.encode()), int(seed), *map(int, extra)])


def make_asset(category: str, seed: int) -> Asset:
    """Build instance ``seed`` of ``category`` (deterministic; see module docstring).

    Returns:
        Asset whose mesh has max |coord| = 0.5 and whose every face has a part index.
    """
    if category not in _GENERATORS:
        raise AffordError(f"unknown asset category {category!r}; choose one of {CATEGORIES}")
    builder = _GENERATORS[category](asset_rng(category, seed))
    return builder.build(category, int(seed))


def _probe() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    aff, fun = {}, {}
    for c in CATEGORIES:
        a = make_asset(c, 0)
        aff[c], fun[c] = a.affordances, a.functions
    return aff, fun


_CAT_AFF, _CAT_FUN = _probe()


def category_affordances(category: str) -> tuple[str, ...]:
    """Affordances of a category (the same for every instance)."""
    if category not in _CAT_AFF:
        raise AffordError(f"unknown asset category {category!r}; choose one of {CATEGORIES}")
    return _CAT_AFF[category]


def category_functions(category: str) -> tuple[str, ...]:
    """Correspondence functions of a category (the same for every instance)."""
    if category not in _CAT_FUN:
        raise AffordError(f"unknown asset category {category!r}; choose one of {CATEGORIES}")
    return _CAT_FUN[category]


FUNCTIONS: list[str] = sorted({f for v in _CAT_FUN.values() for f in v})
AFFORDANCES: list[str] = sorted({a for v in _CAT_AFF.values() for a in v})


def taxonomy(seed: int = 0) -> Taxonomy:
    """The synthetic world's taxonomy built from its part definitions (instance ``seed`` of
    every category; part names, functions and affordances are the same for every instance).

    The same data ships as ``afford/taxonomies/synth.yaml`` (``Taxonomy.shipped("synth")``),
    which readers use without building any asset.
    """
    parts: dict[str, dict[str, list[str]]] = {}
    affordances: dict[str, dict[str, list[str]]] = {}
    for c in CATEGORIES:
        a = make_asset(c, seed)
        parts[c] = {p.name: list(p.functions) for p in a.parts}
        affordances[c] = {p.name: list(p.affordances) for p in a.parts if p.affordances}
    return Taxonomy(functions=list(FUNCTIONS), parts=parts, affordances=affordances, name="synth")


def export_asset(asset: Asset, path: str | os.PathLike) -> Path:
    """Atomically export the asset mesh with baked face colours (format from the suffix:
    .ply, .obj, .glb, .stl ...).  Part indices are stored as face colours only; keep the
    Asset (or ``face_part``) for labels."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("ply", "obj", "glb", "gltf", "stl", "off"):
        raise AffordError(f"{path}: unsupported mesh format .{suffix} (use .ply, .obj or .glb)")
    mesh = asset.mesh.copy()
    colors = asset.face_colors()
    mesh.visual = trimesh.visual.ColorVisuals(
        mesh, face_colors=np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], 1)
    )
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=suffix)
    return path

"""Real 3-D assets -> normalised, textured triangle meshes (issue 14 part 2, REFERENCE_NOTES D).

Reads GLB / glTF / OBJ (+MTL) / PLY / STL with trimesh.  A scene graph is flattened: every
node's geometry is transformed by the node's world transform (parents applied, as the
official pipeline "clears parents and applies transforms") and concatenated into one mesh.
Appearance is kept per face corner: base-colour textures with their UVs (glTF
``baseColorTexture`` x ``baseColorFactor``, OBJ ``map_Kd`` x ``Kd``), vertex colours and face
colours (:class:`SurfaceMaterial`, the renderer's material).  The mesh is normalised as in the
paper: centred on its bounding-box centre and scaled so ``max |coord| = 0.5``
(``x_n = scale * (x - centre)``).

Each face remembers which piece of the source it came from (node and geometry names,
:attr:`MeshAsset.groups`); :func:`match_parts` maps those names onto the taxonomy's part names
(``"mug_handle.001"`` -> ``handle``) for per-pixel part ids (the simulated labeller, GT masks).

Categories come, in this order, from a manifest (CSV with columns ``file,category[,id]`` or
JSON ``{file: category}`` / ``[{"file", "category", "id"}]``), a sidecar ``<stem>.json``
(``{"category": ..., "id": ...}``) or the official file name ``<uuid>---<category>.glb``.
A file that cannot be used raises :class:`~afford.errors.DataError` naming it and the reason.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afford.data.io import read_json
from afford.errors import DataError

__all__ = [
    "MESH_SUFFIXES",
    "AssetSource",
    "MeshAsset",
    "asset_id",
    "SurfaceMaterial",
    "discover_assets",
    "load_asset",
    "match_parts",
    "sample_texture",
]

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
#: 3-D formats that are not read: listed as failures (convert them to GLB), not skipped silently
UNSUPPORTED_SUFFIXES = (".fbx", ".blend", ".dae", ".3ds", ".max", ".c4d", ".usd", ".usda",
                        ".usdc", ".usdz", ".x3d", ".wrl", ".off", ".3mf")  # fmt: skip
MIN_EXTENT = 1e-9  # a mesh whose largest bounding-box side is below this is degenerate


# ---------------------------------------------------------------------------------------------
# appearance


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping lookup of texture colours at UVs (OpenGL convention, v up).

    Args:
        image: (h, w, 3) texture, uint8 (0..255) or float in [0, 1]; row 0 is the top (v = 1).
        uv: (n, 2) texture coordinates.

    Returns:
        (n, 3) float64 colours in [0, 1]. Texel ``(r, c)`` has its centre at
        ``u = (c + 0.5) / w, v = 1 - (r + 0.5) / h``.
    """
    h, w = image.shape[:2]
    x = np.asarray(uv[:, 0], dtype=np.float64) * w - 0.5
    y = (1.0 - np.asarray(uv[:, 1], dtype=np.float64)) * h - 0.5
    x = np.where(np.isfinite(x), x, 0.0)
    y = np.where(np.isfinite(y), y, 0.0)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    flat = image.reshape(-1, image.shape[2])[:, :3]  # gathers only: no copy of the texture
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0

    def texel(r, c):
        return flat[r * w + c].astype(np.float64)

    top = texel(y0, x0) * (1 - fx) + texel(y0, x1) * fx
    bottom = texel(y1, x0) * (1 - fx) + texel(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy) * scale


@dataclass
class SurfaceMaterial:
    """Per-face appearance of a flattened asset; called by the renderer as its material.

    ``albedo = face_color * (bary . corner_color) * texture(bary . corner_uv)``, the last two
    only where present.

    Attributes:
        face_color: (F, 3) base colour (material factor or face colour) in [0, 1].
        corner_color: (F, 3, 3) vertex colours per face corner, or None.
        corner_uv: (F, 3, 2) texture coordinates per face corner (rows of textureless faces
            are 0), or None.
        face_texture: (F,) index into ``textures`` (-1 = no texture).
        textures: list of (h, w, 3) uint8 base-colour images.
    """

    face_color: np.ndarray
    corner_color: np.ndarray | None = None
    corner_uv: np.ndarray | None = None
    face_texture: np.ndarray | None = None
    textures: list[np.ndarray] = field(default_factory=list)

    def __call__(self, faces: np.ndarray, points: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Albedo (n, 3) of surface points on ``faces`` (n,) with barycentrics ``bary`` (n, 3)."""
        out = self.face_color[faces].astype(np.float64)
        if self.corner_color is not None:
            out *= np.einsum("nk,nkc->nc", bary, self.corner_color[faces])
        if self.textures and self.face_texture is not None and self.corner_uv is not None:
            tex = self.face_texture[faces]
            for k in np.flatnonzero(np.bincount(tex + 1, minlength=len(self.textures) + 1)[1:]):
                sel = tex == k
                uv = np.einsum("nk,nkc->nc", bary[sel], self.corner_uv[faces[sel]])
                out[sel] *= sample_texture(self.textures[int(k)], uv)
        return np.clip(out, 0.0, 1.0)

    @property
    def textured(self) -> bool:
        return (
            bool(self.textures) and self.face_texture is not None and (self.face_texture >= 0).any()
        )


def _rgb(color: Any, default=(0.8, 0.8, 0.8)) -> np.ndarray:
    """A colour given as uint8 or float RGB(A) -> (3,) float in [0, 1]."""
    if color is None:
        return np.asarray(default, dtype=np.float64)
    c = np.asarray(color).reshape(-1)
    if c.size < 3:
        return np.asarray(default, dtype=np.float64)
    c = c[:3].astype(np.float64)
    if np.asarray(color).dtype == np.uint8 or c.max() > 1.0:
        c = c / 255.0
    return np.clip(c, 0.0, 1.0)


def _image(img: Any) -> np.ndarray | None:
    """A PIL image (or array) -> (h, w, 3) uint8 RGB, None when unusable."""
    if img is None:
        return None
    try:
        arr = np.asarray(img.convert("RGB")) if hasattr(img, "convert") else np.asarray(img)
    except Exception:  # noqa: BLE001 -- a broken embedded image only loses the texture
        return None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] < 3:
        return None
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _appearance(geom, textures: list, cache: dict) -> dict[str, np.ndarray | None]:
    """Per-face colour, corner colours, corner UVs and texture index of one trimesh geometry."""
    n_f = len(geom.faces)
    faces = np.asarray(geom.faces)
    out: dict[str, np.ndarray | None] = {
        "face_color": np.tile(_rgb(None), (n_f, 1)),
        "corner_color": None,
        "corner_uv": None,
        "face_texture": np.full(n_f, -1, dtype=np.int64),
    }
    visual = geom.visual
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        mat = getattr(visual, "material", None)
        image, factor = None, None
        if mat is not None:
            if hasattr(mat, "baseColorTexture") or hasattr(mat, "baseColorFactor"):
                image = getattr(mat, "baseColorTexture", None)
                factor = getattr(mat, "baseColorFactor", None)
            else:  # SimpleMaterial (OBJ/MTL): map_Kd and Kd
                image = getattr(mat, "image", None)
                factor = getattr(mat, "diffuse", None)
        base = _rgb(factor, default=(1.0, 1.0, 1.0) if image is not None else (0.8, 0.8, 0.8))
        out["face_color"] = np.tile(base, (n_f, 1))
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(geom.vertices):
            key = id(image)
            if key not in cache:
                arr = _image(image)
                cache[key] = -1 if arr is None else len(textures)
                if arr is not None:
                    textures.append(arr)
            if cache[key] >= 0:
                out["face_texture"][:] = cache[key]
                out["corner_uv"] = np.asarray(uv, dtype=np.float64)[faces]
        attrs = getattr(visual, "vertex_attributes", None) or {}
        colors = attrs.get("color") if hasattr(attrs, "get") else None
        if colors is not None and len(colors) == len(geom.vertices):
            out["corner_color"] = np.stack([_rgb(c) for c in np.asarray(colors)])[faces]
    elif kind == "vertex":
        vc = np.asarray(visual.vertex_colors)
        out["corner_color"] = (vc[:, :3].astype(np.float64) / 255.0)[faces]
        out["face_color"] = np.ones((n_f, 3))
    elif kind == "face":
        fc = np.asarray(visual.face_colors)
        out["face_color"] = fc[:, :3].astype(np.float64) / 255.0
    return out


# ---------------------------------------------------------------------------------------------
# meshes


@dataclass
class MeshAsset:
    """One asset, flattened and normalised (object frame: ``max |coord| = 0.5``).

    Attributes:
        id, category: the asset's id and category.
        path: the source file.
        mesh: ``trimesh.Trimesh`` in the normalised frame (faces in source order).
        material: :class:`SurfaceMaterial` of the faces.
        groups: names of the source pieces (``"<node>|<geometry>"``).
        face_group: (F,) index into ``groups``.
        scale, centre: ``x_normalised = scale * (x_source - centre)`` (source after the scene
            graph's transforms).
    """

    id: str
    category: str
    path: Path
    mesh: Any
    material: SurfaceMaterial
    groups: list[str]
    face_group: np.ndarray
    scale: float
    centre: np.ndarray

    @property
    def n_faces(self) -> int:
        return int(len(self.mesh.faces))


def _load_scene(path: Path):
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # noqa: BLE001 -- trimesh raises anything on a broken file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read the mesh ({type(exc).__name__}: {reason})") from None
    return loaded


def load_asset(path: str | os.PathLike, asset_id: str = "", category: str = "") -> MeshAsset:
    """Read, flatten and normalise one mesh file (see the module docstring).

    Raises:
        DataError: unreadable file, no triangles, non-finite vertices or zero extent.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    scene = _load_scene(path)
    verts, faces, groups, face_group = [], [], [], []
    pieces: list[dict] = []
    textures: list[np.ndarray] = []
    cache: dict = {}
    offset = 0
    graph = scene.graph
    for node in sorted(graph.nodes_geometry):
        transform, geom_name = graph[node]
        geom = scene.geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds, lines, empty meshes carry no surface
        v = np.asarray(geom.vertices, dtype=np.float64)
        v = v @ np.asarray(transform, dtype=np.float64)[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64)
        look = _appearance(geom, textures, cache)
        if np.linalg.det(np.asarray(transform, dtype=np.float64)[:3, :3]) < 0:
            f = f[:, ::-1]  # a mirroring transform flips the winding: keep corners aligned
            for key in ("corner_uv", "corner_color"):
                if look[key] is not None:
                    look[key] = look[key][:, ::-1]
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
        pieces.append(look)
        groups.append(f"{node}|{geom_name}")
        face_group.append(np.full(len(f), len(groups) - 1, dtype=np.int64))
    if not faces:
        raise DataError(f"{path}: no triangle mesh in the file (empty scene or points only)")
    V = np.concatenate(verts)
    F = np.concatenate(faces)
    if not np.isfinite(V).all():
        raise DataError(f"{path}: vertices with nan/inf coordinates")
    tri = V[F]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    keep = area > 0
    if not keep.any():
        raise DataError(f"{path}: degenerate mesh (every triangle has zero area)")
    used = np.zeros(len(V), dtype=bool)
    used[F[keep].ravel()] = True
    lo, hi = V[used].min(axis=0), V[used].max(axis=0)
    centre = (lo + hi) / 2.0
    half = float(np.abs(V[used] - centre).max())
    if 2 * half < MIN_EXTENT:
        raise DataError(f"{path}: degenerate mesh (zero extent)")
    scale = 0.5 / half
    Vn = (V - centre) * scale
    mesh = trimesh.Trimesh(Vn, F[keep], process=False, validate=False)

    def cat(key: str, shape: tuple, fill: float):
        if all(p[key] is None for p in pieces):
            return None
        parts = [
            p[key] if p[key] is not None else np.full((len(p["face_texture"]), *shape), fill)
            for p in pieces
        ]
        return np.concatenate(parts)[keep]

    material = SurfaceMaterial(
        face_color=np.concatenate([p["face_color"] for p in pieces])[keep],
        corner_color=cat("corner_color", (3, 3), 1.0),
        corner_uv=cat("corner_uv", (3, 2), 0.0),
        face_texture=np.concatenate([p["face_texture"] for p in pieces])[keep],
        textures=textures,
    )
    return MeshAsset(
        id=asset_id or _sanitise(path.stem),
        category=category,
        path=path,
        mesh=mesh,
        material=material,
        groups=groups,
        face_group=np.concatenate(face_group)[keep],
        scale=scale,
        centre=centre,
    )


# ---------------------------------------------------------------------------------------------
# part names from node / geometry names

_TOKEN = re.compile(r"[a-z]+")


def _tokens(name: str) -> list[str]:
    return _TOKEN.findall(name.lower())


def _contains(tokens: list[str], sub: list[str]) -> bool:
    n = len(sub)
    return n > 0 and any(tokens[i : i + n] == sub for i in range(len(tokens) - n + 1))


def match_parts(groups: list[str], names: dict[str, str]) -> np.ndarray:
    """Part index of every source piece from its node / geometry name.

    Args:
        groups: piece names ``"<node>|<geometry>"``.
        names: part name (or alias) -> index of the canonical part.

    Returns:
        (len(groups),) int64, -1 where no part name occurs as a word sequence in the node
        name (tried first) or the geometry name; the longest matching part name wins.
    """
    table = sorted(((_tokens(n), i) for n, i in names.items()), key=lambda x: -len(x[0]))
    out = np.full(len(groups), -1, dtype=np.int64)
    for g, name in enumerate(groups):
        for piece in name.split("|"):
            toks = _tokens(piece)
            hit = next((i for sub, i in table if _contains(toks, sub)), -1)
            if hit >= 0:
                out[g] = hit
                break
    return out


# ---------------------------------------------------------------------------------------------
# discovery: files, ids and categories


@dataclass(frozen=True)
class AssetSource:
    """A mesh file to prepare: its id (``[a-z0-9_-]+``), category and path."""

    id: str
    category: str
    path: Path


_BAD_ID = re.compile(r"[^a-z0-9_-]+")


def asset_id(name: str) -> str:
    """An asset id of the format (``[a-z0-9_-]+``) from a file stem or uuid: lower-cased,
    other characters replaced by ``-``."""
    return _BAD_ID.sub("-", name.lower()).strip("-") or "asset"


_sanitise = asset_id


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """file name (relative to the asset folder, or bare) -> {"category", "id"?}."""
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    out: dict[str, dict[str, str]] = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if not {"file", "category"} <= cols:
                raise DataError(f"{path}: a CSV manifest needs the columns 'file' and 'category'")
            for n, row in enumerate(reader, start=2):
                if not row.get("file") or not row.get("category"):
                    raise DataError(f"{path}: line {n}: empty 'file' or 'category'")
                out[row["file"]] = {k: row[k] for k in ("category", "id") if row.get(k)}
        return out
    data = read_json(path)
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(v, str) or not v:
                raise DataError(f"{path}: {k!r}: expected a category string")
            out[k] = {"category": v}
    elif isinstance(data, list):
        for n, e in enumerate(data):
            if not isinstance(e, dict) or not e.get("file") or not e.get("category"):
                raise DataError(f"{path}: entry {n}: expected {{'file', 'category'[, 'id']}}")
            out[e["file"]] = {k: str(e[k]) for k in ("category", "id") if e.get(k)}
    else:
        raise DataError(f"{path}: a JSON manifest is {{file: category}} or a list of entries")
    return out


def discover_assets(
    folder: str | os.PathLike, manifest: str | os.PathLike | None = None
) -> tuple[list[AssetSource], list[dict[str, str]]]:
    """Mesh files under ``folder`` (recursive, sorted) with ids and categories.

    Returns:
        (sources sorted by id, failures ``{"asset", "file", "reason"}`` for files without a
        category or with a duplicate id).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--assets {root}: folder not found")
    entries = _read_manifest(Path(manifest)) if manifest is not None else {}
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in MESH_SUFFIXES and not p.name.startswith(".")
    )
    sources: dict[str, AssetSource] = {}
    failures: list[dict[str, str]] = [
        {"asset": _sanitise(p.stem.partition("---")[0] or p.stem),
         "file": p.relative_to(root).as_posix(),
         "reason": f"{p.name}: {p.suffix.lower()} meshes are not read; convert it to GLB "
                   f"(one of {', '.join(MESH_SUFFIXES)})"}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in UNSUPPORTED_SUFFIXES and not p.name.startswith(".")
    ]  # fmt: skip
    for p in files:
        rel = p.relative_to(root).as_posix()
        entry = entries.get(rel) or entries.get(p.name)
        sidecar = p.with_suffix(".json")
        uid, sep, cat = p.stem.partition("---")
        if entry is not None:
            category, aid = entry["category"], entry.get("id", uid if sep else p.stem)
        elif sidecar.is_file() and sidecar != p:
            meta = read_json(sidecar)
            if not isinstance(meta, dict) or not isinstance(meta.get("category"), str):
                failures.append(
                    {"asset": _sanitise(p.stem), "file": rel,
                     "reason": f"{sidecar.name}: sidecar without a 'category' string"}
                )  # fmt: skip
                continue
            category, aid = meta["category"], str(meta.get("id", uid if sep else p.stem))
        elif sep and uid and cat:
            category, aid = cat, uid
        else:
            failures.append(
                {"asset": _sanitise(p.stem), "file": rel,
                 "reason": "no category: name the file '<id>---<category>.<ext>', add a "
                           f"sidecar {p.stem}.json or list it in a manifest"}
            )  # fmt: skip
            continue
        aid = _sanitise(aid)
        if aid in sources:
            failures.append(
                {"asset": aid, "file": rel,
                 "reason": f"duplicate asset id {aid!r} (also {sources[aid].path.name})"}
            )  # fmt: skip
            continue
        sources[aid] = AssetSource(aid, category, p)
    return [sources[k] for k in sorted(sources)], failures

"""Real 3-D assets -> the correspondence dataset format (issue 14 parts 3 and 6).

``prepare_correspondence(assets, taxonomy, labeler, out)`` is ``afford prepare
correspondence``: for every mesh under ``assets`` (:mod:`afford.prepare.assets`: flattened,
textured, normalised to ``max |coord| = 0.5``) it renders the official camera rig
(REFERENCE_NOTES D: 19 fixed views on a sphere of radius 2 around the origin, 490 x 490 px,
white background) with the exact ray caster (:mod:`afford.raycast`): RGB with the asset's
textures, z-depth, object mask, cameras and (via depth) the visible surface point of every
pixel, matched to a dense surface point cloud (pixel -> surface point index maps, step 4 of
the official pipeline).  A part labeller (:mod:`afford.prepare.labelers`) proposes S boxes per
(view, function); :func:`afford.geometry.pseudolabel.pseudo_label_masks` turns them into the
paper's pseudo-label masks (Sec. 4.1); multi-view correspondences feed the spatial loss
(Eq. 2).  Crop boxes are the paper's 1.2 x square crops of the mask (REFERENCE_NOTES C).

Everything is written in docs/correspondence-format.md (``afford train correspondence`` and
``afford eval correspondence`` read it unchanged).  Per asset, every file is written into a
temporary folder renamed into place at the end, so a run killed at any moment leaves whole
assets only; re-running the command skips finished assets (resume).  Each asset's random
choices come from its own generator (seed, asset id), so the bytes do not depend on the number
of worker processes.  An asset that cannot be used is listed in ``failures.jsonl`` with its
reason; the others are unaffected.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from afford import __version__
from afford.data.correspondence import dataset_index, eval_index, write_asset_arrays
from afford.data.crops import square_crop_box
from afford.data.io import (
    output_dir,
    read_image,
    read_json,
    read_npz,
    remove_entries,
    write_image,
    write_json,
    write_text,
)
from afford.errors import AffordError, DataError, UsageError
from afford.geometry.camera import backproject, sphere_cameras
from afford.geometry.pseudolabel import PartQuery, PseudoLabelConfig, pseudo_label_masks
from afford.geometry.pseudolabel import keyed_rng as _rng
from afford.geometry.visible import (
    match_to_cloud,
    neighbour_view_pairs,
    pair_correspondences,
    stratified_subsample,
)
from afford.prepare.assets import (
    MESH_SUFFIXES,
    AssetSource,
    MeshAsset,
    asset_id,
    discover_assets,
    load_asset,
    match_parts,
)
from afford.taxonomy import Taxonomy

__all__ = [
    "GENERATOR",
    "GENERATOR_VERSION",
    "STATE_FILE",
    "FAILURES_FILE",
    "PrepareConfig",
    "load_taxonomy",
    "render_asset",
    "prepare_correspondence",
]

log = logging.getLogger(__name__)

GENERATOR = "afford.prepare.correspondence"
GENERATOR_VERSION = "1"
STATE_FILE = "prepare.json"
FAILURES_FILE = "failures.jsonl"
SPLIT_MAP = {"train": "train", "val": "val", "test": "test", "unseen_test": "test"}


@dataclass
class PrepareConfig:
    """Options of ``afford prepare correspondence`` (defaults: the official rig)."""

    views: int = 19  # cameras on the sphere (REFERENCE_NOTES D: 19)
    image_size: int = 490  # rendered view side in px (official: 490)
    distance: float = 2.0  # camera distance from the origin (official: 2)
    fov_deg: float = 40.0  # horizontal field of view (Blender's default 50 mm lens: 39.6)
    elevation_deg: tuple[float, float] = (-15.0, 65.0)  # band of camera elevations
    crop_scale: float = 1.2  # training crop: 1.2 x the mask's longer side (REFERENCE_NOTES C)
    samples: int = 4  # labeller box samples per (view, function) (paper: 4)
    cloud_points: int = 40000  # dense surface samples per asset (at least)
    cloud_spacing: float = 0.007  # ... and at least one per spacing^2 of area (NN tol 0.01)
    max_cloud_points: int = 400000
    neighbours: int = 4  # spatial pairs: each view with its nearest views
    corr_per_pair: int = 512  # stored multi-view correspondences per view pair
    seed: int = 0
    pseudo: dict[str, float] = field(default_factory=dict)  # PseudoLabelConfig overrides

    def check(self) -> PrepareConfig:
        if self.views < 2:
            raise UsageError(f"--views must be >= 2 (multi-view pairs), got {self.views}")
        if self.image_size < 16:
            raise UsageError(f"--image-size must be >= 16, got {self.image_size}")
        if not (0.9 < self.distance < math.inf):  # also refuses nan
            raise UsageError(
                "--distance must be finite and exceed 0.9 (the object fits in a 0.87 ball), "
                f"got {self.distance}"
            )
        if not 1.0 < self.fov_deg < 170.0:
            raise UsageError(f"--fov must be in (1, 170) degrees, got {self.fov_deg}")
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if self.cloud_points < 1:
            raise UsageError(f"--cloud-points must be >= 1, got {self.cloud_points}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        PseudoLabelConfig(**self.pseudo)
        return self

    def cameras(self):
        """The fixed camera rig (object frame, OpenCV)."""
        s = self.image_size
        return sphere_cameras(
            self.views, self.distance, self.fov_deg, s, s, tuple(self.elevation_deg)
        )


def load_taxonomy(path: str | os.PathLike) -> Taxonomy:
    """``--taxonomy``: the official folder (``Taxonomy.from_official``), afford's single file
    (``.json`` / ``.yaml``) or the name of a shipped one (``paper``, ``synth``)."""
    p = Path(path)
    if p.suffix == "" and "/" not in str(path) and not p.exists():
        return Taxonomy.shipped(str(path))
    if not p.exists():
        raise UsageError(f"--taxonomy {path}: no such folder or file")
    try:
        return Taxonomy.from_official(p) if p.is_dir() else Taxonomy.load(p)
    except DataError:
        raise
    except AffordError as exc:  # a malformed file is bad data (exit 1), like malformed JSON
        raise DataError(f"--taxonomy {exc}") from None


# ---------------------------------------------------------------------------------------------
# one asset


def _part_table(taxonomy: Taxonomy, category: str) -> tuple[list[str], dict[str, int]]:
    """Canonical parts of a category (index order) and name/alias -> index."""
    parts = list(taxonomy.parts[category])
    names = {p: i for i, p in enumerate(parts)}
    for alias, canonical in taxonomy.aliases.get(category, {}).items():
        if canonical in names:
            names[alias] = names[canonical]
    return parts, names


def render_asset(asset: MeshAsset, cfg: PrepareConfig, face_part: np.ndarray | None = None):
    """Render the camera rig of one asset.

    Returns dict: ``rgb`` (V,H,W,3) uint8, ``mask`` (V,H,W) bool, ``depth`` (V,H,W) float32
    (inf = background), ``part_id`` (V,H,W) int16, ``K``/``R`` (V,3,3), ``t`` (V,3),
    ``centres`` (V,3) camera centres.
    """
    from afford.raycast import Light, Scene

    scene = Scene(
        asset.mesh,
        material=asset.material,
        face_part=face_part,
        face_specular=np.full(asset.n_faces, 0.1),
        face_shininess=np.full(asset.n_faces, 20.0),
        cull=True,
    )
    s = cfg.image_size
    white = np.ones((s, s, 3))
    light = Light(direction=np.array([0.3, -0.5, -0.8]), ambient=0.45, diffuse=0.65, specular=0.3)
    out: dict[str, list] = {k: [] for k in ("rgb", "mask", "depth", "part_id")}
    cams = cfg.cameras()
    for v, cam in enumerate(cams):
        view = scene.render(cam, white, light)
        if not view.mask.any():
            raise DataError(f"{asset.path}: view {v} shows no surface (inside-out or open mesh?)")
        out["rgb"].append(view.rgb)
        out["mask"].append(view.mask)
        out["depth"].append(np.where(view.mask, view.depth, np.inf).astype(np.float32))
        out["part_id"].append(view.part_id)
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays["K"] = np.stack([c.K for c in cams])
    arrays["R"] = np.stack([c.R for c in cams])
    arrays["t"] = np.stack([c.t for c in cams])
    arrays["centres"] = np.stack([c.center for c in cams])
    return arrays


def _boxes(labeler, image, query: PartQuery, view: int, samples: int, name: str) -> np.ndarray:
    b = np.asarray(labeler(image, query, view), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise DataError(f"labeller {name}: expected ({samples}, 4) boxes, got {b.shape}")
    out = np.full((samples, 4), np.nan)
    out[: min(samples, len(b))] = b[:samples]
    return out


def _prepare_one(
    src: AssetSource,
    split: str,
    official_split: str | None,
    taxonomy: Taxonomy,
    labelers,
    spec: str,
    cfg: PrepareConfig,
    root: Path,
) -> dict[str, Any]:
    """Render (or reuse the stored render), label and write one asset into ``assets/<id>``
    (atomically); returns its record."""
    aid, category = src.id, src.category
    if category not in taxonomy.parts:
        raise DataError(
            f"{src.path}: category {category!r} has no parts in the taxonomy ({taxonomy.source})"
        )
    functions = taxonomy.functions_of(category)
    if not functions:
        raise DataError(f"{src.path}: category {category!r} has no functions in the taxonomy")
    parts, names = _part_table(taxonomy, category)
    final = root / "assets" / aid
    if (final / "record.json").is_file():  # rendered before, with another labeller: relabel
        r = _load_render(root, aid)
    else:
        r = _render_stage(src, cfg, parts, names)
    V = cfg.views
    mask, depth, part_id = r["mask"], r["depth"], r["part_id"]
    K, R, t = r["K"], r["R"], r["t"]
    has_parts = bool((part_id >= 0).any())
    cloud, surface_part = r["surface_points"], r["surface_part"]
    crop_box = np.stack([square_crop_box(m, cfg.crop_scale) for m in mask]).astype(np.int32)
    pts = backproject(depth, K, R, t)
    pcfg = PseudoLabelConfig(**cfg.pseudo)
    cloud_index = match_to_cloud(pts, cloud.astype(np.float64), pcfg.nn_tol)

    function_parts = {f: taxonomy.parts_for(category, f) for f in functions}
    labeler = labelers.for_asset(
        aid, category, part_id=part_id if has_parts else None, parts=parts if has_parts else None
    )
    S = cfg.samples
    n_f = len(functions)
    boxes = np.full((V, n_f, S, 4), np.nan, dtype=np.float32)
    pseudo_mask = np.zeros((V, n_f) + mask.shape[1:], dtype=bool)
    pseudo_valid = np.zeros((V, n_f), dtype=bool)
    for fi, f in enumerate(functions):
        query = PartQuery(category, f, " / ".join(function_parts[f]))
        for v in range(V):
            boxes[v, fi] = _boxes(labeler, r["rgb"][v], query, v, S, labelers.name)
        res = pseudo_label_masks(
            cloud, pts, mask, K, R, t, boxes[:, fi],
            crop_sizes=crop_box[:, 2], cfg=pcfg, cloud_index=cloud_index,
        )  # fmt: skip
        pseudo_mask[:, fi] = res.mask
        pseudo_valid[:, fi] = res.valid

    # multi-view correspondences (spatial loss, Eq. 2): half inside the pseudo-labelled parts
    pseudo_any = (pseudo_mask & pseudo_valid[:, :, None, None]).any(axis=1)
    pairs = neighbour_view_pairs(r["centres"], cfg.neighbours)
    object_px = [np.argwhere(m) for m in mask]

    def candidates(p: int, i: int) -> np.ndarray:
        # a stratified random subset of view i's object pixels (a few times the budget,
        # enough after the visibility test), then the budget from the visible ones
        cand = object_px[i]
        inside = pseudo_any[i][cand[:, 0], cand[:, 1]]
        if len(cand) > 8 * cfg.corr_per_pair:
            cand = cand[
                stratified_subsample(inside, 8 * cfg.corr_per_pair, _rng(cfg.seed, aid, "mvc", p))
            ]
        valid_i = np.zeros_like(mask[i])
        valid_i[cand[:, 0], cand[:, 1]] = True
        return valid_i

    def pick(p: int, i: int, s_: np.ndarray) -> np.ndarray:
        inside = pseudo_any[i][s_[:, 0], s_[:, 1]]
        return stratified_subsample(inside, cfg.corr_per_pair, _rng(cfg.seed, aid, "mv", p))

    mv = pair_correspondences(
        pairs, pts, K, R, t, depth, mask, cfg.corr_per_pair, pick,
        candidates=candidates, part_id=part_id,
    )  # fmt: skip

    tmp = root / "assets" / f".tmp-{aid}"
    if tmp.exists():
        shutil.rmtree(tmp)
    rgb_paths = []
    for v in range(V):
        write_image(tmp / "rgb" / f"{v:02d}.png", r["rgb"][v], png_level=1)
        rgb_paths.append(f"assets/{aid}/rgb/{v:02d}.png")
    views = dict(
        K=K, R=R, t=t, mask=mask, pseudo_mask=pseudo_mask, pseudo_valid=pseudo_valid,
        boxes=boxes, crop_box=crop_box,
    )  # fmt: skip
    if has_parts:
        views["part_id"] = part_id
        views["gt_mask"] = np.stack(
            [np.isin(part_id, [parts.index(p) for p in function_parts[f]]) for f in functions],
            axis=1,
        )
    files = write_asset_arrays(
        tmp,
        aid,
        views,
        dict(depth=depth, surface_points=cloud, surface_part=surface_part),
        pairs,
        mv,
        compresslevel=1,  # zlib level 1: ~3x faster to write than level 6 (benchmarks/prepare.py)
    )
    record = {
        "category": category,
        "split": split,
        "n_views": V,
        "image_size": [cfg.image_size, cfg.image_size],
        "rgb": rgb_paths,
        **files,
        "parts": parts,
        "functions": functions,
        "function_parts": function_parts,
        "source": {k: v for k, v in r["source"].items() if k != "normalization"},
        "normalization": r["source"]["normalization"],
    }
    if official_split is not None:
        record["official_split"] = official_split
    edge = mask[:, [0, -1], :].any(axis=(1, 2)) | mask[:, :, [0, -1]].any(axis=(1, 2))
    if edge.any():
        log.warning(
            "%s: the object touches the image border in %d of %d views (clipped; a larger "
            "--distance or --fov frames it)", aid, int(edge.sum()), V,
        )  # fmt: skip
    stats = {
        "views_touching_border": int(edge.sum()),
        "multiview_correspondences": int(len(mv[0])),
        "pseudo_valid": int(pseudo_valid.sum()),
        "pseudo_total": int(pseudo_valid.size),
    }
    write_json(
        tmp / "record.json",
        {"record": record, "stats": stats, "labeler": spec, "labeler_name": labelers.name},
    )
    _replace_dir(tmp, final)
    return {"id": aid, "record": record, "stats": stats}


def _render_stage(
    src: AssetSource, cfg: PrepareConfig, parts: list[str], names: dict[str, int]
) -> dict:
    """Load, render and sample one asset: the arrays of :func:`render_asset` plus
    ``surface_points`` (P,3) float32, ``surface_part`` (P,) int16 and ``source`` (record)."""
    import trimesh

    asset = load_asset(src.path, src.id, src.category)
    face_part = match_parts(asset.groups, names)[asset.face_group]
    r = render_asset(asset, cfg, face_part)
    n_cloud = max(cfg.cloud_points, int(np.ceil(asset.mesh.area / cfg.cloud_spacing**2)))
    cloud, face = trimesh.sample.sample_surface(
        asset.mesh, min(n_cloud, cfg.max_cloud_points), seed=_rng(cfg.seed, src.id, "cloud")
    )
    r["surface_points"] = np.asarray(cloud, dtype=np.float32)
    r["surface_part"] = face_part[face].astype(np.int16)
    r["source"] = {
        "file": src.path.name,
        "faces": asset.n_faces,
        "textured": asset.material.textured,
        "normalization": {"center": asset.centre.tolist(), "scale": asset.scale},
        "named_parts": sorted({parts[i] for i in np.unique(face_part[face_part >= 0])}),
    }
    return r


def _load_render(root: Path, aid: str) -> dict:
    """The render stored in ``assets/<aid>`` (same arrays as :func:`_render_stage`)."""
    base = root / "assets" / aid
    data = read_json(base / "record.json")
    rec = data["record"]
    views = read_npz(base / "views.npz")
    geom = read_npz(base / "geometry.npz")
    rgb = np.stack([read_image(root / p) for p in rec["rgb"]])
    part_id = views.get("part_id")
    if part_id is None:
        part_id = np.full(views["mask"].shape, -1, dtype=np.int16)
    R, t = views["R"], views["t"]
    return {
        "rgb": rgb,
        "mask": views["mask"].astype(bool),
        "depth": geom["depth"],
        "part_id": part_id,
        "K": views["K"],
        "R": R,
        "t": t,
        "centres": -np.einsum("vji,vj->vi", R, t),
        "surface_points": geom["surface_points"],
        "surface_part": geom["surface_part"],
        "source": {**rec["source"], "normalization": rec["normalization"]},
    }


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` onto ``final`` (an older one is removed after)."""
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


class NoLabeler:
    """``--labeler none``: render only (no boxes, every pseudo label invalid); label later,
    e.g. with ``boxes:FILE`` made from the rendered images, by re-running on the folder."""

    name = "none"

    def __init__(self, samples: int = 4) -> None:
        self.samples = samples

    def for_asset(self, asset_id, category, part_id=None, parts=None):
        n = self.samples
        return lambda image, query, view: np.full((n, 4), np.nan)


# ---------------------------------------------------------------------------------------------
# the parallel run

_WORKER: dict[str, Any] = {}


def _init_worker(spec, taxonomy, device, samples, labelers, threads=None):
    """Open the labeller of this process (in a pool worker, an error is kept for the jobs to
    report: an initializer that raises would make the pool respawn workers forever)."""
    _WORKER.clear()
    try:
        if labelers is None and spec == "none":
            labelers = NoLabeler(samples)
        elif labelers is None:
            from afford.prepare.labelers import open_labeler

            labelers = open_labeler(spec, taxonomy, device=device, samples=samples)
    except Exception as exc:  # noqa: BLE001 -- re-raised in the parent
        if threads is None:
            raise
        _WORKER["error"] = exc
        return
    if threads is not None and "torch" in sys.modules:  # a detector: one share of the cores
        sys.modules["torch"].set_num_threads(threads)
    if threads is not None:  # numpy's BLAS too: its idle threads spin in every worker
        from threadpoolctl import threadpool_limits

        _WORKER["blas_limit"] = threadpool_limits(limits=threads, user_api="blas")
    _WORKER["labelers"], _WORKER["spec"] = labelers, spec


def _run_job(job: tuple) -> dict[str, Any]:
    src, split, official, taxonomy, cfg, root = job
    if "error" in _WORKER:  # the labeller could not be opened: stop the run
        return {"id": src.id, "fatal": _WORKER["error"]}
    try:
        return _prepare_one(
            src, split, official, taxonomy, _WORKER["labelers"], _WORKER["spec"], cfg, Path(root)
        )
    except AffordError as exc:
        return {"id": src.id, "failure": str(exc), "file": str(src.path)}
    except Exception as exc:  # noqa: BLE001 -- one bad asset must not stop the others
        log.debug("asset %s failed", src.id, exc_info=True)
        return {
            "id": src.id,
            "failure": f"{src.path}: {type(exc).__name__}: {exc}",
            "file": str(src.path),
        }
    finally:
        tmp = Path(root) / "assets" / f".tmp-{src.id}"
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _state(cfg: PrepareConfig, taxonomy: Taxonomy) -> dict[str, Any]:
    tax = json.dumps(taxonomy.to_dict(), sort_keys=True)
    return {
        "format": "afford-prepare-state",
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "taxonomy_crc32": zlib.crc32(tax.encode("utf-8")),
        "options": asdict(cfg),
    }


def _open_out(out: Path, state: dict, overwrite: bool) -> None:
    """Create ``out``; resume when it holds a run with the same options."""
    output_dir(out, markers=(), arg="--out")
    state_path = out / STATE_FILE
    if state_path.is_file():
        old = read_json(state_path)
        if json.loads(json.dumps(old)) == json.loads(json.dumps(state)):
            return  # resume
        if not overwrite:
            raise UsageError(
                f"--out {out}: holds a preparation with other options (taxonomy, cameras, "
                "samples...); pass --overwrite to start again or choose another folder"
            )
    elif any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"--out {out}: folder is not empty and holds no afford preparation; choose a new "
            "or empty folder (or pass --overwrite)"
        )
    if overwrite:
        remove_entries(
            out, ("dataset.json", "eval_pairs.json", "eval", FAILURES_FILE, "assets", STATE_FILE)
        )
    write_json(state_path, state)


def _labelled_by(record_path: Path) -> str | None:
    try:
        return read_json(record_path).get("labeler")
    except (AffordError, AttributeError):
        return None


def _splits(taxonomy: Taxonomy) -> dict[str, str]:
    """asset id -> official split name (taxonomy splits)."""
    out = {}
    for name, refs in taxonomy.splits.items():
        for ref in refs:
            out.setdefault(asset_id(ref.id), name)
    return out


def _map(jobs: list, workers: int, init_args: tuple, progress: bool) -> list[dict]:
    if not jobs:
        return []
    bar = dict(total=len(jobs), desc="assets", disable=not progress, unit="asset")
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(*init_args)
        return [_run_job(j) for j in tqdm(jobs, **bar)]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    n = min(workers, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // n)
    out = []
    with ctx.Pool(n, initializer=_init_worker, initargs=(*init_args, threads)) as pool:
        for res in tqdm(pool.imap(_run_job, jobs), **bar):
            if "fatal" in res:
                raise res["fatal"]
            out.append(res)
    return out


def prepare_correspondence(
    assets: str | os.PathLike,
    taxonomy: str | os.PathLike | Taxonomy,
    labeler: str,
    out: str | os.PathLike,
    cfg: PrepareConfig | None = None,
    *,
    workers: int = 1,
    manifest: str | os.PathLike | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    labelers=None,
) -> dict[str, Any]:
    """Prepare a folder of meshes as a correspondence dataset in ``out`` (module docstring).

    Args:
        assets: folder of mesh files (searched recursively).
        taxonomy: a :class:`Taxonomy` or a ``--taxonomy`` path (:func:`load_taxonomy`).
        labeler: ``--labeler`` spec (:func:`afford.prepare.labelers.open_labeler`).
        out: output folder; re-running on it resumes (finished assets are skipped).
        cfg: rendering and labelling options.
        workers: processes; the output is identical for any number.
        manifest: optional CSV/JSON file -> category table (:mod:`afford.prepare.assets`).
        labelers: an already opened labeller (overrides ``labeler`` for the run; tests).

    Returns:
        Summary: ``assets`` (found), ``prepared`` (this run), ``skipped`` (finished before),
        ``failed``, ``failures`` (list), ``out``.
    """
    cfg = (cfg or PrepareConfig()).check()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    if labelers is None and labeler != "none":
        from afford.prepare.labelers import parse_spec

        parse_spec(labeler)
    sources, failures = discover_assets(assets, manifest)  # before --out is created
    if not sources and not failures:
        raise DataError(f"--assets {assets}: no mesh files ({', '.join(MESH_SUFFIXES)})")
    root = Path(out)
    _open_out(root, _state(cfg, tax), overwrite)
    n_found = len(sources) + len(failures)
    official = _splits(tax)
    jobs, done_ids, relabel = [], [], {}
    for s in sources:
        rec = root / "assets" / s.id / "record.json"
        by = _labelled_by(rec) if rec.is_file() else None
        if by == labeler:
            done_ids.append(s.id)
            continue
        if by not in (None, "none"):
            relabel[s.id] = by
        off = official.get(s.id)
        jobs.append((s, SPLIT_MAP.get(off or "train", "train"), off, tax, cfg, str(root)))
    if relabel and not overwrite:  # labels made earlier are never replaced silently
        raise UsageError(
            f"--out {root}: {len(relabel)} prepared assets are labelled by "
            f"{', '.join(sorted(set(relabel.values())))}; --labeler {labeler} would replace "
            "their labels: pass --overwrite to relabel them (the renders are kept) or choose "
            "another folder"
        )
    results = _map(jobs, workers, (labeler, tax, device, cfg.samples, labelers), progress)
    for res in results:
        if "failure" in res:
            failures.append({"asset": res["id"], "file": res["file"], "reason": res["failure"]})
    # assets whose job failed (not discovery failures: a file with the duplicate id of a good
    # asset must not drop that asset)
    failed_ids = {res["id"] for res in results if "failure" in res}
    records, stats, names = {}, {}, []
    for s in sources:
        path = root / "assets" / s.id / "record.json"
        if s.id not in failed_ids and path.is_file():
            data = read_json(path)
            records[s.id], stats[s.id] = data["record"], data["stats"]
            names.append(str(data.get("labeler_name", labeler)))
    failures.sort(key=lambda f: (f["asset"], f["file"]))
    write_text(
        root / FAILURES_FILE,
        "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures),
    )
    if not records:
        raise DataError(
            f"--assets {assets}: no asset could be prepared ({len(failures)} failed; reasons in "
            f"{root / FAILURES_FILE})"
        )
    _write_manifest(root, records, stats, cfg, tax, " + ".join(sorted(set(names))))
    return {
        "out": str(root),
        "assets": n_found,
        "prepared": len(results) - sum("failure" in r for r in results),
        "skipped": len(done_ids),
        "failed": len(failures),
        "failures": failures,
        "views": sum(r["n_views"] for r in records.values()),
    }


def _write_manifest(root, records, stats, cfg, tax, labeler_name) -> None:
    index = dataset_index(records)
    pcfg = PseudoLabelConfig(**cfg.pseudo)
    n_valid = sum(s["pseudo_valid"] for s in stats.values())
    n_total = sum(s["pseudo_total"] for s in stats.values())
    manifest = {
        **index,
        "generator": {
            "name": GENERATOR,
            "version": GENERATOR_VERSION,
            "afford": __version__,
            "seed": cfg.seed,
            "views": cfg.views,
            "options": {k: v for k, v in asdict(cfg).items() if k not in ("seed", "views")},
        },
        "source": "real",
        "taxonomy": tax.name or tax.source,
        "crop": {"scale": cfg.crop_scale, "size": 224},
        "pseudo_labels": {
            "labeler": labeler_name,
            "samples_per_view": cfg.samples,
            "min_boxes": pcfg.min_boxes,
            "min_mask_px_224": pcfg.min_area,
            "options": {"procedure": asdict(pcfg)},
        },
        "counts": {
            "assets": len(records),
            "views": sum(r["n_views"] for r in records.values()),
            "train_assets": len(index["splits"]["train"]),
            "multiview_correspondences": sum(
                s["multiview_correspondences"] for s in stats.values()
            ),
            "pseudo_valid_fraction": round(n_valid / max(1, n_total), 4),
            "views_touching_border": sum(s.get("views_touching_border", 0) for s in stats.values()),
        },
        "assets": records,
    }
    old = root / "dataset.json"
    if old.is_file():  # keep what `afford prepare eval-pairs` recorded
        try:
            counts = read_json(old).get("counts", {})
        except (AffordError, AttributeError):
            counts = {}
        for key in ("eval_pairs", "eval_pairs_failed", "cross_category_fraction"):
            if key in counts:
                manifest["counts"][key] = counts[key]
    if not (root / "eval_pairs.json").is_file():
        write_json(root / "eval_pairs.json", eval_index([]))
    write_json(root / "dataset.json", manifest)

"""Synthetic dense-functional-correspondence dataset writer (docs/correspondence-format.md).

Per asset: N views from a fixed set of cameras on a sphere (``sphere_cameras``; the paper
renders 19), each camera zoomed so the image *is* the paper's training crop (a square of 1.2 x
the object's longer side around the object; the stored ``crop_box`` is computed from the
rendered mask and is ``[0, 0, S]`` up to a pixel), with RGB, object
mask, part ids, depth and (via depth) the visible surface point of every pixel; per function a
GT part mask and a pseudo-label mask made the paper's way (simulated grounding-VLM boxes ->
3-D voting -> blur, Otsu, closing; ``afford.geometry.pseudolabel``); multi-view pixel
correspondences for the spatial loss (surface points with a depth test,
``afford.geometry.visible``).  Evaluation pairs (>= 80% cross-category) of held-out assets get
dense GT from 3-D functional alignment (``afford.geometry.curation``).

Deterministic for a seed: every asset and pair has its own generator derived from the seed,
so the bytes do not depend on the number of worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import trimesh
from tqdm.auto import tqdm

from afford import __version__
from afford.data.correspondence import (
    dataset_index,
    eval_index,
    write_asset_arrays,
    write_eval_pair,
)
from afford.data.crops import crop_array, crop_image, square_crop_box
from afford.data.io import (
    read_image,
    read_json,
    read_npz,
    remove_entries,
    write_image,
    write_json,
)
from afford.errors import AffordError
from afford.geometry.camera import Camera, backproject, crop_intrinsics, sphere_cameras
from afford.geometry.curation import curate_pair
from afford.geometry.pseudolabel import (
    PartQuery,
    PseudoLabelConfig,
    SimulatedBoxLabeler,
    pseudo_label_masks,
)
from afford.geometry.pseudolabel import keyed_rng as _rng
from afford.geometry.visible import match_to_cloud, pair_correspondences
from afford.geometry.visible import neighbour_view_pairs as _neighbour_pairs
from afford.geometry.visible import stratified_subsample as _stratified
from afford.synth.assets import CATEGORIES, make_asset
from afford.synth.render import Scene
from afford.viz import draw_matches, image_grid

__all__ = [
    "GENERATOR_VERSION",
    "SIZES",
    "CorrSynthConfig",
    "SimulatedBoxLabeler",
    "framed_camera",
    "reframe_camera",
    "write_correspondence_dataset",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"

# per-category asset counts (train, val, test), image side, eval pairs (val, test), GT cap
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "per_category": (1, 1, 1),
        "image_size": 64,
        "pairs": (2, 6),
        "max_points": 200,
        "cloud_points": 6000,
        "corr_per_pair": 128,
    },
    "small": {
        "per_category": (2, 1, 1),
        "image_size": 128,
        "pairs": (10, 30),
        "max_points": 500,
        "cloud_points": 20000,
        "corr_per_pair": 256,
    },
    "default": {
        "per_category": (2, 1, 1),
        "image_size": 224,
        "pairs": (20, 60),
        "max_points": 1000,
        "cloud_points": 40000,
        "corr_per_pair": 512,
    },
    "large": {
        "per_category": (6, 2, 2),
        "image_size": 224,
        "pairs": (100, 300),
        "max_points": 2000,
        "cloud_points": 40000,
        "corr_per_pair": 512,
    },
}


@dataclass
class CorrSynthConfig:
    """Options of the synthetic correspondence writer (``size`` fills the unset ones)."""

    seed: int = 0
    size: str = "default"
    views: int = 19
    categories: list[str] | None = None  # default: every category of afford.synth.assets
    per_category: tuple[int, int, int] | None = None  # assets per category: train, val, test
    image_size: int | None = None
    pairs: tuple[int, int] | None = None  # evaluation pairs: val, test
    max_points: int | None = None  # GT points per pair (paper: 10000)
    cloud_points: int | None = None  # dense surface samples per asset
    corr_per_pair: int | None = None  # stored spatial correspondences per view pair
    neighbours: int = 4  # spatial pairs: each view with its nearest views
    samples_per_view: int = 4  # labeler samples per view (paper: 4)
    crop_scale: float = 1.2
    cross_every: int = 7  # one in `cross_every` pairs may be same-category
    labeler: dict[str, float] = field(
        default_factory=lambda: {
            "p_miss": 0.12,
            "p_wrong": 0.08,
            "jitter": 0.08,
            "small_part_px": 40.0,
            "p_miss_small": 0.6,
        }
    )
    pseudo: dict[str, float] = field(default_factory=dict)  # PseudoLabelConfig overrides

    def resolved(self) -> CorrSynthConfig:
        if self.size not in SIZES:
            raise AffordError(f"--size {self.size!r} unknown; choose one of {sorted(SIZES)}")
        preset = SIZES[self.size]
        out = CorrSynthConfig(**asdict(self))
        for key, value in preset.items():
            if getattr(out, key) is None:
                setattr(out, key, value)
        out.per_category = tuple(int(v) for v in out.per_category)
        out.pairs = tuple(int(v) for v in out.pairs)
        if len(out.per_category) != 3 or min(out.per_category) < 1:
            raise AffordError(
                f"--per-category needs three counts >= 1 (train, val, test), got {out.per_category}"
            )
        if self.views < 2:
            raise AffordError(f"--views must be >= 2 (multi-view pairs), got {self.views}")
        cats = list(CATEGORIES) if out.categories is None else list(out.categories)
        bad = [c for c in cats if c not in CATEGORIES]
        if bad:
            raise AffordError(f"--categories: unknown {bad}; choose from {list(CATEGORIES)}")
        out.categories = cats
        return out


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# cameras


def framed_camera(camera: Camera, vertices: np.ndarray, size: int, scale: float = 1.2) -> Camera:
    """Same pose as ``camera``, intrinsics zoomed so the object's square crop fills the image.

    The crop is the square of ``scale`` x the longer side of the projected object's bounding
    box, centred on it (REFERENCE_NOTES C); after zooming it is the whole ``size`` x ``size``
    image: ``u' = (u - c_u) * size / L + (size - 1) / 2`` (pixel centres on integers).
    """
    uv, z = camera.project(vertices)
    if (z <= 0).any():
        raise AffordError("framed_camera: the object is behind the camera")
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = (lo + hi) / 2.0
    side = scale * float((hi - lo).max())
    a = size / side
    K = camera.K.copy()
    K[0, 0] *= a
    K[1, 1] *= a
    K[0, 2] = a * (camera.K[0, 2] - centre[0]) + (size - 1) / 2.0
    K[1, 2] = a * (camera.K[1, 2] - centre[1]) + (size - 1) / 2.0
    return Camera(K, camera.R, camera.t, size, size)


def reframe_camera(camera: Camera, box: np.ndarray) -> Camera:
    """Same pose, intrinsics zoomed so the crop ``box = [top, left, size]`` becomes the image."""
    n = camera.width
    return Camera(crop_intrinsics(camera.K, box, n), camera.R, camera.t, n, n)


# ---------------------------------------------------------------------------------------------
# phase 1: one asset


def _asset_jobs(cfg: CorrSynthConfig) -> list[dict[str, Any]]:
    jobs = []
    for category in cfg.categories:
        index = 0
        for split, count in zip(("train", "val", "test"), cfg.per_category):
            for _ in range(count):
                asset_seed = int(
                    np.random.SeedSequence([cfg.seed, _crc(category), index]).generate_state(1)[0]
                )
                jobs.append(
                    {
                        "id": f"{category}_{index:03d}",
                        "category": category,
                        "split": split,
                        "seed": asset_seed,
                    }
                )
                index += 1
    return jobs


def _function_frame(asset, function: str) -> np.ndarray:
    return np.asarray(asset.parts[asset.parts_with(function=function)[0]].frame, dtype=np.float64)


def _write_asset(job: dict[str, Any], cfg: CorrSynthConfig, root: str) -> dict[str, Any]:
    """Render, label and write one asset; returns its manifest record (+ private stats)."""
    root_p = Path(root)
    aid, size, n_views = job["id"], cfg.image_size, cfg.views
    asset = make_asset(job["category"], job["seed"])
    rng = _rng(job["seed"], "views")
    scene = Scene(asset)
    cams = [
        framed_camera(c, asset.mesh.vertices, size, cfg.crop_scale)
        for c in sphere_cameras(n_views, width=size, height=size)
    ]
    background = "gradient" if rng.uniform() < 0.5 else "solid"
    rgb_paths, masks, part_ids, depths, points = [], [], [], [], []
    crop_boxes = []
    for v, cam in enumerate(cams):
        view = scene.render(cam, background, rng=_rng(job["seed"], "view", v))
        # thin parts seen edge-on can fall between pixel centres, so the mask's crop box can
        # differ from the vertex-based framing: re-frame on the mask (twice at most) and keep
        # the render whose crop box is closest to the whole image
        best, best_dev = (cam, view), np.inf
        for attempt in range(3):
            box = square_crop_box(view.mask, cfg.crop_scale) if view.mask.any() else None
            dev = np.inf if box is None else float(np.abs(box - [0, 0, size]).max())
            if dev < best_dev:
                best, best_dev = (cam, view), dev
            if dev <= 1 or box is None or attempt == 2:
                break
            cam = reframe_camera(cam, box)
            view = scene.render(cam, background, rng=_rng(job["seed"], "view", v))
        cam, view = best
        cams[v] = cam
        if not view.mask.any():
            raise AffordError(f"{aid}: view {v} shows no object (camera set too narrow)")
        crop_boxes.append(square_crop_box(view.mask, cfg.crop_scale))
        rel = f"assets/{aid}/rgb/{v:02d}.png"
        write_image(root_p / rel, view.rgb)
        rgb_paths.append(rel)
        masks.append(view.mask)
        part_ids.append(view.part_id)
        depths.append(np.where(view.mask, view.depth, np.inf).astype(np.float32))
        points.append(view.points)
    mask = np.stack(masks)
    part_id = np.stack(part_ids)
    depth = np.stack(depths)
    K = np.stack([c.K for c in cams])
    R = np.stack([c.R for c in cams])
    t = np.stack([c.t for c in cams])
    # the stored geometry is the depth; everything downstream uses the back-projected points
    pts = backproject(depth, K, R, t)
    crop_box = np.stack(crop_boxes).astype(np.int32)  # ~[0, 0, size]: the image is the crop

    parts = [p.name for p in asset.parts]
    functions = list(asset.functions)
    function_parts = {f: [parts[i] for i in asset.parts_with(function=f)] for f in functions}
    gt_mask = np.stack(
        [np.isin(part_id, asset.parts_with(function=f)) for f in functions], axis=1
    )  # (V,F,H,W)

    cloud, face = trimesh.sample.sample_surface(
        asset.mesh, cfg.cloud_points, seed=_rng(job["seed"], "cloud")
    )
    cloud = np.asarray(cloud, dtype=np.float32)
    surface_part = np.asarray(asset.face_part)[face].astype(np.int16)

    # pseudo-labels (paper Sec. 4.1) from the simulated labeler
    pcfg = PseudoLabelConfig(**cfg.pseudo)
    cloud_index = match_to_cloud(pts, cloud.astype(np.float64), pcfg.nn_tol)
    labeler = SimulatedBoxLabeler(part_id, parts, function_parts, job["seed"], cfg.labeler)
    S = cfg.samples_per_view
    boxes = np.full((n_views, len(functions), S, 4), np.nan, dtype=np.float32)
    pseudo_mask = np.zeros_like(gt_mask)
    pseudo_valid = np.zeros((n_views, len(functions)), bool)
    for fi, f in enumerate(functions):
        query = PartQuery(job["category"], f, " / ".join(function_parts[f]))
        for v in range(n_views):
            boxes[v, fi] = labeler(None, query, v, S)
        res = pseudo_label_masks(
            cloud,
            pts,
            mask,
            K,
            R,
            t,
            boxes[:, fi],
            crop_sizes=crop_box[:, 2],
            cfg=pcfg,
            cloud_index=cloud_index,
        )
        pseudo_mask[:, fi] = res.mask
        pseudo_valid[:, fi] = res.valid

    # multi-view correspondences for the spatial loss (Eq. 2); half of the stored budget
    # inside the (pseudo-labelled) functional parts, where the spatial loss samples them
    pseudo_any = (pseudo_mask & pseudo_valid[:, :, None, None]).any(axis=1)
    centres = np.stack([c.center for c in cams])
    pairs = _neighbour_pairs(centres, cfg.neighbours)

    def pick(p: int, i: int, src: np.ndarray) -> np.ndarray:
        inside = pseudo_any[i][src[:, 0], src[:, 1]]
        return _stratified(inside, cfg.corr_per_pair, _rng(job["seed"], "mv", p))

    mv = pair_correspondences(
        pairs, pts, K, R, t, depth, mask, cfg.corr_per_pair, pick, part_id=part_id
    )

    views = dict(
        K=K, R=R, t=t, mask=mask, part_id=part_id, gt_mask=gt_mask, pseudo_mask=pseudo_mask,
        pseudo_valid=pseudo_valid, boxes=boxes, crop_box=crop_box,
    )  # fmt: skip
    geometry = dict(depth=depth, surface_points=cloud, surface_part=surface_part)
    files = write_asset_arrays(root_p / "assets" / aid, aid, views, geometry, pairs, mv)
    frames = {f: _function_frame(asset, f).tolist() for f in functions}
    record = {
        "category": job["category"],
        "split": job["split"],
        "seed": job["seed"],
        "n_views": n_views,
        "image_size": [size, size],
        "rgb": rgb_paths,
        **files,
        "parts": parts,
        "functions": functions,
        "function_parts": function_parts,
        "frames": frames,
    }
    gt_iou = []
    for fi in range(len(functions)):
        for v in np.flatnonzero(pseudo_valid[:, fi]):
            inter = (pseudo_mask[v, fi] & gt_mask[v, fi]).sum()
            union = (pseudo_mask[v, fi] | gt_mask[v, fi]).sum()
            gt_iou.append(inter / max(union, 1))
    stats = {
        "multiview_correspondences": int(len(mv[0])),
        "pseudo_valid": int(pseudo_valid.sum()),
        "pseudo_total": int(pseudo_valid.size),
        "pseudo_iou_sum": float(np.sum(gt_iou)),
        "pseudo_iou_n": len(gt_iou),
    }
    return {"id": aid, "record": record, "stats": stats}


# ---------------------------------------------------------------------------------------------
# phase 2: evaluation pairs


def _plan_pairs(cfg: CorrSynthConfig, records: dict[str, dict]) -> list[dict[str, Any]]:
    """Deterministic evaluation-pair plan: one in ``cross_every`` may be same-category."""
    plan = []
    for split, count in zip(("val", "test"), cfg.pairs):
        ids = [a for a in sorted(records) if records[a]["split"] == split]
        by_fn: dict[str, list[str]] = {}
        for a in ids:
            for f in records[a]["functions"]:
                by_fn.setdefault(f, []).append(a)
        cross_fns = sorted(
            f for f, a in by_fn.items() if len({records[x]["category"] for x in a}) >= 2
        )
        same_fns = sorted(
            f
            for f, a in by_fn.items()
            if any(sum(records[x]["category"] == records[y]["category"] for x in a) >= 2 for y in a)
        )
        rng = _rng(cfg.seed, "pairs", split)
        seen: set[tuple[str, frozenset, int]] = set()  # unordered: both directions are scored
        for k in range(count):
            want_cross = (k % cfg.cross_every) != cfg.cross_every - 1 or not same_fns
            fns = cross_fns if want_cross else same_fns
            if not fns:
                break
            for _ in range(20):
                f = fns[int(rng.integers(len(fns)))]
                cands = by_fn[f]
                a = cands[int(rng.integers(len(cands)))]
                others = [
                    b
                    for b in cands
                    if b != a and (records[b]["category"] != records[a]["category"]) == want_cross
                ]
                if not others:
                    continue
                b = others[int(rng.integers(len(others)))]
                rank = int(rng.integers(3))
                if (f, frozenset((a, b)), rank) not in seen:
                    break
            else:
                continue  # no new pair found in 20 draws
            seen.add((f, frozenset((a, b)), rank))
            plan.append(
                {
                    "id": f"{split}_{len([p for p in plan if p['split'] == split]):05d}",
                    "split": split,
                    "function": f,
                    "source": a,
                    "target": b,
                    "rank": rank,
                    "cross_category": records[a]["category"] != records[b]["category"],
                }
            )
        made = sum(p["split"] == split for p in plan)
        if made < count:
            log.warning(
                "%s: planned %d of %d evaluation pairs (too few assets sharing a function)",
                split,
                made,
                count,
            )
    return plan


_EVAL_CACHE: dict[tuple[str, str, str], dict[str, Any]] = {}
_EVAL_CACHE_SIZE = 8


def _load_eval_asset(root: Path, aid: str, rec: dict[str, Any], function: str) -> dict[str, Any]:
    """Everything GT curation needs about one asset and function, at the 224 crops.

    Per view: crop-pixel surface points (back-projected stored depth), the GT functional-part
    mask, and the dense-cloud match of the part pixels (other pixels cannot be GT points, so
    they are not matched).  Cached per process (a pure function of the files).
    """
    key = (str(root), aid, function)
    if key in _EVAL_CACHE:
        return _EVAL_CACHE[key]
    views = read_npz(root / rec["views"])
    geom = read_npz(root / rec["geometry"])
    boxes = views["crop_box"]
    pts = backproject(geom["depth"], views["K"], views["R"], views["t"])
    crop = np.stack([crop_array(pts[v], boxes[v], 224, np.nan) for v in range(len(pts))])
    fi = rec["functions"].index(function)
    gt = views["gt_mask"][:, fi]
    gt_crop = np.stack([crop_array(gt[v], boxes[v], 224, False) for v in range(len(gt))])
    cloud = geom["surface_points"].astype(np.float64)
    index = np.full(gt_crop.shape, -1, dtype=np.int64)
    index[gt_crop] = match_to_cloud(crop[gt_crop], cloud)
    part_idx = [rec["parts"].index(n) for n in rec["function_parts"][function]]
    out = {
        "points": crop,
        "index": index,
        "cloud": cloud,
        "part": np.isin(geom["surface_part"], part_idx),
        "frame": np.asarray(rec["frames"][function], dtype=np.float64),
        "mask": views["mask"],
        "gt_crop": gt_crop,
        "crop_box": boxes,
    }
    if len(_EVAL_CACHE) >= _EVAL_CACHE_SIZE:
        _EVAL_CACHE.pop(next(iter(_EVAL_CACHE)))
    _EVAL_CACHE[key] = out
    return out


def _curate(job: dict[str, Any], cfg: CorrSynthConfig, root: str, records: dict) -> dict | None:
    root_p = Path(root)
    f = job["function"]
    ra, rb = records[job["source"]], records[job["target"]]
    a = _load_eval_asset(root_p, job["source"], ra, f)
    b = _load_eval_asset(root_p, job["target"], rb, f)
    pair = curate_pair(
        a["points"],
        a["cloud"],
        a["part"],
        a["frame"],
        b["points"],
        b["cloud"],
        b["part"],
        b["frame"],
        source_rank=job["rank"],
        source_index=a["index"],
        target_index=b["index"],
        source_pixel_part=a["gt_crop"],
        target_pixel_part=b["gt_crop"],
        max_points=cfg.max_points,
    )
    if pair is None:
        return None
    sv, tv = pair.source_view, pair.target_view
    return write_eval_pair(
        root_p,
        job["id"],
        job["split"],
        f,
        (job["source"], job["target"]),
        job["cross_category"],
        pair,
        (
            crop_array(a["mask"][sv], a["crop_box"][sv], 224, False),
            crop_array(b["mask"][tv], b["crop_box"][tv], 224, False),
        ),
        (a["gt_crop"][sv], b["gt_crop"][tv]),
        (a["crop_box"][sv], b["crop_box"][tv]),
    )


# ---------------------------------------------------------------------------------------------
# parallel map (deterministic order)

_WORKER_STATE: dict[str, Any] = {}


def _init_worker(fn, args):
    _WORKER_STATE["fn"], _WORKER_STATE["args"] = fn, args


def _call(job):
    return _WORKER_STATE["fn"](job, *_WORKER_STATE["args"])


def _map(fn, jobs: list, args: tuple, workers: int, desc: str, progress: bool) -> list:
    bar = dict(total=len(jobs), desc=desc, disable=not progress, unit="it")
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j, *args) for j in tqdm(jobs, **bar)]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(fn, args)) as pool:
        return list(tqdm(pool.imap(_call, jobs), **bar))


# ---------------------------------------------------------------------------------------------
# contact sheet


def _contact_sheet(root: Path, records: dict, entries: list[dict], n_assets: int = 4) -> None:
    tiles, titles = [], []
    shown = []
    for aid in sorted(records):
        rec = records[aid]
        if rec["split"] != "train" or rec["category"] in {records[s]["category"] for s in shown}:
            continue
        shown.append(aid)
        if len(shown) > n_assets:
            break
        views = read_npz(root / rec["views"])
        f = next((g for g in rec["functions"] if g != "grasp"), rec["functions"][0])
        fi = rec["functions"].index(f)
        picks = np.linspace(0, rec["n_views"] - 1, 4).astype(int)
        for v in picks:
            img = read_image(root / rec["rgb"][v]).copy()
            gt = views["gt_mask"][v, fi]
            img[gt] = (0.5 * img[gt] + 0.5 * np.array([0, 200, 0])).astype(np.uint8)
            pm = views["pseudo_mask"][v, fi].astype(np.uint8)
            contours, _ = cv2.findContours(pm, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(img, contours, -1, (230, 0, 0), 1)
            img = cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA)
            tiles.append(img)
            ok = "" if views["pseudo_valid"][v, fi] else " -"
            titles.append(f"{aid} v{v} {f}{ok}")
    match_tiles, match_titles = [], []
    for e in entries[:4]:
        ra, rb = records[e["source"]["asset"]], records[e["target"]["asset"]]
        sv, tv = e["source"]["view"], e["target"]["view"]
        gt = read_npz(root / e["file"])
        ia = crop_image(read_image(root / ra["rgb"][sv]), gt["crop_box1"], 224)
        ib = crop_image(read_image(root / rb["rgb"][tv]), gt["crop_box2"], 224)
        n = len(gt["points1"])
        sel = np.linspace(0, n - 1, min(12, n)).astype(int)
        canvas = draw_matches(ia, ib, gt["points1"][sel], gt["points2"][sel])
        match_tiles.append(cv2.resize(canvas, (320, 160), interpolation=cv2.INTER_AREA))
        match_titles.append(
            f"{e['id']} {e['function']}: {ra['category']} v{sv} -> {rb['category']} v{tv}"
        )
    sheets = []
    if tiles:
        sheets.append(image_grid(tiles, 4, titles))
    if match_tiles:
        sheets.append(image_grid(match_tiles, 2, match_titles))
    if not sheets:
        return
    width = max(sh.shape[1] for sh in sheets)
    padded = [
        np.pad(sh, ((0, 0), (0, width - sh.shape[1]), (0, 0)), constant_values=255) for sh in sheets
    ]
    write_image(root / "contact_sheet.png", np.concatenate(padded, axis=0))


# ---------------------------------------------------------------------------------------------
# entry point


OWNED = ("dataset.json", "eval_pairs.json", "contact_sheet.png", "assets", "eval")


def _prepare_out(root: Path) -> None:
    """Create ``root``; an old dataset of this writer there is replaced, anything else refused."""
    if root.exists() and not root.is_dir():
        raise AffordError(f"--out {root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        manifest = root / "dataset.json"
        fmt = None
        if manifest.is_file():
            try:
                fmt = read_json(manifest).get("format")
            except (AffordError, AttributeError):
                fmt = None
        if fmt != "afford-correspondence":
            raise AffordError(
                f"--out {root}: directory is not empty and holds no afford correspondence "
                "dataset; choose a new or empty directory"
            )
        log.info("replacing the correspondence dataset in %s", root)
        remove_entries(root, OWNED)
    root.mkdir(parents=True, exist_ok=True)


def write_correspondence_dataset(
    out: str | os.PathLike,
    cfg: CorrSynthConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    contact_sheet: bool = True,
) -> dict[str, Any]:
    """Write the synthetic correspondence dataset to ``out``; returns the manifest dict.

    Layout and arrays: docs/correspondence-format.md.  Same ``cfg`` -> identical bytes, for any
    ``workers``.
    """
    cfg = (cfg or CorrSynthConfig()).resolved()
    root = Path(out)
    _prepare_out(root)

    jobs = _asset_jobs(cfg)
    if not jobs:
        raise AffordError("nothing to write: no categories or zero assets per category")
    done = _map(_write_asset, jobs, (cfg, str(root)), workers, "assets", progress)
    records = {d["id"]: d["record"] for d in done}

    plan = _plan_pairs(cfg, records)
    # run pairs grouped by source asset (cache hits in each worker); results in plan order
    order = sorted(
        range(len(plan)),
        key=lambda i: (plan[i]["function"], plan[i]["source"], plan[i]["target"], i),
    )
    ran = _map(
        _curate,
        [plan[i] for i in order],
        (cfg, str(root), records),
        workers,
        "eval pairs",
        progress,
    )
    results: list[dict | None] = [None] * len(plan)
    for i, r in zip(order, ran):
        results[i] = r
    entries = [r for r in results if r is not None]
    failed = [p["id"] for p, r in zip(plan, results) if r is None]

    index = dataset_index(records)
    n_pairs = {s: sum(e["split"] == s for e in entries) for s in ("val", "test")}
    cross = float(np.mean([e["cross_category"] for e in entries])) if entries else 0.0
    iou_n = sum(d["stats"]["pseudo_iou_n"] for d in done)
    manifest = {
        **index,
        "generator": {
            "name": "afford.synth.correspondence",
            "version": GENERATOR_VERSION,
            "afford": __version__,
            "seed": cfg.seed,
            "size": cfg.size,
            "views": cfg.views,
            "options": {
                k: v
                for k, v in asdict(cfg).items()
                if k not in ("seed", "size", "views", "labeler", "pseudo")
            },
        },
        "source": "synthetic",
        "crop": {"scale": cfg.crop_scale, "size": 224},
        "pseudo_labels": {
            "labeler": "simulated",
            "samples_per_view": cfg.samples_per_view,
            "min_boxes": PseudoLabelConfig(**cfg.pseudo).min_boxes,
            "min_mask_px_224": PseudoLabelConfig(**cfg.pseudo).min_area,
            "options": {
                "labeler": cfg.labeler,
                "procedure": asdict(PseudoLabelConfig(**cfg.pseudo)),
            },
        },
        "counts": {
            "assets": len(records),
            "views": len(records) * cfg.views,
            "train_assets": len(index["splits"]["train"]),
            "eval_pairs": n_pairs,
            "eval_pairs_failed": failed,
            "cross_category_fraction": round(cross, 4),
            "multiview_correspondences": sum(d["stats"]["multiview_correspondences"] for d in done),
            "pseudo_valid_fraction": round(
                sum(d["stats"]["pseudo_valid"] for d in done)
                / max(1, sum(d["stats"]["pseudo_total"] for d in done)),
                4,
            ),
            "pseudo_mean_iou_vs_gt": round(
                sum(d["stats"]["pseudo_iou_sum"] for d in done) / max(1, iou_n), 4
            ),
        },
        "assets": records,
    }
    write_json(root / "eval_pairs.json", eval_index(entries))
    write_json(root / "dataset.json", manifest)
    if contact_sheet:
        _contact_sheet(root, records, entries)
    return manifest

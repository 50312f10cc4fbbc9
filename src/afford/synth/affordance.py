"""Synthetic affordance dataset in the exact AGD20K folder layout.

Output (``<out>``)::

    Seen/trainset/egocentric/<affordance>/<object>/<object>_NNNNNN.jpg
    Seen/trainset/exocentric/<affordance>/<object>/<object>_NNNNNN.jpg
    Seen/trainset/GT/<affordance>/<object>/<object>_NNNNNN.png     (ego train GT, afford
                                                                   addition for validation)
    Seen/testset/egocentric/<affordance>/<object>/<object>_NNNNNN.jpg
    Seen/testset/GT/<affordance>/<object>/<object>_NNNNNN.png      (same stem as the image)
    Unseen/...                                                     (same structure)
    cache/simulated-clip/...      simulated object-affinity maps (afford.data.cache.MapCache)
    dataset.json                  manifest (counts, categories, splits, version, seed)
    contact_sheet.png             ego / exo / GT samples for a human look

Splits, as AGD20K: **Seen** has every category in train and test (different instances);
**Unseen** trains on the categories not in ``UNSEEN_TEST_CATEGORIES`` and tests on those
(disjoint by category), over the affordances both sides share.  Unseen images are byte-exact
copies of the Seen images of the same (affordance, object) folder (AGD20K's Unseen split
reuses Seen photos too), so the cache entry of a copy is shared.

Egocentric images show the object alone, large in frame.  Exocentric images show a simple
actor (skin-toned forearm and hand) grasping the object -- at the affordance part for
"hold"/"open", at the handle otherwise, with a use prop (a cup under the spout, bread under
the blade, a board for the hammer, a pot around the spoon, a head at the rim) touching the
affordance part -- the object smaller and partly occluded.  GT maps: the visible pixels of
the affordance part(s), Gaussian-blurred (sigma 3% of the image side), max 255.

Simulated affinity maps (there is no meaningful CLIP offline): per image, 14x14 maps
``"action:<aff>"`` and ``"entity:<aff>"`` at the patch grid of the image resized to 224,
mimicking ClearCLIP's *object-level* response: the blurred object region (a patch responds
fully once the object covers a quarter of it, so thin parts are encompassed; and the actor's,
for the exocentric entity prompt "a person <aff> an item"), background leakage (smooth
noise), pixel noise and occasional misses (weakened or displaced response; 4% of the
egocentric and 14% of the exocentric maps, ``MISS_RATES``), as raw-cosine
values in about [-0.1, 0.4].  Stored in ``MapCache(<out>/cache, "simulated-clip",
simulated=True)`` keyed by the SHA-256 of the jpg bytes.

Determinism: every image draws from ``np.random.default_rng([seed, crc32(affordance),
crc32(object), view, index])``, so the bytes do not depend on the worker count or order.
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, zoom
from tqdm import tqdm

from afford.data.cache import MapCache, content_key, file_key
from afford.data.io import read_gray, read_image, read_json, write_bytes, write_image, write_json
from afford.errors import AffordError
from afford.geometry.camera import Camera
from afford.synth.actor import contact_point, hand_and_arm, use_prop
from afford.synth.assets import CATEGORIES, category_affordances, make_asset
from afford.synth.render import BACKGROUNDS, Scene
from afford.synth.shapes import rot_x, rot_y, rot_z
from afford.viz import image_grid, overlay_heatmap

log = logging.getLogger(__name__)

GENERATOR = "afford.synth.affordance"
GENERATOR_VERSION = "1"
MODEL_ID = "simulated-clip"
UNSEEN_TEST_CATEGORIES = ("cup", "jug", "ladle", "mallet", "scissors")
VIEWS = {"ego_train": 0, "exo_train": 1, "ego_test": 2}


@dataclass(frozen=True)
class AffordanceSize:
    """Images per (affordance, object) folder and image side length."""

    ego: int = 20
    exo: int = 40
    test: int = 8
    image_size: int = 224


SIZES = {
    "small": AffordanceSize(ego=2, exo=3, test=2, image_size=96),
    "default": AffordanceSize(ego=16, exo=32, test=8, image_size=224),
    "large": AffordanceSize(ego=40, exo=80, test=16, image_size=256),
}


def pairs(categories=CATEGORIES) -> list[tuple[str, str]]:
    """All (affordance, object) folders of the Seen split, sorted."""
    return sorted((a, c) for c in categories for a in category_affordances(c))


def split_plan(
    categories=CATEGORIES, unseen_test=UNSEEN_TEST_CATEGORIES
) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Which (affordance, object) folders each split's train and test sets hold."""
    for c in unseen_test:
        if c not in categories:
            raise AffordError(f"unseen test category {c!r} is not among the categories")
    seen = pairs(categories)
    train_cats = [c for c in categories if c not in unseen_test]
    test_pairs = [(a, c) for a, c in seen if c in unseen_test]
    train_pairs = [(a, c) for a, c in seen if c in train_cats]
    shared = {a for a, _ in test_pairs} & {a for a, _ in train_pairs}
    return {
        "Seen": {"train": seen, "test": seen},
        "Unseen": {
            "train": [p for p in train_pairs if p[0] in shared],
            "test": [p for p in test_pairs if p[0] in shared],
        },
    }


def image_rng(seed: int, affordance: str, category: str, view: str, index: int):
    """The generator of one image (independent of worker count and order)."""
    return np.random.default_rng(
        [
            int(seed),
            zlib.crc32(affordance.encode()),
            zlib.crc32(category.encode()),
            VIEWS[view],
            int(index),
        ]
    )


# ---------------------------------------------------------------------------- maps


PATCH_FULL_RESPONSE = 0.25  # patch coverage at which the simulated object response saturates
# simulated ClearCLIP misses (weak, displaced response) per view: egocentric images show the
# object alone and large in frame, so CLIP rarely misses it; exocentric ones show it small,
# held and partly occluded.
MISS_RATES = {"ego": (0.02, 0.02), "exo": (0.08, 0.06)}


def area_resize(mask: np.ndarray, size: int = 14) -> np.ndarray:
    """Area-average a (H,W) map to (size,size) (the patch grid of the image resized to 224)."""
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def patch_response(cover: np.ndarray, full: float = PATCH_FULL_RESPONSE) -> np.ndarray:
    """Object response of a patch token from the fraction of the patch the object covers.

    A ViT patch token already responds to an object that fills part of the patch, so the
    response saturates at ``full`` coverage: ``min(1, cover / full)``.  This makes the map
    *encompass* thin parts (handles, blades) as the paper observes of ClearCLIP (Sec. 4.3),
    instead of fading them out with their small area.  (G,G) -> (G,G) in [0,1].
    """
    return np.clip(np.asarray(cover, np.float64) / full, 0.0, 1.0)


def gt_density(part_mask: np.ndarray, sigma_frac: float = 0.03) -> np.ndarray:
    """AGD20K-like GT: Gaussian-blurred part mask, scaled to max 255, uint8 (H,W)."""
    sigma = sigma_frac * max(part_mask.shape)
    d = gaussian_filter(part_mask.astype(np.float64), sigma)
    m = d.max()
    if m <= 0:
        return np.zeros(part_mask.shape, np.uint8)
    return np.clip(d / m * 255.0 + 0.5, 0, 255).astype(np.uint8)


def simulated_affinity(
    obj_mask: np.ndarray,
    actor_mask: np.ndarray | None,
    rng: np.random.Generator,
    grid: int = 14,
) -> dict[str, np.ndarray]:
    """Simulated ClearCLIP object-level affinity maps at the (grid,grid) patch grid.

    Args:
        obj_mask: (H,W) bool visible object pixels.
        actor_mask: (H,W) bool actor pixels (exocentric) or None (egocentric).
        rng: randomness for noise, leakage and misses.
    Returns:
        {"action": (grid,grid), "entity": (grid,grid)} float32 raw-cosine-like maps.
    """
    obj = patch_response(area_resize(obj_mask, grid)).astype(np.float64)
    act = (
        np.zeros_like(obj) if actor_mask is None else patch_response(area_resize(actor_mask, grid))
    )

    def one(region: np.ndarray) -> np.ndarray:
        r = gaussian_filter(region, rng.uniform(0.5, 1.0))
        if r.max() > 0:
            r = r / r.max()
        u = rng.uniform()
        weak, displaced = MISS_RATES["ego" if actor_mask is None else "exo"]
        if u < weak:  # miss: weak response
            r = r * rng.uniform(0.0, 0.3)
        elif u < weak + displaced:  # miss: displaced response
            r = np.roll(r, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        leak = zoom(rng.uniform(0, 1, (4, 4)), grid / 4, order=1)[:grid, :grid]
        gain = rng.uniform(0.2, 0.3)
        out = -0.04 + gain * r + rng.uniform(0.03, 0.1) * leak + rng.normal(0, 0.015, r.shape)
        return np.clip(out, -0.1, 0.4).astype(np.float32)

    if actor_mask is None:
        return {"action": one(obj), "entity": one(0.6 * obj)}
    return {"action": one(obj + 0.3 * act), "entity": one(0.6 * obj + act)}


# ---------------------------------------------------------------------------- rendering


def _rand_rot(rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Random rotation: uniform about z, then a tilt of up to ``tilt_deg`` about x and y."""
    t = np.deg2rad(tilt_deg)
    T = np.eye(4)
    T[:3, :3] = (
        rot_x(rng.uniform(-t, t)) @ rot_y(rng.uniform(-t, t)) @ rot_z(rng.uniform(0, 2 * np.pi))
    )
    return T


def _camera(rng, size: int, distance: tuple[float, float], jitter: float) -> Camera:
    el = np.deg2rad(rng.uniform(5, 50))
    az = rng.uniform(0, 2 * np.pi)
    d = rng.uniform(*distance)
    eye = d * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    target = rng.uniform(-jitter, jitter, 3)
    return Camera.look_at(eye, target, (0, 0, 1), rng.uniform(32, 38), size, size)


def _encode_jpg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _encode_png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def render_sample(
    seed: int, affordance: str, category: str, view: str, index: int, image_size: int
) -> dict:
    """Render one image of the dataset (pure function of its arguments).

    Returns a dict: ``rgb`` (S,S,3) uint8, ``gt`` (S,S) uint8 (ego views), ``maps``
    {"action","entity"} (14,14) float32, ``part_mask`` (S,S) bool, ``mask`` (S,S) bool,
    ``actor_mask`` (S,S) bool, ``asset_seed`` int.
    """
    rng = image_rng(seed, affordance, category, view, index)
    test = view == "ego_test"
    asset_seed = int(rng.integers(0, 2**30)) * 2 + int(test)  # train/test instances disjoint
    asset = make_asset(category, asset_seed)
    aff_parts = asset.parts_with(affordance=affordance)
    if not aff_parts:
        raise AffordError(f"category {category!r} does not afford {affordance!r}")
    bg_kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    S = image_size
    best = None
    pose = _rand_rot(rng, 20.0)
    ego_scene = None if view == "exo_train" else Scene(asset, pose=pose)
    for _attempt in range(6):  # re-draw the view until the affordance part is visible
        if view == "exo_train":
            cam = _camera(rng, S, (2.6, 3.3), 0.15)
            extras, actor_n = _exo_extras(asset, affordance, pose, cam, rng)
            scene = Scene(asset, pose=pose, extras=extras)
        else:
            cam = _camera(rng, S, (1.6, 2.0), 0.06)
            scene, actor_n = ego_scene, 0
        v = scene.render(cam, bg_kind, rng=rng)
        part_mask = np.isin(v.part_id, aff_parts)
        actor_mask = (v.extra_id >= 0) & (v.extra_id < actor_n)
        ok = part_mask.sum() >= max(4, 0.004 * S * S) and v.mask.sum() >= 0.02 * S * S
        if view == "exo_train":
            ok = ok and actor_mask.sum() >= 0.005 * S * S
        score = part_mask.sum()
        if best is None or score > best[0]:
            best = (score, v, part_mask, actor_mask)
        if ok:
            break
    _, v, part_mask, actor_mask = best
    maps = simulated_affinity(v.mask, actor_mask if view == "exo_train" else None, rng)
    return {
        "rgb": v.rgb,
        "gt": None if view == "exo_train" else gt_density(part_mask),
        "maps": maps,
        "part_mask": part_mask,
        "mask": v.mask,
        "actor_mask": actor_mask,
        "asset_seed": asset_seed,
        "background": bg_kind,
    }


def _exo_extras(asset, affordance: str, pose: np.ndarray, cam: Camera, rng):
    """Actor (hand + arm) and use prop in world coordinates; returns (extras, n_actor)."""
    if affordance in ("hold", "open"):
        grip = asset.parts_with(affordance=affordance)
    else:
        grip = asset.parts_with(affordance="hold") or asset.parts_with(affordance=affordance)
    gi = grip[int(rng.integers(len(grip)))]
    part = asset.parts[gi]
    verts = np.asarray(asset.part_mesh(gi).vertices)
    R, t = pose[:3, :3], pose[:3, 3]
    world_v = verts @ R.T + t
    origin = R @ part.frame[:3, 3] + t
    axis = R @ part.frame[:3, 0]
    # the arm comes from the side of the image (mostly below), a little towards the camera
    right, down, back = cam.R[0], cam.R[1], -cam.R[2]
    ang = rng.uniform(-0.3, np.pi + 0.3)
    arm_dir = np.cos(ang) * right + np.sin(ang) * down + rng.uniform(0.2, 0.6) * back
    arm_dir = arm_dir / np.linalg.norm(arm_dir)
    contact = contact_point(world_v, origin, arm_dir)
    actor = hand_and_arm(contact, arm_dir, axis, rng, scale=rng.uniform(0.9, 1.1))
    props = []
    if affordance not in ("hold", "open"):
        ai = asset.parts_with(affordance=affordance)[0]
        props = use_prop(affordance, pose @ asset.parts[ai].frame, rng)
        if affordance == "drink_with":  # the head is part of the actor
            actor, props = actor + props, []
    return actor + props, len(actor)


# ---------------------------------------------------------------------------- writer


def _task_worker(args):
    seed, aff, cat, view, index, size = args
    s = render_sample(seed, aff, cat, view, index, size)
    out = {"jpg": _encode_jpg(s["rgb"]), "maps": s["maps"], "gt": None}
    if s["gt"] is not None:
        out["gt"] = _encode_png(s["gt"])
    return args, out


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise AffordError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        manifest = out / "dataset.json"
        ours = False
        if manifest.is_file():
            try:
                ours = read_json(manifest).get("generator") == GENERATOR
            except AffordError:
                ours = False
        if ours:  # a previous run of this writer: replace its trees
            for sub in ("Seen", "Unseen", "cache"):
                if (out / sub).is_dir():
                    shutil.rmtree(out / sub)
        elif not force:
            raise AffordError(
                f"{out}: directory is not empty and was not written by `afford synth "
                "affordance`; pass --force to write into it anyway, or choose another --out"
            )


def stem(category: str, index: int) -> str:
    """File stem of an image: ``<object>_NNNNNN`` (AGD20K style)."""
    return f"{category}_{index:06d}"


def write_affordance_dataset(
    out: str | os.PathLike,
    seed: int = 0,
    size: str | AffordanceSize = "default",
    workers: int = 0,
    force: bool = False,
    contact_sheet: bool = True,
    progress: bool = True,
    categories=CATEGORIES,
    unseen_test=UNSEEN_TEST_CATEGORIES,
) -> dict:
    """Write the synthetic affordance dataset (see module docstring); returns the manifest.

    Args:
        out: output folder (created).
        seed: dataset seed.
        size: "small" | "default" | "large" or an AffordanceSize with explicit counts.
        workers: processes (0/1 = in-process); the output does not depend on it.
        force: write into a non-empty folder that this writer did not create.
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise AffordError(f"--size must be one of {sorted(SIZES)}, got {size!r}")
        size_name, sz = size, SIZES[size]
    else:
        size_name, sz = "custom", size
    if min(sz.ego, sz.exo, sz.test) < 1 or sz.image_size < 32:
        raise AffordError(f"counts must be >= 1 and image_size >= 32, got {sz}")
    for c in categories:
        if c not in CATEGORIES:
            raise AffordError(f"unknown category {c!r}; choose from {CATEGORIES}")
    out = Path(out)
    _check_out(out, force)
    out.mkdir(parents=True, exist_ok=True)
    plan = split_plan(categories, unseen_test)
    cache = MapCache(
        out / "cache",
        MODEL_ID,
        simulated=True,
        meta={"generator": GENERATOR, "version": GENERATOR_VERSION, "grid": 14},
    )
    tasks = []
    for aff, cat in plan["Seen"]["train"]:
        tasks += [(seed, aff, cat, "ego_train", i, sz.image_size) for i in range(sz.ego)]
        tasks += [(seed, aff, cat, "exo_train", i, sz.image_size) for i in range(sz.exo)]
        tasks += [(seed, aff, cat, "ego_test", i, sz.image_size) for i in range(sz.test)]
    rel = {"ego_train": "trainset/egocentric", "exo_train": "trainset/exocentric"}
    rel["ego_test"] = "testset/egocentric"
    gt_rel = {"ego_train": "trainset/GT", "ego_test": "testset/GT"}

    def results():
        if workers and workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                yield from pool.imap(_task_worker, tasks, chunksize=4)
        else:
            for t in tasks:
                yield _task_worker(t)

    written: dict[tuple, tuple[Path, Path | None]] = {}
    for (_, aff, cat, view, index, _), res in tqdm(
        results(), total=len(tasks), desc="synth affordance", disable=not progress
    ):
        name = stem(cat, index)
        img = out / "Seen" / rel[view] / aff / cat / f"{name}.jpg"
        write_bytes(img, res["jpg"])
        cache.put(
            content_key(res["jpg"]),
            {f"action:{aff}": res["maps"]["action"], f"entity:{aff}": res["maps"]["entity"]},
        )
        gt = None
        if res["gt"] is not None:
            gt = out / "Seen" / gt_rel[view] / aff / cat / f"{name}.png"
            write_bytes(gt, res["gt"])
        written[(view, aff, cat, index)] = (img, gt)
    # Unseen: byte-exact copies of the Seen folders it uses
    for part, views in (("train", ("ego_train", "exo_train")), ("test", ("ego_test",))):
        keep = set(plan["Unseen"][part])
        for (view, aff, cat, _index), (img, gt) in sorted(written.items()):
            if view not in views or (aff, cat) not in keep:
                continue
            for src in (img, gt):
                if src is not None:
                    dst = out / "Unseen" / src.relative_to(out / "Seen")
                    write_bytes(dst, src.read_bytes())
    manifest = _manifest(out, seed, size_name, sz, plan, categories, unseen_test)
    write_json(out / "dataset.json", manifest)
    if contact_sheet:
        write_contact_sheet(out, plan, sz)
    return manifest


def _count(root: Path, pattern: str) -> int:
    return sum(1 for _ in root.glob(pattern)) if root.is_dir() else 0


def _manifest(out, seed, size_name, sz, plan, categories, unseen_test) -> dict:
    splits = {}
    for split, p in plan.items():
        root = out / split
        splits[split] = {
            "train_categories": sorted({c for _, c in p["train"]}),
            "test_categories": sorted({c for _, c in p["test"]}),
            "affordances": sorted({a for a, _ in p["train"]} | {a for a, _ in p["test"]}),
            "train_folders": [f"{a}/{c}" for a, c in p["train"]],
            "test_folders": [f"{a}/{c}" for a, c in p["test"]],
            "counts": {
                "train_egocentric": _count(root, "trainset/egocentric/*/*/*.jpg"),
                "train_exocentric": _count(root, "trainset/exocentric/*/*/*.jpg"),
                "train_gt": _count(root, "trainset/GT/*/*/*.png"),
                "test_egocentric": _count(root, "testset/egocentric/*/*/*.jpg"),
                "test_gt": _count(root, "testset/GT/*/*/*.png"),
            },
        }
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size_name,
        "sizes": asdict(sz),
        "layout": "AGD20K",
        "categories": list(categories),
        "affordances": sorted({a for a, _ in plan["Seen"]["train"]}),
        "category_affordances": {c: list(category_affordances(c)) for c in categories},
        "seen_categories": [c for c in categories if c not in unseen_test],
        "unseen_categories": list(unseen_test),
        "splits": splits,
        "affinity_cache": {
            "root": "cache",
            "model_id": MODEL_ID,
            "simulated": True,
            "arrays": ["action:<affordance>", "entity:<affordance>"],
            "grid": 14,
        },
        "notes": "synthetic world (afford.synth); see docs/synthetic-world.md",
    }


def write_contact_sheet(out: Path, plan: dict, sz: AffordanceSize, max_rows: int = 9) -> Path:
    """Contact sheet: per affordance one object: ego, ego + simulated affinity, exo, exo +
    entity affinity, test image + GT overlay."""
    cache = MapCache.open(out / "cache", MODEL_ID)
    seen = out / "Seen"
    rows, titles = [], []
    done = set()
    for aff, cat in plan["Seen"]["train"]:
        if aff in done or len(done) >= max_rows:
            continue
        done.add(aff)
        n = stem(cat, 0)
        ego = seen / "trainset/egocentric" / aff / cat / f"{n}.jpg"
        exo = seen / "trainset/exocentric" / aff / cat / f"{n}.jpg"
        tst = seen / "testset/egocentric" / aff / cat / f"{n}.jpg"
        gt = seen / "testset/GT" / aff / cat / f"{n}.png"
        e, x, t = read_image(ego), read_image(exo), read_image(tst)
        ea = cache.get_map(file_key(ego), f"action:{aff}")
        xe = cache.get_map(file_key(exo), f"entity:{aff}")
        rows += [
            e,
            overlay_heatmap(e, ea - ea.min()),
            x,
            overlay_heatmap(x, xe - xe.min()),
            overlay_heatmap(t, read_gray(gt).astype(np.float32)),
        ]
        titles += [f"{aff}/{cat} ego", "sim. action map", "exo", "sim. entity map", "test + GT"]
    sheet = image_grid(rows, ncols=5, titles=titles)
    return write_image(out / "contact_sheet.png", sheet)

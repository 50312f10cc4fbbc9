"""Helpers for the grounding data/train tests: a tiny hand-made AGD20K-layout tree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from afford.config import from_dict
from afford.data.cache import MapCache, file_key
from afford.data.io import write_image
from afford.grounding.config import GroundingExperiment
from afford.grounding.train import train
from afford.synth.affordance import AffordanceSize, write_affordance_dataset

# affordance -> object -> (n_ego, n_exo, n_test)
TREE = {
    "cut_with": {"knife": (3, 4, 2)},
    "hold": {"cup": (2, 5, 2), "knife": (1, 3, 1)},
}


def folder_id(aff: str, obj: str) -> float:
    """A distinct constant per <affordance>/<object> folder (used as its cached map value)."""
    names = sorted((a, o) for a in TREE for o in TREE[a])
    return float(names.index((aff, obj)) + 1)


def write_tree(root: Path, seed: int = 0, size=(48, 64), with_cache: bool = True) -> Path:
    """Write the tiny tree under ``root`` (+ a "simulated-clip" cache whose maps are the
    constant :func:`folder_id` of the image's folder). Returns ``root``."""
    rng = np.random.default_rng(seed)
    cache = MapCache(root / "cache", "simulated-clip", simulated=True) if with_cache else None
    for aff, objs in TREE.items():
        for obj, (n_ego, n_exo, n_test) in objs.items():
            fid = folder_id(aff, obj)
            for split, view, n in (
                ("trainset", "egocentric", n_ego),
                ("trainset", "exocentric", n_exo),
                ("testset", "egocentric", n_test),
            ):
                for i in range(n):
                    img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                    p = write_image(
                        root / split / view / aff / obj / f"{obj}_{view[:3]}_{i:03d}.png", img
                    )
                    if split == "testset":
                        gt = np.zeros(size, dtype=np.uint8)
                        gt[: size[0] // 2, : size[1] // 3] = 255
                        write_image(root / "testset" / "GT" / aff / obj / f"{p.stem}.png", gt)
                    if cache is not None:
                        m = np.full((14, 14), fid, dtype=np.float32)
                        cache.put(file_key(p), {f"action:{aff}": m, f"entity:{aff}": m + 0.5})
    # one test image without GT: must be ignored (protocol)
    write_image(
        root / "testset" / "egocentric" / "hold" / "cup" / "nogt.png",
        np.zeros((*size, 3), dtype=np.uint8),
    )
    return root


# ------------------------------------------------------------------------------ synthetic
SYNTH_CATEGORIES = ("mug", "knife", "cup", "scissors")
SYNTH_UNSEEN = ("cup", "scissors")


def synth_tiny(base: Path) -> Path:
    """A tiny synthetic AGD20K-layout dataset under ``base/synth`` (written once per session).

    Unseen split: train on mug/knife, test on cup/scissors; classes cut_with, drink_with, hold.
    """
    out = base / "synth"
    if not (out / "dataset.json").is_file():
        write_affordance_dataset(
            out, seed=0, size=AffordanceSize(ego=3, exo=4, test=2, image_size=64),
            categories=SYNTH_CATEGORIES, unseen_test=SYNTH_UNSEEN, progress=False,
            contact_sheet=False,
        )  # fmt: skip
    return out


def tiny_config(root: Path, out: Path, **train_keys) -> GroundingExperiment:
    """Experiment config: tiny backbones, simulated affinity maps, the full method (every loss
    of Table 2 row (i)) with the released code's soft calibration (the binarised one zeroes
    pixels, which KLD punishes hard on the synthetic GT blobs); un-augmented views with
    memoised DINO outputs for speed (the augmented path runs in test_cli)."""
    t = {"epochs": 2, "batch_size": 4, "out": str(out), "progress": False, "optimizer": "adam",
         "lr": 1e-3, "seed": 0}  # fmt: skip
    t.update(train_keys)
    return from_dict(GroundingExperiment, {
        "data": {"root": str(root), "affinity": "simulated", "val_fraction": 0.34,
                 "augment": False},
        "backbone": {"dino": {"variant": "tiny"}, "clip": {"variant": "tiny"}},
        "model": {"calibration": "soft"},
        "train": t,
    })  # fmt: skip


def tiny_run(base: Path) -> tuple[Path, dict]:
    """Train the tiny full model once per session -> (run folder, train() result)."""
    run = base / "run_tiny"
    res_file = base / "run_tiny_result.json"
    if not res_file.is_file():
        res = train(tiny_config(synth_tiny(base) / "Unseen", run))
        res_file.write_text(json.dumps(res))
    return run, json.loads(res_file.read_text())

"""``afford eval grounding``: KLD / SIM / NSS of a checkpoint, overall and per affordance.

Writes ``<out>/results.json``::

    {"split": "test", "checkpoint": ..., "dataset": ..., "root": ..., "n": N,
     "kld": .., "sim": .., "nss": ..,
     "per_affordance": {"hold": {"n": .., "kld": .., "sim": .., "nss": ..}, ...},
     "model": {"method": .., "mode": .., "calibration": ..}}

plus ``per_affordance.png`` (KLD bar chart) and ``examples.png`` (image, GT and prediction
overlays for the first test image of each affordance).  Metrics follow REFERENCE_NOTES B via
:mod:`afford.metrics.saliency` (per image, then a plain mean over images).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afford.config import replace
from afford.data.agd20k import EvalSet, ego_map_names, scan_dataset
from afford.data.io import write_image, write_json
from afford.engine import resolve_device
from afford.errors import AffordError
from afford.grounding.affinity import fill_cache
from afford.grounding.build import build_clip, load_trained, open_cache, resolve_checkpoint
from afford.grounding.train import predict, score_split
from afford.metrics.saliency import aggregate
from afford.viz import image_grid, new_figure, overlay_heatmap, save_figure


def evaluate(
    checkpoint: str | os.PathLike,
    split: str = "test",
    data_root: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    figures: bool = True,
    progress: bool = True,
    calibration: str | None = None,
    sets: Iterable[str] = (),
) -> dict[str, Any]:
    """Evaluate a grounding checkpoint on ``split`` ("test" or "val"); returns the results dict.

    Args:
        checkpoint: checkpoint folder or training run folder (uses ``best/``).
        data_root: dataset folder (default: the one the checkpoint was trained on).
        out: output folder (default ``<checkpoint>/eval_<split>``).
        batch_size: images per forward pass (default ``train.eval_batch_size``).
        calibration: override the checkpoint's test-time calibration ("binary" | "soft" |
            "none"); calibration does not change training, so e.g. Table 2 rows (h) and (i)
            share one trained model.
        sets: ``--set key=value`` changes of the checkpoint's experiment (e.g.
            ``data.root=DIR``, ``model.calibration=soft``).
    """
    if split not in ("test", "val"):
        raise AffordError(f"--split must be 'test' or 'val', got {split!r}")
    ckpt_dir = resolve_checkpoint(checkpoint)
    dev = resolve_device(device)
    model, exp, dino, _ = load_trained(ckpt_dir, dev, sets=sets)
    if calibration is not None:
        model.cfg = replace(model.cfg, calibration=calibration)
    if exp.data.affinity == "online":  # the maps of un-augmented test images are cached
        exp = replace(exp, data=replace(exp.data, affinity="clip"))
    dcfg = exp.data
    root = data_root if data_root is not None else dcfg.root
    if root is None:
        raise AffordError(f"{ckpt_dir}: the checkpoint names no dataset folder; pass --data DIR")
    data = scan_dataset(
        root, dcfg.dataset, train=split == "val", test=split == "test",
        val_fraction=dcfg.val_fraction, val_seed=dcfg.val_seed,
    )  # fmt: skip
    if data.classes != model.cfg.class_names:
        raise AffordError(
            f"{data.root}: dataset classes {data.classes} differ from the checkpoint's "
            f"{model.cfg.class_names}"
        )
    records = data.split(split)
    if not records:
        raise AffordError(f"{data.root}: the {split} split is empty")
    if any(r.gt is None for r in records):
        raise AffordError(
            f"{data.root}: the {split} split has images without GT maps; KLD/SIM/NSS need GT "
            "(the val split has GT only when trainset/GT exists)"
        )
    clip = build_clip(exp, dev) if dcfg.affinity == "clip" else None
    cache = open_cache(exp, data.root, clip)
    if clip is not None:
        fill_cache(
            {r.path: ego_map_names(r.affordance) for r in records}, clip, cache, progress=progress
        )
    evalset = EvalSet(records, data.classes, cache)
    bs = batch_size if batch_size is not None else exp.train.eval_batch_size
    rows = score_split(model, dino, evalset, batch_size=bs, progress=progress)
    agg = aggregate(
        [{k: r[k] for k in ("kld", "sim", "nss")} for r in rows],
        groups=[r["affordance"] for r in rows],
    )
    results = {
        "split": split,
        "checkpoint": str(ckpt_dir),
        "dataset": dcfg.dataset,
        "root": str(data.root),
        "n": agg["n"],
        "kld": agg["kld"],
        "sim": agg["sim"],
        "nss": agg["nss"],
        "per_affordance": agg["groups"],
        "model": {k: getattr(model.cfg, k) for k in ("method", "mode", "calibration")},
        "per_image": rows,
    }
    out_dir = (
        Path(out)
        if out is not None
        else ckpt_dir.parent / f"eval_{split}"
        if ckpt_dir.name in ("best", "last")
        else ckpt_dir / f"eval_{split}"
    )
    write_json(out_dir / "results.json", results)
    if figures:
        _figures(out_dir, results, model, dino, evalset)
    return results


def _figures(out_dir: Path, results: dict, model, dino, evalset) -> None:
    per = results["per_affordance"]
    names = sorted(per)
    fig = new_figure(max(4.0, 0.35 * len(names) + 1.5), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), [per[n]["kld"] for n in names], color="tab:blue")
    ax.axhline(results["kld"], color="k", lw=1, ls="--", label=f"mean {results['kld']:.3f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("KLD (lower is better)")
    ax.set_title(f"{results['split']} split, n={results['n']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "per_affordance.png")

    firsts: dict[str, int] = {}
    for i, r in enumerate(evalset.records):
        firsts.setdefault(r.affordance, i)
    tiles, titles = [], []
    for aff in sorted(firsts)[:12]:
        it = evalset.item(firsts[aff])
        img = (it["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        with torch.no_grad():
            heat = predict(
                model, dino, it["image"][None], it["label"][None], it["ego_action"][None]
            )[0]
        gt = it["gt"].numpy()
        tiles += [img, overlay_heatmap(img, gt), overlay_heatmap(img, heat.float().cpu().numpy())]
        titles += [aff, "GT", "prediction"]
    write_image(out_dir / "examples.png", image_grid(tiles, ncols=3, titles=titles))

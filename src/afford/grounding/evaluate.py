"""``afford eval grounding``: KLD / SIM / NSS of a checkpoint, overall and per affordance.

Writes ``<out>/results.json``::

    {"split": "test", "checkpoint": ..., "dataset": ..., "root": ..., "n": N,
     "kld": .., "sim": .., "nss": ..,
     "per_affordance": {"hold": {"n": .., "kld": .., "sim": .., "nss": ..}, ...},
     "model": {"method": .., "mode": .., "calibration": ..},
     "chance": {"what": "uniform map", "n": N, "kld": .., "sim": .., "nss": ..},
     "below_chance": ["kld", ...], "under_chance": true|false}

``chance`` is the uniform map scored on the same images (:func:`uniform_row`);
``below_chance`` lists the metrics on which the model does worse than it (KLD higher, SIM or
NSS lower), ``under_chance`` is true when that holds for the main metric, KLD (the CLI
then prints a warning).

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
from afford.data.agd20k import EvalSet, ImageRecord, ego_map_names, scan_dataset
from afford.data.io import output_dir, write_image, write_json
from afford.engine import resolve_device
from afford.errors import AffordError
from afford.grounding.affinity import fill_cache
from afford.grounding.build import build_clip, load_trained, open_cache, resolve_checkpoint
from afford.grounding.train import predict, score_split
from afford.metrics.saliency import aggregate, evaluate_map
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
    overwrite: bool = True,
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
        overwrite: replace an earlier ``results.json`` in the output folder (the CLI passes
            ``--overwrite``, default off: refused before any work).
    """
    if split not in ("test", "val"):
        raise AffordError(f"--split must be 'test' or 'val', got {split!r}")
    ckpt_dir = resolve_checkpoint(checkpoint)
    out_dir = (
        Path(out)
        if out is not None
        else ckpt_dir.parent / f"eval_{split}"
        if ckpt_dir.name in ("best", "last")
        else ckpt_dir / f"eval_{split}"
    )
    output_dir(out_dir, overwrite=overwrite)  # refused before any work (names --out)
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
    chance = uniform_row(records, data.classes)
    results["chance"] = {"what": "uniform map", **{k: chance[k] for k in ("n", *METRICS)}}
    results["below_chance"] = below_chance(results, chance)
    results["under_chance"] = "kld" in results["below_chance"]
    write_json(out_dir / "results.json", results)
    if figures:
        _figures(out_dir, results, model, dino, evalset)
    return results


#: The metrics of a grounding evaluation and whether higher is better (REFERENCE_NOTES B).
METRICS = ("kld", "sim", "nss")
HIGHER_IS_BETTER = {"kld": False, "sim": True, "nss": True}
#: The AGD20K protocol's evaluation resolution (:func:`afford.metrics.saliency.evaluate_map`).
EVAL_SIZE = 224


def uniform_row(records: list[ImageRecord], classes: list[str]) -> dict[str, Any]:
    """KLD / SIM / NSS of the uniform map on every record with GT (the grounding chance row).

    The protocol min-max normalises each prediction, which maps a literally constant map to
    all zeros (no mass anywhere; KLD ~ 27.6 - H(gt), SIM 0, NSS 0 by definition): that is
    the score of an empty answer, not of chance. The uniform *distribution* is a map of ones
    with a single 0 in one corner of the (EVAL_SIZE, EVAL_SIZE) grid, which min-max leaves as
    it is, so p = 1 / (EVAL_SIZE^2 - 1) on every other pixel. Both are scored with
    :func:`afford.metrics.saliency.evaluate_map`; the constant map's scores are kept in
    ``"constant_map"``.
    """
    uniform = np.ones((EVAL_SIZE, EVAL_SIZE))
    uniform[0, 0] = 0.0
    constant = np.ones((EVAL_SIZE, EVAL_SIZE))
    evalset = EvalSet(records, classes, None, size=EVAL_SIZE, with_maps=False)
    rows, flat = [], []
    for i in range(len(evalset)):
        gt = evalset.item(i)["gt"].numpy()
        rows.append(evaluate_map(uniform, gt, size=EVAL_SIZE))
        flat.append(evaluate_map(constant, gt, size=EVAL_SIZE))
    agg = aggregate(rows, groups=[r.affordance for r in records])
    const = aggregate(flat)
    return {
        "n": agg["n"],
        **{k: agg[k] for k in METRICS},
        "per_affordance": agg["groups"],
        "constant_map": {k: const[k] for k in METRICS},
    }


def below_chance(scores: dict[str, Any], chance: dict[str, Any]) -> list[str]:
    """The metrics of ``scores`` worse than ``chance`` (KLD higher; SIM, NSS lower)."""
    worse = []
    for k in METRICS:
        a, b = float(scores[k]), float(chance[k])
        if (a < b) if HIGHER_IS_BETTER[k] else (a > b):
            worse.append(k)
    return worse


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

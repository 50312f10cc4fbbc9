"""Table 1 evaluation: label transfer and discovery on evaluation pairs (paper Sec. 5.1,
REFERENCE_NOTES C).

Per evaluation pair and per direction (source -> target and target -> source):

- label transfer: every GT source point -> the most similar target pixel inside the target
  object mask (times the predicted part mask with a mask head, or the part box for
  "VLM + DINO" rows); normalised distance and PCK@k, k in {23, 15, 10, 5}; and ``distinct``,
  the fraction of distinct predicted pixels (a mode-collapse diagnostic, not a paper metric);
- discovery: cycle-consistency ranked matches between the object pixels (part list first with
  a mask head); best F1@k and AP@k, k in {23, 15, 10, 5}.

Chance: the expected label-transfer metrics of a uniformly random pixel of the target object
mask (:func:`afford.metrics.correspondence.label_transfer_chance`, exact, no draw), in
``results["settings"]["transfer_chance"]``; each row lists the label-transfer metrics on which
it does worse in ``below_chance`` and sets ``under_chance`` when PCK@23 is among them.
Discovery (F1 / AP) has no exact chance value here (the ``chance`` baseline row draws one).

Results are averaged over (pair, direction) records, overall and split into within-category
and across-category pairs. ``discovery_stride > 1`` runs discovery on every ``stride``-th
pixel of both images (a speed option for CPU benchmarks; the paper uses every pixel, stride 1).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from afford.correspondence.matching import discover, transfer
from afford.data.io import write_image, write_json
from afford.errors import AffordError
from afford.metrics.correspondence import (
    average_results,
    discovery,
    distinct_fraction,
    label_transfer,
    label_transfer_chance,
)
from afford.viz import draw_matches, plot_pr_curves

log = logging.getLogger(__name__)

KS = (23, 15, 10, 5)


def evaluate_direction(
    fs: dict[str, Any],
    ft: dict[str, Any],
    src_points: np.ndarray,
    tgt_points: np.ndarray,
    src_region: np.ndarray,
    tgt_region: np.ndarray,
    ks: tuple[int, ...] = KS,
    discovery_stride: int = 1,
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of one direction.

    Args:
        fs, ft: row outputs (``feat`` (D,S,S) tensor, ``part`` (S,S) bool or None).
        src_points, tgt_points: (n,2) GT ``(row, col)``.
        src_region, tgt_region: (S,S) bool pixels allowed (object mask, or mask & part box).
    Returns: (metrics dict with scalars and "curves", predicted target points (n,2)).
    """
    tgt_part = None if ft["part"] is None else torch.from_numpy(ft["part"])
    pred = transfer(
        fs["feat"],
        ft["feat"],
        torch.from_numpy(src_points),
        torch.from_numpy(tgt_region),
        tgt_part,
    ).numpy()
    out: dict[str, Any] = label_transfer(pred, tgt_points, thresholds=ks)
    out["distinct"] = distinct_fraction(pred)
    s = int(discovery_stride)
    sub = (slice(None), slice(None, None, s), slice(None, None, s))
    parts = (None, None)
    if fs["part"] is not None and ft["part"] is not None:
        parts = (torch.from_numpy(fs["part"][::s, ::s]), torch.from_numpy(ft["part"][::s, ::s]))
    d = discover(
        fs["feat"][sub],
        ft["feat"][sub],
        torch.from_numpy(src_region[::s, ::s].copy()),
        torch.from_numpy(tgt_region[::s, ::s].copy()),
        *parts,
    )
    out.update(discovery(d.src.numpy() * s, d.tgt.numpy() * s, src_points, tgt_points, ks=ks))
    return out, pred


def _average(records: list[dict[str, Any]]) -> dict[str, Any]:
    if not records:
        return {"n": 0}
    return average_results([{k: v for k, v in r["metrics"].items()} for r in records])


def _mean_curve(records: list[dict[str, Any]], k: int) -> dict[str, np.ndarray] | None:
    """Mean precision / recall at every sweep step over records with a full sweep."""
    curves = [r["curves"][k] for r in records if len(r["curves"][k]["recall"]) == 101]
    if not curves:
        return None
    return {
        "recall": np.mean([c["recall"] for c in curves], axis=0),
        "precision": np.mean([c["precision"] for c in curves], axis=0),
    }


def evaluate_rows(
    dataset,
    rows: list,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    max_pairs: int | None = None,
    discovery_stride: int = 1,
    figures: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate Table 1 rows on a dataset's evaluation pairs.

    Args:
        dataset: :class:`afford.data.correspondence.CorrespondenceDataset`.
        rows: rows from :mod:`afford.correspondence.baselines` (ModelRow, BackboneRow, ...).
        split: "test" (reporting) or "val".
        out_dir: when given, writes ``results.json``, ``pr_<row>.png`` and
            ``matches_<row>_<pair>.png`` (label transfer, green = within 23 px) there.
        max_pairs: evaluate only the first pairs (quick runs).
    Returns: {row name: {"overall", "within_category", "across_category" (averages over
    (pair, direction)), "per_pair": [...]}, "settings": {...}}.
    """
    pairs = dataset.eval_pairs(split)
    if max_pairs is not None:
        pairs = pairs[: int(max_pairs)]
    if not pairs:
        raise AffordError(f"{dataset.root}: no evaluation pairs in split {split!r}")
    records: dict[str, list[dict[str, Any]]] = {r.name: [] for r in rows}
    if len(records) != len(rows):
        raise AffordError(f"row names must be unique, got {[r.name for r in rows]}")
    drawn: dict[str, int] = {r.name: 0 for r in rows}
    out = Path(out_dir) if out_dir is not None else None
    chance: list[dict[str, Any]] = []
    for pair in tqdm(pairs, desc="eval pairs", disable=not progress, leave=False):
        data = dataset.load_pair(pair)
        data["pair"] = pair
        for b in (2, 1):  # forward: target 2; backward: target 1
            m = label_transfer_chance(data[f"points{b}"], data[f"mask{b}"], thresholds=KS)
            chance.append({"metrics": m, "cross_category": pair.cross_category})
        for row in rows:
            f1 = row.features(data["image1"], data["mask1"], pair.function)
            f2 = row.features(data["image2"], data["mask2"], pair.function)
            regions = {1: data["mask1"], 2: data["mask2"]}
            if hasattr(row, "region"):
                regions = {k: row.region(data, k, data[f"mask{k}"]) for k in (1, 2)}
            for direction, (a, b) in (("forward", (1, 2)), ("backward", (2, 1))):
                m, pred = evaluate_direction(
                    f1 if a == 1 else f2,
                    f2 if a == 1 else f1,
                    data[f"points{a}"],
                    data[f"points{b}"],
                    regions[a],
                    regions[b],
                    discovery_stride=discovery_stride,
                )
                curves = m.pop("curves")
                records[row.name].append(
                    {
                        "pair": pair.id,
                        "direction": direction,
                        "function": pair.function,
                        "cross_category": pair.cross_category,
                        "metrics": m,
                        "curves": curves,
                    }
                )
                if out is not None and direction == "forward" and drawn[row.name] < figures:
                    _draw(out, row.name, pair.id, data, pred)
                    drawn[row.name] += 1
    results: dict[str, Any] = {
        "settings": {
            "split": split,
            "pairs": len(pairs),
            "discovery_stride": int(discovery_stride),
            "ks": list(KS),
            "directions": ["forward", "backward"],
            "transfer_chance": {
                "what": "expected label transfer of a uniformly random pixel of the target "
                "object mask",
                "overall": _average(chance),
                "within_category": _average([c for c in chance if not c["cross_category"]]),
                "across_category": _average([c for c in chance if c["cross_category"]]),
            },
        }
    }
    for row in rows:
        recs = records[row.name]
        res = {
            "overall": _average(recs),
            "within_category": _average([r for r in recs if not r["cross_category"]]),
            "across_category": _average([r for r in recs if r["cross_category"]]),
            "per_pair": [{k: v for k, v in r.items() if k != "curves"} for r in recs],
        }
        res["below_chance"] = below_chance(
            res["overall"], results["settings"]["transfer_chance"]["overall"]
        )
        res["under_chance"] = MAIN_METRIC in res["below_chance"]
        if hasattr(row, "misses"):
            res["box_misses"] = int(row.misses)
        results[row.name] = res
        if out is not None:
            curves = {f"k={k}": c for k in KS if (c := _mean_curve(recs, k)) is not None}
            if curves:
                plot_pr_curves(
                    curves,
                    out / f"pr_{_safe(row.name)}.png",
                    title=f"{row.name}: discovery PR ({split})",
                )
    if out is not None:
        write_json(out / "results.json", results)
    return results


#: The headline label-transfer metric: a row below chance on it is flagged ``under_chance``.
MAIN_METRIC = "pck@23"


def below_chance(scores: dict[str, Any], chance: dict[str, Any]) -> list[str]:
    """The label-transfer metrics of ``scores`` worse than ``chance`` (PCK lower, normalised
    distance higher)."""
    worse = []
    for k, c in chance.items():
        if k == "n" or k not in scores:
            continue
        a, c = float(scores[k]), float(c)
        if (a > c) if k == "norm_dist" else (a < c):
            worse.append(k)
    return worse


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _draw(out: Path, row: str, pair_id: str, data: dict, pred: np.ndarray, n: int = 40) -> None:
    src, gt = data["points1"], data["points2"]
    sel = np.linspace(0, len(src) - 1, min(n, len(src))).round().astype(int)
    err = np.linalg.norm(pred[sel] - gt[sel], axis=1)
    img = draw_matches(data["image1"], data["image2"], src[sel], pred[sel], correct=err <= 23)
    write_image(out / f"matches_{_safe(row)}_{pair_id}.png", img)


def table_markdown(results: dict[str, Any], group: str = "overall") -> str:
    """Markdown table of the Table 1 metrics (one row per evaluated row)."""
    cols = (
        ["norm_dist"]
        + [f"pck@{k}" for k in KS]
        + [f"best_f1@{k}" for k in KS]
        + [f"ap@{k}" for k in KS]
    )
    lines = ["| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, res in results.items():
        if name == "settings":
            continue
        m = res[group]
        lines.append(
            f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.3f}" for c in cols) + " |"
        )
    return "\n".join(lines)

"""Speed of the metrics: discovery() at M = 50,000 predictions x G = 10,000 GT pairs, and the
saliency metrics (numpy per image, torch batched).

Run: ``cd /work/main && .venv/bin/python benchmarks/metrics.py``; prints a markdown table and
writes benchmarks/results/metrics.json.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

from _timing import best_time
from afford.data.io import write_json
from afford.metrics.correspondence import discovery
from afford.metrics.saliency import evaluate_map, evaluate_maps_torch

M, G = 50_000, 10_000
REPEATS = 3


def _time(fn, repeats: int = REPEATS) -> float:
    return best_time(fn, repeats)


def discovery_cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, ...]]:
    """Three (pred_src, pred_tgt, gt_src, gt_tgt) workloads at 224x224."""
    cases = {}
    # 1. random integer pixels everywhere
    cases["random points"] = (
        rng.integers(0, 224, (M, 2)),
        rng.integers(0, 224, (M, 2)),
        rng.integers(0, 224, (G, 2)),
        rng.integers(0, 224, (G, 2)),
    )
    # 2. a 100x100 part translated between the images (dense GT), predictions of every pixel
    #    with small target noise: the worst case (about 20 M candidate pairs at k = 23)
    yy, xx = np.mgrid[60:160, 60:160]
    src = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    tgt = src + [10.0, -20.0]
    ps = rng.integers(0, 224, (M, 2)).astype(float)
    pt = ps + [10.0, -20.0] + rng.normal(0, 2, (M, 2))
    cases["dense part, good matches"] = (ps, pt, src, tgt)
    # 3. sparse GT on random pixels, predictions near GT pairs (float coordinates)
    gs, gt = rng.integers(0, 224, (G, 2)), rng.integers(0, 224, (G, 2))
    idx = rng.integers(0, G, M)
    cases["near-GT float predictions"] = (
        gs[idx] + rng.normal(0, 3, (M, 2)),
        gt[idx] + rng.normal(0, 3, (M, 2)),
        gs,
        gt,
    )
    return cases


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for name, (ps, pt, gs, gt) in discovery_cases(rng).items():
        sec = _time(lambda ps=ps, pt=pt, gs=gs, gt=gt: discovery(ps, pt, gs, gt))
        res = discovery(ps, pt, gs, gt)
        rows.append(
            {
                "benchmark": f"discovery, {name}",
                "size": f"M={len(ps)}, G={len(gs)}, k=23/15/10/5",
                "seconds": sec,
                "ap@10": res["ap@10"],
            }
        )

    pred = rng.random((14, 14))
    gt_img = rng.random((480, 640))
    sec = _time(lambda: evaluate_map(pred, gt_img), repeats=5)
    rows.append(
        {"benchmark": "evaluate_map (numpy)", "size": "14x14 pred, 480x640 GT", "seconds": sec}
    )
    preds = torch.rand(64, 14, 14)
    gts = torch.rand(64, 224, 224)
    sec = _time(lambda: evaluate_maps_torch(preds, gts), repeats=5)
    rows.append(
        {
            "benchmark": "evaluate_maps_torch (CPU, float64)",
            "size": "B=64, 224x224 GT",
            "seconds": sec,
            "per_image_ms": sec / 64 * 1e3,
        }
    )

    print("| benchmark | size | time (s) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['size']} | {r['seconds']:.3f} |")
    out = Path(__file__).parent / "results" / "metrics.json"
    write_json(
        out,
        {
            "rows": rows,
            "repeats": REPEATS,
            "timing": "best of repeats, 1 torch thread",
            "machine": {
                "python": platform.python_version(),
                "processor": platform.machine(),
                "numpy": np.__version__,
                "torch": torch.__version__,
                "cpus": os.cpu_count(),
                "load_average_1min": os.getloadavg()[0],
            },
        },
    )
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()

"""CPU cost of the synthetic correspondence writer (``afford synth correspondence``).

Measures CPU seconds (``time.process_time``, robust to a shared machine) per asset (render 19
views at 224, pseudo-labels, multi-view correspondences, writes) and per evaluation pair (GT
curation, Hungarian matching, writes) at the ``default`` size on a few categories with one
worker, then extrapolates the wall time of the full default dataset on 2 dedicated cores:
``(assets * per_asset + pairs * per_pair) / 2``. Target: under 120 s.

Run: ``cd /work/main && .venv/bin/python benchmarks/synth_correspondence.py``; prints a markdown
table and writes benchmarks/results/synth_correspondence.json.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import torch

from afford.data.io import write_json
from afford.synth.assets import CATEGORIES
from afford.synth.correspondence import (
    SIZES,
    CorrSynthConfig,
    _asset_jobs,
    _curate,
    _plan_pairs,
    _write_asset,
)

RESULTS = Path(__file__).parent / "results" / "synth_correspondence.json"
TARGET_S = 120.0


def main() -> None:
    torch.set_num_threads(1)
    cfg = CorrSynthConfig(categories=["kettle", "bottle", "knife"]).resolved()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = _asset_jobs(cfg)
        _write_asset(jobs[0], cfg, tmp)  # warm-up (imports, caches)
        t0 = time.process_time()
        records = {}
        for job in jobs:
            out = _write_asset(job, cfg, tmp)
            records[out["id"]] = out["record"]
        per_asset = (time.process_time() - t0) / len(jobs)
        plan = _plan_pairs(cfg, records)[:12]
        plan.sort(key=lambda p: (p["source"], p["target"]))
        t0 = time.process_time()
        done = [_curate(p, cfg, tmp, records) for p in plan]
        per_pair = (time.process_time() - t0) / max(1, len(plan))
        n_points = [d["n_points"] for d in done if d]
    preset = SIZES["default"]
    n_assets = len(CATEGORIES) * sum(preset["per_category"])
    n_pairs = sum(preset["pairs"])
    wall2 = (n_assets * per_asset + n_pairs * per_pair) / 2
    row = {
        "views_per_asset": cfg.views,
        "image_size": cfg.image_size,
        "cpu_s_per_asset": round(per_asset, 3),
        "cpu_s_per_pair": round(per_pair, 3),
        "mean_gt_points": round(sum(n_points) / max(1, len(n_points)), 1),
        "default_assets": n_assets,
        "default_pairs": n_pairs,
        "est_default_wall_s_2_cores": round(wall2, 1),
        "target_s": TARGET_S,
        "meets_target": wall2 < TARGET_S,
        "machine": platform.processor() or platform.machine(),
    }
    print(
        "| cpu s/asset (19 views, 224) | cpu s/pair | GT pts/pair | default: assets, pairs | est. wall, 2 cores | target |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {row['cpu_s_per_asset']} | {row['cpu_s_per_pair']} | {row['mean_gt_points']} | "
        f"{n_assets}, {n_pairs} | {row['est_default_wall_s_2_cores']} s | < {TARGET_S:.0f} s |"
    )
    write_json(RESULTS, row)


if __name__ == "__main__":
    main()

"""Correspondence training step time with vs without the frozen-feature bank.

"live": every batch renders its background-randomised images and runs the frozen DINOv2.
"bank": the DINOv2 outputs of K randomisations per training view are computed once (timed
separately as the one-off build) and each batch gathers them.
A step = draw a batch + backbone or gather + the full model's losses, backward, optimiser step.

    python benchmarks/corr_feature_bank.py --data DIR [--dinov2 tiny-synth] [--augs 4]

DIR is a correspondence dataset (e.g. `afford synth correspondence --size default
--per-category 6 1 1`). Prints a markdown table, writes benchmarks/results/corr_feature_bank.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from afford.config import from_dict
from afford.correspondence.config import CorrExperiment
from afford.correspondence.text import encode_functions
from afford.correspondence.train import (
    _Sampler,
    batch_losses,
    build_model,
    feature_bank,
    load_encoders,
    training_sets,
)
from afford.data.io import write_json

HERE = Path(__file__).resolve().parent


def time_steps(cfg: CorrExperiment, data, steps: int) -> dict:
    """Seconds per training step (after one warm-up step) and the one-off bank build."""
    dino, clip = load_encoders(cfg)
    t0 = time.perf_counter()
    bank = feature_bank(cfg, data, dino)
    build = time.perf_counter() - t0
    text = encode_functions(clip, data.functions)
    torch.manual_seed(0)
    model = build_model(cfg, dino.feat_dim, text.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = _Sampler(data, cfg, 0, cfg.sampling.feature_augs)

    def step(i: int) -> None:
        loss = batch_losses(model, dino, text, sampler.batch(i), cfg, bank)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return {
        "seconds_per_step": (time.perf_counter() - t0) / steps,
        "build_seconds": build,
        "bank_gb": (bank.nbytes / 1024**3) if bank is not None else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--dinov2", default="tiny-synth")
    ap.add_argument("--augs", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "corr_feature_bank.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    sets = None
    for name, augs in (("live", 0), ("bank", args.augs)):
        cfg = from_dict(
            CorrExperiment,
            {
                "data": {"root": str(args.data)},
                "backbone": {"dinov2": {"variant": args.dinov2}, "clip": {"variant": "tiny"}},
                "model": {"proj_dim": 128, "hidden": 256, "out_dim": 64},
                "sampling": {
                    "pairs": args.pairs,
                    "points": args.points,
                    "spatial_points": args.points,
                    "feature_augs": augs,
                },
                "train": {"device": "cpu", "progress": False},
            },
        )
        sets = sets or training_sets(cfg)
        rows[name] = time_steps(cfg, sets[0], args.steps)
    data = sets[0]
    speedup = rows["live"]["seconds_per_step"] / rows["bank"]["seconds_per_step"]
    md = "\n".join(
        ["| mode | s / step | one-off build (s) | bank (GB) |", "|---|---|---|---|"]
        + [
            f"| {n} | {r['seconds_per_step']:.3f} | {r['build_seconds']:.1f} | {r['bank_gb']:.2f} |"
            for n, r in rows.items()
        ]
    )
    print(md)
    print(f"speed-up per step: {speedup:.1f}x ({data.images.shape[0]} training views)")
    write_json(
        args.out,
        {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "views": int(data.images.shape[0]),
            "rows": rows,
            "speedup": speedup,
            "markdown": md,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

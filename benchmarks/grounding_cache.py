"""Frozen-output cache: grounding training epoch time with vs without cached CLIP maps.

"cached": the ClearCLIP affinity maps of every training image are computed once (timed
separately as the one-off fill) and each step crops/flips them exactly with the images.
"online": CLIP runs on every augmented ego and exo image and prompt at every step.
DINO runs on the augmented images in both (its keys depend on the crop).

    python benchmarks/grounding_cache.py [--clip vitb16|tiny] [--batches 6]

Prints a markdown table and writes ``benchmarks/results/grounding_cache.json``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
from pathlib import Path

import torch

from afford.config import from_dict
from afford.data.agd20k import TrainSet, exo_map_names, scan_dataset
from afford.data.io import write_json
from afford.grounding.affinity import fill_cache
from afford.grounding.build import build_clip, build_dino, model_config, open_cache
from afford.grounding.config import GroundingExperiment
from afford.grounding.model import GroundingModel
from afford.grounding.train import build_optimizer, frozen_batch
from grounding_table2 import ensure_data

HERE = Path(__file__).resolve().parent


def step_seconds(data: Path, affinity: str, args, work: Path) -> tuple[float, float]:
    """(seconds per training step, one-off cache fill seconds) for one affinity mode.

    A step = draw a batch (crop/flip; cached maps resampled) + frozen DINO (+ CLIP when
    online) + the full model's losses, backward and optimiser step.  One warm-up step."""
    cfg = from_dict(GroundingExperiment, {
        "data": {"root": str(data / "Unseen"), "affinity": affinity, "cache": str(work / "cache"),
                 "val_fraction": 0.0, "preload": True},
        "backbone": {"dino": {"variant": "tiny"},
                     "clip": {"variant": args.clip, "weights": "random" if args.clip == "vitb16" else None}},
        "model": {"table2_row": "i"},
    })  # fmt: skip
    dev = torch.device("cpu")
    ds = scan_dataset(data / "Unseen", "folders", val_fraction=0.0, test=False)
    dino, clip = build_dino(cfg, dev), build_clip(cfg, dev)
    online = affinity == "online"
    cache = None if online else open_cache(cfg, ds.root, clip)
    fill = 0.0
    if not online:
        needs: dict = {}
        for r in ds.train_exo:
            needs.setdefault(r.path, set()).update(exo_map_names(r.affordance))
        for r in ds.train_ego:
            needs.setdefault(r.path, set()).add(f"action:{r.affordance}")
        t0 = time.perf_counter()
        fill_cache(needs, clip, cache, progress=False)
        fill = time.perf_counter() - t0
    ts = TrainSet(ds.train_exo, ds.train_ego, ds.classes, cache, preload=True, with_maps=not online)
    model = GroundingModel(model_config(cfg, ds.classes, dino.feat_dim))
    opt = build_optimizer(model, cfg.train)
    batches = itertools.cycle(list(ts.batches(0, args.batch_size)))

    def one() -> None:
        mb = frozen_batch(next(batches), dino, clip if online else None, ds.classes)
        out = model.losses(mb, 0)
        opt.zero_grad()
        out["total"].backward()
        opt.step()

    one()
    t0 = time.perf_counter()
    for _ in range(args.batches):
        one()
    return (time.perf_counter() - t0) / args.batches, fill


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=HERE / "data" / "synth_affordance")
    p.add_argument(
        "--clip",
        default="vitb16",
        choices=["tiny", "vitb16"],
        help="vitb16: the real ViT-B/16 architecture with random weights (timing only)",
    )
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/afford_grounding_cache"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "grounding_cache.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = ensure_data(args.data, 8, 12, 4, 128)
    shutil.rmtree(args.work / "cache", ignore_errors=True)
    cached, fill = step_seconds(data, "clip", args, args.work)
    online, _ = step_seconds(data, "online", args, args.work)
    rows = {"cached_step_s": cached, "online_step_s": online, "one_off_fill_s": fill,
            "speedup": online / cached}  # fmt: skip
    lines = [
        f"Grounding training, {args.batches} steps of batch {args.batch_size} (E=3), tiny DINO, "
        f"CLIP {args.clip}, {args.threads} thread(s)",
        "",
        "| affinity maps | seconds per training step |",
        "|---|---|",
        f"| cached (crop/flip of cached maps) | {cached:.2f} |",
        f"| online (CLIP on every augmented image) | {online:.2f} |",
        f"| one-off cache fill (all train images, once) | {fill:.1f} (total) |",
        "",
        f"speed-up per step: {rows['speedup']:.2f}x",
    ]
    print("\n".join(lines))
    write_json(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, **rows,
                          "table": "\n".join(lines)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

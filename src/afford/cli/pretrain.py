"""``afford pretrain-backbone`` (cheap to import: heavy imports live in the handler).

    afford pretrain-backbone --family dino|dinov2 --out FILE [--minutes M] [--seed S]
                             [--images N] [--steps N] [--batch B] [--view-size S] [--threads T]
                             [--multiview-deg D] [--crop-scale MIN MAX]

Renders ``--images`` RGB images of random synthetic assets (no labels kept; with
``--multiview-deg`` two cameras per scene and their pixel-to-pixel geometry), pre-trains the
tiny backbone of ``--family`` self-supervised (``afford.backbones.pretrain``), and writes the
weights (``FILE``, loadable with ``load_dino(weights=FILE, variant="tiny")`` or
``variant="tiny-synth"`` once shipped) plus ``FILE.json`` (command, config, timing, losses).
"""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from afford.backbones.pretrain import (
        PretrainConfig,
        pretrain,
        render_multiview_pairs,
        render_pretraining_images,
        wrap_backbone,
    )
    from afford.backbones.weights import file_fingerprint, save_weights
    from afford.data.io import write_json
    from afford.engine import seed_everything
    from afford.errors import AffordError

    if not str(args.out).endswith(".safetensors"):
        raise AffordError(f"--out {args.out}: the weight file must end in .safetensors")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    t0 = time.monotonic()
    if args.multiview_deg > 0:
        images = render_multiview_pairs(
            args.images, seed=args.seed, size=224, max_offset_deg=args.multiview_deg
        )
    else:
        images = render_pretraining_images(args.images, seed=args.seed, size=224)
    t_render = time.monotonic() - t0
    cfg = PretrainConfig(
        family=args.family,
        seed=args.seed,
        steps=args.steps,
        batch=args.batch,
        view_size=args.view_size,
        minutes=args.minutes,
        crop_scale=(args.crop_scale[0], args.crop_scale[1]),
    )
    res = pretrain(images, cfg)
    module = wrap_backbone(res.vit.eval(), args.family, f"{args.family}-tiny@pretrained")
    save_weights(module, args.out)
    hist = res.history
    k = max(1, len(hist) // 20)
    summary = {
        "command": "afford pretrain-backbone " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "pretrain-backbone"
        else None,
        "family": args.family,
        "seed": args.seed,
        "images": args.images,
        "config": cfg.to_dict(),
        "threads": args.threads,
        "steps_done": res.steps,
        "stopped_early": res.stopped_early,
        "render_seconds": round(t_render, 1),
        "train_seconds": round(res.seconds, 1),
        "loss_first": {n: float(np.mean([h[n] for h in hist[:k]])) for n in hist[0] if n != "step"},
        "loss_last": {n: float(np.mean([h[n] for h in hist[-k:]])) for n in hist[0] if n != "step"},
        "loss_curve": [
            round(float(np.mean([h["total"] for h in hist[i : i + k]])), 4)
            for i in range(0, len(hist), k)
        ],
        "fingerprint": file_fingerprint(args.out),
        "labels_used": "none (RGB pixels only)"
        if args.multiview_deg <= 0
        else "none (RGB pixels and multi-view geometry: which pixel of the second camera sees "
        "the same surface point)",
        "multiview_deg": args.multiview_deg,
    }
    write_json(str(args.out) + ".json", summary)
    print(
        f"wrote {args.out} ({res.steps} steps, render {t_render:.0f} s, train {res.seconds:.0f} s; "
        f"loss {summary['loss_first']['total']:.3f} -> {summary['loss_last']['total']:.3f})"
    )
    return 0


def register(groups: dict) -> None:
    """Add ``afford pretrain-backbone``."""
    p = groups["top"].add_parser(
        "pretrain-backbone",
        help="self-supervised pre-training of a tiny DINO/DINOv2 on synthetic renders",
        description="Render random synthetic assets (RGB only, no labels), pre-train the tiny "
        "backbone with dense + image-level contrastive learning and an EMA teacher, write a "
        "safetensors file (plus FILE.json). Deterministic for a seed when --minutes is not hit.",
    )
    p.add_argument("--family", choices=("dino", "dinov2"), required=True)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock cap for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--images", type=int, default=512, help="scenes to render, twice each (default 512)"
    )
    p.add_argument("--steps", type=int, default=700, help="optimisation steps (default 700)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--view-size", type=int, default=112, help="augmented view side (px)")
    p.add_argument(
        "--multiview-deg",
        type=float,
        default=0.0,
        help="render the two views of a pair from two cameras up to this many degrees apart "
        "(azimuth; half in elevation) and match patches through the rendered geometry "
        "(default 0: two re-renders from the same camera)",
    )
    p.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=(0.2, 0.8),
        metavar=("MIN", "MAX"),
        help="random-resized-crop area range (default 0.2 0.8)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine 2 threads were ~15x slower)",
    )
    p.set_defaults(func=_run)

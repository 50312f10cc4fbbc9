"""``afford pretrain-backbone`` (cheap to import: heavy imports live in the handler).

    afford pretrain-backbone --family dino|dinov2 --out FILE [--minutes M] [--seed S]
                             [--images N] [--steps N] [--batch B] [--view-size S] [--threads T]
                             [--multiview-deg D] [--crop-scale MIN MAX]
    afford pretrain-backbone --config pretrain/tiny-synth-dino --out FILE [--set k=v ...]
                             [--print-config]

The app-layer composition: renders ``data.images`` RGB images of random synthetic assets
(``afford.synth.pretrain_views``; no labels kept; with ``data.multiview_deg`` two cameras per
scene and their pixel-to-pixel geometry), pre-trains the tiny backbone of ``model.family``
self-supervised (``afford.pretrain``, checkpoints and resume in ``train.out``, by default
``runs/pretrain/<FILE stem>``), and writes the weights (``FILE``, loadable with
``load_dino(weights=FILE, variant="tiny")`` or ``variant="tiny-synth"`` once shipped) plus
``FILE.json`` (command, config, timing, losses).

The flags are shorthands for config keys (``--steps N`` = ``train.epochs x
train.steps_per_epoch``); precedence: the command's defaults (:data:`CLI_DEFAULTS`, the
historical flag defaults) < ``--config`` < flags < ``--set``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: The historical defaults of the command's flags (under any --config).
CLI_DEFAULTS = {
    "data": {"images": 512},
    "train": {"epochs": 7, "steps_per_epoch": 100, "batch_size": 32, "threads": 1, "device": "cpu"},
}

#: flag -> config key
FLAG_KEYS = {
    "family": "model.family",
    "seed": "train.seed",
    "minutes": "train.minutes",
    "images": "data.images",
    "batch": "train.batch_size",
    "view_size": "data.view_size",
    "multiview_deg": "data.multiview_deg",
    "crop_scale": "data.crop_scale",
    "threads": "train.threads",
}


def steps_sets(steps: int) -> list[str]:
    """``--steps N`` (N >= 1) as ``train.epochs`` x ``train.steps_per_epoch``: the largest
    divisor of N up to 100 steps per epoch (a checkpoint each), so N=700 is 7 x 100."""
    per = max(d for d in range(1, min(steps, 100) + 1) if steps % d == 0)
    return [f"train.epochs={steps // per}", f"train.steps_per_epoch={per}"]


def _run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from afford.backbones.weights import file_fingerprint, save_weights
    from afford.cli.engine_flags import engine_sets
    from afford.config import dump_yaml, load, to_dict
    from afford.data.io import write_json
    from afford.engine import seed_everything
    from afford.errors import AffordError
    from afford.pretrain import PretrainConfig, pretrain, wrap_backbone
    from afford.synth.pretrain_views import render_multiview_pairs, render_pretraining_images

    if args.config is None and args.family is None and not args.print_config:
        raise AffordError("--family is required (or --config NAME|PATH)")
    if args.out is not None and not str(args.out).endswith(".safetensors"):
        raise AffordError(f"--out {args.out}: the weight file must end in .safetensors")
    base = json.loads(json.dumps(CLI_DEFAULTS))
    if args.out is not None:
        base["train"]["out"] = str(Path("runs") / "pretrain" / Path(args.out).stem)
    sets = [
        f"{key}={json.dumps(list(v) if isinstance(v, tuple | list) else v)}"
        for flag, key in FLAG_KEYS.items()
        if (v := getattr(args, flag)) is not None
    ]
    if args.steps is not None:
        if args.steps < 1:
            raise AffordError(f"--steps must be >= 1, got {args.steps}")
        sets += steps_sets(args.steps)
    cfg = load(PretrainConfig, args.config, [*sets, *engine_sets(args), *args.set], base=base)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.out is None:
        raise AffordError("--out FILE.safetensors is required (the weight file to write)")
    if Path(args.out).exists() and not args.overwrite:
        raise AffordError(f"--out {args.out}: the file exists; pass --overwrite to replace it")
    seed_everything(cfg.train.seed)
    t0 = time.monotonic()
    n, seed, deg = cfg.data.images, cfg.train.seed, cfg.data.multiview_deg
    if deg > 0:
        mv = render_multiview_pairs(n, seed=seed, size=224, max_offset_deg=deg)
        images, flow, valid = mv.images, mv.flow, mv.valid
    else:
        images, flow, valid = render_pretraining_images(n, seed=seed, size=224), None, None
    t_render = time.monotonic() - t0
    res = pretrain(images, cfg, flow=flow, valid=valid)
    family = cfg.model.family
    module = wrap_backbone(res.vit.eval(), family, f"{family}-tiny@pretrained")
    save_weights(module, args.out)
    hist = res.history
    k = max(1, len(hist) // 20)
    names = [name for name in hist[0] if name not in ("epoch", "step")]
    summary = {
        "command": "afford pretrain-backbone " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "pretrain-backbone"
        else None,
        "family": family,
        "seed": seed,
        "images": n,
        "config": to_dict(cfg),
        "threads": cfg.train.threads,
        "steps_done": res.steps,
        "stopped_early": res.stopped_early,
        "render_seconds": round(t_render, 1),
        "train_seconds": round(res.seconds, 1),
        "loss_first": {m: float(np.mean([h[m] for h in hist[:k]])) for m in names},
        "loss_last": {m: float(np.mean([h[m] for h in hist[-k:]])) for m in names},
        "loss_curve": [
            round(float(np.mean([h["total"] for h in hist[i : i + k]])), 4)
            for i in range(0, len(hist), k)
        ],
        "fingerprint": file_fingerprint(args.out),
        "labels_used": "none (RGB pixels only)"
        if deg <= 0
        else "none (RGB pixels and multi-view geometry: which pixel of the second camera sees "
        "the same surface point)",
        "multiview_deg": deg,
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
        "safetensors file (plus FILE.json). Deterministic for a seed when --minutes is not hit; "
        "an interrupted run resumes from train.out. Flags are shorthands for config keys; "
        "precedence: command defaults < --config < flags < --set.",
    )
    p.add_argument("--config", default=None, metavar="PATH|NAME",
                   help="experiment YAML or a shipped name (pretrain/tiny-synth-dino, "
                   "pretrain/tiny-synth-dinov2)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set train.lr=5e-4")  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    p.add_argument("--family", choices=("dino", "dinov2"), default=None,
                   help="model.family (required without --config)")  # fmt: skip
    p.add_argument("--out", default=None, help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--minutes", type=float, default=None, help="train.minutes: wall-clock cap")
    p.add_argument("--seed", type=int, default=None, help="train.seed (default 0)")
    p.add_argument(
        "--images", type=int, default=None, help="data.images: scenes to render (default 512)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimisation steps = train.epochs x train.steps_per_epoch (default 700 = 7 x 100)",
    )
    p.add_argument("--batch", type=int, default=None, help="train.batch_size (default 32)")
    p.add_argument(
        "--view-size", type=int, default=None, help="data.view_size: view side (px, default 112)"
    )
    p.add_argument(
        "--multiview-deg",
        type=float,
        default=None,
        help="data.multiview_deg: render the two views of a pair from two cameras up to this "
        "many degrees apart (azimuth; half in elevation) and match patches through the rendered "
        "geometry (default 0: two re-renders from the same camera)",
    )
    p.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="data.crop_scale: random-resized-crop area range (default 0.2 0.8)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="train.threads (default 1: on a shared 2-core machine 2 threads were ~15x slower)",
    )
    from afford.cli.engine_flags import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(func=_run)

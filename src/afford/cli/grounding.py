"""Grounding sub-commands: ``afford train grounding``, ``afford eval grounding``,
``afford ground`` and ``afford import-checkpoint``.  Heavy imports live inside the handlers.

    afford train grounding --config PATH|NAME [--set section.key=value ...] [--print-config]
                           [--select-on-test] [--out DIR] [--data DIR] [--seed S] [--device D]
                           [--no-resume] [engine flags: --devices N --accelerator A --precision P
                           --strategy S --num-nodes N --max-steps N --workers N --logger L ...]
    afford eval grounding --checkpoint RUN [--set section.key=value ...] [--print-config] ...
    afford ground IMAGES...|DIR --action A [--out DIR] [--batch-size N] [--checkpoint C]
    afford import-checkpoint RELEASED.pth --out DIR [--dataset D]
"""

from __future__ import annotations

import argparse
import json
import sys

from afford.cli.engine_flags import add_engine_flags

SET_HELP = "override a config value, e.g. --set train.epochs=2 (repeatable; value read as YAML)"


def _train(args: argparse.Namespace) -> int:
    from afford.cli.engine_flags import engine_sets
    from afford.config import dump_yaml, load, replace
    from afford.grounding.config import GroundingExperiment
    from afford.grounding.train import train

    sets = [*args.set, *engine_sets(args)]
    if args.data is not None:
        sets.append(f"data.root={json.dumps(args.data)}")
    if args.seed is not None:
        sets.append(f"train.seed={args.seed}")
    exp = load(GroundingExperiment, args.config, sets)
    flags = {"out": args.out, "device": args.device,
             "resume": False if args.no_resume else None,
             "select_on_test": True if args.select_on_test else None}  # fmt: skip
    flags = {k: v for k, v in flags.items() if v is not None}
    if flags:
        exp = replace(exp, train=replace(exp.train, **flags))
    if args.print_config:
        print(dump_yaml(exp), end="")
        return 0
    res = train(exp)
    if res.get("rank", 0) == 0:  # one summary, from rank 0
        sel = res["selection"]
        print(f"trained: {res['out']} (checkpoint {sel['checkpoint']}: epoch {res['best_epoch']}, "
              f"{sel['reason']}{'; WARNING: ' + sel['warning'] if sel['warning'] else ''})")  # fmt: skip
    return 0


def _eval(args: argparse.Namespace) -> int:
    from afford.config import dump_yaml
    from afford.grounding.build import checkpoint_experiment
    from afford.grounding.evaluate import evaluate

    if args.print_config:
        print(dump_yaml(checkpoint_experiment(args.checkpoint, args.set)[1]), end="")
        return 0
    res = evaluate(
        args.checkpoint, split=args.split, data_root=args.data, out=args.out,
        device=args.device or "auto", figures=not args.no_figures, calibration=args.calibration,
        sets=args.set, overwrite=args.overwrite,
    )  # fmt: skip
    keys = ("split", "n", "kld", "sim", "nss", "chance", "below_chance", "under_chance")
    print(json.dumps({k: res[k] for k in keys}, indent=2))
    if res["below_chance"]:
        c = res["chance"]
        print(f"afford: warning: the model scores below chance (a uniform map: KLD {c['kld']:.3f}, "
              f"SIM {c['sim']:.3f}, NSS {c['nss']:.3f}) on {', '.join(res['below_chance'])}",
              file=sys.stderr)  # fmt: skip
    return 0


def _ground(args: argparse.Namespace) -> int:
    from afford.api.batch import ground_files

    res = ground_files(
        args.images,
        args.action,
        checkpoint=args.checkpoint or "demo",
        out=args.out,
        batch_size=args.batch_size,
        device=args.device or "auto",
        overwrite=args.overwrite,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
    )
    t = res["timing"]
    where = res["results"][0]["files"]["overlay"] if args.out.lower().endswith(".png") else args.out
    print(f"grounded '{args.action}' on {res['n']} image(s) with {res['checkpoint']} "
          f"(load {t['load_s']:.1f} s, predict {t['predict_s']:.1f} s): wrote {where}")  # fmt: skip
    return 0


def _import(args: argparse.Namespace) -> int:
    from afford.grounding.import_ckpt import import_checkpoint

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    out = import_checkpoint(
        args.src, args.out, dataset=args.dataset, classes=classes, mode=args.mode,
        dino_weights=args.dino_weights, clip_weights=args.clip_weights,
        copy_backbones=args.copy_backbones,
    )  # fmt: skip
    print(f"wrote {out}")
    return 0


def register(groups: dict) -> None:
    p = groups["train"].add_parser(
        "grounding", help="train affordance grounding (selective contrastive / LOCATE / CE)"
    )
    p.add_argument("--config", required=True, metavar="PATH|NAME",
                   help="YAML experiment: a file or a shipped name (grounding/synth, "
                   "grounding/agd20k_seen, ...)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help=SET_HELP)  # fmt: skip
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML) and exit")  # fmt: skip
    p.add_argument("--out", default=None, help="run folder (= --set train.out=DIR)")
    p.add_argument("--data", default=None, help="dataset folder (= --set data.root=DIR)")
    p.add_argument("--seed", type=int, default=None, help="= --set train.seed=N")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] | mps (= train.device)")
    p.add_argument("--select-on-test", action="store_true",
                   help="select the checkpoint on the TEST split (only to compare with the released "
                   "code; default: the validation split; = train.select_on_test)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if <out>/last exists (= --set train.resume=false)")  # fmt: skip
    add_engine_flags(p)
    p.set_defaults(func=_train)

    p = groups["eval"].add_parser("grounding", help="KLD/SIM/NSS of a grounding checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder (best/)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--data", default=None, help="dataset folder (default: the training one)")
    p.add_argument("--out", default=None, help="output folder (default <run>/eval_<split>)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace results.json in --out")
    p.add_argument(
        "--calibration",
        default=None,
        choices=["binary", "soft", "none"],
        help="override the test-time CAM calibration (default: the checkpoint's)",
    )
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change the checkpoint's config, e.g. --set data.root=DIR (repeatable)")  # fmt: skip
    p.add_argument("--print-config", action="store_true",
                   help="print the checkpoint's config (with --set applied) and exit")  # fmt: skip
    p.set_defaults(func=_eval)

    p = groups["top"].add_parser(
        "ground",
        help="affordance heatmaps of images for an action (batched, one model load)",
        description="Ground an action on every image (files or folders of images). Per image, "
        "--out DIR gets <stem>.png (overlay), <stem>.json (peak, heatmap statistics, "
        "checkpoint and backbones) and <stem>.npy (the float heatmap at the image's size), "
        "plus results.json. --out FILE.png (one image) writes the grey heatmap there and "
        "<stem>_overlay.png, .json, .npy beside it. Default model: the shipped toy demo.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    p.add_argument("--action", required=True, help="affordance name, e.g. hold")
    p.add_argument("--checkpoint", default=None,
                   help="grounding checkpoint or run folder (default: 'demo', the shipped toy "
                   "model)")  # fmt: skip
    p.add_argument("--out", default="afford-ground", help="output folder (or FILE.png)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--overwrite", action="store_true", help="replace results in --out")
    p.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="run even if the backbone differs from the checkpoint's")  # fmt: skip
    p.add_argument("--device", default=None)
    p.set_defaults(func=_ground)

    p = groups["top"].add_parser(
        "import-checkpoint",
        help="convert a released SelectiveCL state dict into an afford checkpoint",
    )
    p.add_argument("src", help="released .pth (torch.save state dict)")
    p.add_argument("--out", required=True, help="new checkpoint folder")
    p.add_argument("--dataset", default=None, choices=["agd20k_seen", "agd20k_unseen", "hico_iif"])
    p.add_argument("--classes", default=None, help="comma-separated class names (custom data)")
    p.add_argument("--mode", default="official", choices=["official", "paper"])
    p.add_argument("--dino-weights", default=None,
                   help="DINO ViT-S/16 weight file to reference (default: resolved like every "
                   "backbone: $AFFORD_WEIGHTS, hub caches)")  # fmt: skip
    p.add_argument("--clip-weights", default=None, help="CLIP ViT-B/16 weight file to reference")
    p.add_argument("--copy-backbones", action="store_true",
                   help="store the release's backbone tensors beside the checkpoint (686 MB) "
                   "instead of referencing the official weight files")  # fmt: skip
    p.set_defaults(func=_import)

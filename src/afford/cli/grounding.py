"""Grounding sub-commands: ``afford train grounding``, ``afford eval grounding``,
``afford ground`` and ``afford import-checkpoint``.  Heavy imports live inside the handlers."""

from __future__ import annotations

import argparse
import json


def _train(args: argparse.Namespace) -> int:
    from afford.grounding.train import load_config, train

    cfg = load_config(args.config, args.set)
    if args.device:
        cfg["train"]["device"] = args.device
    if args.no_resume:
        cfg["train"]["resume"] = False
    res = train(cfg, out=args.out, select_on_test=True if args.select_on_test else None)
    print(f"trained: {res['out']} (best epoch {res['best_epoch']}, {res['select']}={res['best']})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from afford.grounding.evaluate import evaluate

    res = evaluate(
        args.checkpoint, split=args.split, data_root=args.data, out=args.out,
        device=args.device or "auto", figures=not args.no_figures, calibration=args.calibration,
    )  # fmt: skip
    print(json.dumps({k: res[k] for k in ("split", "n", "kld", "sim", "nss")}, indent=2))
    return 0


def _ground(args: argparse.Namespace) -> int:
    from afford.grounding.infer import ground

    res = ground(
        args.image,
        args.action,
        checkpoint=args.checkpoint,
        out=args.out,
        device=args.device or "auto",
    )
    print(f"wrote {res['heatmap']} and {res['overlay']}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from afford.grounding.import_ckpt import import_checkpoint

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    out = import_checkpoint(
        args.src, args.out, dataset=args.dataset, classes=classes, mode=args.mode
    )
    print(f"wrote {out}")
    return 0


def register(groups: dict) -> None:
    p = groups["train"].add_parser(
        "grounding", help="train affordance grounding (selective contrastive / LOCATE / CE)"
    )
    p.add_argument("--config", required=True, help="YAML experiment (configs/grounding/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 (repeatable)")  # fmt: skip
    p.add_argument("--out", default=None, help="run folder (default: train.out of the config)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] | mps")
    p.add_argument("--select-on-test", action="store_true",
                   help="select the checkpoint on the TEST split (only to compare with the released "
                   "code; default: the validation split)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="start over even if <out>/last exists")
    p.set_defaults(func=_train)

    p = groups["eval"].add_parser("grounding", help="KLD/SIM/NSS of a grounding checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or run folder (best/)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--data", default=None, help="dataset folder (default: the training one)")
    p.add_argument("--out", default=None, help="output folder (default <run>/eval_<split>)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument(
        "--calibration",
        default=None,
        choices=["binary", "soft", "none"],
        help="override the test-time CAM calibration (default: the checkpoint's)",
    )
    p.set_defaults(func=_eval)

    p = groups["top"].add_parser("ground", help="affordance heatmap of one image for an action")
    p.add_argument("image", help="image file")
    p.add_argument("--action", required=True, help="affordance name, e.g. hold")
    p.add_argument("--checkpoint", default=None, help="grounding checkpoint (default: demo)")
    p.add_argument("--out", default="heat.png", help="heatmap png (+ <stem>_overlay.png)")
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
    p.set_defaults(func=_import)

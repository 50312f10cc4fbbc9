"""Correspondence commands: ``afford train correspondence``, ``afford eval correspondence`` and
``afford correspond``. Heavy imports live inside the handlers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from afford.cli.engine_flags import add_engine_flags, engine_sets
from afford.errors import AffordError, UsageError

BASELINES = ("chance", "dino", "vlm+dino", "gt-part+chance", "gt-part+dino")


def register(groups: dict) -> None:
    p = groups["train"].add_parser(
        "correspondence",
        help="train the dense functional correspondence model",
        description="Train the function-conditioned correspondence model (resumes from "
        "<out>/last unless --no-resume).",
    )
    p.add_argument(
        "--config",
        required=True,
        metavar="PATH|NAME",
        help="YAML experiment: a file or a shipped name (correspondence/synth-tiny)",
    )
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 (repeatable)")  # fmt: skip
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    p.add_argument(
        "--no-resume", action="store_true", help="start from scratch (train.resume=false)"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (train.progress=false)"
    )
    p.add_argument("--data", default=None, help="dataset folder (= --set data.root=DIR)")
    p.add_argument("--out", default=None, help="run folder (= --set train.out=DIR)")
    p.add_argument("--seed", type=int, default=None, help="= --set train.seed=N")
    add_engine_flags(p)
    p.set_defaults(func=_train)

    e = groups["eval"].add_parser(
        "correspondence",
        help="Table 1 metrics (label transfer + discovery) on evaluation pairs",
        description="Evaluate a checkpoint or a baseline on evaluation pairs; writes "
        "<out>/results.json, PR curves and match figures.",
    )
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a run folder (uses <run>/best) or checkpoint folder")
    src.add_argument(
        "--baseline",
        choices=BASELINES,
        help="a baseline row instead of a model; the gt-part+ rows are oracle diagnostics that "
        "match inside the pairs' ground-truth part masks (a fully collapsed model that finds the "
        "part exactly scores like gt-part+chance)",
    )
    e.add_argument(
        "--pairs",
        required=True,
        help="dataset root (or its eval_pairs.json) in the correspondence format",
    )
    e.add_argument("--split", default="test", choices=("test", "val"))
    e.add_argument("--out", default="runs/correspondence/eval", help="output folder")
    e.add_argument("--overwrite", action="store_true", help="replace results.json in --out")
    e.add_argument("--max-pairs", type=int, help="evaluate only the first N pairs")
    e.add_argument(
        "--discovery-stride",
        type=int,
        default=1,
        help="discovery on every N-th pixel (1 = paper; >1 is faster)",
    )
    e.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a value of the checkpoint's experiment config, e.g. --set "
                   "backbone.dinov2.weights=FILE (with --checkpoint; repeatable)")  # fmt: skip
    e.add_argument("--print-config", action="store_true",
                   help="print the checkpoint's resolved experiment config, exit")  # fmt: skip
    e.add_argument("--dinov2", default="vitb14", help="baseline backbone variant (vitb14|tiny)")
    e.add_argument("--dinov2-weights", help="baseline backbone weight file")
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=0, help="chance baseline seed")
    e.set_defaults(func=_eval)

    c = groups["top"].add_parser(
        "correspond",
        help="dense functional correspondence between an image and one or more others",
        description="Label transfer of --points from IMG1 to each IMG2, or the top discovered "
        "matches. Per pair, --out DIR gets <a>__<b>.png (matches drawn as lines), .json "
        "(matched coordinates and scores, checkpoint and backbones) and .npy ((N,5) rows "
        "src_row, src_col, tgt_row, tgt_col, score), plus results.json; --out FILE.png (one "
        "pair) writes the png there with .json and .npy beside it. Masks default to a "
        "foreground estimate (object on a plain background; the full image if that fails). "
        "Default model: the shipped toy demo; --dinov2 VARIANT uses the frozen DINOv2 "
        "baseline instead.",
    )
    c.add_argument("image1", metavar="IMG1", help="source image")
    c.add_argument("image2", metavar="IMG2", nargs="+", help="target image(s) and/or folders")
    c.add_argument("--function", required=True, help="e.g. pour-with")
    c.add_argument("--checkpoint", help="trained run or checkpoint folder (default: 'demo')")
    c.add_argument("--mask1", help="object mask of IMG1 (image, non-zero = object)")
    c.add_argument("--mask2", help="object mask of IMG2 (one target only)")
    c.add_argument("--points", nargs="+", metavar="R,C", help="IMG1 points (row,col) to transfer")
    c.add_argument("--both-directions", action="store_true",
                   help="with --points: also carry each match back (reverse scores, cycle "
                   "errors)")  # fmt: skip
    c.add_argument("--top", type=int, default=30, help="matches to keep without --points")
    c.add_argument(
        "--stride", type=int, default=2, help="discovery on every N-th crop pixel (speed)"
    )
    c.add_argument("--out", default="afford-correspond", help="output folder (or FILE.png)")
    c.add_argument("--overwrite", action="store_true", help="replace results in --out")
    c.add_argument("--allow-backbone-mismatch", action="store_true",
                   help="run even if the backbone differs from the checkpoint's")  # fmt: skip
    c.add_argument("--dinov2", default=None,
                   help="use the frozen DINOv2 baseline of this variant (vitb14|tiny) instead of "
                   "a checkpoint")  # fmt: skip
    c.add_argument("--dinov2-weights", help="baseline backbone weight file (with --dinov2)")
    c.add_argument("--device", default="auto")
    c.set_defaults(func=_correspond)


def _train_sets(args: argparse.Namespace) -> list[str]:
    """``--set`` assignments of ``afford train correspondence`` (the flags last)."""
    sets = [*args.set, *engine_sets(args)]
    if args.data is not None:
        sets.append(f"data.root={json.dumps(args.data)}")
    if args.out is not None:
        sets.append(f"train.out={json.dumps(args.out)}")
    if args.seed is not None:
        sets.append(f"train.seed={args.seed}")
    if args.no_resume:
        sets.append("train.resume=false")
    if args.no_progress:
        sets.append("train.progress=false")
    return sets


def _train(args: argparse.Namespace) -> int:
    from afford.config import dump_yaml, load
    from afford.correspondence.config import CorrExperiment
    from afford.correspondence.train import train

    cfg = load(CorrExperiment, args.config, _train_sets(args))
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    res = train(cfg)
    st = res["state"]
    if res.get("rank", 0) != 0:  # one summary, from rank 0
        return 0
    print(
        json.dumps(
            {
                "out": res["out"],
                "epochs": st["epoch"],
                "best_epoch": st["best_epoch"],
                "best": st["best"],
                "selection": res["selection"],
            },
            indent=2,
        )
    )
    return 0


def _dataset_root(pairs: str) -> Path:
    p = Path(pairs)
    if p.is_file() and p.suffix == ".json":
        p = p.parent
    return p


def _baseline_row(name: str, args: argparse.Namespace, dataset=None):
    from afford.backbones import load_dinov2
    from afford.correspondence.baselines import (
        BackboneRow,
        ChanceRow,
        PartBoxRow,
        dataset_part_boxes,
        gt_part_masks,
    )
    from afford.engine import resolve_device

    if name == "chance":
        return ChanceRow(seed=args.seed)
    if name == "gt-part+chance":
        return PartBoxRow(ChanceRow(seed=args.seed), gt_part_masks, name=name)
    dino = load_dinov2(args.dinov2_weights, variant=args.dinov2, device=resolve_device(args.device))
    if name == "dino":
        return BackboneRow(dino)
    if name == "gt-part+dino":
        return PartBoxRow(BackboneRow(dino), gt_part_masks, name=name)
    if dataset is None:
        raise AffordError("--baseline vlm+dino needs labeler boxes stored in the dataset")
    return PartBoxRow(BackboneRow(dino), dataset_part_boxes(dataset))


def _eval(args: argparse.Namespace) -> int:
    from afford.config import dump_yaml
    from afford.correspondence.baselines import ModelRow
    from afford.correspondence.evaluate import evaluate_rows, table_markdown
    from afford.correspondence.train import load_trained, trained_config
    from afford.data.correspondence import CorrespondenceDataset
    from afford.data.io import output_dir
    from afford.engine import resolve_device

    if (args.set or args.print_config) and not args.checkpoint:
        raise AffordError("--set / --print-config need --checkpoint (a baseline has no config)")
    if args.print_config:
        conf = _guarded(args.checkpoint, lambda: trained_config(args.checkpoint, args.set))[1]
        print(dump_yaml(conf["experiment"]), end="")
        return 0
    for flag, value in (("--max-pairs", args.max_pairs),
                        ("--discovery-stride", args.discovery_stride)):  # fmt: skip
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    output_dir(args.out, overwrite=args.overwrite)  # refused before any work
    ds = CorrespondenceDataset(_dataset_root(args.pairs))
    if args.checkpoint:
        device = resolve_device(args.device)
        model, dino, clip, functions, conf = _guarded(
            args.checkpoint, lambda: load_trained(args.checkpoint, device, args.set)
        )
        row = ModelRow(model, dino, clip, functions, name=conf["experiment"].train.name)
    else:
        row = _baseline_row(args.baseline, args, ds)
    res = evaluate_rows(
        ds,
        [row],
        split=args.split,
        out_dir=args.out,
        max_pairs=args.max_pairs,
        discovery_stride=args.discovery_stride,
    )
    print(table_markdown(res))
    print(f"wrote {Path(args.out) / 'results.json'}")
    worse = res[row.name]["below_chance"]
    if worse and row.name != "chance":
        c = res["settings"]["transfer_chance"]["overall"]
        print(f"afford: warning: {row.name} scores below chance (a random pixel of the target "
              f"object: PCK@23 {c['pck@23']:.3f}, norm. distance {c['norm_dist']:.3f}) on "
              f"{', '.join(worse)}", file=sys.stderr)  # fmt: skip
    return 0


def _guarded(checkpoint: str, load):
    """``load()`` with an unreadable checkpoint file a DataError naming it."""
    from afford.api._checkpoints import guarded

    return guarded(Path(checkpoint), load)


def _parse_points(items: list[str]):
    import numpy as np

    pts = []
    for it in items:
        try:
            r, c = (float(v) for v in it.split(","))
        except ValueError as exc:
            raise AffordError(f"--points: {it!r} is not 'row,col' (e.g. --points 40,52)") from exc
        pts.append((r, c))
    return np.asarray(pts, dtype=np.float64)


def _correspond(args: argparse.Namespace) -> int:
    from afford.api.batch import correspond_files
    from afford.api.correspondence import Corresponder

    if args.dinov2 or args.dinov2_weights:
        if args.checkpoint:
            raise AffordError("give --checkpoint or --dinov2 (the baseline), not both")
        corr = Corresponder.baseline(args.dinov2 or "vitb14", weights=args.dinov2_weights,
                                     device=args.device)  # fmt: skip
    else:
        corr = Corresponder.from_checkpoint(args.checkpoint or "demo", device=args.device,
                                            allow_backbone_mismatch=args.allow_backbone_mismatch)  # fmt: skip
    if args.function not in corr.functions:
        from afford.correspondence.text import check_function

        check_function(args.function, corr.functions)
    pts = _parse_points(args.points) if args.points else None
    res = correspond_files(
        args.image1, args.image2, args.function, corresponder=corr, out=args.out, points=pts,
        top=args.top, stride=args.stride, both_directions=args.both_directions,
        mask_a=args.mask1, mask_b=args.mask2, overwrite=args.overwrite,
    )  # fmt: skip
    n = sum(r["n"] for r in res["results"])
    where = res["results"][0]["files"]["overlay"] if args.out.lower().endswith(".png") else args.out
    print(f"wrote {where} ({res['n']} pair(s), {n} matches, "
          f"{'transfer' if pts is not None else 'discovery'})")  # fmt: skip
    return 0

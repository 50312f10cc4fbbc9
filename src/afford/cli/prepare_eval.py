"""``afford prepare eval-pairs`` and ``afford prepare handal`` (docs/eval-pairs.md)."""

from __future__ import annotations

import argparse


def register(groups: dict) -> None:
    e = groups["prepare"].add_parser(
        "eval-pairs",
        help="evaluation pairs with dense GT from aligned assets (eval/*.npz, eval_pairs.json)",
        description="Curate evaluation pairs of a dataset in the afford-correspondence format "
        "from an alignments JSON (asset pairs, a 4x4 alignment, 3-D part boxes; "
        "docs/eval-pairs.md): visible points, view choice, farthest point sampling and "
        "Hungarian matching. Writes DATASET/eval/*.npz and DATASET/eval_pairs.json.",
    )
    e.add_argument("dataset", metavar="DATASET", help="dataset folder holding dataset.json")
    e.add_argument("--alignments", required=True, metavar="FILE",
                   help="afford-alignments JSON (docs/eval-pairs.md)")  # fmt: skip
    e.add_argument("--max-points", type=int, default=10000,
                   help="GT points per pair at most (paper: 10000)")  # fmt: skip
    e.add_argument("--overwrite", action="store_true", help="replace existing evaluation pairs")
    e.set_defaults(func=_eval_pairs)

    h = groups["prepare"].add_parser(
        "handal",
        help="HANDAL (BOP layout) -> the afford-correspondence format",
        description="Convert HANDAL object folders (BOP layout: models/, <split>/<scene>/...) "
        "into an afford-correspondence dataset (224 crops of the annotated instances, masks, "
        "poses, depth by ray casting the CAD model, part masks, multi-view correspondences); "
        "with --alignments also its evaluation pairs.",
    )
    h.add_argument("roots", nargs="+", metavar="ROOT", help="HANDAL category folder(s) (BOP)")
    h.add_argument("--out", required=True, help="output dataset folder")
    h.add_argument("--split", default="test", help="BOP split folder to read (default: test)")
    h.add_argument("--category", action="append", default=None, metavar="NAME",
                   help="category name per ROOT (default: from the folder name)")  # fmt: skip
    h.add_argument("--objects", default=None, metavar="ID,ID",
                   help="object ids to convert (default: every model)")  # fmt: skip
    h.add_argument("--function", default="grasp", help="function of the part masks")
    h.add_argument("--part", default="handle", help="name of the part in the part masks")
    h.add_argument("--part-dir", default="mask_parts",
                   help="part-mask folder in each scene ('' = none)")  # fmt: skip
    h.add_argument("--stride", type=int, default=1, help="every N-th image per scene")
    h.add_argument("--max-views", type=int, default=24, help="views per object at most")
    h.add_argument("--cloud-points", type=int, default=20000, help="dense surface samples")
    h.add_argument("--labeler", default=None, metavar="SPEC",
                   help="pseudo-label the views (docs/labelers.md); default: none")  # fmt: skip
    h.add_argument("--samples", type=int, default=4, help="labeller samples per view")
    h.add_argument("--taxonomy", default=None, metavar="NAME|FILE|DIR",
                   help="part descriptions for detector prompts: a shipped name, an afford "
                   "taxonomy file or the official taxonomy folder")  # fmt: skip
    h.add_argument("--alignments", default=None, metavar="FILE",
                   help="also write evaluation pairs from this afford-alignments JSON")  # fmt: skip
    h.add_argument("--max-points", type=int, default=10000, help="GT points per pair at most")
    h.add_argument("--overwrite", action="store_true", help="replace a dataset in --out")
    h.add_argument("--device", default="cpu", help="torch device of a detector labeller")
    h.set_defaults(func=_handal)


def _eval_pairs(args: argparse.Namespace) -> int:
    from afford.errors import UsageError
    from afford.prepare.evalpairs import write_eval_pairs

    if args.max_points < 1:
        raise UsageError(f"--max-points must be >= 1, got {args.max_points}")
    res = write_eval_pairs(
        args.dataset, args.alignments, max_points=args.max_points, overwrite=args.overwrite
    )
    _report(args.dataset, res)
    return 0


def _report(root, res) -> None:
    n = {s: sum(p["split"] == s for p in res["pairs"]) for s in ("val", "test")}
    print(
        f"wrote {len(res['pairs'])} evaluation pairs (val {n['val']}, test {n['test']}) to "
        f"{root}/eval_pairs.json"
        + (
            f"; skipped (no visible part points): {', '.join(res['failed'])}"
            if res["failed"]
            else ""
        )
    )


def _handal(args: argparse.Namespace) -> int:
    from afford.errors import UsageError
    from afford.prepare.correspondence import load_taxonomy
    from afford.prepare.evalpairs import read_alignments, write_eval_pairs
    from afford.prepare.handal import HandalConvertConfig, write_handal_dataset

    objects = None
    if args.objects:
        try:
            objects = [int(x) for x in args.objects.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--objects {args.objects!r}: expected ids like 1,2,5") from None
    cfg = HandalConvertConfig(
        split=args.split,
        categories=args.category,
        objects=objects,
        function=args.function,
        part=args.part,
        part_dir=args.part_dir or None,
        stride=args.stride,
        max_views=args.max_views,
        cloud_points=args.cloud_points,
        labeler=args.labeler,
        samples=args.samples,
        device=args.device,
    )
    # the files named by arguments are read before the (long) conversion starts
    taxonomy = load_taxonomy(args.taxonomy) if args.taxonomy else None
    pairs = read_alignments(args.alignments) if args.alignments else None
    if args.max_points < 1:
        raise UsageError(f"--max-points must be >= 1, got {args.max_points}")
    manifest = write_handal_dataset(
        args.roots, args.out, cfg, overwrite=args.overwrite, taxonomy=taxonomy
    )
    print(
        f"wrote {manifest['counts']['assets']} HANDAL assets "
        f"({manifest['counts']['views']} views) to {args.out}"
    )
    if pairs is not None:
        res = write_eval_pairs(args.out, pairs, max_points=args.max_points)
        _report(args.out, res)
    return 0

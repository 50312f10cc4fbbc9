"""``afford synth correspondence``: write the synthetic dense-correspondence dataset.

Cheap to import (the writer and its dependencies load inside the handler).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SIZE_NAMES = ("tiny", "small", "default", "large")


def _run(args: argparse.Namespace) -> int:
    import json
    import time

    from afford.data.io import output_dir
    from afford.errors import AffordError
    from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

    if args.workers < 1:
        raise AffordError(f"--workers must be >= 1, got {args.workers}")
    for flag, value in (("--seed", args.seed), ("--max-points", args.max_points)):
        if value is not None and value < (0 if flag == "--seed" else 1):
            raise AffordError(f"{flag} must be >= {0 if flag == '--seed' else 1}, got {value}")
    if Path(args.out).is_dir():  # an earlier dataset is replaced only when asked to
        output_dir(args.out, overwrite=args.overwrite, markers=("dataset.json",))
    cats = None
    if args.categories:
        cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    cfg = CorrSynthConfig(
        seed=args.seed,
        size=args.size,
        views=args.views,
        categories=cats,
        max_points=args.max_points,
        per_category=tuple(args.per_category) if args.per_category else None,
    )
    start = time.perf_counter()
    manifest = write_correspondence_dataset(
        args.out, cfg, workers=args.workers, contact_sheet=not args.no_contact_sheet
    )
    seconds = time.perf_counter() - start
    counts = manifest["counts"]
    print(
        json.dumps(
            {
                "out": str(args.out),
                "seconds": round(seconds, 1),
                "assets": counts["assets"],
                "views": counts["views"],
                "eval_pairs": counts["eval_pairs"],
                "cross_category_fraction": counts["cross_category_fraction"],
                "pseudo_valid_fraction": counts["pseudo_valid_fraction"],
                "pseudo_mean_iou_vs_gt": counts["pseudo_mean_iou_vs_gt"],
            },
            indent=2,
        )
    )
    return 0


def register(groups: dict) -> None:
    """Add ``afford synth correspondence`` to the ``synth`` group."""
    p = groups["synth"].add_parser(
        "correspondence",
        help="dense functional correspondence dataset (views, pseudo-labels, GT pairs)",
        description="Write the synthetic correspondence dataset in the format of "
        "docs/correspondence-format.md: per asset N views with masks, part masks, cameras, "
        "depth, pseudo-labels and multi-view correspondences; evaluation pairs with dense GT "
        "from 3-D functional alignment. Deterministic for a seed, for any --workers.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--size", choices=SIZE_NAMES, default="default", help="dataset size preset")
    p.add_argument("--views", type=int, default=19, help="views per asset (paper: 19)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (output identical)")
    p.add_argument("--categories", default=None, help="comma-separated subset of categories")
    p.add_argument(
        "--max-points", type=int, default=None, help="GT points per pair cap (paper: 10000)"
    )
    p.add_argument(
        "--per-category",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=None,
        help="assets per category in each split (overrides the preset's)",
    )
    p.add_argument("--no-contact-sheet", action="store_true", help="skip contact_sheet.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the dataset an earlier run wrote in --out")  # fmt: skip
    p.set_defaults(func=_run)

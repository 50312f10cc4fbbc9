"""``afford demo``: the sub-command (the stages are imported by the handler, so that
``afford --help`` stays instant)."""

from __future__ import annotations

import argparse

DEFAULT_OUT = "afford-demo"


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from afford.errors import UsageError

    out = Path(args.out)
    held = [n for n in ("results.json", "report.md") if (out / n).is_file()]
    if held and not args.overwrite:  # checked before the heavy imports
        raise UsageError(
            f"--out {out}: already holds results ({', '.join(held)}); pass --overwrite to "
            "replace them or choose another folder"
        )
    from afford.demo.stages import Demo

    demo = Demo(args.out, quick=args.quick, seed=args.seed, device=args.device, force=args.force)
    demo.run()
    return 0


def register(groups: dict) -> None:
    """Add ``afford demo``."""
    p = groups["top"].add_parser(
        "demo",
        help="both methods end to end on the synthetic world, with a report",
        description="Write small synthetic datasets, train the selective grounding model, the "
        "CE baseline, the full correspondence model and its spatial-only ablation on tiny "
        "backbones, evaluate them on held-out synthetic data (next to a uniform map and "
        "chance), run them on a real photo, and write DIR/report.md, DIR/report.html and "
        "DIR/results.json. About 5 minutes on 2 CPU cores (--quick: under 2).",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="smaller data, fewer steps (< 3 min)")
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report and results of an earlier run in --out")  # fmt: skip
    p.add_argument(
        "--force",
        action="store_true",
        help="regenerate the datasets even when unchanged, and write into a non-empty folder "
        "not made by afford demo",
    )
    p.set_defaults(func=_run)

"""``afford synth ...`` commands (cheap to import: heavy imports live in the handlers).

- ``afford synth affordance --out DIR [--seed N] [--size small|default|large]
  [--ego N --exo N --test N --image-size S] [--workers N] [--force]``
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _affordance(args: argparse.Namespace) -> int:
    import json

    from afford.data.io import output_dir
    from afford.errors import UsageError
    from afford.synth.affordance import SIZES, AffordanceSize, write_affordance_dataset

    for flag in ("ego", "exo", "test", "image_size", "seed", "workers"):
        value = getattr(args, flag)
        low = {"image_size": 32, "seed": 0, "workers": 0}.get(flag, 1)
        if value is not None and value < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= {low}, got {value}")
    if Path(args.out).is_dir():  # an earlier dataset is replaced only when asked to
        output_dir(args.out, overwrite=args.overwrite, markers=("dataset.json",))
    size: str | AffordanceSize = args.size
    overrides = {k: getattr(args, k) for k in ("ego", "exo", "test", "image_size")}
    if any(v is not None for v in overrides.values()):
        base = SIZES[args.size]
        size = AffordanceSize(
            **{k: (v if v is not None else getattr(base, k)) for k, v in overrides.items()}
        )
    manifest = write_affordance_dataset(
        args.out, seed=args.seed, size=size, workers=args.workers, force=args.force
    )
    counts = {s: manifest["splits"][s]["counts"] for s in manifest["splits"]}
    print(json.dumps({"out": str(args.out), "counts": counts}, indent=2))
    return 0


def register(groups: dict) -> None:
    """Add ``afford synth affordance`` to the ``synth`` group."""
    synth = groups["synth"]
    p = synth.add_parser(
        "affordance",
        help="AGD20K-layout affordance dataset (ego/exo/test/GT + simulated affinity maps)",
        description="Write the synthetic affordance dataset in the exact AGD20K folder layout "
        "(Seen/Unseen), with GT maps, simulated CLIP affinity maps (cache/), dataset.json and "
        "contact_sheet.png. Deterministic for a seed, whatever --workers.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--size",
        choices=["small", "default", "large"],
        default="default",
        help="preset counts per (affordance, object) folder (default: default)",
    )
    p.add_argument("--ego", type=int, default=None, help="egocentric train images per folder")
    p.add_argument("--exo", type=int, default=None, help="exocentric train images per folder")
    p.add_argument("--test", type=int, default=None, help="test images per folder")
    p.add_argument("--image-size", type=int, default=None, help="image side in pixels")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: none)")
    p.add_argument(
        "--force", action="store_true", help="write into a non-empty folder not made by afford"
    )
    p.add_argument("--overwrite", action="store_true",
                   help="replace the dataset an earlier run wrote in --out")  # fmt: skip
    p.set_defaults(func=_affordance)

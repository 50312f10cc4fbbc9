"""``afford prepare correspondence``: a folder of meshes -> a correspondence dataset.

Cheap to import (the pipeline, trimesh and the labellers load inside the handler).
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    import json
    import time

    from afford.prepare.correspondence import PrepareConfig, prepare_correspondence

    cfg = PrepareConfig(
        views=args.views,
        image_size=args.image_size,
        distance=args.distance,
        fov_deg=args.fov,
        samples=args.samples,
        cloud_points=args.cloud_points,
        seed=args.seed,
    )
    start = time.perf_counter()
    summary = prepare_correspondence(
        args.assets,
        args.taxonomy,
        args.labeler,
        args.out,
        cfg,
        workers=args.workers,
        manifest=args.manifest,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    shown = {k: v for k, v in summary.items() if k != "failures"}
    shown["seconds"] = round(seconds, 1)
    if summary["failures"]:
        shown["failures_file"] = f"{summary['out']}/failures.jsonl"
        shown["first_failures"] = [f"{f['asset']}: {f['reason']}" for f in summary["failures"][:3]]
    print(json.dumps(shown, indent=2))
    return 0


def register(groups: dict) -> None:
    """Add ``afford prepare correspondence`` to the ``prepare`` group."""
    p = groups["prepare"].add_parser(
        "correspondence",
        help="3-D assets (GLB/GLTF/OBJ/PLY/STL) -> correspondence training data",
        description="Render every mesh under --assets with the official camera rig (19 views "
        "on a sphere of radius 2, 490 px), label functional parts with --labeler, aggregate "
        "the boxes into pseudo-label masks in 3-D and write the dataset of "
        "docs/correspondence-format.md (train it with `afford train correspondence`). "
        "Resumable: re-run the same command to finish an interrupted run; assets that cannot "
        "be used are listed in OUT/failures.jsonl. Output identical for any --workers.",
    )
    p.add_argument("--assets", required=True, help="folder of mesh files (searched recursively)")
    p.add_argument(
        "--taxonomy",
        required=True,
        help="official 0_taxonomy_and_metadata/ folder, an afford taxonomy file, or a shipped "
        "name (paper, synth)",
    )
    p.add_argument(
        "--labeler",
        required=True,
        help="part labeller: owlv2:MODEL | grounding-dino:MODEL | boxes:FILE | simulated",
    )
    p.add_argument("--out", required=True, help="output folder (re-run to resume)")
    p.add_argument("--manifest", help="CSV (file,category[,id]) or JSON file -> category table")
    p.add_argument("--views", type=int, default=19, help="views per asset (official: 19)")
    p.add_argument("--image-size", type=int, default=490, help="view side in px (official: 490)")
    p.add_argument("--distance", type=float, default=2.0, help="camera distance (official: 2)")
    p.add_argument("--fov", type=float, default=40.0, help="horizontal field of view, degrees")
    p.add_argument("--samples", type=int, default=4, help="labeller boxes per view (paper: 4)")
    p.add_argument("--cloud-points", type=int, default=40000, help="dense surface samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the surface samples")
    p.add_argument("--workers", type=int, default=1, help="worker processes (output identical)")
    p.add_argument("--device", default="cpu", help="labeller device (cpu, cuda, ...)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier preparation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)

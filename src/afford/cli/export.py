"""``afford export grounding|correspondence --format onnx --out FILE [--checkpoint C]``."""

from __future__ import annotations

import argparse
import json

TASKS = ("grounding", "correspondence")


def _run(args: argparse.Namespace) -> int:
    # a missing 'export' extra is reported as such (torch's exporter would wrap the error)
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    from afford.export.onnx import check_args, export
    from afford.export.resolve import checkpoint_path

    check_args(args.task, args.format, args.out, args.overwrite)  # before loading anything
    summary = export(
        args.task,
        checkpoint_path(args.task, args.checkpoint),
        args.out,
        fmt=args.format,
        overwrite=args.overwrite,
        check=not args.no_check,
    )
    print(json.dumps(summary, indent=2))
    return 0


def register(groups: dict) -> None:
    """Add ``afford export``."""
    p = groups["top"].add_parser(
        "export",
        help="export a trained model with its backbones to ONNX",
        description="Write the full inference graph (frozen backbones, trained heads and the "
        "text embeddings of every action / function) of a checkpoint as one ONNX file, then "
        "run it once with onnxruntime and print the largest difference from PyTorch. "
        "Inputs and outputs: docs/export.md. Needs the 'export' extra.",
    )
    p.add_argument("task", choices=TASKS, help="which model")
    p.add_argument("--format", default="onnx", help="output format (only: onnx)")
    p.add_argument("--out", required=True, help="output file (.onnx)")
    p.add_argument(
        "--checkpoint",
        default="demo",
        help="checkpoint folder or run folder, or 'demo' for the shipped demo model (default)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch comparison"
    )
    p.set_defaults(func=_run)

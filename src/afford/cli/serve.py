"""``afford serve [--host 127.0.0.1] [--port N] [--grounding-checkpoint C]
[--correspondence-checkpoint C]``: the web demo."""

from __future__ import annotations

import argparse

from afford.errors import UsageError


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from afford.engine import resolve_device
    from afford.errors import DataError

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be between 1 and 65535")
    resolve_device(args.device)  # the cheap checks first: no 'web' import, no model load
    for flag, value in (("--grounding-checkpoint", args.grounding_checkpoint),
                        ("--correspondence-checkpoint", args.correspondence_checkpoint)):  # fmt: skip
        if value != "demo" and not Path(value).expanduser().exists():
            raise DataError(f"{flag} {value}: no such checkpoint folder (or pass 'demo')")
    import gradio  # noqa: F401  (a missing 'web' extra is reported before the models load)

    from afford.serve.app import serve

    serve(
        host=args.host,
        port=args.port,
        grounding=args.grounding_checkpoint,
        correspondence=args.correspondence_checkpoint,
        device=args.device,
    )
    return 0


def register(groups: dict) -> None:
    """Add ``afford serve``."""
    p = groups["top"].add_parser(
        "serve",
        help="the web demo in your browser (grounding, correspondence, transfer)",
        description="Start the web demo: one tab per task plus transfer, on the Python API, "
        "with the shipped demo models unless checkpoints are given. Needs the 'web' extra. "
        "Listens on 127.0.0.1 (this machine only) unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--grounding-checkpoint",
        default="demo",
        metavar="C",
        help="grounding checkpoint folder or 'demo' (default)",
    )
    p.add_argument(
        "--correspondence-checkpoint",
        default="demo",
        metavar="C",
        help="correspondence checkpoint folder or 'demo' (default)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    p.set_defaults(func=_run)

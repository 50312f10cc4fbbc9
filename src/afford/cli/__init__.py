"""The ``afford`` command.

Each area registers its own sub-commands: a module listed in ``COMMAND_MODULES`` defines
``register(groups)`` where ``groups`` maps ``"top"`` to the top-level sub-parsers and
``"train"``, ``"eval"``, ``"synth"`` to the sub-parsers of those command groups.  Handlers are
set with ``parser.set_defaults(func=handler)``; a handler takes the parsed ``args`` and returns
an exit code (or None for 0).  Modules must import cheaply: heavy imports go inside handlers,
so ``afford --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from afford import __version__
from afford.errors import AffordError

#: Exit code of an unexpected exception (sysexits.h EX_SOFTWARE): not the user's input.
EXIT_INTERNAL = 70

COMMAND_MODULES = [
    "afford.cli.info",
    "afford.cli.synth_affordance",
    "afford.cli.synth_correspondence",
    "afford.cli.prepare_correspondence",
    "afford.cli.grounding",
    "afford.cli.pretrain",
    "afford.cli.correspondence",
    "afford.demo",
    "afford.cli.serve",
    "afford.cli.export",
    "afford.cli.prepare_eval",
]

GROUPS = {
    "train": "train a model from a YAML config",
    "eval": "evaluate a checkpoint; writes results.json",
    "synth": "write a synthetic dataset (offline, deterministic for a seed)",
    "prepare": "turn real 3-D assets and datasets into afford training and evaluation data",
}


#: Optional dependencies (import name -> the extra that installs them, pyproject.toml).
OPTIONAL = {
    "trimesh": "synth",
    "embreex": "synth",
    "rtree": "synth",
    "threadpoolctl": "synth",
    "skimage": "synth",
    "gradio": "web",
    "onnx": "export",
    "onnxruntime": "export",
    "transformers": "detect",
    "tokenizers": "detect",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional dependency, or None for any other."""
    name = (exc.name or "").split(".")[0]
    if name not in OPTIONAL:
        return None
    extra = OPTIONAL[name]
    return f"this command needs {name!r}, from the optional {extra!r} extra: pip install 'afford[{extra}]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afford",
        description="What objects are for: affordance grounding and dense functional "
        "correspondence (ICCV 2025 methods).",
    )
    parser.add_argument("--version", action="version", version=f"afford {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {"top": top}
    for name, help_text in GROUPS.items():
        group = top.add_parser(name, help=help_text, description=help_text)
        groups[name] = group.add_subparsers(dest=f"{name}_target", metavar="WHAT", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = args.func(args)
    except AffordError as exc:
        if args.verbose:
            logging.getLogger("afford").exception("traceback (-v)")
        print(f"afford: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        msg = missing_extra(exc)
        if msg is None:
            raise
        print(f"afford: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("afford: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not the user's input: one line unless -v
        if args.verbose:
            raise
        reason = (str(exc).strip().splitlines() or [""])[0]
        print(f"afford: internal error: {type(exc).__name__}: {reason} (a bug in afford; "
              "rerun with -v for the traceback and please report it)", file=sys.stderr)  # fmt: skip
        return EXIT_INTERNAL
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

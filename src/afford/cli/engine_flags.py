"""The engine flags shared by every train command (``afford train grounding``, ``afford
train correspondence``, ``afford pretrain-backbone``): each is a shorthand for a
``train.*`` key of :class:`afford.config.TrainConfig` (settable in the YAML and with
``--set`` too).  Cheap to import: no torch, no lightning."""

from __future__ import annotations

import argparse
import json

#: flag dest -> (train key, argparse kwargs)
ENGINE_FLAGS: dict[str, tuple[str, dict]] = {
    "accelerator": ("accelerator", {"choices": ("auto", "cpu", "gpu"),
                                    "help": "auto | cpu | gpu (= train.accelerator)"}),
    "devices": ("devices", {"type": int, "metavar": "N",
                            "help": "processes (one device each) per node; >1 launches them "
                            "(gloo on CPU) (= train.devices)"}),
    "num_nodes": ("num_nodes", {"type": int, "metavar": "N",
                                "help": "machines; launch with torchrun (= train.num_nodes)"}),
    "strategy": ("strategy", {"choices": ("auto", "ddp", "fsdp"),
                              "help": "auto | ddp | fsdp (= train.strategy)"}),
    "precision": ("precision", {"choices": ("32", "bf16-mixed", "16-mixed"),
                                "help": "32 | bf16-mixed | 16-mixed (= train.precision)"}),
    "max_steps": ("max_steps", {"type": int, "metavar": "N",
                                "help": "stop after N optimizer steps (= train.max_steps)"}),
    "workers": ("workers", {"type": int, "metavar": "N",
                            "help": "DataLoader worker processes (= train.workers)"}),
    "logger": ("logger", {"choices": ("tensorboard", "csv", "none"),
                          "help": "scalar logs in <out>/logs (= train.logger)"}),
    "log_every": ("log_every", {"type": int, "metavar": "N",
                                "help": "log / progress line every N steps (= train.log_every)"}),
    "checkpoint_every": ("checkpoint_every", {"type": int, "metavar": "N",
                                              "help": "also checkpoint every N steps "
                                              "(= train.checkpoint_every)"}),
}  # fmt: skip


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """Add the engine flags to a train command's parser."""
    g = p.add_argument_group("engine (Lightning Fabric; docs/training.md)")
    for dest, (_key, kw) in ENGINE_FLAGS.items():
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None, **kw)


def engine_sets(args: argparse.Namespace) -> list[str]:
    """The given engine flags as ``train.<key>=<value>`` assignments (``--set`` syntax)."""
    out = []
    for dest, (key, _kw) in ENGINE_FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            out.append(f"train.{key}={json.dumps(v)}")
    return out

"""Backbone records for exported checkpoints (used by ``scripts/make_demo_models.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from afford.backbones import policy
from afford.correspondence.train import load_encoders, trained_config
from afford.data.io import read_json, write_json
from afford.grounding.build import BACKBONES_KEY, build_clip, build_dino, checkpoint_experiment


def record_demo_backbones(folder: str | os.PathLike, task: str) -> dict:
    """Build the backbones a checkpoint's config names and store their records in it
    (``config["backbones"]``); returns the records."""
    folder = Path(folder)
    if task == "grounding":
        _, exp = checkpoint_experiment(folder)
        recs = policy.records(dino=build_dino(exp, "cpu"), clip=build_clip(exp, "cpu"))
    else:
        _, conf = trained_config(folder)
        dino, clip = load_encoders(conf["experiment"], "cpu")
        recs = policy.records(dinov2=dino, clip=clip)
    meta = read_json(folder / "config.json")
    meta["config"][BACKBONES_KEY] = recs
    write_json(folder / "config.json", meta)
    return recs

"""Helpers of the engine scale tests: tiny configs of both tasks as YAML files, the CLI run
in a subprocess (so Fabric can launch its extra processes and kill -9 cannot hit pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors.torch import load_file

from afford.config import from_dict, to_dict
from afford.correspondence.config import CorrExperiment
from afford.data.io import read_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "grounding"))
sys.path.insert(0, str(HERE.parent / "correspondence"))

from gtrain_helpers import synth_tiny, tiny_config  # noqa: E402
from tiny_data import write_tiny_dataset  # noqa: E402


def grounding_yaml(base: Path, **train) -> Path:
    """A tiny grounding experiment (full selective method, simulated maps) as a YAML file."""
    root = synth_tiny(base) / "Unseen"
    keys = {"epochs": 2, "batch_size": 4, "logger": "none", "log_every": 1, **train}
    exp = tiny_config(root, base / "unused", **keys)
    d = to_dict(exp)
    d["train"].pop("out")
    path = base / f"grounding_{abs(hash(tuple(sorted(keys.items()))))}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def corr_yaml(base: Path, **train) -> Path:
    """A tiny correspondence experiment (functional + spatial) as a YAML file."""
    root = base / "tinycorr"
    if not (root / "dataset.json").is_file():
        write_tiny_dataset(root)
    raw = {
        "data": {"root": str(root), "val_fraction": 0.0},
        "backbone": {"dinov2": {"variant": "tiny"}, "clip": {"variant": "tiny"}},
        "model": {"proj_dim": 32, "hidden": 64, "out_dim": 16},
        "sampling": {"pairs": 4, "points": 16, "spatial_points": 16},
        "train": {"epochs": 2, "iters_per_epoch": 4, "lr": 1e-3, "progress": False,
                  "logger": "none", "log_every": 1, **train},
    }  # fmt: skip
    d = to_dict(from_dict(CorrExperiment, raw))
    d["train"].pop("out")
    path = base / f"corr_{abs(hash(tuple(sorted(train.items()))))}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def run_cli(*args: str, env: dict | None = None, check: bool = True):
    """``python -m afford.cli ARGS`` in a subprocess (1 torch thread)."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    e.pop("AFFORD_TEST_CRASH", None) if not env or "AFFORD_TEST_CRASH" not in env else None
    p = subprocess.run([sys.executable, "-m", "afford.cli", *args], env=e, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    if check and p.returncode != 0:
        raise AssertionError(
            f"afford {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}"
        )
    return p


def weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def losses(run: Path) -> list[float]:
    return [h["total"] for h in read_json(run / "history.json")["history"]]

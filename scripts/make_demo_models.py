"""Train the two small demo models shipped in ``src/afford/models/`` (reproducible).

    python scripts/make_demo_models.py [--work DIR] [--quick] [--seed 0] [--export-only]

Runs the data and training recipes of ``afford demo`` (:mod:`afford.demo.recipes`; the
``full`` profile unless ``--quick``) for two runs only, the selective-contrastive grounding
model and the full correspondence model, both on the tiny backbones (DINO / DINOv2
``tiny-synth``, shipped in ``afford/assets``; CLIP ``tiny``, seeded random), then exports each
best checkpoint into ``src/afford/models/demo-grounding`` and ``demo-correspondence``:
``model.safetensors`` + ``config.json`` with the dataset paths replaced by a note and the
backbones referenced (variant + weight digest, :mod:`afford.backbones.policy`), never copied.

They are toy models: trained on the procedural synthetic world, not on AGD20K or real photos.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from afford.config import from_dict  # noqa: E402
from afford.correspondence.config import CorrExperiment  # noqa: E402
from afford.correspondence.train import train as train_corr  # noqa: E402
from afford.data.io import read_json, write_bytes, write_json  # noqa: E402
from afford.demo.stages import Demo  # noqa: E402
from afford.grounding.config import GroundingExperiment  # noqa: E402
from afford.grounding.train import train as train_grounding  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "afford" / "models"
RUNS = {"grounding": "grounding-selective", "correspondence": "correspondence-full"}
SAMPLES = {"mug_000": "mug.png", "kettle_000": "kettle.png", "jug_000": "jug.png"}
NOTE = "trained by scripts/make_demo_models.py on the synthetic world (afford demo recipe)"


def _scrub(obj, work: str):
    """Replace the machine's training paths in a stored config by a note."""
    if isinstance(obj, dict):
        return {k: _scrub(v, work) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, work) for v in obj]
    if isinstance(obj, str) and work in obj:
        return f"<{NOTE}>"
    return obj


def export(run: Path, task: str, work: Path, profile: str, seed: int) -> Path:
    """Copy ``run``'s best checkpoint into the package as ``demo-<task>`` (paths scrubbed,
    backbone records added)."""
    from afford.api.demo_models import record_demo_backbones

    src = run / "best" if (run / "best").is_dir() else run / "last"
    dst = MODELS / f"demo-{task}"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    write_bytes(dst / "model.safetensors", (src / "model.safetensors").read_bytes())
    meta = read_json(src / "config.json")
    meta["config"] = _scrub(meta["config"], str(work))
    extra = {k: v for k, v in meta.get("extra", {}).items() if k == "train_state"}
    extra["demo"] = {"note": NOTE, "profile": profile, "seed": seed, "toy": True}
    meta["extra"] = extra
    meta.pop("optimizer", None)
    write_json(dst / "config.json", meta)
    record_demo_backbones(dst, task)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/afford-demo-models", help="scratch folder")
    ap.add_argument("--quick", action="store_true", help="the quick demo profile (faster)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export-only", action="store_true", help="export already trained runs")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    work = Path(args.work).resolve()
    demo = Demo(work, quick=args.quick, seed=args.seed, device="cpu", force=True, progress=False)
    if not args.export_only:
        demo.prepare_out()
        demo.stage_data()
        train_grounding(from_dict(GroundingExperiment, demo.grounding_config(RUNS["grounding"])))
        corr = from_dict(CorrExperiment, demo.corr_config(RUNS["correspondence"]))
        train_corr(corr)
    for task, run in RUNS.items():
        out = export(work / "runs" / run, task, work, demo.profile_name, args.seed)
        print(f"exported {out}")
    samples = MODELS / "samples"
    samples.mkdir(exist_ok=True)
    for asset, name in SAMPLES.items():
        write_bytes(samples / name,
                    (work / "data" / "correspondence" / "assets" / asset / "rgb" / "02.png")
                    .read_bytes())  # fmt: skip
    print(f"copied {len(SAMPLES)} sample renders to {samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

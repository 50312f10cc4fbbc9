"""Training throughput of the engine at real backbone size on the CPU (issue 15).

Each run is the real command, ``afford train grounding|correspondence --max-steps N``, in
its own process, on a synthetic data set written here, with real-size backbones holding
seeded random weights (timing does not depend on the values):

* grounding: DINO ViT-S/16, B=8 samples x (1 ego + E=3 exo) images at 224^2 with the
  augmented views (crop/flip, DINO on every view each step), the full selective method,
  simulated affinity maps (the CLIP cache is a separate, one-off cost);
* correspondence: DINOv2 ViT-B/14 on 224^2 crops, P=4 pairs (of the paper's 50: a CPU-
  feasible fraction) x 128 + 128 points, 128 spatial correspondences (3 images per pair).

Per task: float32 vs bf16-mixed, --workers 0 vs 2 (data-wait share of each step), and 1 vs 2
gloo processes at the same global batch.  The 2-process overhead (communication and
synchronisation) is estimated as the 2-process step time minus the 1-process step time at
half the batch (the work each rank does).  Every process runs 1 torch thread: on this
shared 2-core machine 2 threads in one process were several times slower than 1 (see
``afford pretrain-backbone --threads``), so "2 processes" is also "2 cores instead of 1".  Times are the median over the steps after the
first (warm-up); validation is off (``val_fraction: 0``) so only training steps are timed.
The machine's 2 cores are shared with other jobs: numbers are indicative.

Run: ``python benchmarks/training_scale.py [--steps 4] [--bf16-steps 2] [--only TASK]``; writes
benchmarks/results/training_scale.json and prints (and writes) training_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from afford.data.cache import MapCache, file_key  # noqa: E402
from afford.data.io import read_json, write_image, write_json, write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests" / "correspondence"))


def grounding_data(root: Path, per_folder: int = 6) -> Path:
    """Noise images (256 x 320) in the AGD20K layout, 2 affordances x 2 objects, with a
    simulated affinity cache (constant maps): only the shapes matter for timing."""
    rng = np.random.default_rng(0)
    cache = MapCache(root / "cache", "simulated-clip", simulated=True)
    for aff, objs in {"hold": ("cup", "knife"), "cut_with": ("knife", "scissors")}.items():
        for obj in objs:
            for view, n in (("egocentric", 2), ("exocentric", per_folder)):
                for i in range(n):
                    img = rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)
                    p = write_image(root / "trainset" / view / aff / obj / f"{i:03d}.png", img)
                    m = rng.random((14, 14)).astype(np.float32)
                    cache.put(file_key(p), {f"action:{aff}": m, f"entity:{aff}": m})
            write_image(root / "testset" / "egocentric" / aff / obj / "t.png",
                        rng.integers(0, 256, (256, 320, 3), dtype=np.uint8))  # fmt: skip
    return root


def grounding_config(root: Path, batch: int) -> dict:
    return {
        "data": {"root": str(root), "affinity": "simulated", "val_fraction": 0.0},
        "backbone": {"dino": {"variant": "vits16", "weights": "random"},
                     "clip": {"variant": "vitb16", "weights": "random"}},
        "train": {"epochs": 100, "batch_size": batch, "progress": True, "log_every": 1,
                  "logger": "none", "resume": False},
    }  # fmt: skip


def corr_config(root: Path, pairs: int) -> dict:
    return {
        "data": {"root": str(root), "val_fraction": 0.0},
        "backbone": {"dinov2": {"variant": "vitb14", "weights": "random"},
                     "clip": {"variant": "vitb16", "weights": "random"}},
        "sampling": {"pairs": pairs, "points": 128, "spatial_points": 128},
        "train": {"epochs": 100, "iters_per_epoch": 1000, "progress": True, "log_every": 1,
                  "logger": "none", "resume": False},
    }  # fmt: skip


def run(task: str, cfg: dict, work: Path, name: str, steps: int, *flags: str,
        threads: int = 1) -> dict:  # fmt: skip
    """One training command; its timing (history.json) -> seconds/step, data-wait share."""
    path = work / f"{name}.yaml"
    cfg = json.loads(json.dumps(cfg))
    cfg["train"]["threads"] = threads
    path.write_text(yaml.safe_dump(cfg))
    out = work / name
    cmd = [sys.executable, "-m", "afford.cli", "train", task, "--config", str(path), "--out",
           str(out), "--max-steps", str(steps), "--accelerator", "cpu", *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    timing = read_json(out / "history.json")["timing"]
    step_s, wait_s = timing["step_s"][1:], timing["wait_s"][1:]  # the first step warms up
    sec = statistics.median(step_s)
    row = {"name": name, "flags": list(flags), "threads": threads, "steps_timed": len(step_s),
           "seconds_per_step": round(sec, 3),
           "data_wait_fraction": round(sum(wait_s) / sum(step_s), 4),
           "first_step_s": round(timing["step_s"][0], 2), "wall_s": round(wall, 1)}  # fmt: skip
    print(f"  {task} {name}: {sec:.2f} s/step, data wait {row['data_wait_fraction']:.1%}",
          flush=True)  # fmt: skip
    return row


def task_rows(task: str, cfg_full: dict, cfg_half: dict, work: Path, steps: int,
              bf16_steps: int) -> dict:  # fmt: skip
    rows = {
        "fp32_workers0": run(task, cfg_full, work, f"{task}_fp32_w0", steps, "--workers", "0"),
        "fp32_workers2": run(task, cfg_full, work, f"{task}_fp32_w2", steps, "--workers", "2"),
        "bf16_workers2": run(task, cfg_full, work, f"{task}_bf16_w2", bf16_steps, "--workers",
                             "2", "--precision", "bf16-mixed"),
        "two_processes": run(task, cfg_full, work, f"{task}_2p", steps, "--devices", "2",
                             "--workers", "0", threads=1),
        "one_process_half_batch": run(task, cfg_half, work, f"{task}_half", steps, "--workers",
                                      "0", threads=1),
    }  # fmt: skip
    two, half = (
        rows["two_processes"]["seconds_per_step"],
        rows["one_process_half_batch"]["seconds_per_step"],
    )
    rows["two_process_overhead_s"] = round(two - half, 3)
    return rows


def markdown(res: dict) -> str:
    lines = [
        "# Training throughput at real backbone size (CPU)",
        "",
        f"{res['platform']}; {res['steps']} steps per run ({res['bf16_steps']} with "
        "bf16-mixed, which this CPU runs without bf16 matrix units: slow), median of the steps "
        "after the first; 1 torch thread per process (2 threads per process were several "
        "times slower on this shared 2-core machine), so 2 processes use both cores.",
        "",
        "| task | setting | s/step | data wait | first step (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for task, label in (("grounding", res["grounding_setting"]),
                        ("correspondence", res["correspondence_setting"])):  # fmt: skip
        if task not in res:
            continue
        for key, row in res[task].items():
            if isinstance(row, dict):
                lines.append(f"| {task} | {key} | {row['seconds_per_step']:.2f} | "
                             f"{row['data_wait_fraction']:.1%} | {row['first_step_s']:.1f} |")  # fmt: skip
        lines.append(f"| {task} | 2-process overhead (2p minus 1p at half batch) | "
                     f"{res[task]['two_process_overhead_s']:+.2f} | | |")  # fmt: skip
        lines.append(f"| {task} | setting | {label} | | |")
    lines += [
        "",
        "Reading: the data wait stays under 5 % of a step with 0 or 2 workers here (the frozen "
        "backbone dominates a step); bf16-mixed autocast is ~10x slower on this CPU (no bf16 "
        "matrix units) and meant for GPUs. Correspondence halves its step with 2 processes "
        "(the per-pair work splits cleanly). Grounding does not gain: to stay exact, its "
        "k-means part discovery (up to 300 iterations) and the prototype loss run on the "
        "gathered global batch on every rank, so that part is not divided, and its gradient "
        "all-reduce is larger (the two 3x3 conv blocks); the overhead row is that serial part "
        "plus communication (not profiled further). The machine is shared: indicative only.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    ap.add_argument("--bf16-steps", type=int, default=2, help="steps of the bf16-mixed runs")
    ap.add_argument("--only", choices=("grounding", "correspondence"), default=None)
    args = ap.parse_args(argv)
    res: dict = {"platform": platform.platform(), "cpus": os.cpu_count(), "steps": args.steps,
                 "bf16_steps": args.bf16_steps,
                 "grounding_setting": "DINO ViT-S/16, B=8, E=3, 224^2 augmented views",
                 "correspondence_setting": "DINOv2 ViT-B/14, P=4 of 50 pairs, 128+128 points, "
                 "128 spatial, 224^2 crops"}  # fmt: skip
    from tiny_data import write_tiny_dataset

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "training_scale.json"
    if args.only is not None and path.is_file():  # one task again: keep the other's rows
        res = {**read_json(path), **{k: v for k, v in res.items() if k != "steps"}}

    def save() -> None:  # after each task: a long run keeps what it measured
        write_json(path, res)
        write_text(RESULTS / "training_scale.md", markdown(res))

    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        if args.only in (None, "grounding"):
            root = grounding_data(work / "gdata")
            print("grounding:", flush=True)
            res["grounding"] = task_rows("grounding", grounding_config(root, 8),
                                         grounding_config(root, 4), work, args.steps,
                                         args.bf16_steps)  # fmt: skip
            save()
        if args.only in (None, "correspondence"):
            root = write_tiny_dataset(work / "cdata")
            print("correspondence:", flush=True)
            res["correspondence"] = task_rows("correspondence", corr_config(root, 4),
                                              corr_config(root, 2), work, args.steps,
                                              args.bf16_steps)  # fmt: skip
            save()
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

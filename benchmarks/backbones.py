"""Forward time per image of the frozen backbones vs the bare timm / open_clip forward.

Real-size models with (deterministic) random weights on the CPU: DINO ViT-S/16, DINOv2
ViT-B/14 at 224, CLIP ViT-B/16. For each, at batch 1 and 8:

- bare: the library's own forward on an already-normalised tensor (timm
  ``forward_features``, open_clip ``encode_image``);
- afford: our module on [0,1] images (input checks, normalisation, DINO keys + CLS attention
  from the hooked qkv, DINOv2 last-3-block maps, CLIP ClearCLIP dense map).

Bare and afford runs are interleaved; the median of the repeats is reported, both as process
CPU time (one torch thread, so this is the compute time; robust to other jobs on a shared
CPU) and wall time. Target: afford <= bare + 10 % (CPU time).

Run: ``cd /work/main && .venv/bin/python benchmarks/backbones.py [--threads 1] [--repeats 5]``;
prints a markdown table and writes benchmarks/results/backbones.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from afford.backbones import load_clip, load_dino, load_dinov2
from afford.data.io import write_json

RESULTS = Path(__file__).parent / "results" / "backbones.json"
BATCHES = (1, 8)
TARGET = 0.10


def time_pair(
    bare: Callable[[], object], ours: Callable[[], object], repeats: int
) -> dict[str, float]:
    """Median wall and CPU seconds of ``bare`` and ``ours`` over ``repeats`` interleaved runs
    (after 1 warm-up each). With one torch thread the process CPU time is the compute time and
    is far less disturbed by other jobs on a shared CPU than the wall time."""
    bare()
    ours()
    runs: dict[str, list[float]] = {
        "bare_wall": [],
        "bare_cpu": [],
        "ours_wall": [],
        "ours_cpu": [],
    }
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("ours", ours)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs[f"{name}_cpu"].append(time.process_time() - c0)
            runs[f"{name}_wall"].append(time.perf_counter() - w0)
    return {k: statistics.median(v) for k, v in runs.items()}


def cases() -> list[tuple[str, Callable[[], tuple[Callable, Callable]]]]:
    """(name, builder) pairs; a builder returns (bare(x_norm), ours(x)) callables."""

    def dino():
        m = load_dino(weights="random")
        return (lambda x: m.vit.forward_features(x)), (lambda x: m(x))

    def dinov2():
        m = load_dinov2(weights="random")
        return (lambda x: m.vit.forward_features(x)), (lambda x: m(x))

    def clip():
        m = load_clip(weights="random")
        return (lambda x: m.clip.encode_image(x)), (lambda x: m.dense(x, clearclip=True))

    return [("DINO ViT-S/16", dino), ("DINOv2 ViT-B/14", dinov2), ("CLIP ViT-B/16", clip)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    todo = [(name, build) for name, build in cases()]
    bar = tqdm(total=len(todo) * len(BATCHES), desc="backbones")
    for name, build in todo:
        bare_fn, ours_fn = build()
        for batch in BATCHES:
            images = torch.rand(batch, 3, 224, 224, generator=g)
            # the bare forward gets an already-normalised tensor (its cost is not counted)
            normed = (images - 0.45) / 0.25
            with torch.no_grad():
                t = time_pair(
                    lambda f=bare_fn, n=normed: f(n),
                    lambda f=ours_fn, i=images: f(i),
                    args.repeats,
                )
            rows.append(
                {
                    "backbone": name,
                    "batch": batch,
                    "bare_cpu_ms_per_image": 1000 * t["bare_cpu"] / batch,
                    "afford_cpu_ms_per_image": 1000 * t["ours_cpu"] / batch,
                    "overhead_cpu": t["ours_cpu"] / t["bare_cpu"] - 1,
                    "bare_wall_ms_per_image": 1000 * t["bare_wall"] / batch,
                    "afford_wall_ms_per_image": 1000 * t["ours_wall"] / batch,
                    "overhead_wall": t["ours_wall"] / t["bare_wall"] - 1,
                }
            )
            bar.update(1)
    bar.close()

    print(
        f"\nthreads={args.threads}, repeats={args.repeats} (median), CPU shared with other jobs\n"
    )
    print(
        "| backbone | batch | bare ms/img (CPU) | afford ms/img (CPU) | overhead (CPU) | "
        "overhead (wall) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['batch']} | {r['bare_cpu_ms_per_image']:.1f} | "
            f"{r['afford_cpu_ms_per_image']:.1f} | {100 * r['overhead_cpu']:+.1f}% | "
            f"{100 * r['overhead_wall']:+.1f}% |"
        )
    write_json(
        RESULTS,
        {
            "rows": rows,
            "target_overhead": TARGET,
            "within_target_cpu": all(r["overhead_cpu"] <= TARGET for r in rows),
            "threads": args.threads,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "note": "random real-size weights; CPU shared with other jobs, times indicative",
        },
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

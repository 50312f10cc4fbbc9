"""Renderer speed: views/s at 224x224 for a ~5k-face asset on one core (target >= 20).

Also times the scene build (embree BVH + shading normals) and one affordance-dataset sample
(ego / exo, including asset generation, actor and simulated maps).

Run: ``cd /work/main && .venv/bin/python benchmarks/render.py``; prints a markdown table and
writes benchmarks/results/render.json.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import trimesh  # noqa: E402

from afford.data.io import write_json  # noqa: E402
from afford.geometry.camera import sphere_cameras  # noqa: E402
from afford.synth.affordance import render_sample  # noqa: E402
from afford.synth.assets import Asset, make_asset  # noqa: E402
from afford.synth.render import Scene  # noqa: E402

REPEATS = 3


def five_k_asset(category: str = "kettle", seed: int = 0) -> Asset:
    """The asset subdivided until it has >= 5000 faces (part labels carried over)."""
    a = make_asset(category, seed)
    v, f, fp = a.mesh.vertices, a.mesh.faces, a.face_part
    while len(f) < 5000:
        v, f, idx = trimesh.remesh.subdivide(v, f, return_index=True)
        new_fp = np.empty(len(f), dtype=fp.dtype)
        for old, news in idx.items():
            new_fp[news] = fp[old]
        fp = new_fp
    return Asset(a.category, a.seed, trimesh.Trimesh(v, f, process=False), fp, a.parts)


def bench_views(asset: Asset, size: int, background: str) -> dict:
    cams = sphere_cameras(19, width=size, height=size)
    t0 = time.perf_counter()
    scene = Scene(asset)
    build = time.perf_counter() - t0
    scene.render(cams[0], background)  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for k, c in enumerate(cams):
            scene.render(c, background, rng=k)
        best = min(best, time.perf_counter() - t0)
    return {"views_per_s": len(cams) / best, "ms_per_view": 1000 * best / len(cams),
            "scene_build_ms": 1000 * build}  # fmt: skip


def bench_samples(view: str, n: int = 10) -> float:
    render_sample(0, "hold", "mug", view, 0, 224)  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        render_sample(0, "pour", "kettle", view, i, 224)
    return 1000 * (time.perf_counter() - t0) / n


def main() -> None:
    asset = five_k_asset()
    rows = []
    for size, bg in ((224, "solid"), (224, "clutter"), (256, "solid")):
        r = bench_views(asset, size, bg)
        rows.append({"size": size, "background": bg, "faces": len(asset.mesh.faces), **r})
    samples = {v: bench_samples(v) for v in ("ego_train", "exo_train")}
    print("| image | background | faces | views/s | ms/view | scene build ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['background']} | {r['faces']} | "
              f"{r['views_per_s']:.1f} | {r['ms_per_view']:.1f} | {r['scene_build_ms']:.1f} |")  # fmt: skip
    print()
    print("| affordance sample (224, incl. asset + actor + maps) | ms |")
    print("|---|---|")
    for k, v in samples.items():
        print(f"| {k} | {v:.0f} |")
    out = Path(__file__).parent / "results" / "render.json"
    write_json(out, {
        "target": ">= 20 views/s at 224x224, 5k faces, one core",
        "views": rows, "affordance_sample_ms": samples,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg": os.getloadavg()},
    })  # fmt: skip
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

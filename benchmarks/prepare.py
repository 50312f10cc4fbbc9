"""Throughput of ``afford prepare correspondence`` (real-asset preparation).

Writes ``--assets`` GLB files (a body with a texture and a handle node in a nested scene graph,
faces from 2k up to 50k), a taxonomy in the official shapes, and prepares them with the
official rig (19 views, 490 px, radius 2) and ``--workers`` processes:

- *labeller excluded*: the ``simulated`` labeller (boxes from the rendered part ids, no model;
  a built-in oracle of the same cost when :mod:`afford.prepare.labelers` is not installed);
- *labeller included*: OWLv2 through transformers, by default a tiny randomly initialised one
  (tests/prepare/tiny_detectors.py: the labeller's pre/post-processing and the pipeline's
  cost, not a real detector's forward pass); ``--owlv2 DIR`` takes a ``save_pretrained``
  folder instead (e.g. google/owlv2-base-patch16-ensemble), ``--no-owlv2`` skips the row.

Reported per row: wall-clock assets per minute, CPU seconds per asset (parent + workers,
robust to a shared machine) and the assets per minute that implies on ``--workers`` dedicated
cores, and the peak resident memory of one worker. Goal: >= 30 assets/min without the labeller.

Run: ``.venv/bin/python benchmarks/prepare.py [--assets 8] [--workers 2] [--owlv2 DIR]``;
prints a markdown table and writes benchmarks/results/prepare.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from afford.data.io import write_json, write_text
from afford.prepare.correspondence import PrepareConfig, prepare_correspondence

RESULTS = Path(__file__).parent / "results"
GOAL = 30.0  # assets per minute, labeller excluded


def _mesh(faces: int, seed: int) -> trimesh.Trimesh:
    """A bumpy ellipsoid of about ``faces`` triangles with a spherical UV map."""
    rng = np.random.default_rng(seed)
    n = max(8, int(np.sqrt(faces / 4)))  # a uv sphere of count [n, n] has ~4 n^2 faces
    m = trimesh.creation.uv_sphere(radius=0.5, count=[n, n])
    v = np.asarray(m.vertices) * rng.uniform(0.6, 1.4, 3)
    v *= 1 + 0.05 * np.sin(7 * v[:, :1]) * np.cos(5 * v[:, 1:2])
    m = trimesh.Trimesh(v, m.faces, process=False)
    d = v / np.linalg.norm(v, axis=1, keepdims=True)
    uv = np.stack([0.5 + np.arctan2(d[:, 1], d[:, 0]) / (2 * np.pi), 0.5 + d[:, 2] / 2], 1)
    tex = (rng.uniform(0, 255, (64, 64, 3))).astype(np.uint8)
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex))
    m.visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
    return m


def write_assets(folder: Path, n: int) -> list[int]:
    """``n`` GLBs: textured body (faces spread 2k..50k) + handle under nested nodes."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = np.linspace(2000, 50000, n).astype(int).tolist()
    for i, f in enumerate(counts):
        scene = trimesh.Scene()
        root = trimesh.transformations.compose_matrix(angles=[0.2 * i, 0.1, 0.3], scale=[1.5] * 3)
        scene.graph.update(frame_from=scene.graph.base_frame, frame_to="root", matrix=root)
        scene.add_geometry(_mesh(f - 512, i), node_name="body", parent_node_name="root")
        handle = trimesh.creation.torus(0.25, 0.05, major_sections=32, minor_sections=8)
        scene.add_geometry(
            handle,
            node_name="handle",
            parent_node_name="root",
            transform=trimesh.transformations.translation_matrix([0.6, 0, 0]),
        )
        (folder / f"{i:08x}---widget.glb").write_bytes(scene.export(file_type="glb"))
    return counts


def write_taxonomy(folder: Path) -> Path:
    (folder / "Objaverse").mkdir(parents=True, exist_ok=True)
    (folder / "action2objects.json").write_text(
        json.dumps({"hold": ["widget"], "pull": ["widget"]})
    )
    (folder / "Objaverse" / "obj2part2function.json").write_text(
        json.dumps({"widget": {"body": ["hold"], "handle": ["pull"]}})
    )
    return folder


class _Oracle:
    """Stand-in of the simulated labeller: the box of the queried parts' pixels."""

    name = "oracle"
    samples = 4

    def for_asset(self, asset_id, category, part_id=None, parts=None):
        def label(image, query, view):
            want = [parts.index(p) for p in query.part.split(" / ")]
            rows, cols = np.nonzero(np.isin(part_id[view], want))
            if rows.size == 0:
                return np.full((4, 4), np.nan)
            box = [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
            return np.tile(box, (4, 1))

        return label


def _run(assets: Path, tax: Path, out: Path, spec: str, workers: int, labelers=None) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = prepare_correspondence(
        assets, tax, spec, out, PrepareConfig(), workers=workers, progress=False,
        labelers=labelers,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    n = summary["prepared"]
    if summary["failed"]:
        raise SystemExit(f"benchmark assets failed: {summary['failures']}")
    rss = r1.ru_maxrss if workers > 1 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "labeller": spec,
        "assets": n,
        "workers": workers,
        "wall_s": round(wall, 1),
        "assets_per_min_wall": round(60 * n / wall, 1),
        "cpu_s_per_asset": round(cpu / n, 2),
        "assets_per_min_dedicated": round(60 * workers * n / cpu, 1),
        "peak_rss_mb_per_worker": round(rss / 1024, 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=16, help="16: 2 workers reach a steady rate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--owlv2", help="an OWLv2 save_pretrained folder (default: tiny random)")
    ap.add_argument("--no-owlv2", action="store_true", help="skip the labeller-included row")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        counts = write_assets(base / "assets", args.assets)
        tax = write_taxonomy(base / "taxonomy")
        try:
            import afford.prepare.labelers  # noqa: F401

            spec, labelers = "simulated", None
        except ModuleNotFoundError:
            spec, labelers = "simulated", _Oracle()
        rows.append(_run(base / "assets", tax, base / "out1", spec, args.workers, labelers))
        recs = json.loads((base / "out1" / "dataset.json").read_text())["assets"]
        counts = sorted(r["source"]["faces"] for r in recs.values())  # as prepared
        if not args.no_owlv2:
            model = args.owlv2
            if model is None:
                sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "prepare"))
                from tiny_detectors import save_tiny_owlv2

                model = save_tiny_owlv2(base / "tiny-owlv2")
            row = _run(base / "assets", tax, base / "out2", f"owlv2:{model}", args.workers)
            row["labeller"] = "owlv2 (tiny random)" if args.owlv2 is None else "owlv2"
            rows.append(row)
    result = {
        "views": 19,
        "image_size": 490,
        "faces": counts,
        "goal_assets_per_min": GOAL,
        "meets_goal": rows[0]["assets_per_min_dedicated"] >= GOAL,
        "machine": platform.processor() or platform.machine(),
        "note": "2 CPU cores shared with other jobs: wall numbers are lower bounds; "
        "'dedicated' = 60 * workers / (CPU s per asset)",
        "rows": rows,
    }
    head = (
        "| labeller | assets | workers | wall s | assets/min (wall) | CPU s/asset | "
        "assets/min (dedicated cores) | peak RSS/worker MB |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['labeller']} | {r['assets']} | {r['workers']} | {r['wall_s']} | "
        f"{r['assets_per_min_wall']} | {r['cpu_s_per_asset']} | {r['assets_per_min_dedicated']} | "
        f"{r['peak_rss_mb_per_worker']:.0f} |\n"
        for r in rows
    )
    table = (
        f"# afford prepare correspondence: throughput\n\n19 views at 490 px, meshes of "
        f"{min(counts)}..{max(counts)} faces (textured GLB, nested nodes). Goal: >= {GOAL:.0f} "
        f"assets/min without the labeller.\n\n{head}{body}"
    )
    print(table)
    write_json(RESULTS / "prepare.json", result)
    write_text(RESULTS / "prepare.md", table)


if __name__ == "__main__":
    main()

"""The Python API at real size: batched grounding, API overhead, correspondence per pair.

Real-size backbones with seeded random weights (no weight file is needed; timing does not
depend on the values): DINO ViT-S/16 + CLIP ViT-B/16 for grounding, DINOv2 ViT-B/14 + CLIP
ViT-B/16 for correspondence, on the CPU with 2 threads. The checkpoints are built here (heads
at their real width, random), written with their backbone records and loaded through
``afford.Grounder`` / ``afford.Corresponder`` exactly as a user would.

* grounding: 32 images (480 x 640) as 32 ``predict`` calls on one image vs one call on the
  list (batch size 8 and 32); and the old CLI's cost model, one model load per image
  (measured load time + single-image call), against one load + one batched call;
* overhead: ``predict`` on numpy images vs the bare forward (CLIP dense + DINO + heads) on
  already preprocessed (B,3,224,224) tensors, same batch of 8;
* correspondence: label transfer of 100 points per pair, and full discovery per pair
  (stride 1 = every crop pixel, and stride 2), features included.

The CPU is shared with other jobs, so times are indicative (best of ``--repeats``).

Run: ``python benchmarks/api.py [--repeats 2]``; writes benchmarks/results/api.json and
prints (and writes) benchmarks/results/api.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import afford  # noqa: E402
from _timing import best_time  # noqa: E402
from afford.backbones import policy  # noqa: E402
from afford.config import from_dict, to_dict  # noqa: E402
from afford.correspondence.config import CorrExperiment  # noqa: E402
from afford.correspondence.train import KIND, build_model, load_encoders  # noqa: E402
from afford.data.io import write_json, write_text  # noqa: E402
from afford.engine import save_checkpoint  # noqa: E402
from afford.grounding.affinity import image_affinity  # noqa: E402
from afford.grounding.build import build_clip, build_dino, with_backbone_records  # noqa: E402
from afford.grounding.config import GroundingExperiment  # noqa: E402
from afford.grounding.model import GroundingModel  # noqa: E402
from afford.grounding.prompts import action_prompt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ["hold", "cut_with", "pour", "drink_with"]
FUNCTIONS = ["pour-with", "grasp", "cut-with"]


def grounding_checkpoint(folder: Path) -> Path:
    raw = {
        "data": {"dataset": "folders"},
        "backbone": {
            "dino": {"variant": "vits16", "weights": "random"},
            "clip": {"variant": "vitb16", "weights": "random"},
        },  # fmt: skip
        "model": {"class_names": CLASSES, "feat_dim": 384},
    }
    exp = from_dict(GroundingExperiment, raw)
    dino, clip = build_dino(exp, "cpu"), build_clip(exp, "cpu")
    model = GroundingModel(exp.model.build())
    cfg = with_backbone_records(to_dict(exp), dino=dino, clip=clip)
    return save_checkpoint(folder / "grounding", model, cfg)


def corr_checkpoint(folder: Path) -> Path:
    raw = {"backbone": {"dinov2": {"variant": "vitb14", "weights": "random"},
                        "clip": {"variant": "vitb16", "weights": "random"}}}  # fmt: skip
    cfg = from_dict(CorrExperiment, raw)
    dino, clip = load_encoders(cfg, "cpu")
    model = build_model(cfg, dino.feat_dim, 512)
    conf = {
        "kind": KIND,
        "model": model.config(),
        "experiment": to_dict(cfg),
        "functions": FUNCTIONS,
        "backbone": {"dinov2": dino.model_id, "clip": clip.model_id},
        "backbones": policy.records(dinov2=dino, clip=clip),
    }
    return save_checkpoint(folder / "correspondence", model, conf)


def photo(rng: np.random.Generator, h: int = 480, w: int = 640) -> np.ndarray:
    """A plain background with a textured ellipse (the foreground estimate finds it)."""
    img = np.full((h, w, 3), 200, np.uint8)
    rr, cc = np.mgrid[:h, :w]
    inside = ((rr - h / 2) / (h / 3)) ** 2 + ((cc - w / 2) / (w / 4)) ** 2 < 1
    img[inside] = rng.integers(0, 120, (int(inside.sum()), 3), dtype=np.uint8)
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.images
    images = [photo(rng) for _ in range(n)]
    out: dict = {"platform": platform.platform(), "threads": args.threads, "images": n,
                 "image_size": [480, 640], "repeats": args.repeats}  # fmt: skip
    with tempfile.TemporaryDirectory() as td:
        gpath = grounding_checkpoint(Path(td))
        t0 = time.perf_counter()
        g = afford.Grounder.from_checkpoint(gpath, device="cpu")
        load_s = time.perf_counter() - t0
        g.predict(images[0], "hold")  # warm-up
        single = best_time(lambda: [g.predict(im, "hold") for im in images], args.repeats)
        batch8 = best_time(lambda: g.predict(images, "hold", batch_size=8), args.repeats)
        batch32 = best_time(lambda: g.predict(images, "hold", batch_size=32), args.repeats)
        # equal results: batched == single
        a = g.predict(images[:3], "hold", batch_size=3)
        diff = max(float(np.abs(x.heatmap - g.predict(im, "hold").heatmap).max())
                   for x, im in zip(a, images[:3]))  # fmt: skip
        per_single, per_batch = single / n, batch8 / n
        cli_single = load_s + per_single  # the old CLI: one load per image
        cli_batch = (load_s + batch8) / n
        out["grounding"] = {
            "load_s": load_s,
            "single_calls_s": single,
            "batch8_s": batch8,
            "batch32_s": batch32,
            "per_image_single_ms": 1e3 * per_single,
            "per_image_batch8_ms": 1e3 * per_batch,
            "per_image_batch32_ms": 1e3 * batch32 / n,
            "speedup_in_process": single / batch8,
            "per_image_one_load_per_image_s": cli_single,
            "per_image_one_load_per_call_s": cli_batch,
            "speedup_vs_one_load_per_image": cli_single / cli_batch,
            "max_abs_diff_batched_vs_single": diff,
        }
        # overhead: predict on numpy images vs the bare forward on preprocessed tensors
        b = 8
        x = torch.rand(b, 3, 224, 224)
        labels = torch.zeros(b, dtype=torch.long)
        prompts = [action_prompt("hold")] * b

        @torch.no_grad()
        def bare():
            s = image_affinity(g.clip, x, prompts)
            return g.model.heatmap(g.dino(x)["keys"], labels, s)

        bare_s = best_time(bare, args.repeats + 1)
        api_s = best_time(lambda: g.predict(images[:b], "hold", batch_size=b), args.repeats + 1)
        out["overhead"] = {"batch": b, "bare_forward_s": bare_s, "predict_s": api_s,
                           "overhead_fraction": api_s / bare_s - 1.0}  # fmt: skip

        cpath = corr_checkpoint(Path(td))
        t0 = time.perf_counter()
        c = afford.Corresponder.from_checkpoint(cpath, device="cpu")
        cload = time.perf_counter() - t0
        ia, ib = photo(rng), photo(rng)[:, ::-1].copy()
        pts = np.stack([rng.uniform(180, 300, 100), rng.uniform(250, 390, 100)], 1)
        c.match(ia, ib, "pour-with", points=pts[:2])  # warm-up
        feats = best_time(lambda: c.features(ia, ib, "pour-with"), args.repeats)
        tr = best_time(lambda: c.match(ia, ib, "pour-with", points=pts), args.repeats)
        tr2 = best_time(lambda: c.match(ia, ib, "pour-with", points=pts, both_directions=True),
                        args.repeats)  # fmt: skip
        d1 = best_time(lambda: c.discover(ia, ib, "pour-with", stride=1), 1)
        d2 = best_time(lambda: c.discover(ia, ib, "pour-with", stride=2), args.repeats)
        out["correspondence"] = {"load_s": cload, "features_pair_s": feats,
                                 "transfer_100_s": tr, "transfer_100_both_s": tr2,
                                 "discover_stride1_s": d1, "discover_stride2_s": d2}  # fmt: skip
    write_json(RESULTS / "api.json", out)
    gr, ov, co = out["grounding"], out["overhead"], out["correspondence"]
    md = "\n".join([
        f"# benchmarks/api.py (CPU, {args.threads} threads, real-size backbones, random weights)",
        "",
        f"Grounding, {n} images of 480 x 640 (DINO ViT-S/16 + CLIP ViT-B/16); model load "
        f"{gr['load_s']:.1f} s.",
        "",
        "| | per image | speed-up |",
        "|---|---|---|",
        f"| {n} single `predict` calls (loaded once) | {gr['per_image_single_ms']:.0f} ms | 1.0x |",
        f"| one `predict` call, batch 8 | {gr['per_image_batch8_ms']:.0f} ms | "
        f"{gr['speedup_in_process']:.2f}x |",
        f"| one `predict` call, batch 32 | {gr['per_image_batch32_ms']:.0f} ms | "
        f"{gr['per_image_single_ms'] / gr['per_image_batch32_ms']:.2f}x |",
        f"| old CLI: one model load per image (load + single call) | "
        f"{gr['per_image_one_load_per_image_s']:.2f} s | 1.0x |",
        f"| new CLI: one load + one batched call (batch 8) | "
        f"{gr['per_image_one_load_per_call_s']:.2f} s | {gr['speedup_vs_one_load_per_image']:.1f}x |",
        "",
        f"Batched vs single heatmaps: max abs difference {gr['max_abs_diff_batched_vs_single']:.1e}.",
        "",
        f"API overhead (batch {ov['batch']}): `predict` on numpy images {ov['predict_s']:.2f} s vs "
        f"bare forward on tensors {ov['bare_forward_s']:.2f} s: "
        f"{100 * ov['overhead_fraction']:+.1f} %.",
        "",
        "Correspondence per pair, 480 x 640 images (DINOv2 ViT-B/14 + CLIP text), features "
        "included:",
        "",
        "| | seconds |",
        "|---|---|",
        f"| dense features of both images | {co['features_pair_s']:.2f} |",
        f"| label transfer of 100 points | {co['transfer_100_s']:.2f} |",
        f"| label transfer of 100 points, both directions | {co['transfer_100_both_s']:.2f} |",
        f"| full discovery, stride 1 (every crop pixel) | {co['discover_stride1_s']:.2f} |",
        f"| discovery, stride 2 | {co['discover_stride2_s']:.2f} |",
        "",
    ])  # fmt: skip
    write_text(RESULTS / "api.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

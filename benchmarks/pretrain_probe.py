"""Do the tiny backbones carry dense signal? Random tiny vs. self-supervised tiny-synth.

Held-out synthetic renders (asset seeds never used by the pre-training renders, every
category, 2 instances each, 4 views each, random lights and backgrounds). Part ids, masks and
surface points are used **only here, for evaluation** (the pre-training never sees them).

Probes (features: DINO = last-block attention keys, the grounding descriptor; DINOv2 = mean of
the L2-normalised last-3-block token maps, the "DINO" row of the correspondence benchmark):

- part mIoU, same instance: nearest-centroid part segmentation of the object pixels of views 1
  and 3 with part centroids (cosine) from views 0 and 2 of the same instance;
- part mIoU, cross instance: centroids from the 4 views of instance A, tested on the 4 views of
  instance B of the same category (part names matched);
- correspondence: pixels of view v (object, visible in view v+1 by the renderer's surface
  points and depth) matched by nearest neighbour (cosine, bilinear features at 224 px) among
  the object pixels of view v+1 (40 deg apart); PCK@{5,10,20} px and the chance level;
- DINO only: fraction of the last block's CLS attention on object patches (vs. object area).

    python benchmarks/pretrain_probe.py [--dino FILE] [--dinov2 FILE] [--instances 2]

Prints a markdown table and writes benchmarks/results/pretrain_probe.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from afford.backbones import load_dino, load_dinov2
from afford.backbones.weights import shipped_weights
from afford.data.io import write_json
from afford.geometry.camera import Camera
from afford.synth import assets as A
from afford.synth.render import BACKGROUNDS, Scene, random_light

PROBE_SEED = 9_100_000
AZ_STEP = 40.0
CAM_DIST = 1.5  # the object fills most of the 224 px frame (as the benchmarks' object crops)
RESULTS = Path(__file__).parent / "results" / "pretrain_probe.json"


def render_probe_set(instances: int, views: int = 4) -> list[dict]:
    """Held-out instances: dict(category, names, rgb (V,224,224,3), part (V,224,224), mask,
    points (V,224,224,3), cams)."""
    out = []
    rng = np.random.default_rng(PROBE_SEED)
    for ci, cat in enumerate(A.CATEGORIES):
        for k in range(instances):
            asset = A.make_asset(cat, PROBE_SEED + 100 * ci + k)
            scene = Scene(asset)
            el = np.deg2rad(rng.uniform(5, 45))
            az0 = rng.uniform(0, 360)
            rec = {"category": cat, "names": [p.name for p in asset.parts]}
            vs = []
            for v in range(views):
                az = np.deg2rad(az0 + AZ_STEP * v)
                eye = CAM_DIST * np.array(
                    [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
                )
                cam = Camera.look_at(eye, fov_deg=35, width=224, height=224)
                bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
                vs.append(scene.render(cam, background=bg, light=random_light(rng), rng=rng))
            rec["rgb"] = np.stack([x.rgb for x in vs])
            rec["part"] = np.stack([x.part_id for x in vs]).astype(np.int64)
            rec["mask"] = np.stack([x.mask for x in vs])
            rec["depth"] = np.stack([x.depth for x in vs])
            rec["points"] = np.stack([x.points for x in vs])
            rec["cams"] = [x.object_camera() for x in vs]
            out.append(rec)
    return out


@torch.no_grad()
def features(model, family: str, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(V,224,224,3) uint8 -> L2-normalised features (V,D,h,w) and DINO CLS attention."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    if family == "dino":
        out = model(x)
        return F.normalize(out["keys"], dim=1), out["cls_attn"].mean(1)
    maps = model(x)
    return F.normalize(torch.stack([F.normalize(m, dim=1) for m in maps]).mean(0), dim=1), None


def upsample(f: torch.Tensor, size: int) -> torch.Tensor:
    return F.normalize(
        F.interpolate(f, size=(size, size), mode="bilinear", align_corners=False), dim=1
    )


def centroid_iou(
    f_lab: torch.Tensor, y_lab: np.ndarray, f_test: torch.Tensor, y_test: np.ndarray
) -> float:
    """Nearest-centroid segmentation. f (V,D,s,s), y (V,s,s) part index (-1 = not object).
    Returns the mean IoU over parts present in the test GT or the prediction (object pixels)."""
    d = f_lab.shape[1]
    fl = f_lab.permute(0, 2, 3, 1).reshape(-1, d)
    yl = torch.from_numpy(y_lab.reshape(-1))
    ft = f_test.permute(0, 2, 3, 1).reshape(-1, d)
    yt = torch.from_numpy(y_test.reshape(-1))
    parts = sorted(set(yl[yl >= 0].tolist()))
    if not parts:
        return float("nan")
    cents = F.normalize(torch.stack([fl[yl == p].mean(0) for p in parts]), dim=1)
    obj = yt >= 0
    pred = torch.tensor(parts)[(ft[obj] @ cents.t()).argmax(1)]
    gt = yt[obj]
    ious = []
    for p in sorted(set(gt.tolist()) | set(pred.tolist())):
        inter = ((pred == p) & (gt == p)).sum().item()
        union = ((pred == p) | (gt == p)).sum().item()
        ious.append(inter / union)
    return float(np.mean(ious))


def correspondences(rec: dict, v: int, w: int, stride: int = 6, tol: float = 0.02):
    """Object pixels of view v (on a stride grid) visible in view w: (src (N,2), dst (N,2))."""
    rows, cols = np.mgrid[stride // 2 : 224 : stride, stride // 2 : 224 : stride]
    rows, cols = rows.ravel(), cols.ravel()
    keep = rec["mask"][v][rows, cols]
    rows, cols = rows[keep], cols[keep]
    pts = rec["points"][v][rows, cols]
    uv, depth = rec["cams"][w].project(pts.astype(np.float64))
    r2, c2 = np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)
    inside = (r2 >= 0) & (r2 < 224) & (c2 >= 0) & (c2 < 224)
    r2c, c2c = np.clip(r2, 0, 223), np.clip(c2, 0, 223)
    vis = inside & rec["mask"][w][r2c, c2c] & (np.abs(rec["depth"][w][r2c, c2c] - depth) < tol)
    src = np.stack([rows, cols], 1)[vis]
    dst = np.stack([uv[:, 1], uv[:, 0]], 1)[vis]
    return src, dst


def match_errors(f: torch.Tensor, rec: dict, v: int, w: int, gen: np.random.Generator):
    """Pixel errors of nearest-neighbour matches v -> w, and of random matches (chance)."""
    src, dst = correspondences(rec, v, w)
    if len(src) == 0:
        return np.zeros(0), np.zeros(0)
    fv, fw = upsample(f[v : v + 1], 224)[0], upsample(f[w : w + 1], 224)[0]
    q = fv[:, src[:, 0], src[:, 1]].t()  # (N, D)
    tr, tc = np.nonzero(rec["mask"][w])
    cand = fw[:, tr, tc]  # (D, M)
    best = (q @ cand).argmax(1).numpy()
    pred = np.stack([tr[best], tc[best]], 1)
    rnd = np.stack([tr, tc], 1)[gen.integers(len(tr), size=len(src))]
    return np.linalg.norm(pred - dst, axis=1), np.linalg.norm(rnd - dst, axis=1)


def probe(name: str, model, family: str, data: list[dict]) -> dict:
    same, cross, errs, chance, attn_obj, area = [], [], [], [], [], []
    gen = np.random.default_rng(0)
    feats = []
    for rec in data:
        f, att = features(model, family, rec["rgb"])
        feats.append(f)
        f56 = upsample(f, 56)
        y56 = rec["part"][:, 2::4, 2::4]
        same.append(centroid_iou(f56[[0, 2]], y56[[0, 2]], f56[[1, 3]], y56[[1, 3]]))
        for v in range(len(rec["rgb"]) - 1):
            e, c = match_errors(f, rec, v, v + 1, gen)
            errs.append(e)
            chance.append(c)
        if att is not None:
            g = att.shape[-1]
            m = F.adaptive_avg_pool2d(torch.from_numpy(rec["mask"]).float()[:, None], g)[:, 0]
            attn_obj.append(float(((att * m).sum((1, 2)) / att.sum((1, 2))).mean()))
            area.append(float(m.mean()))
    # cross instance: consecutive records of the same category (A -> B)
    for i in range(0, len(data) - 1):
        a, b = data[i], data[i + 1]
        if a["category"] != b["category"]:
            continue
        fa, fb = upsample(feats[i], 56), upsample(feats[i + 1], 56)
        ya, yb = a["part"][:, 2::4, 2::4], b["part"][:, 2::4, 2::4]
        remap = np.array([b["names"].index(n) for n in a["names"]] + [-1])
        cross.append(centroid_iou(fa, remap[ya], fb, yb))
    e, c = np.concatenate(errs), np.concatenate(chance)
    res = {
        "backbone": name,
        "part_miou_same_instance": float(np.nanmean(same)),
        "part_miou_cross_instance": float(np.nanmean(cross)),
        "n_matches": int(len(e)),
    }
    for k in (5, 10, 20):
        res[f"pck@{k}"] = float((e <= k).mean())
        res[f"chance_pck@{k}"] = float((c <= k).mean())
    if attn_obj:
        res["cls_attn_on_object"] = float(np.mean(attn_obj))
        res["object_area"] = float(np.mean(area))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dino", default=None, help="tiny-synth DINO file (default: shipped)")
    ap.add_argument("--dinov2", default=None, help="tiny-synth DINOv2 file (default: shipped)")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    data = render_probe_set(args.instances)
    models = []
    for fam, loader, path in (("dino", load_dino, args.dino), ("dinov2", load_dinov2, args.dinov2)):
        models.append((f"{fam} tiny (random)", loader(variant="tiny"), fam))
        if path is None and not shipped_weights(fam).is_file():
            print(f"note: no tiny-synth {fam} weights shipped; pass --{fam} FILE to probe one")
            continue
        models.append((f"{fam} tiny-synth", loader(weights=path, variant="tiny-synth"), fam))
    rows = [probe(name, m, fam, data) for name, m, fam in models]
    cols = [
        "part_miou_same_instance",
        "part_miou_cross_instance",
        "pck@5",
        "pck@10",
        "pck@20",
        "chance_pck@10",
        "cls_attn_on_object",
        "object_area",
    ]
    print("| backbone | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in rows:
        vals = [f"{r[c]:.3f}" if c in r else "-" for c in cols]
        print(f"| {r['backbone']} | " + " | ".join(vals) + " |")
    out = {
        "instances_per_category": args.instances,
        "categories": len(A.CATEGORIES),
        "views_per_instance": 4,
        "azimuth_step_deg": AZ_STEP,
        "model_ids": {name: m.model_id for name, m, _ in models},
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(args.out, out)
    print(json.dumps({"wrote": args.out, "seconds": out["seconds"]}))


if __name__ == "__main__":
    main()

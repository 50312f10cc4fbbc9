"""A tiny hand-made dataset in the correspondence format (docs/correspondence-format.md).

Each asset is a flat rectangle seen from the front; view k places it with scale ``s_k`` and
offset ``(r_k, c_k)``. The object coordinates of pixel ``(r, c)`` are ``u = (c - c_k) / (s_k w)``,
``v = (r - r_k) / (s_k h)`` in [0, 1), and the object is painted with the colour
``(30 + 200 u, 30 + 200 v, tint)``, so corresponding pixels have the same colour in every view
(an independent check of correspondences). Functions: "hold" = part ``u < 0.35`` ("handle"),
"pour-with" = part ``u > 0.7`` ("spout").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from afford.data.crops import crop_array, crop_to_view, square_crop_box, view_to_crop
from afford.data.io import write_image, write_json, write_npz

FUNCTIONS = ["hold", "pour-with"]
SIZE = 96
SCALES = (1.0, 1.25, 0.8, 1.1)
OFFSETS = ((20, 10), (12, 30), (30, 24), (8, 16))


def uv_of(r, c, scale, off, hw):
    return (c - off[1]) / (scale * hw[1]), (r - off[0]) / (scale * hw[0])


def render(hw, scale, off, tint):
    rr, cc = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    u, v = uv_of(rr, cc, scale, off, hw)
    mask = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    rgb = np.full((SIZE, SIZE, 3), 20, np.uint8)
    col = np.stack([30 + 200 * u, 30 + 200 * v, np.full_like(u, tint)], -1)
    rgb[mask] = np.clip(col[mask], 0, 255).astype(np.uint8)
    part_id = np.full((SIZE, SIZE), -1, np.int16)
    part_id[mask] = 0
    part_id[mask & (u < 0.35)] = 1
    part_id[mask & (u > 0.7)] = 2
    return rgb, mask, part_id, u, v


def write_tiny_dataset(root, n_train=4, n_eval=2, n_views=4, invalid=((0, 2, 0),)) -> Path:
    """Write the dataset; ``invalid`` lists (asset, view, function) pseudo labels marked invalid."""
    root = Path(root)
    assets, splits = {}, {"train": [], "val": [], "test": []}
    geom = {}
    n = n_train + n_eval
    for a in range(n):
        cat = ["mug", "kettle"][a % 2]
        aid = f"{cat}_{a:03d}"
        split = "train" if a < n_train else "test"
        splits[split].append(aid)
        hw = (24 + 3 * (a % 3), 30 + 2 * a)
        tint = 60 + 30 * a
        rgbs, masks, pids, boxes, uvs = [], [], [], [], []
        for k in range(n_views):
            rgb, mask, pid, u, v = render(hw, SCALES[k], OFFSETS[k], tint)
            p = f"assets/{aid}/rgb/{k:02d}.png"
            write_image(root / p, rgb)
            rgbs.append(p)
            masks.append(mask)
            pids.append(pid)
            boxes.append(square_crop_box(mask))
            uvs.append((u, v))
        pid = np.stack(pids)
        gt = np.stack([pid == 1, pid == 2], axis=1)  # (N,F,H,W)
        valid = np.ones((n_views, 2), bool)
        for ia, iv, fi in invalid:
            if ia == a:
                valid[iv, fi] = False
        pseudo = gt & valid[:, :, None, None]
        eye = np.tile(np.eye(3), (n_views, 1, 1))
        K = np.tile(np.array([[100.0, 0, 48], [0, 100.0, 48], [0, 0, 1]]), (n_views, 1, 1))
        write_npz(
            root / f"assets/{aid}/views.npz",
            K=K,
            R=eye,
            t=np.tile([0.0, 0.0, 2.0], (n_views, 1)),
            mask=np.stack(masks),
            part_id=pid,
            gt_mask=gt,
            pseudo_mask=pseudo,
            pseudo_valid=valid,
            boxes=np.full((n_views, 2, 4, 4), np.nan, np.float32),
            crop_box=np.stack(boxes).astype(np.int32),
        )
        pairs, offs, src, dst, part = [], [0], [], [], []
        for i in range(n_views):
            rr, cc = np.nonzero(masks[i])
            for j in range(n_views):
                if i == j:
                    continue
                u, v = uv_of(rr, cc, SCALES[i], OFFSETS[i], hw)
                dr = OFFSETS[j][0] + v * SCALES[j] * hw[0]
                dc = OFFSETS[j][1] + u * SCALES[j] * hw[1]
                # the format promises dst lands on an object pixel of view j
                ok = masks[j][
                    np.rint(dr).astype(int).clip(0, SIZE - 1),
                    np.rint(dc).astype(int).clip(0, SIZE - 1),
                ]
                pairs.append((i, j))
                src.append(np.stack([rr[ok], cc[ok]], 1))
                dst.append(np.stack([dr[ok], dc[ok]], 1))
                part.append(pid[i][rr[ok], cc[ok]])
                offs.append(offs[-1] + int(ok.sum()))
        write_npz(
            root / f"assets/{aid}/multiview.npz",
            view_pairs=np.asarray(pairs, np.int32),
            offsets=np.asarray(offs, np.int64),
            src=np.concatenate(src).astype(np.float32),
            dst=np.concatenate(dst).astype(np.float32),
            part=np.concatenate(part).astype(np.int16),
        )
        geom[aid] = (hw, boxes, masks, pid)
        assets[aid] = {
            "category": cat,
            "split": split,
            "seed": a,
            "n_views": n_views,
            "image_size": [SIZE, SIZE],
            "rgb": rgbs,
            "views": f"assets/{aid}/views.npz",
            "multiview": f"assets/{aid}/multiview.npz",
            "parts": ["body", "handle", "spout"],
            "functions": FUNCTIONS,
            "function_parts": {"hold": ["handle"], "pour-with": ["spout"]},
        }
    # evaluation pairs: eval asset 0 view 0 -> eval asset 1 view 1 (and reverse roles)
    ev = splits["val"] + splits["test"]
    pairs_meta = []
    for n_pair, (sa, ta) in enumerate([(ev[0], ev[1]), (ev[1], ev[0])]):
        (hw1, b1, m1, p1), (hw2, b2, m2, p2) = geom[sa], geom[ta]
        sv, tv = 0, 1
        crop_part1 = _crop_bool(p1[sv] == 2, b1[sv])
        pts1 = np.argwhere(crop_part1)[::7]
        view1 = crop_to_view(pts1, b1[sv])
        u, v = uv_of(view1[:, 0], view1[:, 1], SCALES[sv], OFFSETS[sv], hw1)
        view2 = np.stack(
            [OFFSETS[tv][0] + v * SCALES[tv] * hw2[0], OFFSETS[tv][1] + u * SCALES[tv] * hw2[1]], 1
        )
        pts2 = np.clip(np.rint(view_to_crop(view2, b2[tv])), 0, 223).astype(np.int32)
        f = f"eval/p{n_pair:05d}.npz"
        write_npz(
            root / f,
            points1=pts1.astype(np.int32),
            points2=pts2,
            mask1=_crop_bool(m1[sv], b1[sv]),
            mask2=_crop_bool(m2[tv], b2[tv]),
            part_mask1=crop_part1,
            part_mask2=_crop_bool(p2[tv] == 2, b2[tv]),
            crop_box1=b1[sv],
            crop_box2=b2[tv],
            T=np.eye(4),
        )
        pairs_meta.append(
            {
                "id": f"p{n_pair:05d}",
                "split": assets[sa]["split"],
                "function": "pour-with",
                "source": {"asset": sa, "view": sv},
                "target": {"asset": ta, "view": tv},
                "cross_category": assets[sa]["category"] != assets[ta]["category"],
                "n_points": int(len(pts1)),
                "file": f,
            }
        )
    write_json(
        root / "eval_pairs.json",
        {
            "format": "afford-correspondence-eval",
            "format_version": 1,
            "crop_size": 224,
            "pairs": pairs_meta,
        },
    )
    write_json(
        root / "dataset.json",
        {
            "format": "afford-correspondence",
            "format_version": 1,
            "source": "tiny-test",
            "crop": {"scale": 1.2, "size": 224},
            "categories": ["kettle", "mug"],
            "functions": FUNCTIONS,
            "splits": splits,
            "eval_pairs": "eval_pairs.json",
            "assets": assets,
        },
    )
    return root


def _crop_bool(mask, box):
    return crop_array(mask, box, 224, fill=False)

"""Files in, files out: what ``afford ground`` and ``afford correspond`` do (one model load
per call).

Per input the folder ``--out`` gets ``<stem>.png`` (the overlay), ``<stem>.json`` (peak,
heatmap statistics or matched coordinates and scores, the checkpoint and backbones used) and
``<stem>.npy`` (grounding: the (H,W) float32 heatmap at the image's resolution; correspondence:
the (N,5) float64 matches ``[src_row, src_col, tgt_row, tgt_col, score]``), plus
``results.json`` listing every input. An ``--out`` ending in ``.png`` (one input only) keeps
the single-file form: that png (grounding: the grey heatmap, and ``<stem>_overlay.png``) with
the ``.json`` and ``.npy`` beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from afford.api.correspondence import Corresponder
from afford.api.grounding import Grounder
from afford.api.images import to_mask, to_rgb
from afford.data.io import atomic_path, output_dir, read_image, write_image, write_json
from afford.errors import DataError, UsageError
from afford.viz import heatmap_to_uint8, image_grid, overlay_heatmap

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def expand_inputs(items: Iterable[str | os.PathLike], arg: str = "IMAGES") -> list[Path]:
    """Files as given, folders as their images (sorted, not recursive); DataError for a
    missing path or a folder without images."""
    out: list[Path] = []
    for it in items:
        p = Path(it).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{arg}: folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{arg}: {p} does not exist")
    if not out:
        raise UsageError(f"{arg}: no input image given")
    return out


def check_images(paths: Sequence[Path]) -> None:
    """Decode every input once before anything is written: a broken file late in a folder
    is a DataError naming it, not a half-written output folder."""
    for p in paths:
        to_rgb(p, str(p))


def stems(paths: Sequence[Path]) -> list[str]:
    """Output names: the file stems, prefixed by the input index where two would collide."""
    names = [p.stem for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{i:04d}_{n}" for i, n in enumerate(names)]


def _write_npy(path: Path, arr: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)
    return path


def _single_png(out: Path | None, n: int, overwrite: bool = False, arg: str = "--out") -> bool:
    if out is not None and out.suffix.lower() == ".png":
        if n != 1:
            raise UsageError(f"{arg} {out}: a .png names one output; give a folder for {n} inputs")
        if out.exists() and not overwrite:
            raise UsageError(f"{arg} {out}: the file exists; pass --overwrite to replace it")
        return True
    return False


def ground_files(
    inputs: Sequence[str | os.PathLike],
    action: str,
    *,
    checkpoint: str | os.PathLike = "demo",
    out: str | os.PathLike = "afford-ground",
    batch_size: int = 8,
    device: str = "auto",
    overwrite: bool = False,
    allow_backbone_mismatch: bool = False,
) -> dict[str, Any]:
    """Ground ``action`` on every input image; returns the ``results.json`` dict."""
    paths = expand_inputs(inputs)
    out = Path(out)
    single = _single_png(out, len(paths), overwrite)
    if not single:
        output_dir(out, overwrite=overwrite)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {batch_size!r}")
    check_images(paths)
    t0 = time.perf_counter()
    g = Grounder.from_checkpoint(checkpoint, device=device,
                                 allow_backbone_mismatch=allow_backbone_mismatch)  # fmt: skip
    if action not in g.actions:
        raise UsageError(f"--action {action!r} is not an affordance of this checkpoint; known "
                         f"actions: {', '.join(g.actions)}")  # fmt: skip
    load_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    names = stems(paths)
    t1 = time.perf_counter()
    for s in range(0, len(paths), batch_size):
        chunk = paths[s : s + batch_size]
        images = [to_rgb(p, str(p)) for p in chunk]
        for p, name, img, res in zip(chunk, names[s : s + batch_size], images,
                                     g.predict(images, action, batch_size=batch_size)):  # fmt: skip
            if single:
                files = {
                    "heatmap_png": write_image(out, heatmap_to_uint8(res.grid, img.shape[:2])),
                    "overlay": write_image(
                        out.with_name(f"{out.stem}_overlay.png"),
                        image_grid(
                            [img, res.overlay(), overlay_heatmap(img, res.affinity)],
                            ncols=3,
                            titles=["image", action, "CLIP affinity"],
                        ),
                    ),  # fmt: skip
                }
                base = out.with_suffix("")
            else:
                base = out / name
                files = {"overlay": write_image(base.with_suffix(".png"), res.overlay())}
            files["heatmap_npy"] = _write_npy(base.with_suffix(".npy"), res.heatmap)
            row = {"image": str(p), **res.to_json(),
                   "files": {k: str(v) for k, v in files.items()}}  # fmt: skip
            write_json(base.with_suffix(".json"), row)
            rows.append(row)
    summary = {
        "task": "grounding",
        "action": action,
        "n": len(rows),
        **g.info,
        "timing": {"load_s": load_s, "predict_s": time.perf_counter() - t1},
        "results": rows,
    }
    if not single:
        write_json(out / "results.json", summary)
    return summary


def _mask_file(path: str | os.PathLike | None, hw, name: str):
    return None if path is None else to_mask(read_image(path).max(axis=2), hw, name)


def correspond_files(
    image_a: str | os.PathLike,
    targets: Sequence[str | os.PathLike],
    function: str,
    *,
    corresponder: Corresponder,
    out: str | os.PathLike = "afford-correspond",
    points: Any = None,
    top: int = 30,
    stride: int = 2,
    both_directions: bool = False,
    mask_a: str | os.PathLike | None = None,
    mask_b: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Match ``image_a`` against every target; returns the ``results.json`` dict."""
    src = expand_inputs([image_a], "IMG1")
    if len(src) != 1:
        raise UsageError(f"IMG1: {image_a} must be one image file, not a folder")
    paths = expand_inputs(targets, "IMG2")
    out = Path(out)
    single = _single_png(out, len(paths), overwrite)
    if not single:
        output_dir(out, overwrite=overwrite)
    if mask_b is not None and len(paths) != 1:
        raise UsageError("--mask2 needs exactly one target image")
    check_images([*src, *paths])
    a = to_rgb(src[0], str(src[0]))
    ma = _mask_file(mask_a, a.shape[:2], "--mask1")
    rows: list[dict[str, Any]] = []
    t1 = time.perf_counter()
    for p, name in zip(paths, stems(paths)):
        b = to_rgb(p, str(p))
        masks = (ma, _mask_file(mask_b, b.shape[:2], "--mask2"))
        if points is not None:
            m = corresponder.match(a, b, function, points=points, masks=masks,
                                   both_directions=both_directions)  # fmt: skip
        else:
            m = corresponder.discover(a, b, function, top_k=top, masks=masks, stride=stride)
        base = out.with_suffix("") if single else out / f"{src[0].stem}__{name}"
        png = out if single else base.with_suffix(".png")
        table = np.concatenate([m.source_points, m.target_points, m.scores[:, None]], axis=1)
        files = {
            "overlay": write_image(png, m.overlay()),
            "matches_npy": _write_npy(base.with_suffix(".npy"), table.astype(np.float64)),
        }
        row = {"image_a": str(src[0]), "image_b": str(p), **m.to_json(),
               "files": {k: str(v) for k, v in files.items()}}  # fmt: skip
        write_json(base.with_suffix(".json"), row)
        rows.append(row)
    summary = {
        "task": "correspondence",
        "function": function,
        "n": len(rows),
        **corresponder.info,
        "timing": {"match_s": time.perf_counter() - t1},
        "results": rows,
    }
    if not single:
        write_json(out / "results.json", summary)
    return summary

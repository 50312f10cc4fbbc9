"""Figures shared by both tasks: heatmap overlays, match drawings, PR and loss curves, grids.

Headless: figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (pyplot and
the global backend are never touched). Images are uint8 RGB (H,W,3); points are (row, col).
Every file is written atomically (:func:`afford.data.io.atomic_path`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from afford.data.io import atomic_path
from afford.errors import AffordError

GREEN = (0, 200, 0)
RED = (230, 0, 0)
YELLOW = (255, 220, 0)
_X_KEYS = ("step", "epoch")
_NOT_LOSSES = {"step", "epoch", "lr", "time", "seconds", "elapsed"}


def _check_rgb(image: Any, name: str, fn: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise AffordError(f"{fn}: `{name}` must be a uint8 image, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise AffordError(f"{fn}: `{name}` must be an (H,W,3) RGB image, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


def heatmap_to_uint8(heat: Any, size: int | Sequence[int] | None = None) -> np.ndarray:
    """Min-max normalise a 2-D heatmap to uint8 [0, 255], bilinearly resized to ``size``.

    Args:
        heat: (h,w) float map, any range (a constant map gives zeros).
        size: output (H,W) or an int for a square; None keeps (h,w).

    Returns:
        (H,W) uint8.
    """
    arr = np.asarray(heat, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise AffordError(f"heatmap_to_uint8: `heat` must be a 2-D map, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise AffordError("heatmap_to_uint8: `heat` contains NaN or inf values")
    if size is not None:
        h, w = _size_hw(size)
        if (h, w) != arr.shape:
            arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.round(arr * 255.0).astype(np.uint8)


def colorize(heat_u8: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Map a (H,W) uint8 map through a matplotlib colormap -> (H,W,3) uint8."""
    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise AffordError(f"unknown colormap {cmap!r} (try 'jet', 'viridis', 'inferno')") from exc
    lut = np.round(cm(np.arange(256) / 255.0)[:, :3] * 255.0).astype(np.uint8)  # (256,3)
    return lut[heat_u8]


def overlay_heatmap(image: Any, heat: Any, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped heatmap (any size, resized bilinearly) over an image.

    Args:
        image: (H,W,3) uint8 RGB.
        heat: (h,w) float map, any range (min-max normalised).
        alpha: weight of the heatmap colour, in [0, 1].
        cmap: matplotlib colormap name.

    Returns:
        (H,W,3) uint8: ``(1 - alpha) * image + alpha * colour(heat)``.
    """
    img = _check_rgb(image, "image", "overlay_heatmap")
    if not 0.0 <= alpha <= 1.0:
        raise AffordError(f"overlay_heatmap: `alpha` must be in [0, 1], got {alpha}")
    color = colorize(heatmap_to_uint8(heat, img.shape[:2]), cmap)
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * color.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _check_pts(pts: Any, name: str) -> np.ndarray:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise AffordError(f"draw_matches: `{name}` must be (N,2) (row, col), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise AffordError(f"draw_matches: `{name}` contains NaN or inf values")
    return arr


def draw_matches(
    img1: Any,
    img2: Any,
    pts1: Any,
    pts2: Any,
    correct: Any = None,
    color: tuple[int, int, int] = YELLOW,
    thickness: int = 1,
    radius: int = 2,
) -> np.ndarray:
    """Draw point matches between two images placed side by side.

    Args:
        img1, img2: (H1,W1,3), (H2,W2,3) uint8 RGB (grey (H,W) accepted).
        pts1, pts2: (N,2) matched points (row, col) in img1 / img2 pixels.
        correct: optional (N,) bool: green lines for correct, red for wrong; None draws every
            match in ``color``.
        color: RGB colour when ``correct`` is None.
        thickness: line width in pixels.
        radius: end-point dot radius (0: no dots).

    Returns:
        (max(H1,H2), W1+W2, 3) uint8; img2 is shifted right by W1.
    """
    a = _check_rgb(img1, "img1", "draw_matches")
    b = _check_rgb(img2, "img2", "draw_matches")
    p1, p2 = _check_pts(pts1, "pts1"), _check_pts(pts2, "pts2")
    if p1.shape != p2.shape:
        raise AffordError(f"draw_matches: `pts1` {p1.shape} and `pts2` {p2.shape} differ")
    n = p1.shape[0]
    if correct is not None:
        correct = np.asarray(correct).reshape(-1)
        if correct.shape[0] != n:
            raise AffordError(f"draw_matches: `correct` has {correct.shape[0]} entries for {n}")
        colors = np.where(correct.astype(bool)[:, None], GREEN, RED)
    else:
        colors = np.tile(np.asarray(color), (n, 1))
    h = max(a.shape[0], b.shape[0])
    w1 = a.shape[1]
    canvas = np.zeros((h, w1 + b.shape[1], 3), dtype=np.uint8)
    canvas[: a.shape[0], :w1] = a
    canvas[: b.shape[0], w1:] = b
    # cv2 takes (x, y) = (col, row) integer pixel centres
    xy1 = np.round(p1[:, ::-1]).astype(np.int64)
    xy2 = np.round(p2[:, ::-1]).astype(np.int64) + np.array([w1, 0])
    for (x1, y1), (x2, y2), c in zip(xy1.tolist(), xy2.tolist(), colors.tolist()):
        cv2.line(canvas, (x1, y1), (x2, y2), tuple(int(v) for v in c), int(thickness))
        if radius > 0:
            cv2.circle(canvas, (x1, y1), int(radius), tuple(int(v) for v in c), -1)
            cv2.circle(canvas, (x2, y2), int(radius), tuple(int(v) for v in c), -1)
    return canvas


def image_grid(
    images: Sequence[Any],
    ncols: int,
    titles: Sequence[str] | None = None,
    pad: int = 4,
    background: int = 255,
) -> np.ndarray:
    """Contact sheet: images in a grid of ``ncols`` columns (cells of the largest size).

    Args:
        images: uint8 RGB (H,W,3) or grey (H,W) images, any sizes (top-left aligned in cells).
        ncols: number of columns.
        titles: optional caption per image, written in a strip above it.
        pad: pixels between cells and around the sheet.
        background: grey level of the padding.

    Returns:
        (rows*(cell_h+title_h+pad)+pad, ncols*(cell_w+pad)+pad, 3) uint8.
    """
    if len(images) == 0:
        raise AffordError("image_grid: no images given")
    if int(ncols) < 1:
        raise AffordError(f"image_grid: `ncols` must be >= 1, got {ncols}")
    if titles is not None and len(titles) != len(images):
        raise AffordError(f"image_grid: {len(titles)} titles for {len(images)} images")
    imgs = [_check_rgb(im, f"images[{i}]", "image_grid") for i, im in enumerate(images)]
    ncols = min(int(ncols), len(imgs))
    nrows = -(-len(imgs) // ncols)
    ch = max(im.shape[0] for im in imgs)
    cw = max(im.shape[1] for im in imgs)
    th = 16 if titles is not None else 0
    sheet = np.full(
        (nrows * (ch + th + pad) + pad, ncols * (cw + pad) + pad, 3), background, np.uint8
    )
    for n, im in enumerate(imgs):
        r, c = divmod(n, ncols)
        y = pad + r * (ch + th + pad)
        x = pad + c * (cw + pad)
        if titles is not None:
            cv2.putText(
                sheet,
                str(titles[n]),
                (x, y + th - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        sheet[y + th : y + th + im.shape[0], x : x + im.shape[1]] = im
    return sheet


def new_figure(width: float = 5.0, height: float = 4.0) -> Any:
    """A headless matplotlib Figure (Agg canvas; no pyplot state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Atomically save a matplotlib figure (format from the suffix: png, pdf, svg)."""
    path = Path(path)
    if not path.suffix:
        raise AffordError(f"save_figure: {path} needs a suffix (.png, .pdf, .svg)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:].lower())
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # free figures made with pyplot; ours never registered there
        plt.close(fig)
    return path


def _curve_xy(value: Any, label: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, Mapping):
        if "recall" not in value or "precision" not in value:
            raise AffordError(f"plot_pr_curves: curve {label!r} needs 'recall' and 'precision'")
        rec, prec = value["recall"], value["precision"]
    else:
        rec, prec = value
    rec = np.asarray(rec, dtype=np.float64).reshape(-1)
    prec = np.asarray(prec, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise AffordError(
            f"plot_pr_curves: curve {label!r} has {rec.size} recall, {prec.size} precision values"
        )
    return rec, prec


def plot_pr_curves(
    curves: Mapping[str, Any], path: str | os.PathLike, title: str = "Precision-recall"
) -> Path:
    """Plot precision-recall curves, one line per label, and save them atomically.

    Args:
        curves: label -> (recall, precision) arrays, or a dict with "recall"/"precision"
            (e.g. ``discovery(...)["curves"][k]``).
        path: output image path (.png/.pdf/.svg).
        title: figure title.
    """
    if len(curves) == 0:
        raise AffordError("plot_pr_curves: no curves given")
    fig = new_figure(5.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for label, value in curves.items():
        rec, prec = _curve_xy(value, str(label))
        ax.plot(rec, prec, label=str(label), linewidth=1.5)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def plot_loss_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    keys: Sequence[str] | None = None,
    title: str = "Training",
    logy: bool = False,
) -> Path:
    """Plot loss curves from a training history and save them atomically.

    Args:
        history: rows like ``{"epoch": 1, "step": 10, "total": 0.7, "val_kld": 1.2}``. The
            x axis is "step" when every row has it, else "epoch", else the row index.
        path: output image path.
        keys: series to plot; default every numeric key except step/epoch/lr/time. A key
            missing from some rows is plotted over the rows that have it.
        title: figure title.
        logy: logarithmic y axis.
    """
    if len(history) == 0:
        raise AffordError("plot_loss_curves: empty history")
    xkey = next((k for k in _X_KEYS if all(k in row for row in history)), None)
    if keys is None:
        seen: dict[str, None] = {}
        for row in history:
            for k, v in row.items():
                if k not in _NOT_LOSSES and isinstance(v, int | float | np.number):
                    seen[k] = None
        keys = list(seen)
    if len(keys) == 0:
        raise AffordError("plot_loss_curves: no numeric loss keys in the history")
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for k in keys:
        rows = [(n, row) for n, row in enumerate(history) if k in row]
        if not rows:
            raise AffordError(f"plot_loss_curves: key {k!r} is in no history row")
        x = [float(row[xkey]) if xkey else float(n) for n, row in rows]
        y = [float(row[k]) for _, row in rows]
        ax.plot(x, y, label=k, linewidth=1.2, marker="o" if len(rows) < 30 else None)
    ax.set_xlabel(xkey or "row")
    ax.set_ylabel("value")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)

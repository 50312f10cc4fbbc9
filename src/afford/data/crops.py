"""Square object crops (REFERENCE_NOTES C: a square of 1.2 x the object's longer side around
the object, resized to 224 x 224) and the coordinate maps between a view and its crop.

Conventions (docs/correspondence-format.md): points are ``(row, col)`` with pixel *centres* on
integers; a crop box is ``[top, left, size]`` (int) covering view pixels ``top .. top+size-1``
(rows) and ``left .. left+size-1`` (cols), possibly past the image border (filled with a
constant).  With crop side ``S``::

    row_crop = (row - top + 0.5) * S / size - 0.5        (view -> crop)
    row      = (row_crop + 0.5) * size / S + top - 0.5   (crop -> view)

(the same for columns with ``left``), i.e. the half-pixel-centre convention of OpenCV's resize.
"""

from __future__ import annotations

import cv2
import numpy as np

from afford.errors import AffordError

__all__ = [
    "square_crop_box",
    "view_to_crop",
    "crop_to_view",
    "crop_array",
    "crop_image",
]


def square_crop_box(mask: np.ndarray, scale: float = 1.2) -> np.ndarray:
    """Square crop box around the object of a mask.

    Args:
        mask: (H, W) bool object mask.
        scale: box side / the longer side of the mask's bounding box (1.2 in the paper).

    Returns:
        (3,) int32 ``[top, left, size]``: the square centred on the bounding box centre with
        ``size = max(1, round(scale * longer side))``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise AffordError(f"square_crop_box: mask must be (H,W), got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise AffordError("square_crop_box: the object mask is empty (no object in this view)")
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    longer = max(r1 - r0 + 1, c1 - c0 + 1)
    size = max(1, int(round(scale * longer)))
    # the box's continuous extent is [top - 0.5, top + size - 0.5); centre it on the bbox centre
    top = int(np.floor((r0 + r1) / 2.0 + 0.5 - size / 2.0 + 0.5))
    left = int(np.floor((c0 + c1) / 2.0 + 0.5 - size / 2.0 + 0.5))
    return np.array([top, left, size], dtype=np.int32)


def _check_box(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box)
    if box.shape != (3,) or box[2] <= 0:
        raise AffordError(f"crop box must be [top, left, size] with size > 0, got {box.tolist()}")
    return box


def view_to_crop(points: np.ndarray, box: np.ndarray, out_size: int = 224) -> np.ndarray:
    """Map (N, 2) ``(row, col)`` view coordinates into crop coordinates (float64)."""
    top, left, size = _check_box(box).astype(np.float64)
    pts = np.asarray(points, dtype=np.float64)
    s = out_size / size
    return np.stack([(pts[..., 0] - top + 0.5) * s - 0.5, (pts[..., 1] - left + 0.5) * s - 0.5], -1)


def crop_to_view(points: np.ndarray, box: np.ndarray, out_size: int = 224) -> np.ndarray:
    """Map (N, 2) ``(row, col)`` crop coordinates back into view coordinates (float64)."""
    top, left, size = _check_box(box).astype(np.float64)
    pts = np.asarray(points, dtype=np.float64)
    s = size / out_size
    return np.stack([(pts[..., 0] + 0.5) * s + top - 0.5, (pts[..., 1] + 0.5) * s + left - 0.5], -1)


def crop_array(
    array: np.ndarray, box: np.ndarray, out_size: int = 224, fill: float | int | bool = 0
) -> np.ndarray:
    """Nearest-neighbour crop of any per-pixel array (masks, part ids, depth, surface points).

    Crop pixel ``(i, j)`` takes the view pixel nearest to its centre mapped into the view
    (``crop_to_view``); view pixels outside the image give ``fill``.

    Args:
        array: (H, W) or (H, W, C) of any dtype.
        box: ``[top, left, size]``.
        out_size: crop side S.
        fill: value outside the image (0/False for masks, inf for depth, nan for points).

    Returns:
        (S, S) or (S, S, C), same dtype as ``array``.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise AffordError(f"crop_array: expected (H,W) or (H,W,C), got shape {array.shape}")
    top, left, size = _check_box(box).astype(np.float64)
    h, w = array.shape[:2]
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * (size / out_size) - 0.5
    rows = np.floor(centres + top + 0.5).astype(np.int64)
    cols = np.floor(centres + left + 0.5).astype(np.int64)
    r_ok = (rows >= 0) & (rows < h)
    c_ok = (cols >= 0) & (cols < w)
    out = array[np.clip(rows, 0, h - 1)[:, None], np.clip(cols, 0, w - 1)[None, :]]
    outside = ~(r_ok[:, None] & c_ok[None, :])
    if outside.any():
        out = out.copy()
        out[outside] = fill
    return out


def crop_image(
    image: np.ndarray, box: np.ndarray, out_size: int = 224, fill: int = 0
) -> np.ndarray:
    """Crop and resize a uint8 (H, W, 3) image to (S, S, 3) (area when shrinking, else bilinear).

    The box is padded with ``fill`` where it leaves the image, then resized with OpenCV
    (half-pixel centres, consistent with ``view_to_crop``).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise AffordError(f"crop_image: expected uint8 (H,W,C), got {image.dtype} {image.shape}")
    top, left, size = (int(v) for v in _check_box(box))
    h, w = image.shape[:2]
    pad_t, pad_l = max(0, -top), max(0, -left)
    pad_b, pad_r = max(0, top + size - h), max(0, left + size - w)
    if pad_t or pad_l or pad_b or pad_r:
        image = np.pad(
            image, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)), mode="constant", constant_values=fill
        )
    patch = image[top + pad_t : top + pad_t + size, left + pad_l : left + pad_l + size]
    if size == out_size:
        return np.ascontiguousarray(patch)
    interp = cv2.INTER_AREA if size > out_size else cv2.INTER_LINEAR
    return cv2.resize(patch, (out_size, out_size), interpolation=interp)

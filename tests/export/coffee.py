"""The coffee photo at the models' input size, for the export and web-demo tests."""

from __future__ import annotations

import numpy as np


def coffee_224() -> np.ndarray:
    """skimage's coffee photo, centre-cropped to a square and resized to 224 x 224 (uint8)."""
    import skimage.data
    from PIL import Image

    img = skimage.data.coffee()  # (400, 600, 3)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = img[top : top + s, left : left + s]
    return np.array(Image.fromarray(sq).resize((224, 224), Image.BILINEAR))

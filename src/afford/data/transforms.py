"""Geometric augmentation as an explicit parameter object, applied identically to images and maps.

The AGD20K protocol (REFERENCE_NOTES B) trains on "resize short side 256, random crop 224,
horizontal flip" and tests on "resize to 224x224".  Both are one :class:`CropFlip`: a box in
*normalised coordinates of the full image* (``[0,1]`` on each axis, 0 = top/left edge,
1 = bottom/right edge) plus a flip flag.

- :meth:`CropFlip.apply_image` produces the augmented image exactly as the protocol says
  (resize, then integer crop, then flip).
- :meth:`CropFlip.apply_map` takes a map cached on the ``h x w`` patch grid of the *full*
  image (cell ``(i, j)`` centred at ``((i + .5) / h, (j + .5) / w)``, see
  :mod:`afford.data.cache`) and resamples it onto the ``out x out`` patch grid of the
  augmented image: output cell ``(r, c)`` sits at the full-image point the augmented image's
  cell centre came from.  The resample is separable bilinear interpolation written as two small
  matrices (``M_y @ map @ M_x^T``) with *linear* extrapolation for the (at most ~0.07 cell)
  overhang past the outermost cell centres, so it is exact for every map that is a bilinear
  function of position (tests check this against a brute-force evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from afford.errors import AffordError


@dataclass(frozen=True)
class CropFlip:
    """One geometric augmentation (crop box + horizontal flip) of a full image.

    Attributes:
        height, width: size (pixels) the full image is resized to before cropping
            (e.g. short side 256 for training; 224 x 224 for testing).
        top, left: integer crop origin in the resized image.
        crop_h, crop_w: crop size in pixels (224).
        flip: mirror the crop horizontally (after cropping).
    """

    height: int
    width: int
    top: int
    left: int
    crop_h: int
    crop_w: int
    flip: bool = False

    def __post_init__(self) -> None:
        if self.crop_h < 1 or self.crop_w < 1 or self.height < 1 or self.width < 1:
            raise AffordError(f"CropFlip: sizes must be positive, got {self}")
        if not (
            0 <= self.top <= self.height - self.crop_h
            and 0 <= self.left <= self.width - self.crop_w
        ):
            raise AffordError(f"CropFlip: crop box lies outside the resized image: {self}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def resize_only(cls, size: int = 224) -> CropFlip:
        """Test transform: squash the full image to ``size x size`` (no crop, no flip)."""
        return cls(size, size, 0, 0, size, size, False)

    @classmethod
    def random(
        cls,
        image_hw: tuple[int, int],
        rng: np.random.Generator,
        resize: int = 256,
        crop: int = 224,
        flip_prob: float = 0.5,
    ) -> CropFlip:
        """Training transform: short side -> ``resize``, uniform random ``crop`` box, flip.

        Args:
            image_hw: (H, W) of the original image.
            rng: NumPy generator (the only source of randomness; pass a seeded one).
        """
        h, w = int(image_hw[0]), int(image_hw[1])
        if h < 1 or w < 1:
            raise AffordError(f"CropFlip.random: bad image size {image_hw}")
        if crop > resize:
            raise AffordError(f"CropFlip.random: crop {crop} is larger than resize {resize}")
        rh, rw = resized_short_side(h, w, resize)
        top = int(rng.integers(0, rh - crop + 1))
        left = int(rng.integers(0, rw - crop + 1))
        flip = bool(rng.random() < flip_prob)
        return cls(rh, rw, top, left, crop, crop, flip)

    # ------------------------------------------------------------------ geometry
    def box(self) -> tuple[float, float, float, float]:
        """Crop box in normalised full-image coordinates ``(y0, x0, y1, x1)``."""
        return (
            self.top / self.height,
            self.left / self.width,
            (self.top + self.crop_h) / self.height,
            (self.left + self.crop_w) / self.width,
        )

    def source_coords(self, out_h: int, out_w: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised full-image coordinates of the cell centres of an ``out_h x out_w`` grid
        laid over the augmented image: ``ys (out_h,)``, ``xs (out_w,)`` (float64)."""
        y0, x0, y1, x1 = self.box()
        ys = y0 + (np.arange(out_h) + 0.5) / out_h * (y1 - y0)
        xs = x0 + (np.arange(out_w) + 0.5) / out_w * (x1 - x0)
        if self.flip:
            xs = xs[::-1].copy()
        return ys, xs

    # ------------------------------------------------------------------ application
    def apply_image(self, image: torch.Tensor) -> torch.Tensor:
        """Augment an image: (3,H,W) or (B,3,H,W) float in [0,1] -> same rank, crop size.

        Resize (bilinear, antialiased, as PIL/torchvision do) to ``(height, width)``, crop,
        flip.  The result is clamped to [0, 1].
        """
        squeeze = image.ndim == 3
        x = image[None] if squeeze else image
        if x.ndim != 4 or not x.is_floating_point():
            raise AffordError(
                "CropFlip.apply_image: expected a float (3,H,W) or (B,3,H,W) image in [0,1], got "
                f"{tuple(image.shape)} {image.dtype}"
            )
        if tuple(x.shape[-2:]) != (self.height, self.width):
            x = F.interpolate(
                x,
                size=(self.height, self.width),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        x = x[..., self.top : self.top + self.crop_h, self.left : self.left + self.crop_w]
        if self.flip:
            x = x.flip(-1)
        x = x.clamp(0.0, 1.0)
        return x[0] if squeeze else x

    def map_matrices(
        self, in_h: int, in_w: int, out_h: int, out_w: int, dtype=torch.float32, device=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Interpolation matrices ``M_y (out_h, in_h)`` and ``M_x (out_w, in_w)`` so that
        ``apply_map(m) = M_y @ m @ M_x^T``."""
        ys, xs = self.source_coords(out_h, out_w)
        return (
            torch.as_tensor(interp_matrix(ys, in_h), dtype=dtype, device=device),
            torch.as_tensor(interp_matrix(xs, in_w), dtype=dtype, device=device),
        )

    def apply_map(
        self, maps: torch.Tensor, out_size: int | tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Resample maps cached on the full image's patch grid onto the augmented image's grid.

        Args:
            maps: (..., h, w) maps of the full image (cell centres at ``(i + .5) / h``).
            out_size: output grid (default: the same ``h x w``, e.g. 14 x 14 for a 224 crop
                with patch 16).

        Returns:
            (..., out_h, out_w) maps aligned with :meth:`apply_image`'s output.
        """
        if maps.ndim < 2:
            raise AffordError(f"CropFlip.apply_map: expected (..., h, w), got {tuple(maps.shape)}")
        in_h, in_w = maps.shape[-2:]
        if out_size is None:
            out_h, out_w = in_h, in_w
        elif isinstance(out_size, int):
            out_h = out_w = out_size
        else:
            out_h, out_w = out_size
        dtype = maps.dtype if maps.is_floating_point() else torch.float32
        my, mx = self.map_matrices(in_h, in_w, out_h, out_w, dtype=dtype, device=maps.device)
        return my @ maps.to(dtype) @ mx.T


def resized_short_side(h: int, w: int, size: int) -> tuple[int, int]:
    """(H, W) after resizing the short side to ``size`` (long side rounded, torchvision rule)."""
    if h <= w:
        return size, max(size, int(round(size * w / h)))
    return max(size, int(round(size * h / w))), size


def interp_matrix(coords: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation matrix (len(coords), n) sampling a grid of ``n`` cells.

    Cell ``k`` is centred at normalised coordinate ``(k + .5) / n``.  A coordinate ``u``
    falls at fractional index ``s = u * n - .5``; the row holds ``1 - t`` at ``i0`` and ``t``
    at ``i0 + 1`` with ``i0 = clip(floor(s), 0, n - 2)`` and ``t = s - i0`` (``t`` outside
    ``[0, 1]`` only past the outermost centres: linear extrapolation).  ``n == 1`` gives ones.
    """
    coords = np.asarray(coords, dtype=np.float64)
    m = np.zeros((len(coords), n), dtype=np.float64)
    if n == 1:
        m[:, 0] = 1.0
        return m
    s = coords * n - 0.5
    i0 = np.clip(np.floor(s), 0, n - 2).astype(np.int64)
    t = s - i0
    rows = np.arange(len(coords))
    m[rows, i0] = 1.0 - t
    m[rows, i0 + 1] += t
    return m

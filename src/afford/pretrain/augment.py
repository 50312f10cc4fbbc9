"""The two augmented views of a pre-training pair: random resized crops with their exact
geometry (:func:`sample_crops`, :func:`view_to_image`, :func:`image_to_view`,
:func:`crop_views`) and colour augmentation (:func:`colour_augment`).

Every random draw takes an explicit ``torch.Generator``, so a run is a pure function of its
seed. Coordinates are normalised (row, col) in [0, 1], pixel centres at (k + 0.5) / size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_crops(
    gen: torch.Generator,
    batch: int,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop boxes in normalised source coordinates.

    Returns ``boxes`` (B,4) = (top, left, height, width) with 0 <= top, top + height <= 1
    (likewise for columns) and area in ``scale``, aspect width/height in ``ratio`` (clamped to
    the image), and ``flips`` (B,) bool (horizontal flip with p = 0.5).
    """
    area = torch.empty(batch).uniform_(scale[0], scale[1], generator=gen)
    logr = torch.empty(batch).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)
    h = (area / r).sqrt().clamp(max=1.0)
    top = torch.rand(batch, generator=gen) * (1 - h)
    left = torch.rand(batch, generator=gen) * (1 - w)
    flips = torch.rand(batch, generator=gen) < 0.5
    return torch.stack([top, left, h, w], 1), flips


def view_to_image(points: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Normalised view coordinates (B,N,2) (row, col) in [0,1] -> source image coordinates
    (row, col) in [0,1]: ``row = top + h * r``, ``col = left + w * (1 - c if flip else c)``."""
    r, c = points[..., 0], points[..., 1]
    c = torch.where(flips[:, None], 1 - c, c)
    top, left, h, w = (boxes[:, i, None] for i in range(4))
    return torch.stack([top + h * r, left + w * c], -1)


def image_to_view(points: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`view_to_image`: source (B,N,2) (row, col) in [0,1] -> view coords."""
    top, left, h, w = (boxes[:, i, None] for i in range(4))
    r = (points[..., 0] - top) / h
    c = (points[..., 1] - left) / w
    c = torch.where(flips[:, None], 1 - c, c)
    return torch.stack([r, c], -1)


def crop_views(
    images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int
) -> torch.Tensor:
    """Cut the boxes out of ``images`` (B,3,H,W) and resize them to (B,3,size,size) by
    bilinear sampling, flipping where ``flips``. The value at view pixel centre (i, j), i.e.
    view coordinates ((i + 0.5)/size, (j + 0.5)/size), is the source image sampled (bilinear,
    pixel centres at (k + 0.5)/H) at :func:`view_to_image` of those coordinates."""
    b = images.shape[0]
    centres = (torch.arange(size, dtype=images.dtype) + 0.5) / size
    rr, cc = torch.meshgrid(centres, centres, indexing="ij")
    pts = torch.stack([rr, cc], -1).reshape(1, -1, 2).expand(b, -1, -1)
    src = view_to_image(pts, boxes.to(images.dtype), flips)
    grid = torch.stack([src[..., 1], src[..., 0]], -1) * 2 - 1  # (x, y) in [-1, 1]
    grid = grid.reshape(b, size, size, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def colour_augment(x: torch.Tensor, gen: torch.Generator, strong: bool = True) -> torch.Tensor:
    """Per-image colour jitter (brightness, contrast, saturation 0.3; a small random channel
    mix for hue, p=0.8; milder than DenseCL's since colour is a part cue in the synthetic
    world and the re-renders already vary the light), grayscale (p=0.1), Gaussian blur
    (p=0.5, sigma 0.1..2 px) and, with ``strong``, solarisation (p=0.2).
    x: (B,3,H,W) in [0,1] -> same shape, in [0,1]."""
    b = x.shape[0]

    def u(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return torch.empty(n).uniform_(lo, hi, generator=gen).view(n, 1, 1, 1)

    def coin(p: float) -> torch.Tensor:
        return (torch.rand(b, generator=gen) < p).view(b, 1, 1, 1)

    jit = coin(0.8)
    y = x * u(0.7, 1.3)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * u(0.7, 1.3) + mean
    g = _gray(y)
    y = (y - g) * u(0.7, 1.3) + g
    mix = torch.eye(3) + 0.05 * torch.randn(b, 3, 3, generator=gen)  # hue-like channel mixing
    y = torch.einsum("bij,bjhw->bihw", mix, y)
    x = torch.where(jit, y.clamp(0, 1), x)
    x = torch.where(coin(0.1), _gray(x), x)
    sig = u(0.1, 2.0).view(b)
    rad = 4
    t = torch.arange(-rad, rad + 1, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sig[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1)
    h, w = x.shape[-2:]
    xb = x.reshape(1, b * 3, h, w)
    kk = k.repeat_interleave(3, 0)
    xb = F.conv2d(F.pad(xb, (rad, rad, 0, 0), mode="reflect"), kk[:, None, None, :], groups=b * 3)
    xb = F.conv2d(F.pad(xb, (0, 0, rad, rad), mode="reflect"), kk[:, None, :, None], groups=b * 3)
    x = torch.where(coin(0.5), xb.reshape(b, 3, h, w), x)
    if strong:
        x = torch.where(coin(0.2) & (x > 0.5), 1 - x, x)
    return x.clamp(0, 1)

"""Label-free self-supervised pre-training of the tiny DINO / DINOv2 on synthetic renders.

Why: the deterministic *random* tiny backbones carry almost no dense signal, so the CPU
benchmarks of both papers cannot learn on top of them (grounding heads stay near a uniform
map, the "DINO" correspondence row stays at chance). The real backbones are self-supervised
on natural images; we give the tiny ones a small self-supervised pre-training on renders of
the synthetic world instead. It uses **RGB pixels only**: the data pipeline
(:func:`render_pretraining_images`) renders random assets of every category from random
viewpoints, lights and backgrounds and returns a bare ``(N,R,H,W,3) uint8`` array (R
re-renders of each scene); the part ids, masks, depths, categories, affordances and functions
the renderer also knows are dropped there and never reach :func:`pretrain` (which only
accepts such an RGB array). With :func:`render_multiview_pairs` (what the shipped files use)
the two renders of a scene come from two cameras, and the only non-RGB data kept is their
multi-view geometry (:class:`MultiviewRenders`: which pixel of the other view sees the same
surface point), the classic self-supervision of dense object descriptors; dense pairs then
follow it (:func:`flow_pairs`) instead of the identity.

Objective (two augmented views ``a``, ``b`` of the same scene; a student network ``s`` and an
EMA teacher ``t``; all embeddings L2-normalised; a standard combination of DenseCL/PixPro/VADeR
style dense contrast and MoCo-v3 style image-level contrast):

1. Views: two different re-renders of the same scene (same camera; independent random light
   and background, so neither can identify the pair), each cut by a random resized crop
   (scale ``crop_scale``, aspect 3/4..4/3, resized to ``view_size``) with a known box and a
   random horizontal flip (:func:`sample_crops`, :func:`crop_views`), then colour jitter,
   random grayscale, Gaussian blur and solarisation (:func:`colour_augment`).
2. Dense pixel-contrastive loss. The centre ``c_i`` of patch ``i`` of view ``a`` is mapped to
   the source image and then into view ``b`` with the exact crop geometry
   (:func:`view_to_image`, :func:`image_to_view`); pairs whose point falls inside view ``b``
   are kept. ``q_i`` = student dense embedding of view ``a`` at patch ``i``; ``k_i`` = teacher
   dense map of view ``b`` bilinearly sampled at the mapped point. Over ``P`` sampled pairs of
   the whole batch (other images' and other locations' keys are the negatives)::

       L_dense = -1/P sum_i log( exp(q_i . k_i / tau_d) / sum_j exp(q_i . k_j / tau_d) )   (D1)

   (:func:`info_nce`). It is applied to several dense maps ("heads"): for DINO to a projection
   of the final patch tokens **and** directly to the last block's attention keys (what the
   grounding method reads); for DINOv2 to a projection of the final tokens **and** directly to
   the mean of the L2-normalised last-3-block token maps before the final norm (what the
   correspondence model reads).
3. Image-level InfoNCE on the CLS token (instance discrimination across the batch; the
   random backgrounds push the CLS attention onto the object)::

       L_img = -1/B sum_b log( exp(u_b . v_b / tau_g) / sum_c exp(u_b . v_c / tau_g) )    (G1)

   with ``u`` the student CLS projection of view ``a`` and ``v`` the teacher's of view ``b``.
4. ``L = lambda_dense * mean_heads L_dense + lambda_global * L_img``, symmetrised over
   (a,b) and (b,a). Teacher: ``theta_t <- m theta_t + (1 - m) theta_s`` with ``m`` rising from
   ``momentum[0]`` to ``momentum[1]`` (cosine). AdamW, linear warm-up then cosine decay.

Everything is seeded (``torch.Generator`` / ``numpy.random.default_rng`` from ``seed``), so a
run with the same seed, data and step count gives the same weights (single-process CPU).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from afford.errors import AffordError

FAMILIES = ("dino", "dinov2")
DATA_SEED_OFFSET = 7_000_000  # asset seeds of the pre-training renders (disjoint from datasets)
BACKGROUND_KINDS = ("solid", "gradient", "noise", "clutter")
LAYERSCALE_INIT = 0.1  # DINOv2 tiny: LayerScale gammas at the start of pre-training


@dataclass
class PretrainConfig:
    """Hyper-parameters of :func:`pretrain` (defaults: the shipped tiny-synth runs)."""

    family: str = "dino"
    seed: int = 0
    steps: int = 600
    batch: int = 16
    view_size: int = 112
    lr: float = 1e-3
    weight_decay: float = 0.04
    warmup: float = 0.1
    tau_dense: float = 0.2
    tau_global: float = 0.2
    lambda_dense: float = 1.0
    lambda_global: float = 1.0
    pairs: int = 1024
    proj_dim: int = 128
    momentum: tuple[float, float] = (0.9, 0.99)
    crop_scale: tuple[float, float] = (0.2, 0.8)
    minutes: float | None = None
    clip_grad: float = 3.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- data


def orbit_camera(el: float, az: float, dist: float, target: np.ndarray, fov: float, size: int):
    """A ``size`` x ``size`` camera at elevation ``el`` / azimuth ``az`` (radians) and distance
    ``dist`` from the origin, looking at ``target``, vertical field of view ``fov`` degrees."""
    from afford.synth.render import Camera

    eye = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return Camera.look_at(eye, target, fov_deg=fov, width=size, height=size)


def render_pretraining_images(
    n: int,
    seed: int = 0,
    size: int = 224,
    views_per_asset: int = 4,
    renders: int = 2,
    categories: Sequence[str] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Render ``n`` scenes of random synthetic assets, each ``renders`` times with the same
    camera but an independent random light and background; returns (n, renders, size, size, 3)
    uint8.

    Assets cycle through every category (``afford.synth.assets.CATEGORIES``) with asset seeds
    ``DATA_SEED_OFFSET + seed * 100_000 + i`` (disjoint from the dataset writers' seeds);
    ``views_per_asset`` random cameras each (elevation -20..70 deg, distance 1.3..2.2, fov
    30..40, target jitter). The re-renders of one scene are the simulator's version of a
    photometric augmentation: the two views of a training pair come from two of them, so the
    background and lighting cannot identify the pair -- the object has to. **Only the RGB
    pixels are kept**: the renderer's part ids, masks, depths and points, and the asset's
    category and part metadata, are discarded here.
    """
    from tqdm import tqdm

    from afford.synth import assets as A
    from afford.synth.render import Scene, random_light

    if n < 1:
        raise AffordError(f"--images must be >= 1, got {n}")
    cats = list(categories) if categories is not None else list(A.CATEGORIES)
    rng = np.random.default_rng([seed, 12345])
    out = np.empty((n, renders, size, size, 3), np.uint8)
    n_assets = math.ceil(n / views_per_asset)
    k = 0
    for i in tqdm(range(n_assets), desc="render", disable=not progress, leave=False):
        asset = A.make_asset(cats[i % len(cats)], DATA_SEED_OFFSET + seed * 100_000 + i)
        scene = Scene(asset)
        for _ in range(min(views_per_asset, n - k)):
            el = np.deg2rad(rng.uniform(-20, 70))
            az = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(1.3, 2.2)
            target = rng.uniform(-0.1, 0.1, 3)
            cam = orbit_camera(el, az, dist, target, rng.uniform(30, 40), size)
            for j in range(renders):
                bg = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
                view = scene.render(cam, background=bg, light=random_light(rng), rng=rng)
                out[k, j] = view.rgb  # RGB only: nothing else of the view leaves here
            k += 1
    return out


@dataclass
class MultiviewRenders:
    """Two renders of each scene from two *different* cameras, plus where each grid cell of
    one view lands in the other (multi-view geometry only; see :func:`flow_between`).

    Attributes:
        images: (N,2,S,S,3) uint8 RGB.
        flow: (N,2,G,G,2) float32: for view ``v``'s grid cell (i, j) (centre ((i+.5)/G,
            (j+.5)/G) in normalised (row, col)), the normalised (row, col) of the same surface
            point in view ``1 - v``.
        valid: (N,2,G,G) bool: the cell shows the object and its surface point is visible in
            the other view.
    """

    images: np.ndarray
    flow: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def flow_between(view_a, view_b, grid: int, tol: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Geometric correspondence of two renders of the same object (pure multi-view geometry:
    ``view_a.points`` projected by ``view_b``'s camera, with a depth test; no labels).

    Args:
        view_a, view_b: :class:`afford.synth.render.View` of the same scene, S x S pixels.
        grid: G; the flow is evaluated at the pixel under each cell centre of a G x G grid.
        tol: depth-test tolerance, relative to the camera depth.
    Returns:
        flow (G,G,2) float32 normalised (row, col) in view b (pixel centres at (k+.5)/S),
        valid (G,G) bool.
    """
    s = view_a.rgb.shape[0]
    pix = np.minimum(((np.arange(grid) + 0.5) * s / grid).astype(int), s - 1)
    rr, cc = np.meshgrid(pix, pix, indexing="ij")
    pts = view_a.points[rr, cc].reshape(-1, 3)
    ok = view_a.mask[rr, cc].reshape(-1) & np.isfinite(pts).all(1)
    flow = np.zeros((grid * grid, 2), np.float32)
    cam = view_b.object_camera()
    if ok.any():
        uv, z = cam.project(pts[ok])
        col, row = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (z > 0) & (row >= 0) & (row < s) & (col >= 0) & (col < s)
        rc, cc2 = np.clip(row, 0, s - 1), np.clip(col, 0, s - 1)
        seen = inside & view_b.mask[rc, cc2] & (np.abs(view_b.depth[rc, cc2] - z) < tol * z)
        flow[ok] = np.stack([(uv[:, 1] + 0.5) / s, (uv[:, 0] + 0.5) / s], 1)
        idx = np.flatnonzero(ok)
        ok[idx[~seen]] = False
    return flow.reshape(grid, grid, 2), ok.reshape(grid, grid)


def render_multiview_pairs(
    n: int,
    seed: int = 0,
    size: int = 224,
    views_per_asset: int = 4,
    max_offset_deg: float = 40.0,
    grid: int = 56,
    categories: Sequence[str] | None = None,
    progress: bool = True,
) -> MultiviewRenders:
    """Like :func:`render_pretraining_images`, but the two renders of a scene come from two
    cameras up to ``max_offset_deg`` apart in azimuth and half that in elevation (independent
    light and background each), and the cross-view :func:`flow_between` is kept. Only RGB and
    this geometry leave here: part ids, categories, affordances and functions are dropped."""
    from tqdm import tqdm

    from afford.synth import assets as A
    from afford.synth.render import Scene, random_light

    if n < 1:
        raise AffordError(f"--images must be >= 1, got {n}")
    cats = list(categories) if categories is not None else list(A.CATEGORIES)
    rng = np.random.default_rng([seed, 54321])
    images = np.empty((n, 2, size, size, 3), np.uint8)
    flow = np.zeros((n, 2, grid, grid, 2), np.float32)
    valid = np.zeros((n, 2, grid, grid), bool)
    k = 0
    off = np.deg2rad(max_offset_deg)
    for i in tqdm(range(math.ceil(n / views_per_asset)), desc="render", disable=not progress,
                  leave=False):  # fmt: skip
        scene = Scene(A.make_asset(cats[i % len(cats)], DATA_SEED_OFFSET + seed * 100_000 + i))
        for _ in range(min(views_per_asset, n - k)):
            el0, az0 = np.deg2rad(rng.uniform(-10, 60)), rng.uniform(0, 2 * np.pi)
            dist, fov = rng.uniform(1.3, 2.2), rng.uniform(30, 40)
            target = rng.uniform(-0.1, 0.1, 3)
            views = []
            for el, az in (
                (el0, az0),
                (el0 + rng.uniform(-off, off) / 2, az0 + rng.uniform(-off, off)),
            ):
                cam = orbit_camera(el, az, dist, target, fov, size)
                bg = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
                views.append(scene.render(cam, background=bg, light=random_light(rng), rng=rng))
            for v in (0, 1):
                images[k, v] = views[v].rgb
                flow[k, v], valid[k, v] = flow_between(views[v], views[1 - v], grid)
            k += 1
    return MultiviewRenders(images, flow, valid)


def check_rgb_array(images: object) -> np.ndarray:
    """The pre-training input must be a bare RGB array, uint8 (N,H,W,3) or (N,R,H,W,3) (R
    re-renders of each scene, same camera), nothing else. Returns it as (N,R,H,W,3)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise AffordError(
            "pretrain: images must be a numpy uint8 array (N,H,W,3) or (N,R,H,W,3) of RGB "
            f"pixels, got {type(images).__name__}"
            f"{'/' + str(images.dtype) if hasattr(images, 'dtype') else ''}"
        )
    if images.ndim not in (4, 5) or images.shape[-1] != 3 or images.shape[0] < 2:
        raise AffordError(
            f"pretrain: images must have shape (N>=2,[R,]H,W,3), got {tuple(images.shape)}"
        )
    return images if images.ndim == 5 else images[:, None]


# ----------------------------------------------------------------------------- geometry


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


def patch_centres(grid: int) -> torch.Tensor:
    """(grid*grid, 2) normalised (row, col) centres of a grid x grid patch layout, row-major."""
    c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    rr, cc = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], -1)


def sample_map(fmap: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (B,D,h,w) at normalised (row, col) points (B,N,2) -> (B,N,D)."""
    grid = torch.stack([points[..., 1], points[..., 0]], -1)[:, :, None] * 2 - 1
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


# ----------------------------------------------------------------------------- augmentation


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


def colour_augment(x: torch.Tensor, gen: torch.Generator, strong: bool = True) -> torch.Tensor:
    """Per-image colour jitter (brightness, contrast, saturation 0.3; a small random channel
    mix for hue, p=0.8; milder than DenseCL's since colour is a part cue in the synthetic
    world and the re-renders already vary the light), grayscale (p=0.1), Gaussian blur (p=0.5, sigma 0.1..2 px) and, with
    ``strong``, solarisation (p=0.2). x: (B,3,H,W) in [0,1] -> same shape, in [0,1]."""
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


# ----------------------------------------------------------------------------- losses


def info_nce(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (D1)/(G1): q, k (P,D) L2-normalised; row i's positive is k_i, negatives k_j, j != i.
    Returns mean_i -log softmax_j(q_i . k_j / tau)[i] (a scalar)."""
    logits = q @ k.t() / tau
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


def dense_pairs(
    boxes_a: torch.Tensor,
    flips_a: torch.Tensor,
    boxes_b: torch.Tensor,
    flips_b: torch.Tensor,
    grid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch centres of view a mapped into view b.

    Returns ``pts_b`` (B, grid*grid, 2) normalised view-b coordinates of each view-a patch
    centre (row-major patch order) and ``valid`` (B, grid*grid) bool: the point lies inside
    view b."""
    b = boxes_a.shape[0]
    c = patch_centres(grid).to(boxes_a.dtype)[None].expand(b, -1, -1)
    pts_b = image_to_view(view_to_image(c, boxes_a, flips_a), boxes_b, flips_b)
    valid = ((pts_b >= 0) & (pts_b <= 1)).all(-1)
    return pts_b, valid


def flow_pairs(
    boxes_a: torch.Tensor,
    flips_a: torch.Tensor,
    boxes_b: torch.Tensor,
    flips_b: torch.Tensor,
    grid: int,
    flow: torch.Tensor,
    fvalid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_pairs` across two cameras: view a's patch centres -> source a -> (nearest
    cell of ``flow`` (B,G,G,2), normalised (row, col) in source b) -> view b.

    Returns ``pts_b`` (B, grid*grid, 2) and ``valid`` (B, grid*grid): the flow cell is valid
    (``fvalid`` (B,G,G)) and the point lies inside view b."""
    b, g = flow.shape[0], flow.shape[1]
    c = patch_centres(grid).to(boxes_a.dtype)[None].expand(b, -1, -1)
    src = view_to_image(c, boxes_a, flips_a)
    cell = (src * g).floor().long().clamp(0, g - 1)
    lin = cell[..., 0] * g + cell[..., 1]  # (B,P)
    src_b = torch.gather(flow.reshape(b, g * g, 2), 1, lin[..., None].expand(-1, -1, 2))
    ok = torch.gather(fvalid.reshape(b, g * g), 1, lin)
    pts_b = image_to_view(src_b.to(boxes_b.dtype), boxes_b, flips_b)
    return pts_b, ok & ((pts_b >= 0) & (pts_b <= 1)).all(-1)


def dense_loss(
    q_map: torch.Tensor,
    k_map: torch.Tensor,
    pts_b: torch.Tensor,
    valid: torch.Tensor,
    tau: float,
    select: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (D1) for one dense head.

    q_map (B,D,g,g): student map of view a; k_map (B,D,g',g'): teacher map of view b (any
    grid); pts_b, valid from :func:`dense_pairs`; ``select`` optional (P,) indices into the
    flattened valid pairs (a random subset; default all). Both embeddings are L2-normalised
    here. Returns a scalar (0 with a graph when there is no valid pair)."""
    b, d = q_map.shape[:2]
    q = F.normalize(q_map.flatten(2).transpose(1, 2), dim=-1)  # (B, g*g, D)
    k = F.normalize(sample_map(k_map, pts_b), dim=-1)  # (B, g*g, D)
    q, k = q[valid], k[valid]
    if select is not None:
        q, k = q[select], k[select]
    if q.shape[0] == 0:
        return q_map.sum() * 0
    return info_nce(q, k, tau)


# ----------------------------------------------------------------------------- network


class Projector(nn.Module):
    """MLP head D -> 256 -> out (GELU), applied per token: (B,N,D) -> (B,N,out)."""

    def __init__(self, dim: int, out: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def embed_any_size(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch + position embedding of a timm ViT for a square input of any multiple of the
    patch size: (B,3,S,S) -> (B,1+(S/p)^2,D). The position embedding is resampled (bicubic,
    differentiable, as timm's dynamic_img_size) when S differs from the model's 224, so short
    pre-training can run on smaller views (like DINO's local crops) and still train the
    224-resolution parameters."""
    from timm.layers import resample_abs_pos_embed

    pe = vit.patch_embed
    t = pe.norm(pe.proj(x).flatten(2).transpose(1, 2))
    g = x.shape[-1] // int(pe.patch_size[0])
    pos = vit.pos_embed
    if g != pe.grid_size[0]:
        pos = resample_abs_pos_embed(
            pos, new_size=(g, g), old_size=pe.grid_size, num_prefix_tokens=1
        )
    t = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), t], 1) + pos
    return vit.norm_pre(vit.patch_drop(vit.pos_drop(t)))


class SSLNet(nn.Module):
    """A timm ViT plus projection heads; ``forward(x normalised (B,3,S,S))`` -> dict:

    - ``cls`` (B,P): CLS projection (image-level loss);
    - ``dense`` dict of dense maps (B,C,g,g): "tokens" (projection of the final normed patch
      tokens) and, for DINO, "keys" (last block's attention keys, all heads concatenated) or,
      for DINOv2, "last3" (mean of the L2-normalised last-3-block token maps, before the norm).
    """

    def __init__(self, vit: nn.Module, family: str, proj_dim: int) -> None:
        super().__init__()
        self.vit, self.family = vit, family
        dim = int(vit.embed_dim)
        self.cls_head = Projector(dim, proj_dim)
        self.tok_head = Projector(dim, proj_dim)

    def forward(self, x: torch.Tensor) -> dict:
        vit = self.vit
        h = embed_any_size(vit, x)
        g = x.shape[-1] // int(vit.patch_embed.patch_size[0])
        outs = []
        for blk in vit.blocks:
            outs.append(h)
            h = blk(h)
        outs.append(h)  # outs[i] = input of block i; outs[-1] = last block output
        p = int(vit.num_prefix_tokens)
        final = vit.norm(h)
        b = x.shape[0]

        def to_map(t: torch.Tensor) -> torch.Tensor:
            return t[:, p:].transpose(1, 2).reshape(b, -1, g, g)

        dense = {"tokens": to_map(self.tok_head(final))}
        if self.family == "dino":
            last = vit.blocks[-1]
            d = int(vit.embed_dim)
            keys = last.attn.qkv(last.norm1(outs[-2]))[..., d : 2 * d]
            dense["keys"] = to_map(keys)
        else:
            maps = [F.normalize(to_map(t), dim=1) for t in outs[-3:]]
            dense["last3"] = torch.stack(maps).mean(0)
        return {"cls": self.cls_head(final[:, 0]), "dense": dense}


def build_student(family: str, proj_dim: int, seed: int) -> SSLNet:
    """The tiny ViT of ``family`` (deterministic random init, as ``variant="tiny"``; for DINOv2
    the LayerScale gammas are reset from 1e-5 to ``LAYERSCALE_INIT`` so that a run of a few
    hundred steps can use the blocks at all) plus heads seeded with ``seed``; trainable."""
    if family not in FAMILIES:
        raise AffordError(f"--family must be one of {FAMILIES}, got {family!r}")
    if family == "dino":
        from afford.backbones.dino import build_vit
    else:
        from afford.backbones.dinov2 import build_vit
    vit = build_vit("tiny")
    with torch.no_grad():  # DINOv2's LayerScale starts at 1e-5: too small for a short run
        for blk in vit.blocks:
            for ls in (blk.ls1, blk.ls2):
                if hasattr(ls, "gamma"):
                    ls.gamma.fill_(LAYERSCALE_INIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SSLNet(vit, family, proj_dim)
    return net.train()


# ----------------------------------------------------------------------------- training


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: the trained ViT and its loss history."""

    vit: nn.Module
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


def schedule(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine decay to 1 % of ``base``."""
    w = max(1, int(warmup * total))
    if step < w:
        return base * (step + 1) / w
    t = (step - w) / max(1, total - w)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def ssl_losses(
    student: SSLNet,
    teacher: SSLNet,
    views: tuple[torch.Tensor, torch.Tensor],
    geoms: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    cfg: PretrainConfig,
    gen: torch.Generator,
    flows: tuple | None = None,
) -> dict[str, torch.Tensor]:
    """Symmetrised objective (Eq. D1 per dense head + Eq. G1) for two normalised view batches
    (B,3,S,S) and their crop geometries ((boxes, flips), (boxes, flips)). ``flows`` (for
    renders from two cameras): ((flow, valid) from source a to b, (flow, valid) from b to a),
    see :func:`flow_pairs`; None = same camera. Returns "total", "img" and "dense:<head>"."""
    s_out = [student(v) for v in views]
    with torch.no_grad():
        t_out = [teacher(v) for v in views]
    terms: dict[str, torch.Tensor] = {}
    img = 0.0
    dense: dict[str, torch.Tensor] = {}
    for a, b in ((0, 1), (1, 0)):
        u = F.normalize(s_out[a]["cls"], dim=-1)
        v = F.normalize(t_out[b]["cls"], dim=-1)
        img = img + 0.5 * info_nce(u, v, cfg.tau_global)
        g = next(iter(s_out[a]["dense"].values())).shape[-1]
        if flows is None:
            pts_b, valid = dense_pairs(*geoms[a], *geoms[b], g)
        else:
            pts_b, valid = flow_pairs(*geoms[a], *geoms[b], g, *flows[a])
        n_valid = int(valid.sum())
        sel = None
        if n_valid > cfg.pairs:
            sel = torch.randperm(n_valid, generator=gen)[: cfg.pairs]
        for name, q_map in s_out[a]["dense"].items():
            term = 0.5 * dense_loss(
                q_map, t_out[b]["dense"][name], pts_b, valid, cfg.tau_dense, sel
            )
            dense[name] = dense.get(name, 0.0) + term
    terms["img"] = img
    for name, val in dense.items():
        terms[f"dense:{name}"] = val
    mean_dense = sum(dense.values()) / len(dense)
    terms["total"] = cfg.lambda_dense * mean_dense + cfg.lambda_global * img
    return terms


def pretrain(
    images: np.ndarray,
    cfg: PretrainConfig,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> PretrainResult:
    """Self-supervised pre-training of the tiny ``cfg.family`` ViT on ``images``.

    Args:
        images: (N,R,H,W,3) (or (N,H,W,3)) uint8 RGB renders -- the only input; no labels
            of any kind. The two views of a pair come from two different re-renders r. Or a
            :class:`MultiviewRenders` (RGB from two cameras plus their geometric flow; still
            no labels): dense pairs then follow the flow.
        cfg: hyper-parameters; ``cfg.steps`` fixes the schedule (deterministic for
            ``cfg.seed``); ``cfg.minutes`` is an optional wall-clock cap (stops early, recorded
            in the result).
        progress: tqdm bar with loss and ETA.
        on_step: optional callback(step, {loss name: float}).
    Returns: :class:`PretrainResult` with the student's ViT (the teacher is discarded).
    """
    from tqdm import tqdm

    from afford.backbones.common import IMAGENET_MEAN, IMAGENET_STD

    mv = images if isinstance(images, MultiviewRenders) else None
    images = check_rgb_array(mv.images if mv is not None else images)
    if cfg.steps < 1 or cfg.batch < 2:
        raise AffordError(
            f"pretrain: need steps >= 1 and batch >= 2 (got {cfg.steps}, {cfg.batch})"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    student = build_student(cfg.family, cfg.proj_dim, cfg.seed)
    teacher = copy.deepcopy(student).requires_grad_(False)
    data = torch.from_numpy(images).permute(0, 1, 4, 2, 3)  # uint8 (N,R,3,H,W)
    n_r = data.shape[1]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    decay, no_decay = [], []
    for name, p in student.named_parameters():
        (no_decay if p.ndim < 2 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=cfg.lr,
    )
    batch = min(cfg.batch, len(images))
    res = PretrainResult(vit=student.vit)
    start = time.monotonic()
    bar = tqdm(range(cfg.steps), desc=f"pretrain {cfg.family}", disable=not progress)
    order = torch.randperm(len(images), generator=gen)
    pos = 0
    for step in bar:
        if pos + batch > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos : pos + batch]
        pos += batch
        ra = torch.randint(n_r, (batch,), generator=gen)
        rb = (ra + torch.randint(1, max(n_r, 2), (batch,), generator=gen)) % n_r
        flows = None
        if mv is not None:  # the two renders come from two cameras: pairs through the flow
            flows = tuple(
                (torch.from_numpy(mv.flow[idx.numpy(), r.numpy()]),
                 torch.from_numpy(mv.valid[idx.numpy(), r.numpy()]))
                for r in (ra, rb)
            )  # fmt: skip
        views, geoms = [], []
        for r in (ra, rb):  # two different re-renders of each scene (same camera)
            src = data[idx, r].float() / 255
            boxes, flips = sample_crops(gen, batch, cfg.crop_scale)
            v = colour_augment(crop_views(src, boxes, flips, cfg.view_size), gen)
            views.append((v - mean) / std)
            geoms.append((boxes, flips))
        lr = schedule(step, cfg.steps, cfg.lr, cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        terms = ssl_losses(
            student, teacher, (views[0], views[1]), (geoms[0], geoms[1]), cfg, gen, flows
        )
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.clip_grad)
        opt.step()
        m = cfg.momentum[1] - (cfg.momentum[1] - cfg.momentum[0]) * 0.5 * (
            1 + math.cos(math.pi * step / max(1, cfg.steps - 1))
        )
        with torch.no_grad():
            for pt, ps in zip(teacher.parameters(), student.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
        rec = {k: float(v.detach()) for k, v in terms.items()}
        rec["step"], rec["lr"] = step, lr
        res.history.append(rec)
        bar.set_postfix(loss=f"{rec['total']:.3f}", img=f"{rec['img']:.2f}")
        if on_step is not None:
            on_step(step, rec)
        res.steps = step + 1
        if cfg.minutes is not None and time.monotonic() - start > 60 * cfg.minutes:
            res.stopped_early = res.steps < cfg.steps
            break
    bar.close()
    res.seconds = time.monotonic() - start
    student.vit.requires_grad_(False)
    return res


def wrap_backbone(vit: nn.Module, family: str, model_id: str):
    """The frozen afford backbone (``DinoBackbone`` / ``Dinov2Backbone``) around a trained
    tiny ViT, e.g. for ``afford.backbones.save_weights``."""
    if family == "dino":
        from afford.backbones.dino import DinoBackbone

        return DinoBackbone(vit, model_id)
    from afford.backbones.dinov2 import Dinov2Backbone

    return Dinov2Backbone(vit, model_id)

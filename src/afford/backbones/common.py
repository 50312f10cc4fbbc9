"""Shared pieces of the frozen backbones: input checks, normalisation, the frozen base module.

Every backbone takes images as float tensors (B, 3, 224, 224) with values in [0, 1] and
normalises them internally, so callers never deal with mean/std.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from afford.backbones.registry import INPUT_SIZE
from afford.errors import AffordError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}

RANGE_TOL = 1e-3


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the CPU RNG seeded to ``seed``; the global RNG state is restored after.

    Model constructors (timm, open_clip) draw their random init from the global RNG, so building
    a model inside this block gives the same weights in every process, whatever the caller did
    with the RNG before, and leaves the caller's RNG stream untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_images(images: object, name: str = "images", size: int = INPUT_SIZE) -> torch.Tensor:
    """Validate a batch of RGB images: float tensor (B, 3, size, size) with values in [0, 1].

    Returns the tensor unchanged; raises AffordError naming the problem otherwise.
    """
    if not isinstance(images, torch.Tensor):
        raise AffordError(
            f"{name}: expected a torch.Tensor of shape (B,3,{size},{size}), got "
            f"{type(images).__name__}"
        )
    if not images.is_floating_point():
        raise AffordError(
            f"{name}: expected a float tensor with values in [0,1], got dtype {images.dtype} "
            "(convert uint8 images with images.float() / 255)"
        )
    if images.ndim != 4:
        raise AffordError(
            f"{name}: expected shape (B,3,{size},{size}), got {tuple(images.shape)} "
            "(add a batch dimension with images[None] for a single image)"
        )
    if images.shape[1] != 3:
        raise AffordError(
            f"{name}: expected RGB images with 3 channels in dim 1, got shape "
            f"{tuple(images.shape)} (grey or RGBA images must be converted to RGB; "
            "channels-last tensors must be permuted to (B,3,H,W))"
        )
    if images.shape[2] != size or images.shape[3] != size:
        raise AffordError(
            f"{name}: expected spatial size {size}x{size}, got {images.shape[2]}x{images.shape[3]} "
            f"(resize/crop the images to {size}x{size} first)"
        )
    if images.shape[0] == 0:
        raise AffordError(f"{name}: empty batch (B=0)")
    lo, hi = torch.aminmax(images.detach())
    lo, hi = float(lo), float(hi)
    if not (lo >= -RANGE_TOL and hi <= 1 + RANGE_TOL):  # also catches NaN
        raise AffordError(
            f"{name}: values must lie in [0,1], got min {lo:.4g}, max {hi:.4g} "
            "(pass un-normalised images; 0-255 images must be divided by 255; the backbone "
            "normalises internally)"
        )
    return images


class FrozenBackbone(nn.Module):
    """Base of every frozen backbone: eval mode forever, no gradients, internal normalisation.

    Attributes:
        input_size: expected image side (224).
        model_id: stable string identifying architecture + weights (+ preprocessing); used as a
            cache key for frozen outputs.
        normalize: name of the input normalisation ("imagenet" or "clip").
    """

    input_size: int = INPUT_SIZE

    def __init__(self, model_id: str, normalize: str) -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise AffordError(
                f"normalize={normalize!r} is not supported; choose one of {sorted(NORMALIZATIONS)}"
            )
        mean, std = NORMALIZATIONS[normalize]
        self.model_id = model_id
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> FrozenBackbone:
        """Switch off gradients for every parameter and put the module in eval mode."""
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:  # noqa: ARG002 - frozen on purpose
        """Frozen backbones stay in eval mode whatever a parent module asks for."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check images (B,3,224,224) in [0,1], move them to this module's device and dtype,
        normalise with the module's mean/std. Returns (B,3,224,224)."""
        check_images(images, size=self.input_size)
        dtype = self.param_dtype()
        images = images.to(device=self.mean.device, dtype=dtype)
        return (images - self.mean.to(dtype)) / self.std.to(dtype)

    def param_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def extra_repr(self) -> str:
        return f"model_id={self.model_id!r}, normalize={self.normalize!r}"

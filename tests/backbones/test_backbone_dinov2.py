"""DINOv2 backbone: last-3-block maps re-derived block by block, pos-embed interpolation."""

from __future__ import annotations

import math

import pytest
import torch

from afford.backbones import load_dinov2
from afford.backbones.dinov2 import interpolate_pos_embed
from afford.errors import AffordError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def dinov2():
    return load_dinov2(variant="tiny")


def test_last_three_blocks_before_norm(dinov2, images):
    maps = dinov2(images)
    assert isinstance(maps, list) and len(maps) == 3
    assert all(m.shape == (2, 96, 16, 16) for m in maps)
    assert dinov2.feat_dim == 96 and dinov2.patch_size == 14 and dinov2.grid == 16
    # by hand: run timm's blocks one by one, keep the raw outputs of the last three
    vit = dinov2.vit
    with torch.no_grad():
        x = vit.patch_embed((images - IMAGENET_MEAN) / IMAGENET_STD)  # (B, 16, 16, D) or NLC
        x = x.reshape(2, 256, 96)
        x = torch.cat([vit.cls_token.expand(2, -1, -1), x], dim=1) + vit.pos_embed
        outs = []
        for blk in vit.blocks:
            x = blk(x)
            outs.append(x)
    for got, ref in zip(maps, outs[-3:]):
        # token 1 + r*16 + c -> map[:, :, r, c]
        expected = ref[:, 1:].reshape(2, 16, 16, 96).permute(0, 3, 1, 2)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # before the final norm: the last map is not layer-normalised
    last = outs[-1][:, 1:]
    assert not torch.allclose(last.mean(-1), torch.zeros(2, 256), atol=1e-3)


def test_frozen(dinov2, images):
    assert all(not p.requires_grad for p in dinov2.parameters())
    assert not dinov2(images)[0].requires_grad


def test_pos_embed_interpolation_constant_and_linear():
    """Meta's run-time interpolation: bicubic (A = -0.75), scale (16 + 0.1) / 37, CLS kept.

    A constant embedding stays constant; a column ramp matches a 1-D cubic-convolution
    written out here with source coordinate x = (j + 0.5) * 37 / 16.1 - 0.5 and clamped taps.
    """
    m, grid, dim = 37, 16, 4
    const = torch.full((1, 1 + m * m, dim), 0.25)
    const[:, 0] = 7.0
    out = interpolate_pos_embed(const, grid)
    assert out.shape == (1, 1 + grid * grid, dim)
    assert torch.all(out[:, 0] == 7.0)
    torch.testing.assert_close(out[:, 1:], torch.full((1, grid * grid, dim), 0.25))

    values = torch.arange(m, dtype=torch.float32) ** 2 / 10  # any 1-D profile along columns
    ramp = values.view(1, m).expand(m, m).reshape(1, m * m, 1).expand(1, m * m, dim)
    ramp = torch.cat([torch.zeros(1, 1, dim), ramp], dim=1)
    out = interpolate_pos_embed(ramp, grid)[0, 1:, 0].reshape(grid, grid)

    def cubic(t: float) -> float:  # Keys cubic convolution kernel, A = -0.75
        a, t = -0.75, abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    expected = []
    for j in range(grid):
        x = (j + 0.5) * m / (grid + 0.1) - 0.5
        i0 = math.floor(x)
        total = 0.0
        for k in (-1, 0, 1, 2):
            idx = min(max(i0 + k, 0), m - 1)
            total += cubic(x - (i0 + k)) * float(values[idx])
        expected.append(total)
    for row in (0, 7, 15):  # rows do not change a column profile
        torch.testing.assert_close(out[row], torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_pos_embed_not_square():
    with pytest.raises(AffordError, match="square"):
        interpolate_pos_embed(torch.zeros(1, 1 + 10, 4), 16)


def test_tiny_deterministic_and_errors():
    a, b = load_dinov2(variant="tiny"), load_dinov2(variant="tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(AffordError, match="unknown DINOv2 variant"):
        load_dinov2(variant="vitl14")
    with pytest.raises(AffordError, match="dinov2_vitb14_pretrain.pth.*AFFORD_WEIGHTS"):
        load_dinov2()
    with pytest.raises(AffordError, match="224x224"):
        a(torch.rand(1, 3, 518, 518))

"""DINO backbone: keys / CLS attention re-derived from the weights, shapes, freezing, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from afford.backbones import load_dino
from afford.errors import AffordError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def dino():
    return load_dino(variant="tiny")


def last_block_input(vit, x: torch.Tensor) -> torch.Tensor:
    """Tokens entering the last block (B, N, D), via timm's intermediates of block L-2."""
    depth = len(vit.blocks)
    out = vit.forward_intermediates(
        x, indices=[depth - 2], output_fmt="NLC", intermediates_only=True, return_prefix_tokens=True
    )
    patches, prefix = out[0]
    return torch.cat([prefix, patches], dim=1)


def hand_qkv(vit, images: torch.Tensor) -> torch.Tensor:
    """qkv projection of the last block computed from its weights: Linear(LayerNorm(x))."""
    x = (images - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        t = last_block_input(vit, x)
        blk = vit.blocks[-1]
        y = F.layer_norm(t, (t.shape[-1],), blk.norm1.weight, blk.norm1.bias, eps=1e-6)
        return y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias


def test_shapes_and_attributes(dino, images):
    out = dino(images)
    assert out["keys"].shape == (2, 96, 14, 14)
    assert out["cls_attn"].shape == (2, 6, 14, 14)
    assert out["tokens"].shape == (2, 196, 96)
    assert (dino.feat_dim, dino.num_heads, dino.patch_size, dino.input_size) == (96, 6, 16, 224)
    assert dino.model_id == "dino-tiny@random0"


def test_keys_rederived_from_qkv(dino, images):
    """channel c of the key map = dim d of head h with c = d * heads + h (REFERENCE_NOTES A)."""
    qkv = hand_qkv(dino.vit, images)  # (B, 197, 3*D): [q | k | v], each head-major
    d_model, heads = 96, 6
    hd = d_model // heads
    k = qkv[:, :, d_model : 2 * d_model]
    expected = torch.empty(2, d_model, 14, 14)
    for c in range(d_model):
        d, h = divmod(c, heads)
        expected[:, c] = k[:, 1:, h * hd + d].reshape(2, 14, 14)  # patch p = row*14 + col
    got = dino(images)["keys"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_cls_attention_rederived(dino, images):
    qkv = hand_qkv(dino.vit, images)
    d_model, heads = 96, 6
    hd = d_model // heads
    q, k = qkv[:, :, :d_model], qkv[:, :, d_model : 2 * d_model]
    got = dino(images)["cls_attn"]
    for h in range(heads):
        qh = q[:, 0, h * hd : (h + 1) * hd]  # (B, hd) CLS query
        kh = k[:, :, h * hd : (h + 1) * hd]  # (B, 197, hd)
        logits = torch.einsum("bd,bnd->bn", qh, kh) / hd**0.5
        probs = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        probs = probs / probs.sum(dim=1, keepdim=True)
        torch.testing.assert_close(got[:, h], probs[:, 1:].reshape(2, 14, 14), atol=1e-6, rtol=1e-4)
    # the patch part of a softmax row sums to 1 - CLS->CLS weight (< 1)
    assert torch.all(got.sum(dim=(2, 3)) < 1)


def test_cls_attention_matches_timm_unfused_attention(dino, images):
    """Independent check: timm's own (unfused) attention probabilities of the last block."""
    attn = dino.vit.blocks[-1].attn
    captured = []
    handle = attn.attn_drop.register_forward_hook(lambda m, i, o: captured.append(o))
    old = attn.fused_attn
    attn.fused_attn = False
    try:
        with torch.no_grad():
            dino.vit.forward_features((images - IMAGENET_MEAN) / IMAGENET_STD)
    finally:
        attn.fused_attn = old
        handle.remove()
    ref = captured[0][:, :, 0, 1:].reshape(2, 6, 14, 14)
    torch.testing.assert_close(dino(images)["cls_attn"], ref, atol=1e-6, rtol=1e-4)


def test_tokens_are_final_normed_patch_tokens(dino, images):
    with torch.no_grad():
        ref = dino.vit.forward_features((images - IMAGENET_MEAN) / IMAGENET_STD)[:, 1:]
    torch.testing.assert_close(dino(images)["tokens"], ref)


def test_frozen_and_no_grad(dino, images):
    assert all(not p.requires_grad for p in dino.parameters())
    dino.train()
    assert not dino.training and not dino.vit.training
    out = dino(images.requires_grad_(True))
    assert not out["keys"].requires_grad


def test_batch_independence(dino, images):
    both = dino(images)["keys"]
    one = dino(images[1:])["keys"]
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-4)


def test_tiny_deterministic_and_rng_independent():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = load_dino(variant="tiny")
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    torch.manual_seed(999)
    torch.rand(10)
    b = load_dino(variant="tiny")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.vit.blocks[0].attn.qkv.weight.std() > 0  # really random, not zeros


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (torch.rand(2, 3, 112, 112), "224x224"),
        (torch.rand(2, 1, 224, 224), "3 channels"),
        (torch.rand(2, 4, 224, 224), "RGB"),
        (torch.rand(3, 224, 224), "batch dimension"),
        ((torch.rand(1, 3, 224, 224) * 255).to(torch.uint8), "float"),
        (torch.rand(1, 3, 224, 224) * 255, "[0,1]"),
        (torch.full((1, 3, 224, 224), float("nan")), "[0,1]"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_images(dino, bad, needle):
    with pytest.raises(AffordError, match="images") as err:
        dino(bad)
    assert needle in str(err.value)


def test_unknown_variant_and_missing_files(tmp_path):
    with pytest.raises(AffordError, match="unknown DINO variant 'vitb8'.*'vits16'"):
        load_dino(variant="vitb8")
    with pytest.raises(AffordError, match="does not exist"):
        load_dino(weights=tmp_path / "nope.pth")
    with pytest.raises(AffordError, match="does not exist"):
        load_dino(weights=tmp_path / "nope.pth", variant="tiny")
    with pytest.raises(AffordError) as err:
        load_dino()  # offline, nothing anywhere
    msg = str(err.value)
    assert "dino_deitsmall16_pretrain.pth" in msg and "AFFORD_WEIGHTS" in msg
    assert "https://dl.fbaipublicfiles.com/dino/" in msg and "offline" in msg

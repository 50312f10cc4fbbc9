"""FunctionalCorrespondenceModel: fusion, pixel sampling convention, head, dense mode."""

import pytest
import torch
import torch.nn.functional as F

from afford.correspondence.model import (
    FunctionalCorrespondenceModel,
    function_prompt,
    pixel_grid,
    points_to_grid,
)
from afford.errors import AffordError

C, T, P, H, O = 6, 5, 4, 16, 3


def _model(mode="paper", mask_head=False, seed=0):
    torch.manual_seed(seed)
    m = FunctionalCorrespondenceModel(
        feat_dim=C, text_dim=T, proj_dim=P, hidden=H, out_dim=O, mask_head=mask_head, mode=mode
    )
    with torch.no_grad():
        m.layer_logits.copy_(torch.tensor([0.3, -1.0, 0.7]))
    return m


def _layers(b=2, h=4, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, C, h, w, generator=g) for _ in range(3)]


def test_function_prompt():
    assert function_prompt("pour-with") == "pour with"
    assert function_prompt("hang_onto") == "hang onto"
    assert function_prompt("roll-onto_x") == "roll onto x"
    assert function_prompt("apply torque") == "apply torque"
    with pytest.raises(AffordError):
        function_prompt("-_")


def test_fuse_matches_per_layer_projection():
    m = _model()
    layers = _layers()
    a = torch.softmax(torch.tensor([0.3, -1.0, 0.7]), 0)
    # independent: project each layer with the shared linear, then weight, then normalise
    proj = [torch.einsum("bchw,pc->bphw", x, m.proj.weight) for x in layers]
    ref = F.normalize(a[0] * proj[0] + a[1] * proj[1] + a[2] * proj[2], dim=1)
    out = m.fuse(layers)
    assert out.shape == (2, P, 4, 4)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, 4, 4))


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_sample_at_cell_centres(mode):
    m = _model(mode)
    h, w, s = 4, 5, 14  # cells of 14 px -> a 56x70 image
    fmap = torch.randn(1, 3, h, w)
    kk, mm = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # centre of cell (k, m) is the continuous coordinate s*k + s/2; a pixel index c sits at
    # c + 0.5 (paper) or c (official)
    off = 0.5 if mode == "paper" else 0.0
    rows = s * kk.flatten() + s / 2 - off
    cols = s * mm.flatten() + s / 2 - off
    pts = torch.stack([rows, cols], -1)[None].float()
    if mode == "official":
        assert torch.equal(pts, pts.round())  # integer pixels 7 + 14k hit the centres
    got = m.sample(fmap, pts, image_size=(h * s, w * s))
    torch.testing.assert_close(got[0], fmap[0].reshape(3, -1).t(), atol=1e-6, rtol=0)
    # halfway between two horizontally adjacent centres: the mean of the two cells
    mid = torch.tensor([[[s * 1 + s / 2 - off, s - off]]])  # col: between 7 and 21
    got = m.sample(fmap, mid, image_size=(h * s, w * s))[0, 0]
    torch.testing.assert_close(got, (fmap[0, :, 1, 0] + fmap[0, :, 1, 1]) / 2, atol=1e-6, rtol=0)
    # pixel (0, 0) lies outside the first centre: clamped to the border cell, not zero-blended
    got = m.sample(fmap, torch.zeros(1, 1, 2), image_size=(h * s, w * s))[0, 0]
    torch.testing.assert_close(got, fmap[0, :, 0, 0], atol=1e-6, rtol=0)


def test_points_to_grid_linear_map():
    g = points_to_grid(torch.tensor([[0.0, 0.0], [223.0, 111.0]]), 224, offset=0.0)
    torch.testing.assert_close(g, torch.tensor([[-1.0, -1.0], [111 / 112 - 1, 223 / 112 - 1]]))
    g = points_to_grid(torch.tensor([[0.0, 223.0]]), 224, offset=0.5)
    torch.testing.assert_close(g, torch.tensor([[223.5 / 112 - 1, 0.5 / 112 - 1]]))  # (x, y)


def test_paper_mode_dense_equals_bilinear_upsampling():
    m = _model("paper")
    fmap = torch.randn(2, 3, 4, 4)
    pts = pixel_grid(32)[None].expand(2, -1, -1)
    got = m.sample(fmap, pts, 32).transpose(1, 2).reshape(2, 3, 32, 32)
    ref = F.interpolate(fmap, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mask_head", [False, True])
def test_forward_matches_explicit_concat_mlp(mask_head):
    m = _model(mask_head=mask_head)
    layers = _layers()
    text = torch.randn(2, T)
    pts = torch.rand(2, 7, 2) * 31
    out = m(layers, pts, text, image_size=32)
    v = m.sample(m.fuse(layers), pts, 32)
    z = F.normalize(torch.cat([v, text[:, None].expand(-1, 7, -1)], -1), dim=-1)
    ref = F.normalize(m.mlp(z), dim=-1)
    torch.testing.assert_close(out["feat"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["feat"].norm(dim=-1), torch.ones(2, 7))
    if mask_head:
        torch.testing.assert_close(out["mask_logit"], m.mask_head(ref)[..., 0], atol=1e-6, rtol=0)
    else:
        assert out["mask_logit"] is None
    # conditioning matters: another function text changes the features
    other = m(layers, pts, torch.randn(2, T), image_size=32)["feat"]
    assert (other - out["feat"]).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_dense_equals_sampled_at_all_pixels_and_chunk_invariant(mode):
    m = _model(mode, mask_head=True)
    layers = _layers(h=3, w=3)
    text = torch.randn(2, T)
    S = 21
    d = m.dense(layers, text, image_size=S, chunk=50)
    assert d["feat"].shape == (2, O, S, S) and d["mask_logit"].shape == (2, S, S)
    pts = pixel_grid(S)[None].expand(2, -1, -1)
    with torch.no_grad():
        ref = m(layers, pts, text, image_size=S)
    torch.testing.assert_close(
        d["feat"].flatten(2).transpose(1, 2), ref["feat"], atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(d["mask_logit"].flatten(1), ref["mask_logit"], atol=1e-6, rtol=1e-5)
    for chunk in (1, 7, 10_000):
        d2 = m.dense(layers, text, image_size=S, chunk=chunk)
        torch.testing.assert_close(d2["feat"], d["feat"], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(d2["mask_logit"], d["mask_logit"], atol=1e-6, rtol=1e-5)


def test_modes_differ_by_half_pixel():
    pm, om = _model("paper"), _model("official")
    fmap = torch.randn(1, 3, 4, 4)
    pts = torch.tensor([[[10.0, 20.0]]])
    torch.testing.assert_close(pm.sample(fmap, pts, 56), om.sample(fmap, pts + 0.5, 56))


def test_text_broadcast_and_batch_independence():
    m = _model()
    layers = _layers()
    t = torch.randn(T)
    pts = torch.rand(2, 5, 2) * 31
    a = m(layers, pts, t, image_size=32)["feat"]
    b = m(layers, pts, t[None].expand(2, -1), image_size=32)["feat"]
    torch.testing.assert_close(a, b)
    one = m([x[1:] for x in layers], pts[1:], t, image_size=32)["feat"]
    torch.testing.assert_close(one[0], a[1], atol=1e-6, rtol=1e-5)


def test_state_dict_names_and_config_roundtrip():
    m = _model(mask_head=True)
    names = set(m.state_dict())
    assert names == {
        "proj.weight", "layer_logits", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
        "mlp.2.bias", "mlp.4.weight", "mask_head.weight", "mask_head.bias",
    }  # fmt: skip
    assert m.proj.weight.shape == (P, C) and m.mlp[4].bias is None
    m2 = FunctionalCorrespondenceModel(**m.config())
    m2.load_state_dict(m.state_dict())
    layers, text, pts = _layers(), torch.randn(2, T), torch.rand(2, 3, 2) * 31
    torch.testing.assert_close(m2(layers, pts, text, 32)["feat"], m(layers, pts, text, 32)["feat"])


def test_default_sizes_match_the_paper():
    m = FunctionalCorrespondenceModel()
    assert m.proj.weight.shape == (512, 768)
    assert [m.mlp[i].weight.shape for i in (0, 2, 4)] == [(1024, 1024), (1024, 1024), (256, 1024)]
    assert m.mask_head is None


def test_bad_inputs_raise():
    m = _model()
    layers = _layers()
    with pytest.raises(AffordError, match="layer_maps"):
        m.fuse(layers[:2])
    with pytest.raises(AffordError, match="feat_dim"):
        m.fuse([torch.randn(2, C + 1, 4, 4)] * 3)
    with pytest.raises(AffordError, match="text"):
        m(layers, torch.zeros(2, 1, 2), torch.randn(2, T + 1))
    with pytest.raises(AffordError, match="points"):
        m(layers, torch.zeros(2, 1, 3), torch.randn(2, T))
    with pytest.raises(AffordError, match="mode"):
        FunctionalCorrespondenceModel(mode="x")
    with pytest.raises(AffordError, match="chunk"):
        m.dense(layers, torch.randn(2, T), image_size=8, chunk=0)

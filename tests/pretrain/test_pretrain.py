"""Self-supervised tiny-backbone pre-training: losses, crop geometry, the recipe
(afford.pretrain) and its renders (afford.synth.pretrain_views)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from afford.backbones import load_dino, load_dinov2
from afford.backbones.weights import save_weights
from afford.config import from_dict
from afford.errors import AffordError
from afford.pretrain import PretrainConfig, pretrain, wrap_backbone
from afford.pretrain.augment import crop_views, image_to_view, sample_crops, view_to_image
from afford.pretrain.losses import dense_loss, dense_pairs, flow_pairs, info_nce, patch_centres
from afford.synth import assets as A
from afford.synth import render as R
from afford.synth.pretrain_views import (
    flow_between,
    render_multiview_pairs,
    render_pretraining_images,
)


def make_cfg(out, family="dino", steps=1, view_size=None, **sections):
    """A PretrainConfig for a short CPU run in ``out``: ``steps`` = epochs x steps_per_epoch
    (one epoch unless ``sections["train"]`` says otherwise); other keys by section."""
    data = {"view_size": view_size or (32 if family == "dino" else 28), **sections.get("data", {})}
    train = {"epochs": 1, "steps_per_epoch": steps, "batch_size": 4, "out": str(out),
             "progress": False, "device": "cpu", **sections.get("train", {})}  # fmt: skip
    model = {"family": family, **sections.get("model", {})}
    return from_dict(PretrainConfig, {"data": data, "model": model, "train": train})


def np_info_nce(q: np.ndarray, k: np.ndarray, tau: float) -> float:
    total = 0.0
    for i in range(len(q)):
        logits = [float(q[i] @ k[j]) / tau for j in range(len(k))]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    return total / len(q)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_info_nce_hand_computation():
    q = unit(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]]))
    k = unit(np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]]))
    got = info_nce(torch.tensor(q), torch.tensor(k), tau=0.5)
    assert float(got) == pytest.approx(np_info_nce(q, k, 0.5), rel=1e-9)


def test_dense_loss_identity_and_half_crop_against_hand_computation():
    g = torch.Generator().manual_seed(3)
    q_map = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64)
    k_map = torch.randn(1, 3, 2, 2, generator=g, dtype=torch.float64)
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    no = torch.tensor([False])
    pts, valid = dense_pairs(full, no, full, no, 2)
    assert valid.all()
    got = dense_loss(q_map, k_map, pts, valid, tau=0.2)
    q = unit(q_map[0].reshape(3, 4).T.numpy())  # row-major patches
    k = unit(k_map[0].reshape(3, 4).T.numpy())
    assert float(got) == pytest.approx(np_info_nce(q, k, 0.2), rel=1e-9)
    # view a = full image (2x2 patches), view b = left half flipped: only the left patch
    # column of a lands in b; patch (r, 0) of a (source col 0.25) is at b's col 1 - 0.5 = 0.5,
    # i.e. halfway between b's two patch columns -> the mean of k's two columns in row r.
    left = torch.tensor([[0.0, 0.0, 1.0, 0.5]], dtype=torch.float64)
    pts, valid = dense_pairs(full, no, left, torch.tensor([True]), 2)
    assert valid[0].tolist() == [True, False, True, False]
    assert torch.allclose(pts[0, [0, 2]], torch.tensor([[0.25, 0.5], [0.75, 0.5]]).double())
    got = dense_loss(q_map, k_map, pts, valid, tau=0.2)
    kk = k_map[0].numpy()
    k_rows = unit(np.stack([kk[:, 0].mean(1), kk[:, 1].mean(1)]))
    q_rows = unit(np.stack([q_map[0, :, 0, 0].numpy(), q_map[0, :, 1, 0].numpy()]))
    assert float(got) == pytest.approx(np_info_nce(q_rows, k_rows, 0.2), rel=1e-9)


def test_crop_mapping_is_exact():
    gen = torch.Generator().manual_seed(0)
    boxes, flips = sample_crops(gen, 16, scale=(0.1, 1.0))
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 1 + 1e-6).all()
    assert (boxes[:, 1] + boxes[:, 3] <= 1 + 1e-6).all() and flips.any() and (~flips).any()
    pts = torch.rand(16, 50, 2, generator=gen, dtype=torch.float64)
    b64 = boxes.double()
    back = image_to_view(view_to_image(pts, b64, flips), b64, flips)
    assert torch.allclose(back, pts, atol=1e-12)
    # hand case: box top .25 left .5 size .5 x .25, flipped: view (0,0) -> source (.25,.75)
    box = torch.tensor([[0.25, 0.5, 0.5, 0.25]], dtype=torch.float64)
    src = view_to_image(
        torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]).double(), box, torch.tensor([True])
    )
    assert torch.allclose(src, torch.tensor([[[0.25, 0.75], [0.75, 0.5]]]).double())
    # crop_views: a coordinate image (value = normalised pixel-centre coordinates, linear, so
    # bilinear sampling is exact) must show view_to_image of each view pixel centre
    h = 40
    c = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    img = torch.stack([c[:, None].expand(h, h), c[None, :].expand(h, h), torch.zeros(h, h)])
    img = img[None].expand(16, -1, -1, -1).contiguous()
    size = 12
    views = crop_views(img, b64, flips, size)
    vc = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    rr, cc = torch.meshgrid(vc, vc, indexing="ij")
    want = view_to_image(torch.stack([rr, cc], -1).reshape(1, -1, 2).expand(16, -1, -1), b64, flips)
    got = views[:, :2].permute(0, 2, 3, 1).reshape(16, -1, 2)
    inner = ((want > 0.5 / h) & (want < 1 - 0.5 / h)).all(-1)  # away from the border clamp
    assert inner.float().mean() > 0.8
    assert torch.allclose(got[inner], want[inner], atol=1e-9)


def test_data_pipeline_reads_rgb_only(monkeypatch, tmp_path):
    """The renders' labels (part ids, masks, depth, points) are never read: poison them."""
    touched = []
    original = R.Scene.render

    class RGBOnly:
        def __init__(self, view):
            self._rgb = view.rgb

        @property
        def rgb(self):
            return self._rgb

        def __getattr__(self, name):
            touched.append(name)
            raise AssertionError(f"pre-training data read View.{name}")

    monkeypatch.setattr(R.Scene, "render", lambda self, *a, **k: RGBOnly(original(self, *a, **k)))
    imgs = render_pretraining_images(3, seed=1, size=48, views_per_asset=2, progress=False)
    assert not touched
    assert isinstance(imgs, np.ndarray) and imgs.dtype == np.uint8
    assert imgs.shape == (3, 2, 48, 48, 3)  # 3 scenes x 2 re-renders (same camera)
    assert imgs.std() > 5  # real renders, not blank
    assert (imgs[:, 0] != imgs[:, 1]).any()  # re-renders differ (light, background)
    # pretrain accepts nothing but a bare uint8 RGB array
    for bad in ({"rgb": imgs}, imgs.astype(np.float32), imgs[..., :1]):
        with pytest.raises(AffordError, match="pretrain: images"):
            pretrain(bad, make_cfg(tmp_path))


@pytest.mark.parametrize("family,view", [("dino", 32), ("dinov2", 28)])
def test_short_pretraining_lowers_loss_and_writes_loadable_file(tmp_path, family, view):
    rng = np.random.default_rng(0)
    # 4 small "renders": smooth random colour blobs (any RGB works; the objective is label-free)
    base = rng.uniform(0, 255, (4, 6, 6, 3))
    imgs = np.kron(base, np.ones((1, 8, 8, 1))).astype(np.uint8)  # (4, 48, 48, 3)
    cfg = make_cfg(
        tmp_path / "run",
        family,
        40,
        view,
        model={"pairs": 64},
        data={"crop_scale": [0.5, 1.0]},
        train={"seed": 0, "lr": 2e-3, "warmup": 0.05, "momentum": [0.99, 0.999]},
    )
    torch.set_num_threads(1)
    res = pretrain(imgs, cfg)
    tot = [h["total"] for h in res.history]
    assert res.steps == 40 and len(tot) == 40
    assert np.mean(tot[-8:]) < np.mean(tot[:8]) - 0.1
    module = wrap_backbone(res.vit.eval(), family, "test")
    path = save_weights(module, tmp_path / "w.safetensors")
    loader = load_dino if family == "dino" else load_dinov2
    loaded = loader(weights=path, variant="tiny")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    a, b = module(x), loaded(x)
    if family == "dino":
        assert torch.equal(a["keys"], b["keys"])
    else:
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    # same seed -> same weights (deterministic)
    w1 = pretrain(imgs, make_cfg(tmp_path / "a", family, 2, view)).vit.state_dict()
    w2 = pretrain(imgs, make_cfg(tmp_path / "b", family, 2, view)).vit.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def _two_views(offset=(1.5, 1.0, 0.7)):
    rng = np.random.default_rng(0)
    scene = R.Scene(A.make_asset("mug", 5))
    cams = [
        R.Camera.look_at(np.array(eye), np.zeros(3), fov_deg=35, width=96, height=96)
        for eye in ((1.8, 0.2, 0.6), offset)
    ]
    return [scene.render(c, background="solid", light=R.random_light(rng), rng=rng) for c in cams]


def test_flow_between_is_the_rendered_geometry():
    va, vb = _two_views()
    g = 24
    pix = np.minimum(((np.arange(g) + 0.5) * 96 / g).astype(int), 95)
    rr, cc = np.meshgrid(pix, pix, indexing="ij")
    # same camera: identity at the sampled pixel centres, valid exactly on the object
    f, v = flow_between(va, va, g)
    assert (v == va.mask[rr, cc]).all() and v.sum() > 20
    assert np.allclose(f[v] * 96 - 0.5, np.stack([rr, cc], -1)[v], atol=1e-4)
    # another camera: the flowed pixel of view b shows the same surface point (3-D check)
    f, v = flow_between(va, vb, g)
    assert 0.5 * va.mask[rr, cc].sum() < v.sum() <= va.mask[rr, cc].sum()
    rb = np.clip(np.round(f[v][:, 0] * 96 - 0.5).astype(int), 0, 95)
    cb = np.clip(np.round(f[v][:, 1] * 96 - 0.5).astype(int), 0, 95)
    err = np.linalg.norm(va.points[rr, cc][v] - vb.points[rb, cb], axis=1)
    assert np.median(err) < 0.02 and vb.mask[rb, cb].all()
    # a camera looking from the opposite side sees almost none of view a's points
    _, vback = flow_between(va, _two_views(offset=(-1.8, -0.2, 0.6))[1], g)
    assert vback.sum() < 0.3 * v.sum()


def test_flow_pairs_with_identity_flow_equals_dense_pairs():
    gen = torch.Generator().manual_seed(1)
    ba, fa = sample_crops(gen, 4, scale=(0.3, 1.0))
    bb, fb = sample_crops(gen, 4, scale=(0.3, 1.0))
    G = 64
    c = (torch.arange(G, dtype=torch.float32) + 0.5) / G
    ident = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1)[None].expand(4, -1, -1, -1)
    pts, valid = flow_pairs(ba, fa, bb, fb, 8, ident, torch.ones(4, G, G, dtype=torch.bool))
    want, wvalid = dense_pairs(ba, fa, bb, fb, 8)
    # the flow is read at the nearest cell centre: at most half a cell (1/128) off in source b
    scale = 1 / bb[:, None, 2:].clamp(min=1e-6)
    assert (valid == wvalid).float().mean() > 0.95
    both = valid & wvalid
    assert ((pts - want).abs() <= 0.5 / G * scale + 1e-6)[both].all()
    # invalid flow cells drop their pairs
    fv = torch.ones(4, G, G, dtype=torch.bool)
    fv[:, : G // 2] = False  # the top half of every source image
    _, v2 = flow_pairs(ba, fa, bb, fb, 8, ident, fv)
    src = view_to_image(patch_centres(8)[None].expand(4, -1, -1), ba, fa)
    assert not v2[src[..., 0] < 0.5].any()


def test_multiview_pretraining_takes_its_pairs_through_the_flow(tmp_path):
    mv = render_multiview_pairs(8, seed=0, size=112, grid=28, progress=False)
    assert mv.images.shape == (8, 2, 112, 112, 3) and mv.flow.shape == (8, 2, 28, 28, 2)
    assert 0.05 < mv.valid.mean() < 0.9
    cfg = make_cfg(tmp_path, "dinov2", 6, 56, train={"lr": 2e-3}, model={"pairs": 64})
    res = pretrain(mv.images, cfg, flow=mv.flow, valid=mv.valid)
    assert res.steps == 6 and all(np.isfinite(h["total"]) for h in res.history)
    dense = [v for k, v in res.history[0].items() if k.startswith("dense:")]
    assert dense and all(v > 0.5 for v in dense)  # real pairs, not the empty-set 0

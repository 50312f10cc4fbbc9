import numpy as np
import pytest
import torch
from corr_config import experiment

from afford.config import replace
from afford.correspondence.featbank import FeatureBank, bank_generator, build_feature_bank
from afford.correspondence.sampling import PairSampler, build_training_set, randomize_background
from afford.correspondence.text import encode_functions
from afford.correspondence.train import (
    _Sampler,
    batch_losses,
    build_model,
    feature_bank,
    load_encoders,
    train,
)
from afford.data.correspondence import CorrespondenceDataset
from afford.errors import AffordError

SMALL = dict(
    dinov2="tiny", clip="tiny", proj_dim=32, hidden=64, out_dim=16, device="cpu", progress=False
)


@pytest.fixture(scope="module")
def tset(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    return build_training_set(ds, ds.asset_ids("train"))


@pytest.fixture(scope="module")
def dino():
    return load_encoders(experiment(**SMALL))[0]


def test_bank_rows_are_the_backbone_on_the_randomised_views(tset, dino):
    imgs, masks = tset.images[:3], tset.masks[:3]
    bank = build_feature_bank(dino, imgs, masks, augs=2, seed=5, batch=4, progress=False)
    assert bank.n_views == 3 and bank.augs == 2 and len(bank.maps) == 3
    # rows 0..3 (view 0 aug 0, view 0 aug 1, view 1 aug 0, view 1 aug 1) form chunk 0
    idx = torch.tensor([0, 0, 1, 1])
    x = randomize_background(
        torch.from_numpy(imgs)[idx], torch.from_numpy(masks)[idx], bank_generator(5, 0)
    )
    with torch.no_grad():
        ref = dino(x)
    got = bank.gather(torch.tensor([1, 0]), torch.tensor([1, 0]))
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32 and g.shape == (2, *r.shape[1:])
        torch.testing.assert_close(g[0], r[3], atol=2e-2, rtol=1e-2)
        torch.testing.assert_close(g[1], r[0], atol=2e-2, rtol=1e-2)
    # two randomisations of one view differ (the background changed), the object does not
    assert not torch.allclose(ref[0][0], ref[0][1])
    # deterministic in the seed, different across seeds
    again = build_feature_bank(dino, imgs, masks, augs=2, seed=5, batch=4, progress=False)
    other = build_feature_bank(dino, imgs, masks, augs=2, seed=6, batch=4, progress=False)
    assert torch.equal(again.maps[0], bank.maps[0])
    assert not torch.equal(other.maps[0], bank.maps[0])


def test_bank_rejects_bad_indices_and_shapes():
    bank = FeatureBank([torch.zeros(6, 2, 1, 1, dtype=torch.float16)], augs=2)
    assert bank.n_views == 3 and bank.nbytes == 6 * 2 * 2
    with pytest.raises(AffordError, match="view index"):
        bank.gather(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(AffordError, match="augmentation index"):
        bank.gather(torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(AffordError, match="multiple"):
        FeatureBank([torch.zeros(5, 2, 1, 1)], augs=2)
    with pytest.raises(AffordError, match="augs"):
        build_feature_bank(torch.nn.Identity(), np.zeros((1, 4, 4, 3), np.uint8),
                           np.ones((1, 4, 4), bool), augs=0)  # fmt: skip


def test_sampler_with_bank_draws_the_same_points_and_indexes_the_bank(tset):
    plain = PairSampler(tset, pairs=3, n_points=8, n_spatial=8, seed=1).batch(4)
    banked = PairSampler(tset, pairs=3, n_points=8, n_spatial=8, seed=1, feature_augs=3).batch(4)
    assert "images" not in banked and banked["augs"].shape == (9,)
    assert int(banked["augs"].min()) >= 0 and int(banked["augs"].max()) < 3
    for k in ("part0", "non0", "part1", "non1", "src", "dst", "views", "function"):
        assert torch.equal(plain[k], banked[k]), k
    assert plain["images"].shape[0] == plain["views"].shape[0] == 9


def test_banked_losses_match_the_backbone_on_the_same_images(tset, dino):
    """With K = 1 the bank holds exactly one randomisation per view; feeding the backbone those
    images gives the same losses (up to the half-float storage)."""
    cfg = experiment(**SMALL, pairs=2, points=8, spatial_points=8, feature_augs=1)
    text = encode_functions(load_encoders(cfg)[1], tset.functions)
    bank = feature_bank(cfg, tset, dino)
    torch.manual_seed(0)
    model = build_model(cfg, dino.feat_dim, text.shape[1])
    b = _Sampler(tset, cfg, 0, feature_augs=1).batch(0)
    got = batch_losses(model, dino, text, b, cfg, bank)
    # rebuild the same images: view v is row v of the bank, drawn in chunks of 32 rows
    views = b["views"]
    chunk_imgs = []
    for c in range(0, tset.images.shape[0], 32):
        idx = torch.arange(c, min(c + 32, tset.images.shape[0]))
        chunk_imgs.append(
            randomize_background(
                torch.from_numpy(tset.images)[idx],
                torch.from_numpy(tset.masks)[idx],
                bank_generator(cfg.train.seed, c // 32),
                cfg.sampling.noise,
                cfg.sampling.p_noise,
            )
        )
    live = {**b, "images": torch.cat(chunk_imgs)[views]}
    del live["augs"]
    ref = batch_losses(model, dino, text, live, cfg)
    for k in ref:
        assert float(got[k].detach()) == pytest.approx(float(ref[k].detach()), abs=2e-3), k
    with pytest.raises(AffordError, match="feature bank"):
        batch_losses(model, dino, text, b, cfg)


def test_training_with_a_bank_learns(tiny_root, tmp_path):
    cfg = experiment(
        root=str(tiny_root),
        out=str(tmp_path / "run"),
        epochs=1,
        iters_per_epoch=24,
        val_fraction=0.0,
        pairs=4,
        points=16,
        spatial_points=16,
        lr=2e-3,
        feature_augs=2,
        resume=False,
        **SMALL,
    )
    res = train(cfg)
    hist = [r["total"] for r in res["state"]["history"]]
    assert len(hist) == 24
    assert np.mean(hist[-6:]) < np.mean(hist[:6]) - 0.05
    with pytest.raises(AffordError, match="feature bank"):
        bad = FeatureBank([torch.zeros(2, 1, 1, 1)], augs=1)
        train(replace(cfg, train=replace(cfg.train, out=str(tmp_path / "x"))), bank=bad)


class _Counting(torch.nn.Module):
    """A backbone wrapper that counts forward calls and can fail on call ``fail_at``."""

    def __init__(self, inner, fail_at=None):
        super().__init__()
        self.inner, self.calls, self.fail_at = inner, 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed mid-build")
        return self.inner(x)


def test_bank_cache_resumes_an_interrupted_build_and_refuses_another_bank(tset, dino, tmp_path):
    imgs, masks = tset.images[:5], tset.masks[:5]
    kw = dict(augs=2, seed=5, batch=4, progress=False)  # 10 rows -> 3 chunks
    ref = build_feature_bank(dino, imgs, masks, **kw)
    cache = tmp_path / "bank"
    broken = _Counting(dino, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        build_feature_bank(broken, imgs, masks, cache_dir=cache, **kw)
    assert sorted(p.name for p in cache.glob("chunk_*")) == ["chunk_000000.safetensors",
                                                            "chunk_000001.safetensors"]  # fmt: skip
    assert not list(cache.glob("*.tmp*"))  # nothing half-written is left as a chunk
    resumed = _Counting(dino)
    bank = build_feature_bank(resumed, imgs, masks, cache_dir=cache, **kw)
    assert resumed.calls == 1  # only the missing chunk was computed
    for a, b in zip(bank.maps, ref.maps):
        assert torch.equal(a, b)  # the resumed bank is the uninterrupted one, bit for bit
    again = _Counting(dino)
    build_feature_bank(again, imgs, masks, cache_dir=cache, **kw)
    assert again.calls == 0
    with pytest.raises(AffordError, match="other settings, data or backbone"):
        build_feature_bank(dino, imgs, masks, cache_dir=cache, **{**kw, "seed": 6})

import numpy as np
import pytest
import torch

from afford.correspondence.sampling import (
    PairSampler,
    build_training_set,
    choose,
    randomize_background,
    sample_mask_points,
    step_generator,
)
from afford.data.correspondence import CorrespondenceDataset
from afford.errors import AffordError


@pytest.fixture(scope="module")
def train_set(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    return build_training_set(ds, ds.asset_ids("train"))


def test_choose_distinct_and_fallback():
    gen = step_generator(0, 0)
    counts = torch.tensor([500, 5, 1])
    idx = choose(counts, 8, gen)
    assert idx.shape == (3, 8)
    assert len(set(idx[0].tolist())) == 8 and idx[0].max() < 500
    assert set(idx[1, :5].tolist()) == set(range(5)) and idx[1].max() < 5
    assert (idx[2] == 0).all()


def test_sample_mask_points_inside_and_uniform():
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 2:4, 3:5] = True  # 4 pixels
    masks[1, 5, :] = True
    pts = sample_mask_points(masks, 4000, step_generator(1, 2))
    for b in range(2):
        assert masks[b, pts[b, :, 0], pts[b, :, 1]].all()
    # uniform over the 4 pixels of mask 0 (first 4 distinct, rest with replacement)
    _, counts = torch.unique(pts[0, :, 0] * 12 + pts[0, :, 1], return_counts=True)
    assert counts.numel() == 4 and (counts - 1000).abs().max() < 150


def test_background_randomisation_keeps_object():
    img = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    mask = torch.zeros(6, 16, 16, dtype=torch.bool)
    mask[:, 4:10, 4:10] = True
    out = randomize_background(img, mask, step_generator(0, 5))
    assert out.shape == (6, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out.permute(0, 2, 3, 1)[mask], img[mask].float() / 255)
    # backgrounds differ between images
    bg = out.permute(0, 2, 3, 1)[:, 0, 0]
    assert torch.unique(bg, dim=0).shape[0] == 6


def test_training_set_drops_invalid_and_indexes(train_set):
    ts = train_set
    # 4 train assets x 4 views x 2 functions, minus the one invalid pseudo label
    assert ts.n_items == 4 * 4 * 2 - 1
    assert ts.images.shape == (16, 224, 224, 3)
    assert not (ts.part & ~ts.masks[ts.item_view]).any()


def test_batches_points_masks_and_correspondences(train_set):
    ts = train_set
    sampler = PairSampler(ts, pairs=6, n_points=32, n_spatial=24, seed=3)
    b = sampler.batch(7)
    p = 6
    assert b["images"].shape == (3 * p, 3, 224, 224)
    i0, i1 = b["item0"].numpy(), b["item1"].numpy()
    assert (i0 != i1).all()
    assert (ts.item_function[i0] == b["function"].numpy()).all()
    assert (ts.item_function[i1] == b["function"].numpy()).all()
    for k in range(p):
        part0, part1 = ts.part[i0[k]], ts.part[i1[k]]
        obj0, obj1 = ts.masks[ts.item_view[i0[k]]], ts.masks[ts.item_view[i1[k]]]
        r, c = b["part0"][k].T.numpy()
        assert part0[r, c].all()
        r, c = b["non0"][k].T.numpy()
        assert (obj0[r, c] & ~part0[r, c]).all()
        r, c = b["part1"][k].T.numpy()
        assert part1[r, c].all()
        r, c = b["non1"][k].T.numpy()
        assert (obj1[r, c] & ~part1[r, c]).all()
        # spatial: same asset, another view; src in the part; colours (object coords) agree
        v0, v2 = ts.item_view[i0[k]], int(b["view2"][k])
        assert v0 != v2 and ts.view_asset[v0] == ts.view_asset[v2]
        src = np.rint(b["src"][k].numpy()).astype(int)
        dst = np.rint(b["dst"][k].numpy()).astype(int)
        assert part0[src[:, 0], src[:, 1]].all()
        c0 = ts.images[v0][src[:, 0], src[:, 1], :2].astype(float)
        c2 = ts.images[v2][dst[:, 0], dst[:, 1], :2].astype(float)
        assert np.abs(c0 - c2).mean() < 6
        assert len({tuple(x) for x in b["src"][k].tolist()}) == 24  # distinct points


def test_batches_are_deterministic_per_step(train_set):
    ts = train_set
    a = PairSampler(ts, pairs=3, n_points=8, n_spatial=8, seed=1)
    b = PairSampler(ts, pairs=3, n_points=8, n_spatial=8, seed=1)
    b.batch(0), b.batch(1)  # consuming other steps first changes nothing
    x, y = a.batch(2), b.batch(2)
    for key in x:
        assert torch.equal(x[key], y[key]), key
    z = a.batch(3)
    assert not torch.equal(x["part0"], z["part0"])
    c = PairSampler(ts, pairs=3, n_points=8, n_spatial=8, seed=2).batch(2)
    assert not torch.equal(x["images"], c["images"])


def test_object_region_spatial_correspondences(tiny_root, train_set):
    """spatial_region="object" (paper Eq. 2): the image-0 ends lie anywhere on the object, the
    rows are stored once per view pair and every item of a view indexes the same groups."""
    ds = CorrespondenceDataset(tiny_root)
    obj = build_training_set(ds, ds.asset_ids("train"), spatial_region="object")
    part = train_set
    assert obj.n_items == part.n_items and np.array_equal(obj.part, part.part)
    # more correspondences per group, and rows outside the parts
    assert obj.group_count.mean() > part.group_count.mean()
    b = PairSampler(obj, pairs=6, n_points=8, n_spatial=24, seed=3).batch(2)
    outside = 0
    for k in range(6):
        i0 = int(b["item0"][k])
        v0, v2 = obj.item_view[i0], int(b["view2"][k])
        assert v0 != v2 and obj.view_asset[v0] == obj.view_asset[v2]
        src = np.rint(b["src"][k].numpy()).astype(int)
        dst = np.rint(b["dst"][k].numpy()).astype(int)
        assert obj.masks[v0][src[:, 0], src[:, 1]].all()
        outside += int((~obj.part[i0][src[:, 0], src[:, 1]]).sum())
        c0 = obj.images[v0][src[:, 0], src[:, 1], :2].astype(float)
        c2 = obj.images[v2][dst[:, 0], dst[:, 1], :2].astype(float)
        assert np.abs(c0 - c2).mean() < 6
    assert outside > 0
    # the items of one view share its groups (same rows, other function)
    v = obj.item_view[0]
    same_view = np.flatnonzero(obj.item_view == v)
    assert same_view.size == 2
    g = [obj.group_start[obj.item_groups[i] : obj.item_groups[i + 1]] for i in same_view]
    assert np.array_equal(g[0], g[1])
    with pytest.raises(AffordError, match="spatial_region"):
        build_training_set(ds, ds.asset_ids("train"), spatial_region="everywhere")

import json
import shutil

import numpy as np
import pytest

from afford.correspondence.sampling import PairSampler, build_training_set
from afford.data.correspondence import CorrespondenceDataset
from afford.data.crops import view_to_crop
from afford.errors import AffordError


def test_reads_manifest_and_views(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    assert ds.functions == ["hold", "pour-with"]
    assert ds.asset_ids("train") == ["mug_000", "kettle_001", "mug_002", "kettle_003"]
    assert ds.asset_ids("test") == ["mug_004", "kettle_005"]
    v = ds.views("mug_000")
    assert v["mask"].shape == (4, 96, 96) and v["pseudo_mask"].shape == (4, 2, 96, 96)
    assert not v["pseudo_valid"][2, 0] and v["pseudo_valid"][2, 1]
    assert ds.rgb("mug_000", 1).shape == (96, 96, 3)


def test_crop_view_matches_crop_formula(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    crop = ds.crop_view("kettle_001", 1)
    box = ds.views("kettle_001")["crop_box"][1]
    assert crop["image"].shape == (224, 224, 3) and crop["mask"].shape == (224, 224)
    # the object bbox in the crop is centred and spans 1/1.2 of the crop side
    rows, cols = np.nonzero(crop["mask"])
    span = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    assert abs(span - 224 / 1.2) < 4
    # every masked view pixel maps inside the crop's mask (nearest neighbour at the centre)
    rr, cc = np.nonzero(ds.views("kettle_001")["mask"][1])
    pc = np.rint(view_to_crop(np.stack([rr, cc], 1), box)).astype(int)
    assert crop["mask"][pc[:, 0], pc[:, 1]].mean() > 0.97
    # pseudo masks lie inside the object mask
    assert not (crop["pseudo_mask"] & ~crop["mask"]).any()


def test_eval_pairs(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    pairs = ds.eval_pairs("test")
    assert len(pairs) == 2 and pairs[0].function == "pour-with" and pairs[0].cross_category
    d = ds.load_pair(pairs[0])
    assert d["image1"].shape == (224, 224, 3)
    assert d["points1"].shape == d["points2"].shape
    assert d["part_mask1"][d["points1"][:, 0], d["points1"][:, 1]].all()
    # points2 carry the same colour (object coordinates) as points1 up to crop resampling
    c1 = d["image1"][d["points1"][:, 0], d["points1"][:, 1], :2].astype(float)
    c2 = d["image2"][d["points2"][:, 0], d["points2"][:, 1], :2].astype(float)
    assert np.abs(c1 - c2).mean() < 12


def test_bad_layouts_name_the_file(tiny_root, tmp_path):
    with pytest.raises(AffordError, match="dataset.json"):
        CorrespondenceDataset(tmp_path)
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    ds = CorrespondenceDataset(root)
    # drop a required array from views.npz
    v = dict(np.load(root / "assets/mug_000/views.npz"))
    del v["crop_box"]
    np.savez_compressed(root / "assets/mug_000/views.npz", **v)
    with pytest.raises(AffordError, match=r"views\.npz.*crop_box"):
        ds.views("mug_000")
    # a split that names an unknown asset
    meta = json.loads((root / "dataset.json").read_text())
    meta["splits"]["train"].append("ghost_999")
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(AffordError, match="ghost_999"):
        CorrespondenceDataset(root)
    # wrong shape
    meta["splits"]["train"].remove("ghost_999")
    meta["assets"]["kettle_001"]["image_size"] = [64, 64]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(AffordError, match=r"kettle_001/views\.npz.*shape"):
        CorrespondenceDataset(root).views("kettle_001")


def test_reads_the_synthetic_writer_output(synth_root):
    ds = CorrespondenceDataset(synth_root)
    assert set(ds.asset_ids("train")) | set(ds.asset_ids("val")) | set(ds.asset_ids("test")) == set(
        ds.assets
    )
    aid = ds.asset_ids("train")[0]
    crop = ds.crop_view(aid, 0)
    assert crop["image"].shape == (224, 224, 3) and crop["mask"].any()
    for pair in ds.eval_pairs("test"):
        d = ds.load_pair(pair)
        # GT points lie on the GT functional parts and object masks of both crops
        assert d["mask1"][d["points1"][:, 0], d["points1"][:, 1]].all()
        assert d["part_mask2"][d["points2"][:, 0], d["points2"][:, 1]].all()
    ts = build_training_set(ds, ds.asset_ids("train"))
    b = PairSampler(ts, pairs=2, n_points=8, n_spatial=8, seed=0).batch(0)
    assert b["images"].shape == (6, 3, 224, 224)

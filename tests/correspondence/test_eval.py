import json

import numpy as np
import pytest
import torch

from afford.correspondence.baselines import (
    ChanceRow,
    ModelRow,
    PartBoxRow,
    box_to_mask,
    gt_part_masks,
    raw_backbone_features,
)
from afford.correspondence.evaluate import KS, evaluate_direction, evaluate_rows, table_markdown
from afford.correspondence.model import FunctionalCorrespondenceModel
from afford.data.correspondence import CorrespondenceDataset
from afford.errors import AffordError


def _oracle(points, size=32, n=None):
    """Features where GT point i is the basis vector e_i and every other pixel is e_n."""
    n = n or len(points)
    feat = torch.zeros(n + 1, size, size)
    feat[n] = 1.0
    for i, (r, c) in enumerate(points):
        feat[:, r, c] = 0
        feat[i, r, c] = 1.0
    return {"feat": feat, "part": None}


def test_oracle_features_score_perfectly():
    p1 = np.array([[3, 4], [10, 12], [20, 5]])
    p2 = np.array([[25, 1], [7, 7], [15, 25]])
    mask = np.ones((32, 32), bool)
    m, pred = evaluate_direction(_oracle(p1), _oracle(p2), p1, p2, mask, mask, discovery_stride=1)
    assert np.array_equal(pred, p2)
    assert m["norm_dist"] == 0 and all(m[f"pck@{k}"] == 1 for k in KS)
    # transfer of a shifted prediction: error exactly 5 px for every point
    p2s = p2 + np.array([3, 4])
    m2, _ = evaluate_direction(_oracle(p1), _oracle(p2s), p1, p2, mask, mask)
    assert m2["norm_dist"] == np.float64(5 / 223).item()
    assert m2["pck@5"] == 1 and all(f"best_f1@{k}" in m2 and f"ap@{k}" in m2 for k in KS)


def test_raw_backbone_features_average_of_normalised_layers():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = 3.0  # direction e0
    b = torch.zeros(1, 2, 2, 2)
    b[0, 1] = 0.5  # direction e1
    f = raw_backbone_features([a, b], size=4)
    assert f.shape == (1, 2, 4, 4)
    assert torch.allclose(f[0, :, 1, 1], torch.tensor([2**-0.5, 2**-0.5]))


def test_box_to_mask_inclusive_pixel_centres():
    m = box_to_mask(np.array([1.5, 0.0, 3.0, 2.0]), 5)  # cols 2..3, rows 0..2
    assert m.sum() == 6 and m[0:3, 2:4].all()
    assert box_to_mask(np.array([np.nan] * 4), 5) is None


def test_results_json_keys_and_split(tiny_root, tmp_path):
    ds = CorrespondenceDataset(tiny_root)

    def gt_box(data, side):
        r, c = np.nonzero(data[f"part_mask{side}"])
        return np.array([c.min(), r.min(), c.max(), r.max()], float)

    rows = [ChanceRow(0), PartBoxRow(ChanceRow(1), gt_box, name="box+chance")]
    res = evaluate_rows(ds, rows, out_dir=tmp_path, discovery_stride=4, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved) == {"settings", "chance", "box+chance"}
    keys = (
        {"n", "norm_dist", "distinct"}
        | {f"pck@{k}" for k in KS}
        | {f"best_f1@{k}" for k in KS}
        | {f"ap@{k}" for k in KS}
    )
    for row in ("chance", "box+chance"):
        assert set(saved[row]["overall"]) == keys
        # 2 pairs x 2 directions, both cross-category in the tiny set
        assert saved[row]["overall"]["n"] == 4 and saved[row]["across_category"]["n"] == 4
        assert saved[row]["within_category"] == {"n": 0}
        assert {r["direction"] for r in saved[row]["per_pair"]} == {"forward", "backward"}
    # restricting chance to the GT part box can only bring predictions closer
    assert res["box+chance"]["overall"]["pck@23"] > res["chance"]["overall"]["pck@23"]
    assert (tmp_path / "pr_chance.png").is_file() and (
        tmp_path / "matches_chance_p00000.png"
    ).is_file()
    assert "| chance |" in table_markdown(res)


class _FakeDino(torch.nn.Module):
    """Three 4-channel 16x16 maps: the image mean-pooled to 16x16 plus a constant channel."""

    device = torch.device("cpu")

    def forward(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images, 16)
        m = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        return [m, 2 * m, 3 * m]


class _FakeClip:
    model_id = "fake-clip"

    def encode_text(self, texts):
        return torch.stack([torch.full((8,), float(len(t))) for t in texts])


def test_model_row_mask_head_part_and_unknown_function():
    torch.manual_seed(0)
    model = FunctionalCorrespondenceModel(
        feat_dim=4, text_dim=8, proj_dim=8, hidden=16, out_dim=8, mask_head=True
    )
    with torch.no_grad():  # mask logit > 0 exactly where feature 0 > 0
        model.mask_head.weight.zero_()
        model.mask_head.weight[0, 0] = 1.0
        model.mask_head.bias.zero_()
    row = ModelRow(model, _FakeDino(), _FakeClip(), ["pour-with"])
    img = (np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)
    mask = np.zeros((224, 224), bool)
    mask[50:150, 60:170] = True
    out = row.features(img, mask, "pour-with")
    assert out["feat"].shape == (8, 224, 224)
    assert np.array_equal(out["part"], (out["feat"][0] > 0).numpy() & mask)
    with pytest.raises(AffordError, match="known functions: pour-with"):
        row.features(img, mask, "cut-with")


def test_gt_part_region_restricts_chance_to_the_part(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    data = ds.load_pair(ds.eval_pairs("test")[0])
    row = PartBoxRow(ChanceRow(3), gt_part_masks, name="chance in GT part")
    region2 = row.region(data, 2, data["mask2"])
    assert region2.sum() > 0 and np.array_equal(region2, data["part_mask2"] & data["mask2"])
    f1 = row.features(data["image1"], data["mask1"], data["function"])
    f2 = row.features(data["image2"], data["mask2"], data["function"])
    _, pred = evaluate_direction(
        f1, f2, data["points1"], data["points2"], row.region(data, 1, data["mask1"]), region2
    )
    assert region2[pred[:, 0], pred[:, 1]].all()  # every transferred point lands in the part
    assert row.misses == 0
    with pytest.raises(AffordError, match="part_mask2"):
        row.region({**data, "part_mask2": None}, 2, data["mask2"])
    with pytest.raises(AffordError, match="shape"):
        row.region({**data, "part_mask1": data["part_mask1"][:-1]}, 1, data["mask1"])

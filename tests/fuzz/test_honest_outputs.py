"""Honest outputs: a model below chance is flagged (both tasks' evaluations and CLIs), and the
same seed on the same machine gives identical metrics (train and eval)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "grounding"))
sys.path.insert(0, str(Path(__file__).parents[1] / "correspondence"))
from gtrain_helpers import tiny_config, write_tree  # noqa: E402
from tiny_data import write_tiny_dataset  # noqa: E402

import afford.grounding.evaluate as gev
from afford.cli import main
from afford.config import to_dict
from afford.correspondence.baselines import ChanceRow
from afford.correspondence.evaluate import evaluate_rows
from afford.data.correspondence import CorrespondenceDataset
from afford.engine import save_checkpoint
from afford.grounding.model import GroundingModel
from afford.grounding.train import train
from afford.metrics.correspondence import label_transfer, label_transfer_chance
from afford.metrics.saliency import evaluate_map


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def grounding_ckpt(tree, tmp_path_factory):
    """An untrained grounding checkpoint for the tiny tree's classes (no training needed)."""
    exp = tiny_config(tree, tmp_path_factory.mktemp("run"))
    torch.manual_seed(0)
    model = GroundingModel(exp.model.build(class_names=["cut_with", "hold"], feat_dim=96))
    conf = to_dict(exp)
    conf["model"].update(class_names=["cut_with", "hold"], feat_dim=96)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ck", model, conf)


def _fake_scores(kind: str):
    """``score_split`` stand-in whose map is the GT ("oracle") or its negative ("inverted")."""

    def score_split(model, dino, evalset, batch_size=16, progress=False):
        rows = []
        for i in range(len(evalset)):
            item = evalset.item(i)
            gt = item["gt"].numpy()
            pred = gt if kind == "oracle" else 1.0 - gt
            rec = item["record"]
            rows.append({**evaluate_map(pred, gt), "affordance": rec.affordance,
                         "object": rec.obj, "path": str(rec.path)})  # fmt: skip
        return rows

    return score_split


@pytest.mark.parametrize("kind, flagged", [("inverted", True), ("oracle", False)])
def test_grounding_below_chance_is_flagged(grounding_ckpt, tree, tmp_path, monkeypatch, capsys,
                                           kind, flagged):  # fmt: skip
    monkeypatch.setattr(gev, "score_split", _fake_scores(kind))
    out = tmp_path / "ev"
    code = main(["eval", "grounding", "--checkpoint", str(grounding_ckpt), "--data", str(tree),
                 "--out", str(out), "--no-figures", "--device", "cpu"])  # fmt: skip
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    c = res["chance"]
    assert c["what"] == "uniform map" and c["n"] == res["n"] > 0
    assert res["under_chance"] is flagged
    assert res["below_chance"] == (["kld", "sim", "nss"] if flagged else [])
    assert (res["kld"] > c["kld"]) is flagged and (res["sim"] < c["sim"]) is flagged
    assert ("below chance" in capsys.readouterr().err) is flagged


def test_grounding_chance_row_is_the_uniform_map(grounding_ckpt, tree, tmp_path):
    res = gev.evaluate(grounding_ckpt, data_root=tree, out=tmp_path / "e", figures=False,
                       progress=False, device="cpu")  # fmt: skip
    # uniform: no fixation signal (the one 0 pixel of the map can sit on a GT blob, so ~0)
    assert abs(res["chance"]["nss"]) < 0.05 and res["chance"]["sim"] > 0
    assert res["below_chance"] == gev.below_chance(res, res["chance"])


class _ConstantRow:
    """Every pixel alike: label transfer lands on one pixel, far from most GT points."""

    name = "constant"

    def features(self, image, mask, function):
        return {"feat": torch.ones(4, *image.shape[:2]), "part": None}


@pytest.fixture(scope="module")
def corr_root(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tinycorr"))


def test_correspondence_below_chance_is_flagged(corr_root):
    ds = CorrespondenceDataset(corr_root)
    res = evaluate_rows(ds, [_ConstantRow(), ChanceRow(seed=0)], discovery_stride=8,
                        progress=False)  # fmt: skip
    chance = res["settings"]["transfer_chance"]["overall"]
    const = res["constant"]
    assert const["under_chance"] and "pck@23" in const["below_chance"]
    assert const["overall"]["pck@23"] < chance["pck@23"]
    # the random row draws what label_transfer_chance computes in expectation
    assert abs(res["chance"]["overall"]["pck@23"] - chance["pck@23"]) < 0.15


def test_label_transfer_chance_is_the_expectation():
    rng = np.random.default_rng(0)
    region = np.zeros((40, 50), bool)
    region[5:30, 10:45] = True
    gt = np.argwhere(region)[rng.choice(region.sum(), 20, replace=False)].astype(float)
    exact = label_transfer_chance(gt, region, thresholds=(10, 5))
    pix = np.argwhere(region)
    draws = [label_transfer(pix[rng.integers(0, len(pix), len(gt))], gt, thresholds=(10, 5))
             for _ in range(3000)]  # fmt: skip
    for k in exact:
        assert exact[k] == pytest.approx(np.mean([d[k] for d in draws]), rel=0.03, abs=2e-3)


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_metrics_train_and_eval(tree, tmp_path):
    """Two runs of the same tiny training (seed 0, this machine, this thread count) give the
    same history and test metrics to the last bit."""
    results = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        res = train(tiny_config(tree, run, epochs=1, max_batches_per_epoch=2))
        ev = gev.evaluate(run, out=tmp_path / f"ev{i}", figures=False, progress=False,
                          device="cpu")  # fmt: skip
        results.append((res["history"], {k: ev[k] for k in ("kld", "sim", "nss")},
                        [r["kld"] for r in ev["per_image"]]))  # fmt: skip
    assert results[0] == results[1]


def test_same_seed_same_correspondence_eval(corr_root):
    ds = CorrespondenceDataset(corr_root)
    a, b = (evaluate_rows(ds, [ChanceRow(seed=3)], discovery_stride=4, progress=False)
            for _ in range(2))  # fmt: skip
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)

"""Tiny end-to-end training on the synthetic world: loss goes down, beats a uniform map."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gtrain_helpers import synth_tiny, tiny_config, tiny_run  # noqa: E402

from afford.config import from_dict, load
from afford.data.io import read_gray
from afford.errors import AffordError
from afford.grounding.config import GroundingConfig, GroundingExperiment, GroundingTrain
from afford.grounding.evaluate import evaluate
from afford.grounding.model import GroundingModel
from afford.grounding.train import build_optimizer, param_groups, train
from afford.metrics.saliency import resize_bilinear


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "grounding_train"


def uniform_kld(gt_png) -> float:
    """KLD of a uniform prediction (p = 1/N) against a GT png, REFERENCE_NOTES B formula."""
    g = resize_bilinear(read_gray(gt_png).astype(np.float64) / 255.0, 224)
    g = g / (g.sum() + 1e-12)
    p = np.full_like(g, 1.0 / g.size)
    return float(np.sum(g * np.log(g / (p + 1e-12) + 1e-12)))


@pytest.mark.slow
def test_tiny_train_lowers_the_loss_and_beats_uniform(base):
    run, res = tiny_run(base)
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[1]["train"]["total"] < hist[0]["train"]["total"]
    assert hist[1]["train"]["ce_ego"] < hist[0]["train"]["ce_ego"]
    assert res["select"] == "val_kld"  # the synthetic world has train GT: KLD on val
    assert all(np.isfinite(h["val"]["val_kld"]) for h in hist)
    assert (run / "best" / "model.safetensors").is_file() and (run / "history.json").is_file()
    out = evaluate(run, "test", out=base / "eval_tiny", progress=False)
    saved = json.loads((base / "eval_tiny" / "results.json").read_text())
    assert saved["n"] == out["n"] == len(out["per_image"]) > 0
    assert set(saved["per_affordance"]) == {"cut_with", "drink_with", "hold"}
    assert sum(v["n"] for v in saved["per_affordance"].values()) == saved["n"]
    mean_kld = np.mean([r["kld"] for r in out["per_image"]])
    assert saved["kld"] == pytest.approx(mean_kld)
    uni = np.mean([uniform_kld(base / "synth" / "Unseen" / "testset" / "GT" / r["affordance"] / r["object"]
                               / (r["path"].rsplit("/", 1)[1].rsplit(".", 1)[0] + ".png"))
                   for r in out["per_image"]])  # fmt: skip
    assert saved["kld"] < uni
    assert (base / "eval_tiny" / "examples.png").is_file()
    assert (base / "eval_tiny" / "per_affordance.png").is_file()


@pytest.mark.slow
def test_resume_continues_from_last(base, tmp_path):
    run, res = tiny_run(base)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cfg = tiny_config(synth_tiny(base) / "Unseen", copy, epochs=3)
    more = train(cfg)
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3]
    for a, b in zip(more["history"][:2], res["history"]):
        assert a["train"]["total"] == pytest.approx(b["train"]["total"])


@pytest.mark.slow
def test_select_on_test_is_explicit(base, tmp_path):
    cfg = tiny_config(
        synth_tiny(base) / "Unseen", tmp_path / "r", epochs=1, max_batches_per_epoch=1,
        select_on_test=True,
    )  # fmt: skip
    res = train(cfg)
    assert res["select"] == "test_kld"
    assert "test_kld" in res["history"][0]["val"]


def test_official_param_groups():
    model = GroundingModel(GroundingConfig(class_names=["a", "b"], feat_dim=8))
    cfg = GroundingTrain()
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    names = {n: p for n, p in model.named_parameters()}
    lr = {id(p): g["lr"] for g in groups.values() for p in g["params"]}
    assert len(lr) == len(names)  # every parameter in exactly one group
    for n, p in names.items():
        mult = (
            (20.0 if n.endswith("bias") else 10.0)
            if "fc" in n
            else (2.0 if n.endswith("bias") else 1.0)
        )
        assert lr[id(p)] == pytest.approx(1e-3 * mult), n
    assert lr[id(names["aff_proj.fc1.weight"])] == pytest.approx(1e-2)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert opt.defaults["weight_decay"] == 5e-4


def test_config_errors_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  root: x\n  bogus: 1\n")
    with pytest.raises(AffordError, match="bogus"):
        load(GroundingExperiment, p)
    p.write_text("data:\n  root: x\ntrain:\n  epochs: 3\n")
    cfg = load(GroundingExperiment, p, ["train.epochs=5", "model.table2_row=c"])
    assert cfg.train.epochs == 5 and cfg.model.table2_row == "c"
    with pytest.raises(AffordError, match="affinity"):
        from_dict(GroundingExperiment, {"data": {"affinity": "nope"}})
    with pytest.raises(AffordError, match="not found"):
        load(GroundingExperiment, tmp_path / "missing.yaml")

import json

import pytest
import torch

from afford.correspondence.baselines import ModelRow
from afford.data.correspondence import CorrespondenceDataset
from afford.correspondence.evaluate import evaluate_rows
from afford.correspondence.train import (
    CorrTrainConfig,
    build_model,
    load_trained,
    split_train_assets,
    train,
)
from afford.engine import seed_everything
from afford.errors import AffordError

SMALL = dict(
    dinov2="tiny",
    clip="tiny",
    proj_dim=64,
    hidden=128,
    out_dim=32,
    pairs=4,
    points=32,
    spatial_points=32,
    device="cpu",
    lr=1e-3,
)


def test_config_rejects_unknown_and_inconsistent_keys(tmp_path):
    with pytest.raises(AffordError, match="unknown key"):
        CorrTrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(AffordError, match="mask_head"):
        CorrTrainConfig.from_dict({"mask": True})
    p = tmp_path / "c.yaml"
    p.write_text("functional: false\nspatial: false\n")
    with pytest.raises(AffordError, match="at least one"):
        CorrTrainConfig.from_yaml(p)
    with pytest.raises(AffordError, match="spatial_region"):
        CorrTrainConfig.from_dict({"spatial_region": "image"})
    with pytest.raises(AffordError, match="feature_augs"):
        CorrTrainConfig.from_dict({"feature_augs": -1})
    # the spatial loss region follows the mode unless set
    assert CorrTrainConfig().spatial_region_used == "object"
    assert CorrTrainConfig(mode="official").spatial_region_used == "part"
    assert CorrTrainConfig(spatial_region="part").spatial_region_used == "part"


def test_split_train_assets_is_seeded_and_disjoint():
    ids = [f"a{i}" for i in range(20)]
    fit, val = split_train_assets(ids, 0.15, 3)
    assert len(val) == 3 and not set(fit) & set(val) and sorted(fit + val) == sorted(ids)
    assert split_train_assets(ids, 0.15, 3) == (fit, val)
    assert split_train_assets(ids, 0.15, 4) != (fit, val)


def test_training_improves_pck_over_untrained(tiny_root, tmp_path):
    ds = CorrespondenceDataset(tiny_root)
    cfg = CorrTrainConfig(
        data=str(tiny_root),
        out=str(tmp_path / "run"),
        epochs=1,
        iters_per_epoch=16,
        val_fraction=0.0,
        **{**SMALL, "lr": 2e-3},
    )
    res = train(cfg, resume=False, progress=False)
    assert res["state"]["epoch"] == 1 and (tmp_path / "run/best/model.safetensors").is_file()
    model, dino, clip, funcs, conf = load_trained(tmp_path / "run")
    assert funcs == ["hold", "pour-with"]
    seed_everything(cfg.seed)  # an untrained model of the same architecture
    untrained = build_model(cfg, dino.feat_dim, model.text_dim)
    rows = [
        ModelRow(untrained, dino, clip, funcs, "untrained"),
        ModelRow(model, dino, clip, funcs, "trained"),
    ]
    out = evaluate_rows(ds, rows, discovery_stride=8, progress=False)
    before, after = out["untrained"]["overall"], out["trained"]["overall"]
    assert after["pck@15"] > before["pck@15"] + 0.05
    assert after["norm_dist"] < before["norm_dist"]


def test_resume_is_exact(tiny_root, tmp_path):
    small = {**SMALL, "pairs": 2, "points": 8, "spatial_points": 8}
    cfg = CorrTrainConfig(
        data=str(tiny_root),
        out=str(tmp_path / "a"),
        epochs=2,
        iters_per_epoch=2,
        val_fraction=0.25,
        val_batches=1,
        **small,
    )
    res = train(cfg, resume=False, progress=False)
    cfg2 = CorrTrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "b"), "epochs": 1})
    train(cfg2, resume=False, progress=False)
    cfg2.epochs = 2
    res2 = train(cfg2, resume=True, progress=False)
    h1 = [r["total"] for r in res["state"]["history"]]
    h2 = [r["total"] for r in res2["state"]["history"]]
    assert len(h1) == 4 and h2 == pytest.approx(h1, rel=1e-5)
    hist = json.loads((tmp_path / "b/history.json").read_text())
    assert len(hist["epochs"]) == 2 and "val_total" in hist["epochs"][1]["val"]
    _, _, _, _, conf = load_trained(tmp_path / "b")
    assert conf["val_assets"] and not set(conf["val_assets"]) & set(conf["fit_assets"])


def test_ablation_losses(tiny_root):
    from afford.correspondence.sampling import PairSampler, build_training_set
    from afford.correspondence.text import encode_functions
    from afford.correspondence.train import _Sampler, batch_losses, load_encoders

    ds = CorrespondenceDataset(tiny_root)
    ts = build_training_set(ds, ds.asset_ids("train"))
    dino, clip = load_encoders(CorrTrainConfig(**SMALL))
    text = encode_functions(clip, ts.functions)
    keys = {}
    for name, flags in {
        "func": dict(spatial=False),
        "spat": dict(functional=False),
        "mask": dict(mask_head=True, mask=True),
    }.items():
        cfg = CorrTrainConfig(**{**SMALL, **flags})
        torch.manual_seed(0)
        model = build_model(cfg, dino.feat_dim, text.shape[1])
        batch = _Sampler(ts, cfg, 0).batch(0)
        assert batch["images"].shape[0] == (3 if cfg.functional and cfg.spatial else 2) * 4
        keys[name] = set(batch_losses(model, dino, text, batch, cfg))
    assert keys == {
        "func": {"func", "total"},
        "spat": {"spatial", "total"},
        "mask": {"func", "spatial", "mask", "total"},
    }
    assert isinstance(PairSampler, type)


def test_shipped_configs_parse():
    from pathlib import Path

    paths = sorted(Path(__file__).parents[2].glob("configs/correspondence/*.yaml"))
    assert len(paths) >= 6
    cfgs = {p.stem: CorrTrainConfig.from_yaml(p) for p in paths}
    assert not cfgs["synth-functional-only"].spatial and cfgs["synth-functional-only"].functional
    assert cfgs["synth-spatial-only"].spatial and not cfgs["synth-spatial-only"].functional
    assert cfgs["synth-full-mask"].mask and cfgs["synth-full-mask"].mask_head
    paper = cfgs["objaverse"]
    assert (paper.pairs, paper.points, paper.lr, paper.lambda_spatial, paper.tau) == (
        50,
        128,
        1e-4,
        10.0,
        0.1,
    )

import json
from pathlib import Path

import pytest
import torch
from corr_config import experiment

from afford.config import ConfigError, from_dict, load, replace, to_dict
from afford.correspondence.baselines import ModelRow
from afford.correspondence.config import CorrExperiment
from afford.correspondence.evaluate import evaluate_rows
from afford.correspondence.sampling import PairSampler, build_training_set
from afford.correspondence.text import encode_functions
from afford.correspondence.train import (
    _Sampler,
    batch_losses,
    build_model,
    load_encoders,
    load_trained,
    split_train_assets,
    train,
    trained_config,
)
from afford.data.correspondence import CorrespondenceDataset
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
    progress=False,
)


def test_config_rejects_unknown_and_inconsistent_keys(tmp_path):
    with pytest.raises(AffordError, match="unknown key"):
        from_dict(CorrExperiment, {"train": {"learning_rate": 1}})
    with pytest.raises(AffordError, match="mask_head"):
        from_dict(CorrExperiment, {"loss": {"mask": True}})
    p = tmp_path / "c.yaml"
    p.write_text("loss:\n  functional: false\n  spatial: false\n")
    with pytest.raises(AffordError, match="at least one"):
        load(CorrExperiment, p)
    with pytest.raises(AffordError, match="spatial_region"):
        from_dict(CorrExperiment, {"sampling": {"spatial_region": "image"}})
    with pytest.raises(AffordError, match="feature_augs"):
        from_dict(CorrExperiment, {"sampling": {"feature_augs": -1}})
    # the spatial loss region follows the mode unless set
    assert experiment().spatial_region_used == "object"
    assert experiment(mode="official").spatial_region_used == "part"
    assert experiment(spatial_region="part").spatial_region_used == "part"


@pytest.mark.parametrize(
    ("assignment", "key", "says"),
    [
        ("train.epochs=abc", "train.epochs", "is not an integer"),
        ("train.lr=fast", "train.lr", "is not a number"),
        ("sampling.points=-3", "sampling.points", ">= 1"),
        ("loss.tau=nan", "loss.tau", "finite"),
        ("train.learning_rate=1", "train.learning_rate", "unknown key"),
    ],
)
def test_loader_errors_name_the_key(assignment, key, says):
    with pytest.raises(ConfigError, match=says) as err:
        load(CorrExperiment, "correspondence/synth-tiny", [assignment])
    assert err.value.key == key and f"--set {assignment}" in str(err.value)
    assert "\n" not in str(err.value)


def test_defaults_are_the_paper_setting():
    cfg = from_dict(CorrExperiment, {})
    assert cfg == CorrExperiment()
    assert (cfg.backbone.dinov2.variant, cfg.backbone.clip.variant) == ("vitb14", "vitb16")
    assert (cfg.model.proj_dim, cfg.model.hidden, cfg.model.out_dim) == (512, 1024, 256)
    assert (cfg.loss.tau, cfg.loss.lambda_spatial, cfg.loss.lambda_mask) == (0.1, 10.0, 1.0)
    assert (cfg.sampling.pairs, cfg.sampling.points, cfg.sampling.spatial_points) == (50, 128, 128)
    t = cfg.train
    assert (t.epochs, t.iters_per_epoch, t.lr, t.weight_decay, t.grad_clip) == (
        100,
        1000,
        1e-4,
        0.01,
        None,
    )
    assert (t.out, t.name, t.val_batches, cfg.data.val_fraction) == (
        "runs/correspondence/synth-full",
        "full",
        4,
        0.15,
    )
    # a backbone entry given in part keeps the other defaults of its section
    part = from_dict(CorrExperiment, {"backbone": {"dinov2": {"weights": "w.safetensors"}}})
    assert part.backbone.dinov2.variant == "vitb14" and part.backbone.clip.variant == "vitb16"


def test_split_train_assets_is_seeded_and_disjoint():
    ids = [f"a{i}" for i in range(20)]
    fit, val = split_train_assets(ids, 0.15, 3)
    assert len(val) == 3 and not set(fit) & set(val) and sorted(fit + val) == sorted(ids)
    assert split_train_assets(ids, 0.15, 3) == (fit, val)
    assert split_train_assets(ids, 0.15, 4) != (fit, val)


def test_training_improves_pck_over_untrained(tiny_root, tmp_path):
    ds = CorrespondenceDataset(tiny_root)
    cfg = experiment(
        root=str(tiny_root),
        out=str(tmp_path / "run"),
        epochs=1,
        iters_per_epoch=32,
        val_fraction=0.0,
        resume=False,
        **{**SMALL, "lr": 2e-3},
    )
    res = train(cfg)
    assert res["state"]["epoch"] == 1 and (tmp_path / "run/best/model.safetensors").is_file()
    model, dino, clip, funcs, conf = load_trained(tmp_path / "run")
    assert funcs == ["hold", "pour-with"]
    seed_everything(cfg.train.seed)  # an untrained model of the same architecture
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
    cfg = experiment(
        root=str(tiny_root),
        out=str(tmp_path / "a"),
        epochs=2,
        iters_per_epoch=2,
        val_fraction=0.25,
        val_batches=1,
        resume=False,
        **small,
    )
    res = train(cfg)
    cfg2 = replace(cfg, train=replace(cfg.train, out=str(tmp_path / "b"), epochs=1))
    train(cfg2)
    cfg2.train.epochs = 2
    cfg2.train.resume = True
    res2 = train(cfg2)
    h1 = [r["total"] for r in res["state"]["history"]]
    h2 = [r["total"] for r in res2["state"]["history"]]
    assert len(h1) == 4 and h2 == pytest.approx(h1, rel=1e-5)
    hist = json.loads((tmp_path / "b/history.json").read_text())
    assert len(hist["epochs"]) == 2 and "val_total" in hist["epochs"][1]["val"]
    _, _, _, _, conf = load_trained(tmp_path / "b")
    assert conf["val_assets"] and not set(conf["val_assets"]) & set(conf["fit_assets"])
    # the checkpoint stores the whole experiment; it is rebuilt exactly, --set on top
    assert isinstance(conf["experiment"], CorrExperiment)
    stored = json.loads((tmp_path / "b/last/config.json").read_text())["config"]["experiment"]
    assert stored == to_dict(cfg2) and from_dict(CorrExperiment, stored) == cfg2
    assert trained_config(tmp_path / "b/last")[1]["experiment"] == cfg2
    _, conf = trained_config(tmp_path / "b", ["backbone.dinov2.weights=moved.safetensors"])
    assert conf["experiment"].backbone.dinov2.weights == "moved.safetensors"
    with pytest.raises(ConfigError, match="train.epochs"):
        trained_config(tmp_path / "b", ["train.epochs=abc"])


def test_ablation_losses(tiny_root):
    ds = CorrespondenceDataset(tiny_root)
    ts = build_training_set(ds, ds.asset_ids("train"))
    dino, clip = load_encoders(experiment(**SMALL))
    text = encode_functions(clip, ts.functions)
    keys = {}
    for name, flags in {
        "func": dict(spatial=False),
        "spat": dict(functional=False),
        "mask": dict(mask_head=True, mask=True),
    }.items():
        cfg = experiment(**{**SMALL, **flags})
        torch.manual_seed(0)
        model = build_model(cfg, dino.feat_dim, text.shape[1])
        batch = _Sampler(ts, cfg, 0).batch(0)
        assert (
            batch["images"].shape[0] == (3 if cfg.loss.functional and cfg.loss.spatial else 2) * 4
        )
        keys[name] = set(batch_losses(model, dino, text, batch, cfg))
    assert keys == {
        "func": {"func", "total"},
        "spat": {"spatial", "total"},
        "mask": {"func", "spatial", "mask", "total"},
    }
    assert isinstance(PairSampler, type)


def test_shipped_configs_parse():
    paths = sorted(Path(__file__).parents[2].glob("configs/correspondence/*.yaml"))
    assert len(paths) >= 6
    cfgs = {p.stem: load(CorrExperiment, p) for p in paths}
    fo, so, fm = cfgs["synth-functional-only"], cfgs["synth-spatial-only"], cfgs["synth-full-mask"]
    assert not fo.loss.spatial and fo.loss.functional
    assert so.loss.spatial and not so.loss.functional
    assert fm.loss.mask and fm.model.mask_head
    paper = cfgs["objaverse"]
    assert (
        paper.sampling.pairs,
        paper.sampling.points,
        paper.train.lr,
        paper.loss.lambda_spatial,
        paper.loss.tau,
    ) == (
        50,
        128,
        1e-4,
        10.0,
        0.1,
    )
    # shipped names resolve like paths
    assert load(CorrExperiment, "correspondence/synth-tiny") == cfgs["synth-tiny"]

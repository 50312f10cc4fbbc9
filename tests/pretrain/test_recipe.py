"""The pre-training recipe on engine.fit: it learns on rendered images, an interrupted run
resumes to the same weights, config errors are one line (also through the CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afford.cli import main
from afford.cli.pretrain import steps_sets
from afford.config import ConfigError, from_dict, load
from afford.pretrain import PretrainConfig, pretrain, recipe
from afford.synth.pretrain_views import render_pretraining_images


def make_cfg(out, family="dino", epochs=1, per=4, **train):
    return from_dict(
        PretrainConfig,
        {
            "model": {"family": family, "pairs": 64},
            "data": {"view_size": 32 if family == "dino" else 28, "crop_scale": [0.5, 1.0]},
            "train": {"epochs": epochs, "steps_per_epoch": per, "batch_size": 4, "lr": 2e-3,
                      "warmup": 0.05, "out": str(out), "progress": False, "device": "cpu",
                      "threads": 1, **train},
        },
    )  # fmt: skip


def blobs(n=4):
    base = np.random.default_rng(0).uniform(0, 255, (n, 6, 6, 3))
    return np.kron(base, np.ones((1, 8, 8, 1))).astype(np.uint8)  # (n, 48, 48, 3)


def test_tiny_run_on_rendered_images_learns(tmp_path):
    imgs = render_pretraining_images(4, seed=0, size=48, views_per_asset=2, progress=False)
    res = pretrain(imgs, make_cfg(tmp_path, epochs=4, per=10, momentum=[0.99, 0.999]))
    tot = [h["total"] for h in res.history]
    assert res.steps == 40 and len(tot) == 40 and not res.stopped_early
    assert np.mean(tot[-8:]) < np.mean(tot[:8]) - 0.1
    assert (tmp_path / "last" / "model.safetensors").is_file()


def test_resume_after_an_interruption_gives_the_same_weights(tmp_path, monkeypatch):
    imgs = blobs()
    straight = pretrain(imgs, make_cfg(tmp_path / "a", epochs=3, per=2))
    real, calls = recipe.ssl_losses, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # step 4 of 6: epoch 1 is checkpointed, epoch 2 is not
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "ssl_losses", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(imgs, make_cfg(tmp_path / "b", epochs=3, per=2))
    monkeypatch.setattr(recipe, "ssl_losses", real)
    resumed = pretrain(imgs, make_cfg(tmp_path / "b", epochs=3, per=2))
    assert resumed.steps == straight.steps == 6
    a, b = straight.vit.state_dict(), resumed.vit.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]
    # resuming another experiment in the same folder is refused, in one line
    with pytest.raises(ConfigError, match=r"^train.lr: 0.001 differs from 0.002 .*resume"):
        pretrain(imgs, make_cfg(tmp_path / "b", epochs=3, per=2, lr=1e-3))


def test_minutes_cap_stops_early(tmp_path):
    res = pretrain(blobs(), make_cfg(tmp_path, epochs=2, per=3, minutes=1e-9))
    assert res.stopped_early and res.steps == 1 and len(res.history) == 1


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["train.epochs=abc"], "train.epochs: 'abc' is not an integer"),
        (["train.batch_size=1"], "train.batch_size: 1 is not a value >= 2"),
        (["model.family=clip"], "model.family: 'clip' is not one of 'dino', 'dinov2'"),
        (["data.view_size=30"], "data.view_size: 30 is not a multiple of the dino patch size 16"),
        (["data.crop_scale=[0.9, 0.2]"], "data.crop_scale: [0.9, 0.2] is not [min, max]"),
        (["train.momentum=0.9"], "train.momentum: 0.9 is not a list of a number"),
        (["train.steps=5"], "train.steps: unknown key"),
    ],
)
def test_config_errors_are_one_line(sets, message):
    with pytest.raises(ConfigError) as err:
        load(PretrainConfig, None, sets)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_cli_flags_and_shipped_configs(capsys, tmp_path):
    assert steps_sets(700) == ["train.epochs=7", "train.steps_per_epoch=100"]
    assert steps_sets(37) == ["train.epochs=1", "train.steps_per_epoch=37"]
    # the recorded command of the shipped DINOv2 weights == the shipped config
    out = "src/afford/assets/tiny_synth_dinov2.safetensors"
    flags = ["--family", "dinov2", "--out", out, "--images", "4096", "--steps", "8000",
             "--batch", "32", "--multiview-deg", "40", "--crop-scale", "0.35", "1.0",
             "--threads", "1", "--minutes", "70"]  # fmt: skip
    assert main(["pretrain-backbone", *flags, "--print-config"]) == 0
    by_flags = capsys.readouterr().out
    cfg = ["--config", "pretrain/tiny-synth-dinov2", "--out", out, "--print-config"]
    assert main(["pretrain-backbone", *cfg]) == 0
    assert capsys.readouterr().out == by_flags and "epochs: 80" in by_flags
    # strict one-line errors, exit 2
    assert main(["pretrain-backbone", *cfg, "--set", "train.lr=-1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("afford: error: train.lr: -1.0 is not a value > 0") and err.count("\n") == 1
    )
    assert main(["pretrain-backbone", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "--family is required" in capsys.readouterr().err
    assert main(["pretrain-backbone", "--family", "dino", "--out", "x.pth"]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err

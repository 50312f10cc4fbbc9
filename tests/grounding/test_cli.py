"""``afford train/eval grounding``, ``afford ground`` and ``afford import-checkpoint``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import coffee as coffee_image

sys.path.insert(0, str(Path(__file__).parent))
from gtrain_helpers import synth_tiny, tiny_run  # noqa: E402
from test_import import released_state_dict  # noqa: E402

from afford.cli import main
from afford.data.io import read_gray, read_image, write_image
from afford.grounding.infer import ground
from afford.viz import heatmap_to_uint8


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "grounding_train"


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "coffee.png"
    write_image(p, coffee_image())
    return p


@pytest.mark.slow
def test_cli_train_and_eval(base, tmp_path, capsys):
    root = synth_tiny(base) / "Unseen"
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"data:\n  root: {root}\n  affinity: simulated\n  val_fraction: 0.34\n"
        "backbone:\n  dino: {variant: tiny}\n  clip: {variant: tiny}\n"
        "model:\n  table2_row: c\n"
        "train:\n  epochs: 1\n  batch_size: 4\n  progress: false\n"
    )
    out = tmp_path / "run"
    code = main(["train", "grounding", "--config", str(cfg), "--out", str(out),
                 "--set", "train.max_batches_per_epoch=1"])  # fmt: skip
    assert code == 0
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["epochs"]) == 1 and hist["step"] == 1
    saved = json.loads((out / "best" / "config.json").read_text())["config"]
    assert saved["model"]["use_proto"] and not saved["model"]["use_pixel"]  # row (c)
    assert saved["model"]["class_names"] == ["cut_with", "drink_with", "hold"]
    code = main(["eval", "grounding", "--checkpoint", str(out), "--split", "test", "--no-figures"])
    assert code == 0
    res = json.loads((out / "eval_test" / "results.json").read_text())
    assert set(res["per_affordance"]) == {"cut_with", "drink_with", "hold"}
    for v in res["per_affordance"].values():
        assert set(v) == {"n", "kld", "sim", "nss"} and np.isfinite(v["kld"])
    text = capsys.readouterr().out
    printed = json.loads(text[text.index("{") :])
    assert printed["kld"] == pytest.approx(res["kld"]) and printed["n"] == res["n"]


@pytest.mark.slow
def test_ground_on_coffee(base, coffee, tmp_path):
    run, _ = tiny_run(base)
    out = tmp_path / "heat.png"
    code = main(
        ["ground", str(coffee), "--action", "hold", "--checkpoint", str(run), "--out", str(out)]
    )
    assert code == 0
    heat = read_gray(out)
    img = read_image(coffee)
    assert heat.shape == img.shape[:2]
    assert heat.max() == 255 and heat.min() == 0  # min-max normalised map
    overlay = read_image(tmp_path / "heat_overlay.png")
    assert overlay.shape[1] > 2 * img.shape[1]  # image | overlay | affinity side by side
    # the png is the model's calibrated 14x14 heatmap, upsampled to the image and min-max'd
    res = ground(coffee, "hold", checkpoint=run, out=tmp_path / "again.png")
    assert res["grid"].shape == (14, 14)
    np.testing.assert_array_equal(heat, heatmap_to_uint8(res["grid"], img.shape[:2]))


@pytest.mark.slow
def test_unknown_action_and_missing_checkpoint(base, coffee, tmp_path, capsys, monkeypatch):
    run, _ = tiny_run(base)
    code = main(
        [
            "ground",
            str(coffee),
            "--action",
            "fly",
            "--checkpoint",
            str(run),
            "--out",
            str(tmp_path / "h.png"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "'fly'" in err and "cut_with, drink_with, hold" in err
    assert not (tmp_path / "h.png").exists()
    # without --checkpoint the shipped demo model is used (no training first)
    assert main(["ground", str(coffee), "--action", "hold", "--out", str(tmp_path / "h.png")]) == 0
    assert main(["ground", str(tmp_path / "missing.png"), "--action", "hold"]) == 1


def test_cli_import_checkpoint(tmp_path, capsys):
    torch.save(released_state_dict(), tmp_path / "rel.pth")
    code = main(["import-checkpoint", str(tmp_path / "rel.pth"), "--out", str(tmp_path / "ck"),
                 "--dataset", "hico_iif"])  # fmt: skip
    assert code == 0
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())["config"]
    assert (
        cfg["model"]["class_names"][0] == "cut_with"
        and cfg["backbone"]["dino"]["weights"] == "dino.safetensors"
    )
    code = main(["import-checkpoint", str(tmp_path / "rel.pth"), "--out", str(tmp_path / "ck")])
    assert code == 2 and "not empty" in capsys.readouterr().err

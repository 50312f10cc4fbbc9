import json

import numpy as np
import pytest
import skimage.data
import yaml

from afford.cli import main
from afford.data.io import read_image, write_image


def _coffee(tmp_path):
    img = skimage.data.coffee()[::2, ::2].copy()  # 200 x 300
    p1, p2 = tmp_path / "a.png", tmp_path / "b.png"
    write_image(p1, img)
    write_image(p2, img[:, ::-1].copy())
    return p1, p2, img


def _correspond(p1, p2, function, *extra):
    """``afford correspond IMG1 IMG2 --function FUNCTION --dinov2 tiny EXTRA...``."""
    return main(
        ["correspond", str(p1), str(p2), "--function", function, "--dinov2", "tiny", *extra]
    )


def test_correspond_transfer_writes_png(tmp_path):
    p1, p2, img = _coffee(tmp_path)
    out = tmp_path / "m.png"
    rc = _correspond(
        p1, p2, "pour-with", "--device", "cpu", "--points", "100,150", "60,80", "--out", str(out)
    )
    assert rc == 0
    drawn = read_image(out)
    assert drawn.shape == (200, 600, 3)
    # the left half is IMG1 apart from the drawn lines/dots
    assert (drawn[:, :300] == img).mean() > 0.95


def test_correspond_discovery_with_masks(tmp_path):
    p1, p2, _ = _coffee(tmp_path)
    m = np.zeros((200, 300), np.uint8)
    m[40:160, 60:240] = 255
    write_image(tmp_path / "m1.png", m)
    write_image(tmp_path / "m2.png", m[:, ::-1].copy())
    out = tmp_path / "d.png"
    rc = _correspond(
        p1,
        p2,
        "pour-with",
        "--device",
        "cpu",
        "--mask1",
        str(tmp_path / "m1.png"),
        "--mask2",
        str(tmp_path / "m2.png"),
        "--top",
        "5",
        "--out",
        str(out),
    )
    assert rc == 0 and read_image(out).shape == (200, 600, 3)


def test_unknown_function_lists_known(tmp_path, capsys):
    p1, p2, _ = _coffee(tmp_path)
    rc = _correspond(p1, p2, "fly-with", "--out", str(tmp_path / "x.png"))
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown function 'fly-with'" in err and "pour-with" in err
    assert not (tmp_path / "x.png").exists()


def test_eval_baseline_cli_writes_results(tiny_root, tmp_path):
    rc = main(
        [
            "eval",
            "correspondence",
            "--baseline",
            "chance",
            "--pairs",
            str(tiny_root / "eval_pairs.json"),
            "--out",
            str(tmp_path / "ev"),
            "--discovery-stride",
            "4",
            "--max-pairs",
            "1",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "ev/results.json").read_text())
    assert res["settings"]["pairs"] == 1 and res["chance"]["overall"]["n"] == 2


def test_eval_gt_part_oracle_baseline_cli(tiny_root, tmp_path):
    """The oracle row searches only the GT part, so it lands far closer than chance."""
    pck = {}
    for name in ("chance", "gt-part+chance"):
        out = tmp_path / name
        rc = main(["eval", "correspondence", "--baseline", name, "--pairs", str(tiny_root),
                   "--out", str(out), "--discovery-stride", "4"])  # fmt: skip
        assert rc == 0
        res = json.loads((out / "results.json").read_text())
        assert res[name]["overall"]["n"] == 4  # 2 pairs x 2 directions
        pck[name] = res[name]["overall"]["pck@23"]
    assert pck["gt-part+chance"] > 2 * pck["chance"]


def test_train_eval_correspond_with_checkpoint(tiny_root, tmp_path, capsys):
    cfg = _tiny_config(tiny_root, tmp_path)
    assert main(["train", "correspondence", "--config", str(cfg), "--no-progress"]) == 0
    assert (tmp_path / "run/best/config.json").is_file()
    # resuming a finished run trains nothing more and still succeeds
    assert main(["train", "correspondence", "--config", str(cfg), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run/history.json").read_text())["step"] == 2
    rc = main(
        [
            "eval",
            "correspondence",
            "--checkpoint",
            str(tmp_path / "run"),
            "--pairs",
            str(tiny_root),
            "--out",
            str(tmp_path / "ev"),
            "--discovery-stride",
            "8",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "ev/results.json").read_text())
    assert res["full"]["overall"]["n"] == 4
    # a function the checkpoint was not trained on is refused, listing the known ones
    pair = tiny_root / "assets/mug_000/rgb"
    capsys.readouterr()
    rc = main(
        [
            "correspond",
            str(pair / "00.png"),
            str(pair / "01.png"),
            "--function",
            "grasp",
            "--checkpoint",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    assert rc == 2 and "known functions: hold, pour-with" in capsys.readouterr().err
    rc = main(
        [
            "correspond",
            str(pair / "00.png"),
            str(pair / "01.png"),
            "--function",
            "pour-with",
            "--checkpoint",
            str(tmp_path / "run"),
            "--points",
            "40,50",
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    assert rc == 0 and read_image(tmp_path / "m.png").shape == (96, 192, 3)
    # eval --set / --print-config act on the checkpoint's experiment config
    run = str(tmp_path / "run")
    capsys.readouterr()
    rc = main(["eval", "correspondence", "--checkpoint", run, "--pairs", str(tiny_root),
               "--set", "train.name=renamed", "--print-config"])  # fmt: skip
    shown = yaml.safe_load(capsys.readouterr().out)
    assert rc == 0 and shown["train"]["name"] == "renamed" and shown["model"]["out_dim"] == 16
    rc = main(["eval", "correspondence", "--checkpoint", run, "--pairs", str(tiny_root),
               "--set", "train.epochs=abc"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("afford: error: train.epochs: ") and err.count("\n") == 1


def _tiny_config(tiny_root, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"data: {{root: {tiny_root}, val_fraction: 0.0}}\n"
        "backbone: {dinov2: {variant: tiny}, clip: {variant: tiny}}\n"
        "model: {proj_dim: 32, hidden: 64, out_dim: 16}\n"
        "sampling: {pairs: 2, points: 8, spatial_points: 8}\n"
        f"train: {{out: {tmp_path / 'run'}, epochs: 1, iters_per_epoch: 2, device: cpu}}\n"
    )
    return cfg


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.lr=fast", "train.lr"),
        ("sampling.points=-3", "sampling.points"),
        ("loss.tau=nan", "loss.tau"),
        ("train.learning_rate=1", "train.learning_rate"),
    ],
)
def test_train_config_errors_are_one_line(assignment, key, tmp_path, capsys):
    rc = main(["train", "correspondence", "--config", "correspondence/synth-tiny",
               "--set", f"train.out={tmp_path / 'run'}", "--set", assignment])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"afford: error: {key}: ") and err.count("\n") == 1
    assert f"--set {assignment}" in err
    assert not (tmp_path / "run").exists()


def test_train_print_config_resolves_shipped_names_and_sets(capsys):
    rc = main(["train", "correspondence", "--config", "correspondence/synth-tiny",
               "--set", "train.epochs=7", "--set", "loss.spatial=false", "--no-resume",
               "--print-config"])  # fmt: skip
    assert rc == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["epochs"] == 7 and cfg["train"]["resume"] is False
    assert cfg["loss"]["spatial"] is False and cfg["backbone"]["dinov2"]["variant"] == "tiny"
    assert cfg["train"]["iters_per_epoch"] == 40  # the rest from the shipped file


def test_train_unknown_yaml_key_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sampling: {pairs: 2, point: 8}\n")
    assert main(["train", "correspondence", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "sampling.point: unknown key" in err and "did you mean 'points'" in err
    assert str(cfg) in err and err.count("\n") == 1


def test_eval_set_and_print_config_need_a_checkpoint(tiny_root, capsys):
    rc = main(["eval", "correspondence", "--baseline", "chance", "--pairs", str(tiny_root),
               "--set", "train.epochs=2"])  # fmt: skip
    assert rc == 2 and "--set / --print-config need --checkpoint" in capsys.readouterr().err

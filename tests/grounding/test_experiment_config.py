"""The grounding experiment on the one config system: strict YAML / --set, one-line errors
through the real CLI, checkpoint config round trip, --print-config round trip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_import import released_state_dict  # noqa: E402

from afford.cli import main
from afford.config import ConfigError, dump_yaml, from_dict, load, shipped_configs, to_dict
from afford.grounding.build import BACKBONES_KEY, checkpoint_experiment, model_config
from afford.grounding.config import GroundingConfig, GroundingExperiment
from afford.grounding.import_ckpt import import_checkpoint

NAMES = ["cut_with", "hold"]

# (--set assignment, key named in the error, words of the message)
BAD_SETS = [
    ("model.bogus=1", "model.bogus", "unknown key"),
    ("data.bogus=1", "data.bogus", "unknown key"),
    ("train.epochs=abc", "train.epochs", "'abc' is not an integer (expected int)"),
    ("train.lr=fast", "train.lr", "'fast' is not a number (expected float)"),
    ("train.batch_size=-1", "train.batch_size", "-1 is not a value >= 1"),
    ("data.num_exo=0", "data.num_exo", "0 is not a value >= 1"),
    ("data.val_fraction=1.5", "data.val_fraction", "1.5 is not a value <= 1"),
    ("train.lr=nan", "train.lr", "finite"),
    ("model.alpha=nan", "model.alpha", "finite"),
    ("model.tau=0", "model.tau", "0 is not a value > 0"),
    ("data.affinity=nope", "data.affinity", "'nope' is not one of"),
    ("train.optimizer=rmsprop", "train.optimizer", "'rmsprop' is not one of"),
    ("model.table2_row=z", "model.table2_row", "unknown row 'z'"),
    ("model.saliency_heads=[]", "model.saliency_heads", "non-empty"),
]


@pytest.mark.parametrize("assignment,key,words", BAD_SETS)
def test_bad_set_through_the_cli(assignment, key, words, capsys):
    code = main(["train", "grounding", "--config", "grounding/synth", "--set", assignment])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"afford: error: {key}: ") and words in err
    assert f"(in --set {assignment})" in err


def test_exact_message_of_a_wrong_type(capsys):
    assert (
        main(["train", "grounding", "--config", "grounding/synth", "--set", "train.epochs=abc"])
        == 2
    )
    assert capsys.readouterr().err == (
        "afford: error: train.epochs: 'abc' is not an integer (expected int) "
        "(in --set train.epochs=abc)\n"
    )


@pytest.mark.parametrize("assignment,key,words", BAD_SETS)
def test_bad_value_in_a_yaml_file(assignment, key, words, tmp_path):
    """The same values written in the YAML file: the error names the key and the file."""
    path, _, value = assignment.partition("=")
    section, name = path.split(".")
    value = ".nan" if value == "nan" else value  # YAML's spelling of NaN
    p = tmp_path / "exp.yaml"
    p.write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError) as ei:
        load(GroundingExperiment, p)
    assert ei.value.key == key and words in str(ei.value) and str(p) in str(ei.value)


def test_shipped_configs_load_and_keep_their_meaning():
    names = [n for n in shipped_configs() if n.startswith("grounding/")]
    assert {"grounding/synth", "grounding/agd20k_seen", "grounding/agd20k_seen_locate"} <= set(
        names
    )
    for name in names:
        load(GroundingExperiment, name)
    seen = load(GroundingExperiment, "grounding/agd20k_seen")
    assert (seen.train.epochs, seen.train.batch_size, seen.train.lr) == (15, 8, 1e-3)
    assert (seen.train.weight_decay, seen.train.momentum, seen.train.nesterov) == (5e-4, 0.9, True)
    assert (seen.backbone.dino.variant, seen.backbone.clip.variant) == ("vits16", "vitb16")
    assert seen.model.table2_row == "i" and seen.data.affinity == "clip"
    loc = load(GroundingExperiment, "grounding/agd20k_seen_locate")
    assert (loc.train.scheduler, loc.train.step_size, loc.train.gamma) == ("step", 5, 0.1)
    gl = model_config(loc, NAMES, 384)
    assert gl.method == "locate" and gl.calibration == "none"
    default = GroundingExperiment()
    assert default.train.out == "runs/grounding" and default.data.val_fraction == 0.1


def test_model_section_sets_and_fills():
    exp = load(GroundingExperiment, "grounding/synth", ["model.table2_row=c", "data.num_exo=2"])
    g = model_config(exp, NAMES, 96)
    assert g.use_proto and not g.use_pixel and g.calibration == "none"  # row (c)
    assert g.class_names == NAMES and g.feat_dim == 96 and g.num_exo == 2
    # a switch set in the section wins over the row's (synth.yaml: row (i))
    exp = load(GroundingExperiment, "grounding/synth", ["model.method=locate"])
    g = model_config(exp, NAMES, 96)
    assert g.method == "locate" and g.calibration == "binary"  # the row's calibration
    sets = ["model.method=locate", "model.calibration=none"]
    g = model_config(load(GroundingExperiment, "grounding/synth", sets), NAMES, 96)
    locate = load(GroundingExperiment, "grounding/agd20k_seen_locate")
    assert g == model_config(locate, NAMES, 96)  # the LOCATE baseline
    exp = load(
        GroundingExperiment, "grounding/synth", ["model.table2_row=h", "model.use_pixel=false"]
    )
    g = model_config(exp, NAMES, 96)
    assert g.use_proto and g.proto_part and not g.use_pixel and g.calibration == "none"
    exp = load(GroundingExperiment, "grounding/synth", ["model.class_names=[a, b]"])
    with pytest.raises(ConfigError, match=r"^model\.class_names: .*differ from the dataset"):
        model_config(exp, NAMES, 96)


def test_runtime_config_is_held_to_the_same_rules():
    with pytest.raises(ConfigError, match=r"^alpha: 1.5 is not a value <= 1"):
        GroundingConfig(class_names=NAMES, alpha=1.5)
    with pytest.raises(ConfigError, match=r"^k: 'x' is not an integer"):
        GroundingConfig(class_names=NAMES, k="x")
    with pytest.raises(ConfigError, match=r"^model\.class_names: duplicate"):
        from_dict(GroundingConfig, {"class_names": ["a", "a"]}, "model")


def test_print_config_loads_back(tmp_path, capsys):
    sets = ["model.table2_row=c", "train.epochs=2", "data.root=/some/where"]
    args = ["train", "grounding", "--config", "grounding/synth", "--print-config"]
    assert main(args + [x for s in sets for x in ("--set", s)] + ["--out", "r1"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(text)
    back = load(GroundingExperiment, tmp_path / "printed.yaml")
    want = load(GroundingExperiment, "grounding/synth", [*sets, "train.out=r1"])
    assert back == want and dump_yaml(back) == text


def test_checkpoint_config_round_trip(tmp_path, capsys):
    torch.save(released_state_dict(), tmp_path / "rel.pth")
    ck = import_checkpoint(tmp_path / "rel.pth", tmp_path / "ck", dataset="hico_iif")
    stored = json.loads((ck / "config.json").read_text())["config"]
    records = stored.pop(BACKBONES_KEY)  # the backbone records ride beside the experiment
    assert set(records) == {"dino", "clip"} and all(r["digest"] for r in records.values())
    exp = from_dict(GroundingExperiment, stored)
    assert to_dict(exp) == stored  # the rest is exactly to_dict of a config
    model = {k: v for k, v in stored["model"].items() if k != "table2_row"}
    assert exp.model.table2_row is None and exp.model.build() == from_dict(GroundingConfig, model)
    _, again = checkpoint_experiment(ck, ["data.root=/data/HICO-IIF"])
    assert again.data.root == "/data/HICO-IIF" and again.model == exp.model
    assert main(["eval", "grounding", "--checkpoint", str(ck), "--print-config",
                 "--set", "model.calibration=none"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    (tmp_path / "p.yaml").write_text(printed)
    assert load(GroundingExperiment, tmp_path / "p.yaml").model.calibration == "none"
    code = main(["eval", "grounding", "--checkpoint", str(ck), "--set", "train.eval_batch_size=0"])
    assert code == 2
    assert "train.eval_batch_size: 0 is not a value >= 1" in capsys.readouterr().err

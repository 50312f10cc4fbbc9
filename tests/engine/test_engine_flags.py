"""The engine flags are shorthands for the same train.* keys on every train command, and the
keys are settable from the YAML config and --set alike."""

from __future__ import annotations

import pytest
import yaml

from afford.cli import main
from afford.config import ConfigError, load
from afford.grounding.config import GroundingExperiment

FLAGS = ["--devices", "2", "--num-nodes", "1", "--strategy", "ddp", "--precision", "bf16-mixed",
         "--accelerator", "cpu", "--max-steps", "7", "--workers", "3", "--logger",
         "tensorboard", "--log-every", "5", "--checkpoint-every", "4"]  # fmt: skip
EXPECT = {"devices": 2, "num_nodes": 1, "strategy": "ddp", "precision": "bf16-mixed",
          "accelerator": "cpu", "max_steps": 7, "workers": 3, "logger": "tensorboard",
          "log_every": 5, "checkpoint_every": 4}  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        ["train", "grounding", "--config", "grounding/synth"],
        ["train", "correspondence", "--config", "correspondence/synth-tiny"],
        ["pretrain-backbone", "--config", "pretrain/tiny-synth-dino"],
    ],
)
def test_engine_flags_set_the_train_keys(command, capsys):
    assert main([*command, *FLAGS, "--print-config"]) == 0
    train = yaml.safe_load(capsys.readouterr().out)["train"]
    assert {k: train[k] for k in EXPECT} == EXPECT


def test_engine_keys_from_yaml_and_set(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  devices: 2\n  precision: 32\n  logger: none\n")
    exp = load(GroundingExperiment, cfg, ["train.workers=2", "train.max_steps=10"])
    t = exp.train
    assert (t.devices, str(t.precision), t.logger, t.workers, t.max_steps) == (
        2,
        "32",
        "none",
        2,
        10,
    )
    with pytest.raises(ConfigError, match="train.precision"):
        load(GroundingExperiment, cfg, ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="train.devices"):
        load(GroundingExperiment, cfg, ["train.devices=0"])


def test_pretrain_refuses_several_processes(tmp_path, capsys):
    code = main(["pretrain-backbone", "--config", "pretrain/tiny-synth-dino", "--out",
                 str(tmp_path / "w.safetensors"), "--devices", "2", "--images", "2",
                 "--steps", "1"])  # fmt: skip
    assert code == 2
    assert "one process" in capsys.readouterr().err

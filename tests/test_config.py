"""The one config system: strict types, bounds, unknown keys, --set, YAML, shipped names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from afford.config import (
    ConfigError,
    TrainConfig,
    WeightsSpec,
    apply_sets,
    describe,
    dump_yaml,
    from_dict,
    load,
    option,
    parse_set,
    read_yaml,
    replace,
    resolve_config_path,
    shipped_configs,
    to_dict,
)
from afford.errors import AffordError


@dataclass
class _Backbone:
    dino: WeightsSpec = field(default_factory=WeightsSpec)


@dataclass
class _Model:
    mode: Literal["paper", "official"] = "paper"
    heads: tuple[int, ...] = (0, 1, 3)
    names: list[str] = field(default_factory=list)
    ratio: float = option(0.5, min=0, max=1)

    def __post_init__(self) -> None:
        if self.mode == "official" and self.ratio == 0:
            raise ConfigError("ratio", "must be > 0 in official mode")


@dataclass
class _Exp:
    backbone: _Backbone = field(default_factory=_Backbone)
    model: _Model = field(default_factory=_Model)
    train: TrainConfig = field(default_factory=TrainConfig)


@pytest.mark.parametrize(
    "assignment, key, words",
    [
        ("train.epochs=abc", "train.epochs", "'abc' is not an integer"),
        ("train.lr=fast", "train.lr", "'fast' is not a number"),
        ("train.epochs=-1", "train.epochs", "-1 is not a value >= 1"),
        ("train.epochs=2.5", "train.epochs", "2.5 is not an integer"),
        ("train.epochs=true", "train.epochs", "True is not an integer"),
        ("train.lr=nan", "train.lr", "not a finite number"),
        ("train.lr=-inf", "train.lr", "not a finite number"),
        ("train.lr=0", "train.lr", "not a value > 0"),
        ("train.resume=3", "train.resume", "3 is not true or false"),
        ("model.mode=fancy", "model.mode", "not one of 'paper', 'official'"),
        ("model.heads=[1,x]", "model.heads[1]", "'x' is not an integer"),
        ("model.heads=3", "model.heads", "not a list of an integer"),
        ("model.ratio=1.5", "model.ratio", "not a value <= 1"),
        ("backbone.dino=3", "backbone.dino", "expected a mapping"),
        ("train.epoch=3", "train.epoch", "did you mean 'epochs'"),
        ("trian.epochs=3", "trian", "did you mean 'train'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_key_value_and_source(assignment, key, words):
    with pytest.raises(ConfigError) as info:
        load(_Exp, None, [assignment])
    msg = str(info.value)
    assert info.value.key == key
    assert msg.startswith(f"{key}: ")
    assert words in msg
    assert f"(in --set {assignment})" in msg
    assert "\n" not in msg


def test_defaults_types_and_overrides():
    cfg = load(_Exp, None, ["train.epochs=3", "model.heads=[4, 5]", "train.lr=1"])
    assert cfg.train.epochs == 3 and cfg.model.heads == (4, 5)
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0  # int widened to float
    assert cfg.backbone.dino.variant == "tiny" and cfg.backbone.dino.weights is None
    assert load(_Exp).train == TrainConfig()


def test_cross_field_rule_in_post_init_names_the_full_key():
    with pytest.raises(ConfigError, match=r"^model\.ratio: must be > 0 in official mode"):
        from_dict(_Exp, {"model": {"mode": "official", "ratio": 0}})


def test_yaml_file_errors_name_the_file(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("train:\n  epochs: abc\n")
    with pytest.raises(ConfigError, match=rf"train\.epochs: 'abc' .*\(in {p}\)"):
        load(_Exp, p)
    # an override that fixes the file's value wins
    assert load(_Exp, p, ["train.epochs=2"]).train.epochs == 2
    p.write_text("train: [1, 2\n")
    with pytest.raises(AffordError, match="not valid YAML"):
        read_yaml(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(AffordError, match="expected a mapping"):
        read_yaml(p)
    with pytest.raises(AffordError, match="config file not found"):
        load(_Exp, tmp_path / "missing.yaml")


def test_round_trip_through_yaml_and_dict(tmp_path):
    cfg = load(_Exp, None, ["model.names=[a, b]", "train.threads=2", "model.mode=official"])
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_yaml(cfg))
    assert load(_Exp, p) == cfg
    assert from_dict(_Exp, to_dict(cfg)) == cfg
    assert replace(cfg.train, epochs=7).epochs == 7
    with pytest.raises(ConfigError, match="epochs"):
        replace(cfg.train, epochs=0)


def test_parse_set_and_apply_sets():
    assert parse_set("train.lr=1e-3") == ("train.lr", 0.001)
    assert parse_set("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_set("a.b=") == ("a.b", None)
    assert parse_set("a.b={x") == ("a.b", "{x")  # not YAML: kept as text for the type check
    for bad in ("train.lr", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="expected section.key=value"):
            parse_set(bad)
    raw = {"train": {"epochs": 1}}
    out = apply_sets(raw, ["train.epochs=2", "model.mode=paper"])
    assert raw == {"train": {"epochs": 1}}  # the input is not modified
    assert out == {"train": {"epochs": 2}, "model": {"mode": "paper"}}
    with pytest.raises(ConfigError, match="not a section"):
        apply_sets(out, ["train.epochs.x=1"])


def test_describe_lists_every_leaf_with_type_and_default():
    rows = {key: (tp, default) for key, tp, default, _ in describe(_Exp)}
    assert rows["train.epochs"] == ("an integer", 15)
    assert rows["backbone.dino.variant"] == ("a string", "tiny")
    assert rows["model.heads"] == ("a list of an integer", [0, 1, 3])
    assert "model" not in rows  # sections are not leaves


def test_shipped_configs_resolve_by_name():
    names = shipped_configs()
    assert "grounding/synth" in names
    for name in names:
        assert resolve_config_path(name).is_file()
        assert resolve_config_path(name + ".yaml") == resolve_config_path(name)
    with pytest.raises(AffordError, match="shipped configs: .*grounding/synth"):
        resolve_config_path("grounding/no-such-experiment")


def test_exponent_floats_parse_as_numbers(tmp_path):
    """PyYAML alone reads ``1e-4`` as a string; the loader reads it as YAML 1.2 does."""
    assert parse_set("train.lr=1e-4") == ("train.lr", 1e-4)
    p = tmp_path / "exp.yaml"
    p.write_text("train:\n  lr: 5e-4\n  weight_decay: -2E+1\n")
    assert read_yaml(p) == {"train": {"lr": 5e-4, "weight_decay": -20.0}}
    assert parse_set("a.b=v1e3") == ("a.b", "v1e3")


@dataclass
class _Nets:
    dino: WeightsSpec = field(default_factory=lambda: WeightsSpec(variant="vits16"))


@dataclass
class _Outer:
    backbone: _Nets = field(default_factory=_Nets)


def test_a_partial_section_keeps_the_fields_own_defaults():
    assert from_dict(_Outer, {}).backbone.dino.variant == "vits16"
    cfg = from_dict(_Outer, {"backbone": {"dino": {"weights": "w.pth"}}})
    assert (cfg.backbone.dino.variant, cfg.backbone.dino.weights) == ("vits16", "w.pth")
    assert load(_Outer, None, ["backbone.dino.variant=tiny"]).backbone.dino.variant == "tiny"
    with pytest.raises(ConfigError, match=r"^backbone\.dino\.variant: 3 is not a string"):
        from_dict(_Outer, {"backbone": {"dino": {"variant": 3}}})

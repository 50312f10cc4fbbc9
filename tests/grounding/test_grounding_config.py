"""GroundingConfig: paper defaults, (de)serialisation, validation, Table 2 rows, prompts."""

import json

import pytest
import yaml

from afford.config import from_dict, load, to_dict
from afford.errors import AffordError
from afford.grounding.config import GroundingConfig, GroundingModelSpec
from afford.grounding.prompts import action_prompt, entity_prompt

NAMES = ["hold", "cut_with", "sit_on"]

# Paper Table 2, columns Proto.Obj, Proto.P, Pixel.Obj, Pixel.P, Cali. ("x" = check mark).
PAPER_TABLE2 = {
    "a": "-----",
    "b": "----x",
    "c": "x----",
    "d": "x-x--",
    "e": "x-x-x",
    "f": "xx---",
    "g": "xxx--",
    "h": "xxxx-",
    "i": "xxxxx",
}


def test_defaults_are_the_papers():
    cfg = GroundingConfig(class_names=NAMES)
    assert (cfg.alpha, cfg.gamma1, cfg.gamma2, cfg.beta, cfg.tau) == (0.6, 0.6, 0.6, 1.0, 0.5)
    assert (cfg.lambda_proto, cfg.lambda_pixel, cfg.num_exo, cfg.k) == (1.0, 1.0, 3, 3)
    assert cfg.method == "selective" and cfg.mode == "paper" and cfg.calibration == "binary"
    assert cfg.feat_dim == 384 and cfg.num_classes == 3
    assert cfg.saliency_heads == (0, 1, 3) and cfg.kmeans_iters == 300
    assert cfg.locate_conc_weight == 0.07 and cfg.base_tau == 0.07
    assert GroundingConfig(class_names=NAMES, mode="official").calibration == "soft"


def test_round_trip_json():
    cfg = GroundingConfig(class_names=NAMES, feat_dim=96, mode="official", alpha=0.5)
    d = json.loads(json.dumps(to_dict(cfg)))
    back = from_dict(GroundingConfig, d)
    assert back == cfg
    assert back.saliency_heads == (0, 1, 3)


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "foo"},
        {"mode": "offical"},
        {"alpha": 1.5},
        {"gamma1": -0.1},
        {"tau": 0},
        {"feat_dim": 0},
        {"k": 0},
        {"class_names": []},
        {"class_names": ["a", "a"]},
        {"calibration": "hard"},
        {"part_saliency": "sam"},
        {"saliency_heads": []},
        {"use_proto": "yes"},
        {"lambda_proto": -1.0},
    ],
)
def test_validation_errors(bad, tmp_path):
    d = {"class_names": NAMES, **bad}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(AffordError) as ei:
        load(GroundingConfig, tmp_path / "cfg.yaml")
    field = next(iter(bad))
    assert "cfg.yaml" in str(ei.value) and field in str(ei.value)


def test_unknown_key_is_named():
    with pytest.raises(AffordError, match="lamda_proto"):
        from_dict(GroundingConfig, {"class_names": NAMES, "lamda_proto": 1.0})


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("row", sorted(PAPER_TABLE2))
def test_table2_rows_match_paper(row, mode):
    cfg = GroundingConfig.table2_row(row, class_names=NAMES, mode=mode, feat_dim=96)
    marks = PAPER_TABLE2[row]
    proto_obj, proto_part, pix_obj, pix_part, cali = (m == "x" for m in marks)
    assert cfg.use_proto == proto_obj and cfg.proto_part == proto_part
    assert cfg.use_pixel == pix_obj and cfg.pixel_part == pix_part
    want_cali = ("soft" if mode == "official" else "binary") if cali else "none"
    assert cfg.calibration == want_cali
    assert cfg.method == ("ce" if row in "ab" else "selective")
    assert cfg.mode == mode and cfg.feat_dim == 96


def test_table2_row_on_instance_and_from_dict():
    base = GroundingConfig(class_names=NAMES, feat_dim=96, tau=0.3)
    c = base.table2_row("(c)")
    assert c.tau == 0.3 and c.feat_dim == 96 and c.use_proto and not c.use_pixel
    d = from_dict(
        GroundingModelSpec, {"class_names": NAMES, "table2_row": "h", "alpha": 0.5}
    ).build()
    assert d.pixel_part and d.calibration == "none" and d.alpha == 0.5
    with pytest.raises(AffordError, match="unknown row"):
        GroundingConfig.table2_row("j", class_names=NAMES)


def test_prompts():
    assert action_prompt("hold") == "an item to hold with"
    assert action_prompt("cut_with") == "an item to cut_with"
    assert action_prompt("sit_on") == "an item to sit_on with"
    assert entity_prompt("sit_on") == "a person sit_on an item"
    with pytest.raises(AffordError):
        action_prompt("")

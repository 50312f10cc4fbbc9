"""Honest model selection (issue 18): absent or tiny validation is warned about and recorded,
and the report says which checkpoint was used and why."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "grounding"))
from gtrain_helpers import synth_tiny, tiny_config  # noqa: E402

from afford.data.io import read_json
from afford.demo.report import selection_text
from afford.engine.selection import MIN_VAL_IMAGES, selection_record
from afford.grounding.train import train


def test_selection_record_warns_on_absent_and_small_validation(caplog):
    with caplog.at_level(logging.WARNING):
        none = selection_record(None, None, 0, "images", why_none="data.val_fraction is 0")
        small = selection_record("val_kld", "val", 3, "images")
        big = selection_record("val_kld", "val", MIN_VAL_IMAGES, "images")
    assert none["checkpoint"] == "last" and "val_fraction" in none["warning"]
    assert small["checkpoint"] == "best" and "only 3 images" in small["warning"]
    assert big["warning"] is None and "lowest val_kld" in big["reason"]
    assert sum("model selection" in r.message for r in caplog.records) == 2
    txt = selection_text({"best_epoch": 2, "selection": small})
    assert "checkpoint `best` = epoch 2" in txt and "warning" in txt


def test_training_without_validation_says_so(tmp_path, caplog):
    root = synth_tiny(tmp_path) / "Unseen"
    exp = tiny_config(root, tmp_path / "run", epochs=1, logger="none")
    exp.data.val_fraction = 0.0
    with caplog.at_level(logging.WARNING):
        res = train(exp)
    sel = res["selection"]
    assert sel["checkpoint"] == "last" and sel["metric"] is None and sel["warning"]
    assert read_json(tmp_path / "run" / "history.json")["selection"] == sel
    assert any("no validation split" in r.message for r in caplog.records)
    small = train(tiny_config(root, tmp_path / "run2", epochs=1, logger="none"))["selection"]
    assert small["checkpoint"] == "best" and small["n"] < MIN_VAL_IMAGES and small["warning"]

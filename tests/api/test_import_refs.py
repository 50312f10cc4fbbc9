"""import-checkpoint references the official backbone files instead of copying them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from afford.errors import AffordError, DataError
from afford.grounding import import_ckpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grounding"))
from test_import import released_state_dict  # noqa: E402


def test_same_tensors_compares_values_across_dtypes():
    a = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    assert import_ckpt.same_tensors(a, {"w": a["w"].half(), "n": torch.tensor(3)})
    assert not import_ckpt.same_tensors(a, {"w": a["w"] + 1e-3, "n": torch.tensor(3)})
    assert not import_ckpt.same_tensors(a, {"w": a["w"]})
    assert not import_ckpt.same_tensors(a, {"w": a["w"].reshape(3, 2), "n": torch.tensor(3)})


def test_real_width_release_needs_the_official_file(tmp_path, monkeypatch):
    torch.save(released_state_dict(), tmp_path / "rel.pth")
    monkeypatch.setattr(import_ckpt, "_variant", lambda family, width: "vits16")

    def missing(family, weights=None):
        raise AffordError(f"{family} weights not found (offline)")

    monkeypatch.setattr(import_ckpt, "resolve_weights", missing)
    with pytest.raises(DataError, match="--copy-backbones"):
        import_ckpt.import_checkpoint(tmp_path / "rel.pth", tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_official_file_with_the_same_tensors_is_referenced(tmp_path, monkeypatch):
    sd = released_state_dict()
    dino = {k[len("vit_model.") :]: v for k, v in sd.items() if k.startswith("vit_model.")}
    torch.save(dino, tmp_path / "official.pth")
    monkeypatch.setattr(import_ckpt, "resolve_weights", lambda f, w=None: tmp_path / "official.pth")
    assert import_ckpt._official("dino", dino, None) == tmp_path / "official.pth"
    other = {k: v + 1 if v.is_floating_point() else v for k, v in dino.items()}
    assert import_ckpt._official("dino", other, None) is None  # a different backbone: copy

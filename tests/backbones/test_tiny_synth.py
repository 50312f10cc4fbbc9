"""The tiny-synth variants: the shipped self-supervised weights (afford/assets) load, and a
stand-in written after a 1-step pre-training (afford.pretrain) loads the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import afford.backbones.weights as mod  # the one place both loaders find shipped files
from afford.backbones import load_dino, load_dinov2, weights_status
from afford.backbones.weights import save_weights, shipped_weights
from afford.config import from_dict
from afford.errors import AffordError
from afford.pretrain import PretrainConfig, pretrain, wrap_backbone


@pytest.mark.parametrize("family", ["dino", "dinov2"])
def test_tiny_synth_variant_loads_the_packaged_file(family, images, tmp_path, monkeypatch):
    """variant="tiny-synth" reads afford/assets/tiny_synth_<family>.safetensors (here a
    stand-in written by save_weights after a 1-step pre-training); "tiny" stays random."""
    loader = load_dino if family == "dino" else load_dinov2
    assert shipped_weights(family).name == f"tiny_synth_{family}.safetensors"
    assert shipped_weights(family).parent.name == "assets"
    missing = tmp_path / "missing.safetensors"
    monkeypatch.setattr(mod, "shipped_weights", lambda fam: missing)
    with pytest.raises(AffordError, match="afford pretrain-backbone"):
        loader(variant="tiny-synth")
    imgs = np.random.default_rng(0).integers(0, 255, (4, 48, 48, 3), dtype=np.uint8)
    view = 32 if family == "dino" else 28
    cfg = from_dict(PretrainConfig, {
        "model": {"family": family, "pairs": 32}, "data": {"view_size": view},
        "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 4, "lr": 1e-2,
                  "out": str(tmp_path / "run"), "progress": False, "device": "cpu"},
    })  # fmt: skip
    res = pretrain(imgs, cfg)
    packaged = tmp_path / f"tiny_synth_{family}.safetensors"
    save_weights(wrap_backbone(res.vit.eval(), family, "x"), packaged)
    monkeypatch.setattr(mod, "shipped_weights", lambda fam: packaged)
    synth, rand = loader(variant="tiny-synth"), loader(variant="tiny")
    assert synth.model_id.startswith(f"{family}-tiny-synth@") and synth.feat_dim == 96
    a, b = synth(images), rand(images)
    if family == "dino":
        assert a["keys"].shape == b["keys"].shape == (2, 96, 14, 14)
        assert not torch.allclose(a["keys"], b["keys"], atol=1e-4)
    else:
        assert a[-1].shape == b[-1].shape == (2, 96, 16, 16)
        assert not torch.allclose(a[-1], b[-1], atol=1e-4)
    # variant="tiny" is untouched: still the deterministic random init
    assert rand.model_id == f"{family}-tiny@random0"
    status = weights_status()
    assert {"found", "path", "hint"} <= set(status[f"{family}-tiny-synth"])


def test_shipped_dino_tiny_synth_loads_and_differs_from_random_tiny(images):
    path = shipped_weights("dino")
    assert path.is_file() and path.stat().st_size < 5 * 2**20
    synth, rand = load_dino(variant="tiny-synth"), load_dino(variant="tiny")
    assert synth.model_id.startswith("dino-tiny-synth@")
    a, b = synth(images), rand(images)
    assert a["keys"].shape == b["keys"].shape == (2, 96, 14, 14)
    assert not torch.allclose(a["keys"], b["keys"], atol=1e-3)
    assert (a["cls_attn"].sum((2, 3)) <= 1 + 1e-6).all()  # CLS column dropped


def test_shipped_dinov2_tiny_synth_loads_and_differs_from_random_tiny(images):
    path = shipped_weights("dinov2")
    assert path.is_file() and path.stat().st_size < 5 * 2**20
    synth, rand = load_dinov2(variant="tiny-synth"), load_dinov2(variant="tiny")
    assert synth.model_id.startswith("dinov2-tiny-synth@")
    a, b = synth(images), rand(images)
    assert len(a) == len(b) == 3 and a[-1].shape == b[-1].shape == (2, 96, 16, 16)
    assert not torch.allclose(a[-1], b[-1], atol=1e-3)

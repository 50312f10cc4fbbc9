"""Fixtures for the backbone tests: isolated weight locations and small random inputs."""

from __future__ import annotations

import huggingface_hub.constants as hf_constants
import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path, monkeypatch):
    """No real weights anywhere: empty AFFORD_WEIGHTS, torch hub, HF cache and ~/.cache/clip."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AFFORD_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path


@pytest.fixture()
def images() -> torch.Tensor:
    """Two random RGB images (2,3,224,224) in [0,1] (fixed seed)."""
    g = torch.Generator().manual_seed(7)
    return torch.rand(2, 3, 224, 224, generator=g)

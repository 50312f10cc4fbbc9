"""Import of a released SelectiveCL state dict (random weights in the released key layout)."""

from __future__ import annotations

import pytest
import torch

from afford.backbones import load_clip, load_dino
from afford.data.agd20k import HICO_IIF_CLASSES
from afford.errors import AffordError
from afford.grounding.build import load_trained
from afford.grounding.import_ckpt import import_checkpoint, split_released

D, C = 96, 10  # tiny DINO width; HICO-IIF has 10 classes


def _conv_block(prefix: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    sd = {}
    for i in (0, 3):
        sd[f"{prefix}.{i}.weight"] = torch.randn(D, D, 3, 3, generator=g) * 0.02
        sd[f"{prefix}.{i}.bias"] = torch.randn(D, generator=g)
    for i in (1, 4):
        sd[f"{prefix}.{i}.weight"] = torch.rand(D, generator=g) + 0.5
        sd[f"{prefix}.{i}.bias"] = torch.randn(D, generator=g)
        sd[f"{prefix}.{i}.running_mean"] = torch.randn(D, generator=g)
        sd[f"{prefix}.{i}.running_var"] = torch.rand(D, generator=g) + 0.5
        sd[f"{prefix}.{i}.num_batches_tracked"] = torch.tensor(123)
    return sd


def released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the released ``Net`` layout (heads + vit_model.* + net.*),
    written from the layout description, not from our module."""
    g = torch.Generator().manual_seed(seed)
    sd = {
        "aff_proj.norm.weight": torch.rand(D, generator=g) + 0.5,
        "aff_proj.norm.bias": torch.randn(D, generator=g),
        "aff_proj.fc1.weight": torch.randn(4 * D, D, generator=g) * 0.05,
        "aff_proj.fc1.bias": torch.randn(4 * D, generator=g),
        "aff_proj.fc2.weight": torch.randn(D, 4 * D, generator=g) * 0.05,
        "aff_proj.fc2.bias": torch.randn(D, generator=g),
        "aff_classifier.weight": torch.randn(C, D, 1, 1, generator=g),
        "aff_classifier.bias": torch.randn(C, generator=g),
        "K_contrast_projection.weight": torch.randn(D, D, 1, 1, generator=g),
        "K_contrast_projection.bias": torch.randn(D, generator=g),
        "pixel_contrast_projection.weight": torch.randn(D, D, 1, 1, generator=g),
        "pixel_contrast_projection.bias": torch.randn(D, generator=g),
        **_conv_block("aff_ego_proj", g),
        **_conv_block("aff_exo_proj", g),
    }
    # frozen backbones: tiny DINO (official ViT layout) and tiny CLIP (OpenAI layout),
    # perturbed so they differ from the deterministic tiny init
    for k, v in load_dino(variant="tiny").vit.state_dict().items():
        sd[f"vit_model.{k}"] = (
            v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        )
    for k, v in load_clip(variant="tiny").clip.state_dict().items():
        sd[f"net.{k}"] = (
            v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        )
    return sd


def test_import_released_layout(tmp_path):
    sd = released_state_dict()
    src = tmp_path / "best_model.pth"
    torch.save(sd, src)  # as the release does
    out = import_checkpoint(src, tmp_path / "ckpt")
    assert (out / "model.safetensors").is_file() and (out / "dino.safetensors").is_file()
    model, cfg, dino, clip = load_trained(out, "cpu", with_clip=True)
    assert model.cfg.class_names == HICO_IIF_CLASSES  # from the classifier width
    assert model.cfg.mode == "official" and model.cfg.calibration == "soft"
    assert model.cfg.method == "selective" and model.cfg.feat_dim == D
    assert cfg.backbone.clip.normalize == "imagenet"
    ours = model.state_dict()
    heads, dino_sd, clip_sd, unknown = split_released(sd)
    assert not unknown and set(ours) == set(heads)
    for k, v in heads.items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0)
    for k, v in dino.vit.state_dict().items():
        torch.testing.assert_close(v, dino_sd[k], rtol=0, atol=0)
    for k, v in clip.clip.state_dict().items():
        torch.testing.assert_close(v, clip_sd[k], rtol=0, atol=0)
    # the imported heads compute the released head: CAM = classifier(ego_proj(aff_proj(keys)))
    keys = torch.randn(2, D, 14, 14)
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        t = keys.permute(0, 2, 3, 1)
        t = torch.nn.functional.layer_norm(
            t, (D,), heads["aff_proj.norm.weight"], heads["aff_proj.norm.bias"]
        )
        t = torch.nn.functional.gelu(
            t @ heads["aff_proj.fc1.weight"].T + heads["aff_proj.fc1.bias"]
        )
        x = (t @ heads["aff_proj.fc2.weight"].T + heads["aff_proj.fc2.bias"]).permute(0, 3, 1, 2)
        for i in (0, 3):
            p = f"aff_ego_proj.{i}"
            x = torch.nn.functional.conv2d(x, heads[f"{p}.weight"], heads[f"{p}.bias"], padding=1)
            q = f"aff_ego_proj.{i + 1}"
            x = torch.nn.functional.batch_norm(
                x, heads[f"{q}.running_mean"], heads[f"{q}.running_var"], heads[f"{q}.weight"],
                heads[f"{q}.bias"], training=False,
            )  # fmt: skip
            x = torch.relu(x)
        maps = torch.nn.functional.conv2d(
            x, heads["aff_classifier.weight"], heads["aff_classifier.bias"]
        )
        want = maps[torch.arange(2), labels]
        torch.testing.assert_close(model.cam(keys, labels), want, rtol=1e-4, atol=1e-4)


def test_import_errors(tmp_path):
    sd = released_state_dict()
    bad = dict(sd)
    bad["something_else.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(AffordError, match="something_else"):
        import_checkpoint(tmp_path / "bad.pth", tmp_path / "o1")
    wrong = {k: v for k, v in sd.items() if not k.startswith("aff_exo_proj.3")}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(AffordError, match="aff_exo_proj.3"):
        import_checkpoint(tmp_path / "wrong.pth", tmp_path / "o2")
    torch.save(sd, tmp_path / "ok.pth")
    with pytest.raises(AffordError, match="classifier has 10 classes"):
        import_checkpoint(tmp_path / "ok.pth", tmp_path / "o3", classes=["a", "b"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(AffordError, match="not empty"):
        import_checkpoint(tmp_path / "ok.pth", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(AffordError, match="not found"):
        import_checkpoint(tmp_path / "missing.pth", tmp_path / "o4")

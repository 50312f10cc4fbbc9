"""Weight files: official key layouts written from random models and loaded through the real
loaders; resolution order (explicit path, AFFORD_WEIGHTS, hub caches); clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from afford.backbones import load_clip, load_dino, load_dinov2, save_weights, weights_status
from afford.backbones.clip import ClipBackbone, build_clip
from afford.backbones.dino import DinoBackbone
from afford.backbones.dino import build_vit as build_dino_vit
from afford.backbones.dinov2 import Dinov2Backbone, interpolate_pos_embed
from afford.backbones.dinov2 import build_vit as build_dinov2_vit
from afford.backbones.registry import variant
from afford.backbones.weights import (
    file_fingerprint,
    find_weights,
    read_state_dict,
    resolve_weights,
)
from afford.cli import main
from afford.errors import AffordError

TINY_CFG = variant("clip", "tiny").tiny_args

VIT_BLOCK_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
CLIP_BLOCK_KEYS = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_1.weight",
    "ln_1.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
)


def dino_official_keys(depth: int) -> set[str]:
    """Keys of DINO's released ViT checkpoints (dino_deitsmall16_pretrain.pth)."""
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    keys |= {"norm.weight", "norm.bias"}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in VIT_BLOCK_KEYS}
    return keys


def dinov2_meta_keys(depth: int) -> set[str]:
    """Keys of Meta's dinov2_vitb14_pretrain.pth: DINO's plus mask_token and layer scales."""
    keys = dino_official_keys(depth) | {"mask_token"}
    return keys | {f"blocks.{i}.ls{j}.gamma" for i in range(depth) for j in (1, 2)}


def openai_clip_keys(vision_layers: int, text_layers: int) -> set[str]:
    """Keys of OpenAI's CLIP ViT state dict (ViT-B-16.pt)."""
    keys = {
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.proj",
        "visual.conv1.weight",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        "visual.ln_post.weight",
        "visual.ln_post.bias",
        "token_embedding.weight",
        "positional_embedding",
        "ln_final.weight",
        "ln_final.bias",
        "text_projection",
        "logit_scale",
    }
    keys |= {
        f"visual.transformer.resblocks.{i}.{k}"
        for i in range(vision_layers)
        for k in CLIP_BLOCK_KEYS
    }
    keys |= {f"transformer.resblocks.{i}.{k}" for i in range(text_layers) for k in CLIP_BLOCK_KEYS}
    return keys


def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every parameter away from the default (seeded) init, so a load is observable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def same_state(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


# ----------------------------------------------------------------------------------- DINO


def test_dino_official_pth_full_size(tmp_path, images, monkeypatch):
    """Full-size ViT-S/16 in the exact layout of dino_deitsmall16_pretrain.pth."""
    src = perturb(build_dino_vit("vits16"), seed=1)
    sd = src.state_dict()
    assert set(sd) == dino_official_keys(12)
    assert sd["pos_embed"].shape == (1, 197, 384) and sd["cls_token"].shape == (1, 1, 384)
    path = tmp_path / "w" / "dino_deitsmall16_pretrain.pth"
    path.parent.mkdir()
    torch.save(sd, path)
    monkeypatch.setenv("AFFORD_WEIGHTS", str(path.parent))
    loaded = load_dino()  # resolved through AFFORD_WEIGHTS
    assert same_state(loaded.vit, src)
    ref = DinoBackbone(src, "ref")(images[:1])
    out = loaded(images[:1])
    for key in ("keys", "cls_attn", "tokens"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)
    assert out["keys"].shape == (1, 384, 14, 14) and out["cls_attn"].shape == (1, 6, 14, 14)
    assert loaded.model_id.startswith("dino-vits16@") and "random" not in loaded.model_id
    # the model id is a stable function of the file (cache key)
    assert loaded.model_id == f"dino-vits16@{file_fingerprint(path)}"


def test_dino_timm_safetensors_and_tiny_checkpoint(tmp_path, images):
    src = perturb(build_dino_vit("tiny"), seed=2)
    assert set(src.state_dict()) == dino_official_keys(4)
    st = tmp_path / "model.safetensors"
    save_file(src.state_dict(), str(st))
    pth = tmp_path / "tiny.pth"
    torch.save(src.state_dict(), pth)
    ref = DinoBackbone(src, "ref")(images)
    for path in (st, pth):
        loaded = load_dino(weights=path, variant="tiny")
        assert same_state(loaded.vit, src)
        torch.testing.assert_close(loaded(images)["keys"], ref["keys"], rtol=0, atol=0)
        assert loaded.model_id != load_dino(variant="tiny").model_id
    # a tiny checkpoint is not a ViT-S/16
    with pytest.raises(AffordError, match="does not match.*shape mismatches"):
        load_dino(weights=st, variant="vits16")


def test_dino_training_checkpoint_prefixes(tmp_path):
    src = perturb(build_dino_vit("tiny"), seed=3)
    path = tmp_path / "checkpoint.pth"
    wrapped = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    torch.save({"teacher": wrapped, "epoch": 3}, path)
    assert same_state(load_dino(weights=path, variant="tiny").vit, src)


# --------------------------------------------------------------------------------- DINOv2


def meta_dinov2_state(src: torch.nn.Module, grid518: int, seed: int) -> dict:
    """Meta layout from a timm DINOv2: mask_token plus a 518px (grid518^2) position embedding."""
    g = torch.Generator().manual_seed(seed)
    sd = dict(src.state_dict())
    dim = sd["cls_token"].shape[-1]
    sd["mask_token"] = torch.randn(1, dim, generator=g)
    sd["pos_embed"] = torch.randn(1, 1 + grid518 * grid518, dim, generator=g) * 0.02
    return sd


def test_dinov2_meta_layout_reduced_width(tmp_path, images):
    """Meta key layout (mask_token, ls*.gamma, 37x37 pos_embed) at reduced width."""
    src = perturb(build_dinov2_vit("tiny"), seed=4)
    sd = meta_dinov2_state(src, 37, seed=5)
    assert set(sd) == dinov2_meta_keys(4)
    path = tmp_path / "dinov2_tiny_pretrain.pth"
    torch.save(sd, path)
    loaded = load_dinov2(weights=path, variant="tiny")
    expected_pos = interpolate_pos_embed(sd["pos_embed"], 16)
    assert expected_pos.shape == (1, 257, 96)
    torch.testing.assert_close(loaded.vit.pos_embed.data, expected_pos, rtol=0, atol=0)
    assert same_state(loaded.vit, src, skip=("pos_embed",))
    with torch.no_grad():
        src.pos_embed.copy_(expected_pos)
    ref = Dinov2Backbone(src, "ref")(images)
    for a, b in zip(loaded(images), ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # timm's safetensors layout (no mask_token, same 518px pos_embed) gives the same model
    sd.pop("mask_token")
    st = tmp_path / "model.safetensors"
    save_file(sd, str(st))
    assert same_state(load_dinov2(weights=st, variant="tiny").vit, loaded.vit)


@pytest.mark.slow
def test_dinov2_meta_pth_full_size(tmp_path):
    src = build_dinov2_vit("vitb14")
    sd = meta_dinov2_state(src, 37, seed=6)
    assert set(sd) == dinov2_meta_keys(12)
    assert sd["pos_embed"].shape == (1, 1370, 768)
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save(sd, path)
    loaded = load_dinov2(weights=path)
    torch.testing.assert_close(
        loaded.vit.pos_embed.data, interpolate_pos_embed(sd["pos_embed"], 16), rtol=0, atol=0
    )
    assert same_state(loaded.vit, src, skip=("pos_embed",))
    maps = loaded(torch.rand(1, 3, 224, 224))
    assert [m.shape for m in maps] == [(1, 768, 16, 16)] * 3


# ----------------------------------------------------------------------------------- CLIP


def openai_state(model: torch.nn.Module, fp16: bool) -> dict:
    """OpenAI-layout state dict (config entries included, weights optionally in float16)."""
    sd = {
        k: (v.half() if fp16 and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    sd["input_resolution"] = torch.tensor(224)
    sd["context_length"] = torch.tensor(77)
    sd["vocab_size"] = torch.tensor(49408)
    return sd


def test_clip_openai_state_dict_fp16_reduced_width(tmp_path, images):
    src = perturb(build_clip(TINY_CFG), seed=7)
    sd = openai_state(src, fp16=True)
    assert set(sd) - {"input_resolution", "context_length", "vocab_size"} == openai_clip_keys(3, 2)
    path = tmp_path / "ViT-tiny.pt"
    torch.save(sd, path)
    loaded = load_clip(weights=path, variant="tiny")
    src.half().float()  # the reference sees the same float16-rounded weights
    assert same_state(loaded.clip, src)
    assert loaded.clip.visual.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "QuickGELU"
    ref = ClipBackbone(src, "ref", "clip")
    torch.testing.assert_close(loaded.dense(images), ref.dense(images), rtol=0, atol=0)
    prompts = ["an item to hold with", "a person pour an item"]
    torch.testing.assert_close(
        loaded.encode_text(prompts), ref.encode_text(prompts), rtol=0, atol=0
    )


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_clip_torchscript_archive(tmp_path, images):
    """OpenAI ships ViT-B-16.pt as a TorchScript archive; a traced model has the same keys."""
    src = perturb(build_clip(TINY_CFG), seed=8).eval()
    traced = torch.jit.trace(
        src, (torch.rand(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)), check_trace=False
    )
    path = tmp_path / "ViT-B-16.pt"
    traced.save(str(path))
    assert set(read_state_dict(path)) - {"attn_mask"} == openai_clip_keys(3, 2)
    loaded = load_clip(weights=path, variant="tiny")
    assert same_state(loaded.clip, src)
    ref = ClipBackbone(src, "ref", "clip")
    torch.testing.assert_close(loaded.dense(images), ref.dense(images), rtol=0, atol=0)


def test_clip_open_clip_safetensors_gelu_config(tmp_path, images):
    """open_clip safetensors with an open_clip_config.json saying quick_gelu=false -> GELU."""
    src = perturb(build_clip(TINY_CFG, quick_gelu=False), seed=9)
    folder = tmp_path / "snapshot"
    folder.mkdir()
    path = folder / "open_clip_model.safetensors"
    save_file(src.state_dict(), str(path))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": {**TINY_CFG, "quick_gelu": False}})
    )
    loaded = load_clip(weights=path, variant="tiny")
    assert loaded.clip.visual.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "GELU"
    assert "-gelu@" in loaded.model_id
    ref = ClipBackbone(src, "ref", "clip")
    torch.testing.assert_close(loaded.dense(images), ref.dense(images), rtol=0, atol=0)
    # without the config the OpenAI default (QuickGELU) applies and the output changes
    (folder / "open_clip_config.json").unlink()
    quick = load_clip(weights=path, variant="tiny")
    assert same_state(quick.clip, src)
    assert not torch.allclose(quick.dense(images), ref.dense(images), atol=1e-4)


@pytest.mark.slow
def test_clip_openai_full_size(tmp_path):
    src = build_clip(open_clip.get_model_config("ViT-B-16"))
    sd = openai_state(src, fp16=True)
    assert set(sd) - {"input_resolution", "context_length", "vocab_size"} == openai_clip_keys(
        12, 12
    )
    assert sd["visual.conv1.weight"].shape == (768, 3, 16, 16)
    assert sd["visual.proj"].shape == (768, 512) and sd["text_projection"].shape == (512, 512)
    path = tmp_path / "ViT-B-16.pt"
    torch.save(sd, path)
    loaded = load_clip(weights=path, normalize="imagenet")
    assert loaded.embed_dim == 512 and loaded.grid == 14
    assert same_state(loaded.clip, src.half().float())
    assert loaded.dense(torch.rand(1, 3, 224, 224)).shape == (1, 512, 14, 14)
    assert loaded.encode_text(["an item to cut_with"]).shape == (1, 512)


def test_clip_wrong_file(tmp_path):
    path = tmp_path / "dino.pth"
    torch.save(build_dino_vit("tiny").state_dict(), path)
    with pytest.raises(AffordError, match="not an OpenAI/open_clip CLIP ViT state dict"):
        load_clip(weights=path)


# ---------------------------------------------------------------------------- resolution


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_resolution_order(isolated_weights, monkeypatch):
    root = isolated_weights
    assert find_weights("dino") is None
    # torch hub cache
    hub = touch(root / "torch_home" / "hub" / "checkpoints" / "dino_deitsmall16_pretrain.pth")
    assert resolve_weights("dino") == hub
    # Hugging Face cache (timm repo) comes before the torch hub cache
    repo = root / "hf_cache" / "models--timm--vit_small_patch16_224.dino"
    hf = touch(repo / "snapshots" / "abc123" / "model.safetensors")
    touch(repo / "refs" / "main").write_text("abc123")
    assert resolve_weights("dino") == hf
    # AFFORD_WEIGHTS comes before both
    env = touch(root / "mine" / "dino_deitsmall16_pretrain.pth")
    monkeypatch.setenv("AFFORD_WEIGHTS", str(env.parent))
    assert resolve_weights("dino") == env
    # an explicit path comes first
    explicit = touch(root / "elsewhere" / "my.pth")
    assert resolve_weights("dino", explicit) == explicit
    # CLIP: open_clip / OpenAI download cache ~/.cache/clip
    clip_file = touch(root / "home" / ".cache" / "clip" / "ViT-B-16.pt")
    assert resolve_weights("clip") == clip_file
    status = weights_status()
    assert status["dino"] == {"found": True, "path": str(env), "hint": status["dino"]["hint"]}
    assert status["clip"]["found"] and not status["dinov2"]["found"]
    assert "dinov2_vitb14_pretrain.pth" in status["dinov2"]["hint"]


def test_offline_error_and_unknown_family(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFORD_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(AffordError) as err:
        resolve_weights("dinov2")
    msg = str(err.value)
    assert "dinov2_vitb14_pretrain.pth" in msg and str(tmp_path / "empty") in msg
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth" in msg
    with pytest.raises(AffordError, match="unknown backbone 'sam'"):
        resolve_weights("sam")


def test_unreadable_files(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AffordError, match="cannot read weight file .*broken.pth"):
        load_dino(weights=bad)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(AffordError, match="holds no tensors"):
        read_state_dict(empty)


def test_afford_info_reports_weights(isolated_weights, monkeypatch, capsys):
    env = touch(isolated_weights / "w" / "ViT-B-16.pt")
    monkeypatch.setenv("AFFORD_WEIGHTS", str(env.parent))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backbones"]["clip"] == {
        "found": True,
        "path": str(env),
        "hint": info["backbones"]["clip"]["hint"],
    }
    assert info["backbones"]["dino"]["found"] is False
    assert main(["info"]) == 0
    assert str(env) in capsys.readouterr().out


# ------------------------------------------------------------------- tiny checkpoints


@pytest.mark.parametrize(
    ("loader", "suffix"),
    [(load_dino, ".safetensors"), (load_dinov2, ".pth"), (load_clip, ".safetensors")],
)
def test_save_weights_round_trip_tiny(tmp_path, loader, suffix):
    """A (e.g. self-supervised) tiny backbone saved with save_weights loads back identically."""
    trained = loader(variant="tiny")
    perturb(trained.inner, seed=11)
    path = save_weights(trained, tmp_path / f"tiny{suffix}")
    again = loader(weights=path, variant="tiny")
    assert same_state(again.inner, trained.inner)
    assert not same_state(again.inner, loader(variant="tiny").inner)
    assert again.model_id != trained.model_id  # file-based id, not the random init's
    with pytest.raises(AffordError, match="expected a backbone"):
        save_weights(torch.nn.Linear(2, 2), tmp_path / "x.pth")


@pytest.mark.slow
def test_tiny_weights_identical_in_a_fresh_process():
    """Tiny variants are the same in every process (seeded, independent of the global RNG)."""
    code = (
        "import torch\n"
        "torch.manual_seed(12345)\n"
        "from afford.backbones import load_clip, load_dino, load_dinov2\n"
        "for f in (load_dino, load_dinov2, load_clip):\n"
        "    sd = f(variant='tiny').inner.state_dict()\n"
        "    print(repr(sum(float(v.double().sum()) for v in sd.values())))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    here = [
        repr(sum(float(v.double().sum()) for v in f(variant="tiny").inner.state_dict().values()))
        for f in (load_dino, load_dinov2, load_clip)
    ]
    assert out == here

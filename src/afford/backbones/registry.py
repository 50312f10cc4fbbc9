"""The one registry of backbone facts (like timm's pretrained configs).

Every fact the loaders, ``afford info``, the pre-training recipe and the docs need about a
backbone lives here and nowhere else: per family (``"dino"``, ``"dinov2"``, ``"clip"``) the
variants with their architecture (timm / open_clip model name or the tiny arguments), feature
dimension, depth, heads, patch size and grid at 224 px, the layers the methods read, where the
real weights are found (:class:`WeightSpec`) and the shipped tiny-synth weight file.

- :data:`FAMILIES` ``{family: FamilySpec}``; :func:`family` and :func:`variant` look entries
  up with one-line errors naming the known names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afford.errors import AffordError

INPUT_SIZE = 224
TINY_SEED = 0
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class WeightSpec:
    """Where the real weights of one backbone family can be found.

    Attributes:
        family: "dino" | "dinov2" | "clip".
        filename: the official file name (what the download URL serves).
        url: official download URL.
        local_names: every file name accepted inside ``AFFORD_WEIGHTS`` (official first).
        hf: (repo_id, filename) pairs looked up in the Hugging Face hub cache.
        cache_dirs: extra directories searched for ``filename`` (torch hub, CLIP cache).
    """

    family: str
    filename: str
    url: str
    local_names: tuple[str, ...]
    hf: tuple[tuple[str, str], ...]
    cache_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a family.

    Attributes:
        name: variant name (``load_<family>(variant=name)``).
        arch: timm / open_clip model name of a real variant, "tiny" for the small ones.
        feat_dim: descriptor dimension (DINO/DINOv2: token width; CLIP: joint embedding E).
        depth: transformer blocks (CLIP: vision tower).
        num_heads: attention heads of the (vision) blocks.
        patch_size: patch side in pixels; ``grid`` = 224 // patch_size.
        weights: "real" (official file, see the family's WeightSpec), "random" (deterministic
            init seeded with TINY_SEED) or "shipped" (the tiny architecture with the weights
            shipped in ``afford/assets``).
        tiny_args: constructor arguments of a tiny architecture (timm VisionTransformer
            kwargs; CLIP: open_clip config dict).
    """

    name: str
    arch: str
    feat_dim: int
    depth: int
    num_heads: int
    patch_size: int
    weights: str
    tiny_args: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> int:
        return INPUT_SIZE // self.patch_size


@dataclass(frozen=True)
class FamilySpec:
    """One backbone family.

    Attributes:
        family: "dino" | "dinov2" | "clip"; ``label`` its display name ("DINOv2").
        variants: ``{name: VariantSpec}``, the real one first.
        layers: what the methods read ("last-block keys + CLS attention", ...).
        num_layers_out: how many last blocks' outputs are taken (DINOv2: 3).
        normalize: default input normalisation.
        weights: where the real weights are found.
        shipped: file name of the tiny-synth weights in ``afford/assets`` (None: none).
    """

    family: str
    label: str
    variants: dict[str, VariantSpec]
    layers: str
    weights: WeightSpec
    normalize: str = "imagenet"
    num_layers_out: int = 1
    shipped: str | None = None

    @property
    def real_variant(self) -> str:
        return next(iter(self.variants))

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.variants)

    @property
    def shipped_path(self) -> Path | None:
        return ASSETS_DIR / self.shipped if self.shipped is not None else None


_DINO_TINY = dict(patch_size=16, embed_dim=96, depth=4, num_heads=6)
_DINOV2_TINY = dict(patch_size=14, embed_dim=96, depth=4, num_heads=6, init_values=1e-5)
_CLIP_TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 3, "width": 128, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}

FAMILIES: dict[str, FamilySpec] = {
    "dino": FamilySpec(
        family="dino",
        label="DINO",
        variants={
            "vits16": VariantSpec("vits16", "vit_small_patch16_224", 384, 12, 6, 16, "real"),
            "tiny": VariantSpec("tiny", "tiny", 96, 4, 6, 16, "random", _DINO_TINY),
            "tiny-synth": VariantSpec("tiny-synth", "tiny", 96, 4, 6, 16, "shipped", _DINO_TINY),
        },
        layers="last block: attention keys (channel = d * heads + head) and CLS attention",
        weights=WeightSpec(
            family="dino",
            filename="dino_deitsmall16_pretrain.pth",
            url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/"
            "dino_deitsmall16_pretrain.pth",
            local_names=(
                "dino_deitsmall16_pretrain.pth",
                "vit_small_patch16_224.dino.safetensors",
                "vit_small_patch16_224.dino/model.safetensors",
            ),
            hf=(("timm/vit_small_patch16_224.dino", "model.safetensors"),),
        ),
        shipped="tiny_synth_dino.safetensors",
    ),
    "dinov2": FamilySpec(
        family="dinov2",
        label="DINOv2",
        variants={
            "vitb14": VariantSpec("vitb14", "vit_base_patch14_dinov2", 768, 12, 12, 14, "real"),
            "tiny": VariantSpec("tiny", "tiny", 96, 4, 6, 14, "random", _DINOV2_TINY),
            "tiny-synth": VariantSpec("tiny-synth", "tiny", 96, 4, 6, 14, "shipped", _DINOV2_TINY),
        },
        layers="patch tokens of the last 3 blocks, before the final norm",
        num_layers_out=3,
        weights=WeightSpec(
            family="dinov2",
            filename="dinov2_vitb14_pretrain.pth",
            url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            local_names=(
                "dinov2_vitb14_pretrain.pth",
                "vit_base_patch14_dinov2.lvd142m.safetensors",
                "vit_base_patch14_dinov2.lvd142m/model.safetensors",
            ),
            hf=(("timm/vit_base_patch14_dinov2.lvd142m", "model.safetensors"),),
        ),
        shipped="tiny_synth_dinov2.safetensors",
    ),
    "clip": FamilySpec(
        family="clip",
        label="CLIP",
        variants={
            "vitb16": VariantSpec("vitb16", "ViT-B-16", 512, 12, 12, 16, "real"),
            "tiny": VariantSpec("tiny", "tiny", 64, 3, 2, 16, "random", _CLIP_TINY),
        },
        layers="ClearCLIP last block (q-q attention, no residual, no MLP) over all patches",
        normalize="clip",
        weights=WeightSpec(
            family="clip",
            filename="ViT-B-16.pt",
            url="https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
            local_names=(
                "ViT-B-16.pt",
                "open_clip_model.safetensors",
                "vit_base_patch16_clip_224.openai/open_clip_model.safetensors",
                "open_clip_pytorch_model.bin",
            ),
            hf=(("timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors"),),
            cache_dirs=("~/.cache/clip",),
        ),
    ),
}

#: Families with shipped tiny-synth weights (what ``afford pretrain-backbone`` trains).
PRETRAIN_FAMILIES: tuple[str, ...] = tuple(f for f, s in FAMILIES.items() if s.shipped)


def family(name: str) -> FamilySpec:
    """The registry entry of backbone family ``name``; AffordError naming the known ones."""
    if name not in FAMILIES:
        raise AffordError(f"unknown backbone {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def variant(family_name: str, name: str) -> VariantSpec:
    """The registry entry of ``variant`` of ``family_name``; AffordError listing the known."""
    spec = family(family_name)
    if name not in spec.variants:
        known = ", ".join(repr(k) for k in spec.variants)
        raise AffordError(f"unknown {spec.label} variant {name!r}; choose one of {known}")
    return spec.variants[name]

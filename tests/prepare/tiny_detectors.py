"""Tiny random OWLv2 / Grounding DINO models built from their config classes (no download),
saved with ``save_pretrained`` so the labeller loads them like real checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "the of a an handle spout blade kettle mug knife rim body lip jug part neck bottle "
    "pour drink with , : ."
).split()


def save_tiny_owlv2(out: Path, seed: int = 0) -> Path:
    from tokenizers import pre_tokenizers
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    vocab[bos], vocab[eos] = len(vocab), len(vocab) + 1
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    torch.manual_seed(seed)
    cfg = Owlv2Config(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=vocab[bos],
            eos_token_id=vocab[eos],
            pad_token_id=vocab[eos],
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
        ),
        projection_dim=16,
    )
    model = Owlv2ForObjectDetection(cfg)
    proc = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def save_tiny_grounding_dino(out: Path, seed: int = 0) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    out.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (out / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(vocab=str(out / "vocab.txt"), model_max_length=32)
    torch.manual_seed(seed)
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 1],
            window_size=4,
            out_features=["stage1", "stage2"],
        ),
        text_config=BertConfig(
            vocab_size=len(words),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,  # the box heads are tied across decoder layers: needs >= 2
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        d_model=32,  # GroupNorm(32, d_model)
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    model = GroundingDinoForObjectDetection(cfg)
    proc = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tok,
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out

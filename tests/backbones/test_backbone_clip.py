"""CLIP backbone: ClearCLIP last block re-derived by hand, vanilla dense path, text, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from afford.backbones import load_clip
from afford.errors import AffordError

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def clip():
    return load_clip(variant="tiny")


def block_output(visual, x: torch.Tensor, index: int) -> torch.Tensor:
    """Tokens (B, N, W) after block ``index``, embedding written out by hand: patchify conv,
    class token first, position embedding, ln_pre; then open_clip's blocks 0..index."""
    b = x.shape[0]
    p = visual.conv1(x).flatten(2).transpose(1, 2)  # (B, 196, W), patch = row * 14 + col
    cls = visual.class_embedding.view(1, 1, -1).expand(b, 1, -1)
    t = torch.cat([cls, p], dim=1) + visual.positional_embedding
    t = F.layer_norm(t, (t.shape[-1],), visual.ln_pre.weight, visual.ln_pre.bias, eps=1e-5)
    for blk in visual.transformer.resblocks[: index + 1]:
        t = blk(t)
    return t


def test_clearclip_last_block_by_hand(clip, images):
    visual = clip.clip.visual
    layers, width, heads = 3, 128, 2
    hd = width // heads
    with torch.no_grad():
        x = block_output(visual, (images - CLIP_MEAN) / CLIP_STD, layers - 2)  # last block input
        blk = visual.transformer.resblocks[-1]
        y = F.layer_norm(x, (width,), blk.ln_1.weight, blk.ln_1.bias, eps=1e-5)
        qkv = y @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
        q, v = qkv[..., :width], qkv[..., 2 * width :]
        outs = []
        for h in range(heads):
            qh, vh = q[..., h * hd : (h + 1) * hd], v[..., h * hd : (h + 1) * hd]
            a = torch.softmax(qh @ qh.transpose(1, 2) / hd**0.5, dim=-1)  # query-query
            outs.append(a @ vh)
        o = torch.cat(outs, dim=-1) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
        # no residual, no MLP; ln_post + proj on every token
        z = F.layer_norm(o, (width,), visual.ln_post.weight, visual.ln_post.bias, eps=1e-5)
        tokens = z @ visual.proj
        expected = tokens[:, 1:].reshape(2, 14, 14, 64).permute(0, 3, 1, 2)
    got = clip.dense(images, clearclip=True)
    assert got.shape == (2, 64, 14, 14)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_vanilla_dense_path(clip, images):
    visual = clip.clip.visual
    with torch.no_grad():
        x = block_output(visual, (images - CLIP_MEAN) / CLIP_STD, 2)  # output of the last block
        tokens = visual.ln_post(x) @ visual.proj
        expected = tokens[:, 1:].transpose(1, 2).reshape(2, 64, 14, 14)
        pooled = clip.clip.encode_image((images - CLIP_MEAN) / CLIP_STD)
    got = clip.dense(images, clearclip=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the same tokens' CLS is open_clip's pooled image embedding
    torch.testing.assert_close(tokens[:, 0], pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(clip.encode_image(images), pooled)
    assert not torch.allclose(got, clip.dense(images, clearclip=True), atol=1e-3)


def test_normalisation_choice(images):
    paper = load_clip(variant="tiny", normalize="clip")
    official = load_clip(variant="tiny", normalize="imagenet")
    torch.testing.assert_close(paper.prepare(images), (images - CLIP_MEAN) / CLIP_STD)
    torch.testing.assert_close(official.prepare(images), (images - IMAGENET_MEAN) / IMAGENET_STD)
    assert paper.model_id != official.model_id  # cache keys differ
    assert official.model_id.endswith("+imagenet")
    with pytest.raises(AffordError, match="normalize='none'"):
        load_clip(variant="tiny", normalize="none")


def test_tokenizer_offline_known_ids(clip):
    # CLIP's BPE: <start>=49406, a=320, photo=1125, of=539, cat=2368, <end>=49407
    tokens = clip.tokenize(["a photo of a cat"])
    assert tokens.shape == (1, 77)
    assert tokens[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert torch.all(tokens[0, 7:] == 0)


def test_encode_text(clip):
    prompts = ["an item to cut_with", "a person hold an item", "an item to sit_on with"]
    emb = clip.encode_text(prompts)
    assert emb.shape == (3, 64) and not emb.requires_grad
    # batch composition does not change an embedding; different prompts differ
    torch.testing.assert_close(emb[1:2], clip.encode_text([prompts[1]]), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)
    # the embedding is the projected, final-normed token at the end-of-text position
    tokens = clip.tokenize(prompts)
    with torch.no_grad():
        m = clip.clip
        x = m.token_embedding(tokens) + m.positional_embedding
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
        eot = tokens.argmax(dim=-1)  # <end> has the largest id
        ref = x[torch.arange(3), eot] @ m.text_projection
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-4)


def test_text_errors(clip):
    with pytest.raises(AffordError, match="at most 77"):
        clip.encode_text(["word " * 100])
    with pytest.raises(AffordError, match="non-empty list"):
        clip.encode_text([])
    with pytest.raises(AffordError, match=r"texts\[1\]"):
        clip.encode_text(["ok", 3])


def test_tiny_deterministic_frozen_and_errors(clip, images):
    other = load_clip(variant="tiny")
    sa, sb = clip.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(not p.requires_grad for p in clip.parameters())
    assert clip.clip.visual.transformer.resblocks[0].mlp.gelu.__class__.__name__ == "QuickGELU"
    with pytest.raises(AffordError, match="unknown CLIP variant"):
        load_clip(variant="ViT-L-14")
    with pytest.raises(AffordError, match="ViT-B-16.pt.*AFFORD_WEIGHTS.*openaipublic"):
        load_clip()
    with pytest.raises(AffordError, match="3 channels"):
        clip.dense(images[:, :1])

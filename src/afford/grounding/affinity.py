"""ClearCLIP object affinity maps, computed once and cached (Sec. 3.2; REFERENCE_NOTES A).

For an image ``I`` (the *full* image resized to 224 x 224) and a prompt ``t``:
``S(I, t) = cos(ClearCLIP patch tokens of I, CLIP text embedding of t)``, a (14,14) map.

Cached per image (key: SHA-256 of the image bytes, see :mod:`afford.data.cache`) in a
:class:`~afford.data.cache.MapCache` whose ``model_id`` is :func:`cache_model_id` (the CLIP
backbone's id, which includes its weights and input normalisation, + ``"+clearclip"``):

* egocentric images: ``"action:<cls>"`` = ``S(I, action_prompt(cls))`` (S_ego, raw);
* exocentric images: ``"action:<cls>"`` and ``"entity:<cls>"`` = ``S(I, entity_prompt(cls))``;
  ``A_exo = LocalMean3x3(entity) * action`` is formed by the model from these raw maps.

Text embeddings are cached in the same store under the SHA-256 of the prompt text (array
``"text"``).  The synthetic world writes the same array names into a cache with
``model_id = "simulated-clip"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from afford.data.cache import MapCache, content_key, file_key
from afford.data.io import read_image
from afford.data.transforms import CropFlip
from afford.engine.fabric import Progress
from afford.errors import AffordError
from afford.grounding.prompts import action_prompt, entity_prompt

KINDS = {"action": action_prompt, "entity": entity_prompt}


def cache_model_id(clip) -> str:
    """MapCache ``model_id`` of the ClearCLIP maps of backbone ``clip``."""
    return f"{clip.model_id}+clearclip"


def prompt_for(name: str) -> str:
    """Prompt of a map name ``"<kind>:<cls>"`` (kind: action | entity)."""
    kind, _, cls = name.partition(":")
    if kind not in KINDS or not cls:
        raise AffordError(f"affinity map name {name!r} must be 'action:<cls>' or 'entity:<cls>'")
    return KINDS[kind](cls)


def text_embeddings(clip, prompts: list[str], cache: MapCache | None = None) -> torch.Tensor:
    """L2-normalised text embeddings (K,E) of ``prompts`` (read from / written to ``cache``)."""
    out: list[torch.Tensor | None] = [None] * len(prompts)
    todo = []
    for i, p in enumerate(prompts):
        hit = cache.get_map(content_key(p.encode()), "text") if cache is not None else None
        if hit is not None:
            out[i] = torch.from_numpy(hit)
        else:
            todo.append(i)
    if todo:
        emb = F.normalize(clip.encode_text([prompts[i] for i in todo]).float(), dim=-1).cpu()
        for j, i in enumerate(todo):
            out[i] = emb[j]
            if cache is not None:
                cache.put(content_key(prompts[i].encode()), {"text": emb[j].numpy()})
    return torch.stack(out)  # type: ignore[arg-type]


def affinity(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine maps of patch embeddings and text embeddings.

    Args:
        dense: (B,E,h,w) ClearCLIP patch embeddings (any scale).
        text: (K,E) L2-normalised text embeddings.

    Returns:
        (B,K,h,w) cosine similarities in [-1, 1].
    """
    return torch.einsum(
        "behw,ke->bkhw", F.normalize(dense.float(), dim=1), text.to(dense.device).float()
    )


def load_image_224(path: str | os.PathLike, size: int = 224) -> torch.Tensor:
    """The full image resized to ``size x size`` (the cached maps' frame): (3,size,size)."""
    img = torch.from_numpy(read_image(path)).permute(2, 0, 1).float() / 255.0
    return CropFlip.resize_only(size).apply_image(img)


def fill_cache(
    needs: dict[Path, Iterable[str]],
    clip,
    cache: MapCache,
    *,
    batch_size: int = 16,
    progress: bool = True,
    rank: int = 0,
    world: int = 1,
) -> int:
    """Compute every missing map of ``needs`` ({image path: map names}) into ``cache``.

    Images whose maps are all cached are skipped (identical files are computed once), so an
    interrupted fill resumes where it stopped.  With ``world`` processes, process ``rank``
    computes every ``world``-th missing image (its shard; the cache's one file per image is
    the merged index once every rank is done: the caller waits at a barrier).
    Returns the number of images computed (by this process).
    """
    todo: dict[str, tuple[Path, set[str]]] = {}
    for path, names in needs.items():
        names = set(names)
        for n in names:
            prompt_for(n)
        key = file_key(path)
        entry = cache.get(key) or {}
        missing = {n for n in names if n not in entry}
        if missing:
            if key in todo:
                todo[key][1].update(missing)
            else:
                todo[key] = (Path(path), missing)
    if not todo:
        return 0
    all_names = sorted(set().union(*(m for _, m in todo.values())))
    text = text_embeddings(clip, [prompt_for(n) for n in all_names], cache)
    col = {n: i for i, n in enumerate(all_names)}
    items = sorted(todo.items())[rank::world]
    bar = Progress(len(items), "CLIP affinity maps (images)", enabled=progress)
    device = clip.device
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = torch.stack([load_image_224(p, clip.input_size) for _, (p, _) in chunk])
        with torch.no_grad():
            maps = affinity(clip.dense(images.to(device), clearclip=True), text).cpu().numpy()
        for b, (key, (_, names)) in enumerate(chunk):
            cache.put(key, {n: maps[b, col[n]].astype(np.float32) for n in sorted(names)})
        bar.update(len(chunk))
    bar.close()
    return len(items)


def image_affinity(clip, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Un-cached maps for a batch: images (B,3,224,224) in [0,1], prompts (B,) -> (B,h,w).

    Used at inference on new images and by the no-cache benchmark.
    """
    uniq = sorted(set(prompts))
    text = text_embeddings(clip, uniq)
    with torch.no_grad():
        maps = affinity(clip.dense(images, clearclip=True), text)  # (B,K,h,w)
    idx = torch.tensor([uniq.index(p) for p in prompts], device=maps.device)
    return maps[torch.arange(len(prompts), device=maps.device), idx]

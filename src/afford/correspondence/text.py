"""CLIP text embeddings of function names, computed once per (text model, function).

The prompt is :func:`afford.correspondence.model.function_prompt` ("pour-with" -> "pour with",
REFERENCE_NOTES C); embeddings are L2-normalised. A process-wide cache keyed by the text
model's ``model_id`` avoids re-encoding the same names every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from afford.correspondence.model import function_prompt
from afford.errors import AffordError
from afford.taxonomy import Taxonomy

_CACHE: dict[tuple[str, str], Tensor] = {}


def encode_functions(clip: torch.nn.Module, names: Sequence[str]) -> Tensor:
    """(F,E) L2-normalised CLIP text embeddings of function names (CPU, cached).

    Args:
        clip: a text encoder with ``encode_text(list[str]) -> (B,E)`` and a ``model_id``.
        names: function names, e.g. ["pour-with", "cut-with"].
    """
    if len(names) == 0:
        raise AffordError("encode_functions: no function names given")
    mid = str(getattr(clip, "model_id", id(clip)))
    missing = [n for n in dict.fromkeys(names) if (mid, n) not in _CACHE]
    if missing:
        with torch.no_grad():
            emb = clip.encode_text([function_prompt(n) for n in missing]).float().cpu()
        emb = F.normalize(emb, dim=-1)
        for n, e in zip(missing, emb):
            _CACHE[(mid, n)] = e
    return torch.stack([_CACHE[(mid, n)] for n in names])


def check_function(name: str, known: Sequence[str], where: str = "--function") -> str:
    """Return ``name`` if it is a known function, else raise AffordError listing them."""
    if name not in known:
        raise AffordError(
            f"{where}: unknown function {name!r}; known functions: {', '.join(sorted(known))}"
        )
    return name


def default_functions() -> list[str]:
    """Function names accepted without a trained checkpoint: those of the shipped taxonomies
    (``afford/taxonomies/``: the paper's 24 functions and the synthetic world's)."""
    names = set(Taxonomy.shipped("paper").functions) | set(Taxonomy.shipped("synth").functions)
    return sorted(names)

"""The full inference graphs of the trained models, as plain ``nn.Module`` s to export.

Both take images as a float tensor (B,3,224,224) with values in [0,1] (each backbone applies
its own normalisation inside the graph) and a query index (B,) int64, and hold every frozen
piece as weights: the backbones, the trained heads, and the CLIP text embedding of every
action / function the checkpoint knows (computed once when the graph is built, so the exported
file needs no tokenizer and no text encoder).

* :class:`GroundingGraph` -- ``(image, action) -> heatmap`` (B,h,w), the calibrated
  localisation map on the backbone grid (14 x 14 for ViT-B/16), exactly what
  :meth:`afford.grounding.model.GroundingModel.heatmap` returns; resize it to the image
  outside (bilinear), as the Python API does.
* :class:`CorrespondenceGraph` -- ``(image, function) -> features`` (B,O,224,224) unit-norm
  dense descriptors (and ``mask_logit`` (B,224,224) when the checkpoint has the part-mask
  head), what :meth:`afford.correspondence.model.FunctionalCorrespondenceModel.dense` returns.
  Matching two images (nearest neighbours, cycle consistency) is done outside on these maps.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from afford.correspondence.model import pixel_grid
from afford.correspondence.text import encode_functions
from afford.grounding.affinity import affinity, text_embeddings
from afford.grounding.prompts import action_prompt

INPUT_SIZE = 224


class GroundingGraph(nn.Module):
    """DINO keys + ClearCLIP affinity of the action prompt -> calibrated heatmap.

    Args:
        model: a trained :class:`~afford.grounding.model.GroundingModel` (eval mode).
        dino: its frozen DINO backbone; clip: its frozen CLIP backbone (unused, and may be
            None, when the model's calibration is ``"none"``).
    """

    def __init__(self, model: nn.Module, dino: nn.Module, clip: nn.Module | None) -> None:
        super().__init__()
        self.model, self.dino = model.eval(), dino
        self.actions = list(model.cfg.class_names)
        self.uses_clip = model.cfg.calibration != "none"
        self.clip = clip if self.uses_clip else None
        if self.uses_clip:
            if clip is None:
                raise ValueError("GroundingGraph: calibration needs the CLIP backbone")
            text = text_embeddings(clip, [action_prompt(a) for a in self.actions])
            self.register_buffer("text", text.float())  # (K,E) unit norm

    def forward(self, image: Tensor, action: Tensor) -> Tensor:
        """image (B,3,224,224) in [0,1], action (B,) int64 -> heatmap (B,h,w)."""
        keys = self.dino(image)["keys"]
        s_ego = None
        if self.clip is not None:
            maps = affinity(self.clip.dense(image, clearclip=True), self.text)  # (B,K,h,w)
            idx = action.long().view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
            s_ego = maps.gather(1, idx).squeeze(1)
        return self.model.heatmap(keys, action.long(), s_ego)


class CorrespondenceGraph(nn.Module):
    """DINOv2 layer maps + the function's text embedding -> dense descriptors.

    Args:
        model: a trained :class:`~afford.correspondence.model.FunctionalCorrespondenceModel`.
        dino: its frozen DINOv2 backbone; clip: the CLIP text encoder (used here only).
        functions: the checkpoint's functions (index order of the ``function`` input).
    """

    def __init__(
        self, model: nn.Module, dino: nn.Module, clip: nn.Module, functions: list[str]
    ) -> None:
        super().__init__()
        self.model, self.dino = model.eval(), dino
        self.functions = list(functions)
        self.has_mask = model.mask_head is not None
        self.register_buffer("text", encode_functions(clip, self.functions).float())  # (F,T)
        self.register_buffer("pixels", pixel_grid((INPUT_SIZE, INPUT_SIZE)))  # (S*S,2)

    def forward(self, image: Tensor, function: Tensor) -> tuple[Tensor, ...]:
        """image (B,3,224,224) in [0,1], function (B,) int64 -> features (B,O,224,224)
        [, mask_logit (B,224,224)].  Every pixel in one pass (``dense`` chunks the same
        computation to bound memory; the result is identical)."""
        fmap = self.model.fuse([m.float() for m in self.dino(image)])
        b = fmap.shape[0]
        text = self.text[function.long()]  # (B,T)
        pts = self.pixels.unsqueeze(0).expand(b, -1, -1)
        out = self.model.head(self.model.sample(fmap, pts, (INPUT_SIZE, INPUT_SIZE)), text)
        feat = out["feat"].transpose(1, 2).reshape(b, -1, INPUT_SIZE, INPUT_SIZE)
        if not self.has_mask:
            return (feat,)
        return feat, out["mask_logit"].reshape(b, INPUT_SIZE, INPUT_SIZE)

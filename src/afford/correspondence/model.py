"""Function-conditioned dense feature model (correspondence paper, Sec. 4.2, Fig. 4).

Pipeline, per image and function ``F`` (REFERENCE_NOTES C, "Model")::

    DINOv2 tokens of the last 3 blocks  x_l (B,C,h,w), l = 1..3   (frozen, computed outside)
    fused   = normalize( sum_l softmax(w)_l * W x_l )              (B,P,h,w)   `fuse`
    v_p     = bilinear(fused, p)                                   (B,N,P)     `sample`
    z_p     = normalize( [v_p ; t_F] )                             (B,N,P+T)   t_F: CLIP text
    g(p|I,F)= normalize( MLP(z_p) )                                (B,N,O)     `forward`/`dense`
    mask(p) = Linear(g) (optional mask head; logit)                (B,N)

``W`` is one Linear C->P without bias shared by the three layers (since it is linear,
``sum_l a_l W x_l = W sum_l a_l x_l``; we apply it once to the weighted sum). The MLP is
(P+T)->hidden->ReLU->hidden->ReLU->O with no bias on the last layer.

Pixel coordinate convention
---------------------------
Query points are ``(row, col)`` in pixels of an image of ``image_size`` (224). The image covers
the continuous square ``[0, S] x [0, S]``; pixel index ``c`` covers ``[c, c+1]``. A point is
mapped to ``grid_sample`` coordinates linearly, ``[0, S] -> [-1, 1]``, with
``align_corners=False`` (REFERENCE_NOTES C)::

    u = 2 * (c + offset) / S - 1

* ``mode="paper"`` (default): ``offset = 0.5``; an integer pixel index denotes the pixel
  *centre*. Dense features are then exactly ``F.interpolate(fused, S, bilinear,
  align_corners=False)`` and the centre of feature cell ``k`` (of size ``s = S/h``) is the
  continuous coordinate ``s*k + s/2``, i.e. the (fractional) pixel index ``s*k + s/2 - 0.5``.
* ``mode="official"``: ``offset = 0``; the released code feeds integer pixel indices straight
  into the linear map, i.e. an index denotes the pixel's top-left corner (a half-pixel shift).
  The centre of feature cell ``k`` is the integer pixel index ``s*k + s/2`` (7 + 14k at 224/16).

Float points are accepted. Outside the outermost cell centres the map is clamped
(``padding_mode="border"``) instead of blending with zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from afford.config import MODES, Mode
from afford.errors import AffordError

_EPS = 1e-12


def function_prompt(name: str) -> str:
    """Text prompt for a function name: ``'_'`` and ``'-'`` become spaces ("pour-with" ->
    "pour with"), whitespace is collapsed (REFERENCE_NOTES C)."""
    if not isinstance(name, str):
        raise AffordError(f"function name must be a string, got {type(name).__name__}")
    text = " ".join(name.replace("_", " ").replace("-", " ").split())
    if not text:
        raise AffordError(f"function name {name!r} is empty; give e.g. 'pour-with'")
    return text


def _size2(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise AffordError(f"image_size must be an int or (H, W), got {image_size!r}")
        h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise AffordError(f"image_size must be positive, got {image_size!r}")
    return h, w


def points_to_grid(
    points: Tensor, image_size: int | Sequence[int] = 224, offset: float = 0.5
) -> Tensor:
    """Map ``(row, col)`` pixel points (...,2) to ``grid_sample`` coordinates (...,2) as ``(x, y)``.

    ``u = 2 * (coord + offset) / size - 1`` (see the module docstring); ``offset`` is 0.5 in
    paper mode and 0 in official mode.
    """
    h, w = _size2(image_size)
    p = points.to(torch.promote_types(points.dtype, torch.float32))
    y = 2.0 * (p[..., 0] + offset) / h - 1.0
    x = 2.0 * (p[..., 1] + offset) / w - 1.0
    return torch.stack((x, y), dim=-1)


def pixel_grid(image_size: int | Sequence[int], device=None) -> Tensor:
    """All pixel indices of an image as (H*W, 2) ``(row, col)`` float points, row-major."""
    h, w = _size2(image_size)
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack((rr.reshape(-1), cc.reshape(-1)), dim=-1)


class FunctionalCorrespondenceModel(nn.Module):
    """Function-conditioned MLP on frozen DINOv2 features, ``g_theta(p | I, F)`` (Sec. 4.2).

    Args:
        feat_dim: channels C of each backbone layer map (768 for DINOv2 ViT-B/14).
        text_dim: T, size of the function text embedding (512 for CLIP ViT-B).
        proj_dim: P, output of the shared projection (512).
        hidden: MLP hidden width (1024).
        out_dim: O, feature size (256).
        mask_head: add the optional functional-part mask head (Linear O->1).
        num_layers: number of backbone layer maps fused (3).
        mode: "paper" | "official"; only changes the pixel coordinate convention (module doc).

    State dict names: ``proj.weight`` (P,C), ``layer_logits`` (L,), ``mlp.0.{weight,bias}``,
    ``mlp.2.{weight,bias}``, ``mlp.4.weight``, and ``mask_head.{weight,bias}`` when enabled.
    ``config()`` returns the constructor arguments (JSON-able) for checkpoints.
    """

    def __init__(
        self,
        feat_dim: int = 768,
        text_dim: int = 512,
        proj_dim: int = 512,
        hidden: int = 1024,
        out_dim: int = 256,
        mask_head: bool = False,
        num_layers: int = 3,
        mode: Mode = "paper",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise AffordError(f"mode must be one of {MODES}, got {mode!r}")
        for name, val in (
            ("feat_dim", feat_dim),
            ("text_dim", text_dim),
            ("proj_dim", proj_dim),
            ("hidden", hidden),
            ("out_dim", out_dim),
            ("num_layers", num_layers),
        ):
            if int(val) <= 0:
                raise AffordError(f"{name} must be a positive integer, got {val!r}")
        self.feat_dim = int(feat_dim)
        self.text_dim = int(text_dim)
        self.proj_dim = int(proj_dim)
        self.hidden = int(hidden)
        self.out_dim = int(out_dim)
        self.num_layers = int(num_layers)
        self.has_mask_head = bool(mask_head)
        self.mode = mode
        self.pixel_offset = 0.5 if mode == "paper" else 0.0

        self.proj = nn.Linear(self.feat_dim, self.proj_dim, bias=False)
        self.layer_logits = nn.Parameter(torch.zeros(self.num_layers))
        self.mlp = nn.Sequential(
            nn.Linear(self.proj_dim + self.text_dim, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.out_dim, bias=False),
        )
        self.mask_head = nn.Linear(self.out_dim, 1) if self.has_mask_head else None

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the model (checkpoint JSON)."""
        return {
            "feat_dim": self.feat_dim,
            "text_dim": self.text_dim,
            "proj_dim": self.proj_dim,
            "hidden": self.hidden,
            "out_dim": self.out_dim,
            "mask_head": self.has_mask_head,
            "num_layers": self.num_layers,
            "mode": self.mode,
        }

    # ------------------------------------------------------------------ inputs
    def _check_layers(self, layer_maps: Sequence[Tensor]) -> None:
        if isinstance(layer_maps, Tensor) or len(layer_maps) != self.num_layers:
            got = "a tensor" if isinstance(layer_maps, Tensor) else f"{len(layer_maps)} maps"
            raise AffordError(
                f"layer_maps must be a list of {self.num_layers} backbone maps (B,C,h,w), got {got}"
            )
        shape0 = tuple(layer_maps[0].shape)
        for i, m in enumerate(layer_maps):
            if m.dim() != 4 or m.shape[1] != self.feat_dim or tuple(m.shape) != shape0:
                raise AffordError(
                    f"layer_maps[{i}] has shape {tuple(m.shape)}; expected (B,{self.feat_dim},h,w) "
                    f"and all maps the same shape as layer_maps[0] {shape0} "
                    "(feat_dim must match the backbone)"
                )

    def _check_text(self, text: Tensor, batch: int) -> Tensor:
        if text.dim() == 1:
            text = text.unsqueeze(0)
        if text.dim() != 2 or text.shape[1] != self.text_dim or text.shape[0] not in (1, batch):
            raise AffordError(
                f"text embedding has shape {tuple(text.shape)}; expected ({batch},{self.text_dim})"
                " (text_dim must match the CLIP text encoder)"
            )
        return text.expand(batch, -1)

    # ------------------------------------------------------------------ parts
    def layer_weights(self) -> Tensor:
        """softmax(w) over the backbone layers, (L,)."""
        return torch.softmax(self.layer_logits, dim=0)

    def fuse(self, layer_maps: Sequence[Tensor]) -> Tensor:
        """Fuse the backbone layer maps: ``normalize(W sum_l softmax(w)_l x_l)``.

        Args: layer_maps: list of L tensors (B,C,h,w). Returns (B,P,h,w), unit norm per pixel.
        """
        self._check_layers(layer_maps)
        a = self.layer_weights().to(layer_maps[0].dtype)
        mixed = sum(a[i] * m for i, m in enumerate(layer_maps))  # (B,C,h,w)
        proj = torch.einsum("bchw,pc->bphw", mixed, self.proj.weight)
        return F.normalize(proj, dim=1, eps=_EPS)

    def sample(self, fmap: Tensor, points: Tensor, image_size: int | Sequence[int] = 224) -> Tensor:
        """Bilinearly sample a feature map at pixel points.

        Args:
            fmap: (B,D,h,w) feature map covering the whole image.
            points: (B,N,2) ``(row, col)`` pixels of an ``image_size`` image (float allowed).
        Returns: (B,N,D). Coordinate convention in the module docstring.
        """
        if fmap.dim() != 4:
            raise AffordError(f"fmap must be (B,D,h,w), got {tuple(fmap.shape)}")
        if points.dim() != 3 or points.shape[-1] != 2 or points.shape[0] != fmap.shape[0]:
            raise AffordError(
                f"points must be (B,N,2) (row, col) with B={fmap.shape[0]}, "
                f"got {tuple(points.shape)}"
            )
        grid = points_to_grid(points, image_size, self.pixel_offset).to(fmap.dtype)
        out = F.grid_sample(
            fmap, grid.unsqueeze(2), mode="bilinear", padding_mode="border", align_corners=False
        )  # (B,D,N,1)
        return out[..., 0].transpose(1, 2)

    def head(self, v: Tensor, text: Tensor) -> dict[str, Tensor | None]:
        """MLP on ``normalize([v ; t])``, L2-normalised output, optional mask logit.

        Args: v (B,N,P) sampled image features; text (B,T). Returns dict ``feat`` (B,N,O),
        ``mask_logit`` (B,N) or None. The first Linear is split into its image and text
        columns so the text half is computed once per image (same result as concatenating).
        """
        w1, b1 = self.mlp[0].weight, self.mlp[0].bias
        p = self.proj_dim
        t = text.to(v.dtype)
        norm = (v.pow(2).sum(-1) + t.pow(2).sum(-1)[:, None]).sqrt().clamp_min(_EPS)  # (B,N)
        h = F.linear(v, w1[:, :p]) + F.linear(t, w1[:, p:])[:, None, :]
        h = h / norm[..., None] + b1
        h = self.mlp[1:](h)
        feat = F.normalize(h, dim=-1, eps=_EPS)
        mask_logit = self.mask_head(feat)[..., 0] if self.mask_head is not None else None
        return {"feat": feat, "mask_logit": mask_logit}

    # ------------------------------------------------------------------ API
    def forward(
        self,
        layer_maps: Sequence[Tensor],
        points: Tensor,
        text: Tensor,
        image_size: int | Sequence[int] = 224,
    ) -> dict[str, Tensor | None]:
        """Features at query points, ``g(p | I, F)``.

        Args:
            layer_maps: L maps (B,C,h,w) from the frozen backbone.
            points: (B,N,2) ``(row, col)`` pixels of the ``image_size`` image.
            text: (B,T) (or (T,) / (1,T), broadcast) CLIP embedding of ``function_prompt(F)``.
        Returns: ``feat`` (B,N,O) unit norm, ``mask_logit`` (B,N) or None.
        """
        fmap = self.fuse(layer_maps)
        text = self._check_text(text, fmap.shape[0])
        return self.head(self.sample(fmap, points, image_size), text)

    @torch.no_grad()
    def dense(
        self,
        layer_maps: Sequence[Tensor],
        text: Tensor,
        image_size: int | Sequence[int] = 224,
        chunk: int = 4096,
    ) -> dict[str, Tensor | None]:
        """Features at every pixel (inference; runs under ``torch.no_grad``).

        Pixels are processed ``chunk`` at a time (vectorised inside a chunk), so the working
        memory is O(B * chunk * hidden) besides the (B,O,H,W) output. Identical to
        ``forward`` at all pixel indices.

        Returns: ``feat`` (B,O,H,W) unit norm, ``mask_logit`` (B,H,W) or None.
        """
        if int(chunk) <= 0:
            raise AffordError(f"chunk must be a positive integer, got {chunk!r}")
        h, w = _size2(image_size)
        fmap = self.fuse(layer_maps)
        b = fmap.shape[0]
        text = self._check_text(text, b)
        pts = pixel_grid((h, w), device=fmap.device)
        feat = fmap.new_empty((b, h * w, self.out_dim))
        mask = fmap.new_empty((b, h * w)) if self.mask_head is not None else None
        for s in range(0, h * w, int(chunk)):
            p = pts[s : s + int(chunk)].unsqueeze(0).expand(b, -1, -1)
            out = self.head(self.sample(fmap, p, (h, w)), text)
            feat[:, s : s + p.shape[1]] = out["feat"]
            if mask is not None:
                mask[:, s : s + p.shape[1]] = out["mask_logit"]
        feat = feat.transpose(1, 2).reshape(b, self.out_dim, h, w)
        return {"feat": feat, "mask_logit": mask.reshape(b, h, w) if mask is not None else None}

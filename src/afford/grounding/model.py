"""GroundingModel: selective contrastive learning (paper / official), LOCATE and CE baselines.

Trainable heads sit on frozen inputs that the data pipeline provides per batch (DINO keys and
CLS attention, CLIP affinity maps); see :meth:`GroundingModel.losses` for the batch keys.

Where the paper leaves a detail open we choose as follows (both modes unless stated):

* Object affinity: ego ``S_ego`` = raw action cosine; exo ``A_exo`` = LocalMean3x3(entity
  cosine) * action cosine, used for the exo interaction mask and the exo object-level
  prototypes (Eq. 2). ``rho`` (Eq. 6) uses the raw exo *action* cosine, the quantity
  Sec. 3.2 calls A_obj^exo and the one comparable with ``S_ego`` (as in the released code).
* gamma2 (Eq. 7, Sec. 3.5) thresholds min-max(S_ego): raw CLIP cosines are far below 0.6.
* Exo interaction mask for part discovery: A_exo at epoch 0 (random CAM), then
  relu(A_exo) * relu(CAM_exo) ("combined C^exo with A_obj^exo", Sec. 3.3).
* C in Phi- (Eq. 1) is relu(CAM) of the GT class, not detached. Official mode uses C = 1 at
  epoch 0 (released code); paper mode uses the CAM from the start (beta is the paper's guard).
* Centroid-to-ego cosine maps use the raw ego DINO keys (paper: "compared with F^ego");
  official mode weights them by S_ego first.
* K-means initialisation is k-means++ from a generator seeded with ``cfg.kmeans_seed``
  (deterministic); the released code's initialisation RNG cannot be reproduced, so official
  mode matches it in distribution, not bit for bit.
* Heatmap: paper mode calibrates min-max(CAM) (so masked pixels never rank above negative
  CAM values); official mode multiplies the raw CAM as released.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from afford.engine import dist
from afford.errors import AffordError
from afford.grounding.calibration import calibrate
from afford.grounding.config import GroundingConfig
from afford.grounding.heads import AffProj, conv_block
from afford.grounding.locate import concentration_loss, part_distillation_loss
from afford.grounding.losses import pixel_loss, prototype_loss
from afford.grounding.parts import (
    affinity_saliency,
    dino_saliency,
    discover_exo_parts,
    ego_positive,
    exo_object_affinity,
    rho,
)
from afford.grounding.prototypes import phi_neg, phi_pos, pool_norm

BATCH_KEYS = (
    "ego_keys",
    "ego_attn",
    "exo_keys",
    "exo_attn",
    "ego_action",
    "exo_action",
    "exo_entity",
    "label",
)


class GroundingModel(nn.Module):
    """Heads + losses of the grounding method selected by ``cfg.method``.

    Submodules (released-code names, see :mod:`afford.grounding.heads`): ``aff_proj``,
    ``aff_ego_proj``, ``aff_exo_proj``, ``aff_classifier`` and, for ``method="selective"``,
    ``K_contrast_projection`` and ``pixel_contrast_projection``.
    """

    def __init__(self, cfg: GroundingConfig):
        super().__init__()
        if not isinstance(cfg, GroundingConfig):
            raise AffordError(f"GroundingModel: cfg must be a GroundingConfig, got {type(cfg)}")
        self.cfg = cfg
        d, c = cfg.feat_dim, cfg.num_classes
        self.aff_proj = AffProj(d, residual=cfg.method == "locate")
        self.aff_ego_proj = conv_block(d)
        self.aff_exo_proj = conv_block(d)
        self.aff_classifier = nn.Conv2d(d, c, kernel_size=1)
        if cfg.method == "selective":
            self.K_contrast_projection = nn.Conv2d(d, d, kernel_size=1)
            self.pixel_contrast_projection = nn.Conv2d(d, d, kernel_size=1)
        self.last_stats: dict[str, float] = {}

    # ------------------------------------------------------------------ forward pieces
    def _check_keys(self, keys: Tensor, name: str) -> None:
        if keys.dim() != 4 or keys.shape[1] != self.cfg.feat_dim:
            raise AffordError(
                f"{name}: expected (B,{self.cfg.feat_dim},h,w) DINO keys (GroundingConfig."
                f"feat_dim={self.cfg.feat_dim}), got shape {tuple(keys.shape)}"
            )

    def project(self, keys: Tensor, view: str = "ego") -> Tensor:
        """aff_proj then the view's conv projection: (N,D,h,w) -> (N,D,h,w).

        Official mode, training: the conv projection runs twice on the same input (the
        released code's quirk: BatchNorm running statistics update twice per step).
        """
        self._check_keys(keys, f"{view}_keys")
        proj = self.aff_ego_proj if view == "ego" else self.aff_exo_proj
        x = self.aff_proj(keys)
        if self.cfg.official and self.training:
            with torch.no_grad():
                proj(x)
        return proj(x)

    def classify(self, proj: Tensor) -> tuple[Tensor, Tensor]:
        """Class maps (N,C,h,w) and image logits (N,C) = global average pool."""
        maps = self.aff_classifier(proj)
        return maps, maps.mean(dim=(2, 3))

    @staticmethod
    def select_cam(maps: Tensor, labels: Tensor) -> Tensor:
        """CAM of each image's class: (N,C,h,w), (N,) -> (N,h,w)."""
        idx = labels.long().view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
        return maps.gather(1, idx).squeeze(1)

    def forward(self, ego_keys: Tensor) -> dict[str, Tensor]:
        """Egocentric branch: ``proj`` (B,D,h,w), ``maps`` (B,C,h,w), ``logits`` (B,C)."""
        proj = self.project(ego_keys, "ego")
        maps, logits = self.classify(proj)
        return {"proj": proj, "maps": maps, "logits": logits}

    def cam(self, ego_keys: Tensor, labels: Tensor) -> Tensor:
        """Raw CAM of ``labels``: (B,D,h,w), (B,) -> (B,h,w)."""
        self._check_labels(labels, ego_keys.shape[0])
        return self.select_cam(self.forward(ego_keys)["maps"], labels)

    def heatmap(self, ego_keys: Tensor, labels: Tensor, ego_action: Tensor | None) -> Tensor:
        """Calibrated localisation map (Sec. 3.5) with ``cfg.calibration``.

        Args:
            ego_keys: (B,D,h,w) frozen DINO keys of the ego image.
            labels: (B,) queried affordance indices.
            ego_action: (B,h,w) raw cosine of CLIP patches and the action prompt (S_ego);
                may be None when ``cfg.calibration == "none"``.

        Returns:
            (B,h,w). Paper mode: min-max(CAM) calibrated; official: the raw CAM calibrated.
            Call ``model.eval()`` first (BatchNorm) and wrap in ``torch.no_grad()`` if wanted.
        """
        cam = self.cam(ego_keys, labels)
        if ego_action is None:
            if self.cfg.calibration != "none":
                raise AffordError(
                    f"heatmap: calibration {self.cfg.calibration!r} needs ego_action (the CLIP"
                    " affinity map); pass it or use calibration 'none'"
                )
            ego_action = torch.zeros_like(cam)
        if ego_action.shape != cam.shape:
            raise AffordError(
                f"heatmap: ego_action {tuple(ego_action.shape)} must match the CAM grid"
                f" {tuple(cam.shape)} (B,h,w)"
            )
        return calibrate(
            cam,
            ego_action.to(cam.dtype),
            how=self.cfg.calibration,
            gamma=self.cfg.gamma2,
            normalize_cam=not self.cfg.official,
        )

    # ------------------------------------------------------------------ validation
    def _check_labels(self, labels: Tensor, b: int) -> None:
        if labels.shape != (b,):
            raise AffordError(f"label: expected shape ({b},), got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.cfg.num_classes):
            raise AffordError(
                f"label: values must be in [0, {self.cfg.num_classes}) (GroundingConfig."
                f"class_names has {self.cfg.num_classes}), got {labels.tolist()}"
            )

    def required_keys(self) -> tuple[str, ...]:
        """Batch keys :meth:`losses` needs under this config (``exo_attn`` is never used).

        CE only: ego/exo keys and labels; LOCATE adds the ego saliency input; the selective
        method adds the CLIP affinity maps.
        """
        cfg = self.cfg
        keys = ["ego_keys", "exo_keys", "label"]
        if cfg.method == "selective":
            keys += ["ego_action", "exo_action", "exo_entity"]
        needs_saliency = cfg.method == "locate" or (
            cfg.method == "selective" and cfg.use_proto and cfg.proto_part
        )
        if needs_saliency:
            keys.append("ego_attn" if cfg.part_saliency == "dino" else "ego_action")
        return tuple(dict.fromkeys(keys))

    def _check_batch(self, batch: dict[str, Any]) -> tuple[int, int, int, int]:
        need = self.required_keys()
        missing = [k for k in need if k not in batch]
        if missing:
            raise AffordError(f"grounding batch: missing keys {missing}; needs {list(need)}")
        ek = batch["ego_keys"]
        self._check_keys(ek, "ego_keys")
        b, d, h, w = ek.shape
        xk = batch["exo_keys"]
        if xk.dim() != 5 or xk.shape[0] != b or xk.shape[2:] != (d, h, w):
            raise AffordError(f"exo_keys: expected (B={b},E,{d},{h},{w}), got {tuple(xk.shape)}")
        e = xk.shape[1]
        want = {
            "ego_action": (b, h, w),
            "exo_action": (b, e, h, w),
            "exo_entity": (b, e, h, w),
        }
        for k, shp in want.items():
            if k in batch and tuple(batch[k].shape) != shp:
                raise AffordError(f"{k}: expected shape {shp}, got {tuple(batch[k].shape)}")
        at = batch.get("ego_attn")
        if at is not None and (at.dim() != 4 or at.shape[0] != b or at.shape[2:] != (h, w)):
            raise AffordError(f"ego_attn: expected (B={b},heads,{h},{w}), got {tuple(at.shape)}")
        self._check_labels(batch["label"], b)
        return b, e, h, w

    # ------------------------------------------------------------------ losses
    def losses(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        """All loss terms for one mini-batch.

        Args:
            batch: "ego_keys" (B,D,h,w), "ego_attn" (B,heads,h,w), "exo_keys" (B,E,D,h,w),
                "exo_attn" (B,E,heads,h,w), "ego_action" (B,h,w), "exo_action" (B,E,h,w),
                "exo_entity" (B,E,h,w), "label" (B,) long. All frozen (never differentiated).
                Only :meth:`required_keys` must be present.
            epoch: 0-based epoch (epoch 0: exo masks from A_exo alone; LOCATE distillation
                from ``cfg.locate_start_epoch``).

        Returns:
            "total" and the active terms ("ce_ego", "ce_exo", and "proto"/"pixel" for
            selective, "locate_part"/"locate_conc" for LOCATE) as scalar tensors, plus
            "stats": dict of detached floats, the same keys at every step of a config
            ("part_frac": fraction of samples with a reliable exo part and "best_piou": mean
            best pIoU, when part discovery runs (proto / LOCATE); "pixel_part_frac": fraction
            of samples in J and "mean_qpos": mean |Q+| with the pixel loss). The same dict
            is kept in ``self.last_stats``.
        """
        cfg = self.cfg
        b, e, h, w = self._check_batch(batch)
        # Frozen inputs: never differentiate into them (they only feed heads and clues).
        batch = {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in batch.items()}
        label = batch["label"].long()
        ego_keys = batch["ego_keys"]
        exo_keys = batch["exo_keys"]
        s_ego = batch["ego_action"].to(ego_keys.dtype) if "ego_action" in batch else None

        ego_proj = self.project(ego_keys, "ego")
        exo_proj = self.project(exo_keys.flatten(0, 1), "exo")  # (B*E,D,h,w)
        ego_maps, ego_logits = self.classify(ego_proj)
        exo_maps, exo_logits = self.classify(exo_proj)
        exo_label = label.repeat_interleave(e)
        # per-sample means over the global batch (the same as F.cross_entropy with one process)
        ce_ego = dist.global_mean(F.cross_entropy(ego_logits, label, reduction="none"))
        ce_exo = dist.global_mean(F.cross_entropy(exo_logits, exo_label, reduction="none"))
        ego_cam = self.select_cam(ego_maps, label)  # (B,h,w)
        exo_cam = self.select_cam(exo_maps, exo_label).view(b, e, h, w)
        out: dict[str, Any] = {"ce_ego": ce_ego, "ce_exo": ce_exo}
        total = ce_ego + ce_exo
        stats: dict[str, float] = {}

        if cfg.method == "locate":
            total = total + self._locate(
                batch, epoch, ego_proj, ego_maps, ego_cam, exo_cam, out, stats
            )
        elif cfg.method == "selective":
            a_exo = exo_object_affinity(
                batch["exo_entity"].to(s_ego.dtype), batch["exo_action"].to(s_ego.dtype)
            )
            if cfg.use_proto:
                proto = self._proto(
                    batch, epoch, s_ego, a_exo, ego_proj, exo_proj, ego_cam, exo_cam, label, stats
                )
                out["proto"] = proto
                total = total + cfg.lambda_proto * proto
            if cfg.use_pixel:
                pix = self._pixel(batch, s_ego, ego_proj, stats)
                out["pixel"] = pix
                total = total + cfg.lambda_pixel * pix
        out["total"] = total
        out["stats"] = stats
        self.last_stats = dict(stats)
        return out

    def _saliency(self, batch: dict[str, Any], s_ego: Tensor) -> Tensor:
        if self.cfg.part_saliency == "affinity":
            return affinity_saliency(s_ego)
        return dino_saliency(batch["ego_attn"], self.cfg.saliency_heads)

    def _proto(
        self,
        batch: dict[str, Any],
        epoch: int,
        s_ego: Tensor,
        a_exo: Tensor,
        ego_proj: Tensor,
        exo_proj: Tensor,
        ego_cam: Tensor,
        exo_cam: Tensor,
        label: Tensor,
        stats: dict[str, float],
    ) -> Tensor:
        """Selective prototypical contrastive loss (Eq. 1-5)."""
        cfg = self.cfg
        b, e, h, w = a_exo.shape
        if cfg.proto_part:
            with torch.no_grad():
                if epoch < cfg.cam_start_epoch:
                    exo_mask = a_exo
                else:
                    exo_mask = F.relu(a_exo) * F.relu(exo_cam.detach())
                # on the global batch: k-means++ draws from one generator for the whole batch
                g = dist.gather_cat
                disc = discover_exo_parts(
                    g(exo_mask),
                    g(batch["exo_keys"]),
                    g(batch["ego_keys"]),
                    g(self._saliency(batch, s_ego)),
                    gamma1=cfg.gamma1,
                    alpha=cfg.alpha,
                    k=cfg.k,
                    iters=cfg.kmeans_iters,
                    seed=cfg.kmeans_seed,
                    ego_weight=g(s_ego) if cfg.official else None,
                )
                if dist.is_distributed():
                    disc = disc.rows(dist.local_slice(disc.reliable, b))
            rel = disc.reliable
            m_ego = torch.where(rel.view(b, 1, 1), disc.ego_part.to(s_ego.dtype), s_ego)
            m_exo = torch.where(rel.view(b, 1, 1, 1), disc.exo_part.to(a_exo.dtype), a_exo)
            stats["best_piou"] = float(disc.best_piou.float().mean())
        else:
            rel = torch.zeros(b, dtype=torch.bool, device=s_ego.device)
            m_ego, m_exo = s_ego, a_exo
            stats["best_piou"] = 0.0
        stats["part_frac"] = float(rel.float().mean())

        ft_ego = self.K_contrast_projection(ego_proj)  # (B,D,h,w)
        ft_exo = self.K_contrast_projection(exo_proj)  # (B*E,D,h,w)
        anchors = torch.where(rel.view(b, 1), phi_pos(ft_ego, s_ego), pool_norm(ft_ego))
        if cfg.official and epoch < cfg.cam_start_epoch:
            c_ego, c_exo = torch.ones_like(ego_cam), torch.ones_like(exo_cam)
        else:
            c_ego, c_exo = F.relu(ego_cam), F.relu(exo_cam)
        m_exo_f = m_exo.reshape(b * e, h, w)
        ego_pos = phi_pos(ft_ego, m_ego)
        ego_neg = phi_neg(ft_ego, m_ego, c_ego, cfg.beta)
        exo_pos = phi_pos(ft_exo, m_exo_f)
        exo_neg = phi_neg(ft_exo, m_exo_f, c_exo.reshape(b * e, h, w), cfg.beta)
        # Prototypes of every sample meet every anchor (Eq. 3-5): the loss runs on the global
        # batch (rank chunks concatenated in order; the gradient flows back to each chunk).
        g = dist.gather_cat
        anchors, ego_pos, ego_neg, label, rel = g(anchors), g(ego_pos), g(ego_neg), g(label), g(rel)
        exo_pos, exo_neg = g(exo_pos), g(exo_neg)
        if not cfg.object_fallback:
            if not bool(rel.any()):
                return ft_ego.sum() * 0.0 + ft_exo.sum() * 0.0
            keep_x = rel.repeat_interleave(e)
            anchors, ego_pos, ego_neg, label = anchors[rel], ego_pos[rel], ego_neg[rel], label[rel]
            exo_pos, exo_neg = exo_pos[keep_x], exo_neg[keep_x]
        return prototype_loss(
            anchors,
            ego_pos,
            ego_neg,
            exo_pos,
            exo_neg,
            label,
            tau=cfg.tau,
            mode=cfg.mode,
            base_tau=cfg.base_tau,
        )

    def _pixel(
        self, batch: dict[str, Any], s_ego: Tensor, ego_proj: Tensor, stats: dict[str, float]
    ) -> Tensor:
        """Selective pixel contrastive loss (Eq. 6-8)."""
        cfg = self.cfg
        # rho from the raw action cosine of the exo images (Sec. 3.2 defines A_obj^exo as the
        # action-prompt similarity; the released code does the same).
        rho_b = rho(batch["exo_action"].to(s_ego.dtype))
        positive, in_j = ego_positive(s_ego, rho_b, cfg.gamma2, part_level=cfg.pixel_part)
        if not cfg.object_fallback:
            positive = positive & in_j.view(-1, 1, 1)
        stats["pixel_part_frac"] = float(in_j.float().mean())
        stats["mean_qpos"] = float(positive.flatten(1).sum(1).float().mean())
        feats = F.normalize(self.pixel_contrast_projection(ego_proj), dim=1)
        return pixel_loss(
            feats,
            positive,
            tau=cfg.tau,
            mode=cfg.mode,
            anchors=positive if cfg.official else None,
            base_tau=cfg.base_tau,
            mean=dist.global_mean,  # over the images of the global batch
        )

    def _locate(
        self,
        batch: dict[str, Any],
        epoch: int,
        ego_proj: Tensor,
        ego_maps: Tensor,
        ego_cam: Tensor,
        exo_cam: Tensor,
        out: dict[str, Any],
        stats: dict[str, float],
    ) -> Tensor:
        """LOCATE: part prototype distillation (from ``locate_start_epoch``) + concentration."""
        cfg = self.cfg
        conc = concentration_loss(ego_maps)
        out["locate_conc"] = conc
        extra = cfg.locate_conc_weight * conc
        if epoch >= cfg.locate_start_epoch:
            with torch.no_grad():
                disc = discover_exo_parts(
                    exo_cam.detach(),
                    batch["exo_keys"],
                    batch["ego_keys"],
                    self._saliency(batch, batch.get("ego_action")),
                    gamma1=cfg.gamma1,
                    alpha=cfg.alpha,
                    k=cfg.k,
                    iters=cfg.kmeans_iters,
                    seed=cfg.kmeans_seed,
                )
            part = part_distillation_loss(
                ego_proj, ego_cam, disc.centroid, disc.reliable, margin=cfg.locate_margin
            )
            stats["part_frac"] = float(disc.reliable.float().mean())
            stats["best_piou"] = float(disc.best_piou.float().mean())
        else:
            part = ego_proj.sum() * 0.0
            stats["part_frac"] = 0.0
            stats["best_piou"] = 0.0
        out["locate_part"] = part
        return extra + cfg.locate_weight * part

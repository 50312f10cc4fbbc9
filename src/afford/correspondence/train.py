"""Training of the function-conditioned correspondence model (paper Sec. 4.2-4.3).

``train(cfg)`` builds the frozen DINOv2 + CLIP text encoders, the training set (train-split
assets of a dataset in the documented format, with a seeded held-out fraction of those assets
for validation; the evaluation pairs are never used), and runs :func:`afford.engine.fit`:
AdamW, iterations grouped into epochs, validation loss on fixed batches from the held-out assets
for model selection (``<out>/best``), ``<out>/last`` for exact resume (batch ``i`` of epoch
``e`` is drawn with seed ``(seed, e * iters_per_epoch + i)``).

Loss switches give the paper's Table 1 ablations: functional only, spatial only, full, full
with the mask head.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afford.errors import AffordError

log = logging.getLogger(__name__)


@dataclass
class CorrTrainConfig:
    """Everything a training run needs (YAML keys = field names)."""

    data: str = "data/synth-corr"
    out: str = "runs/correspondence/synth-full"
    name: str = "full"
    # backbones
    dinov2: str = "vitb14"  # "vitb14" | "tiny" | "tiny-synth"
    dinov2_weights: str | None = None
    clip: str = "vitb16"  # "vitb16" | "tiny"
    clip_weights: str | None = None
    # model
    proj_dim: int = 512
    hidden: int = 1024
    out_dim: int = 256
    mask_head: bool = False
    mode: str = "paper"  # "paper" | "official" (pixel convention, functional-loss anchors)
    # losses
    functional: bool = True
    spatial: bool = True
    mask: bool = False
    tau: float = 0.1
    negneg: bool = True
    lambda_spatial: float = 10.0
    lambda_mask: float = 1.0
    # sampling
    pairs: int = 50
    points: int = 128
    spatial_points: int = 128
    # where spatial correspondences start: "object" (paper Eq. 2: any pixel of the first view) |
    # "part" (released code: inside the functional part); None follows `mode`
    spatial_region: str | None = None
    labels: str = "pseudo"  # "pseudo" (paper) | "gt" (oracle ablation)
    noise: float = 50.0
    p_noise: float = 0.5
    # 0: the frozen backbone runs on every batch (paper); K > 0: its outputs are precomputed
    # for K background randomisations of every training view (afford.correspondence.featbank)
    feature_augs: int = 0
    # optimisation
    lr: float = 1e-4
    weight_decay: float = 0.01
    epochs: int = 100
    iters_per_epoch: int = 1000
    grad_clip: float | None = None
    # validation (held-out training assets)
    val_fraction: float = 0.15
    val_batches: int = 4
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> CorrTrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise AffordError(
                f"{where}: unknown key(s) {unknown}; known keys: {', '.join(sorted(names))}"
            )
        cfg = cls(**d)
        cfg.check(where)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> CorrTrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise AffordError(f"{path}: config file not found")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise AffordError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(d, dict):
            raise AffordError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(d, str(path))

    def check(self, where: str = "config") -> None:
        if not (self.functional or self.spatial):
            raise AffordError(f"{where}: enable at least one of 'functional' and 'spatial'")
        if self.mask and not self.mask_head:
            raise AffordError(f"{where}: 'mask: true' needs 'mask_head: true'")
        if self.mode not in ("paper", "official"):
            raise AffordError(f"{where}: mode must be 'paper' or 'official', got {self.mode!r}")
        if self.labels not in ("pseudo", "gt"):
            raise AffordError(f"{where}: labels must be 'pseudo' or 'gt', got {self.labels!r}")
        for k in ("pairs", "points", "epochs", "iters_per_epoch", "val_batches"):
            if int(getattr(self, k)) < 1:
                raise AffordError(f"{where}: {k} must be >= 1")
        if self.spatial_region not in (None, "object", "part"):
            raise AffordError(
                f"{where}: spatial_region must be 'object', 'part' or null (follow mode), "
                f"got {self.spatial_region!r}"
            )
        if int(self.feature_augs) < 0:
            raise AffordError(f"{where}: feature_augs must be >= 0 (0 = no feature bank)")
        if not 0 <= self.val_fraction < 1:
            raise AffordError(f"{where}: val_fraction must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def spatial_region_used(self) -> str:
        """The spatial loss region: ``spatial_region`` if set, else "object" in paper mode and
        "part" in official mode."""
        if self.spatial_region is not None:
            return self.spatial_region
        return "object" if self.mode == "paper" else "part"


# ---------------------------------------------------------------------------- components
def load_encoders(cfg: CorrTrainConfig | dict, device: torch.device | str = "cpu"):
    """Frozen DINOv2 image backbone and CLIP text encoder named by a config."""
    from afford.backbones import load_clip, load_dinov2

    c = cfg if isinstance(cfg, dict) else cfg.to_dict()
    dino = load_dinov2(c.get("dinov2_weights"), variant=c["dinov2"], device=device)
    clip = load_clip(c.get("clip_weights"), variant=c["clip"], device=device)
    return dino, clip


def build_model(cfg: CorrTrainConfig, feat_dim: int, text_dim: int):
    from afford.correspondence.model import FunctionalCorrespondenceModel

    return FunctionalCorrespondenceModel(
        feat_dim=feat_dim,
        text_dim=text_dim,
        proj_dim=cfg.proj_dim,
        hidden=cfg.hidden,
        out_dim=cfg.out_dim,
        mask_head=cfg.mask_head,
        mode=cfg.mode,
    )


def split_train_assets(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of the training assets into (fit, held-out validation) lists."""
    if fraction <= 0 or len(ids) < 2:
        return list(ids), []
    rng = np.random.default_rng([int(seed), 7919])
    n_val = max(1, int(round(fraction * len(ids))))
    perm = rng.permutation(len(ids))
    val = sorted(perm[:n_val].tolist())
    fit_ids = [ids[i] for i in sorted(perm[n_val:].tolist())]
    return fit_ids, [ids[i] for i in val]


def batch_losses(
    model: torch.nn.Module,
    backbone: torch.nn.Module,
    text_table: torch.Tensor,
    batch: dict[str, torch.Tensor],
    cfg: CorrTrainConfig,
    bank=None,
) -> dict[str, torch.Tensor]:
    """Losses of one batch (Eqs. 1-3). The frozen backbone runs under no-grad.

    ``batch["images"]`` holds [image 0 | image 1 | image 2] blocks of P images (image 2 only
    when the sampler drew spatial correspondences); a batch with ``augs`` instead takes the
    layer maps of those images from ``bank`` (a :class:`FeatureBank`).
    """
    from afford.correspondence.losses import functional_loss, mask_loss, spatial_loss, total_loss

    device = text_table.device
    p = batch["function"].shape[0]
    n = batch["part0"].shape[1]
    if "augs" in batch:
        if bank is None:
            raise AffordError("batch_losses: the batch indexes a feature bank but none was given")
        maps = bank.gather(batch["views"], batch["augs"], device)
    else:
        with torch.no_grad():
            maps = [m.float() for m in backbone(batch["images"].to(device))]
    text = text_table[batch["function"].to(device)]

    def block(k: int) -> list[torch.Tensor]:
        return [m[k * p : (k + 1) * p] for m in maps]

    need_pair = cfg.functional or cfg.mask
    pts0 = [batch["part0"], batch["non0"]] if need_pair else []
    if cfg.spatial:
        pts0.append(batch["src"])
    out0 = model(block(0), torch.cat(pts0, 1).to(device).float(), text)
    f0 = out0["feat"]
    losses: dict[str, torch.Tensor] = {}
    func = spat = msk = None
    if need_pair:
        pts1 = torch.cat([batch["part1"], batch["non1"]], 1).to(device).float()
        out1 = model(block(1), pts1, text)
        a0, b0 = f0[:, :n], f0[:, n : 2 * n]
        a1, b1 = out1["feat"][:, :n], out1["feat"][:, n:]
        if cfg.functional:
            func = functional_loss(a0, b0, a1, b1, tau=cfg.tau, negneg=cfg.negneg, mode=cfg.mode)
            losses["func"] = func
        if cfg.mask:
            l0, l1 = out0["mask_logit"], out1["mask_logit"]
            msk = mask_loss(l0[:, :n], l1[:, :n], l0[:, n : 2 * n], l1[:, n:])
            losses["mask"] = msk
    if cfg.spatial:
        k2 = 2 if need_pair else 1
        src_feat = f0[:, f0.shape[1] - batch["src"].shape[1] :]
        out2 = model(block(k2), batch["dst"].to(device).float(), text)
        spat = spatial_loss(src_feat, out2["feat"], tau=cfg.tau)
        losses["spatial"] = spat
    losses["total"] = total_loss(func, spat, msk, cfg.lambda_spatial, cfg.lambda_mask)
    return losses


def training_sets(cfg: CorrTrainConfig) -> tuple:
    """(fit TrainingSet, held-out validation TrainingSet or None) of a config's dataset."""
    from afford.data.correspondence import CorrespondenceDataset
    from afford.correspondence.sampling import build_training_set

    ds = CorrespondenceDataset(cfg.data)
    fit_ids, val_ids = split_train_assets(ds.asset_ids("train"), cfg.val_fraction, cfg.seed)
    if not fit_ids:
        raise AffordError(f"{ds.root}: the 'train' split has no assets")
    kw = dict(labels=cfg.labels, functions=ds.functions, spatial_region=cfg.spatial_region_used)
    data = build_training_set(ds, fit_ids, **kw)
    vdata = None
    if val_ids:
        vdata = build_training_set(ds, val_ids, **kw)
    return data, vdata


class _Sampler:
    """Wraps :class:`PairSampler` and drops the image-1 block when no loss needs it."""

    def __init__(self, data, cfg: CorrTrainConfig, seed: int, feature_augs: int = 0) -> None:
        from afford.correspondence.sampling import PairSampler

        self.cfg = cfg
        self.inner = PairSampler(
            data,
            pairs=cfg.pairs,
            n_points=cfg.points,
            n_spatial=cfg.spatial_points if cfg.spatial else 0,
            seed=seed,
            noise=cfg.noise,
            p_noise=cfg.p_noise,
            feature_augs=feature_augs,
        )

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        b = self.inner.batch(step)
        if not (self.cfg.functional or self.cfg.mask):
            p = self.cfg.pairs
            for k in ("images", "views", "augs"):
                if k in b:
                    b[k] = torch.cat([b[k][:p], b[k][2 * p :]])
        return b


def feature_bank(cfg: CorrTrainConfig, data, backbone, progress: bool = True):
    """The :class:`FeatureBank` of a config's training set (None when ``feature_augs`` is 0);
    a function of (backbone, training views, seed, augmentation settings) only, so the rows of
    an ablation with the same seed can share it."""
    if not cfg.feature_augs:
        return None
    from afford.correspondence.featbank import build_feature_bank

    return build_feature_bank(
        backbone,
        data.images,
        data.masks,
        cfg.feature_augs,
        seed=cfg.seed,
        noise=cfg.noise,
        p_noise=cfg.p_noise,
        progress=progress,
    )


def train(
    cfg: CorrTrainConfig,
    resume: bool = True,
    progress: bool = True,
    sets: tuple | None = None,
    bank=None,
) -> dict[str, Any]:
    """Train; returns {"out", "state" (TrainState as dict), "data" (training-set summary)}.

    Writes ``<out>/last``, ``<out>/best`` (checkpoints), ``history.json`` and ``loss.png``.
    ``sets``: optional prebuilt ``(fit TrainingSet, val TrainingSet | None)`` of the same
    dataset, labels and seed (from :func:`training_sets`), to share the cropping between runs.
    ``bank``: optional prebuilt :func:`feature_bank` of the same fit set, backbone and seed
    (built here when ``cfg.feature_augs > 0`` and not given). Validation always runs the
    backbone on freshly randomised images.
    """
    from afford.correspondence.text import encode_functions
    from afford.engine import fit, resolve_device, seed_everything

    cfg.check()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    data, vdata = sets if sets is not None else training_sets(cfg)
    fit_ids, val_ids = data.assets, (vdata.assets if vdata is not None else [])
    functions = data.functions
    log.info("training set: %s", data.summary())
    sampler = _Sampler(data, cfg, cfg.seed, cfg.feature_augs)
    val_sampler = None
    if vdata is not None:
        try:
            val_sampler = _Sampler(vdata, cfg, cfg.seed + 104729)
        except AffordError as exc:  # e.g. no function with two items in the held-out assets
            log.warning("no validation batches from held-out assets %s: %s", val_ids, exc)
    dino, clip = load_encoders(cfg, device)
    text_table = encode_functions(clip, functions).to(device)
    if bank is None:
        bank = feature_bank(cfg, data, dino, progress)
    elif bank.n_views != data.images.shape[0] or bank.augs != cfg.feature_augs:
        raise AffordError(
            f"train: the given feature bank ({bank.n_views} views x {bank.augs}) does not match "
            f"the training set ({data.images.shape[0]} views) and feature_augs "
            f"({cfg.feature_augs})"
        )
    model = build_model(cfg, dino.feat_dim, text_table.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_config = {
        "kind": "correspondence",
        "model": model.config(),
        "train": cfg.to_dict(),
        "functions": functions,
        "backbone": {"dinov2": dino.model_id, "clip": clip.model_id},
        "fit_assets": fit_ids,
        "val_assets": val_ids,
    }

    def batches(epoch: int):
        for i in range(cfg.iters_per_epoch):
            yield sampler.batch(epoch * cfg.iters_per_epoch + i)

    def step(batch, epoch):  # noqa: ARG001
        return batch_losses(model, dino, text_table, batch, cfg, bank)

    validate = None
    if val_sampler is not None:
        val_batches = [val_sampler.batch(i) for i in range(cfg.val_batches)]

        def validate(epoch):  # noqa: ARG001
            sums: dict[str, float] = {}
            for b in val_batches:
                for k, v in batch_losses(model, dino, text_table, b, cfg).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            return {f"val_{k}": v / len(val_batches) for k, v in sums.items()}

    state = fit(
        model,
        opt,
        batches,
        step,
        epochs=cfg.epochs,
        out_dir=cfg.out,
        config=ckpt_config,
        validate=validate,
        select="val_total" if validate is not None else None,
        select_mode="min",
        resume=resume,
        steps_per_epoch=cfg.iters_per_epoch,
        grad_clip=cfg.grad_clip,
        progress=progress,
        desc=f"corr {cfg.name}",
    )
    try:
        from afford.viz import plot_loss_curves

        plot_loss_curves(
            state.history, Path(cfg.out) / "loss.png", title=f"correspondence {cfg.name}"
        )
    except AffordError as exc:  # pragma: no cover - plotting is a convenience
        log.warning("loss plot skipped: %s", exc)
    return {"out": cfg.out, "state": asdict(state), "data": data.summary()}


def load_trained(checkpoint: str | os.PathLike, device: torch.device | str = "cpu"):
    """Rebuild (model, dino, clip, functions, config) from a checkpoint folder written by
    :func:`train` (``<out>/best`` or ``<out>/last``; a run folder means its ``best``)."""
    from afford.correspondence.model import FunctionalCorrespondenceModel
    from afford.engine import load_checkpoint

    path = Path(checkpoint)
    if (path / "best").is_dir() and not (path / "model.safetensors").is_file():
        path = path / "best"
    ck = load_checkpoint(path, map_location=device)
    conf = ck["config"]
    if not isinstance(conf, dict) or conf.get("kind") != "correspondence":
        raise AffordError(f"{path}: not a correspondence checkpoint (kind={conf.get('kind')!r})")
    dino, clip = load_encoders(conf["train"], device)
    if conf["backbone"]["dinov2"] != dino.model_id:
        raise AffordError(
            f"{path}: trained on backbone {conf['backbone']['dinov2']!r} but "
            f"{dino.model_id!r} was loaded; point dinov2_weights to the same file"
        )
    model = FunctionalCorrespondenceModel(**conf["model"]).to(device)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, dino, clip, list(conf["functions"]), conf

"""Training of the function-conditioned correspondence model (paper Sec. 4.2-4.3).

``train(cfg)`` (``cfg``: a :class:`~afford.correspondence.config.CorrExperiment`) builds the
frozen DINOv2 + CLIP text encoders, the training set (train-split assets of a dataset in the
documented format, with a seeded held-out fraction of those assets for validation; the
evaluation pairs are never used), and runs :func:`afford.engine.fit`: AdamW, iterations grouped
into epochs, validation loss on fixed batches from the held-out assets for model selection
(``<out>/best``), ``<out>/last`` for exact resume (pair ``j`` of batch ``i`` of epoch ``e`` is
drawn with seed ``(seed, e * iters_per_epoch + i, j)``).  The pairs are a map-style dataset
(:class:`PairDataset`) on the engine's DataLoader (``train.workers``); with several processes
(``train.devices``) each rank draws its contiguous chunk of the pairs of every batch, and
every loss is a mean over pairs, so the ranks' average is the global batch's loss.

Loss switches (``loss.*``) give the paper's Table 1 ablations: functional only, spatial only,
full, full with the mask head.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afford.backbones import load_clip, load_dinov2, policy
from afford.config import load, to_dict
from afford.correspondence.config import CorrExperiment
from afford.correspondence.featbank import FeatureBank, build_feature_bank
from afford.correspondence.losses import functional_loss, mask_loss, spatial_loss, total_loss
from afford.correspondence.model import FunctionalCorrespondenceModel
from afford.correspondence.sampling import (
    PairSampler,
    TrainingSet,
    build_training_set,
    collate_pairs,
)
from afford.correspondence.text import encode_functions
from afford.data.correspondence import CorrespondenceDataset
from afford.data.io import read_json
from afford.engine import fit, load_checkpoint, seed_everything
from afford.engine.data import epoch_loader
from afford.engine.fabric import build_engine
from afford.engine.selection import selection_record
from afford.errors import AffordError, DataError, UsageError
from afford.viz import draw_matches, plot_loss_curves

log = logging.getLogger(__name__)

#: ``kind`` of the checkpoints written by :func:`train`.
KIND = "correspondence"


# ---------------------------------------------------------------------------- components
def load_encoders(cfg: CorrExperiment, device: torch.device | str = "cpu"):
    """Frozen DINOv2 image backbone and CLIP text encoder named by ``cfg.backbone``."""
    b = cfg.backbone
    dino = load_dinov2(b.dinov2.weights, variant=b.dinov2.variant, device=device)
    clip = load_clip(b.clip.weights, variant=b.clip.variant, device=device)
    return dino, clip


def build_model(cfg: CorrExperiment, feat_dim: int, text_dim: int) -> FunctionalCorrespondenceModel:
    m = cfg.model
    return FunctionalCorrespondenceModel(
        feat_dim=feat_dim,
        text_dim=text_dim,
        proj_dim=m.proj_dim,
        hidden=m.hidden,
        out_dim=m.out_dim,
        mask_head=m.mask_head,
        mode=m.mode,
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
    cfg: CorrExperiment,
    bank: FeatureBank | None = None,
) -> dict[str, torch.Tensor]:
    """Losses of one batch (Eqs. 1-3). The frozen backbone runs under no-grad.

    ``batch["images"]`` holds [image 0 | image 1 | image 2] blocks of P images (image 2 only
    when the sampler drew spatial correspondences); a batch with ``augs`` instead takes the
    layer maps of those images from ``bank`` (a :class:`FeatureBank`).
    """
    lc = cfg.loss
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

    need_pair = lc.functional or lc.mask
    pts0 = [batch["part0"], batch["non0"]] if need_pair else []
    if lc.spatial:
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
        if lc.functional:
            func = functional_loss(
                a0, b0, a1, b1, tau=lc.tau, negneg=lc.negneg, mode=cfg.model.mode
            )
            losses["func"] = func
        if lc.mask:
            l0, l1 = out0["mask_logit"], out1["mask_logit"]
            msk = mask_loss(l0[:, :n], l1[:, :n], l0[:, n : 2 * n], l1[:, n:])
            losses["mask"] = msk
    if lc.spatial:
        k2 = 2 if need_pair else 1
        src_feat = f0[:, f0.shape[1] - batch["src"].shape[1] :]
        out2 = model(block(k2), batch["dst"].to(device).float(), text)
        spat = spatial_loss(src_feat, out2["feat"], tau=lc.tau)
        losses["spatial"] = spat
    losses["total"] = total_loss(func, spat, msk, lc.lambda_spatial, lc.lambda_mask)
    return losses


def training_sets(cfg: CorrExperiment) -> tuple[TrainingSet, TrainingSet | None]:
    """(fit TrainingSet, held-out validation TrainingSet or None) of a config's dataset."""
    ds = CorrespondenceDataset(cfg.data.root)
    fit_ids, val_ids = split_train_assets(
        ds.asset_ids("train"), cfg.data.val_fraction, cfg.train.seed
    )
    if not fit_ids:
        raise AffordError(f"{ds.root}: the 'train' split has no assets")
    kw = dict(
        labels=cfg.data.labels, functions=ds.functions, spatial_region=cfg.spatial_region_used
    )
    data = build_training_set(ds, fit_ids, **kw)
    vdata = None
    if val_ids:
        vdata = build_training_set(ds, val_ids, **kw)
    return data, vdata


class _Sampler:
    """Wraps :class:`PairSampler` and drops the image-1 block when no loss needs it."""

    def __init__(
        self, data: TrainingSet, cfg: CorrExperiment, seed: int, feature_augs: int = 0
    ) -> None:
        s = cfg.sampling
        self.cfg = cfg
        self.inner = PairSampler(
            data,
            pairs=s.pairs,
            n_points=s.points,
            n_spatial=s.spatial_points if cfg.loss.spatial else 0,
            seed=seed,
            noise=s.noise,
            p_noise=s.p_noise,
            feature_augs=feature_augs,
        )

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return self.trim(self.inner.batch(step))

    def trim(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not (self.cfg.loss.functional or self.cfg.loss.mask):
            p = b["function"].shape[0]
            for k in ("images", "views", "augs"):
                if k in b:
                    b[k] = torch.cat([b[k][:p], b[k][2 * p :]])
        return b

    def collate(self, pairs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.trim(collate_pairs(pairs))


class PairDataset(torch.utils.data.Dataset):
    """Map-style training pairs: ``dataset[(step, j)]`` is pair ``j`` of batch ``step``."""

    def __init__(self, sampler: _Sampler) -> None:
        self.sampler = sampler

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.sampler.inner.pair(int(key[0]), int(key[1]))


def epoch_pairs(epoch: int, iters: int, pairs: int) -> list[list[tuple[int, int]]]:
    """The global batches of an epoch: ``[[(step, j) for j < pairs] for each step]``."""
    return [[(epoch * iters + i, j) for j in range(pairs)] for i in range(iters)]


#: Where a run keeps its feature-bank chunks (under ``train.out``; a resumed run reads them).
FEATURE_BANK_DIR = "feature_bank"


def feature_bank(
    cfg: CorrExperiment, data: TrainingSet, backbone: torch.nn.Module
) -> FeatureBank | None:
    """The :class:`FeatureBank` of a config's training set (None when
    ``sampling.feature_augs`` is 0); a function of (backbone, training views, seed,
    augmentation settings) only, so the rows of an ablation with the same seed can share it.
    Its chunks are kept in ``<train.out>/feature_bank/``, so an interrupted build resumes."""
    s = cfg.sampling
    if not s.feature_augs:
        return None
    return build_feature_bank(
        backbone,
        data.images,
        data.masks,
        s.feature_augs,
        seed=cfg.train.seed,
        noise=s.noise,
        p_noise=s.p_noise,
        progress=cfg.train.progress,
        cache_dir=Path(cfg.train.out) / FEATURE_BANK_DIR if cfg.train.out else None,
    )


def train(
    cfg: CorrExperiment,
    sets: tuple[TrainingSet, TrainingSet | None] | None = None,
    bank: FeatureBank | None = None,
) -> dict[str, Any]:
    """Train; returns {"out", "state" (TrainState as dict), "data" (training-set summary)}.

    Writes ``<out>/last``, ``<out>/best`` (checkpoints), ``history.json`` and ``loss.png``;
    continues from ``<out>/last`` when ``train.resume`` and it exists.
    ``sets``: optional prebuilt ``(fit TrainingSet, val TrainingSet | None)`` of the same
    dataset, labels and seed (from :func:`training_sets`), to share the cropping between runs.
    ``bank``: optional prebuilt :func:`feature_bank` of the same fit set, backbone and seed
    (built here when ``sampling.feature_augs > 0`` and not given). Validation always runs the
    backbone on freshly randomised images.
    """
    t = cfg.train
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    engine = build_engine(t, out=t.out)  # first: extra processes re-run the command
    if cfg.sampling.pairs % engine.world:
        raise UsageError(
            f"sampling.pairs={cfg.sampling.pairs} must be divisible by the {engine.world} "
            "processes (each rank takes an equal share of every batch)"
        )
    seed_everything(t.seed)
    device = engine.device
    data, vdata = sets if sets is not None else training_sets(cfg)
    fit_ids, val_ids = data.assets, (vdata.assets if vdata is not None else [])
    functions = data.functions
    log.info("training set: %s", data.summary())
    augs = cfg.sampling.feature_augs
    sampler = _Sampler(data, cfg, t.seed, augs)
    val_sampler = None
    if vdata is not None:
        try:
            val_sampler = _Sampler(vdata, cfg, t.seed + 104729)
        except AffordError as exc:  # e.g. no function with two items in the held-out assets
            log.warning("no validation batches from held-out assets %s: %s", val_ids, exc)
    dino, clip = load_encoders(cfg, device)
    text_table = encode_functions(clip, functions).to(device)
    if bank is None:
        bank = feature_bank(cfg, data, dino)
    elif bank.n_views != data.images.shape[0] or bank.augs != augs:
        raise AffordError(
            f"train: the given feature bank ({bank.n_views} views x {bank.augs}) does not match "
            f"the training set ({data.images.shape[0]} views) and sampling.feature_augs "
            f"({augs})"
        )
    model = build_model(cfg, dino.feat_dim, text_table.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    model_w, opt_w = engine.setup(model, opt)
    ckpt_config = {
        "kind": KIND,
        "model": model.config(),
        "experiment": to_dict(cfg),
        "functions": functions,
        "backbone": {"dinov2": dino.model_id, "clip": clip.model_id},
        "backbones": policy.records(dinov2=dino, clip=clip),
        "fit_assets": fit_ids,
        "val_assets": val_ids,
    }

    dataset = PairDataset(sampler)

    def batches(epoch: int, start: int = 0):
        return epoch_loader(
            dataset, epoch_pairs(epoch, t.iters_per_epoch, cfg.sampling.pairs),
            collate=sampler.collate, seed=t.seed, epoch=epoch, start=start, rank=engine.rank,
            world=engine.world, workers=engine.workers, pin_memory=engine.pin_memory,
        )  # fmt: skip

    def step(batch, epoch):  # noqa: ARG001
        return batch_losses(model_w, dino, text_table, batch, cfg, bank)

    validate = None
    if val_sampler is not None:
        val_batches = [val_sampler.batch(i) for i in range(t.val_batches)]

        def validate(epoch):  # noqa: ARG001
            sums: dict[str, float] = {}
            for b in val_batches:
                for k, v in batch_losses(model, dino, text_table, b, cfg).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            return {f"val_{k}": v / len(val_batches) for k, v in sums.items()}

    def images(epoch: int) -> dict[str, np.ndarray]:  # noqa: ARG001
        """Label transfer on the first validation pairs: image-0 part points matched to the
        nearest (cosine) image-1 object point, lines green when they land in the part."""
        b = val_batches[0]
        p, n = b["function"].shape[0], b["part0"].shape[1]
        maps = [m.float() for m in dino(b["images"].to(device))]
        text = text_table[b["function"].to(device)]
        src = b["part0"].to(device).float()
        cand = torch.cat([b["part1"], b["non1"]], 1).to(device).float()
        f0 = model([m[:p] for m in maps], src, text)["feat"]
        f1 = model([m[p : 2 * p] for m in maps], cand, text)["feat"]
        best = torch.einsum("pid,pkd->pik", f0, f1).argmax(-1).cpu()  # (P,N)
        out = {}
        for i in range(min(2, p)):
            imgs = [(b["images"][k * p + i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                    for k in (0, 1)]  # fmt: skip
            dst = cand[i].cpu()[best[i]]
            out[f"val_matches/{i}"] = draw_matches(imgs[0], imgs[1], b["part0"][i].numpy(),
                                                   dst.numpy(), correct=(best[i] < n).numpy())  # fmt: skip
        return out

    selection = selection_record(
        metric="val_total" if validate is not None else None, split="val",
        n=len(val_ids), unit="assets",
        why_none="no held-out assets (data.val_fraction too small or 0)" if not val_ids
        else "no validation batches from the held-out assets",
    )  # fmt: skip
    state = fit(
        model_w,
        opt_w,
        batches,
        step,
        epochs=t.epochs,
        out_dir=t.out,
        config=ckpt_config,
        validate=validate,
        select="val_total" if validate is not None else None,
        select_mode="min",
        resume=t.resume,
        steps_per_epoch=t.iters_per_epoch,
        grad_clip=t.grad_clip,
        progress=t.progress,
        desc=f"corr {t.name}",
        engine=engine,
        samples_per_step=cfg.sampling.pairs,
        selection=selection,
        images=images if validate is not None and (cfg.loss.functional or cfg.loss.mask) else None,
    )
    if engine.is_main:
        try:
            plot_loss_curves(state.history, Path(t.out) / "loss.png",
                             title=f"correspondence {t.name}")  # fmt: skip
        except AffordError as exc:  # pragma: no cover - plotting is a convenience
            log.warning("loss plot skipped: %s", exc)
    return {"out": t.out, "state": asdict(state), "data": data.summary(),
            "selection": selection, "rank": engine.rank}  # fmt: skip


def checkpoint_dir(checkpoint: str | os.PathLike) -> Path:
    """The checkpoint folder of ``checkpoint``: itself, or ``<run>/best`` for a run folder."""
    path = Path(checkpoint)
    if (path / "best").is_dir() and not (path / "model.safetensors").is_file():
        path = path / "best"
    return path


def trained_config(
    checkpoint: str | os.PathLike, sets: Iterable[str] = ()
) -> tuple[Path, dict[str, Any]]:
    """(checkpoint folder, its stored config) without loading weights; ``config["experiment"]``
    is the :class:`CorrExperiment` the run was trained with, rebuilt strictly with ``--set``
    overrides on top (e.g. ``backbone.dinov2.weights=FILE`` when the weight file moved)."""
    path = checkpoint_dir(checkpoint)
    if not (path / "config.json").is_file():
        raise DataError(
            f"{path}: not an afford checkpoint (expected a folder with model.safetensors "
            "and config.json)"
        )
    conf = read_json(path / "config.json").get("config")
    if not isinstance(conf, dict) or conf.get("kind") != KIND:
        kind = conf.get("kind") if isinstance(conf, dict) else None
        if kind is None and isinstance(conf, dict) and "model" in conf and "backbone" in conf:
            kind = "grounding"
        raise DataError(f"{path}: not a correspondence checkpoint (kind={kind!r})")
    if not isinstance(conf.get("experiment"), dict):
        raise DataError(
            f"{path}: no 'experiment' config (a checkpoint of an older afford with flat "
            "training keys); retrain it with `afford train correspondence`"
        )
    return path, {**conf, "experiment": load(CorrExperiment, None, sets, base=conf["experiment"])}


def load_trained(
    checkpoint: str | os.PathLike,
    device: torch.device | str = "cpu",
    sets: Iterable[str] = (),
    allow_backbone_mismatch: bool = False,
):
    """Rebuild (model, dino, clip, functions, config) from a checkpoint folder written by
    :func:`train` (``<out>/best`` or ``<out>/last``; a run folder means its ``best``).

    ``config`` is the stored checkpoint config (``kind``, ``model``, ``functions``, ``backbone``,
    ``backbones``, ``fit_assets``, ``val_assets``) with ``experiment`` rebuilt as a
    :class:`CorrExperiment` (``sets``: ``--set`` overrides, see :func:`trained_config`). The
    backbones built are checked against the stored records
    (:func:`afford.backbones.policy.check`; ``allow_backbone_mismatch`` turns an error into a
    warning).
    """
    path, conf = trained_config(checkpoint, sets)
    ck = load_checkpoint(path, map_location=device)
    dino, clip = load_encoders(conf["experiment"], device)
    recs = conf.get("backbones") if isinstance(conf.get("backbones"), dict) else {}
    for role, module in (("dinov2", dino), ("clip", clip)):
        stored = recs.get(role, conf.get("backbone", {}).get(role) if role == "dinov2" else None)
        policy.check(stored, module, role=role, checkpoint=path,
                     allow_mismatch=allow_backbone_mismatch,
                     fix=f"point backbone.{role}.weights to the training weights "
                     f"(--set backbone.{role}.weights=FILE)")  # fmt: skip
    model = FunctionalCorrespondenceModel(**conf["model"]).to(device)
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}: the weights do not fit the stored model config ({exc})") from None
    model.eval()
    return model, dino, clip, list(conf["functions"]), conf

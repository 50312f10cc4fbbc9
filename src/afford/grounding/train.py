"""Training entry for affordance grounding: ``afford train grounding --config <yaml>``.

One YAML file describes an experiment (``afford/configs/grounding/*.yaml``), read into a
:class:`~afford.grounding.config.GroundingExperiment` by :func:`afford.config.load`::

    data:      dataset (agd20k_seen | agd20k_unseen | hico_iif | folders), root, cache,
               affinity (clip | simulated | online), val_fraction, val_seed, resize, crop,
               num_exo, preload, augment (false: no crop/flip, DINO outputs memoised per
               image -- fast CPU runs, not the protocol), affinity_batch
    backbone:  dino: {variant, weights}; clip: {variant, weights, normalize}
    model:     GroundingConfig fields (method, mode, alpha, ...) and table2_row (its switches
               fill the ones left unset); class_names and feat_dim are filled in from the
               data and the DINO backbone
    train:     the shared keys (epochs, lr, weight_decay, seed, device, out, resume, threads,
               progress, grad_clip) and batch_size, optimizer (sgd | adam), momentum,
               nesterov, fc_lr_mult, fc_bias_lr_mult, bias_lr_mult, scheduler (none | step),
               step_size, gamma, select_on_test, max_batches_per_epoch, eval_batch_size

Per step the frozen DINO keys and CLS attention are computed on the *augmented* images (no
gradient); the CLIP affinity maps come from the frozen-output cache, cropped and flipped
exactly like the images (:mod:`afford.data.transforms`).  ``affinity: online`` recomputes them
with CLIP on every augmented image instead (the no-cache baseline of
``benchmarks/grounding_cache.py``).

Model selection: on the validation split carved from the training set (KLD when its
egocentric images have GT maps, else their classification loss), never on test unless
``train.select_on_test: true`` (``--select-on-test``), which exists only to compare with the
released code's numbers.  Without validation images ``best`` is the last epoch, and with
fewer than :data:`afford.engine.selection.MIN_VAL_IMAGES` the choice is noisy: both are
warned about and recorded (``result["selection"]``, ``history.json``).  Training resumes
from ``<out>/last``.

Engine (``train.devices``, ``precision``, ``workers``..., :mod:`afford.engine.fabric`): the
training samples are a map-style dataset (``TrainSet[(epoch, index)]``) on a DataLoader,
every global batch split in contiguous per-rank chunks; the losses that compare samples
(prototypes, k-means part discovery, BatchNorm statistics) run on the global batch
(:mod:`afford.engine.dist`), so N processes train like one with the same global batch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from afford.config import ConfigError, replace, to_dict
from afford.data.agd20k import (
    EvalSet,
    TrainSet,
    collate,
    ego_map_names,
    exo_map_names,
    scan_dataset,
)
from afford.engine import fit, seed_everything
from afford.engine.data import epoch_loader, permuted_batches
from afford.engine.fabric import build_engine
from afford.engine.selection import selection_record
from afford.errors import AffordError
from afford.grounding.affinity import affinity, fill_cache, text_embeddings
from afford.grounding.build import (
    build_clip,
    build_dino,
    model_config,
    open_cache,
    with_backbone_records,
)
from afford.grounding.config import GroundingExperiment, GroundingTrain
from afford.grounding.model import GroundingModel
from afford.grounding.prompts import action_prompt, entity_prompt
from afford.metrics.saliency import evaluate_map
from afford.viz import overlay_heatmap, plot_loss_curves

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ optimiser
def param_groups(model: torch.nn.Module, t: GroundingTrain) -> list[dict]:
    """Official learning-rate groups: names containing "fc" get ``fc_lr_mult`` (weights) /
    ``fc_bias_lr_mult`` (biases), the others 1x / ``bias_lr_mult`` (REFERENCE_NOTES A)."""
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        fc = "fc" in name
        bias = name.endswith("bias")
        key = ("fc" if fc else "base") + ("_bias" if bias else "")
        mult = {"fc": t.fc_lr_mult, "fc_bias": t.fc_bias_lr_mult, "base": 1.0,
                "base_bias": t.bias_lr_mult}[key]  # fmt: skip
        groups.setdefault(key, {"params": [], "lr": t.lr * mult, "name": key})["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: torch.nn.Module, t: GroundingTrain) -> torch.optim.Optimizer:
    """SGD (Nesterov, momentum 0.9, wd 5e-4, 10x/20x "fc" lr) as released, or Adam."""
    groups = param_groups(model, t)
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=t.weight_decay,
        )  # fmt: skip
    return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)


# ------------------------------------------------------------------------------ per-step
def frozen_batch(
    batch: dict,
    dino,
    clip=None,
    classes: list[str] | None = None,
    memo: dict | None = None,
    images_fn=None,
) -> dict:
    """Turn a :class:`~afford.data.agd20k.TrainSet` batch into the model's batch.

    Runs DINO once on the B ego + B*E exo augmented images (no gradient).  With ``clip`` (the
    ``online`` mode) the affinity maps are computed on the augmented images too.  With
    ``memo`` (un-augmented batches, ``data.augment: false``) DINO outputs are computed once per
    image id (``images_fn(ids) -> images``) and reused.
    """
    device = dino.device
    nb = device.type == "cuda"  # pinned host memory -> asynchronous copies
    label = batch["label"].to(device, non_blocking=nb)
    b, e = batch["exo_ids"].shape
    if memo is not None:
        ids = torch.cat([batch["ego_id"], batch["exo_ids"].flatten()])
        todo = sorted({int(i) for i in ids} - set(memo))
        if todo:
            with torch.no_grad():
                o = dino(images_fn(torch.tensor(todo)).to(device))
            for j, i in enumerate(todo):
                memo[i] = (o["keys"][j], o["cls_attn"][j])
        keys = torch.stack([memo[int(i)][0] for i in ids])
        attn = torch.stack([memo[int(i)][1] for i in ids])
    else:
        ego = batch["ego_image"].to(device, non_blocking=nb)
        exo = batch["exo_images"].to(device, non_blocking=nb)
        with torch.no_grad():
            out = dino(torch.cat([ego, exo.flatten(0, 1)]))
        keys, attn = out["keys"], out["cls_attn"]
    res = {
        "ego_keys": keys[:b],
        "ego_attn": attn[:b],
        "exo_keys": keys[b:].reshape(b, e, *keys.shape[1:]),
        "exo_attn": attn[b:].reshape(b, e, *attn.shape[1:]),
        "label": label,
    }
    if clip is not None:
        names = [classes[int(i)] for i in label.tolist()]
        uniq = sorted(set(names))
        col = torch.tensor([uniq.index(c) for c in names], device=device)
        act = text_embeddings(clip, [action_prompt(c) for c in uniq])  # (K,E)
        ent = text_embeddings(clip, [entity_prompt(c) for c in uniq])
        with torch.no_grad():  # one CLIP pass per view; both prompts share it
            dense = clip.dense(torch.cat([ego, exo.flatten(0, 1)]), clearclip=True)
        a_all = affinity(dense, act)  # (B+B*E,K,h,w)
        e_exo = affinity(dense[b:], ent)
        rows = torch.arange(b, device=device)
        res["ego_action"] = a_all[:b][rows, col]
        col_x = col.repeat_interleave(e)
        rows_x = torch.arange(b * e, device=device)
        res["exo_action"] = a_all[b:][rows_x, col_x].view(b, e, *keys.shape[-2:])
        res["exo_entity"] = e_exo[rows_x, col_x].view(b, e, *keys.shape[-2:])
    else:
        for k in ("ego_action", "exo_action", "exo_entity"):
            res[k] = batch[k].to(device, non_blocking=nb)
    return res


def flatten_losses(out: dict) -> dict:
    """Model losses + stats as one flat dict for the engine ("stats" entries become floats)."""
    flat = {k: v for k, v in out.items() if k != "stats"}
    for k, v in (out.get("stats") or {}).items():
        flat[f"stat_{k}"] = float(v)
    return flat


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def predict(
    model, dino, images: torch.Tensor, labels: torch.Tensor, ego_action: torch.Tensor
) -> torch.Tensor:
    """Calibrated heatmaps (B,h,w) for images (B,3,224,224) in [0,1]."""
    device = dino.device
    keys = dino(images.to(device))["keys"]
    return model.heatmap(keys, labels.to(device), ego_action.to(device))


@torch.no_grad()
def score_split(model, dino, evalset, batch_size: int = 16, progress: bool = False) -> list[dict]:
    """Per-image metrics of a split: [{"kld","sim","nss","affordance","object","path"}...]."""
    model.eval()
    rows = []
    n = math.ceil(len(evalset) / batch_size)
    for batch in tqdm(
        evalset.batches(batch_size), total=n, desc="eval", disable=not progress, leave=False
    ):
        heat = (
            predict(model, dino, batch["image"], batch["label"], batch["ego_action"]).float().cpu()
        )
        for i, rec in enumerate(batch["record"]):
            if batch["gt"][i] is None:
                raise AffordError(f"{rec.path}: no GT map to evaluate against")
            m = evaluate_map(heat[i].numpy(), batch["gt"][i].numpy())
            rows.append(
                {**m, "affordance": rec.affordance, "object": rec.obj, "path": str(rec.path)}
            )
    return rows


@torch.no_grad()
def val_ce(model, dino, evalset, batch_size: int = 16) -> float:
    """Mean egocentric classification loss of a split (selection metric without GT)."""
    model.eval()
    total, n = 0.0, 0
    for batch in evalset.batches(batch_size):
        logits = model(dino(batch["image"].to(dino.device))["keys"])["logits"]
        total += float(F.cross_entropy(logits, batch["label"].to(logits.device), reduction="sum"))
        n += len(batch["label"])
    return total / max(n, 1)


# ------------------------------------------------------------------------------ training
def train(exp: GroundingExperiment) -> dict:
    """Train one experiment; returns {"out", "best_epoch", "best", "select", "history"}.

    The checkpoints store ``to_dict`` of the experiment with the ``model`` section resolved
    (the data's classes, DINO's width, the Table 2 row's switches applied)."""
    t, dcfg = exp.train, exp.data
    if t.threads:
        torch.set_num_threads(t.threads)
    if dcfg.root is None:
        raise ConfigError("data.root", "not set (the dataset folder)")
    engine = build_engine(t, out=t.out)  # first: extra processes re-run the command
    device = engine.device
    seed_everything(t.seed)

    data = scan_dataset(dcfg.root, dcfg.dataset, train=True, test=t.select_on_test,
                        val_fraction=dcfg.val_fraction, val_seed=dcfg.val_seed)  # fmt: skip
    dino = build_dino(exp, device)
    clip = build_clip(exp, device) if dcfg.affinity in ("clip", "online") else None
    cache = open_cache(exp, data.root, clip)
    eval_records = data.test if t.select_on_test else data.val_ego
    if dcfg.affinity == "clip":
        needs: dict[Path, set[str]] = {}
        for r in data.train_exo:
            needs.setdefault(r.path, set()).update(exo_map_names(r.affordance))
        for r in [*data.train_ego, *eval_records]:
            needs.setdefault(r.path, set()).update(ego_map_names(r.affordance))
        fill_cache(needs, clip, cache, batch_size=dcfg.affinity_batch,
                   progress=t.progress and engine.is_main, rank=engine.rank,
                   world=engine.world)  # fmt: skip
        engine.barrier()  # every rank's shard of the cache is on disk
    online = dcfg.affinity == "online"
    trainset = TrainSet(
        data.train_exo, data.train_ego, data.classes, cache, num_exo=dcfg.num_exo,
        resize=dcfg.resize, crop=dcfg.crop, preload=dcfg.preload, with_maps=not online,
        augment=dcfg.augment, seed=t.seed,
    )  # fmt: skip
    gcfg = model_config(exp, data.classes, dino.feat_dim)
    run_config = with_backbone_records(to_dict(replace(exp, model=gcfg)), dino=dino, clip=clip)
    model = GroundingModel(gcfg).to(device)
    optimizer = build_optimizer(model, t)
    scheduler = None
    if t.scheduler == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.step_size, gamma=t.gamma)
    model_w, optimizer_w = engine.setup(model, optimizer, forward_methods=("losses",))

    evalset = None
    select = "val_ce"
    if eval_records and not online:
        evalset = EvalSet(eval_records, data.classes, cache, preload=dcfg.preload)
        if all(r.gt is not None for r in eval_records):
            select = "test_kld" if t.select_on_test else "val_kld"
    if t.select_on_test:
        log.warning("selecting the checkpoint on the TEST split (select_on_test); numbers are "
                    "not a fair held-out estimate")  # fmt: skip
    selection = selection_record(
        metric=select if evalset is not None else None,
        split=("test" if t.select_on_test else "val") if evalset is not None else None,
        n=len(eval_records) if evalset is not None else 0,
        unit="images",
        why_none="the online affinity mode has no cached validation maps" if online
        and eval_records else "no validation images (data.val_fraction too small or 0)",
    )  # fmt: skip

    def validate(epoch: int) -> dict[str, float]:
        if evalset is None:
            return {"val_ce": 0.0}
        if select.endswith("kld"):
            rows = score_split(model, dino, evalset, t.eval_batch_size)
            pre = select.split("_")[0]
            return {
                f"{pre}_{k}": float(np.mean([r[k] for r in rows])) for k in ("kld", "sim", "nss")
            }
        return {"val_ce": val_ce(model, dino, evalset, t.eval_batch_size)}

    def images(epoch: int) -> dict[str, np.ndarray]:
        """A few validation heatmaps (image | overlay) for the logger."""
        batch = next(evalset.batches(min(4, len(evalset))))
        heat = predict(model, dino, batch["image"], batch["label"], batch["ego_action"])
        out = {}
        for i in range(heat.shape[0]):
            img = (batch["image"][i].permute(1, 2, 0).numpy() * 255).clip(0, 255)
            img = img.astype(np.uint8)
            out[f"val_heatmap/{i}"] = np.concatenate(
                [img, overlay_heatmap(img, heat[i].float().cpu().numpy())], axis=1
            )
        return out

    bs, mb = t.batch_size, t.max_batches_per_epoch

    def batches(epoch: int, start: int = 0):
        return epoch_loader(
            trainset, permuted_batches(len(trainset), bs, t.seed, epoch, mb), collate=collate,
            seed=t.seed, epoch=epoch, start=start, rank=engine.rank, world=engine.world,
            workers=engine.workers, pin_memory=engine.pin_memory,
        )  # fmt: skip

    memo: dict | None = None if dcfg.augment else {}

    def step(batch: dict, epoch: int) -> dict:
        mbatch = frozen_batch(
            batch, dino, clip if online else None, data.classes, memo, trainset.images
        )
        return flatten_losses(model_w.losses(mbatch, epoch))

    state = fit(
        model_w, optimizer_w, batches, step, epochs=t.epochs, out_dir=t.out, config=run_config,
        validate=validate if evalset is not None else None,
        select=select if evalset is not None else None,
        select_mode="min", scheduler=scheduler, resume=t.resume, grad_clip=t.grad_clip,
        steps_per_epoch=trainset.num_batches(bs, mb), progress=t.progress, desc="grounding",
        engine=engine, samples_per_step=bs, images=images if evalset is not None else None,
        selection=selection,
    )  # fmt: skip
    if engine.is_main:
        try:
            plot_loss_curves(state.history, Path(t.out) / "loss_curves.png",
                             keys=[k for k in state.history[-1] if not k.startswith("stat_")])  # fmt: skip
        except AffordError as exc:  # a figure must not fail a finished training
            log.warning("loss curve figure not written: %s", exc)
    return {"out": str(t.out), "best_epoch": state.best_epoch, "best": state.best, "select": select,
            "history": state.epochs, "selection": selection, "rank": engine.rank,
            "timing": state.timing}  # fmt: skip

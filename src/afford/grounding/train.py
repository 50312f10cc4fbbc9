"""Training entry for affordance grounding: ``afford train grounding --config <yaml>``.

One YAML file describes an experiment (see ``configs/grounding/*.yaml``)::

    data:      dataset (agd20k_seen | agd20k_unseen | hico_iif | folders), root, cache,
               affinity (clip | simulated | online), val_fraction, val_seed, resize, crop,
               num_exo, preload, augment (false: no crop/flip, DINO outputs memoised per
               image -- fast CPU runs, not the protocol)
    backbone:  dino: {variant, weights}; clip: {variant, weights, normalize}
    model:     GroundingConfig fields (method, mode, table2_row, alpha, ...); class_names and
               feat_dim are filled in from the data and the DINO backbone
    train:     epochs, batch_size, optimizer (sgd | adam), lr, momentum, nesterov,
               weight_decay, fc_lr_mult, fc_bias_lr_mult, bias_lr_mult, scheduler (none |
               step), step_size, gamma, seed, device, out, select_on_test,
               max_batches_per_epoch, eval_batch_size, resume, threads

Per step the frozen DINO keys and CLS attention are computed on the *augmented* images (no
gradient); the CLIP affinity maps come from the frozen-output cache, cropped and flipped
exactly like the images (:mod:`afford.data.transforms`).  ``affinity: online`` recomputes them
with CLIP on every augmented image instead (the no-cache baseline of
``benchmarks/grounding_cache.py``).

Model selection: on the validation split carved from the training set (KLD when its
egocentric images have GT maps, else their classification loss), never on test unless
``train.select_on_test: true`` (``--select-on-test``), which exists only to compare with the
released code's numbers.  Training resumes from ``<out>/last``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from afford.errors import AffordError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "folders",
        "root": None,
        "cache": None,
        "affinity": "clip",
        "val_fraction": 0.1,
        "val_seed": 0,
        "resize": 256,
        "crop": 224,
        "num_exo": 3,
        "preload": False,
        "augment": True,
        "affinity_batch": 16,
    },
    "backbone": {
        "dino": {"variant": "vits16", "weights": None},
        "clip": {"variant": "vitb16", "weights": None, "normalize": None},
    },
    "model": {},
    "train": {
        "epochs": 15,
        "batch_size": 8,
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "fc_lr_mult": 10.0,
        "fc_bias_lr_mult": 20.0,
        "bias_lr_mult": 2.0,
        "scheduler": "none",
        "step_size": 5,
        "gamma": 0.1,
        "seed": 0,
        "device": "auto",
        "out": "runs/grounding",
        "select_on_test": False,
        "max_batches_per_epoch": None,
        "eval_batch_size": 16,
        "resume": True,
        "threads": None,
        "progress": True,
    },
}
AFFINITY_MODES = ("clip", "simulated", "online")
SIMULATED_ID = "simulated-clip"


# ------------------------------------------------------------------------------ config
def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base and where != "model":
            raise AffordError(f"{where}: unknown key {k!r}; known keys: {sorted(base)}")
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def set_override(cfg: dict, assignment: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML) in place."""
    import yaml

    if "=" not in assignment:
        raise AffordError(f"--set {assignment!r}: expected section.key=value")
    path, _, raw = assignment.partition("=")
    parts = path.strip().split(".")
    node = cfg
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise AffordError(f"--set {assignment!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def resolve_config(raw: dict, source: str = "config") -> dict:
    """Full experiment config: defaults merged with ``raw`` (unknown keys are errors)."""
    if not isinstance(raw, dict):
        raise AffordError(f"{source}: expected a mapping with data/backbone/model/train sections")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise AffordError(f"{source}: unknown sections {unknown}; known: {sorted(DEFAULTS)}")
    cfg = {
        k: _merge(v, raw.get(k) or {}, k if k == "model" else f"{source}: {k}")
        for k, v in DEFAULTS.items()
    }
    if cfg["data"]["affinity"] not in AFFINITY_MODES:
        raise AffordError(
            f"{source}: data.affinity must be one of {AFFINITY_MODES}, got {cfg['data']['affinity']!r}"
        )
    if cfg["train"]["optimizer"] not in ("sgd", "adam"):
        raise AffordError(f"{source}: train.optimizer must be 'sgd' or 'adam'")
    if cfg["train"]["scheduler"] not in ("none", "step", None):
        raise AffordError(f"{source}: train.scheduler must be 'none' or 'step'")
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read a YAML experiment file, apply ``--set`` overrides, fill defaults."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise AffordError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AffordError(f"{path}: not valid YAML ({exc})") from exc
    for o in overrides or []:
        set_override(raw, o)
    return resolve_config(raw, str(path))


# ------------------------------------------------------------------------------ builders
def clip_normalize(cfg: dict) -> str:
    """CLIP input normalisation: explicit, else "imagenet" in official mode (the released
    code's quirk) and CLIP's own in paper mode."""
    norm = cfg["backbone"]["clip"].get("normalize")
    if norm:
        return norm
    return "imagenet" if cfg["model"].get("mode", "paper") == "official" else "clip"


def build_dino(cfg: dict, device: torch.device):
    from afford.backbones import load_dino

    spec = cfg["backbone"]["dino"]
    return load_dino(
        weights=spec.get("weights"), variant=spec.get("variant", "vits16"), device=device
    )


def build_clip(cfg: dict, device: torch.device):
    from afford.backbones import load_clip

    spec = cfg["backbone"]["clip"]
    return load_clip(
        weights=spec.get("weights"), variant=spec.get("variant", "vitb16"),
        normalize=clip_normalize(cfg), device=device,
    )  # fmt: skip


def cache_root(cfg: dict, data_root: Path) -> Path:
    """``data.cache`` or the first existing of ``<root>/cache``, ``<root>/../cache``."""
    if cfg["data"].get("cache"):
        return Path(cfg["data"]["cache"]).expanduser()
    for cand in (data_root / "cache", data_root.parent / "cache"):
        if cand.is_dir():
            return cand
    return data_root / "cache"


def open_cache(cfg: dict, data_root: Path, clip=None):
    """The MapCache holding the affinity maps of this experiment (None for ``online``)."""
    from afford.data.cache import MapCache
    from afford.grounding.affinity import cache_model_id

    mode = cfg["data"]["affinity"]
    root = cache_root(cfg, data_root)
    if mode == "simulated":
        return MapCache.open(root, SIMULATED_ID)
    if mode == "clip":
        if clip is None:
            raise AffordError("open_cache: a CLIP backbone is needed for data.affinity 'clip'")
        return MapCache(root, cache_model_id(clip), meta={"clearclip": True})
    return None


def model_config(cfg: dict, classes: list[str], feat_dim: int):
    """GroundingConfig from the ``model`` section, with the data's classes and DINO's width."""
    from afford.grounding.config import GroundingConfig

    d = dict(cfg["model"])
    if "class_names" in d and list(d["class_names"]) != list(classes):
        raise AffordError(
            f"model.class_names {d['class_names']} differ from the dataset's classes {classes}; "
            "remove model.class_names (it is read from the data)"
        )
    d["class_names"] = list(classes)
    d["feat_dim"] = int(feat_dim)
    d.setdefault("num_exo", cfg["data"]["num_exo"])
    return GroundingConfig.from_dict(d, source="model")


def param_groups(model: torch.nn.Module, cfg: dict) -> list[dict]:
    """Official learning-rate groups: names containing "fc" get ``fc_lr_mult`` (weights) /
    ``fc_bias_lr_mult`` (biases), the others 1x / ``bias_lr_mult`` (REFERENCE_NOTES A)."""
    t = cfg["train"]
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        fc = "fc" in name
        bias = name.endswith("bias")
        key = ("fc" if fc else "base") + ("_bias" if bias else "")
        mult = {"fc": t["fc_lr_mult"], "fc_bias": t["fc_bias_lr_mult"], "base": 1.0,
                "base_bias": t["bias_lr_mult"]}[key]  # fmt: skip
        groups.setdefault(key, {"params": [], "lr": t["lr"] * mult, "name": key})["params"].append(
            p
        )
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """SGD (Nesterov, momentum 0.9, wd 5e-4, 10x/20x "fc" lr) as released, or Adam."""
    t = cfg["train"]
    groups = param_groups(model, cfg)
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(
            groups, lr=t["lr"], momentum=t["momentum"], nesterov=bool(t["nesterov"]),
            weight_decay=t["weight_decay"],
        )  # fmt: skip
    return torch.optim.Adam(groups, lr=t["lr"], weight_decay=t["weight_decay"])


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
    label = batch["label"].to(device)
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
        ego = batch["ego_image"].to(device)
        exo = batch["exo_images"].to(device)
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
        from afford.grounding.affinity import affinity, text_embeddings
        from afford.grounding.prompts import action_prompt, entity_prompt

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
            res[k] = batch[k].to(device)
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
    from tqdm.auto import tqdm

    from afford.metrics.saliency import evaluate_map

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
def train(
    cfg: dict, out: str | os.PathLike | None = None, select_on_test: bool | None = None
) -> dict:
    """Train one experiment; returns {"out", "best_epoch", "best", "select", "history"}."""
    from afford.data.agd20k import EvalSet, TrainSet, ego_map_names, exo_map_names, scan_dataset
    from afford.engine import fit, resolve_device, seed_everything
    from afford.grounding.model import GroundingModel

    cfg = copy.deepcopy(cfg)
    t, dcfg = cfg["train"], cfg["data"]
    if out is not None:
        t["out"] = str(out)
    if select_on_test is not None:
        t["select_on_test"] = bool(select_on_test)
    if t.get("threads"):
        torch.set_num_threads(int(t["threads"]))
    if dcfg.get("root") is None:
        raise AffordError("data.root is not set (the dataset folder)")
    device = resolve_device(t["device"])
    seed_everything(int(t["seed"]))

    data = scan_dataset(dcfg["root"], dcfg["dataset"], train=True, test=bool(t["select_on_test"]),
                        val_fraction=float(dcfg["val_fraction"]), val_seed=int(dcfg["val_seed"]))  # fmt: skip
    dino = build_dino(cfg, device)
    clip = build_clip(cfg, device) if dcfg["affinity"] in ("clip", "online") else None
    cache = open_cache(cfg, data.root, clip)
    eval_records = data.test if t["select_on_test"] else data.val_ego
    if dcfg["affinity"] == "clip":
        from afford.grounding.affinity import fill_cache

        needs: dict[Path, set[str]] = {}
        for r in data.train_exo:
            needs.setdefault(r.path, set()).update(exo_map_names(r.affordance))
        for r in [*data.train_ego, *eval_records]:
            needs.setdefault(r.path, set()).update(ego_map_names(r.affordance))
        fill_cache(
            needs, clip, cache, batch_size=int(dcfg["affinity_batch"]), progress=bool(t["progress"])
        )
    online = dcfg["affinity"] == "online"
    trainset = TrainSet(
        data.train_exo, data.train_ego, data.classes, cache, num_exo=int(dcfg["num_exo"]),
        resize=int(dcfg["resize"]), crop=int(dcfg["crop"]), preload=bool(dcfg["preload"]),
        with_maps=not online,
        augment=bool(dcfg["augment"]),
    )  # fmt: skip
    gcfg = model_config(cfg, data.classes, dino.feat_dim)
    cfg["model"] = gcfg.to_dict()
    model = GroundingModel(gcfg).to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = None
    if t["scheduler"] == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(t["step_size"]), gamma=float(t["gamma"])
        )

    evalset = None
    select = "val_ce"
    if eval_records and not online:
        evalset = EvalSet(eval_records, data.classes, cache, preload=bool(dcfg["preload"]))
        if all(r.gt is not None for r in eval_records):
            select = "test_kld" if t["select_on_test"] else "val_kld"
    if t["select_on_test"]:
        log.warning("selecting the checkpoint on the TEST split (select_on_test); numbers are "
                    "not a fair held-out estimate")  # fmt: skip

    def validate(epoch: int) -> dict[str, float]:
        if evalset is None:
            return {"val_ce": 0.0}
        if select.endswith("kld"):
            rows = score_split(model, dino, evalset, int(t["eval_batch_size"]))
            pre = select.split("_")[0]
            return {
                f"{pre}_{k}": float(np.mean([r[k] for r in rows])) for k in ("kld", "sim", "nss")
            }
        return {"val_ce": val_ce(model, dino, evalset, int(t["eval_batch_size"]))}

    bs, mb = int(t["batch_size"]), t.get("max_batches_per_epoch")
    seed = int(t["seed"])

    def batches(epoch: int):
        return trainset.batches(epoch, bs, seed=seed, max_batches=mb)

    if online and not dcfg["augment"]:
        raise AffordError("data.affinity 'online' needs data.augment: true")
    memo: dict | None = None if dcfg["augment"] else {}

    def step(batch: dict, epoch: int) -> dict:
        mbatch = frozen_batch(
            batch, dino, clip if online else None, data.classes, memo, trainset.images
        )
        return flatten_losses(model.losses(mbatch, epoch))

    state = fit(
        model, optimizer, batches, step, epochs=int(t["epochs"]), out_dir=t["out"], config=cfg,
        validate=validate if evalset is not None else None, select=select if evalset is not None else None,
        select_mode="min", scheduler=scheduler, resume=bool(t["resume"]),
        steps_per_epoch=trainset.num_batches(bs, mb), progress=bool(t["progress"]), desc="grounding",
    )  # fmt: skip
    try:
        from afford.viz import plot_loss_curves

        plot_loss_curves(state.history, Path(t["out"]) / "loss_curves.png",
                         keys=[k for k in state.history[-1] if not k.startswith("stat_")])  # fmt: skip
    except AffordError as exc:  # a figure must not fail a finished training
        log.warning("loss curve figure not written: %s", exc)
    return {"out": str(t["out"]), "best_epoch": state.best_epoch, "best": state.best, "select": select,
            "history": state.epochs}  # fmt: skip


# ------------------------------------------------------------------------------ loading
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, or a run folder holding ``best/`` (preferred) or ``last/``."""
    p = Path(path).expanduser()
    if (p / "model.safetensors").is_file():
        return p
    for sub in ("best", "last"):
        if (p / sub / "model.safetensors").is_file():
            return p / sub
    raise AffordError(
        f"{p}: not a grounding checkpoint (no model.safetensors here or in best/, last/)"
    )


def load_trained(
    path: str | os.PathLike, device: str | torch.device = "cpu", with_clip: bool = False
):
    """(model, cfg, dino, clip|None) from a checkpoint written by :func:`train` or the importer."""
    from afford.engine import load_checkpoint
    from afford.grounding.config import GroundingConfig
    from afford.grounding.model import GroundingModel

    ckpt_dir = resolve_checkpoint(path)
    ckpt = load_checkpoint(ckpt_dir, map_location=device)
    cfg = ckpt["config"]
    if not isinstance(cfg, dict) or "model" not in cfg or "backbone" not in cfg:
        raise AffordError(f"{ckpt_dir}: config.json is not a grounding experiment config")
    cfg = resolve_config(cfg, str(ckpt_dir / "config.json"))
    cfg["backbone"] = _absolute_weights(cfg["backbone"], ckpt_dir)
    gcfg = GroundingConfig.from_dict(cfg["model"], source=str(ckpt_dir / "config.json"))
    model = GroundingModel(gcfg)
    model.load_state_dict(ckpt["state_dict"])
    device = torch.device(device)
    model.to(device).eval()
    dino = build_dino(cfg, device)
    clip = build_clip(cfg, device) if with_clip else None
    return model, cfg, dino, clip


def _absolute_weights(backbone: dict, ckpt_dir: Path) -> dict:
    """Backbone weight paths stored relative to the checkpoint folder become absolute."""
    out = copy.deepcopy(backbone)
    for spec in out.values():
        w = spec.get("weights")
        if isinstance(w, str) and w not in ("random",) and not Path(w).is_absolute():
            cand = ckpt_dir / w
            if cand.exists():
                spec["weights"] = str(cand)
    return out

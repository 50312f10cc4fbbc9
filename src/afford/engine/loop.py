"""The one training loop shared by both tasks.

``fit`` runs epochs of ``step(batch, epoch) -> losses`` calls, shows a tqdm bar with the
running losses and ETA, validates after each epoch, keeps ``<out>/last`` (resumable: model,
optimizer, scheduler, loop state and the state of any ``stateful`` object) and ``<out>/best``
(selected on the validation metric), and writes ``<out>/history.json``.  An ``after_step``
hook runs after every optimizer step (e.g. an EMA teacher update) and may end the run early;
a scheduler steps once per epoch or, with ``scheduler_interval="step"``, once per step.
Model selection only ever sees what ``validate`` returns; callers decide which split that is
(a validation split by default, never test unless the user explicitly asks).

For an exact resume, ``batches(epoch)`` must derive all its randomness from the epoch
number (e.g. a generator seeded with ``seed * 1000 + epoch``), or keep its random stream in
a ``stateful`` object (saved with every checkpoint, restored on resume).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from afford.data.io import write_json
from afford.engine.checkpoint import load_checkpoint, save_checkpoint
from afford.errors import AffordError


@dataclass
class TrainState:
    """Loop state saved with every checkpoint.

    ``history``: one row per logged step ({"epoch", "step", <loss>: float}).
    ``epochs``: one row per finished epoch (mean training losses, validation metrics).
    ``stopped_early``: ``after_step`` ended the run before ``epochs`` epochs.
    """

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[Any]],
    step: Callable[[Any, int], dict[str, torch.Tensor]],
    *,
    epochs: int,
    out_dir: str | os.PathLike,
    config: dict,
    validate: Callable[[int], dict[str, float]] | None = None,
    select: str | None = None,
    select_mode: str = "min",
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    after_step: Callable[[TrainState], bool | None] | None = None,
    stateful: dict[str, Any] | None = None,
    resume: bool = True,
    steps_per_epoch: int | None = None,
    grad_clip: float | None = None,
    log_every: int = 1,
    progress: bool = True,
    desc: str = "train",
) -> TrainState:
    """Train ``model`` for ``epochs`` epochs; return the final :class:`TrainState`.

    Args:
        batches: ``epoch -> iterable of batches`` for that epoch.
        step: ``(batch, epoch) -> dict`` of scalar losses with key ``"total"`` (back-propagated);
            other entries are logged.  Non-tensor or detached entries are logged only.
        config: JSON-able description of how to rebuild the model (stored in checkpoints).
        validate: ``epoch -> metrics`` called after each epoch (model in eval mode).
        select: key of ``validate``'s output used to pick ``<out>/best``; ``select_mode`` is
            "min" or "max".  Without ``validate``, ``best`` is the last epoch.
        scheduler: optional LR scheduler, stepped once per epoch, or after every optimizer
            step with ``scheduler_interval="step"``.
        after_step: ``state -> bool | None`` called after every optimizer step (``state.step``
            already counts it); returning True ends the run after this step: the epoch is
            closed, checkpointed and ``state.stopped_early`` set.
        stateful: ``name -> object`` with ``state_dict()`` (JSON-able) and
            ``load_state_dict()``, saved in every checkpoint and restored on resume (e.g. a
            sampler's random stream).
        resume: continue from ``<out>/last`` when it exists.
    """
    if epochs < 1:
        raise AffordError(f"epochs must be >= 1, got {epochs}")
    if select_mode not in ("min", "max"):
        raise AffordError(f"select_mode must be 'min' or 'max', got {select_mode!r}")
    if scheduler_interval not in ("epoch", "step"):
        raise AffordError(
            f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
        )
    stateful = stateful or {}
    if validate is not None and select is None:
        raise AffordError("fit: 'select' (the validation metric to select on) is required")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = TrainState()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    if resume and (out / "last").is_dir():
        ckpt = load_checkpoint(out / "last", map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        if ckpt["optimizer"] is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and "scheduler" in ckpt["extra"]:
            scheduler.load_state_dict(ckpt["extra"]["scheduler"])
        for name, obj in stateful.items():
            if name in ckpt["extra"].get("stateful", {}):
                obj.load_state_dict(ckpt["extra"]["stateful"][name])
        state = TrainState.from_dict(ckpt["extra"]["train_state"])
        state.stopped_early = False
        tqdm.write(f"resuming from {out / 'last'} after epoch {state.epoch}")

    def _save(name: str) -> None:
        extra = {"train_state": asdict(state)}
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        if stateful:
            extra["stateful"] = {name: obj.state_dict() for name, obj in stateful.items()}
        save_checkpoint(out / name, model, config, optimizer=optimizer, extra=extra)

    for epoch in range(state.epoch, epochs):
        if state.stopped_early:
            break
        model.train()
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            batches(epoch),
            total=steps_per_epoch,
            desc=f"{desc} {epoch + 1}/{epochs}",
            disable=not progress,
            dynamic_ncols=True,
            leave=False,
        )
        for batch in bar:
            losses = step(batch, epoch)
            if "total" not in losses:
                raise AffordError("fit: step() must return a dict with a 'total' loss")
            total = losses["total"]
            if not torch.isfinite(total):
                raise AffordError(
                    f"non-finite loss at epoch {epoch + 1}, step {state.step}: "
                    + ", ".join(
                        f"{k}={float(torch.as_tensor(v).detach()):.4g}" for k, v in losses.items()
                    )
                )
            optimizer.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
            state.step += 1
            row = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in losses.items()}
            for k, v in row.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if state.step % log_every == 0:
                state.history.append({"epoch": epoch + 1, "step": state.step, **row})
            bar.set_postfix(
                {k: f"{v:.3f}" for k, v in row.items() if k == "total" or len(row) <= 4}
            )
            if after_step is not None and after_step(state):
                state.stopped_early = True
                break
        bar.close()
        if count == 0:
            raise AffordError(f"epoch {epoch + 1}: the training data produced no batches")
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        summary: dict[str, Any] = {
            "epoch": epoch + 1,
            "train": {k: v / count for k, v in sums.items()},
        }
        improved = True
        if validate is not None:
            model.eval()
            with torch.no_grad():
                metrics = validate(epoch)
            summary["val"] = metrics
            if select not in metrics or not math.isfinite(float(metrics[select])):
                raise AffordError(f"validate() returned no finite {select!r}: {metrics}")
            improved = _is_better(float(metrics[select]), state.best, select_mode)
            if improved:
                state.best, state.best_epoch = float(metrics[select]), epoch + 1
        else:
            state.best_epoch = epoch + 1
        state.epoch = epoch + 1
        state.epochs.append(summary)
        msg = f"{desc} epoch {epoch + 1}/{epochs}: " + " ".join(
            f"{k}={v:.4f}" for k, v in summary["train"].items()
        )
        if "val" in summary:
            msg += " | val " + " ".join(f"{k}={float(v):.4f}" for k, v in summary["val"].items())
        if progress:
            tqdm.write(msg)
        _save("last")
        if improved:
            _save("best")
        write_json(out / "history.json", asdict(state))
    return state

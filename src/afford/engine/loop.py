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
a ``stateful`` object (saved with every checkpoint, restored on resume).  A ``batches``
that also takes ``start`` (``batches(epoch, start)``: from batch ``start`` on, e.g. a
:func:`afford.engine.data.epoch_loader`) lets a run checkpointed inside an epoch
(``engine.checkpoint_every``) continue there with exactly the remaining batches.

The engine (:class:`afford.engine.fabric.Engine`, Lightning Fabric) sets up model and
optimizer for the strategy and precision, runs each step under autocast, syncs gradients
across processes, logs scalars (losses, lr, samples/s, validation) to its logger every
``engine.log_every`` steps, and shows a tqdm bar on a terminal or one line per
``log_every`` steps otherwise.  Logged losses are means over ranks (= the global batch's
value when the task writes its losses with :mod:`afford.engine.dist`).  Only rank 0 writes.

Test hook: ``AFFORD_TEST_CRASH=step:N`` kills the process (SIGKILL) right after optimizer
step N, ``AFFORD_TEST_CRASH=write:N`` in the middle of its N-th checkpoint write
(:mod:`afford.engine.checkpoint`).
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from afford.data.io import write_json
from afford.engine import dist
from afford.engine.checkpoint import load_checkpoint, recover_checkpoint, save_checkpoint
from afford.engine.fabric import Engine, default_engine, is_tty, unwrap
from afford.errors import AffordError


@dataclass
class TrainState:
    """Loop state saved with every checkpoint.

    ``history``: one row per logged step ({"epoch", "step", <loss>: float}).
    ``epochs``: one row per finished epoch (mean training losses, validation metrics).
    ``stopped_early``: ``after_step`` (or ``max_steps``) ended the run before ``epochs``.
    ``batch``: batches of epoch ``epoch`` already done (a checkpoint inside an epoch) and
    ``partial``: their loss sums, so the resumed epoch's means are the uninterrupted ones.
    ``timing`` (not saved in checkpoints): seconds per step, data-wait share, samples/s of
    this call.
    """

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str | None = None
    batch: int = 0
    partial: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def saved(self) -> dict:
        """The checkpointed part (no wall-clock numbers: resumed runs are bit-identical)."""
        d = asdict(self)
        d.pop("timing")
        return d


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _crash_hook(kind: str, n: int) -> None:
    """``AFFORD_TEST_CRASH=<kind>:<n>``: SIGKILL this process (tests of crash safety)."""
    spec = os.environ.get("AFFORD_TEST_CRASH", "")
    if spec == f"{kind}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)


def _epoch_batches(batches: Callable, epoch: int, start: int) -> Iterable[Any]:
    if start == 0:
        return batches(epoch)
    try:
        takes_start = len(inspect.signature(batches).parameters) >= 2
    except (TypeError, ValueError):
        takes_start = False
    if takes_start:
        return batches(epoch, start)
    return itertools.islice(batches(epoch), start, None)


def _timing(step_s: list[float], wait_s: list[float], samples: int) -> dict[str, Any]:
    """Wall-clock figures of a call of :func:`fit` (``step_s``: seconds per step, data wait
    included; ``wait_s``: seconds waiting for the batch)."""
    total = sum(step_s)
    return {
        "steps": len(step_s),
        "seconds_per_step": total / max(len(step_s), 1),
        "data_wait_fraction": sum(wait_s) / total if total > 0 else 0.0,
        "samples_per_s": samples / total if total > 0 else 0.0,
        "step_s": list(step_s),
        "wait_s": list(wait_s),
    }


def _scalar(v: Any) -> float:
    return float(v.detach().float() if torch.is_tensor(v) else v)


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[..., Iterable[Any]],
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
    engine: Engine | None = None,
    samples_per_step: int | None = None,
    images: Callable[[int], dict[str, Any]] | None = None,
    selection: dict | None = None,
) -> TrainState:
    """Train ``model`` for ``epochs`` epochs; return the final :class:`TrainState`.

    Args:
        model, optimizer: plain, or already set up by ``engine.setup`` (when the step calls a
            method other than ``forward``); ``fit`` sets up plain ones.
        batches: ``epoch -> iterable of batches`` for that epoch (or ``(epoch, start)``).
        step: ``(batch, epoch) -> dict`` of scalar losses with key ``"total"`` (back-propagated);
            other entries are logged.  Non-tensor or detached entries are logged only.
        config: JSON-able description of how to rebuild the model (stored in checkpoints).
        validate: ``epoch -> metrics`` called after each epoch (model in eval mode, every rank).
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
        log_every: a ``history`` row every N steps.
        engine: the :class:`~afford.engine.fabric.Engine` (default: one process on the
            model's device, float32, no logger).  ``engine.max_steps`` ends the run after
            that many optimizer steps (the epoch in progress is closed like ``after_step``).
        samples_per_step: samples of a global batch (for the samples/s figure).
        images: ``epoch -> {name: HWC uint8 array}`` logged after each validation (rank 0).
        selection: the run's :func:`~afford.engine.selection.selection_record`, written into
            ``history.json``.
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
    eng = engine if engine is not None else default_engine(model)
    main = eng.is_main
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    if not hasattr(model, "_original_module"):
        model, optimizer = eng.setup(model, optimizer)
    raw = unwrap(model)
    state = TrainState()
    device = eng.device
    show = progress and main
    bars = show and is_tty()
    say = tqdm.write if bars else (lambda m: print(m, file=sys.stderr, flush=True))

    if main:
        recover_checkpoint(out / "last")
        recover_checkpoint(out / "best")
    eng.barrier()
    if resume and (out / "last").is_dir():
        ckpt = load_checkpoint(out / "last", map_location=device)
        raw.load_state_dict(ckpt["state_dict"])
        if ckpt["optimizer"] is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and "scheduler" in ckpt["extra"]:
            scheduler.load_state_dict(ckpt["extra"]["scheduler"])
        for name, obj in stateful.items():
            if name in ckpt["extra"].get("stateful", {}):
                obj.load_state_dict(ckpt["extra"]["stateful"][name])
        if "torch_rng" in ckpt["extra"]:
            torch.set_rng_state(torch.tensor(ckpt["extra"]["torch_rng"], dtype=torch.uint8))
        state = TrainState.from_dict(ckpt["extra"]["train_state"])
        state.stopped_early, state.stop_reason = False, None
        if show:
            where = f" (batch {state.batch})" if state.batch else ""
            say(f"resuming from {out / 'last'} after epoch {state.epoch}{where}")

    def _save(name: str) -> None:
        weights = eng.module_state(model)  # collective with a sharded strategy
        if main:
            extra: dict[str, Any] = {"train_state": state.saved(),
                                     "torch_rng": torch.get_rng_state().tolist()}  # fmt: skip
            if scheduler is not None:
                extra["scheduler"] = scheduler.state_dict()
            if stateful:
                extra["stateful"] = {n: obj.state_dict() for n, obj in stateful.items()}
            opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
            save_checkpoint(out / name, weights, config, optimizer=opt, extra=extra)
        eng.barrier()

    n_steps, n_samples = 0, 0
    step_s: list[float] = []  # this call's wall time per step and its data wait
    wait_s: list[float] = []
    max_steps = eng.max_steps
    if max_steps is not None and state.step >= max_steps:
        state.stopped_early, state.stop_reason = True, "max_steps"
    for epoch in range(state.epoch, epochs):
        if state.stopped_early:
            break
        model.train()
        start = state.batch
        sums: dict[str, float] = dict(state.partial.get("sums", {})) if start else {}
        count = int(state.partial.get("count", 0)) if start else 0
        total_steps = None if steps_per_epoch is None else max(0, steps_per_epoch - start)
        bar = tqdm(
            total=total_steps,
            desc=f"{desc} {epoch + 1}/{epochs}",
            disable=not bars,
            dynamic_ncols=True,
            leave=False,
        )
        it = iter(_epoch_batches(batches, epoch, start))
        t_last = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t_data = time.perf_counter() - t0
            with eng.autocast():
                losses = step(batch, epoch)
            if "total" not in losses:
                raise AffordError("fit: step() must return a dict with a 'total' loss")
            total = losses["total"]
            row = {k: _scalar(v) for k, v in losses.items()}
            if eng.world > 1:  # the global batch's values, identical on every rank
                row = dict(zip(row, dist.report_means(list(row.values()))))
            if not math.isfinite(row["total"]):
                raise AffordError(
                    f"non-finite loss at epoch {epoch + 1}, step {state.step}: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in row.items())
                )
            optimizer.zero_grad(set_to_none=True)
            if total.requires_grad:
                eng.backward(total, model)
                if grad_clip is not None:
                    eng.clip(model, optimizer, grad_clip)
                optimizer.step()
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
            state.step += 1
            state.batch += 1
            for k, v in row.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if state.step % log_every == 0:
                state.history.append({"epoch": epoch + 1, "step": state.step, **row})
            now = time.perf_counter()
            dt, t_last = now - t_last, now
            n_steps += 1
            step_s.append(dt)
            wait_s.append(t_data)
            n_samples += samples_per_step or 0
            if state.step % eng.log_every == 0:
                sps = (samples_per_step or 0) / dt if dt > 0 else 0.0
                lr = float(optimizer.param_groups[0]["lr"])
                eng.log({**{f"train/{k}": v for k, v in row.items()}, "lr": lr,
                         "samples_per_s": sps, "epoch": epoch + 1}, state.step)  # fmt: skip
                if show and not bars:
                    shown = " ".join(f"{k}={v:.4f}" for k, v in row.items()
                                     if k == "total" or len(row) <= 4)  # fmt: skip
                    done = f"{state.batch}/{steps_per_epoch}" if steps_per_epoch else state.batch
                    say(f"{desc} epoch {epoch + 1}/{epochs} batch {done} step {state.step}: "
                        f"{shown} lr={lr:.3g} {sps:.1f} samples/s")  # fmt: skip
            bar.update(1)
            bar.set_postfix(
                {k: f"{v:.3f}" for k, v in row.items() if k == "total" or len(row) <= 4}
            )
            _crash_hook("step", state.step)
            if after_step is not None and after_step(state):
                state.stopped_early, state.stop_reason = True, "after_step"
            if max_steps is not None and state.step >= max_steps:
                state.stopped_early, state.stop_reason = True, "max_steps"
            if state.stopped_early:
                break
            if eng.checkpoint_every and state.step % eng.checkpoint_every == 0:
                state.partial = {"sums": dict(sums), "count": count}
                _save("last")
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
            with torch.no_grad(), eng.autocast():
                metrics = validate(epoch)
            metrics = {k: float(v) for k, v in metrics.items()}
            summary["val"] = metrics
            if select not in metrics or not math.isfinite(float(metrics[select])):
                raise AffordError(f"validate() returned no finite {select!r}: {metrics}")
            improved = _is_better(float(metrics[select]), state.best, select_mode)
            if improved:
                state.best, state.best_epoch = float(metrics[select]), epoch + 1
            eng.log({f"val/{k}": v for k, v in metrics.items()}, state.step)
            if images is not None and main:
                with torch.no_grad():
                    for name, img in images(epoch).items():
                        eng.log_image(name, img, epoch + 1, out)
        else:
            state.best_epoch = epoch + 1
        state.epoch = epoch + 1
        state.batch, state.partial = 0, {}
        state.epochs.append(summary)
        msg = f"{desc} epoch {epoch + 1}/{epochs}: " + " ".join(
            f"{k}={v:.4f}" for k, v in summary["train"].items()
        )
        if "val" in summary:
            msg += " | val " + " ".join(f"{k}={float(v):.4f}" for k, v in summary["val"].items())
        if show:
            say(msg)
        _save("last")
        if improved:
            _save("best")
        if main:
            state.timing = _timing(step_s, wait_s, n_samples)
            write_json(out / "history.json", {**asdict(state), "selection": selection})
            eng.flush()
    if n_steps:
        state.timing = _timing(step_s, wait_s, n_samples)
    eng.finalize()
    return state

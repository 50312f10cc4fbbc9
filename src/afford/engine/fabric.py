"""Lightning Fabric under the one loop: devices, processes, precision, loggers.

:func:`build_engine` turns the engine keys of a :class:`~afford.config.TrainConfig`
(``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``, ``logger``...)
into an :class:`Engine` and launches the processes the standard way: with ``devices > 1``
and no launcher around, Fabric re-runs the same command once per extra local process
(``afford train ... --devices 2 --accelerator cpu`` on a laptop, gloo); under ``torchrun`` /
``fabric run`` (multi-node) it joins the processes those started.  Every rank runs the
same code; only rank 0 writes checkpoints, logs and reports (:attr:`Engine.is_main`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import torch

from afford.errors import AffordError, UsageError

#: Logger folder inside the run folder: ``<out>/logs/{csv,tensorboard}``.
LOG_DIR = "logs"


def _accelerator(accelerator: str, device: str | None) -> tuple[str, Any]:
    """(Fabric accelerator, devices override or None) from ``train.accelerator`` and the
    older ``train.device`` (``cuda:1`` -> gpu, device index 1)."""
    if accelerator != "auto" or device in (None, "", "auto"):
        return accelerator, None
    d = str(device)
    if d == "cpu":
        return "cpu", None
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {d}: CUDA is not available on this machine")
        return "gpu", ([int(d.split(":")[1])] if ":" in d else None)
    if d == "mps":
        return "mps", 1
    raise UsageError(f"--device: unknown device {d!r} (use auto, cpu, cuda, cuda:N, mps)")


class Engine:
    """A launched :class:`lightning.fabric.Fabric` plus afford's conventions."""

    def __init__(self, fabric: Any, *, log_every: int = 10, workers: int = 0,
                 max_steps: int | None = None, checkpoint_every: int | None = None,
                 seed: int = 0) -> None:  # fmt: skip
        self.fabric = fabric
        self.log_every, self.workers, self.max_steps = log_every, workers, max_steps
        self.checkpoint_every, self.seed = checkpoint_every, seed

    # -------------------------------------------------------------- who am I
    @property
    def rank(self) -> int:
        return int(self.fabric.global_rank)

    @property
    def world(self) -> int:
        return int(self.fabric.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    # -------------------------------------------------------------- training pieces
    def setup(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              forward_methods: tuple[str, ...] = ()) -> tuple[Any, Any]:  # fmt: skip
        """Model and optimizer wrapped for the strategy / precision (DDP, autocast...).
        ``forward_methods``: model methods other than ``forward`` that run a training step
        (they go through the strategy's forward, so DDP syncs their gradients)."""
        if self.world > 1:  # BatchNorm statistics over the global batch, as with one process
            from afford.engine.dist import convert_batchnorm

            convert_batchnorm(model)
        wm, wo = self.fabric.setup(model, optimizer)
        for name in forward_methods:
            wm.mark_forward_method(name)
        return wm, wo

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.fabric.autocast()

    def backward(self, loss: torch.Tensor, model: Any) -> None:
        self.fabric.backward(loss, model=model)

    def clip(self, model: Any, optimizer: Any, max_norm: float) -> None:
        self.fabric.clip_gradients(model, optimizer, max_norm=max_norm, error_if_nonfinite=False)

    def module_state(self, model: Any) -> dict[str, torch.Tensor]:
        """Full (unsharded) state dict of a set-up model, on every rank (collective)."""
        return self.fabric.strategy.get_module_state_dict(unwrap(model))

    def barrier(self) -> None:
        if self.world > 1:
            self.fabric.barrier()

    def broadcast(self, obj: Any) -> Any:
        return self.fabric.broadcast(obj, src=0) if self.world > 1 else obj

    # -------------------------------------------------------------- logging
    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.fabric.loggers:
            self.fabric.log_dict(metrics, step=step)

    def log_image(self, name: str, image: Any, step: int, out: Path | None = None) -> None:
        """An HWC uint8 image into the TensorBoard logger; CSV: a png file under
        ``<out>/logs/images`` (rank 0); no logger: nothing."""
        if not self.is_main or not self.fabric.loggers:
            return
        for lg in self.fabric.loggers:
            if type(lg).__name__ == "TensorBoardLogger":
                lg.experiment.add_image(name, image, step, dataformats="HWC")
                return
        if out is not None:
            from afford.data.io import write_image

            write_image(Path(out) / LOG_DIR / "images" / f"{name.replace('/', '_')}_{step:07d}.png",
                        image)  # fmt: skip

    def flush(self) -> None:
        for lg in self.fabric.loggers:
            with contextlib.suppress(Exception):
                lg.save()

    def finalize(self) -> None:
        for lg in self.fabric.loggers:
            with contextlib.suppress(Exception):
                lg.finalize("success")


def unwrap(model: Any) -> torch.nn.Module:
    """The user's module inside a Fabric / DDP wrapper (itself when not wrapped)."""
    inner = getattr(model, "_original_module", None)
    if inner is not None:
        model = inner
    return (
        getattr(model, "module", model)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel)
        else model
    )


def _loggers(kind: str, out: str | os.PathLike | None) -> list:
    if kind == "none" or out is None:
        return []
    root = Path(out) / LOG_DIR
    if kind == "csv":
        from lightning.fabric.loggers import CSVLogger

        return [CSVLogger(root_dir=str(root), name="csv", flush_logs_every_n_steps=50)]
    try:
        from lightning.fabric.loggers import TensorBoardLogger

        return [TensorBoardLogger(root_dir=str(root), name="tensorboard")]
    except ModuleNotFoundError as exc:  # pragma: no cover - tensorboardX is a core dependency
        raise UsageError(f"--logger tensorboard: {exc} (pip install tensorboardX)") from None


def build_engine(t: Any, out: str | os.PathLike | None = None, *, launch: bool = True) -> Engine:
    """An :class:`Engine` from the engine keys of train config ``t`` (a
    :class:`~afford.config.TrainConfig`); ``out``: the run folder for the loggers.

    ``launch``: start / join the processes now (do it before any other work: with
    ``devices > 1`` the extra processes re-run the command from its start)."""
    try:
        from lightning.fabric import Fabric
        from lightning.fabric.strategies import DDPStrategy
    except ModuleNotFoundError as exc:  # pragma: no cover - a core dependency
        raise AffordError(f"the training engine needs lightning ({exc})") from None
    accelerator, dev_override = _accelerator(t.accelerator, getattr(t, "device", None))
    devices = dev_override if dev_override is not None else t.devices
    world = t.devices * t.num_nodes
    strategy: Any = t.strategy
    if t.strategy in ("auto", "ddp") and world > 1:
        # find_unused_parameters: a loss switched off leaves its head without gradients
        strategy = DDPStrategy(find_unused_parameters=True)
    precision = str(t.precision)
    precision = "32-true" if precision == "32" else precision
    if precision == "16-mixed" and accelerator == "cpu":
        raise UsageError("--precision 16-mixed needs a GPU; on CPU use bf16-mixed or 32")
    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=t.num_nodes,
                        strategy=strategy, precision=precision,
                        loggers=_loggers(t.logger, out))  # fmt: skip
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UsageError(f"training engine: {exc}") from None
    if launch:
        fabric.launch()
    eng = Engine(fabric, log_every=t.log_every, workers=t.workers, max_steps=t.max_steps,
                 checkpoint_every=t.checkpoint_every, seed=t.seed)  # fmt: skip
    if not eng.is_main:  # one voice: warnings and progress from rank 0 only
        import logging

        logging.getLogger("afford").setLevel(logging.ERROR)
    return eng


def default_engine(model: torch.nn.Module) -> Engine:
    """One process on the device ``model`` already sits on, float32, no logger (what
    :func:`afford.engine.fit` uses when the caller gives no engine)."""
    from lightning.fabric import Fabric

    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    acc = {"cuda": "gpu", "mps": "mps"}.get(dev.type, "cpu")
    devices = [dev.index] if dev.type == "cuda" and dev.index is not None else 1
    return Engine(Fabric(accelerator=acc, devices=devices, precision="32-true", loggers=[]))


def is_tty() -> bool:
    """Whether progress goes to a terminal (bars) or a file (one line per N steps)."""
    return sys.stderr.isatty()


class Progress:
    """A progress report that suits where stderr goes: a tqdm bar on a terminal, else one
    line per ~10 % of ``total`` (``desc: k/total``), so a log file gets a few lines."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.total, self.desc, self.done = total, desc, 0
        self.enabled, self.tty = enabled, is_tty()
        self.bar = tqdm(total=total, desc=desc, leave=False, disable=not (enabled and self.tty))
        self.every = max(1, total // 10)

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        self.bar.update(n)
        if (
            self.enabled
            and not self.tty
            and (self.done // self.every > before // self.every or self.done == self.total)
        ):
            print(f"{self.desc}: {self.done}/{self.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()

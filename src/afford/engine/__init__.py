"""The one training loop, checkpoints (safetensors + JSON), seeding and device choice."""

from afford.engine.checkpoint import load_checkpoint, save_checkpoint
from afford.engine.loop import TrainState, fit
from afford.engine.runtime import resolve_device, seed_everything

__all__ = [
    "TrainState",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]

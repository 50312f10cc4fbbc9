"""The small trained demo models shipped with the package (toy models; docs/api.md).

``demo-grounding/`` (selective contrastive grounding) and ``demo-correspondence/`` (the full
functional correspondence model), each an afford checkpoint folder (``model.safetensors`` +
``config.json``, a few hundred kB) trained by ``scripts/make_demo_models.py`` with the recipe
of ``afford demo`` on the synthetic world, on the tiny backbones (DINO / DINOv2 ``tiny-synth``
from ``afford/assets``, CLIP ``tiny``). They let ``afford ground``, ``afford correspond`` and
``afford.Grounder.from_checkpoint("demo")`` run right after ``pip install``; they are NOT
trained on real data and say little about real photos.
"""

from __future__ import annotations

from pathlib import Path

from afford.errors import DataError

ROOT = Path(__file__).resolve().parent
TASKS = ("grounding", "correspondence")
#: Small renders of the synthetic world (an object on a plain background, 128 x 128), view 2
#: of the correspondence dataset's assets mug_000, kettle_000, jug_000 (``samples/``).
SAMPLE_IMAGES = ("mug.png", "kettle.png", "jug.png")


def demo_checkpoint(task: str) -> Path:
    """The shipped demo checkpoint folder of ``task`` ("grounding" | "correspondence")."""
    if task not in TASKS:
        raise DataError(f"no demo model for task {task!r}; choose one of {', '.join(TASKS)}")
    path = ROOT / f"demo-{task}"
    if not (path / "model.safetensors").is_file():
        raise DataError(
            f"the shipped demo {task} model {path} is missing (a source checkout without it?); "
            "regenerate it with `python scripts/make_demo_models.py`"
        )
    return path


def sample_image(name: str = "mug.png") -> Path:
    """Path of a small image shipped with the demo models (``SAMPLE_IMAGES``)."""
    path = ROOT / "samples" / name
    if not path.is_file():
        raise DataError(f"shipped sample image {path} is missing; choose one of {SAMPLE_IMAGES}")
    return path

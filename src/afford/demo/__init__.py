"""``afford demo``: both methods end to end on the synthetic world, with a report.

- :mod:`afford.demo.recipes`: what is trained (profiles ``quick`` / ``full``, the runs, their
  raw configs, the papers' reference numbers); plain data.
- :mod:`afford.demo.stages`: :class:`~afford.demo.stages.Demo`, the stages data, train,
  evaluate, photo and report, and the few functions that call the task modules.
- :mod:`afford.demo.report`: the headline (:func:`~afford.demo.report.headline`), checks,
  Markdown and HTML, and the atomic write of the report set.
- :mod:`afford.demo.cli`: ``register(groups)`` for the ``afford`` command.

This package namespace holds only the light public names: the ``afford`` command imports it
to build its parser, and ``stages`` / ``report`` import torch, the tasks and numpy (import
``Demo`` from :mod:`afford.demo.stages`).
"""

from afford.demo.cli import DEFAULT_OUT, register
from afford.demo.recipes import (
    CORR_COLUMNS,
    CORR_RUNS,
    GROUNDING_RUNS,
    PAPER_CORR,
    PAPER_GROUNDING,
    PROFILES,
)

__all__ = [
    "CORR_COLUMNS",
    "CORR_RUNS",
    "DEFAULT_OUT",
    "GROUNDING_RUNS",
    "PAPER_CORR",
    "PAPER_GROUNDING",
    "PROFILES",
    "register",
]

"""Honest model selection: which checkpoint a run hands on, and why.

Every training run records a ``selection`` dict (in ``history.json``, the train result and
the demo's ``results.json`` / report):

    {"checkpoint": "best" | "last", "metric": "val_kld" | ... | None, "split": "val" | "test"
     | None, "n": validation samples, "unit": "images" | "assets", "reason": "...",
     "warning": "..." | None}

``best`` is the epoch with the best validation metric; without validation it is the last
epoch, and a validation split smaller than the minimum below picks an epoch on noise.  Both
cases carry a warning (also logged once).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Fewer validation images than this: a grounding checkpoint choice on noise (a KLD mean over
#: under 10 images moves by more than the epoch-to-epoch differences of a short run).
MIN_VAL_IMAGES = 10
#: Fewer held-out assets than this: correspondence validation sees one or two objects only.
MIN_VAL_ASSETS = 2


def selection_record(
    metric: str | None, split: str | None, n: int, unit: str, why_none: str = ""
) -> dict:
    """The ``selection`` dict of a run (see the module docstring); warns when it is weak."""
    minimum = MIN_VAL_IMAGES if unit == "images" else MIN_VAL_ASSETS
    if metric is None:
        rec = {"checkpoint": "last", "metric": None, "split": None, "n": 0, "unit": unit,
               "reason": f"no validation: {why_none or 'none configured'}; best = last epoch",
               "warning": f"no validation split ({why_none or 'none configured'}): the "
               "checkpoint is the last epoch, not a selected one"}  # fmt: skip
    else:
        warning = None
        if n < minimum:
            warning = (f"validation has only {n} {unit} (< {minimum}): the selected epoch "
                       f"follows noise in {metric}; use more validation data")  # fmt: skip
        rec = {"checkpoint": "best", "metric": metric, "split": split, "n": int(n),
               "unit": unit, "reason": f"lowest {metric} on the {split} split ({n} {unit})",
               "warning": warning}  # fmt: skip
    if rec["warning"]:
        log.warning("model selection: %s", rec["warning"])
    return rec

"""afford: what objects are *for*.

Two ICCV 2025 methods on shared frozen encoders:

* ``afford.grounding`` -- Selective Contrastive Learning for weakly supervised affordance
  grounding (action -> heatmap of the part that affords it).
* ``afford.correspondence`` -- weakly supervised dense functional correspondence
  (two images + a function -> dense matches between the parts that do that job).

``afford.synth`` is a procedural, fully offline world with exact ground truth for both.
"""

from afford.errors import AffordError

__version__ = "0.1.0"
__all__ = ["AffordError", "__version__"]

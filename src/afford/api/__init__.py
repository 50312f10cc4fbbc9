"""The Python API: the layer between the apps (CLI, demo, web) and the tasks.

    import afford
    g = afford.Grounder.from_checkpoint("demo")
    res = g.predict("photo.jpg", "hold")             # .heatmap, .peak, .overlay(), .to_json()
    c = afford.Corresponder.from_checkpoint("demo")
    m = c.match(img_a, img_b, "pour-with", points=[[40, 52]])
    t = afford.transfer(img_a, [img_b], "pour-with", corresponder=c, heatmap=res)

Images: paths, PIL images, numpy arrays or torch tensors (:mod:`afford.api.images`).
``"demo"`` names the small toy models shipped in :mod:`afford.models`. docs/api.md.
"""

from afford.api.correspondence import Corresponder, Matches
from afford.api.grounding import Grounder, GroundingResult
from afford.api.images import to_rgb
from afford.api.transfer import TransferResult, transfer

__all__ = [
    "Corresponder",
    "Grounder",
    "GroundingResult",
    "Matches",
    "TransferResult",
    "to_rgb",
    "transfer",
]

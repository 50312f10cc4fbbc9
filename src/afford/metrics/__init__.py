"""Metrics of both papers: saliency maps (KLD/SIM/NSS) and functional correspondence.

- :mod:`afford.metrics.saliency`: :func:`evaluate_map`, :func:`evaluate_maps_torch`,
  :func:`aggregate` (AGD20K protocol, REFERENCE_NOTES B).
- :mod:`afford.metrics.correspondence`: :func:`label_transfer`, :func:`discovery`,
  :func:`average_results` (REFERENCE_NOTES C).
"""

from afford.metrics.correspondence import average_results, discovery, label_transfer
from afford.metrics.saliency import aggregate, evaluate_map, evaluate_maps_torch

__all__ = [
    "aggregate",
    "average_results",
    "discovery",
    "evaluate_map",
    "evaluate_maps_torch",
    "label_transfer",
]

"""Shared multi-view geometry (below the tasks and the worlds).

- :mod:`afford.geometry.camera`: the pinhole ``Camera`` (OpenCV convention), camera rigs,
  projection and back-projection of depth.
- :mod:`afford.geometry.visible`: visible surface points (pixel -> dense-cloud matching) and
  multi-view pixel correspondences.
- :mod:`afford.geometry.curation`: evaluation-GT curation by 3-D functional alignment (view
  choice, farthest point sampling, Hungarian matching).
- :mod:`afford.geometry.pseudolabel`: functional-part pseudo-labels from noisy 2-D boxes
  aggregated as 3-D votes.

Only numpy / scipy / OpenCV and ``afford.errors``: no mesh library, no task, no world.
"""

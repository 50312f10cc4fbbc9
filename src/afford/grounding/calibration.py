"""CAM calibration with the object affinity map (Sec. 3.5; REFERENCE_NOTES A).

* "binary" (paper): ``minmax(CAM) * [minmax(S_ego) > gamma]`` -- the binarisation of Eq. 7's
  object level.
* "soft" (official test output): ``CAM * minmax(S_ego)`` on the raw CAM in official mode.
* "none": the CAM.
"""

from __future__ import annotations

from torch import Tensor

from afford.errors import AffordError
from afford.grounding.parts import minmax


def calibrate(
    cam: Tensor,
    s_ego: Tensor,
    how: str = "binary",
    gamma: float = 0.6,
    normalize_cam: bool = True,
) -> Tensor:
    """Calibrated localisation map.

    Args:
        cam: (B,h,w) CAM of the queried class.
        s_ego: (B,h,w) raw egocentric object affinity (CLIP action cosine).
        how: "binary" | "soft" | "none".
        gamma: binarisation threshold on min-max(S_ego) ("binary").
        normalize_cam: min-max normalise the CAM first (paper mode: so masked pixels (0)
            never rank above negative CAM values); official mode uses the raw CAM.

    Returns:
        (B,h,w) map.
    """
    if cam.shape != s_ego.shape:
        raise AffordError(
            f"calibrate: cam {tuple(cam.shape)} and ego affinity {tuple(s_ego.shape)} differ;"
            " the affinity map must be at the CAM's patch grid"
        )
    c = minmax(cam) if normalize_cam else cam
    if how == "none":
        return c
    a = minmax(s_ego)
    if how == "binary":
        return c * (a > gamma).to(c.dtype)
    if how == "soft":
        return c * a
    raise AffordError(f"calibration must be 'binary', 'soft' or 'none', got {how!r}")

"""crop_intrinsics: projecting with the crop's intrinsics is view_to_crop of the projection."""

import numpy as np

from afford.data.crops import view_to_crop
from afford.geometry.camera import crop_intrinsics, project


def test_crop_intrinsics_match_view_to_crop():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 160], [0, 310.0, 120], [0, 0, 1]])
    R, t = np.eye(3), np.array([0.0, 0.0, 3.0])
    pts = rng.uniform(-0.5, 0.5, (50, 3))
    box = np.array([40, 70, 150])
    rc, _ = project(pts, K, R, t)
    rc_crop, _ = project(pts, crop_intrinsics(K, box, 224), R, t)
    np.testing.assert_allclose(rc_crop, view_to_crop(rc, box, 224), atol=1e-9)
    assert not np.allclose(rc_crop, rc)

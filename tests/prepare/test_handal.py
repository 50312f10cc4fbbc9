import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from afford.data.io import write_image
from afford.errors import AffordError
from afford.geometry.curation import curate_pair
from afford.prepare.handal import HandalDataset

sys.path.insert(0, str(Path(__file__).parent))

from tiny_bop import K, cast, rot  # noqa: E402


@pytest.fixture(scope="module")
def bop(tmp_path_factory):
    root = tmp_path_factory.mktemp("bop")
    mesh = trimesh.creation.box(extents=(100, 60, 40))
    mesh = mesh.subdivide().subdivide()
    mesh.apply_translation([10, 5, 0])  # mm, off-centre on purpose
    (root / "models").mkdir()
    mesh.export(root / "models/obj_000001.ply")
    scene = root / "test/000001"
    gt, cams = {}, {}
    for im, (ay, ax) in enumerate([(0.5, 0.3), (-0.4, 0.5)]):
        R, t = rot(ay, ax), np.array([0.0, 0.0, 420.0])
        pts = cast(mesh, R, t)
        vis = np.isfinite(pts).all(-1)
        write_image(
            scene / f"rgb/{im:06d}.png", (vis[..., None] * 200).astype(np.uint8).repeat(3, 2)
        )
        write_image(scene / f"mask/{im:06d}_000000.png", vis.astype(np.uint8) * 255)
        write_image(scene / f"mask_visib/{im:06d}_000000.png", vis.astype(np.uint8) * 255)
        part = vis & (np.nan_to_num(pts[..., 0], nan=-1e9) > 30)
        write_image(scene / f"mask_parts/{im:06d}_000000.png", part.astype(np.uint8) * 255)
        gt[str(im)] = [{"cam_R_m2c": R.ravel().tolist(), "cam_t_m2c": t.tolist(), "obj_id": 1}]
        cams[str(im)] = {"cam_K": K.ravel().tolist(), "depth_scale": 1.0}
    (scene / "scene_gt.json").write_text(json.dumps(gt))
    (scene / "scene_camera.json").write_text(json.dumps(cams))
    return root


def test_views_and_normalisation(bop):
    ds = HandalDataset(bop)
    assert ds.object_ids() == [1]
    mesh, c, s = ds.model(1)
    assert np.abs(mesh.vertices).max() == pytest.approx(0.5)
    assert c == pytest.approx([10, 5, 0])
    views = ds.views(1)
    assert len(views) == 2 and views[0].part_mask is not None
    # surface points project back onto their own pixels with the normalised pose
    pts = ds.surface_points(views[1])
    rr, cc = np.nonzero(np.isfinite(pts).all(-1))
    x = pts[rr, cc].astype(np.float64)
    cam = x @ views[1].R.T + views[1].t
    uv = cam @ K.T
    assert np.allclose(uv[:, 0] / uv[:, 2], cc, atol=1e-3)
    assert np.allclose(uv[:, 1] / uv[:, 2], rr, atol=1e-3)


def test_annotate_inputs_part_votes_and_self_pair(bop):
    ds = HandalDataset(bop)
    _, c, s = ds.model(1)
    inp = ds.annotate_inputs(1, cloud_points=4000)
    assert inp["points"].shape == (2, 224, 224, 3) and inp["cloud"].shape == (4000, 3)
    seen = inp["seen"] > 0
    truth = (inp["cloud"][:, 0] / s + c[0]) > 30
    assert seen.sum() > 500
    assert (inp["part"][seen] == truth[seen]).mean() > 0.95
    # the object with itself (identity frames): GT pairs are the same surface points
    frame = np.eye(4)
    pair = curate_pair(
        inp["points"][[0]],
        inp["cloud"],
        inp["part"],
        frame,
        inp["points"][[1]],
        inp["cloud"],
        inp["part"],
        frame,
        max_points=800,
    )
    assert pair is not None and len(pair.points1) > 20
    d = np.linalg.norm(pair.xyz1 - pair.xyz2, axis=1)
    shuffled = np.linalg.norm(pair.xyz1 - pair.xyz2[::-1], axis=1)
    assert np.median(d) < 0.05 and d.mean() < 0.3 * shuffled.mean()


def test_missing_layout_errors(tmp_path, bop):
    with pytest.raises(AffordError, match="models"):
        HandalDataset(tmp_path)
    with pytest.raises(AffordError, match="split folder"):
        HandalDataset(bop, split="train")

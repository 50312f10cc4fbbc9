"""afford prepare eval-pairs (aligned assets -> eval/*.npz + eval_pairs.json) and afford prepare
handal (BOP -> the afford-correspondence format), checked against the synthetic writer's own
curation and evaluated by the unchanged `afford eval correspondence`."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from afford.cli import main
from afford.data.correspondence import CorrespondenceDataset
from afford.data.io import read_json, read_npz
from afford.errors import DataError, UsageError
from afford.geometry.camera import backproject
from afford.prepare.evalpairs import (
    PartBox,
    points_in_part_boxes,
    read_alignments,
    write_eval_pairs,
)
from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

sys.path.insert(0, str(Path(__file__).parent))

from tiny_bop import RZ, write_tiny_bop  # noqa: E402

pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    cfg = CorrSynthConfig(size="tiny", views=4, categories=["kettle", "jug", "mug"])
    write_correspondence_dataset(root, cfg, progress=False, contact_sheet=False)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _write(path: Path, pairs: list[dict]) -> Path:
    path.write_text(
        json.dumps({"format": "afford-alignments", "format_version": 1, "pairs": pairs})
    )
    return path


def _alignment(meta: dict, e: dict) -> np.ndarray:
    fs = np.asarray(meta["assets"][e["source"]["asset"]]["frames"][e["function"]])
    ft = np.asarray(meta["assets"][e["target"]["asset"]]["frames"][e["function"]])
    return fs @ np.linalg.inv(ft)


def _part_box(root: Path, meta: dict, aid: str, function: str, margin=0.02) -> dict:
    rec = meta["assets"][aid]
    geom = read_npz(root / rec["geometry"])
    idx = [rec["parts"].index(n) for n in rec["function_parts"][function]]
    pts = geom["surface_points"][np.isin(geom["surface_part"], idx)]
    lo, hi = pts.min(0) - margin, pts.max(0) + margin
    return {"center": ((lo + hi) / 2).tolist(), "size": (hi - lo).tolist()}


def test_labels_path_reproduces_the_synthetic_writers_pairs(synth, tmp_path):
    root = _copy(synth, tmp_path / "ds")
    meta = read_json(root / "dataset.json")
    ref = read_json(synth / "eval_pairs.json")["pairs"]
    assert ref
    pairs = []  # the writer's source rank is not stored: give its source view
    for e in ref:
        pairs.append(
            {
                "id": e["id"],
                "function": e["function"],
                "source": e["source"]["asset"],
                "target": e["target"]["asset"],
                "T": _alignment(meta, e).tolist(),
                "source_view": e["source"]["view"],
            }
        )
    res = write_eval_pairs(root, _write(tmp_path / "al.json", pairs), max_points=200,
                           overwrite=True, progress=False)  # fmt: skip
    assert res["failed"] == [] and len(res["pairs"]) == len(ref)
    for got, e in zip(res["pairs"], ref):
        assert got["target"] == e["target"] and got["source"] == e["source"]
        assert got["n_points"] == e["n_points"] and got["split"] == e["split"]
        a, b = read_npz(root / got["file"]), read_npz(synth / e["file"])
        assert set(a) == set(b)
        for key in a:
            assert np.array_equal(a[key], b[key]), (e["id"], key)


def test_box_path_curates_aligned_part_points_and_evaluates(synth, tmp_path, capsys):
    root = _copy(synth, tmp_path / "ds")
    (root / "eval").rename(tmp_path / "old_eval")
    (root / "eval_pairs.json").unlink()
    meta = read_json(root / "dataset.json")
    ref = read_json(synth / "eval_pairs.json")["pairs"]
    pairs = []
    for e in ref:
        s, t, f = e["source"]["asset"], e["target"]["asset"], e["function"]
        pairs.append(
            {
                "function": f,
                "source": s,
                "target": t,
                "T": _alignment(meta, e).tolist(),
                "source_box": _part_box(root, meta, s, f),
                "target_box": [_part_box(root, meta, t, f)],  # a list of boxes works too
            }
        )
    al = _write(tmp_path / "al.json", pairs)
    rc = main(["prepare", "eval-pairs", str(root), "--alignments", str(al),
               "--max-points", "300"])  # fmt: skip
    assert rc == 0
    assert "evaluation pairs" in capsys.readouterr().out
    ds = CorrespondenceDataset(root)
    got = ds.eval_pairs()
    assert len(got) >= len(ref) - 1 and {p.split for p in got} <= {"val", "test"}
    assert got[0].id.startswith(got[0].split + "_")
    for p in got:
        arr = read_npz(p.file)
        n = len(arr["points1"])
        assert 1 <= n <= 300 and arr["mask1"].shape == (224, 224)
        # GT pairs are close in 3-D after alignment (far closer than a shuffled pairing)
        d = np.linalg.norm(arr["xyz1"] - arr["xyz2"], axis=1)
        shuffled = np.linalg.norm(arr["xyz1"] - np.roll(arr["xyz2"], n // 2, 0), axis=1)
        assert np.median(d) < np.median(shuffled)
        # the box part mask covers the rendered GT part of that view
        fi = ds.asset(p.source_asset).functions.index(p.function)
        gt = ds.crop_view(p.source_asset, p.source_view)["gt_mask"][fi]
        inter = (arr["part_mask1"] & gt).sum()
        assert inter / gt.sum() > 0.9
        assert arr["mask1"][arr["points1"][:, 0], arr["points1"][:, 1]].all()
        assert arr["part_mask2"][arr["points2"][:, 0], arr["points2"][:, 1]].all()
    manifest = read_json(root / "dataset.json")
    assert sum(manifest["counts"]["eval_pairs"].values()) == len(got)
    # the unchanged evaluator reads the output
    out = tmp_path / "ev"
    rc = main(["eval", "correspondence", "--baseline", "gt-part+chance", "--pairs", str(root),
               "--split", got[0].split, "--out", str(out), "--discovery-stride", "8"])  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    n_split = sum(p.split == got[0].split for p in got)
    assert res["gt-part+chance"]["overall"]["n"] == 2 * n_split
    # existing pairs are not replaced without --overwrite
    assert main(["prepare", "eval-pairs", str(root), "--alignments", str(al)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, match",
    [
        ({"T": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, r"pairs\[0\].T: expected a finite \(4, 4\)"),
        ({"T": (np.diag([1, 2, 1, 1])).tolist()}, r"pairs\[0\].T: not a rotation"),
        ({"source_box": {"center": [0, 0, 0]}}, r"pairs\[0\].source_box: missing 'size'"),
        ({"source_box": {"center": [0, 0], "size": [1, 1, 1]}}, r"source_box.center"),
        ({"source_box": {"center": [0, 0, 0], "size": [1, 0, 1]}}, r"size: sides must be > 0"),
        ({"rank": -1}, r"pairs\[0\].rank"),
        ({"colour": "red"}, r"pairs\[0\]: unknown keys \['colour'\]"),
        ({"function": ""}, r"pairs\[0\].function"),
    ],
)
def test_malformed_alignments_name_file_and_key(tmp_path, change, match):
    pair = {"function": "pour-with", "source": "a", "target": "b", "T": np.eye(4).tolist()}
    pair.update(change)
    path = _write(tmp_path / "al.json", [pair])
    with pytest.raises(DataError, match=match) as err:
        read_alignments(path)
    assert str(path) in str(err.value)
    path.write_text(json.dumps({"format": "x", "format_version": 1, "pairs": []}))
    with pytest.raises(DataError, match="format: expected 'afford-alignments'"):
        read_alignments(path)
    with pytest.raises(UsageError, match="not found"):
        read_alignments(tmp_path / "none.json")


def test_pairs_must_use_known_eval_assets(synth, tmp_path, capsys):
    root = _copy(synth, tmp_path / "ds")
    meta = read_json(root / "dataset.json")
    train = meta["splits"]["train"][0]
    test = meta["splits"]["test"][0]
    fn = meta["assets"][test]["functions"][0]
    for source, match in ((train, "is in split 'train'"), ("nope_000", "not in")):
        al = _write(tmp_path / "al.json", [{"function": fn, "source": source, "target": test,
                                           "T": np.eye(4).tolist()}])  # fmt: skip
        rc = main(["prepare", "eval-pairs", str(root), "--alignments", str(al), "--overwrite"])
        assert rc == 1
        assert match in capsys.readouterr().err


def test_points_in_rotated_boxes():
    c = np.array([0.1, 0.0, 0.0])
    a = np.pi / 4
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    box = PartBox(c, np.array([0.4, 0.02, 0.1]), rot)  # a thin slab along the diagonal
    pts = np.array([[0.1, 0, 0], [0.2, 0.1, 0], [0.2, -0.1, 0], [np.nan, 0, 0]])
    assert points_in_part_boxes(pts, (box,)).tolist() == [True, True, False, False]
    axis = PartBox(c, np.array([0.4, 0.02, 0.1]), np.eye(3))
    assert points_in_part_boxes(pts, (box, axis)).tolist() == [True, True, False, False]
    assert points_in_part_boxes(pts[:, None], (axis,)).shape == (4, 1)


# ---------------------------------------------------------------------------------------------
# HANDAL


@pytest.fixture(scope="module")
def handal(tmp_path_factory):
    bop = write_tiny_bop(tmp_path_factory.mktemp("bop") / "handal_dataset_boxes")
    out = tmp_path_factory.mktemp("handal") / "ds"
    rc = main(["prepare", "handal", str(bop), "--out", str(out), "--cloud-points", "6000",
               "--labeler", "simulated"])  # fmt: skip
    assert rc == 0
    return bop, out


def test_handal_converts_to_the_correspondence_format(handal):
    _, out = handal
    ds = CorrespondenceDataset(out)
    assert sorted(ds.assets) == ["boxes_000001", "boxes_000002"]
    assert ds.splits["test"] == ["boxes_000001", "boxes_000002"]
    for aid in ds.assets:
        info = ds.asset(aid)
        assert info.n_views == 3 and info.image_size == (224, 224)
        assert info.parts == ("body", "handle") and info.function_parts == {"grasp": ["handle"]}
        v = ds.views(aid)
        geom = ds.geometry(aid)
        crop = ds.crop_view(aid, 0)
        assert crop["mask"].sum() > 2000 and crop["image"].shape == (224, 224, 3)
        # depth back-projects onto the object surface (the cube of the normalised frame)
        pts = backproject(geom["depth"], v["K"], v["R"], v["t"])
        on = v["mask"]
        assert np.isfinite(pts[on]).all() and np.abs(pts[on]).max() <= 0.5 + 1e-3
        # the GT part (x > 30 mm of object 1) is a proper subset of the object
        gt = v["gt_mask"][:, 0]
        assert 0.05 < gt.sum() / on.sum() < 0.6
        assert (geom["surface_part"] >= 0).mean() > 0.3
        # the simulated labeller's pseudo-labels agree with the GT part where valid
        valid = v["pseudo_valid"][:, 0]
        assert valid.any()
        for k in np.flatnonzero(valid):
            pm = v["pseudo_mask"][k, 0]
            assert (pm & gt[k]).sum() / max((pm | gt[k]).sum(), 1) > 0.4
        mv = ds.multiview(aid)
        assert len(mv["src"]) > 100


def test_handal_eval_pairs_from_part_labels_and_known_alignment(handal, tmp_path, capsys):
    _, ds_root = handal
    root = _copy(ds_root, tmp_path / "ds")
    T = np.eye(4)
    T[:3, :3] = RZ.T  # object 2 = RZ object 1 (normalised frames too): target 2 -> source 1
    al = _write(tmp_path / "al.json", [
        {"id": "h0", "function": "grasp", "source": "boxes_000001", "target": "boxes_000002",
         "T": T.tolist()},
        {"id": "h1", "function": "grasp", "source": "boxes_000002", "target": "boxes_000001",
         "T": T.T.tolist(), "rank": 1},
    ])  # fmt: skip
    rc = main(["prepare", "eval-pairs", str(root), "--alignments", str(al), "--max-points", "400"])
    assert rc == 0, capsys.readouterr().err
    ds = CorrespondenceDataset(root)
    pairs = ds.eval_pairs("test")
    assert [p.id for p in pairs] == ["h0", "h1"]
    for p in pairs:
        arr = read_npz(p.file)
        assert not p.cross_category and len(arr["points1"]) > 50
        # same physical object: the aligned GT points coincide up to the cloud spacing
        d = np.linalg.norm(arr["xyz1"] - arr["xyz2"], axis=1)
        assert np.median(d) < 0.03
    out = tmp_path / "ev"
    rc = main(["eval", "correspondence", "--baseline", "gt-part+chance", "--pairs", str(root),
               "--out", str(out), "--discovery-stride", "8"])  # fmt: skip
    assert rc == 0
    assert json.loads((out / "results.json").read_text())["gt-part+chance"]["overall"]["n"] == 4


def test_handal_cli_errors(handal, tmp_path, capsys):
    bop, out = handal
    assert main(["prepare", "handal", str(bop), "--out", str(out)]) == 2  # holds a dataset
    assert "--overwrite" in capsys.readouterr().err
    rc = main(["prepare", "handal", str(bop), "--out", str(tmp_path / "x"), "--objects", "7"])
    assert rc == 2 and "no models [7]" in capsys.readouterr().err
    rc = main(["prepare", "handal", str(tmp_path), "--out", str(tmp_path / "y")])
    assert rc != 0 and "not a BOP tree" in capsys.readouterr().err
    rc = main(["prepare", "handal", str(bop), "--out", str(tmp_path / "z"), "--labeler", "x:y"])
    assert rc == 2 and "--labeler" in capsys.readouterr().err


def test_alignments_in_mesh_coordinates_use_the_recorded_normalisation(handal, tmp_path):
    _, ds_root = handal
    root = _copy(ds_root, tmp_path / "ds")
    T = np.eye(4)
    T[:3, :3] = RZ.T  # mesh 2 = RZ mesh 1 (mm): target 2 -> source 1
    lo, hi = np.array([30.0, -26, -21]), np.array([61.0, 36, 21])  # x > 30 mm of object 1
    box1 = {"center": ((lo + hi) / 2).tolist(), "size": (hi - lo).tolist()}
    box2 = {
        "center": (RZ @ ((lo + hi) / 2)).tolist(),
        "size": (hi - lo).tolist(),
        "rotation": RZ.tolist(),
    }  # the same box carried onto object 2: an oriented box
    al = tmp_path / "al.json"
    al.write_text(json.dumps({"format": "afford-alignments", "format_version": 1, "frame": "mesh",
                              "pairs": [{"id": "m0", "function": "grasp",
                                         "source": "boxes_000001", "target": "boxes_000002",
                                         "T": T.tolist(), "source_box": box1,
                                         "target_box": box2}]}))  # fmt: skip
    res = write_eval_pairs(root, al, max_points=400, progress=False)
    arr = read_npz(root / res["pairs"][0]["file"])
    d = np.linalg.norm(arr["xyz1"] - arr["xyz2"], axis=1)
    assert len(d) > 50 and np.median(d) < 0.03
    # the box part is the labelled part (x > 30 mm) of that view
    ds = CorrespondenceDataset(root)
    gt = ds.crop_view("boxes_000001", res["pairs"][0]["source"]["view"])["gt_mask"][0]
    pm = arr["part_mask1"]
    assert (pm & gt).sum() / (pm | gt).sum() > 0.85
    # without a normalisation record the mesh frame is refused, naming the asset
    meta = read_json(root / "dataset.json")
    del meta["assets"]["boxes_000002"]["normalization"]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="assets.boxes_000002.normalization: missing"):
        write_eval_pairs(root, al, overwrite=True, progress=False)

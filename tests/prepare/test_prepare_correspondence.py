"""End to end: real-format meshes -> afford prepare correspondence -> training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from afford.data.correspondence import CorrespondenceDataset
from afford.data.io import read_json, read_npz
from afford.errors import DataError, UsageError
from afford.geometry.camera import backproject, project
from afford.geometry.visible import match_to_cloud
from afford.prepare.assets import discover_assets, load_asset, match_parts, sample_texture
from afford.prepare.correspondence import PrepareConfig, prepare_correspondence
from afford.taxonomy import Taxonomy

sys.path.insert(0, str(Path(__file__).parent))
from assets_fixtures import BLUE, RED, write_assets, write_official_taxonomy  # noqa: E402

CFG = dict(views=4, image_size=96, cloud_points=4000, corr_per_pair=64)


class PartBoxes:
    """A labeller that boxes the queried parts' pixels (whole object without part ids)."""

    name = "test-boxes"
    samples = 4

    def for_asset(self, asset_id, category, part_id=None, parts=None):
        def label(image, query, view):
            obj = (image < 250).any(axis=-1)
            if part_id is not None:
                want = [parts.index(p) for p in query.part.split(" / ") if p in parts]
                sel = np.isin(part_id[view], want)
                obj = sel if sel.any() else obj
            rows, cols = np.nonzero(obj)
            if rows.size == 0:
                return np.full((4, 4), np.nan)
            box = [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
            return np.tile(box, (4, 1))

        return label


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("prep")
    expected = write_assets(base / "assets")
    tax = write_official_taxonomy(base / "taxonomy")
    return base, expected, tax


def _prepare(world, out, workers=1, **kw):
    base, _, tax = world
    return prepare_correspondence(
        base / "assets",
        tax,
        "simulated",
        out,
        PrepareConfig(**CFG),
        workers=workers,
        manifest=base / "assets" / "manifest.csv",
        progress=False,
        labelers=PartBoxes(),
        **kw,
    )


_WORLD: list = []


def _prepare_into(out):
    s = _prepare(_WORLD[0], out)
    return s["prepared"], s["skipped"]


@pytest.fixture(scope="module")
def prepared(world):
    _WORLD[:] = [world]
    out = world[0] / "out1"
    return out, _prepare(world, out)


# ----------------------------------------------------------------------------------- assets


def test_glb_scene_graph_flattened_and_normalised(world):
    base, expected, _ = world
    a = load_asset(base / "assets" / "a1b2c3---mug.glb", "a1b2c3", "mug")
    world_v = np.concatenate([expected["a1b2c3"]["vertices"][k] for k in ("body", "handle")])
    lo, hi = world_v.min(0), world_v.max(0)
    centre = (lo + hi) / 2
    scale = 0.5 / np.abs(world_v - centre).max()
    assert np.allclose(a.centre, centre, atol=1e-5) and np.isclose(a.scale, scale, rtol=1e-5)
    assert np.isclose(np.abs(a.mesh.vertices).max(), 0.5)
    # every expected (transformed) vertex is a vertex of the flattened mesh
    want = (world_v - centre) * scale
    d = np.linalg.norm(want[:, None] - np.asarray(a.mesh.vertices)[None], axis=-1).min(1)
    assert d.max() < 1e-5
    assert any("body" in g for g in a.groups) and any("mug_handle" in g for g in a.groups)
    assert a.material.textured
    names = {"body": 0, "handle": 1, "grip": 1}
    part = match_parts(a.groups, names)[a.face_group]
    assert set(np.unique(part)) == {0, 1}


def test_texture_and_colours_kept(world):
    base = world[0]
    img = np.zeros((2, 2, 3), np.float32)
    img[:, 0] = 1.0
    # texel centres: u = 0.25 (left, red channel 1), u = 0.75 (right, 0)
    assert np.allclose(sample_texture(img, np.array([[0.25, 0.5], [0.75, 0.5]]))[:, 0], [1, 0])
    a = load_asset(base / "assets" / "a1b2c3---mug.glb")
    faces = np.arange(a.n_faces)
    bary = np.full((a.n_faces, 3), 1 / 3)
    alb = a.material(faces, None, bary)
    body = np.array(["body" in a.groups[g] for g in a.face_group])
    red = np.abs(alb[body] - np.array(RED) / 255).max(1) < 0.05
    blue = np.abs(alb[body] - np.array(BLUE) / 255).max(1) < 0.05
    assert red.sum() > 4 and blue.sum() > 4 and (red | blue).mean() > 0.6
    assert np.allclose(alb[~body], np.array([30, 200, 30]) / 255, atol=0.01)
    crate = load_asset(base / "assets" / "crate.obj")
    assert np.allclose(
        crate.material(np.arange(12), None, np.full((12, 3), 1 / 3)), [0.1, 0.8, 0.1], atol=0.005
    )
    ball = load_asset(base / "assets" / "scans" / "ball.ply")
    col = ball.material(np.arange(ball.n_faces), None, np.full((ball.n_faces, 3), 1 / 3))
    top = ball.mesh.triangles_center[:, 2] > 0.1
    assert (col[top, 0] > 0.9).all() and (col[top, 2] < 0.1).all()


def test_broken_files_are_data_errors(tmp_path):
    (tmp_path / "empty.obj").write_text("")
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    (tmp_path / "junk.glb").write_bytes(b"\x00\x01junk")
    for name, says in [
        ("empty.obj", "empty file"),
        ("points.obj", "no triangle mesh"),
        ("flat.obj", "degenerate"),
        ("junk.glb", "cannot read"),
    ]:
        with pytest.raises(DataError, match=says) as e:
            load_asset(tmp_path / name)
        assert name in str(e.value)


def test_discovery_categories(world):
    base = world[0]
    sources, failures = discover_assets(base / "assets", base / "assets" / "manifest.csv")
    got = {s.id: s.category for s in sources}
    assert got == {"a1b2c3": "mug", "crate01": "box", "ball-7": "ball", "deadbeef": "mug"}
    assert failures == []
    _, failures = discover_assets(base / "assets")  # no manifest: the PLY has no category
    assert [f["asset"] for f in failures] == ["ball"] and "no category" in failures[0]["reason"]


# ----------------------------------------------------------------------------------- pipeline


def test_prepare_writes_loadable_dataset_and_lists_failures(prepared, world):
    out, summary = prepared
    assert summary["prepared"] == 3 and summary["failed"] == 1 and summary["skipped"] == 0
    lines = (out / "failures.jsonl").read_text().splitlines()
    assert len(lines) == 1
    fail = json.loads(lines[0])
    assert fail["asset"] == "deadbeef" and "deadbeef---mug.glb" in fail["reason"]
    ds = CorrespondenceDataset(out)
    assert sorted(ds.assets) == ["a1b2c3", "ball-7", "crate01"]
    assert ds.splits["train"] == ["a1b2c3"] and ds.splits["test"] == ["ball-7", "crate01"]
    assert ds.meta["assets"]["crate01"]["official_split"] == "unseen_test"
    norm = ds.meta["assets"]["crate01"]["normalization"]
    assert norm == {"center": [0.0, 0.0, 0.0], "scale": 0.5}
    assert ds.assets["a1b2c3"].functions == ("hold", "pour-with")
    for aid in ds.assets:
        v = ds.views(aid)
        crop = ds.crop_view(aid, 0)
        assert crop["image"].shape == (224, 224, 3)
        assert v["pseudo_valid"].any(), aid
        mv = ds.multiview(aid)
        assert len(mv["src"]) > 0
    # the mug's node names give part ids: GT masks exist and the pseudo labels follow them
    v = ds.views("a1b2c3")
    assert "part_id" in v and "gt_mask" in v
    hold = ds.assets["a1b2c3"].functions.index("hold")
    ok = v["pseudo_valid"][:, hold]
    gt, pm = v["gt_mask"][ok, hold], v["pseudo_mask"][ok, hold]
    assert (gt & pm).sum() / max(1, (gt | pm).sum()) > 0.3
    assert "part_id" not in ds.views("crate01")  # no part names in an OBJ with one group
    # textures rendered: the mug shows red and blue pixels, the crate green ones
    rgb = np.stack([ds.rgb("a1b2c3", i) for i in range(4)])
    m = ds.views("a1b2c3")["mask"]
    px = rgb[m].astype(int)
    assert ((px[:, 0] > 120) & (px[:, 2] < 60)).sum() > 20
    assert ((px[:, 2] > 120) & (px[:, 0] < 60)).sum() > 20
    c = np.stack([ds.rgb("crate01", i) for i in range(4)])[ds.views("crate01")["mask"]].astype(int)
    assert (c[:, 1] > c[:, 0] + 40).mean() > 0.9


def test_geometry_is_exact(prepared, world):
    out, _ = prepared
    ds = CorrespondenceDataset(out)
    for aid, fname in [("a1b2c3", "a1b2c3---mug.glb"), ("crate01", "crate.obj")]:
        mesh = load_asset(world[0] / "assets" / fname).mesh
        v, g = ds.views(aid), ds.geometry(aid)
        pts = backproject(g["depth"], v["K"], v["R"], v["t"])
        for i in range(len(pts)):
            rows, cols = np.nonzero(v["mask"][i])
            assert np.isfinite(g["depth"][i][v["mask"][i]]).all()
            assert np.isinf(g["depth"][i][~v["mask"][i]]).all()
            p = pts[i][rows, cols].astype(np.float64)
            _, dist, _ = trimesh.proximity.closest_point(mesh, p[::7])
            assert dist.max() < 1e-4, (aid, i, dist.max())
            rc, z = project(p, v["K"][i], v["R"][i], v["t"][i])
            assert np.abs(rc - np.stack([rows, cols], 1)).max() < 1e-3
            assert (z > 0).all()
        # the dense surface samples lie on the mesh; most object pixels match one (0.01)
        _, dist, _ = trimesh.proximity.closest_point(mesh, g["surface_points"][::50])
        assert dist.max() < 1e-5
        idx = match_to_cloud(pts, g["surface_points"])
        assert (idx >= 0).sum() > 0.9 * v["mask"].sum()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_workers_identical_and_resume(prepared, world):
    out1, _ = prepared
    out2 = world[0] / "out2"
    s2 = _prepare(world, out2, workers=2)
    assert s2["prepared"] == 3 and s2["failed"] == 1
    a, b = _tree(out1), _tree(out2)
    assert sorted(a) == sorted(b)
    diff = [k for k in a if a[k] != b[k]]
    assert diff == []
    # resume: finished assets are skipped, the corrupt one is tried (and fails) again
    mtime = (out2 / "assets/a1b2c3/views.npz").stat().st_mtime_ns
    s3 = _prepare(world, out2, workers=2)
    assert (s3["prepared"], s3["skipped"], s3["failed"]) == (0, 3, 1)
    assert (out2 / "assets/a1b2c3/views.npz").stat().st_mtime_ns == mtime
    # an interrupted asset (folder half written) is redone, giving the same bytes
    import shutil

    shutil.rmtree(out2 / "assets/crate01")
    (out2 / "assets/.tmp-crate01").mkdir()
    (out2 / "assets/.tmp-crate01/junk").write_text("x")
    s4 = _prepare(world, out2)
    assert (s4["prepared"], s4["skipped"]) == (1, 2)
    assert _tree(out2) == a
    # other options on the same folder are refused
    with pytest.raises(UsageError, match="other options"):
        prepare_correspondence(
            world[0] / "assets", world[2], "simulated", out2, PrepareConfig(**{**CFG, "views": 5}),
            manifest=world[0] / "assets" / "manifest.csv", progress=False, labelers=PartBoxes(),
        )  # fmt: skip


def test_official_rig_defaults():
    cfg = PrepareConfig()
    cams = cfg.cameras()
    assert len(cams) == 19 and cams[0].width == 490
    assert np.allclose([np.linalg.norm(c.center) for c in cams], 2.0)


def test_taxonomy_from_official_used(world):
    tax = Taxonomy.from_official(world[2])
    assert tax.parts_for("mug", "hold") == ["handle"]


def test_train_eval_pairs_and_eval_on_prepared_data(prepared, tmp_path):
    """prepare -> train a few steps -> eval pairs (alignments in mesh coordinates, converted
    with the recorded normalisation) -> afford eval correspondence, all unchanged commands."""
    import shutil

    from afford.cli import main

    out = tmp_path / "data"
    shutil.copytree(prepared[0], out)
    run = tmp_path / "run"
    rc = main(
        [
            "train", "correspondence", "--config", "correspondence/synth-tiny", "--no-progress",
            "--set", f"data.root={out}", "--set", f"train.out={run}",
            "--set", "train.epochs=1", "--set", "train.iters_per_epoch=2",
            "--set", "data.val_fraction=0", "--set", "sampling.pairs=2",
            "--set", "sampling.points=16", "--set", "sampling.spatial_points=16",
        ]
    )  # fmt: skip
    assert rc == 0 and (run / "best").is_dir()
    # the crate (mesh cube of side 2) scaled x3 onto the ball (radius 3), both wholly "hold"
    align = {
        "format": "afford-alignments",
        "format_version": 1,
        "frame": "mesh",
        "pairs": [
            {
                "function": "hold", "source": "ball-7", "target": "crate01",
                "T": [[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]],
                "source_box": {"center": [0, 0, 0], "size": [6.2, 6.2, 6.2]},
                "target_box": {"center": [0, 0, 0], "size": [2.1, 2.1, 2.1]},
            }
        ],
    }  # fmt: skip
    (tmp_path / "align.json").write_text(json.dumps(align))
    rc = main(
        ["prepare", "eval-pairs", str(out), "--alignments", str(tmp_path / "align.json"),
         "--max-points", "64"]
    )  # fmt: skip
    assert rc == 0
    pairs = CorrespondenceDataset(out).eval_pairs("test")
    assert len(pairs) == 1 and pairs[0].cross_category and pairs[0].n_points > 16
    rc = main(
        ["eval", "correspondence", "--checkpoint", str(run), "--pairs", str(out), "--split",
         "test", "--out", str(tmp_path / "eval"), "--device", "cpu", "--discovery-stride", "8"]
    )  # fmt: skip
    assert rc == 0
    res = read_json(tmp_path / "eval" / "results.json")
    assert res and "pck" in json.dumps(res).lower()
    # re-running the preparation keeps the evaluation pairs and their counts
    before = read_json(out / "dataset.json")["counts"]
    assert _prepare_into(out) == (0, 3)
    assert read_json(out / "dataset.json")["counts"] == before
    assert len(CorrespondenceDataset(out).eval_pairs("test")) == 1


def test_culled_cast_is_exact(world):
    from afford.raycast import Scene

    a = load_asset(world[0] / "assets" / "a1b2c3---mug.glb")
    cam = PrepareConfig(image_size=64).cameras()[3]
    full = Scene(a.mesh, material=a.material).render(cam, "solid")
    cull = Scene(a.mesh, material=a.material, cull=True).render(cam, "solid")
    for key in ("rgb", "depth", "mask", "face_id"):
        assert np.array_equal(getattr(full, key), getattr(cull, key)), key


def test_cli_usage_errors(world, tmp_path, capsys):
    from afford.cli import main

    base, _, tax = world
    args = ["prepare", "correspondence", "--assets", str(base / "assets"), "--taxonomy"]
    assert main([*args, str(tax), "--labeler", "nope:x", "--out", str(tmp_path / "o")]) == 2
    assert "unknown labeller" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "missing"), "--labeler", "simulated", "--out", "o"]) == 2
    assert "--taxonomy" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    rc = main([*args, str(tax), "--labeler", "simulated", "--out", str(tmp_path / "full")])
    assert rc == 2 and "not empty" in capsys.readouterr().err


def test_render_only_then_relabel_equals_one_pass(prepared, world):
    out1, _ = prepared
    out = world[0] / "out-relabel"
    base, _, tax = world
    kw = dict(manifest=base / "assets" / "manifest.csv", progress=False)
    s = prepare_correspondence(base / "assets", tax, "none", out, PrepareConfig(**CFG), **kw)
    assert s["prepared"] == 3
    v = read_npz(out / "assets/a1b2c3/views.npz")
    assert not v["pseudo_valid"].any() and np.isnan(v["boxes"]).all()
    # label the stored renders (as with boxes:FILE made from them): same bytes as one pass
    s = _prepare(world, out)
    assert (s["prepared"], s["skipped"]) == (3, 0)
    assert _tree(out) == _tree(out1)


def test_cli_simulated_labeller(world, tmp_path, capsys):
    from afford.cli import main

    base, _, tax = world
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("a1b2c3---mug.glb", "crate.obj", "crate.mtl", "crate.json"):
        (assets / name).write_bytes((base / "assets" / name).read_bytes())
    out = tmp_path / "out"
    argv = ["prepare", "correspondence", "--assets", str(assets), "--taxonomy", str(tax),
            "--labeler", "simulated", "--out", str(out), "--views", "4", "--image-size", "64",
            "--cloud-points", "2000", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["prepared"], shown["failed"]) == (1, 1)
    fail = json.loads((out / "failures.jsonl").read_text())
    assert fail["asset"] == "crate01" and "part ids" in fail["reason"]
    ds = CorrespondenceDataset(out)
    assert list(ds.assets) == ["a1b2c3"] and ds.meta["pseudo_labels"]["labeler"] == "simulated"
    assert ds.views("a1b2c3")["pseudo_valid"].any()


def test_tiny_owlv2_labeller(world, tmp_path):
    pytest.importorskip("transformers")
    from tiny_detectors import save_tiny_owlv2

    model = save_tiny_owlv2(tmp_path / "owlv2")
    base, _, tax = world
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "a1b2c3---mug.glb").write_bytes((base / "assets" / "a1b2c3---mug.glb").read_bytes())
    s = prepare_correspondence(
        assets, tax, f"owlv2:{model}", tmp_path / "out", PrepareConfig(**CFG), progress=False
    )
    assert (s["prepared"], s["failed"]) == (1, 0)
    v = read_npz(tmp_path / "out/assets/a1b2c3/views.npz")
    assert v["boxes"].shape == (4, 2, 4, 4)
    assert read_json(tmp_path / "out/dataset.json")["pseudo_labels"]["labeler"].startswith("owlv2")


def test_gltf_and_stl_read_like_glb(world, tmp_path):
    base = world[0]
    glb = load_asset(base / "assets" / "a1b2c3---mug.glb")
    scene = trimesh.load(base / "assets" / "a1b2c3---mug.glb", force="scene", process=False)
    for name, data in scene.export(file_type="gltf").items():  # .gltf + .bin + texture
        (tmp_path / name).write_bytes(data)
    gltf = load_asset(tmp_path / "model.gltf")
    assert np.allclose(gltf.mesh.vertices, glb.mesh.vertices, atol=1e-6)
    assert gltf.material.textured and gltf.groups == glb.groups
    faces = np.arange(glb.n_faces)
    bary = np.full((glb.n_faces, 3), 1 / 3)
    assert np.allclose(gltf.material(faces, None, bary), glb.material(faces, None, bary), atol=0.01)
    box = trimesh.creation.box(extents=[4.0, 2.0, 1.0])
    (tmp_path / "part.stl").write_bytes(box.export(file_type="stl"))
    stl = load_asset(tmp_path / "part.stl")
    assert np.isclose(np.abs(stl.mesh.vertices).max(), 0.5) and stl.n_faces == 12
    assert np.allclose(np.ptp(stl.mesh.vertices, axis=0), [1.0, 0.5, 0.25])


def test_synthetic_assets_as_glb_get_accurate_pseudo_labels(tmp_path):
    """Procedural assets exported as GLB (one node per part, face colours): the simulated
    labeller's boxes aggregated in 3-D give masks that overlap the GT parts."""
    from afford.synth.assets import make_asset

    (tmp_path / "a").mkdir()
    for i, cat in enumerate(["kettle", "knife"]):
        a = make_asset(cat, 7 + i)
        scene = trimesh.Scene()
        cols = a.face_colors()
        for k, p in enumerate(a.parts):
            f = np.flatnonzero(a.face_part == k)
            m = trimesh.Trimesh(a.mesh.vertices, a.mesh.faces[f], process=False)
            m.remove_unreferenced_vertices()
            m.visual = trimesh.visual.ColorVisuals(m, face_colors=cols[f])
            scene.add_geometry(m, node_name=p.name, geom_name=f"{p.name}_mesh")
        (tmp_path / "a" / f"{cat}{i}---{cat}.glb").write_bytes(scene.export(file_type="glb"))
    cfg = PrepareConfig(views=8, image_size=160, cloud_points=8000)
    s = prepare_correspondence(
        tmp_path / "a", "synth", "simulated", tmp_path / "o", cfg, progress=False
    )
    assert (s["prepared"], s["failed"]) == (2, 0)
    ds = CorrespondenceDataset(tmp_path / "o")
    for aid in ds.assets:
        v = ds.views(aid)
        ok = v["pseudo_valid"]
        assert ok.mean() > 0.7
        g, p = v["gt_mask"][ok], v["pseudo_mask"][ok]
        iou = (g & p).sum(axis=(1, 2)) / np.maximum(1, (g | p).sum(axis=(1, 2)))
        assert iou.mean() > 0.5, (aid, iou.mean())


@pytest.mark.parametrize("workers", [1, 2])
def test_labeller_that_cannot_open_stops_the_run(world, tmp_path, workers):
    base, _, tax = world
    with pytest.raises(UsageError, match="not found"):
        prepare_correspondence(
            base / "assets", tax, f"owlv2:{tmp_path}/no/such/model", tmp_path / "o",
            PrepareConfig(**CFG), workers=workers, manifest=base / "assets" / "manifest.csv",
            progress=False,
        )  # fmt: skip

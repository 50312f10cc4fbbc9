"""Affordance dataset writer: AGD20K layout, splits, determinism, GT, simulated maps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from afford.cli import main
from afford.data.agd20k import scan_dataset
from afford.data.cache import MapCache, file_key
from afford.data.io import read_gray, read_json
from afford.errors import AffordError
from afford.synth.affordance import (
    AffordanceSize,
    area_resize,
    gt_density,
    patch_response,
    render_sample,
    simulated_affinity,
    split_plan,
    write_affordance_dataset,
)
from afford.synth.assets import category_affordances, make_asset

CATS = ("cup", "knife", "mug", "scissors")
UNSEEN = ("cup", "scissors")
TINY = AffordanceSize(ego=1, exo=2, test=1, image_size=48)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("aff") / "ds"
    write_affordance_dataset(
        out, seed=3, size=TINY, categories=CATS, unseen_test=UNSEEN, progress=False
    )
    return out


def test_layout_is_agd20k(dataset):
    man = read_json(dataset / "dataset.json")
    for split in ("Seen", "Unseen"):
        root = dataset / split
        assert sorted(p.name for p in root.iterdir()) == ["testset", "trainset"]
        assert sorted(p.name for p in (root / "trainset").iterdir()) == [
            "GT", "egocentric", "exocentric",
        ]  # fmt: skip
        assert sorted(p.name for p in (root / "testset").iterdir()) == ["GT", "egocentric"]
        for view in ("trainset/egocentric", "trainset/exocentric", "testset/egocentric"):
            files = list((root / view).rglob("*"))
            imgs = [p for p in files if p.is_file()]
            assert imgs and all(p.suffix == ".jpg" for p in imgs)
            # exactly <affordance>/<object>/<file>
            assert all(len(p.relative_to(root / view).parts) == 3 for p in imgs)
            for p in imgs:
                aff, obj, _ = p.relative_to(root / view).parts
                assert aff in category_affordances(obj)
        tests = sorted((root / "testset/egocentric").rglob("*.jpg"))
        gts = sorted((root / "testset/GT").rglob("*.png"))
        rel = lambda ps, base: [p.relative_to(base).with_suffix("") for p in ps]  # noqa: E731
        assert rel(tests, root / "testset/egocentric") == rel(gts, root / "testset/GT")
        c = man["splits"][split]["counts"]
        assert c["test_egocentric"] == len(tests) == c["test_gt"]
    # counts: Seen folders = all (affordance, object) pairs of the categories
    n_pairs = sum(len(category_affordances(c)) for c in CATS)
    assert man["splits"]["Seen"]["counts"]["train_exocentric"] == n_pairs * TINY.exo
    assert man["splits"]["Seen"]["counts"]["train_egocentric"] == n_pairs * TINY.ego


def test_unseen_split_is_disjoint_by_category(dataset):
    root = dataset / "Unseen"
    train = {p.parent.name for p in (root / "trainset").rglob("*.jpg")}
    test = {p.parent.name for p in (root / "testset").rglob("*.jpg")}
    assert test == set(UNSEEN) and train == set(CATS) - set(UNSEEN)
    taff = {p.parent.parent.name for p in (root / "testset").rglob("*.jpg")}
    traff = {p.parent.parent.name for p in (root / "trainset/exocentric").rglob("*.jpg")}
    assert taff <= traff  # every unseen test affordance is trained on other categories
    plan = split_plan(CATS, UNSEEN)
    assert {c for _, c in plan["Unseen"]["train"]}.isdisjoint(
        {c for _, c in plan["Unseen"]["test"]}
    )
    # Seen: same categories in train and test
    seen = dataset / "Seen"
    assert {p.parent.name for p in (seen / "testset").rglob("*.jpg")} == set(CATS)


def test_gt_on_affordance_part_and_cache(dataset):
    cache = MapCache.open(dataset / "cache", "simulated-clip")
    assert cache.simulated
    for p in sorted(dataset.rglob("*.jpg")):
        aff = p.parent.parent.name
        entry = cache.get(file_key(p))
        assert entry is not None, p
        for kind in ("action", "entity"):
            m = entry[f"{kind}:{aff}"]
            assert m.shape == (14, 14) and m.dtype == np.float32
            assert m.min() >= -0.1 and m.max() <= 0.4
    for gt in sorted((dataset / "Seen/testset/GT").rglob("*.png")):
        g = read_gray(gt)
        assert g.shape == (48, 48) and g.max() == 255


def test_same_seed_same_bytes_and_workers(dataset, tmp_path):
    out = tmp_path / "again"
    write_affordance_dataset(
        out, seed=3, size=TINY, categories=CATS, unseen_test=UNSEEN, progress=False,
        workers=2, contact_sheet=False,
    )  # fmt: skip
    a, b = _tree(dataset), _tree(out)
    a.pop("contact_sheet.png")
    assert a == b
    other = tmp_path / "other"
    write_affordance_dataset(
        other, seed=4, size=TINY, categories=("mug",), unseen_test=(), progress=False,
        contact_sheet=False,
    )  # fmt: skip
    p = "Seen/trainset/egocentric/hold/mug/mug_000000.jpg"
    assert _tree(other)[p] != a[p]


def test_render_sample_gt_matches_part_pixels():
    s = render_sample(0, "cut_with", "knife", "ego_test", 0, 64)
    asset = make_asset("knife", s["asset_seed"])
    assert asset.parts_with(affordance="cut_with")
    pm = s["part_mask"]
    assert pm.sum() > 0 and (pm <= s["mask"]).all()
    g = s["gt"].astype(float)
    # the GT mass lies mostly on or next to the part; the peak is near part pixels
    r, c = np.unravel_index(np.argmax(g), g.shape)
    rows, cols = np.nonzero(pm)
    assert np.min(np.hypot(rows - r, cols - c)) <= 2
    assert g[pm].mean() > 2 * g[~pm].mean()
    exo = render_sample(0, "cut_with", "knife", "exo_train", 0, 64)
    assert exo["gt"] is None and exo["actor_mask"].sum() > 0
    assert not (exo["actor_mask"] & exo["mask"]).any()


def test_gt_density_and_simulated_maps_hand_checks():
    m = np.zeros((40, 40), bool)
    m[10:14, 20:24] = True
    g = gt_density(m)
    assert g.max() == 255 and g[0, 0] == 0 and g[11:13, 21:23].min() == 255
    assert gt_density(np.zeros((8, 8), bool)).max() == 0
    rng = np.random.default_rng(0)
    obj = np.zeros((112, 112), bool)
    obj[:56, :56] = True  # object in the top-left quarter
    hits = 0
    for _ in range(20):
        maps = simulated_affinity(obj, None, rng)
        a = maps["action"]
        hits += a[:7, :7].mean() > a[7:, 7:].mean() + 0.05
    assert hits >= 15  # object region responds more, except for occasional misses


def test_simulated_affinity_encompasses_thin_parts():
    assert patch_response(np.array([0.0, 0.1, 0.25, 0.8])).tolist() == [0.0, 0.4, 1.0, 1.0]
    # a body plus a 2-px handle (a quarter of an 8-px patch wide) beside it: the handle's
    # patches respond like the body's before blur and noise, and stay well above the
    # background after them (an area average would give them a quarter of the body's)
    obj = np.zeros((112, 112), bool)
    obj[40:80, 30:70] = True
    obj[56:72, 75:77] = True  # patch column 9 (px 72..79), rows 7 and 8 (px 56..71)
    assert (patch_response(area_resize(obj, 14))[7:9, 9] == 1.0).all()
    rng = np.random.default_rng(1)
    handle = []
    for _ in range(50):
        a = simulated_affinity(obj, None, rng)["action"]
        m = (a - a.min()) / (a.max() - a.min())
        handle.append(m[7:9, 9].min())
    assert np.median(handle) > 0.5 and np.mean(np.array(handle) > 0.4) >= 0.9


def test_refuses_foreign_dir_and_cli(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("keep me")
    with pytest.raises(AffordError, match="--force"):
        write_affordance_dataset(foreign, size=TINY, categories=("mug",), unseen_test=())
    assert main(["synth", "affordance", "--out", str(foreign), "--size", "small"]) == 2
    out = tmp_path / "cli"
    argv = ["synth", "affordance", "--out", str(out), "--seed", "1", "--size", "small"]
    argv += ["--ego", "1", "--exo", "1", "--test", "1", "--image-size", "32"]
    assert main(argv) == 0
    man = read_json(out / "dataset.json")
    assert man["sizes"] == {"ego": 1, "exo": 1, "test": 1, "image_size": 32} and man["seed"] == 1
    assert (out / "contact_sheet.png").is_file()
    assert (foreign / "x.txt").read_text() == "keep me"
    # rewriting our own output is allowed (its old trees are replaced)
    own = tmp_path / "own"
    kw = dict(size=TINY, categories=("mug",), unseen_test=(), progress=False, contact_sheet=False)
    write_affordance_dataset(own, seed=0, **kw)
    (own / "Seen/trainset/egocentric/hold/mug/stale.jpg").write_bytes(b"x")
    write_affordance_dataset(own, seed=0, **kw)
    assert not (own / "Seen/trainset/egocentric/hold/mug/stale.jpg").exists()


def test_real_agd20k_loader_reads_the_output(dataset):
    man = read_json(dataset / "dataset.json")
    for split in ("Seen", "Unseen"):
        d = scan_dataset(dataset / split, "folders", val_fraction=0.0)
        c = man["splits"][split]["counts"]
        assert d.classes == man["splits"][split]["affordances"]
        assert d.stats["test"] == c["test_gt"] and d.stats["train_exo"] == c["train_exocentric"]

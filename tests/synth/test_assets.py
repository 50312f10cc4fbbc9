"""Procedural assets: part labels, frames, normalisation, watertight parts, export."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from afford.errors import AffordError
from afford.synth.assets import (
    AFFORDANCES,
    CATEGORIES,
    FUNCTIONS,
    Part,
    albedo,
    category_affordances,
    export_asset,
    make_asset,
    pattern_mask,
)


def test_catalogue_size():
    assert len(CATEGORIES) >= 14
    assert len(set(FUNCTIONS) - {"grasp"}) >= 7
    assert len(AFFORDANCES) >= 7
    # cross-category functional correspondence is meaningful: every non-grasp function
    # except brushing/piercing is shared by at least two categories
    for fn in ("pour-with", "cut-with", "scoop-with", "pound-with", "drink-with", "hang-onto"):
        cats = [c for c in CATEGORIES if make_asset(c, 0).parts_with(function=fn)]
        assert len(cats) >= 2, fn


@pytest.mark.parametrize("category", CATEGORIES)
def test_asset_structure(category):
    a = make_asset(category, 3)
    F = len(a.mesh.faces)
    assert a.face_part.shape == (F,)
    assert a.face_part.min() >= 0 and a.face_part.max() < len(a.parts)
    # every part owns faces, names are unique
    assert set(np.unique(a.face_part)) == set(range(len(a.parts)))
    assert len({p.name for p in a.parts}) == len(a.parts)
    # normalisation: max |coord| = 0.5 and bounding box centred
    v = np.asarray(a.mesh.vertices)
    assert np.isclose(np.abs(v).max(), 0.5)
    assert np.allclose(v.min(0) + v.max(0), 0.0, atol=1e-9)
    assert any(p.affordances for p in a.parts) and any(p.functions for p in a.parts)
    for i, p in enumerate(a.parts):
        R = p.frame[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1.0)
        assert np.allclose(p.frame[3], [0, 0, 0, 1])
        part = a.part_mesh(i)
        assert part.is_watertight, (category, p.name)
        assert part.volume > 0
        if p.functions:  # functional point lies in (or at) the part's bounding box
            lo, hi = part.bounds
            o = p.frame[:3, 3]
            assert np.all(o >= lo - 0.02) and np.all(o <= hi + 0.02), (category, p.name)
        assert set(p.affordances) <= set(AFFORDANCES)
        assert set(p.functions) <= set(FUNCTIONS)
    assert category_affordances(category) == a.affordances


def test_deterministic_and_varied():
    a, b, c = make_asset("kettle", 5), make_asset("kettle", 5), make_asset("kettle", 6)
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices)
    assert np.array_equal(a.mesh.faces, b.mesh.faces)
    assert [p.color for p in a.parts] == [p.color for p in b.parts]
    assert a.mesh.vertices.shape != c.mesh.vertices.shape or not np.allclose(
        a.mesh.vertices, c.mesh.vertices
    )


def test_decorations_do_not_afford_the_labelled_action():
    n_deco = 0
    for cat in CATEGORIES:
        a = make_asset(cat, 0)
        for p in a.parts:
            if p.decoration:
                n_deco += 1
                # a decoration never affords the category's characteristic (non-hold) action
                others = set(a.affordances) - {"hold"}
                assert not (set(p.affordances) & others), (cat, p.name)
    assert n_deco >= len(CATEGORIES) // 2


def test_functional_frames_align_parts():
    # aligning two kettles' spouts by their frames maps one spout tip onto the other
    a, b = make_asset("kettle", 1), make_asset("watering_can", 2)
    fa = a.parts[a.parts_with(function="pour-with")[0]].frame
    fb = b.parts[b.parts_with(function="pour-with")[0]].frame
    T = fa @ np.linalg.inv(fb)
    assert np.allclose(T @ fb, fa)
    assert np.allclose((T @ np.append(fb[:3, 3], 1))[:3], fa[:3, 3])


def test_pattern_mask_hand_computed():
    pts = np.array([[0.0, 0, 0.1], [0.0, 0, 0.6], [0.2, 0.2, 0.2], [1.2, 0.2, 0.2]])
    s = pattern_mask("stripes", pts, 1.0, np.array([0, 0, 1.0]))
    assert s[:2].tolist() == [1.0, 0.0]
    c = pattern_mask("checker", pts[2:], 1.0, np.array([0, 0, 1.0]))
    assert c.tolist() == [0.0, 1.0]
    with pytest.raises(AffordError):
        pattern_mask("zebra", pts, 1.0, np.array([0, 0, 1.0]))
    parts = [
        Part("a", (), (), np.eye(4), color=(1.0, 0.0, 0.0)),
        Part(
            "b",
            (),
            (),
            np.eye(4),
            color=(0.0, 0.0, 1.0),
            pattern="stripes",
            pattern_color=(0.0, 1.0, 0.0),
            pattern_freq=1.0,
        ),
    ]
    col = albedo(parts, np.array([0, 1, 1]), pts[:3])
    assert np.allclose(col, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])  # z=0.6: base, z=0.2: stripe


def test_unknown_category():
    with pytest.raises(AffordError, match="unknown asset category"):
        make_asset("teapotx", 0)


@pytest.mark.parametrize("suffix", ["ply", "obj", "glb"])
def test_export_roundtrip(tmp_path, suffix):
    a = make_asset("mug", 1)
    path = export_asset(a, tmp_path / f"mug.{suffix}")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    m = trimesh.load(path, force="mesh", process=False)
    assert abs(len(m.faces) - len(a.mesh.faces)) == 0
    assert np.allclose(
        np.sort(np.abs(m.vertices).max(0)), np.sort(np.abs(a.mesh.vertices).max(0)), atol=1e-5
    )
    with pytest.raises(AffordError):
        export_asset(a, tmp_path / "mug.xyz")

"""afford.taxonomy: the official-folder reader (small files of the official shapes), afford's
own single-file format, queries, aliases, splits and clear errors; the shipped instances."""

from __future__ import annotations

import json

import pytest

from afford.correspondence.text import default_functions
from afford.errors import AffordError
from afford.synth.assets import CATEGORIES, FUNCTIONS, category_affordances, category_functions
from afford.synth.assets import taxonomy as synth_taxonomy
from afford.taxonomy import AssetRef, Taxonomy, shipped_names

UID1 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
UID2 = "ffeeddccbbaa99887766554433221100"


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture
def official(tmp_path):
    """A miniature ``0_taxonomy_and_metadata/`` folder with the official file shapes."""
    root = tmp_path / "0_taxonomy_and_metadata"
    _write(
        root / "action2objects.json",
        {
            "brush-with": ["paintbrush", "hairbrush"],
            "pour-with": ["kettle"],
            "scoop-with": ["spatula"],
        },
    )
    obj = root / "Objaverse"
    _write(
        obj / "obj2part2function.json",
        {
            "paintbrush": {"bristles": ["brush-with", "poke-with"], "handle": []},
            "kettle": {"spout": ["pour-with"], "handle": []},
            "spatula": {"head": ["scoop-with"], "handle": []},
        },
    )
    _write(
        obj / "obj2part_descriptions.json",
        {"kettle": {"spout": "the narrow tube the water leaves through"}},
    )
    _write(obj / "duplicated_parts.json", {"spatula": {"face": "head"}})
    _write(obj / "train_split.json", [f"{UID1}---kettle.glb", f"{UID2}---spatula.glb"])
    _write(obj / "test_split.json", [f"{UID2}---paintbrush.glb"])
    return root


def test_official_reader_and_queries(official):
    t = Taxonomy.from_official(official)
    # action2objects order first, then functions only obj2part2function names
    assert t.functions == ["brush-with", "pour-with", "scoop-with", "poke-with"]
    assert t.functions_of("paintbrush", "bristles") == ["brush-with", "poke-with"]
    assert t.functions_of("kettle") == ["pour-with"]
    assert t.categories_for("brush-with") == ["hairbrush", "paintbrush"]
    assert t.categories_for("poke-with") == ["paintbrush"]
    assert t.parts_for("kettle", "pour-with") == ["spout"]
    assert t.descriptions["kettle"]["spout"].startswith("the narrow tube")
    assert "hairbrush" in t.categories and "spatula" in t.categories
    with pytest.raises(AffordError, match="unknown function 'fly-with'"):
        t.categories_for("fly-with")
    with pytest.raises(AffordError, match="has no part 'lid'"):
        t.functions_of("kettle", "lid")


def test_official_aliases_resolve_to_canonical_part(official):
    t = Taxonomy.from_official(official)
    assert t.canonical_part("spatula", "face") == "head"
    assert t.canonical_part("spatula", "handle") == "handle"
    assert t.functions_of("spatula", "face") == ["scoop-with"]
    assert t.parts_for("spatula", "scoop-with") == ["head"]


def test_official_splits_parse_uuid_and_category(official):
    t = Taxonomy.from_official(official)
    assert t.split("train") == [AssetRef(UID1, "kettle"), AssetRef(UID2, "spatula")]
    assert t.split("test")[0].category == "paintbrush"
    assert t.split("train")[0].filename == f"{UID1}---kettle.glb"
    # unseen_test_split.json is optional: absent -> no such split
    assert "unseen_test" not in t.splits
    with pytest.raises(AffordError, match="no split 'unseen_test'"):
        t.split("unseen_test")


def test_official_optional_files_tolerated(official):
    for name in ("obj2part_descriptions.json", "duplicated_parts.json", "train_split.json"):
        (official / "Objaverse" / name).unlink()
    t = Taxonomy.from_official(official)
    assert t.descriptions == {} and t.aliases == {} and set(t.splits) == {"test"}


@pytest.mark.parametrize("name", ["action2objects.json", "Objaverse/obj2part2function.json"])
def test_official_missing_required_file_names_it(official, name):
    (official / name).unlink()
    with pytest.raises(AffordError, match=name.split("/")[-1] + ": required taxonomy file"):
        Taxonomy.from_official(official)


def test_official_bad_shapes_name_file_and_key(official):
    obj = official / "Objaverse"
    _write(obj / "obj2part2function.json", {"kettle": {"spout": "pour-with"}})
    with pytest.raises(
        AffordError, match=r"obj2part2function\.json: kettle\.spout: expected a list"
    ):
        Taxonomy.from_official(official)
    _write(obj / "obj2part2function.json", {"kettle": {"spout": ["pour-with"]}})
    _write(obj / "train_split.json", ["not-a-split-name.glb"])
    with pytest.raises(AffordError, match=r"train_split\.json: entry 0: 'not-a-split-name\.glb'"):
        Taxonomy.from_official(official)
    _write(obj / "train_split.json", {"a": 1})
    with pytest.raises(AffordError, match=r"train_split\.json: \(top level\): expected a list"):
        Taxonomy.from_official(official)
    (obj / "train_split.json").unlink()
    _write(obj / "duplicated_parts.json", {"kettle": {"nozzle": "tip"}})
    with pytest.raises(
        AffordError, match=r"duplicated_parts\.json: kettle\.nozzle: canonical part 'tip'"
    ):
        Taxonomy.from_official(official)
    (obj / "duplicated_parts.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AffordError, match=r"duplicated_parts\.json: not valid JSON"):
        Taxonomy.from_official(official)
    with pytest.raises(AffordError, match="taxonomy folder not found"):
        Taxonomy.from_official(official / "missing")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_round_trip(official, tmp_path, suffix):
    t = Taxonomy.from_official(official)
    t.affordances = {"kettle": {"spout": ["pour"]}}
    path = t.save(tmp_path / f"mine{suffix}")
    back = Taxonomy.load(path)
    assert back == t
    assert back.split("train") == t.split("train") and back.aliases == t.aliases
    assert back.affordances_of("kettle", "spout") == ["pour"]
    assert not list(tmp_path.glob(".mine*"))  # atomic write left no temporary


def _rejects(path, text, match):
    """Write ``text`` to ``path``: Taxonomy.load must fail with a message matching ``match``."""
    path.write_text(text)
    with pytest.raises(AffordError, match=match):
        Taxonomy.load(path)


def test_load_errors_name_file_and_key(tmp_path):
    path = tmp_path / "t.yaml"
    _rejects(
        path,
        "functions: [cut-with]\nparts: {knife: {blade: [saw-with]}}\n",
        r"t\.yaml: parts\.knife\.blade: unknown functions",
    )
    _rejects(path, "functions: [cut-with]\ncolour: red\n", r"t\.yaml: unknown keys \['colour'\]")
    _rejects(path, "parts: {}\n", r"t\.yaml: functions: missing")
    _rejects(path, "functions: [cut-with, cut-with]\n", "duplicated names")
    _rejects(
        path,
        "functions: [a]\nsplits: {train: [{id: x}]}\n",
        r"splits\.train\[0\]: expected a mapping",
    )
    _rejects(path, "functions: [a\n", "not valid YAML")
    with pytest.raises(AffordError, match="file not found"):
        Taxonomy.load(tmp_path / "none.yaml")
    with pytest.raises(AffordError, match=r"must end in \.json, \.yaml or \.yml"):
        Taxonomy.load(tmp_path / "t.txt")


def test_synth_taxonomy_agrees_with_the_asset_definitions():
    shipped = Taxonomy.shipped("synth")
    built = synth_taxonomy()
    assert shipped == built
    assert synth_taxonomy(seed=3) == built  # the same for every instance
    assert shipped.functions == FUNCTIONS
    assert sorted(shipped.parts) == CATEGORIES
    for c in CATEGORIES:
        assert tuple(shipped.functions_of(c)) == category_functions(c)
        assert tuple(shipped.affordances_of(c)) == category_affordances(c)
    assert set(shipped.categories_for("pour-with")) == {"bottle", "jug", "kettle", "watering_can"}


def test_paper_taxonomy_and_default_functions():
    paper = Taxonomy.shipped("paper")
    assert len(paper.functions) == 24 and "apply-torque" in paper.functions
    assert default_functions() == sorted(set(paper.functions) | set(FUNCTIONS))
    assert {"paper", "synth"} <= set(shipped_names())
    with pytest.raises(AffordError, match="no shipped taxonomy 'nope'"):
        Taxonomy.shipped("nope")

"""Part labellers behind one interface: specs, detectors (tiny random models), boxes files,
the simulated labeller, and their boxes going through the 3-D vote aggregation."""

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from afford.errors import DataError, UsageError
from afford.geometry.pseudolabel import (
    BoxLabeler,
    PartQuery,
    SimulatedBoxLabeler,
    cluster_boxes,
    valid_boxes,
)
from afford.prepare.labelers import (
    AssetLabelers,
    BoxesFileLabelers,
    open_labeler,
    parse_spec,
    part_prompts,
)
from afford.taxonomy import Taxonomy

sys.path.insert(0, str(Path(__file__).parent))

from tiny_detectors import save_tiny_grounding_dino, save_tiny_owlv2  # noqa: E402

TAX = Taxonomy.from_dict(
    {
        "name": "t",
        "functions": ["pour-with", "grasp"],
        "parts": {"kettle": {"spout": ["pour-with"], "handle": ["grasp"], "body": []}},
        "descriptions": {"kettle": {"spout": "the narrow tube the water comes out of."}},
        "aliases": {"kettle": {"nozzle": "spout"}},
    }
)
IMG = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
Q = PartQuery("kettle", "pour-with", "spout")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("detectors")
    return {
        "owlv2": save_tiny_owlv2(root / "owlv2"),
        "grounding-dino": save_tiny_grounding_dino(root / "gdino"),
    }


# ---------------------------------------------------------------------------------------------
# specs


@pytest.mark.parametrize(
    "spec, match",
    [
        ("yolo:x", "unknown labeller 'yolo'"),
        ("owlv2", "owlv2 needs owlv2:MODEL"),
        ("boxes:", "boxes needs boxes:FILE"),
        ("simulated:3", "takes no argument"),
        ("", "empty spec"),
    ],
)
def test_bad_spec_is_a_usage_error_naming_the_option(spec, match):
    with pytest.raises(UsageError, match="--labeler") as err:
        open_labeler(spec, TAX)
    assert match in str(err.value)


def test_parse_spec_kinds():
    assert parse_spec("owlv2:google/owlv2-base-patch16") == ("owlv2", "google/owlv2-base-patch16")
    assert parse_spec("grounding_dino:/m") == ("grounding-dino", "/m")
    assert parse_spec("boxes:/a/b.json") == ("boxes", "/a/b.json")
    assert parse_spec("simulated") == ("simulated", "")


def test_prompts_use_part_category_and_description():
    p = part_prompts(TAX, "kettle", "spout")
    assert p[0] == "the spout of a kettle" and "kettle spout" in p
    assert p[-1] == "spout: the narrow tube the water comes out of"
    # an alias finds the canonical part's description; no description -> a plain variant
    assert part_prompts(TAX, "kettle", "nozzle")[-1].endswith("water comes out of")
    assert part_prompts(TAX, "kettle", "end_cap") == [
        "the end cap of a kettle",
        "kettle end cap",
        "end cap",
        "a end cap",
    ]


# ---------------------------------------------------------------------------------------------
# detectors


@pytest.mark.parametrize("kind", ["owlv2", "grounding-dino"])
def test_tiny_detector_loads_from_folder_and_answers_s_boxes(models, kind):
    labelers = open_labeler(f"{kind}:{models[kind]}", TAX, samples=6, options={"threshold": 0.0})
    assert isinstance(labelers, AssetLabelers)
    assert labelers.name == f"{kind}:{models[kind]}"
    label = labelers.for_asset("kettle_000", "kettle")
    assert isinstance(label, BoxLabeler)
    boxes = label(IMG, Q, 0)
    assert boxes.shape == (6, 4)
    ok = valid_boxes(boxes)
    assert ok.any()  # threshold 0: every prompt variant has boxes
    b = boxes[ok]
    assert (b[:, 0] >= -0.5).all() and (b[:, 2] <= 63.5).all()
    assert (b[:, 1] >= -0.5).all() and (b[:, 3] <= 47.5).all()
    assert np.array_equal(boxes, label(IMG, Q, 1), equal_nan=True)  # deterministic
    two = label(IMG, PartQuery("kettle", "pour-with", "spout / handle"), 0)
    assert two.shape == (6, 4)
    # an impossible threshold: no box, every sample is a nan row
    none = open_labeler(
        f"{kind}:{models[kind]}", TAX, samples=3, options={"threshold": 1.01}
    ).for_asset("kettle_000", "kettle")(IMG, Q, 0)
    assert none.shape == (3, 4) and np.isnan(none).all()


def test_owlv2_boxes_scale_to_the_padded_square_and_shift_to_pixel_centres(models):
    labelers = open_labeler(f"owlv2:{models['owlv2']}", TAX, samples=4)
    torch = pytest.importorskip("torch")
    q = 5
    logits = torch.full((1, q, 4), -10.0)
    logits[0, 0, :] = 5.0  # query 0 is the best box for every prompt variant
    logits[0, 1, 2] = 3.0  # query 1 is the second box of variant 2
    boxes = torch.tensor([[0.5, 0.25, 0.5, 0.5]]).repeat(1, q, 1)
    boxes[0, 1] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    labelers.model = lambda **kw: SimpleNamespace(logits=logits, pred_boxes=boxes)
    labelers.samples = 8  # variants 0..3 at rank 0, then at rank 1
    got = labelers.for_asset("a", "kettle")(IMG, Q, 0)
    # OWLv2 pads 48x64 to 64x64: cx=0.5, cy=0.25, w=h=0.5 -> [16, 0, 48, 32] edges -> -0.5
    assert np.allclose(got[:4], [[15.5, -0.5, 47.5, 31.5]] * 4)
    assert np.isnan(got[[4, 5, 7]]).all()
    assert np.allclose(got[6], [7.5, 7.5, 23.5, 23.5])
    assert np.allclose(cluster_boxes(got), [15.5, -0.5, 47.5, 31.5])


def test_missing_model_is_a_clear_usage_error(tmp_path, monkeypatch, models):
    pytest.importorskip("transformers")
    with pytest.raises(UsageError, match="model folder .* not found"):
        open_labeler(f"owlv2:{tmp_path / 'nope'}", TAX)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no config.json"):
        open_labeler(f"grounding-dino:{tmp_path / 'empty'}", TAX)
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(UsageError) as err:
        open_labeler("owlv2:someone/not-cached-owlv2", TAX)
    msg = str(err.value)
    assert "someone/not-cached-owlv2" in msg and "offline" in msg and "--labeler" in msg


# ---------------------------------------------------------------------------------------------
# boxes file


def _boxes_file(tmp_path, data, name="boxes.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _doc(**kw):
    doc = {
        "format": "afford-boxes",
        "format_version": 1,
        "labeler": "cogvlm-grounding",
        "assets": {
            "kettle_000": {
                "0": {"pour-with": [[10, 20, 30, 40], None, [12, 20, 30, 42]]},
                "1": {"spout": [[0, 0, 8, 8]], "handle": [[40, 10, 60, 30]]},
            }
        },
    }
    doc.update(kw)
    return doc


def test_boxes_file_lookup_conversion_and_padding(tmp_path):
    path = _boxes_file(tmp_path, _doc())
    labelers = open_labeler(f"boxes:{path}", TAX, samples=4)
    assert isinstance(labelers, BoxesFileLabelers)
    assert labelers.name.startswith(f"boxes:{path}") and "cogvlm" in labelers.name
    label = labelers.for_asset("kettle_000", "kettle")
    b = label(IMG, Q, 0)
    # pixel corners (the default pixel_origin) -> afford's centres: -0.5; null -> nan; pad
    assert np.allclose(b[0], [9.5, 19.5, 29.5, 39.5])
    assert np.isnan(b[1]).all() and np.isnan(b[3]).all()
    # keyed by part name when the function is absent; several parts are pooled
    assert np.allclose(label(IMG, PartQuery("kettle", "x", "spout"), 1)[0], [-0.5, -0.5, 7.5, 7.5])
    pooled = label(IMG, PartQuery("kettle", "x", "spout / handle"), 1)
    assert valid_boxes(pooled).sum() == 2
    # per-mille units (CogVLM's grounding output) scale by the image size
    path2 = _boxes_file(tmp_path, _doc(units="per_mille"), "pm.json")
    b2 = open_labeler(f"boxes:{path2}", TAX).for_asset("kettle_000", "k")(IMG, Q, 0)
    assert np.allclose(b2[0], [10 * 64 / 1000 - 0.5, 20 * 48 / 1000 - 0.5, 30 * 0.064 - 0.5,
                               40 * 0.048 - 0.5])  # fmt: skip
    path3 = _boxes_file(tmp_path, _doc(pixel_origin="center"), "c.json")
    b3 = open_labeler(f"boxes:{path3}", TAX).for_asset("kettle_000", "k")(IMG, Q, 0)
    assert np.allclose(b3[0], [10, 20, 30, 40])
    # more boxes than samples: the first S
    b4 = open_labeler(f"boxes:{path}", TAX, samples=2).for_asset("kettle_000", "k")(IMG, Q, 0)
    assert b4.shape == (2, 4) and np.isnan(b4[1]).all()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format": "boxes"}, "format: expected 'afford-boxes'"),
        ({"format_version": 2}, "format_version"),
        ({"units": "inches"}, "units"),
        ({"assets": []}, "assets: expected an object"),
        ({"assets": {"kettle_000": {"x": {}}}}, r"assets.kettle_000: view key 'x'"),
        (
            {"assets": {"kettle_000": {"0": {"pour-with": [[1, 2, 3]]}}}},
            r"assets.kettle_000.0.pour-with\[0\]: expected \[x0, y0, x1, y1\]",
        ),
        (
            {"assets": {"kettle_000": {"0": {"pour-with": [[5, 2, 3, 4]]}}}},
            r"pour-with\[0\]: x1 < x0",
        ),
        ({"assets": {"kettle_000": {"0": {"pour-with": "none"}}}}, "expected a list"),
        ({"extra": 1}, "unknown top-level keys"),
    ],
)
def test_malformed_boxes_file_names_file_and_key(tmp_path, change, match):
    path = _boxes_file(tmp_path, _doc(**change))
    with pytest.raises(DataError, match=match) as err:
        open_labeler(f"boxes:{path}", TAX)
    assert str(path) in str(err.value)


def test_boxes_file_missing_entries(tmp_path):
    path = _boxes_file(tmp_path, _doc())
    labelers = open_labeler(f"boxes:{path}", TAX)
    with pytest.raises(DataError, match="no boxes for asset 'mug_000'"):
        labelers.for_asset("mug_000", "mug")
    label = labelers.for_asset("kettle_000", "kettle")
    with pytest.raises(DataError, match="assets.kettle_000: no view 5"):
        label(IMG, Q, 5)
    with pytest.raises(DataError, match=r"assets.kettle_000.1: none of the keys"):
        label(IMG, PartQuery("kettle", "grasp", "lid"), 1)
    with pytest.raises(UsageError, match="file not found"):
        open_labeler(f"boxes:{tmp_path / 'none.json'}", TAX)


# ---------------------------------------------------------------------------------------------
# simulated


def _part_ids(n_views=6, size=48):
    pid = -np.ones((n_views, size, size), np.int16)
    pid[:, 8:40, 8:32] = 2  # body
    pid[:, 14:22, 32:44] = 0  # spout
    pid[:, 16:30, 2:8] = 1  # handle
    return pid


def test_simulated_needs_part_ids_and_matches_the_synth_labeller():
    labelers = open_labeler("simulated", TAX, samples=4)
    assert labelers.name == "simulated"
    with pytest.raises(UsageError, match="needs part_id"):
        labelers.for_asset("kettle_000", "kettle")
    pid = _part_ids()
    parts = ["nozzle", "handle", "body"]  # the spout under its alias
    label = labelers.for_asset("kettle_000", "kettle", pid, parts)
    boxes = np.stack([label(None, Q, v) for v in range(len(pid))])
    assert boxes.shape == (6, 4, 4)
    # the taxonomy maps pour-with -> spout -> the asset's part 'nozzle' (alias)
    true = np.array([31.5, 13.5, 43.5, 21.5])
    kept = [cluster_boxes(b) for b in boxes]
    near = [k is not None and np.abs(k - true).max() < 4 for k in kept]
    assert sum(near) >= 4
    # same answers as the synthetic world's SimulatedBoxLabeler seeded the same way
    sim = label.sim
    ref = SimulatedBoxLabeler(pid, parts, {"pour-with": ["nozzle"]}, sim.seed)
    assert np.array_equal(boxes[2], ref(None, Q, 2, 4), equal_nan=True)
    # explicit part names in the query win over the taxonomy
    grasp = label(None, PartQuery("kettle", "pour-with", "handle"), 0)
    assert valid_boxes(grasp).any()
    # a part name the asset lacks falls back to the taxonomy's parts of the function
    assert np.array_equal(
        label(None, PartQuery("kettle", "grasp", "lid"), 0),
        label(None, PartQuery("kettle", "grasp", "handle"), 0),
        equal_nan=True,
    )
    cup = labelers.for_asset("cup_000", "cup", pid, parts)  # no taxonomy parts for 'cup'
    with pytest.raises(UsageError, match="no part of"):
        cup(None, PartQuery("cup", "grasp", "lid"), 0)
    # another asset id -> another seed
    other = labelers.for_asset("kettle_001", "kettle", pid, parts)
    assert other.sim.seed != sim.seed


# ---------------------------------------------------------------------------------------------
# labeller boxes -> the 3-D vote aggregation


def test_boxes_file_through_vote_aggregation_reproduces_the_synth_pseudo_labels(tmp_path):
    """Boxes exported to an afford-boxes file and read back give the synthetic writer's own
    pseudo-label masks (same clustering, voting and mask rules)."""
    pytest.importorskip("trimesh")
    from afford.data.io import read_json, read_npz
    from afford.geometry.camera import backproject
    from afford.geometry.pseudolabel import pseudo_label_masks
    from afford.geometry.visible import match_to_cloud
    from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

    root = tmp_path / "ds"
    cfg = CorrSynthConfig(size="tiny", views=4, categories=["kettle"], per_category=(1, 1, 1),
                          pairs=(0, 0))  # fmt: skip
    write_correspondence_dataset(root, cfg, progress=False, contact_sheet=False)
    meta = read_json(root / "dataset.json")
    aid = meta["splits"]["train"][0]
    rec = meta["assets"][aid]
    views = read_npz(root / rec["views"])
    geom = read_npz(root / rec["geometry"])
    doc = {
        "format": "afford-boxes",
        "format_version": 1,
        "pixel_origin": "center",
        "assets": {
            aid: {
                str(v): {
                    f: [None if np.isnan(b).any() else b.tolist() for b in views["boxes"][v, fi]]
                    for fi, f in enumerate(rec["functions"])
                }
                for v in range(rec["n_views"])
            }
        },
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(doc))
    label = open_labeler(f"boxes:{path}", Taxonomy.shipped("synth"), samples=4).for_asset(
        aid, rec["category"]
    )
    pts = backproject(geom["depth"], views["K"], views["R"], views["t"])
    cloud = geom["surface_points"].astype(np.float64)
    index = match_to_cloud(pts, cloud)
    for fi, f in enumerate(rec["functions"]):
        q = PartQuery(rec["category"], f, " / ".join(rec["function_parts"][f]))
        boxes = np.stack([label(None, q, v) for v in range(rec["n_views"])])
        assert np.array_equal(boxes, views["boxes"][:, fi].astype(np.float64), equal_nan=True)
        res = pseudo_label_masks(cloud, pts, views["mask"], views["K"], views["R"], views["t"],
                                 boxes, crop_sizes=views["crop_box"][:, 2],
                                 cloud_index=index)  # fmt: skip
        assert np.array_equal(res.mask, views["pseudo_mask"][:, fi])
        assert np.array_equal(res.valid, views["pseudo_valid"][:, fi])


def test_hf_id_loads_from_the_local_hf_cache_offline(models, tmp_path, monkeypatch):
    """An HF id resolves from the hub cache layout (models--org--name/snapshots/<rev>/)."""
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-owlv2"
    rev = "0" * 40
    shutil.copytree(models["owlv2"], repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import time
    labelers = open_labeler("owlv2:someone/tiny-owlv2", TAX, samples=2, options={"threshold": 0})
    assert labelers.name == "owlv2:someone/tiny-owlv2"
    direct = open_labeler(f"owlv2:{models['owlv2']}", TAX, samples=2, options={"threshold": 0})
    a = labelers.for_asset("k", "kettle")(IMG, Q, 0)
    b = direct.for_asset("k", "kettle")(IMG, Q, 0)
    assert np.array_equal(a, b, equal_nan=True) and valid_boxes(a).all()


def test_missing_detect_extra_is_a_one_line_error(tmp_path):
    import subprocess

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    script = (
        "import sys\n"
        "sys.modules['transformers'] = None\n"
        "from afford.prepare.labelers import open_labeler\n"
        "from afford.cli import missing_extra\n"
        "try:\n"
        f"    open_labeler('owlv2:{tmp_path / 'm'}', None)\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(missing_extra(exc))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.stdout.strip() == (
        "this command needs 'transformers', from the optional 'detect' extra: "
        "pip install 'afford[detect]'"
    ), run.stderr


def test_handal_conversion_with_a_detector_labeller(models, tmp_path):
    """`afford prepare handal --labeler owlv2:MODEL`: detector boxes stored per view, then the
    3-D vote aggregation; the manifest names the labeller."""
    pytest.importorskip("trimesh")
    from tiny_bop import write_tiny_bop

    from afford.cli import main
    from afford.data.io import read_json, read_npz

    bop = write_tiny_bop(tmp_path / "handal_dataset_mugs")
    out = tmp_path / "ds"
    rc = main(["prepare", "handal", str(bop), "--out", str(out), "--objects", "1",
               "--cloud-points", "3000", "--labeler", f"owlv2:{models['owlv2']}",
               "--taxonomy", "synth", "--samples", "5"])  # fmt: skip
    assert rc == 0
    meta = read_json(out / "dataset.json")
    assert meta["pseudo_labels"]["labeler"] == f"owlv2:{models['owlv2']}"
    assert list(meta["assets"]) == ["mugs_000001"]
    v = read_npz(out / meta["assets"]["mugs_000001"]["views"])
    assert v["boxes"].shape == (3, 1, 5, 4) and v["pseudo_mask"].shape == (3, 1, 224, 224)
    b = v["boxes"][valid_boxes(v["boxes"])]
    assert len(b) and (b[:, :2] >= -0.5).all() and (b[:, 2:] <= 223.5).all()
    # masks never leave the object
    assert not (v["pseudo_mask"][:, 0] & ~v["mask"]).any()


class _PhraseDino:
    """Stands in for a Grounding DINO model: query q fires on the word tokens of phrase q
    (phrases are separated by '.'); box q is centred at x = 0.1 q + 0.1."""

    def __init__(self, tokenizer, max_text_len):
        import torch

        self.torch = torch
        self.tok = tokenizer
        self.config = SimpleNamespace(max_text_len=max_text_len)
        self.calls = []

    def __call__(self, **kw):
        torch = self.torch
        ids = kw["input_ids"][0]
        self.calls.append(self.tok.decode(ids))
        dot = ids == self.tok.convert_tokens_to_ids(".")
        special = torch.isin(ids, torch.tensor(self.tok.all_special_ids))
        phrase = torch.cumsum(dot.long(), 0) - dot.long()
        q, length = 8, self.config.max_text_len
        logits = torch.full((1, q, length), -10.0)
        for k in range(q):
            logits[0, k, : len(ids)][(phrase == k) & ~dot & ~special] = 5.0
        boxes = torch.tensor([[0.1 * k + 0.1, 0.5, 0.1, 0.2] for k in range(q)])[None]
        return SimpleNamespace(logits=logits, pred_boxes=boxes)


def test_grounding_dino_scores_each_prompt_variant_on_its_own_phrase(models):
    labelers = open_labeler(f"grounding-dino:{models['grounding-dino']}", TAX, samples=4)
    fake = _PhraseDino(labelers.processor.tokenizer, 256)
    labelers.model = fake
    got = labelers.for_asset("a", "kettle")(IMG, Q, 0)
    assert len(fake.calls) == 1  # the 4 variants are the phrases of one text
    assert fake.calls[0].count(".") == 4
    # sample s = variant s: the box of query s (x centre 0.1 s + 0.1 of 64 px, minus 0.5)
    x0 = (0.1 * np.arange(4) + 0.1 - 0.05) * 64 - 0.5
    assert np.allclose(got[:, 0], x0) and np.allclose(got[:, 1], 0.4 * 48 - 0.5)
    # a text longer than max_text_len is split into several passes; every phrase still scores
    fake2 = _PhraseDino(labelers.processor.tokenizer, 12)
    labelers.model = fake2
    two = labelers.for_asset("a", "kettle")(IMG, PartQuery("kettle", "x", "spout / handle"), 0)
    assert len(fake2.calls) > 1 and valid_boxes(two).all()

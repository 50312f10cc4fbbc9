"""The Python API on the shipped demo models: shapes, batching, inputs, transfer, policy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import afford
from afford.backbones import policy
from afford.cli import main
from afford.data.io import read_image, write_image
from afford.errors import DataError, UsageError
from afford.models import demo_checkpoint, sample_image


@pytest.fixture(scope="module")
def grounder():
    return afford.Grounder.from_checkpoint("demo", device="cpu")


@pytest.fixture(scope="module")
def corr():
    return afford.Corresponder.from_checkpoint("demo", device="cpu")


@pytest.fixture(scope="module")
def mug():
    return read_image(sample_image("mug.png"))


@pytest.fixture(scope="module")
def jug():
    return read_image(sample_image("jug.png"))


def test_import_afford_is_light_and_lazy():
    import subprocess
    import sys

    code = "import sys, afford; assert 'torch' not in sys.modules; afford.Grounder; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_predict_single_result(grounder, mug):
    assert "hold" in grounder.actions
    r = grounder.predict(mug[:100, :90], "hold")
    assert isinstance(r, afford.GroundingResult)
    assert r.heatmap.shape == (100, 90) and r.heatmap.dtype == np.float32
    assert r.heatmap.min() == 0.0 and r.heatmap.max() == pytest.approx(1.0)
    assert r.heatmap[r.peak] == r.heatmap.max()
    assert r.overlay().shape == (100, 90, 3) and r.overlay().dtype == np.uint8
    js = json.loads(json.dumps(r.to_json()))
    assert js["peak"] == list(r.peak) and js["backbones"]["dino"]["name"] == "dino-tiny-synth"


def test_batched_equals_single(grounder, mug, jug):
    imgs = [mug, jug, mug[10:, :70], jug[::2]]
    batch = grounder.predict(imgs, "pour", batch_size=3)
    assert isinstance(batch, list) and len(batch) == 4
    for img, b in zip(imgs, batch):
        s = grounder.predict(img, "pour")
        assert b.heatmap.shape == img.shape[:2]
        np.testing.assert_allclose(b.heatmap, s.heatmap, atol=1e-5)
        assert b.peak == s.peak
    assert grounder.predict((mug,), "pour")[0].heatmap.shape == mug.shape[:2]
    assert grounder.predict([], "pour") == []


def test_input_kinds_agree(grounder, mug, tmp_path):
    p = write_image(tmp_path / "m.png", mug)
    ref = grounder.predict(mug, "hold").heatmap
    for x in (str(p), p, Image.fromarray(mug), torch.from_numpy(mug).permute(2, 0, 1).float() / 255,
              torch.from_numpy(mug).permute(2, 0, 1)[None]):  # fmt: skip
        np.testing.assert_allclose(grounder.predict(x, "hold").heatmap, ref, atol=1e-5)


def test_unknown_action_lists_known(grounder, mug):
    with pytest.raises(UsageError, match="known actions: .*hold"):
        grounder.predict(mug, "fly")


def test_match_points_and_both_directions(corr, mug, jug):
    assert "pour-with" in corr.functions
    pts = np.array([[40.0, 60.0], [70.0, 64.0], [90.0, 30.0]])
    m = corr.match(mug, jug, "pour-with", points=pts, both_directions=True)
    assert m.source_points.shape == (3, 2) and m.target_points.shape == (3, 2)
    np.testing.assert_array_equal(m.source_points, pts)
    assert (m.target_points >= -0.5).all() and (m.target_points <= 127.5).all()
    assert m.scores.shape == (3,) and (np.abs(m.scores) <= 1 + 1e-6).all()
    assert m.reverse_scores.shape == (3,) and m.cycle_errors.shape == (3,)
    assert corr.match(mug, jug, "pour-with", points=pts).reverse_scores is None
    assert m.overlay().shape == (128, 256, 3)
    dense = corr.match(mug, jug, "pour-with")  # default: a grid on A's object
    assert 10 <= len(dense) <= 64


def test_discover_ranked(corr, mug, jug):
    d = corr.discover(mug, jug, "grasp", top_k=12)
    assert 1 <= len(d) <= 12 and d.mode == "discovery"
    assert (np.diff(d.cycle_scores) <= 1e-9).all()  # best first
    np.testing.assert_array_equal(d.scores, d.cycle_scores)
    assert json.loads(json.dumps(d.to_json()))["n"] == len(d)


def test_transfer_points_and_heatmap(corr, grounder, mug, jug):
    pts = [[50, 60]]
    t = afford.transfer(mug, jug, "grasp", corresponder=corr, points=pts)
    m = corr.match(mug, jug, "grasp", points=pts)
    np.testing.assert_allclose(t.points, m.target_points)
    g = grounder.predict(mug, "hold")
    ts = afford.transfer(mug, [jug, jug[:100]], "grasp", corresponder=corr, heatmap=g)
    assert [x.heatmap.shape for x in ts] == [(128, 128), (100, 128)]
    for x in ts:
        assert 0.0 <= x.heatmap.min() and x.heatmap.max() <= 1.0
        assert x.overlay().shape == (*x.heatmap.shape, 3)
    # a heatmap that is 1 on one spot only comes out concentrated, not everywhere
    spot = np.zeros(mug.shape[:2], np.float32)
    spot[60:70, 55:65] = 1
    one = afford.transfer(mug, jug, "grasp", corresponder=corr, heatmap=spot)
    assert 0 < (one.heatmap > 0.5).mean() < 0.2
    with pytest.raises(UsageError, match="exactly one"):
        afford.transfer(mug, jug, "grasp", corresponder=corr)


def _tampered(tmp_path, task: str, role: str):
    dst = tmp_path / f"ck-{task}"
    shutil.copytree(demo_checkpoint(task), dst)
    meta = json.loads((dst / "config.json").read_text())
    meta["config"]["backbones"][role]["digest"] = "sha256:" + "0" * 64
    (dst / "config.json").write_text(json.dumps(meta))
    return dst


def test_backbone_mismatch_is_an_error_unless_allowed(tmp_path, mug):
    ck = _tampered(tmp_path, "grounding", "dino")
    with pytest.raises(UsageError, match=r"trained with dino backbone dino-tiny-synth .* loaded"):
        afford.Grounder.from_checkpoint(ck, device="cpu")
    g = afford.Grounder.from_checkpoint(ck, device="cpu", allow_backbone_mismatch=True)
    assert g.predict(mug, "hold").heatmap.shape == mug.shape[:2]
    ck = _tampered(tmp_path, "correspondence", "dinov2")
    with pytest.raises(UsageError, match="dinov2 backbone"):
        afford.Corresponder.from_checkpoint(ck, device="cpu")
    afford.Corresponder.from_checkpoint(ck, device="cpu", allow_backbone_mismatch=True)
    rc = main(["ground", str(sample_image()), "--action", "hold", "--checkpoint", str(ck),
               "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 1  # a correspondence checkpoint given to ground: DataError


def test_digest_is_of_the_tensors_not_the_file(tmp_path):
    from afford.backbones import load_dinov2, save_weights

    src = load_dinov2(variant="tiny-synth")
    save_weights(src, tmp_path / "w.safetensors")
    save_weights(src, tmp_path / "w.pth")
    a = load_dinov2(tmp_path / "w.safetensors", variant="tiny")
    b = load_dinov2(tmp_path / "w.pth", variant="tiny")
    assert a.model_id != b.model_id  # different files ...
    assert policy.digest(a) == policy.digest(b) == policy.digest(src)  # ... same weights
    assert policy.digest(load_dinov2(variant="tiny")).startswith("random-init:")
    assert policy.digest(load_dinov2(variant="tiny")) != policy.digest(a)


def test_wrong_task_and_missing_checkpoint():
    with pytest.raises(DataError, match="a correspondence checkpoint, not a grounding"):
        afford.Grounder.from_checkpoint(demo_checkpoint("correspondence"))
    with pytest.raises(DataError, match="a grounding checkpoint, not a correspondence"):
        afford.Corresponder.from_checkpoint(demo_checkpoint("grounding"))
    with pytest.raises(DataError, match="not found"):
        afford.Grounder.from_checkpoint("/nonexistent/ckpt")


def test_cli_ground_batch_writes_per_image_files(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for n in ("mug.png", "jug.png", "kettle.png"):
        shutil.copy(sample_image(n), imgs / n)
    out = tmp_path / "out"
    assert main(["ground", str(imgs), "--action", "hold", "--out", str(out),
                 "--batch-size", "2"]) == 0  # fmt: skip
    for stem in ("mug", "jug", "kettle"):
        js = json.loads((out / f"{stem}.json").read_text())
        heat = np.load(out / f"{stem}.npy")
        assert heat.shape == (128, 128) and js["peak"] == list(
            np.unravel_index(heat.argmax(), heat.shape)
        )
        assert read_image(out / f"{stem}.png").shape == (128, 128, 3)
        assert js["checkpoint"].endswith("demo-grounding") and "digest" in js["backbones"]["dino"]
    assert json.loads((out / "results.json").read_text())["n"] == 3
    capsys.readouterr()
    assert main(["ground", str(imgs), "--action", "hold", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_correspond_writes_json_and_npy(tmp_path):
    out = tmp_path / "c"
    rc = main(["correspond", str(sample_image("mug.png")), str(sample_image("jug.png")),
               str(sample_image("kettle.png")), "--function", "pour-with", "--points", "40,60",
               "70,64", "--both-directions", "--out", str(out)])  # fmt: skip
    assert rc == 0
    js = json.loads((out / "mug__jug.json").read_text())
    table = np.load(out / "mug__jug.npy")
    assert table.shape == (2, 5) and js["source_points"] == [[40.0, 60.0], [70.0, 64.0]]
    np.testing.assert_allclose(table[:, 2:4], js["target_points"], atol=1e-3)
    assert len(js["reverse_scores"]) == 2 and (out / "mug__kettle.png").is_file()

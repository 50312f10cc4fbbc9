"""``afford export``: the ONNX files run in onnxruntime and give PyTorch's numbers (1e-4) on
the coffee photo, through the task code's own inference path; one-line errors."""

import json

import numpy as np
import pytest
import torch
from tiny_models import coffee_224

from afford.cli import main
from afford.export.onnx import read_metadata, run_onnx, session, to_input

pytest.importorskip("onnxruntime")

TOL = 1e-4


def _export(task, ckpt, out, *extra):
    return main(["export", task, "--format", "onnx", "--out", str(out), "--checkpoint",
                 str(ckpt), *extra])  # fmt: skip


def test_grounding_onnx_equals_pytorch_on_coffee(grounding_ckpt, tmp_path, capsys):
    from afford.grounding.affinity import image_affinity
    from afford.grounding.build import load_trained
    from afford.grounding.prompts import action_prompt

    out = tmp_path / "g.onnx"
    assert _export("grounding", grounding_ckpt, out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["max_abs_diff"] < TOL and summary["outputs"] == ["heatmap"]
    meta = read_metadata(out)
    assert meta["afford.task"] == "grounding"
    actions = json.loads(meta["afford.queries"])
    assert actions == ["cut_with", "hold"]

    # PyTorch through the task code (what `afford ground` computes)
    model, _, dino, clip = load_trained(grounding_ckpt, "cpu", with_clip=True)
    img = coffee_224()
    x = torch.from_numpy(to_input(img))
    sess = session(out)
    heats = []
    for i, action in enumerate(actions):
        with torch.no_grad():
            s_ego = image_affinity(clip, x, [action_prompt(action)])
            ref = model.heatmap(dino(x)["keys"], torch.tensor([i]), s_ego).numpy()
        (got,) = run_onnx(sess, "grounding", img, i)
        assert got.shape == ref.shape == (1, 14, 14)
        np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
        heats.append(got)
    # the action input is live in the graph, not folded into a constant
    assert np.abs(heats[0] - heats[1]).max() > 1e-2
    # dynamic batch: two images in one call equal two calls
    both = sess.run(
        None,
        {"image": np.concatenate([x.numpy(), x.numpy()[:, :, ::-1].copy()]),
         "action": np.array([1, 1])},
    )[0]  # fmt: skip
    np.testing.assert_allclose(both[0], heats[1][0], atol=TOL, rtol=0)


def test_correspondence_onnx_equals_pytorch_on_coffee(corr_ckpt, tmp_path, capsys):
    from afford.correspondence.baselines import ModelRow
    from afford.correspondence.train import load_trained

    out = tmp_path / "c.onnx"
    assert _export("correspondence", corr_ckpt, out) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] < TOL
    meta = read_metadata(out)
    functions = json.loads(meta["afford.queries"])
    assert meta["afford.task"] == "correspondence" and functions == ["hold", "pour-with"]

    model, dino, clip, fns, _ = load_trained(corr_ckpt, "cpu")
    row = ModelRow(model, dino, clip, fns)  # the features `afford correspond` matches
    img = coffee_224()
    mask = np.ones(img.shape[:2], bool)
    sess = session(out)
    feats = []
    for i, fn in enumerate(functions):
        ref = row.features(img, mask, fn)["feat"].numpy()  # (O,224,224)
        (got,) = run_onnx(sess, "correspondence", img, i)
        assert got.shape == (1, *ref.shape) and ref.shape[1:] == (224, 224)
        np.testing.assert_allclose(got[0], ref, atol=TOL, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got[0], axis=0), 1.0, atol=1e-4)
        feats.append(got[0])
    assert np.abs(feats[0] - feats[1]).max() > 1e-3  # the function conditions the features


def test_export_errors_are_one_line(grounding_ckpt, corr_ckpt, tmp_path, capsys):
    def err(*args):
        capsys.readouterr()
        rc = main(["export", *args])
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("afford: error:") and "\n" not in msg, msg
        return rc, msg

    out = str(tmp_path / "m.onnx")
    rc, msg = err("grounding", "--format", "tflite", "--out", out, "--checkpoint",
                  str(grounding_ckpt))  # fmt: skip
    assert rc == 2 and "--format 'tflite'" in msg and "onnx" in msg
    rc, msg = err("grounding", "--out", out, "--checkpoint", str(tmp_path / "missing"))
    assert rc == 1 and "--checkpoint" in msg and "missing" in msg
    rc, msg = err("grounding", "--out", str(tmp_path / "m.pt"), "--checkpoint",
                  str(grounding_ckpt))  # fmt: skip
    assert rc == 2 and ".onnx" in msg
    (tmp_path / "m.onnx").write_bytes(b"old")
    rc, msg = err("grounding", "--out", out, "--checkpoint", str(grounding_ckpt))
    assert rc == 2 and "--overwrite" in msg
    assert (tmp_path / "m.onnx").read_bytes() == b"old"  # untouched
    # a checkpoint of the other task
    rc, msg = err("grounding", "--out", str(tmp_path / "w.onnx"), "--checkpoint",
                  str(corr_ckpt))  # fmt: skip
    assert rc in (1, 2) and str(corr_ckpt) in msg
    assert not (tmp_path / "w.onnx").exists()

"""``afford export``: the ONNX files of the shipped (tiny) demo models run in onnxruntime and
give PyTorch's numbers (1e-4) on the coffee photo, through the Python API / the task code's
own inference path; one-line errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from coffee import coffee_224  # noqa: E402

from afford.cli import main  # noqa: E402
from afford.export.onnx import read_metadata, run_onnx, session, to_input  # noqa: E402
from afford.models import demo_checkpoint  # noqa: E402

pytest.importorskip("onnxruntime")

TOL = 1e-4


def _export(task, out, *extra):
    return main(["export", task, "--format", "onnx", "--out", str(out), *extra])


def test_grounding_onnx_equals_pytorch_on_coffee(tmp_path, capsys):
    import afford

    out = tmp_path / "g.onnx"
    assert _export("grounding", out) == 0  # default --checkpoint: the shipped demo model
    summary = json.loads(capsys.readouterr().out)
    assert summary["max_abs_diff"] < TOL and summary["outputs"] == ["heatmap"]
    meta = read_metadata(out)
    assert meta["afford.task"] == "grounding"
    grounder = afford.Grounder.from_checkpoint("demo", device="cpu")
    actions = json.loads(meta["afford.queries"])
    assert actions == grounder.actions and len(actions) >= 2

    img = coffee_224()
    sess = session(out)
    heats = []
    for i, action in enumerate(actions):
        ref = grounder.predict(img, action).grid  # the API's raw (h,w) map, PyTorch
        (got,) = run_onnx(sess, "grounding", img, i)
        assert got.shape == (1, *ref.shape) == (1, 14, 14)
        np.testing.assert_allclose(got[0], ref, atol=TOL, rtol=0)
        heats.append(got[0])
    # the action input is live in the graph, not folded into a constant
    assert max(np.abs(h - heats[0]).max() for h in heats[1:]) > 1e-2
    # dynamic batch: two images in one call equal two calls
    x = to_input(img)
    both = sess.run(
        None, {"image": np.concatenate([x[:, :, ::-1].copy(), x]), "action": np.array([1, 1])}
    )[0]
    np.testing.assert_allclose(both[1], heats[1], atol=TOL, rtol=0)
    assert np.abs(both[0] - both[1]).max() > 1e-3


def test_correspondence_onnx_equals_pytorch_on_coffee(tmp_path, capsys):
    from afford.correspondence.baselines import ModelRow
    from afford.correspondence.train import load_trained

    out = tmp_path / "c.onnx"
    ckpt = demo_checkpoint("correspondence")
    assert _export("correspondence", out, "--checkpoint", str(ckpt)) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] < TOL
    meta = read_metadata(out)
    functions = json.loads(meta["afford.queries"])
    model, dino, clip, fns, _ = load_trained(ckpt, "cpu")
    assert meta["afford.task"] == "correspondence" and functions == fns
    row = ModelRow(model, dino, clip, fns)  # the features `afford correspond` matches
    img = coffee_224()
    mask = np.ones(img.shape[:2], bool)
    sess = session(out)
    feats = []
    for i, fn in list(enumerate(functions))[:3]:
        ref = row.features(img, mask, fn)["feat"].numpy()  # (O,224,224)
        (got,) = run_onnx(sess, "correspondence", img, i)
        assert got.shape == (1, *ref.shape) and ref.shape[1:] == (224, 224)
        np.testing.assert_allclose(got[0], ref, atol=TOL, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got[0], axis=0), 1.0, atol=1e-4)
        feats.append(got[0])
    # the function conditions the features
    assert max(np.abs(f - feats[0]).max() for f in feats[1:]) > 1e-3


def test_export_errors_are_one_line(tmp_path, capsys):
    grounding_ckpt = demo_checkpoint("grounding")
    corr_ckpt = demo_checkpoint("correspondence")

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


def test_missing_export_extra_is_a_one_line_error(tmp_path):
    import subprocess

    script = (
        "import sys; sys.modules['onnx'] = None\n"
        "from afford.cli import main\n"
        f"sys.exit(main(['export', 'grounding', '--out', {str(tmp_path / 'g.onnx')!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "afford: error: this command needs 'onnx', from the optional 'export' extra: "
        "pip install 'afford[export]'"
    )

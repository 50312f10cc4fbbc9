"""The table of bad (and odd but valid) inputs of the ``afford`` command, and how one is run.

Shared by ``tests/fuzz/test_cli_fuzz.py`` (one pytest case per row) and
``benchmarks/reliability.py`` (the table of outcomes in ``docs/reliability.md``).

A case is an ``afford`` command line with ``{w}`` standing for the fuzz world (a folder of
broken images, checkpoints, configs and datasets written by :func:`build_world`) and the
expected outcome:

- ``code`` 2 (usage) or 1 (data): the command must exit with it, print one line
  ``afford...: error: ...`` naming ``needle`` (the file or argument) and no traceback;
- ``code`` 0: an odd input that must work (grey, RGBA, 16-bit images, ...); ``check`` then
  verifies the output (a wrong or missing output is a *silent wrong output*).

``guard`` lists files (relative to the world) that hold earlier results: they must come out
byte-identical whatever the command did.  Outcomes (:func:`run_case`): ``clear`` (as
expected), ``traceback`` (also the one-line ``afford: internal error:`` the CLI prints for an
unexpected exception without ``-v``), ``hang`` (over the time limit), ``silent`` (exit 0 where an error
was due, a failed ``check``, a changed guarded file), ``unclear`` (wrong exit code, several
lines, or the error does not name the file / argument).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import pickle
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
TIME_LIMIT_S = 120
#: The file a pickle payload creates when it is unpickled (it must never appear).
PWNED = "PWNED"


# ---------------------------------------------------------------------------- the world
class _Payload:
    """Unpickling this calls ``open(<world>/PWNED, "w")``: a file appears if code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


def payload_bytes(target: Path) -> bytes:
    """A plain pickle that creates ``target`` when loaded."""
    return pickle.dumps({"state_dict": _Payload(str(target))}, protocol=2)


def write_torch_payload(path: Path, target: Path) -> Path:
    """A ``torch.save`` zip archive whose ``data.pkl`` creates ``target`` when loaded."""
    import torch

    torch.save({"state_dict": _Payload(str(target))}, str(path))
    return path


def write_torchscript_payload(path: Path, target: Path) -> Path:
    """A zip that looks like a TorchScript archive (``constants.pkl``, ``code/``) whose pickles
    create ``target`` when loaded by a plain unpickler."""
    import zipfile

    plain = path.with_suffix(".tmp.pth")
    write_torch_payload(plain, target)
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(path, "w") as o:
        prefix = z.namelist()[0].split("/")[0]
        for n in z.namelist():
            o.writestr(n, z.read(n))
        o.writestr(f"{prefix}/constants.pkl", z.read(f"{prefix}/data.pkl"))
        o.writestr(f"{prefix}/code/__torch__.py", "def f(x):\n    return x\n")
    plain.unlink()
    return path


def write_npz_payload(path: Path, target: Path) -> Path:
    """An ``.npz`` whose one array is an object array (stored as a pickle) creating
    ``target`` when loaded with ``allow_pickle=True``."""
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(str(target))
    np.savez(path, points1=arr)
    return path


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(path)
    return path


def build_world(w: Path) -> Path:
    """Write every input the cases refer to under ``w`` (a few MB, a few seconds)."""
    from afford.models import demo_checkpoint, sample_image

    w.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(w / "out", ignore_errors=True)  # outputs of an earlier run of the cases
    (w / PWNED).unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    img = w / "img"
    mug = np.asarray(Image.open(sample_image()).convert("RGB"))
    _png(img / "good.png", mug)
    _png(img / "good2.png", np.asarray(Image.open(sample_image("jug.png")).convert("RGB")))
    _png(img / "gray.png", mug[..., 1])
    _png(img / "rgba.png", np.concatenate([mug, np.full((*mug.shape[:2], 1), 200, np.uint8)], 2))
    _png(img / "pal.png", mug, "P")
    g16 = (mug[..., 1].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(g16).save(img / "g16.png")  # mode I;16
    _png(img / "one.png", np.zeros((1, 1, 3), np.uint8))
    _png(img / "wide.png", rng.integers(0, 256, (3, 700, 3), dtype=np.uint8))
    _png(img / "tall.png", rng.integers(0, 256, (600, 4, 3), dtype=np.uint8))
    _png(img / "huge_side.png", np.zeros((2, 20000), np.uint8))
    Image.fromarray(mug).convert("CMYK").save(img / "cmyk.jpg")
    Image.fromarray(mug).save(img / "good.jpg", quality=90)
    (img / "zero.png").write_bytes(b"")
    data = (img / "good.png").read_bytes()
    (img / "trunc.png").write_bytes(data[: len(data) // 2])
    jdata = (img / "good.jpg").read_bytes()
    (img / "trunc.jpg").write_bytes(jdata[: len(jdata) // 3])
    (img / "text.png").write_text("this is not a picture\n")
    (img / "pickle.png").write_bytes(payload_bytes(w / PWNED))
    (w / "noimg").mkdir(exist_ok=True)
    (w / "noimg" / "readme.txt").write_text("no images here\n")
    (w / "empty").mkdir(exist_ok=True)
    (w / "afile").write_text("a regular file\n")
    _png(w / "mask" / "empty.png", np.zeros(mug.shape[:2], np.uint8))
    _png(w / "mask" / "small.png", np.full((5, 5), 255, np.uint8))

    # checkpoints: the shipped demo models and broken copies of them
    ck = w / "ck"
    for task, name in (("grounding", "gr"), ("correspondence", "co")):
        if not (ck / name).is_dir():
            shutil.copytree(demo_checkpoint(task), ck / name)
    for name, how in (("gr_trunc", "trunc"), ("gr_pickle", "pickle"), ("gr_json", "json"),
                      ("gr_nojson", "nojson"), ("co_trunc", "trunc"), ("co_pickle", "pickle"),
                      ("gr_empty", "empty")):  # fmt: skip
        dst = ck / name
        if dst.is_dir():
            continue
        shutil.copytree(ck / name[:2], dst)
        weights = dst / "model.safetensors"
        if how == "trunc":
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        elif how == "pickle":
            weights.write_bytes(payload_bytes(w / PWNED))
        elif how == "json":
            (dst / "config.json").write_text('{"format": 1, "config": ')
        elif how == "nojson":
            (dst / "config.json").unlink()
        elif how == "empty":
            weights.write_bytes(b"")
    (w / "released").mkdir(exist_ok=True)
    (w / "released" / "legacy.pth").write_bytes(payload_bytes(w / PWNED))
    write_torch_payload(w / "released" / "zip.pth", w / PWNED)
    write_torchscript_payload(w / "released" / "ts.pt", w / PWNED)
    (w / "released" / "zero.pth").write_bytes(b"")
    (w / "released" / "text.pth").write_text("not a checkpoint\n")
    (w / "released" / "pickle.safetensors").write_bytes(payload_bytes(w / PWNED))
    shutil.copy(ck / "gr" / "model.safetensors", w / "released" / "ours.pth")

    # configs
    cfg = w / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "unknown.yaml").write_text("train:\n  epochz: 3\n")
    (cfg / "nan.yaml").write_text("train:\n  lr: .nan\n")
    (cfg / "list.yaml").write_text("- 1\n- 2\n")
    (cfg / "garbage.yaml").write_text("train: [1, 2\n")
    (cfg / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81garbage")
    (cfg / "section.yaml").write_text("train: 3\n")
    (cfg / "pickle.yaml").write_text(
        f"!!python/object/apply:builtins.open [{str(w / PWNED)!r}, 'w']\n"
    )

    # datasets
    aff = w / "aff"
    (aff / "empty").mkdir(parents=True, exist_ok=True)
    nogt = aff / "nogt" / "testset" / "egocentric" / "hold" / "cup"
    _png(nogt / "cup_000001.png", mug)
    _png(aff / "noexo" / "trainset" / "egocentric" / "hold" / "cup" / "a.png", mug)
    _png(aff / "nogt" / "trainset" / "egocentric" / "hold" / "cup" / "a.png", mug)
    _png(aff / "nogt" / "trainset" / "exocentric" / "hold" / "cup" / "b.png", mug)
    corr = w / "corr"
    if not (corr / "tiny" / "dataset.json").is_file():
        sys.path.insert(0, str(HERE.parent / "correspondence"))
        from tiny_data import write_tiny_dataset

        write_tiny_dataset(corr / "tiny")
    for name in ("nopairs", "badjson", "noviews"):
        if not (corr / name).is_dir():
            shutil.copytree(corr / "tiny", corr / name)
    (corr / "nopairs" / "eval_pairs.json").unlink(missing_ok=True)
    (corr / "badjson" / "dataset.json").write_text("{ truncated")
    if not (corr / "npzpickle").is_dir():
        shutil.copytree(corr / "tiny", corr / "npzpickle")
    for f in (corr / "npzpickle" / "eval").glob("*.npz"):
        write_npz_payload(f, w / PWNED)
    shutil.rmtree(corr / "noviews" / "assets", ignore_errors=True)
    (corr / "empty").mkdir(exist_ok=True)

    # folders already holding results (guarded: must survive every command byte for byte)
    res = w / "results"
    res.mkdir(exist_ok=True)
    (res / "results.json").write_text('{"earlier": "results"}\n')
    (res / "hold.png").write_bytes(data)
    sd = w / "synth_done"
    sd.mkdir(exist_ok=True)
    (sd / "dataset.json").write_text(
        json.dumps({"generator": "afford.synth.affordance", "format": "afford-correspondence"})
    )
    (sd / "keep.txt").write_text("earlier dataset\n")
    dd = w / "demo_done"
    dd.mkdir(exist_ok=True)
    (dd / "results.json").write_text('{"earlier": "demo"}\n')
    (dd / "report.md").write_text("# earlier report\n")
    (w / "weights.safetensors").write_bytes(b"earlier weights")
    (w / "model.onnx").write_bytes(b"earlier onnx")
    (w / "dir.onnx").mkdir(exist_ok=True)
    _build_prepare_world(w)
    _build_handal_world(w)
    return w


#: ``afford prepare correspondence`` options of the fuzz world (tiny renders: ~0.5 s an asset).
PREP_OPTS = "--views 2 --image-size 24 --cloud-points 200 --no-progress"
TAXONOMY = {"format": "afford-taxonomy", "format_version": 1, "name": "fuzz",
            "functions": ["grasp"], "parts": {"mug": {"body": [], "handle": ["grasp"]}}}  # fmt: skip


def _box_obj(lo, hi, first: int) -> list[str]:
    """OBJ lines of an axis-aligned box (vertex numbers from ``first``)."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    v = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0),
         (x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)]  # fmt: skip
    f = [(1, 3, 2), (1, 4, 3), (5, 6, 7), (5, 7, 8), (1, 2, 6), (1, 6, 5),
         (2, 3, 7), (2, 7, 6), (3, 4, 8), (3, 8, 7), (4, 1, 5), (4, 5, 8)]  # fmt: skip
    return [f"v {a} {b} {c}" for a, b, c in v] + [
        f"f {a + first} {b + first} {c + first}" for a, b, c in f
    ]


def mug_obj(shift: float = 0.0) -> str:
    """A tiny two-part mesh (objects ``body`` and ``handle``, 24 triangles) as OBJ text."""
    body = _box_obj((-0.4, -0.4 + shift, -0.4), (0.2, 0.4, 0.4), 0)
    handle = _box_obj((0.2, -0.1, -0.2), (0.45, 0.1, 0.2 + shift), 8)
    return "\n".join(["o body", *body, "o handle", *handle]) + "\n"


def _build_prepare_world(w: Path) -> None:
    """Inputs of ``afford prepare correspondence`` / ``eval-pairs`` (``{w}/prep``)."""
    from afford.cli import main

    p = w / "prep"
    shutil.rmtree(p, ignore_errors=True)
    p.mkdir()
    pk = payload_bytes(w / PWNED)
    (p / "tax.json").write_text(json.dumps(TAXONOMY))
    (p / "tax_bad.json").write_text('{"format": "afford-taxonomy", "functions": ')
    (p / "tax_unknown.json").write_text(json.dumps({**TAXONOMY, "colours": {"mug": "red"}}))
    (p / "tax_list.json").write_text("[1, 2, 3]\n")
    (p / "tax_pickle.json").write_bytes(pk)
    (p / "tax_bad.yaml").write_text("functions: [grasp\n")
    (p / "tax.txt").write_text(json.dumps(TAXONOMY))
    (p / "tax_nomug.json").write_text(json.dumps({**TAXONOMY, "parts": {"cup": {"rim": []}}}))
    (p / "good").mkdir()
    (p / "good" / "m1---mug.obj").write_text(mug_obj())
    (p / "two").mkdir()
    (p / "two" / "m1---mug.obj").write_text(mug_obj())
    (p / "two" / "m7---mug.obj").write_text(mug_obj(0.1))
    mixed = p / "mixed"
    mixed.mkdir()
    (mixed / "m1---mug.obj").write_text(mug_obj())
    (mixed / "m2---mug.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage that is no mesh")
    (mixed / "m3---mug.obj").write_bytes(b"")
    (mixed / "m4---mug.ply").write_bytes(pk)
    (mixed / "m5---mug.fbx").write_bytes(b"Kaydara FBX Binary  \x00")
    (mixed / "nocat.obj").write_text(mug_obj())
    (mixed / "copy").mkdir()
    (mixed / "copy" / "m1---mug.obj").write_text(mug_obj(0.1))  # the id of another asset
    for name, files in (("onlybad", {"m2---mug.glb": b"glTF garbage"}),
                        ("zeroonly", {"z---mug.obj": b""}),
                        ("pickleonly", {"p---mug.glb": pk}),
                        ("fbxonly", {"x---mug.fbx": b"Kaydara FBX Binary  \x00"})):  # fmt: skip
        (p / name).mkdir()
        for f, data in files.items():
            (p / name / f).write_bytes(data)
    (p / "manifest_pickle.json").write_bytes(pk)
    (p / "manifest_bad.csv").write_text("path,kind\nm1---mug.obj,mug\n")
    (p / "boxes_bad.json").write_text('{"format": "afford-boxes", "assets": {')
    (p / "boxes_pickle.json").write_bytes(pk)
    (p / "boxes_unknown.json").write_text(
        json.dumps({"format": "afford-boxes", "format_version": 1, "assets": {}, "boxen": 1})
    )
    (p / "boxes_list.json").write_text("[[0, 0, 4, 4]]\n")
    (p / "owlv2_empty").mkdir()
    # a finished preparation (guarded) and one with different options
    tax = str(p / "tax.json")
    for name in ("done", "done2"):
        argv = ["prepare", "correspondence", "--assets", str(p / "good"), "--taxonomy", tax,
                "--labeler", "simulated", "--out", str(p / name), *PREP_OPTS.split()]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(argv) == 0, argv
    # a run killed in the middle of an asset: its temporary folder is left behind
    (p / "done2" / "assets" / ".tmp-m7" / "rgb").mkdir(parents=True)
    (p / "done2" / "assets" / ".tmp-m7" / "rgb" / "00.png").write_bytes(b"half")

    # afford prepare eval-pairs
    eye = np.eye(4).tolist()
    box = {"center": [0, 0, 0], "size": [0.2, 0.2, 0.2]}
    good_pair = {"function": "grasp", "source": "ghost", "target": "cup_004", "T": eye,
                 "source_box": box, "target_box": box}  # fmt: skip
    al = {"format": "afford-alignments", "format_version": 1, "pairs": [good_pair]}
    (p / "align_ghost.json").write_text(json.dumps(al))
    (p / "align_bad.json").write_text('{"format": "afford-alignments", "pairs": [')
    (p / "align_pickle.json").write_bytes(pk)
    (p / "align_unknown.json").write_text(json.dumps({**al, "pears": []}))
    (p / "align_empty.json").write_text(json.dumps({**al, "pairs": []}))
    (p / "align_T.json").write_text(
        json.dumps({**al, "pairs": [{**good_pair, "T": [[1, 0], [0, 1]]}]})
    )
    (p / "align_nan.json").write_text(
        json.dumps({**al, "pairs": [{**good_pair, "T": [[float("nan")] * 4] * 4}]})
    )
    (p / "align_string.json").write_text('"pairs"\n')


def _build_handal_world(w: Path) -> None:
    """HANDAL (BOP layout) folders with one thing wrong each (``{w}/handal``)."""
    h = w / "handal"
    shutil.rmtree(h, ignore_errors=True)
    pk = payload_bytes(w / PWNED)
    ply = _ply_box()
    gt = {"0": [{"cam_R_m2c": np.eye(3).ravel().tolist(), "cam_t_m2c": [0, 0, 400], "obj_id": 1}]}
    cam = {"0": {"cam_K": [200, 0, 16, 0, 200, 12, 0, 0, 1], "depth_scale": 1.0}}

    def tree(name: str, *, model: bytes | None = ply, gt_text: str | bytes | None = None,
             split: bool = True) -> Path:  # fmt: skip
        root = h / name
        if model is not None:
            (root / "models").mkdir(parents=True)
            (root / "models" / "obj_000001.ply").write_bytes(model)
        if split:
            scene = root / "test" / "000001"
            _png(scene / "rgb" / "000000.png", np.full((24, 32, 3), 128, np.uint8))
            _png(scene / "mask_visib" / "000000_000000.png", np.full((24, 32), 255, np.uint8))
            (scene / "scene_camera.json").write_text(json.dumps(cam))
            if gt_text is not None:
                g = scene / "scene_gt.json"
                g.write_bytes(gt_text) if isinstance(gt_text, bytes) else g.write_text(gt_text)
        root.mkdir(parents=True, exist_ok=True)
        return root

    tree("nogt")
    tree("badgt", gt_text='{"0": [{"cam_R_m2c": ')
    tree("picklegt", gt_text=pk)
    tree("listgt", gt_text="[1, 2, 3]")
    tree("noobjid", gt_text=json.dumps({"0": [{"cam_R_m2c": [1, 0, 0]}]}))
    tree("nomodels", model=None, gt_text=json.dumps(gt))
    tree("nosplit", split=False)
    tree("badply", model=b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n",
         gt_text=json.dumps(gt))  # fmt: skip
    tree("pickleply", model=pk, gt_text=json.dumps(gt))
    tree("ok", gt_text=json.dumps(gt))


def _ply_box() -> bytes:
    """An ASCII PLY of a 40 mm cube (the HANDAL model of the fuzz world)."""
    v = [(x, y, z) for z in (-20, 20) for y in (-20, 20) for x in (-20, 20)]
    f = [(0, 2, 1), (1, 2, 3), (4, 5, 6), (5, 7, 6), (0, 1, 4), (1, 5, 4),
         (2, 6, 3), (3, 6, 7), (0, 4, 2), (2, 4, 6), (1, 3, 5), (3, 7, 5)]  # fmt: skip
    head = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x",
            "property float y", "property float z", f"element face {len(f)}",
            "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    body = [f"{a} {b} {c}" for a, b, c in v] + [f"3 {a} {b} {c}" for a, b, c in f]
    return ("\n".join(head + body) + "\n").encode()


# ---------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One command line and its expected outcome (module docstring)."""

    id: str
    argv: tuple[str, ...]
    code: int
    needle: str = ""
    group: str = ""
    guard: tuple[str, ...] = ()
    check: Callable[[Path], str | None] | None = field(default=None, compare=False)

    def args(self, w: Path) -> list[str]:
        return [a.replace("{w}", str(w)) for a in self.argv]


def _ground_ok(out: str, image: str) -> Callable[[Path], str | None]:
    """The check of a grounding run on one odd image: heatmap at the image's size, finite."""

    def check(w: Path) -> str | None:
        from afford.data.io import read_image

        o = w / "out" / out
        stem = Path(image).stem
        if not (o / "results.json").is_file():
            return f"{o}/results.json missing"
        hm = np.load(o / f"{stem}.npy")
        h, w_ = read_image(w / "img" / image).shape[:2]
        if hm.shape != (h, w_) or not np.isfinite(hm).all():
            return f"heatmap {hm.shape} for an image of {h}x{w_}, or not finite"
        return None

    return check


def _corr_ok(out: str) -> Callable[[Path], str | None]:
    def check(w: Path) -> str | None:
        o = w / "out" / out
        res = json.loads((o / "results.json").read_text()) if (o / "results.json").is_file() else 0
        if not res or res["n"] < 1:
            return f"{o}/results.json missing or empty"
        return None

    return check


def _c(group: str, id_: str, argv: str | list[str], code: int, needle: str = "", **kw) -> Case:
    args = argv.split() if isinstance(argv, str) else argv
    return Case(f"{group}:{id_}", tuple(args), code, needle, group, **kw)


def _set_cases() -> list[Case]:
    """Bad ``--set`` values on the three training commands and the eval config."""
    bad = [
        ("epochs-abc", "train.epochs=abc", "train.epochs"),
        ("epochs-float", "train.epochs=2.5", "train.epochs"),
        ("epochs-neg", "train.epochs=-3", "train.epochs"),
        ("epochs-zero", "train.epochs=0", "train.epochs"),
        ("epochs-bool", "train.epochs=true", "train.epochs"),
        ("lr-fast", "train.lr=fast", "train.lr"),
        ("lr-nan", "train.lr=nan", "train.lr"),
        ("lr-inf", "train.lr=inf", "train.lr"),
        ("lr-neg", "train.lr=-1e-3", "train.lr"),
        ("lr-list", "train.lr=[1,2]", "train.lr"),
        ("seed-neg", "train.seed=-1", "train.seed"),
        ("wd-neginf", "train.weight_decay=-inf", "train.weight_decay"),
        ("unknown-key", "train.epochz=3", "train.epochz"),
        ("unknown-section", "trian.epochs=3", "trian"),
        ("not-section", "train.epochs.x=1", "train.epochs"),
        ("no-equals", "train.epochs", "--set"),
        ("empty-key", "=3", "--set"),
    ]
    cmds = {
        "train-grounding": "train grounding --config grounding/synth --print-config",
        "train-corr": "train correspondence --config correspondence/synth-tiny --print-config",
        "pretrain": "pretrain-backbone --config pretrain/tiny-synth-dino --print-config",
    }
    out = []
    for cname, cmd in cmds.items():
        for id_, s, needle in bad:
            if cname != "train-grounding" and id_ in ("epochs-bool", "lr-list", "wd-neginf",
                                                      "empty-key", "not-section"):  # fmt: skip
                continue
            out.append(_c(cname, id_, [*cmd.split(), "--set", s], 2, needle))
    # the real commands (no --print-config): refused before any work
    out += [
        _c(
            "train-grounding",
            "epochs-abc-run",
            "train grounding --config grounding/synth --out {w}/out/tg --set train.epochs=abc",
            2,
            "train.epochs",
        ),  # fmt: skip
        _c(
            "train-corr",
            "lr-fast-run",
            "train correspondence --config correspondence/synth-tiny --set train.lr=fast",
            2,
            "train.lr",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "data-empty",
            "train grounding --config grounding/synth "
            "--out {w}/out/tg-e --set data.root={w}/aff/empty",
            1,
            "empty",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "data-missing",
            "train grounding --config grounding/synth "
            "--out {w}/out/tg-m --set data.root={w}/aff/nope",
            1,
            "nope",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "data-no-exocentric",
            "train grounding --config grounding/synth "
            "--out {w}/out/tg-x --set data.root={w}/aff/noexo",
            1,
            "noexo",
        ),  # fmt: skip
        _c(
            "train-corr",
            "data-empty",
            "train correspondence --config correspondence/synth-tiny "
            "--set data.root={w}/corr/empty --set train.out={w}/out/tc-e",
            1,
            "empty",
        ),  # fmt: skip
        _c(
            "train-corr",
            "data-bad-json",
            "train correspondence --config "
            "correspondence/synth-tiny --set data.root={w}/corr/badjson "
            "--set train.out={w}/out/tc-b",
            1,
            "badjson",
        ),  # fmt: skip
        _c(
            "train-corr",
            "data-no-assets",
            "train correspondence --config "
            "correspondence/synth-tiny --set data.root={w}/corr/noviews "
            "--set train.out={w}/out/tc-n",
            1,
            "noviews",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "grad-clip-nan",
            "train grounding --config grounding/synth --print-config --set train.grad_clip=nan",
            2,
            "train.grad_clip",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "calibration-choice",
            "train grounding --config grounding/synth "
            "--print-config --set model.calibration=sideways",
            2,
            "model.calibration",
        ),  # fmt: skip
        _c(
            "train-grounding",
            "section-scalar",
            "train grounding --config grounding/synth --print-config --set data=3",
            2,
            "data",
        ),  # fmt: skip
        _c(
            "eval-grounding",
            "set-unknown",
            "eval grounding --checkpoint {w}/ck/gr --print-config --set model.nope=1",
            2,
            "model.nope",
        ),  # fmt: skip
        _c(
            "eval-grounding",
            "set-nan",
            "eval grounding --checkpoint {w}/ck/gr --print-config --set model.alpha=nan",
            2,
            "model.alpha",
        ),  # fmt: skip
        _c(
            "eval-corr",
            "set-unknown",
            "eval correspondence --checkpoint {w}/ck/co --pairs "
            "{w}/corr/tiny --print-config --set train.nope=1",
            2,
            "train.nope",
        ),  # fmt: skip
    ]
    return out


def _config_file_cases() -> list[Case]:
    out = []
    files = {
        "missing": ("{w}/cfg/missing.yaml", 2, "missing.yaml"),
        "unknown-key": ("{w}/cfg/unknown.yaml", 2, "train.epochz"),
        "nan-in-file": ("{w}/cfg/nan.yaml", 2, "train.lr"),
        "list-doc": ("{w}/cfg/list.yaml", 2, "list.yaml"),
        "bad-yaml": ("{w}/cfg/garbage.yaml", 2, "garbage.yaml"),
        "binary": ("{w}/cfg/binary.yaml", 2, "binary.yaml"),
        "section-scalar": ("{w}/cfg/section.yaml", 2, "train"),
        "python-tag": ("{w}/cfg/pickle.yaml", 2, "pickle.yaml"),
        "a-folder": ("{w}/empty", 2, "empty"),
    }
    for id_, (path, code, needle) in files.items():
        out.append(_c("train-grounding", f"config-{id_}",
                      ["train", "grounding", "--config", path, "--print-config"], code, needle))  # fmt: skip
    for id_ in ("missing", "unknown-key", "python-tag"):
        path, code, needle = files[id_]
        out.append(_c("train-corr", f"config-{id_}",
                      ["train", "correspondence", "--config", path, "--print-config"], code,
                      needle))  # fmt: skip
    return out


def _image_cases() -> list[Case]:
    g = "ground"
    base = "ground {img} --action hold --device cpu --out {w}/out/{out}"
    bad = {
        "missing": ("{w}/img/nope.png", 1, "nope.png"),
        "zero-byte": ("{w}/img/zero.png", 1, "zero.png"),
        "truncated-png": ("{w}/img/trunc.png", 1, "trunc.png"),
        "truncated-jpg": ("{w}/img/trunc.jpg", 1, "trunc.jpg"),
        "text-as-png": ("{w}/img/text.png", 1, "text.png"),
        "pickle-as-png": ("{w}/img/pickle.png", 1, "pickle.png"),
        "1x1": ("{w}/img/one.png", 1, "one.png"),
        "side-20000": ("{w}/img/huge_side.png", 1, "huge_side.png"),
        "folder-no-images": ("{w}/noimg", 1, "noimg"),
        "empty-folder": ("{w}/empty", 1, "empty"),
        "bad-among-good": ("{w}/img/good.png {w}/img/trunc.png", 1, "trunc.png"),
    }
    out = []
    for id_, (img, code, needle) in bad.items():
        out.append(_c(g, id_, base.format(img=img, w="{w}", out=f"g-{id_}"), code, needle))
    ok = {"gray": "gray.png", "rgba": "rgba.png", "16bit": "g16.png", "palette": "pal.png",
          "cmyk-jpg": "cmyk.jpg", "aspect-3x700": "wide.png", "aspect-600x4": "tall.png"}  # fmt: skip
    for id_, name in ok.items():
        out.append(_c(g, id_, base.format(img=f"{{w}}/img/{name}", w="{w}", out=f"g-{id_}"), 0,
                      check=_ground_ok(f"g-{id_}", name)))  # fmt: skip
    good = "ground {w}/img/good.png --device cpu"
    out += [
        _c(
            g,
            "png-out-exists",
            f"{good} --action hold --out {{w}}/results/hold.png",
            2,
            "--out",
            guard=("results/hold.png",),
        ),  # fmt: skip
        _c(g, "unknown-action", f"{good} --action fly --out {{w}}/out/g-a1", 2, "--action"),
        _c(
            g,
            "empty-action",
            [*good.split(), "--action", "", "--out", "{w}/out/g-a2"],
            2,
            "--action",
        ),  # fmt: skip
        _c(g, "no-action", f"{good} --out {{w}}/out/g-a3", 2, "--action"),
        _c(
            g,
            "batch-zero",
            f"{good} --action hold --batch-size 0 --out {{w}}/out/g-b0",
            2,
            "--batch-size",
        ),  # fmt: skip
        _c(
            g,
            "batch-neg",
            f"{good} --action hold --batch-size -4 --out {{w}}/out/g-b1",
            2,
            "--batch-size",
        ),  # fmt: skip
        _c(g, "batch-abc", f"{good} --action hold --batch-size abc", 2, "--batch-size"),
        _c(
            g,
            "out-has-results",
            f"{good} --action hold --out {{w}}/results",
            2,
            "--out",
            guard=("results/results.json", "results/hold.png"),
        ),  # fmt: skip
        _c(
            g,
            "out-is-file",
            f"{good} --action hold --out {{w}}/afile",
            2,
            "--out",
            guard=("afile",),
        ),  # fmt: skip
        _c(g, "out-under-file", f"{good} --action hold --out {{w}}/afile/sub", 2, "--out"),
        _c(g, "out-unwritable", f"{good} --action hold --out /proc/afford-out", 2, "--out"),
        _c(
            g,
            "png-out-two-images",
            "ground {w}/img/good.png {w}/img/gray.png --action hold --out {w}/out/two.png",
            2,
            "--out",
        ),  # fmt: skip
        _c(g, "ckpt-missing", f"{good} --action hold --checkpoint {{w}}/ck/nope", 1, "nope"),
        _c(g, "ckpt-wrong-task", f"{good} --action hold --checkpoint {{w}}/ck/co", 1, "ck/co"),
        _c(
            g,
            "ckpt-truncated",
            f"{good} --action hold --checkpoint {{w}}/ck/gr_trunc",
            1,
            "gr_trunc",
        ),  # fmt: skip
        _c(
            g,
            "ckpt-pickle",
            f"{good} --action hold --checkpoint {{w}}/ck/gr_pickle",
            1,
            "gr_pickle",
        ),  # fmt: skip
        _c(
            g,
            "ckpt-zero-byte",
            f"{good} --action hold --checkpoint {{w}}/ck/gr_empty",
            1,
            "gr_empty",
        ),  # fmt: skip
        _c(
            g, "ckpt-bad-json", f"{good} --action hold --checkpoint {{w}}/ck/gr_json", 1, "gr_json"
        ),  # fmt: skip
        _c(
            g,
            "ckpt-no-json",
            f"{good} --action hold --checkpoint {{w}}/ck/gr_nojson",
            1,
            "gr_nojson",
        ),  # fmt: skip
        _c(g, "ckpt-a-file", f"{good} --action hold --checkpoint {{w}}/afile", 1, "afile"),
        _c(
            g, "device-bogus", f"{good} --action hold --device tpu9 --out {{w}}/out/g-d", 2, "tpu9"
        ),  # fmt: skip
    ]
    return out


def _correspond_cases() -> list[Case]:
    c = "correspond"
    pair = "correspond {w}/img/good.png {w}/img/good2.png --device cpu"
    out = [
        _c(
            c,
            "png-out-exists",
            f"{pair} --function grasp --out {{w}}/results/hold.png",
            2,
            "--out",
            guard=("results/hold.png",),
        ),  # fmt: skip
        _c(
            c,
            "img1-missing",
            "correspond {w}/img/nope.png {w}/img/good.png --function grasp",
            1,
            "nope.png",
        ),  # fmt: skip
        _c(
            c,
            "img2-zero-byte",
            "correspond {w}/img/good.png {w}/img/zero.png --function grasp --out {w}/out/c-z",
            1,
            "zero.png",
        ),  # fmt: skip
        _c(
            c,
            "img2-truncated",
            "correspond {w}/img/good.png {w}/img/trunc.png --function grasp --out {w}/out/c-t",
            1,
            "trunc.png",
        ),  # fmt: skip
        _c(
            c,
            "img1-1x1",
            "correspond {w}/img/one.png {w}/img/good.png --function grasp --out {w}/out/c-1",
            1,
            "one.png",
        ),  # fmt: skip
        _c(c, "img1-folder", "correspond {w}/img {w}/img/good.png --function grasp", 2, "IMG1"),
        _c(
            c, "unknown-function", f"{pair} --function fly-with --out {{w}}/out/c-f", 2, "fly-with"
        ),  # fmt: skip
        _c(
            c,
            "points-garbage",
            f"{pair} --function grasp --points a,b --out {{w}}/out/c-p1",
            2,
            "--points",
        ),  # fmt: skip
        _c(
            c,
            "points-one-number",
            f"{pair} --function grasp --points 5 --out {{w}}/out/c-p2",
            2,
            "--points",
        ),  # fmt: skip
        _c(
            c,
            "points-outside",
            f"{pair} --function grasp --points 5000,3 --out {{w}}/out/c-p3",
            2,
            "points",
        ),  # fmt: skip
        _c(
            c,
            "points-nan",
            f"{pair} --function grasp --points nan,3 --out {{w}}/out/c-p4",
            2,
            "points",
        ),  # fmt: skip
        _c(c, "top-zero", f"{pair} --function grasp --top 0 --out {{w}}/out/c-t0", 2, "top"),
        _c(c, "top-neg", f"{pair} --function grasp --top -5 --out {{w}}/out/c-t1", 2, "top"),
        _c(
            c,
            "stride-zero",
            f"{pair} --function grasp --stride 0 --out {{w}}/out/c-s0",
            2,
            "stride",
        ),  # fmt: skip
        _c(
            c,
            "stride-neg",
            f"{pair} --function grasp --stride -2 --out {{w}}/out/c-s1",
            2,
            "stride",
        ),  # fmt: skip
        _c(
            c,
            "mask-missing",
            f"{pair} --function grasp --mask1 {{w}}/mask/nope.png --out {{w}}/out/c-m1",
            1,
            "nope.png",
        ),  # fmt: skip
        _c(
            c,
            "mask-empty",
            f"{pair} --function grasp --mask1 {{w}}/mask/empty.png --out {{w}}/out/c-m2",
            2,
            "--mask1",
        ),  # fmt: skip
        _c(
            c,
            "mask-wrong-size",
            f"{pair} --function grasp --mask1 {{w}}/mask/small.png --out {{w}}/out/c-m3",
            2,
            "--mask1",
        ),  # fmt: skip
        _c(
            c,
            "mask-truncated",
            f"{pair} --function grasp --mask1 {{w}}/img/trunc.png --out {{w}}/out/c-m4",
            1,
            "trunc.png",
        ),  # fmt: skip
        _c(
            c,
            "mask2-two-targets",
            "correspond {w}/img/good.png {w}/img/good2.png "
            "{w}/img/gray.png --function grasp --mask2 {w}/mask/small.png --out {w}/out/c-m5",
            2,
            "--mask2",
        ),  # fmt: skip
        _c(
            c,
            "out-has-results",
            f"{pair} --function grasp --out {{w}}/results",
            2,
            "--out",
            guard=("results/results.json", "results/hold.png"),
        ),  # fmt: skip
        _c(
            c, "ckpt-wrong-task", f"{pair} --function grasp --checkpoint {{w}}/ck/gr", 1, "ck/gr"
        ),  # fmt: skip
        _c(
            c,
            "ckpt-truncated",
            f"{pair} --function grasp --checkpoint {{w}}/ck/co_trunc",
            1,
            "co_trunc",
        ),  # fmt: skip
        _c(
            c,
            "ckpt-pickle",
            f"{pair} --function grasp --checkpoint {{w}}/ck/co_pickle",
            1,
            "co_pickle",
        ),  # fmt: skip
        _c(
            c,
            "ckpt-and-dinov2",
            f"{pair} --function grasp --checkpoint {{w}}/ck/co --dinov2 tiny",
            2,
            "--dinov2",
        ),  # fmt: skip
        _c(c, "dinov2-bad-variant", f"{pair} --function grasp --dinov2 vitz99", 2, "vitz99"),
        _c(
            c,
            "dinov2-weights-pickle",
            f"{pair} --function grasp --dinov2 tiny --dinov2-weights {{w}}/released/legacy.pth",
            1,
            "legacy.pth",
        ),  # fmt: skip
        _c(
            c,
            "dinov2-weights-zip",
            f"{pair} --function grasp --dinov2 tiny --dinov2-weights {{w}}/released/zip.pth",
            1,
            "zip.pth",
        ),  # fmt: skip
        _c(
            c,
            "dinov2-weights-torchscript",
            f"{pair} --function grasp --dinov2 tiny --dinov2-weights {{w}}/released/ts.pt",
            1,
            "ts.pt",
        ),  # fmt: skip
        _c(
            c,
            "dinov2-weights-fake-safetensors",
            f"{pair} --function grasp --dinov2 tiny "
            "--dinov2-weights {w}/released/pickle.safetensors",
            1,
            "pickle.safetensors",
        ),  # fmt: skip
    ]
    for id_, name in {"gray": "gray.png", "rgba": "rgba.png", "16bit": "g16.png",
                      "aspect-3x700": "wide.png"}.items():  # fmt: skip
        out.append(_c(c, id_, f"correspond {{w}}/img/good.png {{w}}/img/{name} --function grasp "
                      f"--device cpu --top 5 --out {{w}}/out/c-{id_}", 0,
                      check=_corr_ok(f"c-{id_}")))  # fmt: skip
    return out


def _eval_cases() -> list[Case]:
    eg = "eval-grounding"
    ec = "eval-corr"
    ev = "eval grounding --device cpu --no-figures"
    out = [
        _c(eg, "ckpt-missing", f"{ev} --checkpoint {{w}}/ck/nope", 1, "nope"),
        _c(
            eg,
            "ckpt-wrong-task",
            f"{ev} --checkpoint {{w}}/ck/co --data {{w}}/aff/nogt",
            1,
            "ck/co",
        ),  # fmt: skip
        _c(
            eg,
            "ckpt-truncated",
            f"{ev} --checkpoint {{w}}/ck/gr_trunc --data {{w}}/aff/nogt",
            1,
            "gr_trunc",
        ),  # fmt: skip
        _c(
            eg,
            "ckpt-pickle",
            f"{ev} --checkpoint {{w}}/ck/gr_pickle --data {{w}}/aff/nogt",
            1,
            "gr_pickle",
        ),  # fmt: skip
        _c(
            eg,
            "ckpt-bad-json",
            f"{ev} --checkpoint {{w}}/ck/gr_json --data {{w}}/aff/nogt",
            1,
            "gr_json",
        ),  # fmt: skip
        _c(
            eg,
            "dino-weights-pickle",
            f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/aff/nogt "
            "--set backbone.dino.weights={w}/released/zip.pth",
            1,
            "zip.pth",
        ),  # fmt: skip
        _c(eg, "data-missing", f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/aff/nope", 1, "nope"),
        _c(
            eg, "data-empty", f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/aff/empty", 1, "empty"
        ),  # fmt: skip
        _c(
            eg,
            "data-no-gt",
            f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/aff/nogt --out {{w}}/out/eg-nogt",
            1,
            "nogt",
        ),  # fmt: skip
        _c(eg, "data-is-file", f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/afile", 1, "afile"),
        _c(eg, "data-default-placeholder", f"{ev} --checkpoint {{w}}/ck/gr", 1, "data"),
        _c(
            eg,
            "out-has-results",
            f"{ev} --checkpoint {{w}}/ck/gr --data {{w}}/aff/nogt --out {{w}}/results",
            2,
            "--out",
            guard=("results/results.json", "results/hold.png"),
        ),  # fmt: skip
        _c(eg, "split-bogus", f"{ev} --checkpoint {{w}}/ck/gr --split train", 2, "--split"),
        _c(
            eg,
            "calibration-bogus",
            f"{ev} --checkpoint {{w}}/ck/gr --calibration hard",
            2,
            "--calibration",
        ),  # fmt: skip
    ]
    ce = "eval correspondence --device cpu"
    out += [
        _c(
            ec,
            "pairs-missing",
            f"{ce} --baseline chance --pairs {{w}}/corr/nope --out {{w}}/out/ec1",
            1,
            "nope",
        ),  # fmt: skip
        _c(
            ec,
            "pairs-empty-folder",
            f"{ce} --baseline chance --pairs {{w}}/corr/empty --out {{w}}/out/ec2",
            1,
            "empty",
        ),  # fmt: skip
        _c(
            ec,
            "pairs-no-eval-pairs",
            f"{ce} --baseline chance --pairs {{w}}/corr/nopairs --out {{w}}/out/ec3",
            1,
            "nopairs",
        ),  # fmt: skip
        _c(
            ec,
            "pairs-bad-json",
            f"{ce} --baseline chance --pairs {{w}}/corr/badjson --out {{w}}/out/ec4",
            1,
            "badjson",
        ),  # fmt: skip
        _c(
            ec,
            "pairs-no-assets",
            f"{ce} --baseline chance --pairs {{w}}/corr/noviews --out {{w}}/out/ec5",
            1,
            "noviews",
        ),  # fmt: skip
        _c(
            ec,
            "ckpt-wrong-task",
            f"{ce} --checkpoint {{w}}/ck/gr --pairs {{w}}/corr/tiny --out {{w}}/out/ec6",
            1,
            "ck/gr",
        ),  # fmt: skip
        _c(
            ec,
            "ckpt-truncated",
            f"{ce} --checkpoint {{w}}/ck/co_trunc --pairs {{w}}/corr/tiny --out {{w}}/out/ec7",
            1,
            "co_trunc",
        ),  # fmt: skip
        _c(
            ec,
            "ckpt-pickle",
            f"{ce} --checkpoint {{w}}/ck/co_pickle --pairs {{w}}/corr/tiny --out {{w}}/out/ec8",
            1,
            "co_pickle",
        ),  # fmt: skip
        _c(
            ec,
            "pairs-npz-pickle",
            f"{ce} --baseline chance --pairs {{w}}/corr/npzpickle --out {{w}}/out/ec12",
            1,
            "npzpickle",
        ),  # fmt: skip
        _c(
            ec,
            "clip-weights-torchscript",
            f"{ce} --checkpoint {{w}}/ck/co --pairs "
            "{w}/corr/tiny --out {w}/out/ec13 --set backbone.clip.weights={w}/released/ts.pt",
            1,
            "ts.pt",
        ),  # fmt: skip
        _c(
            ec,
            "dino-weights-pickle",
            f"{ce} --checkpoint {{w}}/ck/co --pairs {{w}}/corr/tiny "
            "--out {w}/out/ec14 --set backbone.dinov2.weights={w}/released/legacy.pth",
            1,
            "legacy.pth",
        ),  # fmt: skip
        _c(
            ec,
            "max-pairs-zero",
            f"{ce} --baseline chance --pairs {{w}}/corr/tiny --max-pairs 0 --out {{w}}/out/ec9",
            2,
            "--max-pairs",
        ),  # fmt: skip
        _c(
            ec,
            "max-pairs-neg",
            f"{ce} --baseline chance --pairs {{w}}/corr/tiny --max-pairs -2 --out {{w}}/out/ec10",
            2,
            "--max-pairs",
        ),  # fmt: skip
        _c(
            ec,
            "stride-zero",
            f"{ce} --baseline chance --pairs {{w}}/corr/tiny "
            "--discovery-stride 0 --out {w}/out/ec11",
            2,
            "--discovery-stride",
        ),  # fmt: skip
        _c(
            ec, "baseline-bogus", f"{ce} --baseline oracle --pairs {{w}}/corr/tiny", 2, "--baseline"
        ),  # fmt: skip
        _c(
            ec,
            "set-without-ckpt",
            f"{ce} --baseline chance --pairs {{w}}/corr/tiny --set train.lr=1",
            2,
            "--set",
        ),  # fmt: skip
        _c(
            ec,
            "out-has-results",
            f"{ce} --baseline chance --pairs {{w}}/corr/tiny --out {{w}}/results",
            2,
            "--out",
            guard=("results/results.json", "results/hold.png"),
        ),  # fmt: skip
    ]
    return out


def _import_cases() -> list[Case]:
    i = "import-checkpoint"
    base = "import-checkpoint {src} --out {w}/out/{out} --dataset agd20k_seen"
    srcs = {
        "missing": ("{w}/released/nope.pth", 1, "nope.pth"),
        "zero-byte": ("{w}/released/zero.pth", 1, "zero.pth"),
        "text": ("{w}/released/text.pth", 1, "text.pth"),
        "pickle-legacy": ("{w}/released/legacy.pth", 1, "legacy.pth"),
        "pickle-zip": ("{w}/released/zip.pth", 1, "zip.pth"),
        "pickle-torchscript": ("{w}/released/ts.pt", 1, "ts.pt"),
        "safetensors-as-pth": ("{w}/released/ours.pth", 1, "ours.pth"),
        "a-folder": ("{w}/empty", 1, "empty"),
    }
    out = [_c(i, id_, base.format(src=s, w="{w}", out=f"imp-{id_}"), code, needle)
           for id_, (s, code, needle) in srcs.items()]  # fmt: skip
    out += [
        _c(
            i,
            "out-is-checkpoint",
            "import-checkpoint {w}/released/zip.pth --out {w}/ck/gr",
            2,
            "--out",
            guard=("ck/gr/model.safetensors", "ck/gr/config.json"),
        ),  # fmt: skip
        _c(
            i,
            "dataset-bogus",
            "import-checkpoint {w}/released/zip.pth --out {w}/out/i --dataset coco",
            2,
            "--dataset",
        ),  # fmt: skip
    ]
    return out


def _synth_cases() -> list[Case]:
    sa, sc = "synth-affordance", "synth-corr"
    a = "synth affordance --out {w}/out/sa"
    c = "synth correspondence --out {w}/out/sc --size tiny"
    return [
        _c(sa, "out-is-file", "synth affordance --out {w}/afile", 2, "afile", guard=("afile",)),
        _c(
            sa,
            "out-has-dataset",
            "synth affordance --out {w}/synth_done",
            2,
            "--out",
            guard=("synth_done/dataset.json", "synth_done/keep.txt"),
        ),  # fmt: skip
        _c(
            sa,
            "out-foreign",
            "synth affordance --out {w}/noimg",
            2,
            "noimg",
            guard=("noimg/readme.txt",),
        ),  # fmt: skip
        _c(sa, "ego-neg", f"{a} --ego -1", 2, "--ego"),
        _c(sa, "test-zero", f"{a} --test 0", 2, "--test"),
        _c(sa, "image-size-zero", f"{a} --image-size 0", 2, "--image-size"),
        _c(sa, "image-size-abc", f"{a} --image-size abc", 2, "--image-size"),
        _c(sa, "workers-neg", f"{a} --workers -2", 2, "--workers"),
        _c(sa, "seed-neg", f"{a} --seed -1", 2, "--seed"),
        _c(sa, "size-bogus", f"{a} --size huge", 2, "--size"),
        _c(
            sc, "out-is-file", "synth correspondence --out {w}/afile", 2, "afile", guard=("afile",)
        ),  # fmt: skip
        _c(
            sc,
            "out-has-dataset",
            "synth correspondence --out {w}/synth_done",
            2,
            "--out",
            guard=("synth_done/dataset.json", "synth_done/keep.txt"),
        ),  # fmt: skip
        _c(sc, "views-zero", f"{c} --views 0", 2, "--views"),
        _c(sc, "views-neg", f"{c} --views -3", 2, "--views"),
        _c(sc, "workers-zero", f"{c} --workers 0", 2, "--workers"),
        _c(sc, "categories-bogus", f"{c} --categories spaceship", 2, "spaceship"),
        _c(sc, "per-category-neg", f"{c} --per-category -1 1 1", 2, "--per-category"),
        _c(sc, "max-points-zero", f"{c} --max-points 0", 2, "--max-points"),
        _c(sc, "seed-neg", f"{c} --seed -5", 2, "--seed"),
    ]


def _pretrain_cases() -> list[Case]:
    p = "pretrain"
    base = "pretrain-backbone --family dino --out {w}/out/pt.safetensors --print-config"
    run = "pretrain-backbone --family dino --out {w}/out/pt.safetensors"
    return [
        _c(
            p,
            "out-not-safetensors",
            "pretrain-backbone --family dino --out {w}/out/pt.pth",
            2,
            "--out",
        ),  # fmt: skip
        _c(
            p,
            "out-exists",
            "pretrain-backbone --family dino --out {w}/weights.safetensors --steps 1 --images 2",
            2,
            "--out",
            guard=("weights.safetensors",),
        ),  # fmt: skip
        _c(p, "steps-zero", f"{run} --steps 0", 2, "--steps"),
        _c(p, "steps-neg", f"{run} --steps -4", 2, "--steps"),
        _c(
            p,
            "family-bogus",
            "pretrain-backbone --family resnet --out {w}/out/x.safetensors",
            2,
            "--family",
        ),  # fmt: skip
        _c(p, "no-family", "pretrain-backbone --out {w}/out/x.safetensors", 2, "--family"),
        _c(p, "minutes-nan", f"{base} --minutes nan", 2, "train.minutes"),
        _c(p, "minutes-inf", f"{base} --minutes inf", 2, "train.minutes"),
        _c(p, "images-neg", f"{base} --images -5", 2, "data.images"),
        _c(p, "batch-zero", f"{base} --batch 0", 2, "train.batch_size"),
        _c(p, "view-size-zero", f"{base} --view-size 0", 2, "data.view_size"),
        _c(p, "threads-zero", f"{base} --threads 0", 2, "train.threads"),
        _c(p, "crop-scale-nan", f"{base} --crop-scale nan 0.5", 2, "data.crop_scale"),
        _c(p, "crop-scale-inverted", f"{base} --crop-scale 0.9 0.1", 2, "data.crop_scale"),
    ]


def _misc_cases() -> list[Case]:
    m = "misc"
    return [
        _c(m, "unknown-command", "frobnicate", 2, "frobnicate"),
        _c(m, "train-no-target", "train", 2, "train"),
        _c(m, "eval-unknown-target", "eval segmentation", 2, "segmentation"),
        _c(m, "unknown-flag", "info --bogus", 2, "--bogus"),
        _c(m, "train-no-config", "train grounding", 2, "--config"),
        _c(m, "demo-out-is-file", "demo --quick --out {w}/afile", 2, "afile", guard=("afile",)),
        _c(
            m,
            "demo-out-has-results",
            "demo --quick --out {w}/demo_done",
            2,
            "--out",
            guard=("demo_done/results.json", "demo_done/report.md"),
        ),  # fmt: skip
        _c(
            m,
            "demo-out-foreign",
            "demo --quick --out {w}/noimg",
            2,
            "noimg",
            guard=("noimg/readme.txt",),
        ),  # fmt: skip
        _c(m, "serve-port-zero", "serve --port 0", 2, "--port"),
        _c(m, "serve-port-huge", "serve --port 70000", 2, "--port"),
        _c(
            m,
            "export-format",
            "export grounding --format tflite --out {w}/out/m.tflite",
            2,
            "--format",
        ),  # fmt: skip
        _c(
            m,
            "export-out-exists",
            "export grounding --out {w}/model.onnx",
            2,
            "--out",
            guard=("model.onnx",),
        ),  # fmt: skip
        _c(
            m,
            "export-ckpt-pickle",
            "export grounding --checkpoint {w}/ck/gr_pickle --out {w}/out/m2.onnx",
            1,
            "gr_pickle",
        ),  # fmt: skip
        _c(
            m,
            "export-wrong-task",
            "export correspondence --checkpoint {w}/ck/gr --out {w}/out/m.onnx",
            1,
            "ck/gr",
        ),  # fmt: skip
    ]


def _prepared_ok(out: str, ids: list[str], failed: dict[str, str] | None = None,
                 tmp_gone: bool = False) -> Callable[[Path], str | None]:  # fmt: skip
    """The check of a preparation: ``dataset.json`` lists exactly ``ids``; ``failures.jsonl``
    lists exactly the ``failed`` assets, each reason naming the word given."""

    def check(w: Path) -> str | None:
        o = w / "prep" / out
        if not (o / "dataset.json").is_file():
            return f"{o}/dataset.json missing"
        got = sorted(json.loads((o / "dataset.json").read_text())["assets"])
        if got != sorted(ids):
            return f"dataset.json lists {got}, expected {sorted(ids)}"
        lines = (o / "failures.jsonl").read_text().splitlines()
        fails = {json.loads(ln)["asset"]: json.loads(ln)["reason"] for ln in lines}
        want = failed or {}
        if sorted(fails) != sorted(want):
            return f"failures.jsonl lists {sorted(fails)}, expected {sorted(want)}"
        for a, word in want.items():
            if word.lower() not in fails[a].lower():
                return f"failure of {a} does not say {word!r}: {fails[a]}"
        if tmp_gone and any(o.glob("assets/.tmp-*")):
            return "a temporary folder of an interrupted run is left behind"
        return None

    return check


def _prepare_cases() -> list[Case]:
    """``afford prepare correspondence`` / ``eval-pairs`` / ``handal`` on bad inputs."""
    pc, pe, ph = "prepare-corr", "prepare-eval-pairs", "prepare-handal"
    base = "prepare correspondence --taxonomy {w}/prep/tax.json --labeler simulated " + PREP_OPTS
    run = base + " --assets {w}/prep/good --out {w}/out/{out}"
    tx = "prepare correspondence --assets {w}/prep/good --labeler simulated " + PREP_OPTS
    done = ("done/prepare.json", "done/dataset.json", "done/failures.jsonl",
            "done/assets/m1/record.json", "done/assets/m1/views.npz",
            "done/assets/m1/geometry.npz", "done/assets/m1/rgb/00.png")  # fmt: skip

    def r(out: str, extra: str) -> str:
        return run.replace("{out}", out) + " " + extra

    def lab(spec: str, out: str) -> list[str]:
        args = run.replace("{out}", out).replace("--labeler simulated", "--labeler X").split()
        args[args.index("X")] = spec
        return args

    out = [
        # --assets (guarding a file that does not exist: a bad --assets creates no --out)
        _c(
            pc,
            "assets-missing",
            base + " --assets {w}/prep/nope --out {w}/out/p1",
            1,
            "nope",
            guard=("out/p1/prepare.json",),
        ),
        _c(
            pc,
            "assets-empty",
            base + " --assets {w}/empty --out {w}/out/p2",
            1,
            "empty",
            guard=("out/p2/prepare.json",),
        ),
        _c(
            pc,
            "assets-a-file",
            base + " --assets {w}/afile --out {w}/out/p3",
            1,
            "afile",
            guard=("out/p3/prepare.json",),
        ),
        _c(
            pc,
            "assets-no-meshes",
            base + " --assets {w}/noimg --out {w}/out/p4",
            1,
            "noimg",
            guard=("out/p4/prepare.json",),
        ),
        _c(
            pc,
            "assets-only-corrupt",
            base + " --assets {w}/prep/onlybad --out {w}/out/p5",
            1,
            "onlybad",
        ),  # fmt: skip
        _c(
            pc,
            "assets-only-zero-byte",
            base + " --assets {w}/prep/zeroonly --out {w}/out/p6",
            1,
            "zeroonly",
        ),  # fmt: skip
        _c(
            pc,
            "assets-only-pickle",
            base + " --assets {w}/prep/pickleonly --out {w}/out/p7",
            1,
            "pickleonly",
        ),  # fmt: skip
        _c(
            pc,
            "assets-only-fbx",
            base + " --assets {w}/prep/fbxonly --out {w}/out/p8",
            1,
            "fbxonly",
        ),  # fmt: skip
        _c(
            pc,
            "bad-among-good",
            base + " --assets {w}/prep/mixed --out {w}/prep/mixed_out",
            0,
            check=_prepared_ok(
                "mixed_out",
                ["m1"],
                {
                    "m2": "m2---mug.glb",
                    "m3": "empty",
                    "m4": "m4---mug.ply",
                    "m5": ".fbx",
                    "nocat": "category",
                    "m1": "duplicate",
                },
            ),
        ),  # fmt: skip
        # --taxonomy
        _c(
            pc,
            "taxonomy-missing",
            tx + " --taxonomy {w}/prep/nope.json --out {w}/out/p9",
            2,
            "nope.json",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-bad-json",
            tx + " --taxonomy {w}/prep/tax_bad.json --out {w}/out/p10",
            1,
            "tax_bad.json",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-bad-yaml",
            tx + " --taxonomy {w}/prep/tax_bad.yaml --out {w}/out/p11",
            1,
            "tax_bad.yaml",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-unknown-keys",
            tx + " --taxonomy {w}/prep/tax_unknown.json --out {w}/out/p12",
            1,
            "colours",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-a-list",
            tx + " --taxonomy {w}/prep/tax_list.json --out {w}/out/p13",
            1,
            "tax_list.json",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-pickle",
            tx + " --taxonomy {w}/prep/tax_pickle.json --out {w}/out/p14",
            1,
            "tax_pickle.json",
        ),  # fmt: skip
        _c(
            pc,
            "taxonomy-suffix",
            tx + " --taxonomy {w}/prep/tax.txt --out {w}/out/p15",
            1,
            "tax.txt",
        ),  # fmt: skip
        _c(pc, "taxonomy-unknown-name", tx + " --taxonomy papr --out {w}/out/p16", 2, "papr"),
        _c(
            pc,
            "taxonomy-no-category",
            tx + " --taxonomy {w}/prep/tax_nomug.json --out {w}/out/p17",
            1,
            "failures.jsonl",
        ),  # fmt: skip
        # --labeler
        _c(pc, "labeler-unknown-kind", lab("clip:ViT-B", "p18"), 2, "--labeler"),
        _c(pc, "labeler-empty", lab("", "p19"), 2, "--labeler"),
        _c(pc, "labeler-no-model", lab("owlv2:", "p20"), 2, "--labeler"),
        _c(pc, "labeler-model-missing", lab("owlv2:{w}/prep/no_model", "p21"), 2, "no_model"),
        _c(
            pc, "labeler-model-empty", lab("owlv2:{w}/prep/owlv2_empty", "p22"), 2, "owlv2_empty"
        ),  # fmt: skip
        _c(
            pc,
            "labeler-model-a-pickle",
            lab("grounding-dino:{w}/released/legacy.pth", "p23"),
            2,
            "legacy.pth",
        ),  # fmt: skip
        _c(pc, "labeler-boxes-missing", lab("boxes:{w}/prep/nope.json", "p24"), 2, "nope.json"),
        _c(
            pc,
            "labeler-boxes-bad-json",
            lab("boxes:{w}/prep/boxes_bad.json", "p25"),
            1,
            "boxes_bad.json",
        ),  # fmt: skip
        _c(
            pc,
            "labeler-boxes-pickle",
            lab("boxes:{w}/prep/boxes_pickle.json", "p26"),
            1,
            "boxes_pickle.json",
        ),  # fmt: skip
        _c(
            pc,
            "labeler-boxes-unknown-key",
            lab("boxes:{w}/prep/boxes_unknown.json", "p27"),
            1,
            "boxen",
        ),  # fmt: skip
        _c(
            pc,
            "labeler-boxes-a-list",
            lab("boxes:{w}/prep/boxes_list.json", "p28"),
            1,
            "boxes_list.json",
        ),  # fmt: skip
        _c(pc, "labeler-simulated-arg", lab("simulated:x", "p29"), 2, "--labeler"),
        # numbers
        _c(pc, "views-zero", r("p30", "--views 0"), 2, "--views"),
        _c(pc, "views-neg", r("p31", "--views -1"), 2, "--views"),
        _c(pc, "views-abc", r("p32", "--views abc"), 2, "--views"),
        _c(pc, "workers-neg", r("p33", "--workers -1"), 2, "--workers"),
        _c(pc, "workers-zero", r("p34", "--workers 0"), 2, "--workers"),
        _c(pc, "image-size-zero", r("p35", "--image-size 0"), 2, "--image-size"),
        _c(pc, "samples-zero", r("p36", "--samples 0"), 2, "--samples"),
        _c(pc, "cloud-points-neg", r("p37", "--cloud-points -5"), 2, "--cloud-points"),
        _c(pc, "distance-nan", r("p38", "--distance nan"), 2, "--distance"),
        _c(pc, "distance-inf", r("p39", "--distance inf"), 2, "--distance"),
        _c(pc, "fov-nan", r("p40", "--fov nan"), 2, "--fov"),
        _c(pc, "seed-neg", r("p41", "--seed -1"), 2, "--seed"),
        # --manifest
        _c(pc, "manifest-missing", r("p42", "--manifest {w}/prep/nope.csv"), 1, "nope.csv"),
        _c(
            pc,
            "manifest-pickle",
            r("p43", "--manifest {w}/prep/manifest_pickle.json"),
            1,
            "manifest_pickle.json",
        ),  # fmt: skip
        _c(
            pc,
            "manifest-columns",
            r("p44", "--manifest {w}/prep/manifest_bad.csv"),
            1,
            "manifest_bad.csv",
        ),  # fmt: skip
        # --out holding earlier results
        _c(
            pc,
            "out-has-results",
            base + " --assets {w}/prep/good --out {w}/results",
            2,
            "--out",
            guard=("results/results.json", "results/hold.png"),
        ),  # fmt: skip
        _c(
            pc,
            "out-has-dataset",
            base + " --assets {w}/prep/good --out {w}/synth_done",
            2,
            "--out",
            guard=("synth_done/dataset.json", "synth_done/keep.txt"),
        ),  # fmt: skip
        _c(
            pc,
            "out-is-file",
            base + " --assets {w}/prep/good --out {w}/afile",
            2,
            "afile",
            guard=("afile",),
        ),  # fmt: skip
        _c(
            pc,
            "out-unwritable",
            base + " --assets {w}/prep/good --out /proc/afford-prep",
            2,
            "--out",
        ),  # fmt: skip
        _c(
            pc,
            "out-other-options",
            base + " --assets {w}/prep/good --out {w}/prep/done --views 3",
            2,
            "--out",
            guard=done,
        ),  # fmt: skip
        _c(
            pc,
            "out-other-taxonomy",
            tx + " --taxonomy synth --out {w}/prep/done",
            2,
            "--out",
            guard=done,
        ),  # fmt: skip
        _c(
            pc,
            "out-other-labeler",
            tx.replace("--labeler simulated", "--labeler none")
            + " --taxonomy {w}/prep/tax.json --out {w}/prep/done",
            2,
            "--overwrite",
            guard=done,
        ),  # fmt: skip
        _c(
            pc,
            "resume-finished",
            base + " --assets {w}/prep/good --out {w}/prep/done",
            0,
            guard=done,
            check=_prepared_ok("done", ["m1"]),
        ),  # fmt: skip
        _c(
            pc,
            "resume-interrupted",
            base + " --assets {w}/prep/two --out {w}/prep/done2",
            0,
            guard=tuple(g.replace("done/", "done2/") for g in done[3:]),
            check=_prepared_ok("done2", ["m1", "m7"], tmp_gone=True),
        ),  # fmt: skip
    ]

    ep = "prepare eval-pairs {w}/corr/nopairs --alignments"
    out += [
        _c(
            pe,
            "dataset-missing",
            "prepare eval-pairs {w}/corr/nope --alignments {w}/prep/align_ghost.json",
            1,
            "nope",
        ),  # fmt: skip
        _c(
            pe,
            "dataset-empty",
            "prepare eval-pairs {w}/empty --alignments {w}/prep/align_ghost.json",
            1,
            "empty",
        ),  # fmt: skip
        _c(
            pe,
            "dataset-bad-json",
            "prepare eval-pairs {w}/corr/badjson --alignments {w}/prep/align_ghost.json",
            1,
            "badjson",
        ),  # fmt: skip
        _c(pe, "alignments-missing", f"{ep} {{w}}/prep/nope.json", 2, "nope.json"),
        _c(pe, "alignments-bad-json", f"{ep} {{w}}/prep/align_bad.json", 1, "align_bad.json"),
        _c(
            pe, "alignments-pickle", f"{ep} {{w}}/prep/align_pickle.json", 1, "align_pickle.json"
        ),  # fmt: skip
        _c(
            pe, "alignments-a-string", f"{ep} {{w}}/prep/align_string.json", 1, "align_string.json"
        ),  # fmt: skip
        _c(pe, "alignments-unknown-key", f"{ep} {{w}}/prep/align_unknown.json", 1, "pears"),
        _c(pe, "alignments-no-pairs", f"{ep} {{w}}/prep/align_empty.json", 1, "pairs"),
        _c(pe, "alignments-T-shape", f"{ep} {{w}}/prep/align_T.json", 1, ".T"),
        _c(pe, "alignments-T-nan", f"{ep} {{w}}/prep/align_nan.json", 1, ".T"),
        _c(pe, "alignments-unknown-asset", f"{ep} {{w}}/prep/align_ghost.json", 1, "ghost"),
        _c(pe, "alignments-a-folder", f"{ep} {{w}}/empty", 2, "empty"),
        _c(
            pe,
            "max-points-zero",
            f"{ep} {{w}}/prep/align_ghost.json --max-points 0",
            2,
            "--max-points",
        ),  # fmt: skip
        _c(
            pe,
            "max-points-abc",
            f"{ep} {{w}}/prep/align_ghost.json --max-points abc",
            2,
            "--max-points",
        ),  # fmt: skip
        _c(
            pe,
            "has-pairs",
            "prepare eval-pairs {w}/corr/tiny --alignments {w}/prep/align_ghost.json",
            2,
            "eval_pairs.json",
            guard=("corr/tiny/eval_pairs.json",),
        ),  # fmt: skip
    ]

    hd = "prepare handal {w}/handal/{root} --out {w}/out/{out}"

    def h(root: str, out: str, extra: str = "") -> str:
        return hd.replace("{root}", root).replace("{out}", out) + (" " + extra if extra else "")

    out += [
        _c(ph, "root-missing", h("nope", "h1"), 1, "nope"),
        _c(ph, "no-models", h("nomodels", "h2"), 1, "models"),
        _c(ph, "no-split", h("nosplit", "h3"), 1, "test"),
        _c(ph, "no-scene-gt", h("nogt", "h4"), 1, "scene_gt.json"),
        _c(ph, "scene-gt-bad-json", h("badgt", "h5"), 1, "scene_gt.json"),
        _c(ph, "scene-gt-pickle", h("picklegt", "h6"), 1, "scene_gt.json"),
        _c(ph, "scene-gt-a-list", h("listgt", "h7"), 1, "scene_gt.json"),
        _c(ph, "scene-gt-no-obj-id", h("noobjid", "h8"), 1, "scene_gt.json"),
        _c(ph, "model-corrupt", h("badply", "h9"), 1, "obj_000001.ply"),
        _c(ph, "model-pickle", h("pickleply", "h10"), 1, "obj_000001.ply"),
        _c(ph, "objects-abc", h("ok", "h11", "--objects a,b"), 2, "--objects"),
        _c(ph, "objects-unknown", h("ok", "h12", "--objects 7"), 2, "--objects"),
        _c(ph, "stride-zero", h("ok", "h13", "--stride 0"), 2, "--stride"),
        _c(ph, "category-bad", h("ok", "h14", "--category Mug!"), 2, "--category"),
        _c(ph, "category-count", h("ok", "h15", "--category a --category b"), 2, "--category"),
        _c(ph, "labeler-unknown", h("ok", "h16", "--labeler clip:x"), 2, "--labeler"),
        _c(
            ph, "taxonomy-missing", h("ok", "h17", "--taxonomy {w}/prep/nope.json"), 2, "nope.json"
        ),  # fmt: skip
        _c(
            ph,
            "alignments-missing",
            h("ok", "h18", "--alignments {w}/prep/nope.json"),
            2,
            "nope.json",
        ),  # fmt: skip
        _c(
            ph,
            "alignments-pickle",
            h("ok", "h19", "--alignments {w}/prep/align_pickle.json"),
            1,
            "align_pickle.json",
        ),  # fmt: skip
        _c(
            ph,
            "out-has-dataset",
            "prepare handal {w}/handal/ok --out {w}/synth_done",
            2,
            "--out",
            guard=("synth_done/dataset.json", "synth_done/keep.txt"),
        ),  # fmt: skip
        _c(
            ph,
            "out-is-file",
            "prepare handal {w}/handal/ok --out {w}/afile",
            2,
            "afile",
            guard=("afile",),
        ),  # fmt: skip
    ]
    return out


def _export_cases() -> list[Case]:
    """``afford export`` on bad checkpoints and output paths (before any tracing)."""
    e = "export"
    g = "export grounding --out {w}/out/{out}.onnx --checkpoint"
    return [
        _c(e, "ckpt-missing", g.replace("{out}", "e1") + " {w}/ck/nope", 1, "nope"),
        _c(e, "ckpt-truncated", g.replace("{out}", "e2") + " {w}/ck/gr_trunc", 1, "gr_trunc"),
        _c(e, "ckpt-zero-byte", g.replace("{out}", "e3") + " {w}/ck/gr_empty", 1, "gr_empty"),
        _c(e, "ckpt-bad-json", g.replace("{out}", "e4") + " {w}/ck/gr_json", 1, "gr_json"),
        _c(e, "ckpt-no-json", g.replace("{out}", "e5") + " {w}/ck/gr_nojson", 1, "gr_nojson"),
        _c(e, "ckpt-a-file", g.replace("{out}", "e6") + " {w}/afile", 1, "afile"),
        _c(e, "ckpt-empty-folder", g.replace("{out}", "e7") + " {w}/empty", 1, "empty"),
        _c(
            e, "ckpt-released-pth", g.replace("{out}", "e8") + " {w}/released/zip.pth", 1, "zip.pth"
        ),  # fmt: skip
        _c(e, "grounding-ckpt-of-corr", g.replace("{out}", "e9") + " {w}/ck/co", 1, "ck/co"),
        _c(
            e,
            "corr-ckpt-pickle",
            "export correspondence --out {w}/out/e10.onnx --checkpoint {w}/ck/co_pickle",
            1,
            "co_pickle",
        ),  # fmt: skip
        _c(
            e,
            "corr-ckpt-truncated",
            "export correspondence --out {w}/out/e11.onnx --checkpoint {w}/ck/co_trunc",
            1,
            "co_trunc",
        ),  # fmt: skip
        _c(e, "out-unwritable", "export grounding --out /proc/afford.onnx", 2, "--out"),
        _c(
            e,
            "out-under-file",
            "export grounding --out {w}/afile/m.onnx",
            2,
            "--out",
            guard=("afile",),
        ),  # fmt: skip
        _c(e, "out-is-folder", "export grounding --out {w}/dir.onnx", 2, "--out"),
        _c(e, "out-suffix", "export grounding --out {w}/out/m.pt", 2, "--out"),
        _c(
            e,
            "format-empty",
            ["export", "grounding", "--format", "", "--out", "{w}/out/e.onnx"],
            2,
            "--format",
        ),  # fmt: skip
        _c(
            e,
            "format-torchscript",
            "export correspondence --format torchscript --out {w}/out/e.pt",
            2,
            "--format",
        ),  # fmt: skip
        _c(e, "task-bogus", "export segmentation --out {w}/out/e.onnx", 2, "segmentation"),
        _c(e, "no-task", "export --out {w}/out/e.onnx", 2, "task"),
        _c(e, "no-out", "export grounding", 2, "--out"),
    ]


def _serve_cases() -> list[Case]:
    """``afford serve`` argument checks (everything that fails before the server starts)."""
    s = "serve"
    return [
        _c(s, "port-neg", "serve --port -1", 2, "--port"),
        _c(s, "port-abc", "serve --port abc", 2, "--port"),
        _c(s, "port-65536", "serve --port 65536", 2, "--port"),
        _c(s, "grounding-ckpt-missing", "serve --grounding-checkpoint {w}/ck/nope", 1, "nope"),
        _c(s, "grounding-ckpt-of-corr", "serve --grounding-checkpoint {w}/ck/co", 1, "ck/co"),
        _c(
            s,
            "grounding-ckpt-pickle",
            "serve --grounding-checkpoint {w}/ck/gr_pickle",
            1,
            "gr_pickle",
        ),  # fmt: skip
        _c(
            s,
            "grounding-ckpt-truncated",
            "serve --grounding-checkpoint {w}/ck/gr_trunc",
            1,
            "gr_trunc",
        ),  # fmt: skip
        _c(s, "grounding-ckpt-a-file", "serve --grounding-checkpoint {w}/afile", 1, "afile"),
        _c(
            s,
            "grounding-ckpt-released",
            "serve --grounding-checkpoint {w}/released/zip.pth",
            1,
            "zip.pth",
        ),  # fmt: skip
        _c(s, "corr-ckpt-missing", "serve --correspondence-checkpoint {w}/ck/nope", 1, "nope"),
        _c(
            s, "corr-ckpt-of-grounding", "serve --correspondence-checkpoint {w}/ck/gr", 1, "ck/gr"
        ),  # fmt: skip
        _c(
            s,
            "corr-ckpt-pickle",
            "serve --correspondence-checkpoint {w}/ck/co_pickle",
            1,
            "co_pickle",
        ),  # fmt: skip
        _c(
            s, "corr-ckpt-empty-folder", "serve --correspondence-checkpoint {w}/empty", 1, "empty"
        ),  # fmt: skip
        _c(s, "device-bogus", "serve --device tpu9", 2, "tpu9"),
    ]


def all_cases() -> list[Case]:
    """Every case of the table (ids unique)."""
    cases = (_set_cases() + _config_file_cases() + _image_cases() + _correspond_cases()
             + _eval_cases() + _import_cases() + _synth_cases() + _pretrain_cases()
             + _misc_cases() + _prepare_cases() + _export_cases() + _serve_cases())  # fmt: skip
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases


# ---------------------------------------------------------------------------- running one
@dataclass
class Outcome:
    """What a case did: ``kind`` is clear | traceback | hang | silent | unclear."""

    id: str
    kind: str
    code: int | None
    line: str
    detail: str = ""
    seconds: float = 0.0


class _Hang(Exception):
    pass


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, w: Path, time_limit: float = TIME_LIMIT_S) -> Outcome:
    """Run ``afford <case.args>`` in this process and classify what happened."""
    import time

    from afford.cli import main

    before = {g: _digest(w / g) for g in case.guard}
    err, out = io.StringIO(), io.StringIO()
    code: int | None = None
    crash = ""

    def _alarm(signum, frame):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(case.args(w))
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except _Hang:
        code = None
        crash = "hang"
    except BaseException as exc:  # noqa: BLE001 -- the point: anything escaping is a traceback
        crash = "".join(traceback.format_exception(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    seconds = time.monotonic() - t0
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    o = Outcome(case.id, "clear", code, last, seconds=round(seconds, 2))
    changed = [g for g in case.guard if _digest(w / g) != before[g]]
    if crash == "hang":
        o.kind, o.detail = (
            "hang",
            f"over {time_limit:.0f} s"
            + (f"; changed earlier results: {', '.join(changed)}" if changed else ""),
        )
    elif crash or "Traceback" in text or "internal error:" in text:
        o.kind, o.detail = "traceback", (crash or text).strip().splitlines()[-1]
    elif changed:
        o.kind, o.detail = "silent", f"changed earlier results: {', '.join(changed)}"
    elif (w / PWNED).exists():
        o.kind, o.detail = "silent", "a pickle payload ran"
    elif case.code == 0:
        problem = f"exit {code}: {last}" if code != 0 else (case.check(w) if case.check else None)
        if problem:
            o.kind, o.detail = ("unclear" if code != 0 else "silent"), problem
    elif code == 0:
        o.kind, o.detail = "silent", "exit 0 where an error was due"
    elif code != case.code:
        o.kind, o.detail = "unclear", f"exit {code}, expected {case.code}"
    elif "error:" not in last:
        o.kind, o.detail = "unclear", "no 'error:' line"
    elif case.needle and case.needle.lower() not in last.lower():
        o.kind, o.detail = "unclear", f"the error does not name {case.needle!r}"
    elif any(ln.startswith("afford: error:") for ln in lines[:-1]):
        o.kind, o.detail = "unclear", "more than one error line"
    return o

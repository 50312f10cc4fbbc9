"""Fuzz cases for the API's inputs: every odd image, name or checkpoint is either converted
correctly or refused with a one-line UsageError / DataError naming the argument."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import afford
from afford.api.images import to_mask, to_rgb
from afford.errors import DataError, UsageError
from afford.models import demo_checkpoint, sample_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _rgba():
    return np.concatenate([RGB, np.full((12, 10, 1), 7, np.uint8)], axis=2)


# (input, expected uint8 RGB)
CONVERTED = {
    "uint8 rgb": (RGB, RGB),
    "gray 2d": (RGB[..., 0], np.repeat(RGB[..., :1], 3, 2)),
    "gray hw1": (RGB[..., :1], np.repeat(RGB[..., :1], 3, 2)),
    "rgba drops alpha": (_rgba(), RGB),
    "uint16": ((RGB.astype(np.uint16) * 257), RGB),
    "float01": (RGB / 255.0, RGB),
    "float32": ((RGB / 255.0).astype(np.float32), RGB),
    "bool": (RGB[..., 0] > 127, np.repeat(((RGB[..., :1] > 127) * 255).astype(np.uint8), 3, 2)),
    "non-contiguous": (RGB[:, ::-1], RGB[:, ::-1]),
    "pil rgb": (Image.fromarray(RGB), RGB),
    "pil L": (Image.fromarray(RGB[..., 0]), np.repeat(RGB[..., :1], 3, 2)),
    "pil rgba": (Image.fromarray(_rgba()), RGB),
    "pil palette": (
        Image.fromarray(RGB).convert("P"),
        np.asarray(Image.fromarray(RGB).convert("P").convert("RGB")),
    ),
    "pil I;16": (
        Image.fromarray(RGB[..., 0].astype(np.uint16) * 257),
        np.repeat(RGB[..., :1], 3, 2),
    ),
    "torch chw float": (torch.from_numpy(RGB).permute(2, 0, 1).float() / 255, RGB),
    "torch 1chw uint8": (torch.from_numpy(RGB).permute(2, 0, 1)[None], RGB),
    "torch hw": (torch.from_numpy(RGB[..., 0]), np.repeat(RGB[..., :1], 3, 2)),
    "torch half": (torch.from_numpy(RGB).permute(2, 0, 1).half() / 255, None),
    "2x2": (RGB[:2, :2], RGB[:2, :2]),
    "extreme aspect 2x4000": (np.zeros((2, 4000, 3), np.uint8), np.zeros((2, 4000, 3), np.uint8)),
}

REFUSED = {
    "none": (None, UsageError, "expected a path"),
    "int": (3, UsageError, "got int"),
    "list of lists": ([[1, 2], [3, 4]], UsageError, "got list"),
    "1x1": (np.zeros((1, 1, 3), np.uint8), UsageError, "each side"),
    "empty": (np.zeros((0, 5, 3), np.uint8), UsageError, "each side"),
    "2 channels": (np.zeros((5, 5, 2), np.uint8), UsageError, "channels"),
    "channel-first numpy": (np.zeros((3, 20, 30), np.uint8), UsageError, "channel-first"),
    "4d numpy": (np.zeros((1, 5, 5, 3), np.uint8), UsageError, "shape"),
    "1d": (np.zeros(10, np.uint8), UsageError, "shape"),
    "float out of range": (RGB.astype(np.float32), UsageError, r"\[0, 1\]"),
    "float nan": (np.full((4, 4, 3), np.nan), UsageError, "NaN"),
    "int64": (RGB.astype(np.int64), UsageError, "dtype int64"),
    "complex": (RGB.astype(np.complex64), UsageError, "dtype"),
    "torch int32": (torch.zeros(3, 4, 4, dtype=torch.int32), UsageError, "tensor dtype"),
    "missing file": ("/nonexistent/x.png", DataError, "not found"),
}


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_converted(name):
    x, want = CONVERTED[name]
    got = to_rgb(x, "img")
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3
    assert got.flags["C_CONTIGUOUS"]
    if want is not None:
        np.testing.assert_array_equal(got, want)
    else:
        assert np.abs(got.astype(int) - RGB).max() <= 1


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name):
    x, err, pattern = REFUSED[name]
    with pytest.raises(err, match=pattern) as info:
        to_rgb(x, "img")
    assert "\n" not in str(info.value) and "img" in str(info.value)


def test_not_an_image_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="x.png"):
        to_rgb(tmp_path / "x.png")


def test_16bit_png_file(tmp_path):
    arr = RGB[..., 0].astype(np.uint16) * 257
    Image.fromarray(arr).save(tmp_path / "g16.png")
    got = to_rgb(tmp_path / "g16.png")
    assert got.shape == (12, 10, 3) and got.dtype == np.uint8


@pytest.mark.parametrize(
    "mask, err",
    [
        (np.zeros((12, 10), bool), "empty"),
        (np.ones((5, 5), bool), "differs"),
        (np.ones((12, 10, 3), bool), "expected a"),
        ("nope", "not found"),
        (3.0, "expected a"),
    ],
)
def test_bad_masks(mask, err):
    with pytest.raises((UsageError, DataError), match=err):
        to_mask(mask, (12, 10))


def test_mask_kinds():
    m = np.zeros((12, 10), np.uint8)
    m[3:6, 2:5] = 255
    for x in (m, m > 0, m[..., None], torch.from_numpy(m), Image.fromarray(m)):
        np.testing.assert_array_equal(to_mask(x, (12, 10)), m > 0)


# ------------------------------------------------------------------ through the models
@pytest.fixture(scope="module")
def grounder():
    return afford.Grounder.from_checkpoint("demo", device="cpu")


@pytest.fixture(scope="module")
def corr():
    return afford.Corresponder.from_checkpoint("demo", device="cpu")


@pytest.mark.parametrize("shape", [(2, 2, 3), (3, 500, 3), (700, 4, 3), (33, 47)])
def test_odd_sizes_ground(grounder, shape):
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    r = grounder.predict(img, "hold")
    assert r.heatmap.shape == shape[:2] and np.isfinite(r.heatmap).all()


@pytest.mark.parametrize("action", ["fly", "", "HOLD", None, 3])
def test_unknown_actions(grounder, action):
    with pytest.raises(UsageError, match="known actions"):
        grounder.predict(RGB, action)


@pytest.mark.parametrize("bs", [0, -1, 1.5, True])
def test_bad_batch_size(grounder, bs):
    with pytest.raises(UsageError, match="batch_size"):
        grounder.predict([RGB, RGB], "hold", batch_size=bs)


def test_bad_image_in_batch_names_its_index(grounder):
    with pytest.raises(UsageError, match=r"images\[1\]"):
        grounder.predict([RGB, 5], "hold")


@pytest.mark.parametrize("function", ["fly-with", "", None])
def test_unknown_functions(corr, function):
    img = np.asarray(Image.open(sample_image()).convert("RGB"))
    with pytest.raises(UsageError, match="function"):
        corr.match(img, img, function)


@pytest.mark.parametrize(
    "points, pattern",
    [([[1e6, 3]], "inside"), ([[np.nan, 1]], "NaN"), ([1, 2, 3], r"\(N,2\)"), ("ab", "points"),
     ([[-1, 5]], "inside")],
)  # fmt: skip
def test_bad_points(corr, points, pattern):
    img = np.asarray(Image.open(sample_image()).convert("RGB"))
    with pytest.raises(UsageError, match=pattern):
        corr.match(img, img, "grasp", points=points)


def test_bad_top_k_and_masks(corr):
    img = np.asarray(Image.open(sample_image()).convert("RGB"))
    with pytest.raises(UsageError, match="top_k"):
        corr.discover(img, img, "grasp", top_k=0)
    with pytest.raises(UsageError, match="masks"):
        corr.match(img, img, "grasp", masks=np.ones((128, 128), bool))


@pytest.mark.parametrize("what", ["truncated weights", "garbage config", "no weights", "not a dir"])
def test_broken_checkpoints(tmp_path, what):
    ck = tmp_path / "ck"
    shutil.copytree(demo_checkpoint("grounding"), ck)
    w = ck / "model.safetensors"
    if what == "truncated weights":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 3])
    elif what == "garbage config":
        (ck / "config.json").write_text("{not json")
    elif what == "no weights":
        w.unlink()
    else:
        shutil.rmtree(ck)
        ck.write_text("x")
    with pytest.raises(DataError) as info:
        afford.Grounder.from_checkpoint(ck, device="cpu")
    assert str(ck) in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_of_wrong_type_argument():
    with pytest.raises(UsageError, match="checkpoint"):
        afford.Grounder.from_checkpoint(123)
    meta = json.loads((demo_checkpoint("grounding") / "config.json").read_text())
    assert "backbones" in meta["config"]  # the shipped model records its backbones

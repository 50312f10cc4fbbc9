"""Atomic writes: the usual file modes, nothing temporary left behind."""

import os
import stat

import torch

from afford.data.io import atomic_path, write_json, write_text
from afford.engine import load_checkpoint, save_checkpoint


def test_atomic_writes_get_the_usual_mode(tmp_path):
    """tempfile makes 0600 files; results must be readable by others under umask 022."""
    old = os.umask(0o022)
    try:
        a = write_text(tmp_path / "a.txt", "x")
        b = write_json(tmp_path / "sub" / "b.json", {"k": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.stat().st_mode) == 0o644
    assert b.read_text() == '{\n  "k": 1\n}\n'
    assert not list(tmp_path.rglob(".*tmp*"))


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = write_text(tmp_path / "r.txt", "old")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*tmp*"))


def test_checkpoint_folders_get_the_usual_modes(tmp_path):
    """tempfile.mkdtemp makes 0700 folders; a saved checkpoint must be 0755 / 0644."""
    old = os.umask(0o022)
    try:
        ckpt = save_checkpoint(tmp_path / "last", torch.nn.Linear(2, 1), {"what": "linear"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in ckpt.iterdir()} == {0o644}
    assert load_checkpoint(ckpt)["config"] == {"what": "linear"}

"""Atomic writes: the usual file modes, nothing temporary left behind."""

import os
import stat

import numpy as np
import pytest
import torch

from afford.data.io import atomic_path, read_format_json, remove_entries, write_json, write_text
from afford.engine import load_checkpoint, save_checkpoint
from afford.errors import DataError, UsageError


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


def test_output_dir_refuses_existing_results_unless_overwrite(tmp_path):
    from afford.data.io import output_dir
    from afford.errors import UsageError

    out = output_dir(tmp_path / "run")
    assert out.is_dir()
    (out / "results.json").write_text("{}")
    with pytest.raises(UsageError, match=r"--out: .*already holds results \(results.json\)"):
        output_dir(out)
    assert (out / "results.json").read_text() == "{}"  # nothing touched
    assert output_dir(out, overwrite=True) == out
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        output_dir(tmp_path / "file", arg="--report")


def test_cli_exit_codes_follow_error_kind(monkeypatch, capsys):
    import afford.cli as cli
    from afford.errors import AffordError, DataError, UsageError

    for exc, code in ((UsageError("u"), 2), (DataError("d"), 1), (AffordError("a"), 2)):

        def boom(args, exc=exc):
            raise exc

        parser = cli.build_parser()
        args = parser.parse_args(["info"])
        args.func = boom
        monkeypatch.setattr(cli, "build_parser", lambda a=args: _Fixed(a))
        assert cli.main(["info"]) == code
        assert capsys.readouterr().err.strip() == f"afford: error: {exc}"


class _Fixed:
    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args


def test_read_format_json_checks_format_and_version(tmp_path):
    path = tmp_path / "f.json"
    with pytest.raises(UsageError, match=r"^--thing x: file not found$"):
        read_format_json(path, "afford-x", 1, "--thing x")
    for obj, msg in (
        ([], "expected a JSON object at the top level"),
        ({"format": "y", "format_version": 1}, "format: expected 'afford-x', got 'y'"),
        ({"format": "afford-x", "format_version": 2}, "format_version: expected 1, got 2"),
    ):
        write_json(path, obj)
        with pytest.raises(DataError, match=f"^{path}: {msg}$".replace("[", r"\[")):
            read_format_json(path, "afford-x", 1, "--thing x")
    write_json(path, {"format": "afford-x", "format_version": 1, "a": 2})
    assert read_format_json(path, "afford-x", 1, "--thing x")["a"] == 2


def test_remove_entries_deletes_only_the_named_files_and_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("x")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("k")
    remove_entries(tmp_path, ["sub", "a.json", "missing"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_write_npz_levels_round_trip_and_are_deterministic(tmp_path):
    from afford.data.io import read_npz, write_npz

    arrays = {"a": np.arange(5000, dtype=np.float32).reshape(50, 100), "m": np.eye(40, dtype=bool)}
    default = write_npz(tmp_path / "d.npz", **arrays)
    fast = write_npz(tmp_path / "f.npz", 1, **arrays)
    again = write_npz(tmp_path / "g.npz", compresslevel=1, **arrays)
    for p in (default, fast):
        back = read_npz(p)
        assert set(back) == set(arrays)
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    assert fast.read_bytes() == again.read_bytes()  # fixed timestamps: same bytes
    with pytest.raises(UsageError, match="compresslevel must be in 1..9"):
        write_npz(tmp_path / "x.npz", 0, **arrays)

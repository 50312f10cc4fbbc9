"""Outputs are readable by colleagues: files 0644 and folders 0755 under the default umask 022
(``tempfile`` alone gives 0600 / 0700), and the umask is respected (027 -> 0640 / 0750)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import cli_cases  # noqa: E402

from afford.cli import main
from afford.data.io import atomic_path, output_dir, write_image, write_json, write_npz
from afford.engine import save_checkpoint


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = stat.S_IMODE(p.stat().st_mode)
    return out


def _check(root: Path, file_mode: int, dir_mode: int) -> None:
    modes = _modes(root)
    assert len(modes) > 1
    for name, mode in modes.items():
        want = dir_mode if (root / name).is_dir() else file_mode
        assert mode == want, f"{name}: {oct(mode)}, expected {oct(want)}"


@pytest.mark.parametrize("mask, fmode, dmode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_io_writers_respect_the_umask(tmp_path, umask, mask, fmode, dmode):
    umask(mask)
    out = output_dir(tmp_path / "res")
    write_json(out / "a.json", {"x": 1})
    write_npz(out / "sub" / "b.npz", x=np.zeros(3))
    write_image(out / "c.png", np.zeros((4, 4, 3), np.uint8))
    with atomic_path(out / "d.bin") as tmp:
        tmp.write_bytes(b"x")
    save_checkpoint(out / "ckpt", torch.nn.Linear(2, 2), {"kind": "test"})
    _check(out, fmode, dmode)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return cli_cases.build_world(tmp_path_factory.mktemp("modes_world"))


@pytest.mark.parametrize(
    "argv",
    [
        "ground {w}/img/good.png {w}/img/gray.png --action hold --device cpu --out {out}",
        "correspond {w}/img/good.png {w}/img/good2.png --function grasp --top 3 --device cpu "
        "--out {out}",
        "eval correspondence --baseline chance --pairs {w}/corr/tiny --max-pairs 1 "
        "--discovery-stride 8 --out {out}",
        "import-checkpoint {w}/released/rel.pth --out {out} --dataset hico_iif",
    ],
    ids=["ground", "correspond", "eval-correspondence", "import-checkpoint"],
)
def test_command_outputs_are_0644_and_0755(world, tmp_path, umask, argv):
    if "rel.pth" in argv and not (world / "released" / "rel.pth").is_file():
        sys.path.insert(0, str(Path(__file__).parents[1] / "grounding"))
        from test_import import released_state_dict

        torch.save(released_state_dict(), world / "released" / "rel.pth")
    out = tmp_path / "out"
    args = argv.format(w=world, out=out).split()
    assert main(args) == 0
    _check(out, 0o644, 0o755)

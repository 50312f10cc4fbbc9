"""The ``afford`` command on bad inputs (table: ``tests/fuzz/cli_cases.py``): every case exits 2
(usage) or 1 (data) with one line naming the file or argument, no traceback, no hang, nothing
written before lost; odd but valid inputs (grey, RGBA, 16-bit, palette, CMYK, extreme aspect)
work. ``benchmarks/reliability.py`` runs the same table for docs/reliability.md."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import cli_cases  # noqa: E402

CASES = cli_cases.all_cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return cli_cases.build_world(tmp_path_factory.mktemp("fuzz_world"))


def test_the_table_is_large_and_named():
    assert len(CASES) >= 100
    errors = [c for c in CASES if c.code != 0]
    assert len(errors) >= 100 and all(c.needle for c in errors)
    assert {c.code for c in CASES} == {0, 1, 2}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_case(world, case):
    out = cli_cases.run_case(case, world, time_limit=120)
    assert out.kind == "clear", f"{out.kind}: {out.detail} | {out.line}"
    assert not (world / cli_cases.PWNED).exists()


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    """PIL's convert('RGB') clips 16-bit values at 255 (a white picture): read_image scales."""
    from afford.data.io import read_gray, read_image

    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "r16.png")
    rgb, grey = read_image(tmp_path / "r16.png"), read_gray(tmp_path / "r16.png")
    want = np.round(ramp / 257.0).astype(np.uint8)
    assert np.abs(grey.astype(int) - want).max() <= 1
    assert np.array_equal(rgb[..., 0], grey) and rgb.shape == (8, 64, 3)


def test_a_bug_is_one_line_without_v_and_a_traceback_with_it(monkeypatch, capsys):
    """An unexpected exception (a bug, not bad input) is one line with exit 70 (EX_SOFTWARE),
    and the traceback with -v; the fuzz table counts it as a traceback."""
    import afford.cli.info as info
    from afford.cli import EXIT_INTERNAL, main

    def boom():
        raise ZeroDivisionError("simulated bug\nsecond line")

    monkeypatch.setattr(info, "collect", boom)
    assert main(["info"]) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("afford: internal error: ZeroDivisionError")
    with pytest.raises(ZeroDivisionError):
        main(["-v", "info"])

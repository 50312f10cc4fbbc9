"""A command whose optional dependency is missing says which extra to install (no traceback)."""

import subprocess
import sys

import pytest

# Run in a fresh interpreter in which the optional module cannot be imported.
_SCRIPT = """
import sys
sys.modules[{module!r}] = None  # import of it now raises ModuleNotFoundError
from afford.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    "module, argv",
    [
        ("trimesh", ["synth", "correspondence", "--size", "tiny", "--out", "{out}"]),
        ("trimesh", ["demo", "--quick", "--out", "{out}"]),
    ],
)
def test_missing_synth_extra_is_a_one_line_error(tmp_path, module, argv):
    argv = [a.format(out=tmp_path / "out") for a in argv]
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(module=module, argv=argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"afford: error: this command needs {module!r}, from the optional 'synth' extra: "
        "pip install 'afford[synth]'"
    )
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / "report.html").exists()

"""Cheap packaging checks (no wheel is built): shipped configs, package data, licence,
dependency pins, documentation links, the benchmark runner's coverage."""

import fnmatch
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import afford
from afford.config import CONFIG_DIR, read_yaml, resolve_config_path, shipped_configs

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(afford.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_shipped_config_resolves():
    names = shipped_configs()
    assert "grounding/synth" in names and "correspondence/synth-tiny" in names
    for name in names:
        path = resolve_config_path(name)
        assert path.is_file() and path.resolve().is_relative_to(CONFIG_DIR)
        assert isinstance(read_yaml(path), dict)
    # the repository-root `configs` is the same folder
    assert (ROOT / "configs").resolve() == CONFIG_DIR


def test_package_data_covers_every_data_file():
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["afford"]
    data = [
        p.relative_to(PKG).as_posix()
        for p in PKG.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert "py.typed" in data and any(d.startswith("configs/") for d in data)
    # setuptools' `**` matches any number of folders; fnmatch's `*` already crosses `/`
    missing = [d for d in data if not any(fnmatch.fnmatch(d, g.replace("**/", "")) for g in globs)]
    assert not missing, f"not shipped in the wheel (add to package-data): {missing}"


def test_license_matches_pyproject():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_python_versions_agree():
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py310"


def test_constraints_pin_every_dependency_within_its_range():
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("afford[")]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    for req in reqs:
        assert _norm(req.name) in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[_norm(req.name)]), (req, pins[_norm(req.name)])


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+\s+(.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_files(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_run_all_covers_every_benchmark():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run_all  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(run_all)
    finally:
        del sys.modules[spec.name]
    assert run_all.unregistered() == []
    assert run_all.main(["--list"]) == 0

"""`afford demo --quick` end to end, its report, data reuse, and failure behaviour."""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest

import afford.demo as demo
from afford.cli import main

pytestmark = pytest.mark.slow

SECTIONS = (
    "## What was run",
    "## Affordance grounding",
    "## Dense functional correspondence",
    "### Heatmaps on held-out test images",
    "### Label transfer on test pairs",
    "### Discovery precision-recall",
    "## Training curves",
    "## A real photo",
    "## Reproduce every number",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    code = main(["demo", "--quick", "--out", str(out), "--device", "cpu"])
    return code, out


def _finite01(x) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_quick_demo_writes_complete_report(quick_run):
    code, out = quick_run
    assert code == 0
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file(), name
    r = json.loads((out / "results.json").read_text())
    n_test = r["data"]["affordance"]["counts"]["test_gt"]
    assert n_test > 0
    for run in ("grounding-selective", "grounding-ce"):
        m = r["grounding"][run]
        assert m["n"] == n_test
        assert math.isfinite(m["kld"]) and m["kld"] >= 0
        assert _finite01(m["sim"])
        assert math.isfinite(m["nss"])
        # the demo transcribes exactly what the evaluation module wrote
        ev = json.loads(Path(m["results"]).read_text())
        assert (ev["kld"], ev["sim"], ev["nss"]) == (m["kld"], m["sim"], m["nss"])
    ev = json.loads(Path(r["correspondence"]["results"]).read_text())
    for row in ("full", "spatial-only", "dino", "chance"):
        m = r["correspondence"][row]["overall"]
        assert m["n"] == 2 * r["correspondence"]["settings"]["pairs"]
        for k in demo.CORR_COLUMNS:
            assert _finite01(m[k]), (row, k, m[k])
        assert m == ev[row]["overall"]
    # checkpoints selected on validation and trained for the configured length
    for run, info in r["training"].items():
        assert Path(info["config"]).is_file()
        assert (Path(info["run"]) / "best" / "model.safetensors").is_file(), run
        assert 1 <= info["best_epoch"] <= info["epochs"]


def test_report_sections_numbers_and_figures(quick_run):
    _, out = quick_run
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    r = json.loads((out / "results.json").read_text())
    for sec in SECTIONS:
        assert sec in md, sec
    # our numbers appear as computed
    for run in ("grounding-selective", "grounding-ce"):
        assert f"{r['grounding'][run]['kld']:.3f}" in md
    assert f"{r['correspondence']['full']['overall']['pck@23']:.3f}" in md
    # the papers' numbers, clearly marked as real-data context
    for number in ("1.124", "1.243", "0.381", "0.486", "0.685", "0.287", "0.470"):
        assert number in md, number
    assert md.count("For context only") == 2
    assert "not expected to be good on real photos" in md
    # every image the report shows exists, in md and in html
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert len(links) >= 12 and sorted(links) == sorted(srcs)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 1000, link
    assert html.count("<table>") == md.count("\n|---") and "<table>" in html
    figs = r["figures"]
    assert set(figs["loss"]) == {*demo.GROUNDING_RUNS, *demo.CORR_RUNS}
    assert {p["row"] for p in figs["pr"]} >= {"full", "spatial-only"}
    assert {m["row"] for m in figs["matches"]} >= {"full", "spatial-only"}
    assert len(figs["heatmaps"]) >= 2
    photo = r["photo"]["correspondence"]
    assert 0 <= photo["correct"] <= photo["matches"] > 0
    assert Path(r["photo"]["grounding_figure"]).is_file()


def test_printed_command_reproduces_a_number(quick_run, tmp_path):
    _, out = quick_run
    r = json.loads((out / "results.json").read_text())
    cmd = next(
        c["command"] for c in r["commands"] if c["purpose"].startswith("evaluate grounding-ce")
    )
    argv = shlex.split(cmd)
    assert argv[0] == "afford"
    argv = argv[1 : argv.index("--out")] + ["--out", str(tmp_path / "ev"), "--no-figures"]
    assert main(argv) == 0
    again = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert again["kld"] == pytest.approx(r["grounding"]["grounding-ce"]["kld"], abs=1e-9)

    cmd = next(
        c["command"] for c in r["commands"] if c["purpose"] == "evaluate correspondence-full"
    )
    argv = shlex.split(cmd)
    argv = argv[1 : argv.index("--out")] + ["--out", str(tmp_path / "cev")]
    assert main(argv) == 0
    again = json.loads((tmp_path / "cev" / "results.json").read_text())["full"]["overall"]
    ours = r["correspondence"]["full"]["overall"]
    assert again["n"] == ours["n"]
    for k in ("pck@23", "ap@23", "norm_dist"):
        assert again[k] == pytest.approx(ours[k], abs=1e-9), k


def test_dataset_reuse_is_decided_by_the_manifest(quick_run):
    _, out = quick_run
    same = demo.Demo(out, quick=True, seed=0)
    assert same._aff_unchanged() and same._corr_unchanged()
    other_seed = demo.Demo(out, quick=True, seed=1)
    assert not other_seed._aff_unchanged() and not other_seed._corr_unchanged()
    bigger = demo.Demo(out, quick=False, seed=0)
    assert not bigger._aff_unchanged() and not bigger._corr_unchanged()


def test_failing_stage_exits_nonzero_and_leaves_no_report(quick_run, tmp_path, monkeypatch, capsys):
    _, done = quick_run
    out = tmp_path / "copy"
    shutil.copytree(done, out)  # a previous successful run: its report must not survive
    assert (out / "report.md").is_file()

    def boom(self):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(demo.Demo, "stage_data", boom)
    code = main(["demo", "--quick", "--out", str(out), "--device", "cpu"])
    assert code != 0
    err = capsys.readouterr().err
    assert "stage 1/5 'data' failed" in err and "simulated failure" in err
    for name in ("report.md", "report.html", "results.json"):
        assert not (out / name).exists(), name


def test_report_files_appear_together_or_not_at_all(tmp_path, monkeypatch):
    import afford.data.io as io

    real = io.write_text

    def fail_on_html(path, text):
        if ".report." in Path(path).name and str(path).endswith(".html"):
            raise OSError("disk full")
        return real(path, text)

    monkeypatch.setattr(io, "write_text", fail_on_html)
    with pytest.raises(OSError, match="disk full"):
        demo.write_report(tmp_path, "# r\n", "<html></html>", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no report, no temporary left behind
    monkeypatch.setattr(io, "write_text", real)
    demo.write_report(tmp_path, "# r\n", "<html></html>", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.md",
        "results.json",
    ]
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1}


def test_refuses_a_foreign_nonempty_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not written by `afford demo`" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert not (tmp_path / demo.MARKER).exists()

"""`afford demo --quick` end to end, its report and headline, data reuse, and failure
behaviour."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest

import afford.demo as demo
from afford.cli import main
from afford.demo import report, stages

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
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--quick", "--out", str(out), "--device", "cpu"])
    return code, out, printed.getvalue()


def _finite01(x) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and 0.0 <= x <= 1.0


def test_quick_demo_writes_complete_report(quick_run):
    code, out, _ = quick_run
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
        assert info["selection"]["checkpoint"] in ("best", "last"), run


def test_report_sections_numbers_and_figures(quick_run):
    _, out, _ = quick_run
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
    _, out, _ = quick_run
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
    _, out, _ = quick_run
    same = stages.Demo(out, quick=True, seed=0)
    assert same._aff_unchanged() and same._corr_unchanged()
    other_seed = stages.Demo(out, quick=True, seed=1)
    assert not other_seed._aff_unchanged() and not other_seed._corr_unchanged()
    bigger = stages.Demo(out, quick=False, seed=0)
    assert not bigger._aff_unchanged() and not bigger._corr_unchanged()


def test_failing_stage_exits_nonzero_and_leaves_no_report(quick_run, tmp_path, monkeypatch, capsys):
    _, done, _ = quick_run
    out = tmp_path / "copy"
    shutil.copytree(done, out)  # a previous successful run: its report must not survive
    assert (out / "report.md").is_file()

    def boom(self):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(stages.Demo, "stage_data", boom)
    code = main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--overwrite"])
    assert code != 0
    err = capsys.readouterr().err
    assert "stage 1/5 'data' failed" in err and "simulated failure" in err
    for name in ("report.md", "report.html", "results.json"):
        assert not (out / name).exists(), name


def test_report_files_appear_together_or_not_at_all(tmp_path, monkeypatch):
    real = report.write_text

    def fail_on_html(path, text):
        if ".report." in Path(path).name and str(path).endswith(".html"):
            raise OSError("disk full")
        return real(path, text)

    monkeypatch.setattr(report, "write_text", fail_on_html)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(tmp_path, "# r\n", "<html></html>", {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no report, no temporary left behind
    monkeypatch.setattr(report, "write_text", real)
    report.write_report(tmp_path, "# r\n", "<html></html>", {"a": 1})
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
    assert not (tmp_path / stages.MARKER).exists()


# ------------------------------------------------------------------------------ the headline
def _made_up(sel_kld=1.9, ce_kld=2.3, uniform_kld=2.4, full_pck=0.3, spatial_pck=0.2,
             chance_pck=0.1, profile="quick"):  # fmt: skip
    """The parts of a results dict the headline reads."""
    return {
        "profile": profile,
        "grounding": {
            "grounding-selective": {"kld": sel_kld, "sim": 0.4},
            "grounding-ce": {"kld": ce_kld, "sim": 0.2},
            "uniform": {"kld": uniform_kld, "sim": 0.16},
        },
        "correspondence": {
            "full": {"overall": {"pck@23": full_pck, "ap@23": 0.3}},
            "spatial-only": {"overall": {"pck@23": spatial_pck, "ap@23": 0.2}},
            "chance": {"overall": {"pck@23": chance_pck, "ap@23": 0.2}},
        },
    }


def test_headline_states_each_gain_with_its_sign():
    lines = report.headline(_made_up())
    assert lines[0] == (
        "grounding: selective KLD 1.900 vs uniform 2.400 (-20.8%, lower is better), "
        "SIM 0.400 vs 0.160 (+150.0%)"
    )
    assert lines[1] == (
        "correspondence: full PCK@23 0.300 vs chance 0.100 (+200.0%), AP@23 0.300 vs 0.200 (+50.0%)"
    )
    assert len(lines) == 3 and lines[2].startswith("every trained model beats")
    assert not any("under chance" in line for line in lines)
    assert all(g["beats_reference"] for g in report.gains(_made_up()))


def test_headline_says_plainly_when_a_model_is_under_chance():
    # CE worse than uniform on KLD, full worse than chance on PCK@23, spatial-only tied
    r = _made_up(ce_kld=2.5, full_pck=0.09, spatial_pck=0.1)
    lines = report.headline(r)
    assert "correspondence: full PCK@23 0.090 vs chance 0.100 (-10.0%)" in lines[1]
    under = [line for line in lines if line.startswith("under chance:")]
    assert under == [
        "under chance: grounding ce KLD 2.500 is not better than uniform 2.400: "
        "this run is too short to learn; run without --quick",
        "under chance: correspondence full PCK@23 0.090 is not better than chance 0.100: "
        "this run is too short to learn; run without --quick",
        "under chance: correspondence spatial-only PCK@23 0.100 is not better than chance "
        "0.100: this run is too short to learn; run without --quick",
    ]
    assert not any(line.startswith("every trained model") for line in lines)
    assert [g["run"] for g in report.gains(r) if not g["beats_reference"]] == [
        "grounding-ce", "correspondence-full", "correspondence-spatial",
    ]  # fmt: skip
    # a full-size run is not told to drop --quick
    full = report.headline(_made_up(sel_kld=2.6, profile="full"))
    assert any(line.startswith("under chance: grounding selective KLD 2.600") for line in full)
    assert not any("--quick" in line for line in full)


def test_quick_run_prints_and_reports_the_headline(quick_run):
    _, out, printed = quick_run
    r = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    # the uniform row: scored on the same test images as the models
    u = r["grounding"]["uniform"]
    assert u["n"] == r["grounding"]["grounding-selective"]["n"]
    assert math.isfinite(u["kld"]) and _finite01(u["sim"]) and abs(u["nss"]) < 0.01
    assert u["constant_map"]["sim"] == 0.0 and u["constant_map"]["kld"] > u["kld"]
    assert f"uniform map (chance): KLD {u['kld']:.3f}" in printed
    lines = report.headline(r)
    assert r["headline"] == lines
    assert lines[0].startswith("grounding: selective KLD ")
    assert lines[1].startswith("correspondence: full PCK@23 ")
    for line in lines:
        assert f"  {line}\n" in printed, line
        assert f"- {line}" in md, line
    for g in report.gains(r):
        said = any(f"under chance: {g['task']} {g['label']} " in line for line in lines)
        assert said == (not g["beats_reference"]), g["run"]

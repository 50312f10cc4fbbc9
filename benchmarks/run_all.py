"""Run the benchmarks: every script in benchmarks/ that writes a results file.

Each job runs one script, in a subprocess, with the options that produced its committed
``benchmarks/results/<name>.json`` (read off each script's ``--help`` and the settings that
the results file records); the script itself writes the JSON and prints its table. Nothing
here computes or edits a number.

    python benchmarks/run_all.py --list                  # names, commands, results files
    python benchmarks/run_all.py                         # all of them (hours on 2 CPU cores)
    python benchmarks/run_all.py --only render metrics   # some of them

Data sets that a script does not write itself are generated first with ``afford synth`` into
``benchmarks/data/`` (not committed). Times are machine-dependent; the training benchmarks
(grounding_table2*, correspondence_table1*) reproduce their numbers for the same thread count
(float summation order), which is why their commands fix ``--threads``.

``correspondence_table1.json`` was produced as one-seed processes in parallel, merged with the
script's ``--combine``; the job here runs the same settings as one process, seed after seed
(each seed's runs are independent, so the rows are the same, only slower).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / "data"
#: Scripts in benchmarks/ that are not benchmarks.
NOT_BENCHMARKS = {"run_all.py"}


@dataclass(frozen=True)
class Job:
    """One benchmark: ``python benchmarks/<script> <args>`` writes ``results/<result>``.

    ``prepare`` is an ``afford`` command line (without ``afford``) that writes a data set the
    script needs but does not generate; it runs only when ``prepare_marker`` is missing."""

    script: str
    args: tuple[str, ...] = ()
    result: str = ""
    prepare: tuple[str, ...] = ()
    prepare_marker: Path | None = None
    note: str = field(default="", compare=False)

    def command(self) -> list[str]:
        return [sys.executable, str(HERE / self.script), *self.args]

    def prepare_command(self) -> list[str]:
        return [sys.executable, "-m", "afford.cli", *self.prepare] if self.prepare else []


CORR_611 = DATA / "synth-corr-611"  # --per-category 6 1 1 (corr_feature_bank.py's docstring)
CORR_612 = DATA / "synth-corr-612"  # 6 1 2: the Table 1 set (60 test pairs)
CORR_211 = DATA / "synth-corr-211"  # 2 1 1: the random-tiny run's set

JOBS: dict[str, Job] = {
    "api": Job("api.py", result="api.json", note="Python API at real size, random weights"),
    "backbones": Job("backbones.py", result="backbones.json"),
    "corr_feature_bank": Job(
        "corr_feature_bank.py",
        ("--data", str(CORR_611)),
        result="corr_feature_bank.json",
        prepare=(
            "synth",
            "correspondence",
            "--out",
            str(CORR_611),
            "--size",
            "default",
            "--per-category",
            "6",
            "1",
            "1",
            "--workers",
            "2",
        ),  # fmt: skip
        prepare_marker=CORR_611 / "dataset.json",
    ),
    "correspondence_table1": Job(
        "correspondence_table1.py",
        (
            "--data",
            str(CORR_612),
            "--per-category",
            "6",
            "1",
            "2",
            "--threads",
            "1",
            "--rows",
            "functional only",
            "spatial only",
            "full",
            "full, lambda_spatial 1",
            "full + mask",
        ),  # fmt: skip
        result="correspondence_table1.json",
        note="3 seeds x 5 trained rows of 2 x 2500 steps",
    ),
    "correspondence_table1_random_tiny": Job(
        "correspondence_table1.py",
        (
            "--data",
            str(CORR_211),
            "--per-category",
            "2",
            "1",
            "1",
            "--dinov2",
            "tiny",
            "--iters",
            "40",
            "--max-pairs",
            "20",
            "--threads",
            "2",
            "--rows",
            "functional only",
            "spatial only",
            "full",
            "--out",
            str(RESULTS / "correspondence_table1_random_tiny.json"),
        ),  # fmt: skip
        result="correspondence_table1_random_tiny.json",
    ),
    "grounding_cache": Job(
        "grounding_cache.py", ("--batches", "4", "--batch-size", "2"), "grounding_cache.json"
    ),
    "grounding_core": Job("grounding_core.py", result="grounding_core.json"),
    "grounding_table2": Job(
        "grounding_table2.py",
        ("--threads", "1"),
        result="grounding_table2.json",
        note="27 trainings of under a minute each",
    ),
    "grounding_table2_random_tiny": Job(
        "grounding_table2.py",
        (
            "--dino",
            "tiny",
            "--rows",
            "a",
            "b",
            "h",
            "i",
            "i_soft",
            "a_soft",
            "locate",
            "--threads",
            "1",
            "--work",
            "/tmp/afford_grounding_table2_random_tiny",
            "--out",
            str(RESULTS / "grounding_table2_random_tiny.json"),
        ),  # fmt: skip
        result="grounding_table2_random_tiny.json",
    ),
    "matching": Job("matching.py", result="matching.json"),
    "metrics": Job("metrics.py", result="metrics.json"),
    "prepare": Job("prepare.py", result="prepare.json", note="real-asset preparation throughput"),
    "pretrain_probe": Job("pretrain_probe.py", result="pretrain_probe.json"),
    "reliability": Job(
        "reliability.py",
        result="reliability.json",
        note="fuzz table of the CLI + same-seed determinism, a few minutes",
    ),  # fmt: skip
    "render": Job("render.py", result="render.json"),
    "serve": Job("serve.py", result="serve.json"),
    "synth_correspondence": Job("synth_correspondence.py", result="synth_correspondence.json"),
    "training_scale": Job(
        "training_scale.py",
        ("--steps", "4", "--bf16-steps", "2"),
        result="training_scale.json",
        note="10 real-size training commands of 4 steps (2 with bf16-mixed; ~30 min on 2 cores)",
    ),
}


def unregistered() -> list[str]:
    """Problems that would make ``run_all`` incomplete: a benchmark script or a results file
    that no job covers, or a job whose script is gone."""
    scripts = {p.name for p in HERE.glob("*.py") if not p.name.startswith("_")} - NOT_BENCHMARKS
    used = {j.script for j in JOBS.values()}
    results = {p.name for p in RESULTS.glob("*.json")}
    made = {j.result for j in JOBS.values()}
    return (
        [f"benchmarks/{s}: no job in run_all.JOBS" for s in sorted(scripts - used)]
        + [f"benchmarks/{s}: job names a missing script" for s in sorted(used - scripts)]
        + [f"benchmarks/results/{r}: no job writes it" for r in sorted(results - made)]
    )


def _quote(cmd: list[str]) -> str:
    return " ".join(repr(c) if (" " in c or "," in c) else c for c in cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--list", action="store_true", help="print the jobs and exit")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(JOBS), help="run these")
    args = ap.parse_args(argv)
    problems = unregistered()
    if problems:
        print("run_all: " + "; ".join(problems), file=sys.stderr)
        return 2
    names = args.only or list(JOBS)
    if args.list:
        for name in names:
            job = JOBS[name]
            print(
                f"{name}  ->  benchmarks/results/{job.result}"
                + (f"  ({job.note})" * bool(job.note))
            )
            if job.prepare:
                print(f"    (if missing) afford {_quote(list(job.prepare))}")
            print(f"    python benchmarks/{job.script} {_quote(list(job.args))}".rstrip())
        return 0
    failed = []
    for name in names:
        job = JOBS[name]
        t0 = time.perf_counter()
        print(f"== {name}: {_quote(job.command())}", flush=True)
        if job.prepare and not (job.prepare_marker and job.prepare_marker.is_file()):
            subprocess.run(job.prepare_command(), check=True)
        rc = subprocess.run(job.command(), cwd=HERE.parent).returncode
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

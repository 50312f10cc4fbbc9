"""Reliability: the fuzz table of the ``afford`` command and same-seed determinism.

1. Every case of ``tests/fuzz/cli_cases.py`` (bad configs, ``--set`` values, images, checkpoints,
   pickles, datasets, output folders; plus odd but valid images that must work) is run in this
   process against a fuzz world written to a temporary folder, with a time limit per case, and
   classified: *clear* (the expected exit code 2 / 1 with one ``error:`` line naming the file
   or argument, or a correct output for the valid ones), *traceback*, *hang* (over the
   limit), *silent wrong output* (exit 0 where an error was due, a wrong output, an earlier
   result changed, a pickle payload executed) or *unclear* (other exit code, an error that
   does not name the file / argument). Bar: 0 tracebacks, 0 hangs, 0 silent wrong outputs.
2. Determinism: a tiny grounding training + test evaluation (hand-made AGD20K tree of
   ``tests/grounding/gtrain_helpers.py``, tiny backbones, seed 0) and a correspondence
   evaluation of the shipped demo model (tiny dataset of ``tests/correspondence/tiny_data.py``),
   each twice with 1 torch thread, then again with 2 threads: largest absolute difference of
   every metric and training loss between the runs.

Run: ``python benchmarks/reliability.py [--time-limit S]``; writes
benchmarks/results/reliability.json and .md and the tables of docs/reliability.md (between
its ``<!-- reliability:begin -->`` / ``<!-- reliability:end -->`` markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
sys.path.insert(0, str(ROOT / "tests" / "grounding"))
sys.path.insert(0, str(ROOT / "tests" / "correspondence"))
import cli_cases  # noqa: E402

from afford.data.io import write_json, write_text  # noqa: E402

RESULTS = HERE / "results"
DOC = ROOT / "docs" / "reliability.md"
KINDS = ("clear", "traceback", "hang", "silent", "unclear")
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"


def run_table(world: Path, time_limit: float) -> dict:
    """Run every case; per-group counts of each outcome kind and the non-clear cases."""
    cases = cli_cases.all_cases()
    groups: dict[str, Counter] = {}
    bad = []
    t0 = time.monotonic()
    for i, case in enumerate(cases, 1):
        out = cli_cases.run_case(case, world, time_limit)
        groups.setdefault(case.group, Counter())[out.kind] += 1
        if out.kind != "clear":
            bad.append({"id": case.id, "kind": out.kind, "detail": out.detail, "line": out.line})
        print(f"[{i}/{len(cases)}] {out.kind:9} {case.id}", file=sys.stderr)
    total = Counter()
    for c in groups.values():
        total.update(c)
    return {
        "cases": len(cases),
        "valid_inputs": sum(c.code == 0 for c in cases),
        "seconds": round(time.monotonic() - t0, 1),
        "groups": {g: {k: c[k] for k in KINDS} for g, c in sorted(groups.items())},
        "total": {k: total[k] for k in KINDS},
        "not_clear": bad,
    }


def _max_diff(a, b) -> float:
    """Largest absolute difference between two equally shaped JSON trees of numbers."""
    if isinstance(a, dict):
        return max([_max_diff(a[k], b[k]) for k in a if k in b] or [0.0])
    if isinstance(a, list):
        return max([_max_diff(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, bool) or not isinstance(a, int | float):
        return 0.0 if a == b else float("inf")
    return abs(float(a) - float(b))


def _grounding_run(tree: Path, work: Path, tag: str) -> dict:
    from gtrain_helpers import tiny_config

    from afford.grounding.evaluate import evaluate
    from afford.grounding.train import train

    res = train(tiny_config(tree, work / tag, epochs=2, max_batches_per_epoch=3))
    ev = evaluate(work / tag, out=work / f"ev_{tag}", figures=False, progress=False, device="cpu")
    hist = [{k: h[k] for k in ("train", "val") if k in h} for h in res["history"]]
    return {"history": hist, "test": {k: ev[k] for k in ("kld", "sim", "nss")},
            "per_image": [{k: r[k] for k in ("kld", "sim", "nss")} for r in ev["per_image"]],
            "chance": {k: ev[k] for k in ("chance", "below_chance", "under_chance")}}  # fmt: skip


def _corr_run(root: Path) -> dict:
    from afford.correspondence.baselines import ModelRow
    from afford.correspondence.evaluate import evaluate_rows
    from afford.correspondence.train import load_trained
    from afford.data.correspondence import CorrespondenceDataset
    from afford.models import demo_checkpoint

    model, dino, clip, functions, _ = load_trained(demo_checkpoint("correspondence"), "cpu")
    ds = CorrespondenceDataset(root)
    row = ModelRow(model, dino, clip, functions, name="demo")
    res = evaluate_rows(ds, [row], discovery_stride=2, progress=False)
    return {"overall": res["demo"]["overall"],
            "per_pair": [r["metrics"] for r in res["demo"]["per_pair"]],
            "chance": {k: res["demo"][k] for k in ("below_chance", "under_chance")}}  # fmt: skip


def determinism(work: Path) -> dict:
    """Same seed twice at 1 thread, and 1 vs 2 threads, for a train+eval and an eval."""
    from gtrain_helpers import write_tree
    from tiny_data import write_tiny_dataset

    tree = write_tree(work / "tree")
    corr = write_tiny_dataset(work / "corr")
    old = torch.get_num_threads()
    runs: dict[str, dict] = {}
    try:
        for threads, tag in ((1, "t1a"), (1, "t1b"), (2, "t2")):
            torch.set_num_threads(threads)
            runs[tag] = {"grounding": _grounding_run(tree, work, tag), "corr": _corr_run(corr)}
    finally:
        torch.set_num_threads(old)
    out = {}
    for task, name in (("grounding", "tiny grounding train (2 epochs x 3 steps) + test eval"),
                       ("corr", "correspondence eval of the demo model (4 pair directions)")):  # fmt: skip
        row = {"what": name}
        for part in runs["t1a"][task]:
            same = _max_diff(runs["t1a"][task][part], runs["t1b"][task][part])
            threads = _max_diff(runs["t1a"][task][part], runs["t2"][task][part])
            row[part] = {"same_seed_1_thread_max_diff": same, "threads_1_vs_2_max_diff": threads}
        row["identical"] = all(v["same_seed_1_thread_max_diff"] == 0.0
                               for k, v in row.items() if isinstance(v, dict))  # fmt: skip
        out[task] = row
    out["grounding"]["test_1_thread"] = runs["t1a"]["grounding"]["test"]
    out["grounding"]["test_2_threads"] = runs["t2"]["grounding"]["test"]
    out["grounding"]["chance"] = runs["t1a"]["grounding"]["chance"]
    out["corr"]["pck@23_1_thread"] = runs["t1a"]["corr"]["overall"]["pck@23"]
    out["corr"]["pck@23_2_threads"] = runs["t2"]["corr"]["overall"]["pck@23"]
    return out


def markdown(res: dict) -> str:
    t = res["table"]
    lines = [
        f"{t['cases']} cases ({t['valid_inputs']} odd but valid inputs that must work, the rest "
        f"bad inputs that must be refused), {t['seconds']:.0f} s on {res['machine']['cpus']} "
        f"CPU cores (`python benchmarks/reliability.py`).",
        "",
        "| group | cases tried | clear error / correct output | traceback | hang | "
        "silent wrong output | unclear |",
        "|---|---|---|---|---|---|---|",
    ]
    for g, c in [*t["groups"].items(), ("**total**", t["total"])]:
        n = sum(c.values())
        lines.append(f"| {g} | {n} | {c['clear']} | {c['traceback']} | {c['hang']} | "
                     f"{c['silent']} | {c['unclear']} |")  # fmt: skip
    if t["not_clear"]:
        lines += ["", "Not clear:", ""]
        lines += [f"- `{b['id']}` ({b['kind']}): {b['detail']}" for b in t["not_clear"]]
    d = res["determinism"]
    lines += [
        "",
        "| run | part | same seed, 1 thread, twice: max abs diff | 1 vs 2 threads: max abs diff |",
        "|---|---|---|---|",
    ]
    parts = {"history": "training losses, val metrics", "test": "test KLD / SIM / NSS",
             "per_image": "per-image metrics", "overall": "Table 1 metrics",
             "per_pair": "per-pair metrics"}  # fmt: skip
    for task in ("grounding", "corr"):
        for part, label in parts.items():
            if part in d[task]:
                v = d[task][part]
                lines.append(f"| {d[task]['what']} | {label} | "
                             f"{v['same_seed_1_thread_max_diff']:.3g} | "
                             f"{v['threads_1_vs_2_max_diff']:.3g} |")  # fmt: skip
    g = d["grounding"]
    c = g["chance"]["chance"]
    lines += [
        "",
        f"The tiny grounding run (noise images, 6 steps) ends at test KLD "
        f"{g['test_1_thread']['kld']:.3f}, SIM {g['test_1_thread']['sim']:.3f} against the "
        f"uniform map's KLD {c['kld']:.3f}, SIM {c['sim']:.3f}: its results.json says "
        f"`under_chance: {str(g['chance']['under_chance']).lower()}`, below chance on "
        f"{', '.join(g['chance']['below_chance']) or 'nothing'}.",
    ]
    return "\n".join(lines) + "\n"


def update_doc(table_md: str) -> None:
    if not DOC.is_file():
        return
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        write_text(DOC, f"{head}{BEGIN}\n{table_md}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per case (hang)")
    ap.add_argument("--skip-determinism", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="afford_reliability_") as td:
        world = cli_cases.build_world(Path(td) / "world")
        table = run_table(world, args.time_limit)
        det = {} if args.skip_determinism else determinism(Path(td) / "det")
    res = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cuda": torch.cuda.is_available(),
        },  # fmt: skip
        "table": table,
        "determinism": det,
        "bar": {"traceback": 0, "hang": 0, "silent": 0},
        "bar_met": all(table["total"][k] == 0 for k in ("traceback", "hang", "silent")),
    }
    write_json(RESULTS / "reliability.json", res)
    if det:
        md = markdown(res)
        write_text(RESULTS / "reliability.md", md)
        update_doc(md)
        print(md)
    print(json.dumps(table["total"]))
    return 0 if res["bar_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The demo's report: checks, the headline, Markdown, HTML, and the atomic write of the set.

Everything here reads the results dict a :class:`afford.demo.stages.Demo` run collects
(``DIR/results.json``); nothing trains or evaluates.
"""

from __future__ import annotations

from html import escape
from math import isfinite, log
from pathlib import Path
from typing import Any

import markdown

from afford.data.io import atomic_path, write_json, write_text
from afford.demo.recipes import (
    CORR_COLUMNS,
    CORR_HEADLINE,
    CORR_RUNS,
    GROUNDING_HEADLINE,
    GROUNDING_RUNS,
    PAPER_CORR,
    PAPER_GROUNDING,
)
from afford.errors import AffordError

REPORT_FILES = ("report.md", "report.html", "results.json")

REAL_PHOTO_NOTE = (
    "These models sit on *tiny* backbones (random or pre-trained for minutes on synthetic "
    "renders; no pretrained weights "
    "can be downloaded here) and were trained for minutes on synthetic renders only. They are "
    "**not expected to be good on real photos**: this section only shows that the same "
    "commands run on any image. For real use, put the real DINO / DINOv2 / CLIP weights in "
    "`$AFFORD_WEIGHTS` (see `afford info`), train on AGD20K / HICO-IIF and on rendered or "
    "HANDAL correspondence data with the `vits16` / `vitb14` / `vitb16` backbones, and pass "
    "those checkpoints to `afford ground` and `afford correspond` (docs/demo.md, "
    '"Use real weights and datasets").'
)

# what the headline says about a trained model that is not better than chance, per profile
TOO_SHORT = {
    "quick": "this run is too short to learn; run without --quick",
    "full": "this run did not learn (tiny backbones, minutes of training); docs/demo.md says "
    "how to train with real weights and data",
}


# --------------------------------------------------------------------------------- helpers
def fmt_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and isfinite(float(x))


def rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------- headline
def gains(results: dict) -> list[dict[str, Any]]:
    """Each trained model against the row that knows nothing, on its task's headline metrics.

    Grounding runs are compared with ``results["grounding"]["uniform"]``, correspondence runs
    with ``results["correspondence"]["chance"]["overall"]``. Returns one dict per trained
    model, methods first: ``{"task", "run", "label", "reference", "metrics": [{"key",
    "label", "model", "reference", "change_pct", "lower_is_better"}], "beats_reference"}``
    with ``change_pct = 100 (model - reference) / reference`` (None when the reference is 0).
    ``beats_reference`` judges the task's main metric, the first one (grounding KLD, lower is
    better; correspondence PCK@23, higher is better); a tie is not better.
    """
    g, c = results["grounding"], results["correspondence"]
    models = [
        ("grounding", run, run.removeprefix("grounding-"), g[run], "uniform", g["uniform"])
        for run in GROUNDING_RUNS
    ]
    models += [
        ("correspondence", run, spec["name"], c[spec["name"]]["overall"], "chance",
         c["chance"]["overall"])
        for run, spec in CORR_RUNS.items()
    ]  # fmt: skip
    metrics = {"grounding": GROUNDING_HEADLINE, "correspondence": CORR_HEADLINE}
    out = []
    for task, run, label, scores, ref_name, ref in models:
        rows = []
        for key, name, lower in metrics[task]:
            v, r = float(scores[key]), float(ref[key])
            change = 100.0 * (v - r) / r if r else None
            rows.append(
                {"key": key, "label": name, "model": v, "reference": r, "change_pct": change,
                 "lower_is_better": lower}
            )  # fmt: skip
        v, r, lower = rows[0]["model"], rows[0]["reference"], rows[0]["lower_is_better"]
        out.append(
            {"task": task, "run": run, "label": label, "reference": ref_name, "metrics": rows,
             "beats_reference": bool(v < r if lower else v > r)}
        )  # fmt: skip
    return out


def _change(m: dict[str, Any]) -> str:
    if m["change_pct"] is None:
        return "n/a"
    return f"{m['change_pct']:+.1f}%" + (", lower is better" if m["lower_is_better"] else "")


def headline(results: dict) -> list[str]:
    """The lines a newcomer reads first (printed at the end of a run and in the report).

    One line per task: the method's headline metrics next to the uniform / chance row with
    the relative change, e.g. ``grounding: selective KLD 1.896 vs uniform 2.367 (-19.9%,
    lower is better), SIM 0.400 vs 0.156 (+156.4%)``; then one line per trained model that
    is not better than that row on the task's main metric ("under chance: ..."), or one line
    saying that every trained model is.
    """
    rows = gains(results)
    lines = []
    for task in ("grounding", "correspondence"):
        e = next(x for x in rows if x["task"] == task)  # the method: first run of its table
        (m, *more) = e["metrics"]
        parts = [f"{m['label']} {m['model']:.3f} vs {e['reference']} {m['reference']:.3f} "
                 f"({_change(m)})"]  # fmt: skip
        parts += [f"{m['label']} {m['model']:.3f} vs {m['reference']:.3f} ({_change(m)})"
                  for m in more]  # fmt: skip
        lines.append(f"{task}: {e['label']} " + ", ".join(parts))
    why = TOO_SHORT["quick" if results.get("profile") == "quick" else "full"]
    under = [x for x in rows if not x["beats_reference"]]
    for x in under:
        m = x["metrics"][0]
        lines.append(
            f"under chance: {x['task']} {x['label']} {m['label']} {m['model']:.3f} is not better "
            f"than {x['reference']} {m['reference']:.3f}: {why}"
        )
    if not under:
        lines.append(
            "every trained model beats its uniform / chance row on the main metric "
            "(grounding KLD, correspondence PCK@23)"
        )
    return lines


# --------------------------------------------------------------------------------- report
def check_results(results: dict) -> None:
    """Every headline number must be finite (a NaN in the report is a failed demo)."""
    bad = []
    for run in (*GROUNDING_RUNS, "uniform"):
        for k in ("kld", "sim", "nss"):
            if not finite(results["grounding"][run].get(k)):
                bad.append(f"grounding {run} {k}")
    for name in (*(spec["name"] for spec in CORR_RUNS.values()), "chance"):
        m = results["correspondence"][name]["overall"]
        for k in CORR_COLUMNS:
            if not finite(m.get(k)):
                bad.append(f"correspondence {name} {k}")
    if bad:
        raise AffordError("non-finite metrics: " + ", ".join(bad))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x: Any, nd: int = 3) -> str:
    return f"{float(x):.{nd}f}" if finite(x) else "-"


def selection_text(run: dict) -> str:
    """Which checkpoint of a training run the report evaluates, and why (issue 18)."""
    sel = run.get("selection") or {}
    best = run.get("best_epoch")
    if not sel:
        return f"selected epoch {best}"
    text = f"checkpoint `{sel['checkpoint']}` = epoch {best}: {sel['reason']}"
    if sel.get("warning"):
        text += f"; **warning: {sel['warning']}**"
    return text


def render_markdown(r: dict, root: Path) -> str:
    """The report as Markdown (image links relative to ``root``)."""
    d = r["data"]
    a, c = d["affordance"], d["correspondence"]
    g = r["grounding"]
    t = r["timings"]
    total = t.get("total_before_report", {})
    out: list[str] = []
    add = out.append
    add("# afford demo report\n")
    add(
        f"Profile **{r['profile']}**, seed {r['seed']}, device `{r['device']}` "
        f"({r.get('device_used', '')}), afford "
        f"{r['afford']}. Stages 1-4 took {fmt_seconds(total.get('wall_s', 0))} wall-clock "
        f"({fmt_seconds(total.get('cpu_s', 0))} CPU). Every number below is in "
        "`results.json`; the commands that reproduce each one are at the end.\n"
    )
    cr = r["correspondence"]
    fo, so = cr["full"]["overall"], cr["spatial-only"]["overall"]
    gs, gc, gu = g["grounding-selective"], g["grounding-ce"], g["uniform"]
    add("## At a glance (synthetic held-out test data, this run)\n")
    add(
        "Each method against the row that knows nothing (grounding: the uniform map; "
        "correspondence: chance):\n"
    )
    for line in headline(r):
        add(f"- {line}")
    add("")
    add(
        _table(
            ["task", "metric", "ours", "baseline / ablation", "uniform / chance"],
            [
                [
                    "affordance grounding",
                    "KLD ↓",
                    _f(gs["kld"]),
                    f"{_f(gc['kld'])} (CE only)",
                    _f(gu["kld"]),
                ],
                [
                    "affordance grounding",
                    "SIM ↑",
                    _f(gs["sim"]),
                    f"{_f(gc['sim'])} (CE only)",
                    _f(gu["sim"]),
                ],
                [
                    "functional correspondence",
                    "PCK@23 ↑",
                    _f(fo["pck@23"]),
                    f"{_f(so['pck@23'])} (spatial only)",
                    _f(cr["chance"]["overall"]["pck@23"]),
                ],
                [
                    "functional correspondence",
                    "AP@23 ↑",
                    _f(fo["ap@23"]),
                    f"{_f(so['ap@23'])} (spatial only)",
                    _f(cr["chance"]["overall"]["ap@23"]),
                ],
            ],
        )  # fmt: skip
    )
    add("")
    add("## What was run\n")
    add(
        f"1. **Data** (synthetic world, `afford.synth`). Affordance: AGD20K layout, "
        f"*{a['split']}* split: training on {', '.join(a['train_categories'])}; testing on "
        f"held-out categories {', '.join(a['test_categories'])} ({a['counts']['test_egocentric']} "
        f"test images with GT maps, {len(a['classes'])} actions: {', '.join(a['classes'])}); "
        "CLIP's object affinity maps are *simulated* (no CLIP weights offline). "
        f"Correspondence: {c['counts']['assets']} assets x {c['views']} rendered views, "
        f"pseudo-labelled part masks (mean IoU vs. true parts {c['pseudo_mean_iou_vs_gt']:.2f}), "
        f"{c['counts']['eval_pairs']['test']} held-out evaluation pairs "
        f"({100 * c['cross_category_fraction']:.0f}% cross-category) with dense GT from 3-D "
        f"functional alignment. Reused from an earlier run: affordance "
        f"{'yes' if a['reused'] else 'no'}, correspondence {'yes' if c['reused'] else 'no'}."
    )
    tr = r["training"]
    add(
        "2. **Training** on tiny backbones (small widths; CLIP `tiny` with fixed random "
        "weights, identical in every process; DINO and DINOv2 `tiny-synth`, the tiny "
        "architecture pre-trained on synthetic renders from multi-view geometry, without any "
        "part, affordance or function label, see docs/tiny-backbones.md): "
        "the selective contrastive grounding "
        f"model ({tr['grounding-selective']['epochs']} epochs) and the CE-only baseline "
        "(Table 2 row (a)); the full correspondence model (functional + spatial loss) and the "
        f"spatial-only ablation ({tr['correspondence-full']['iterations']} iterations each). "
        + (
            "Grounding runs use `data.augment: false` (no random crop/flip; the frozen DINO "
            "outputs are computed once per image), an afford option for fast CPU runs that is "
            "not the paper's protocol. "
            if not tr["grounding-selective"].get("augment", True)
            else ""
        )
        + "Checkpoints selected on a validation split carved from the training data, never on "
        "test; the training curves below name the checkpoint of each run and why (with a "
        "warning when validation was absent or too small)."
    )
    add(
        "3. **Evaluation** on the held-out test data with the papers' metrics: KLD / SIM / NSS "
        "(affordance paper, AGD20K protocol; a uniform map on the same test images is the "
        "chance row) and label transfer (normalised distance, PCK@k) "
        "and discovery (best F1@k, AP@k) in both directions per pair (correspondence paper), "
        f"on {r['correspondence']['settings']['pairs']} of the {c['counts']['eval_pairs']['test']} "
        "test pairs, discovery on every "
        f"{r['correspondence']['settings']['discovery_stride']}-th pixel."
    )
    add("4. **A real photo** (`skimage.data.coffee()`) through both models.\n")

    add("## Affordance grounding (synthetic, held-out categories)\n")
    rows = []
    for run, label in (("grounding-selective", "Selective contrastive (ours)"),
                       ("grounding-ce", "CE only (baseline)")):  # fmt: skip
        m = g[run]
        rows.append([label, _f(m["kld"]), _f(m["sim"]), _f(m["nss"]), str(m["n"])])
    rows.append(["uniform map (chance)", _f(gu["kld"]), _f(gu["sim"]), _f(gu["nss"]), str(gu["n"])])
    add(_table(["model (this run, synthetic)", "KLD ↓", "SIM ↑", "NSS ↑", "images"], rows))
    cm = gu["constant_map"]
    add(
        "\n*The uniform row*: the AGD20K protocol min-max normalises every predicted map, "
        "(x - min) / (max - min + 1e-10), which turns a literally constant map into all "
        "zeros, a map with no mass anywhere: scored as given, a constant map gets KLD "
        f"{_f(cm['kld'])}, SIM {_f(cm['sim'])}, NSS {_f(cm['nss'])} on these images (the "
        "protocol's penalty for an empty map, not chance). The uniform row is therefore the "
        "uniform *distribution*: a map equal to 1 everywhere except 0 at one corner pixel of "
        "the 224 x 224 evaluation grid, which the normalisation leaves unchanged, scored by the "
        "same metric code (`afford.metrics.saliency.evaluate_map`) on the same test images "
        "(its NSS is ~0.004 instead of exactly 0 because of that one pixel).\n"
    )
    d_kld = g["grounding-ce"]["kld"] - g["grounding-selective"]["kld"]
    add(
        f"\nKLD difference (CE minus selective): {d_kld:+.3f}, i.e. "
        f"{'the selective model' if d_kld > 0 else 'the CE baseline'} is better on this run "
        "(one seed, tiny backbones, minutes of training: compare the grounding benchmark's "
        "means and standard deviations over seeds before reading much into it).\n"
    )
    affs = sorted(g["grounding-selective"]["per_affordance"])
    rows = []
    for aff in affs:
        s = g["grounding-selective"]["per_affordance"][aff]
        b = g["grounding-ce"]["per_affordance"].get(aff, {})
        rows.append([aff, str(s.get("n", "")), _f(s.get("kld")), _f(b.get("kld")),
                     _f(s.get("sim")), _f(b.get("sim"))])  # fmt: skip
    add("Per action:\n")
    add(_table(["action", "n", "KLD ours", "KLD CE", "SIM ours", "SIM CE"], rows))
    add(
        "\n**For context only: the paper's own numbers on REAL data** (AGD20K / HICO-IIF, "
        "DINO ViT-S/16 + CLIP ViT-B/16; not comparable with the synthetic numbers above):\n"
    )
    rows = []
    for label, ds in PAPER_GROUNDING["rows"].items():
        for dname, m in ds.items():
            rows.append([label, dname, _f(m["kld"]), _f(m["sim"]), _f(m["nss"])])
    add(_table(["paper row", "dataset (real)", "KLD ↓", "SIM ↑", "NSS ↑"], rows))
    add(f"\n*Source: {PAPER_GROUNDING['source']}.*\n")
    fig = r["figures"]
    add("### Heatmaps on held-out test images\n")
    add("Each row: test image, GT density, selective (ours), CE baseline; KLD per image.\n")
    for action, path in fig["heatmaps"].items():
        add(f"**{action}**\n\n![{action}]({rel(Path(path), root)})\n")

    add("## Dense functional correspondence (synthetic, held-out assets)\n")
    header = ["row (this run, synthetic)"] + [k.replace("_", " ") for k in CORR_COLUMNS] + ["n"]
    rows = []
    for key, label in (("full", "Ours (full: functional + spatial)"),
                       ("spatial-only", "Ours (spatial only)"),
                       ("dino", "frozen tiny DINOv2 (NN)"), ("chance", "chance")):  # fmt: skip
        m = cr[key]["overall"]
        rows.append([label] + [_f(m.get(k)) for k in CORR_COLUMNS] + [str(m.get("n", 0))])
    add(_table(header, rows))
    add(
        "\nnorm dist ↓, everything else ↑; PCK = label transfer, best F1 / AP = discovery; "
        "k in pixels at the 224-px crop; n = (pair, direction) records.\n"
    )
    for run in CORR_RUNS:
        info = r["training"][run]
        spatial = info.get("final_train", {}).get("spatial")
        chance_level = log(info.get("spatial_points", 128))
        if finite(spatial) and abs(spatial - chance_level) < 0.02 * chance_level:
            add(
                f"*Diagnostic:* the spatial loss of `{run}` ended at {spatial:.3f}, the value "
                f"ln({info.get('spatial_points', 128)}) = {chance_level:.3f} of features that "
                "cannot tell the sampled points apart: on this frozen tiny DINOv2 the "
                "head found (almost) no geometric signal to learn from, so these rows are not "
                "expected to beat chance by much. Real DINOv2 weights (or a longer "
                "pre-trained tiny backbone) are what the method needs.\n"
            )
    rows = []
    for key in ("full", "spatial-only"):
        for grp in ("within_category", "across_category"):
            m = cr[key][grp]
            if m.get("n", 0):
                rows.append([key, grp.replace("_", " "), _f(m.get("pck@23")), _f(m.get("ap@23")),
                             str(m["n"])])  # fmt: skip
    if rows:
        add(_table(["model", "pairs", "PCK@23", "AP@23", "n"], rows))
    add(
        "\n**For context only: the paper's Table 1 on its synthetic evaluation set** "
        "(Objaverse renders, DINOv2 ViT-B/14; a different and much larger dataset, not "
        "comparable with the numbers above):\n"
    )
    rows = [[label] + [_f(v) for v in vals] for label, vals in PAPER_CORR["rows"].items()]
    add(_table(["paper row"] + [k.replace("_", " ") for k in CORR_COLUMNS], rows))
    add(f"\n*Source: {PAPER_CORR['source']}.*\n")
    add("### Label transfer on test pairs\n")
    add(
        "GT source points (left) and the predicted target points (right); green: within 23 px "
        "of the true point, red: further.\n"
    )
    for m in fig["matches"]:
        add(f"**{m['row']}**: ![{m['row']}]({rel(Path(m['path']), root)})\n")
    add("### Discovery precision-recall\n")
    for p in fig["pr"]:
        add(f"**{p['row']}**\n\n![PR {p['row']}]({rel(Path(p['path']), root)})\n")

    add("## Training curves\n")
    for run, path in fig["loss"].items():
        tr_run = r["training"][run]
        add(f"**{run}** ({selection_text(tr_run)})\n\n![{run}]({rel(Path(path), root)})\n")

    add("## A real photo\n")
    p = r["photo"]
    add(f"> {p['note']}\n")
    add(f"![grounding on coffee]({rel(Path(p['grounding_figure']), root)})\n")
    pc = p["correspondence"]
    add(
        f"Correspondence for `{pc['function']}` between the photo and a copy of it that was "
        f"{pc['transform']}: {pc['correct']} of {pc['matches']} discovered matches land within "
        f"{pc['tolerance_px']:.0f} px of the true position (green; red otherwise).\n"
    )
    add(f"![correspondence on coffee]({rel(Path(pc['figure']), root)})\n")

    add("## Reproduce every number\n")
    add(
        "Configs (complete, every default resolved) are in `configs/`; run the commands in "
        "this order (training is deterministic on CPU for a seed):\n"
    )
    add("```bash")
    for cmd in r["commands"]:
        add(f"# {cmd['purpose']}\n{cmd['command']}")
    add("```\n")
    rows = [[name, fmt_seconds(v["wall_s"]), fmt_seconds(v["cpu_s"])]
            for name, v in t.items() if name != "total_before_report"]  # fmt: skip
    add("Stage timings:\n")
    add(_table(["stage", "wall", "cpu"], rows))
    add("")
    return "\n".join(out)


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }}
blockquote {{ border-left: 4px solid #e0a800; margin: 1em 0; padding: 0.2em 1em;
             background: #fff8e1; }}
</style></head><body>
{body}
</body></html>
"""


def render_html(markdown_text: str, title: str = "afford demo report") -> str:
    """The Markdown report as a standalone HTML page (images stay relative links)."""
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return HTML_TEMPLATE.format(title=escape(title), body=body)


def write_report(out: Path, md: str, html: str, results: dict) -> None:
    """Write report.md, report.html and results.json to temporary names, then rename all three
    (nothing is renamed unless all three were written)."""
    with (
        atomic_path(out / "report.md") as t_md,
        atomic_path(out / "report.html") as t_html,
        atomic_path(out / "results.json") as t_json,
    ):
        write_json(t_json, results)
        write_text(t_md, md)
        write_text(t_html, html)

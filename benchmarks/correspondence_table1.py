"""Table 1 of the correspondence paper on the synthetic evaluation pairs, CPU, tiny backbones.

Rows: chance, DINO (frozen backbone nearest neighbours), VLM + DINO (simulated labeler boxes,
for context), ours functional only, spatial only, full [, full + mask, full with
lambda_spatial 1] (mean +- std over seeds); two oracle diagnostics, chance and DINO restricted
to the ground-truth functional part (what a model scores that finds the part exactly, collapsed
inside it or using the backbone's structure). `--rows` with no names runs the baselines only.
Each trained row: 2 x 2500 steps of 8 pairs x 64 points on a feature bank of 4 background
randomisations per view (built once per seed).
Prints a markdown table and the story checks, writes
benchmarks/results/correspondence_table1.json.

    python benchmarks/correspondence_table1.py --data DIR            # seeds 0 1 2
    # the same, seeds in parallel processes, then merged:
    python benchmarks/correspondence_table1.py --data DIR --seeds 0 --out s0.json   (1, 2 alike)
    python benchmarks/correspondence_table1.py --combine s0.json s1.json s2.json

DIR is written when missing, as `afford synth correspondence --out DIR --size default
--per-category 6 1 2` (102 training assets; 60 test pairs, 52 across and 8 within categories,
the paper's "85% cross-category"). Besides the overall table, the JSON and the printout give
the within- and across-category tables (the paper's supplement breakdown). The backbone is
--dinov2 (default the shipped label-free pre-trained `tiny-synth`; `tiny` = random init) or
--dinov2-weights FILE.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from afford.backbones import load_dinov2
from afford.config import load
from afford.correspondence.baselines import (
    BackboneRow,
    ChanceRow,
    ModelRow,
    PartBoxRow,
    dataset_part_boxes,
    gt_part_masks,
)
from afford.correspondence.config import CorrExperiment
from afford.correspondence.evaluate import KS, evaluate_rows
from afford.correspondence.train import feature_bank, load_trained, train, training_sets
from afford.data.correspondence import CorrespondenceDataset
from afford.data.io import write_json
from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

ABLATIONS = {  # row -> --set assignments on top of base_config
    "functional only": ("loss.functional=true", "loss.spatial=false"),
    "spatial only": ("loss.functional=false", "loss.spatial=true"),
    "full": ("loss.functional=true", "loss.spatial=true"),
    "full + mask": (
        "loss.functional=true",
        "loss.spatial=true",
        "model.mask_head=true",
        "loss.mask=true",
    ),
    # the full loss with another spatial weight (the paper's is 10, tuned for DINOv2-B)
    "full, lambda_spatial 1": (
        "loss.functional=true",
        "loss.spatial=true",
        "loss.lambda_spatial=1.0",
    ),
}
# "full" reported for the story: per seed, the full variant with the better validation score
FULL_VARIANTS = ("full", "full, lambda_spatial 1")
SELECTED = "ours (full, lambda_spatial chosen on val)"
SELECT_METRICS = ("pck@23", "ap@23")  # validation score = their sum
GROUPS = ("within_category", "across_category")  # the paper's supplement breakdown
# Oracle diagnostics, not rows of the paper: matches restricted to the GT functional part.
# "chance in GT part" is a model that finds the part exactly and is collapsed inside it.
ORACLE_DINO, ORACLE_CHANCE = "DINO in GT part (oracle)", "chance in GT part (oracle)"
SEED_FREE = ("DINO (frozen NN)", "VLM + DINO", ORACLE_DINO)  # deterministic baseline rows
COLS = (
    ["norm_dist"]
    + [f"pck@{k}" for k in KS]
    + [f"best_f1@{k}" for k in KS]
    + [f"ap@{k}" for k in KS]
    + ["distinct"]  # fraction of distinct label-transfer predictions (mode-collapse diagnostic)
)


def base_config(args: argparse.Namespace, seed: int, name: str, out: Path) -> dict:
    """The experiment of trained row ``name`` (before its ``ABLATIONS`` switches)."""
    return {
        "data": {"root": str(args.data), "val_fraction": args.val_fraction},
        "backbone": {
            "dinov2": {"variant": args.dinov2, "weights": args.dinov2_weights},
            "clip": {"variant": "tiny"},
        },
        "model": {"proj_dim": args.proj_dim, "hidden": args.hidden, "out_dim": args.out_dim},
        "sampling": {
            "pairs": args.pairs,
            "points": args.points,
            "spatial_points": args.points,
            "feature_augs": args.feature_augs,
            "spatial_region": args.spatial_region,
        },
        "train": {
            "name": name,
            "out": str(out),
            "seed": seed,
            "lr": args.lr,
            "epochs": args.epochs,
            "iters_per_epoch": args.iters,
            "val_batches": 2,
            "device": "cpu",
            "resume": False,
            "progress": False,
        },
    }


def _command(settings: dict) -> str:
    """The command line that reproduces a run with these settings."""
    return "python benchmarks/correspondence_table1.py " + " ".join(
        f"--{k.replace('_', '-')} {_shell_value(v)}"
        for k, v in settings.items()
        if v is not None and k not in ("out", "keep_runs", "combine")
    )


def _shell_value(v) -> str:
    """An argparse value as it is typed on a command line (lists space-separated, quoted)."""
    items = v if isinstance(v, list | tuple) else [v]
    return " ".join(shlex.quote(str(x)) for x in items)


def _slug(name: str) -> str:
    """A folder name for a row ("full + mask" -> "full_mask")."""
    return "_".join("".join(c if c.isalnum() else " " for c in name).split())


def summarise(runs: list[dict]) -> dict:
    out = {}
    for c in COLS:
        vals = np.asarray([r[c] for r in runs], dtype=np.float64)
        out[c] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=0)), "runs": vals.tolist()}
    return out


def select_full(val: dict[str, dict]) -> str:
    """The full variant (a key of ``val``, overall validation metrics per row) with the highest
    sum of validation PCK@23 and AP@23; ties go to the paper's weight ("full")."""
    best, best_score = None, -np.inf
    for name in FULL_VARIANTS:
        if name in val:
            score = sum(val[name][m] for m in SELECT_METRICS)
            if score > best_score + 1e-12:
                best, best_score = name, score
    if best is None:
        raise ValueError("select_full: no full variant has validation results")
    return best


def story_checks(table: dict[str, dict], rows: list[str]) -> dict[str, bool]:
    """The paper's Table 1 story on the rows the issue asks for (chance, backbone NN, ours):
    full best on PCK@23 and AP@23, functional only below spatial only on PCK@23 (mode
    collapse), every trained row above chance on PCK@23. "full" is compared with chance, the
    backbone NN, functional only and spatial only; the other rows (mask head, loss-weight
    sensitivity) and "VLM + DINO" (test-time part boxes from the labeler) are reported for
    context, the latter checked separately."""
    need = [f"ours ({n})" for n in ("functional only", "spatial only", "full")]
    if SELECTED in table:  # the spatial weight was chosen on the validation pairs
        need[2] = SELECTED
    if not all(n in table for n in need):
        return {}
    fo, so, full = (table[n] for n in need)
    peers = ["chance", "DINO (frozen NN)"] + need[:2]

    def best(metric: str, others: list[str]) -> bool:
        return all(full[metric]["mean"] > table[o][metric]["mean"] for o in others)

    return {
        "full_best_pck@23": best("pck@23", peers),
        "full_best_ap@23": best("ap@23", peers),
        "functional_below_spatial_pck@23": fo["pck@23"]["mean"] < so["pck@23"]["mean"],
        "trained_beat_chance_pck@23": all(
            table[f"ours ({n})"]["pck@23"]["mean"] > table["chance"]["pck@23"]["mean"] for n in rows
        ),
        "full_beats_vlm_dino_pck@23": "VLM + DINO" in table and best("pck@23", ["VLM + DINO"]),
    }


def group_checks(groups: dict[str, dict], rows: list[str]) -> dict[str, dict[str, bool]]:
    """The story checks within and across categories separately (context for the overall
    checks, which are the ones the paper and the issue state)."""
    return {g: story_checks(t, rows) for g, t in groups.items() if t}


def _merge_tables(tables: list[dict], seeds: list[list[int]]) -> dict:
    """Concatenate the per-seed runs of each row over result files (``seeds[i]``: the seeds of
    ``tables[i]``). A row already taken from a file with the same seeds (the chance row of
    files that split one seed's rows, the deterministic baseline rows) is not counted twice."""
    runs: dict[str, dict[str, list]] = {}
    seen: dict[str, set[int]] = {}
    for t, run_seeds in zip(tables, seeds, strict=True):
        for name, row in t.items():
            if name in SEED_FREE and name in runs:
                continue  # seed-independent
            if seen.get(name, set()) & set(run_seeds):
                continue
            seen.setdefault(name, set()).update(run_seeds)
            for c in COLS:
                runs.setdefault(name, {}).setdefault(c, []).extend(row[c]["runs"])
    return {
        name: {
            c: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v}
            for c, v in cols.items()
        }
        for name, cols in runs.items()
    }


def combine(files: list[Path]) -> tuple[dict, dict, dict]:
    """Merge result files of runs with different seeds or rows (e.g. run in parallel): the
    per-seed values of each trained / chance row are concatenated (test, validation and
    within / across tables, the validation choices), the deterministic baseline rows are taken
    from the first file. Returns (table, seconds_per_run, the first file's JSON with the merged
    val_table, selected, groups and settings: union of seeds and rows)."""
    docs = [json.loads(Path(f).read_text()) for f in files]
    keep = {"settings", "dataset"}
    for d in docs[1:]:
        for k in keep:
            skip = ("seeds", "rows", "out", "combine", "keep_runs")
            a = {x: y for x, y in docs[0][k].items() if x not in skip}
            b = {x: y for x, y in d[k].items() if x not in skip}
            if a != b:
                raise SystemExit(f"--combine: {k} differ between {files[0]} and another file")
    secs: dict[str, list] = {}
    for d in docs:
        for name in d["table"]:
            secs.setdefault(name, []).append(d["seconds_per_run"][name])
    train_secs: dict[str, list] = {}
    for d in docs:  # absent from files written before it was recorded
        for name, v in d.get("train_seconds_per_run", {}).items():
            train_secs.setdefault(name, []).append(v)
    seeds = [d["settings"]["seeds"] for d in docs]
    table = _merge_tables([d["table"] for d in docs], seeds)
    first = {
        **docs[0],
        "train_seconds_per_run": {k: float(np.mean(v)) for k, v in train_secs.items()},
        "val_table": _merge_tables([d.get("val_table", {}) for d in docs], seeds),
        "selected": [x for d in docs for x in d.get("selected", [])],
        "settings": {
            **docs[0]["settings"],
            "seeds": sorted({x for s in seeds for x in s}),
            "rows": list(dict.fromkeys(r for d in docs for r in d["settings"]["rows"])),
        },
        "groups": {
            g: _merge_tables([d.get("groups", {}).get(g, {}) for d in docs], seeds) for g in GROUPS
        },
    }
    return table, {k: float(np.mean(v)) for k, v in secs.items()}, first


def group_markdown(groups: dict[str, dict]) -> str:
    """The within- and across-category tables (rows without such pairs are left out)."""
    return "\n".join(f"\n{g.replace('_', ' ')}:\n{markdown(t)}" for g, t in groups.items() if t)


def markdown(table: dict[str, dict]) -> str:
    lines = ["| row | " + " | ".join(COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for name, s in table.items():
        cells = []
        for c in COLS:
            m, sd = s[c]["mean"], s[c]["std"]
            cells.append(f"{m:.3f}" if len(s[c]["runs"]) == 1 else f"{m:.3f}±{sd:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/synth-corr"))
    ap.add_argument("--size", default="default", help="synth size when generating --data")
    ap.add_argument(
        "--per-category",
        type=int,
        nargs=3,
        default=[6, 1, 2],
        metavar=("TRAIN", "VAL", "TEST"),
        help="assets per category when generating --data (default 6 1 2: two test assets per "
        "category, so about one test pair in seven is within-category, as in the paper's 85%% "
        "cross-category set)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--rows",
        nargs="*",
        default=["functional only", "spatial only", *FULL_VARIANTS],
        help=f"trained rows, from {list(ABLATIONS)} (none: the baseline rows only)",
    )
    ap.add_argument("--dinov2", default="tiny-synth", help="tiny-synth (shipped) | tiny | vitb14")
    ap.add_argument("--dinov2-weights")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2500)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--proj-dim", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out-dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--spatial-region",
        choices=["object", "part"],
        help="spatial correspondences start anywhere on the object (paper Eq. 2) or inside the "
        "functional part (released code); default: object (paper mode)",
    )
    ap.add_argument(
        "--feature-augs",
        type=int,
        default=4,
        help="backbone outputs precomputed for K background randomisations per view, shared "
        "by the rows of a seed (0: run the backbone on every batch)",
    )
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--max-pairs", type=int, default=0, help="test pairs (0: all)")
    ap.add_argument("--stride", type=int, default=4, help="discovery stride (speed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/correspondence_table1.json")
    )
    ap.add_argument("--keep-runs", type=Path, help="keep checkpoints here (default: temp dir)")
    ap.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="merge earlier result files of the same settings with different --seeds (run in "
        "parallel) into --out instead of running",
    )
    args = ap.parse_args()
    if args.combine:
        table, secs, first = combine(args.combine)
        md = markdown(table)
        print(md)
        print(group_markdown(first["groups"]))
        checks = story_checks(table, first["settings"]["rows"])
        print("checks:", json.dumps(checks))
        by_group = group_checks(first["groups"], first["settings"]["rows"])
        print("checks by group:", json.dumps(by_group))
        settings = first["settings"]
        write_json(args.out, {**first, "table": table,
                              "seconds_per_run": secs, "checks": checks, "markdown": md,
                              "checks_by_group": by_group,
                              "combined_from": [str(f) for f in args.combine],
                              "command": _command(settings)})  # fmt: skip
        print(f"wrote {args.out}")
        return
    torch.set_num_threads(args.threads)

    if not (args.data / "dataset.json").is_file():
        print(f"generating the synthetic dataset in {args.data} (size {args.size})")
        cfg = CorrSynthConfig(size=args.size, per_category=tuple(args.per_category))
        write_correspondence_dataset(args.data, cfg, workers=2)
    ds = CorrespondenceDataset(args.data)
    runs_dir = args.keep_runs or Path(tempfile.mkdtemp(prefix="corr_table1_"))
    eval_kw = dict(
        split="test",
        max_pairs=args.max_pairs or None,
        discovery_stride=args.stride,
        progress=False,
    )
    per_run: dict[str, list[dict]] = {}
    per_group: dict[str, dict[str, list[dict]]] = {g: {} for g in GROUPS}
    val_runs: dict[str, list[dict]] = {}
    selected: list[dict] = []
    timing: dict[str, list[float]] = {}
    train_seconds: dict[str, list[float]] = {}  # the training part of a trained row's timing

    def record(name: str, res: dict, seconds: float) -> None:
        per_run.setdefault(name, []).append(res["overall"])
        for g in GROUPS:
            if res[g].get("n", 0):  # pairs of this kind among the evaluated ones
                per_group[g].setdefault(name, []).append(res[g])
        timing.setdefault(name, []).append(seconds)
        m = res["overall"]
        print(
            f"  {name}: pck@23={m['pck@23']:.3f} ap@23={m['ap@23']:.3f} "
            f"norm_dist={m['norm_dist']:.3f} ({seconds:.0f} s)",
            flush=True,
        )

    dino = load_dinov2(args.dinov2_weights, variant=args.dinov2)
    t = time.time()
    base_rows = [
        BackboneRow(dino),
        PartBoxRow(BackboneRow(dino), dataset_part_boxes(ds)),
        PartBoxRow(BackboneRow(dino), gt_part_masks, name=ORACLE_DINO),
    ]
    base = evaluate_rows(ds, base_rows, **eval_kw)
    dt = (time.time() - t) / len(base_rows)
    record("DINO (frozen NN)", base["dino"], dt)
    record("VLM + DINO", base["vlm+dino"], dt)
    record(ORACLE_DINO, base[ORACLE_DINO], dt)
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        t = time.time()
        chance_rows = [ChanceRow(seed), PartBoxRow(ChanceRow(seed), gt_part_masks, ORACLE_CHANCE)]
        res = evaluate_rows(ds, chance_rows, **eval_kw)
        dt = (time.time() - t) / len(chance_rows)
        record("chance", res["chance"], dt)
        record(ORACLE_CHANCE, res[ORACLE_CHANCE], dt)
        sets = bank = None
        seed_val: dict[str, dict] = {}
        seed_res: dict[str, tuple[dict, float]] = {}
        seed_cfg: dict[str, CorrExperiment] = {}
        for name in args.rows:
            out = runs_dir / f"{_slug(name)}_s{seed}"
            raw = base_config(args, seed, name, out)
            cfg = seed_cfg[name] = load(CorrExperiment, None, ABLATIONS[name], base=raw)
            t = time.time()
            if sets is None:  # cropping and the feature bank are shared by the rows of a seed
                sets = training_sets(cfg)
                bank = feature_bank(cfg, sets[0], dino)
            t_train = time.time()
            train(cfg, sets=sets, bank=bank)
            train_seconds.setdefault(f"ours ({name})", []).append(time.time() - t_train)
            model, dn, clip, funcs, _ = load_trained(cfg.train.out)
            row = [ModelRow(model, dn, clip, funcs, name)]
            res = evaluate_rows(ds, row, **eval_kw)[name]
            seconds = time.time() - t_train
            val = evaluate_rows(ds, row, **{**eval_kw, "split": "val"})[name]["overall"]
            val_runs.setdefault(f"ours ({name})", []).append(val)
            seed_val[name], seed_res[name] = val, (res, seconds)
            record(f"ours ({name})", res, seconds)
        if all(n in seed_val for n in FULL_VARIANTS):
            pick = select_full(seed_val)
            lam = seed_cfg[pick].loss.lambda_spatial
            selected.append({"seed": seed, "row": pick, "lambda_spatial": lam})
            print(f"  validation picks {pick!r} for seed {seed}", flush=True)
            # its cost: training every candidate
            record(SELECTED, seed_res[pick][0], sum(seed_res[n][1] for n in FULL_VARIANTS))
    table = {name: summarise(r) for name, r in per_run.items()}
    groups = {g: {n: summarise(r) for n, r in t.items()} for g, t in per_group.items()}
    md = markdown(table)
    print()
    print(md)
    print(group_markdown(groups))
    checks = story_checks(table, args.rows)
    print("checks:", json.dumps(checks))
    by_group = group_checks(groups, args.rows)
    print("checks by group:", json.dumps(by_group))
    write_json(
        args.out,
        {
            "command": _command(vars(args)),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "dataset": ds.meta.get("generator", {}),
            "split": "test",
            "pairs": min(len(ds.eval_pairs("test")), args.max_pairs or len(ds.eval_pairs("test"))),
            "table": table,
            "groups": groups,
            # pairs of each kind: the evaluation counts (pair, direction) records
            "group_pairs": {g: base["dino"][g].get("n", 0) // 2 for g in GROUPS},
            "val_table": {name: summarise(r) for name, r in val_runs.items()},
            "selected": selected,
            "seconds_per_run": {k: float(np.mean(v)) for k, v in timing.items()},
            "train_seconds_per_run": {k: float(np.mean(v)) for k, v in train_seconds.items()},
            "checks": checks,
            "checks_by_group": by_group,  # context: the checks are on the whole set
            "markdown": md,
        },
    )
    print(f"wrote {args.out}")
    if args.keep_runs is None:
        shutil.rmtree(runs_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

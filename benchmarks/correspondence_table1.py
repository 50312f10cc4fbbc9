"""Table 1 of the correspondence paper on the synthetic evaluation pairs, CPU, tiny backbones.

Rows: chance, DINO (frozen backbone nearest neighbours), VLM + DINO (simulated labeler boxes),
ours functional only, spatial only, full (mean +- std over seeds). Prints a markdown table and
writes benchmarks/results/correspondence_table1.json.

    python benchmarks/correspondence_table1.py --data /path/to/synth-corr
    (the dataset comes from `afford synth correspondence --out DIR --size default`; it is
    generated there when missing)

The backbone is given by --dinov2 / --dinov2-weights (default: the deterministic random tiny
DINOv2; see the report in the results JSON for what that backbone carries).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from afford.correspondence.baselines import (
    BackboneRow,
    ChanceRow,
    ModelRow,
    PartBoxRow,
    dataset_part_boxes,
)
from afford.correspondence.data import CorrespondenceDataset
from afford.correspondence.evaluate import KS, evaluate_rows
from afford.correspondence.train import CorrTrainConfig, load_trained, train, training_sets
from afford.data.io import write_json

ABLATIONS = {
    "functional only": dict(functional=True, spatial=False),
    "spatial only": dict(functional=False, spatial=True),
    "full": dict(functional=True, spatial=True),
    "full + mask": dict(functional=True, spatial=True, mask_head=True, mask=True),
}
COLS = (
    ["norm_dist"]
    + [f"pck@{k}" for k in KS]
    + [f"best_f1@{k}" for k in KS]
    + [f"ap@{k}" for k in KS]
)


def base_config(args: argparse.Namespace) -> dict:
    return dict(
        data=str(args.data),
        dinov2=args.dinov2,
        dinov2_weights=args.dinov2_weights,
        clip="tiny",
        proj_dim=args.proj_dim,
        hidden=args.hidden,
        out_dim=args.out_dim,
        pairs=args.pairs,
        points=args.points,
        spatial_points=args.points,
        lr=args.lr,
        epochs=args.epochs,
        iters_per_epoch=args.iters,
        val_fraction=args.val_fraction,
        val_batches=2,
        device="cpu",
    )


def summarise(runs: list[dict]) -> dict:
    out = {}
    for c in COLS:
        vals = np.asarray([r[c] for r in runs], dtype=np.float64)
        out[c] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=0)), "runs": vals.tolist()}
    return out


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
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--rows",
        nargs="+",
        default=["functional only", "spatial only", "full"],
        help=f"trained rows, from {list(ABLATIONS)}",
    )
    ap.add_argument("--dinov2", default="tiny")
    ap.add_argument("--dinov2-weights")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--proj-dim", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--out-dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--max-pairs", type=int, default=None, help="test pairs (default all)")
    ap.add_argument("--stride", type=int, default=4, help="discovery stride (speed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/correspondence_table1.json")
    )
    ap.add_argument("--keep-runs", type=Path, help="keep checkpoints here (default: temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not (args.data / "dataset.json").is_file():
        from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset

        print(f"generating the synthetic dataset in {args.data} (size {args.size})")
        write_correspondence_dataset(args.data, CorrSynthConfig(size=args.size))
    ds = CorrespondenceDataset(args.data)
    runs_dir = args.keep_runs or Path(tempfile.mkdtemp(prefix="corr_table1_"))
    eval_kw = dict(
        split="test", max_pairs=args.max_pairs, discovery_stride=args.stride, progress=False
    )
    per_run: dict[str, list[dict]] = {}
    timing: dict[str, list[float]] = {}

    def record(name: str, res: dict, seconds: float) -> None:
        per_run.setdefault(name, []).append(res["overall"])
        timing.setdefault(name, []).append(seconds)
        m = res["overall"]
        print(
            f"  {name}: pck@23={m['pck@23']:.3f} ap@23={m['ap@23']:.3f} "
            f"norm_dist={m['norm_dist']:.3f} ({seconds:.0f} s)",
            flush=True,
        )

    from afford.backbones import load_dinov2

    dino = load_dinov2(args.dinov2_weights, variant=args.dinov2)
    t = time.time()
    base = evaluate_rows(
        ds, [BackboneRow(dino), PartBoxRow(BackboneRow(dino), dataset_part_boxes(ds))], **eval_kw
    )
    dt = (time.time() - t) / 2
    record("DINO (frozen NN)", base["dino"], dt)
    record("VLM + DINO", base["vlm+dino"], dt)
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        t = time.time()
        record("chance", evaluate_rows(ds, [ChanceRow(seed)], **eval_kw)["chance"], time.time() - t)
        sets = None
        for name in args.rows:
            cfg = CorrTrainConfig.from_dict(
                {
                    **base_config(args),
                    **ABLATIONS[name],
                    "seed": seed,
                    "name": name,
                    "out": str(runs_dir / f"{name.replace(' ', '_').replace('+', 'mask')}_s{seed}"),
                }
            )
            t = time.time()
            if sets is None:  # cropping the training views is shared by the rows of a seed
                sets = training_sets(cfg)
            t_train = time.time()
            train(cfg, resume=False, progress=False, sets=sets)
            model, dn, clip, funcs, _ = load_trained(cfg.out)
            res = evaluate_rows(ds, [ModelRow(model, dn, clip, funcs, name)], **eval_kw)[name]
            record(f"ours ({name})", res, time.time() - t_train)
    table = {name: summarise(r) for name, r in per_run.items()}
    md = markdown(table)
    print()
    print(md)
    order = ["chance", "DINO (frozen NN)", "VLM + DINO"] + [f"ours ({n})" for n in args.rows]
    checks = {}
    if all(f"ours ({n})" in table for n in ("functional only", "spatial only", "full")):
        full, fo, so = (table[f"ours ({n})"] for n in ("full", "functional only", "spatial only"))
        trained = [table[f"ours ({n})"] for n in args.rows]
        checks = {
            "full_best_pck@23": all(
                full["pck@23"]["mean"] >= table[o]["pck@23"]["mean"] for o in order if o in table
            ),
            "full_best_ap@23": all(
                full["ap@23"]["mean"] >= table[o]["ap@23"]["mean"] for o in order if o in table
            ),
            "functional_below_spatial_pck@23": fo["pck@23"]["mean"] < so["pck@23"]["mean"],
            "trained_beat_chance_pck@23": all(
                t["pck@23"]["mean"] > table["chance"]["pck@23"]["mean"] for t in trained
            ),
        }
        print("checks:", json.dumps(checks))
    write_json(
        args.out,
        {
            "command": "python benchmarks/correspondence_table1.py "
            + " ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in vars(args).items()
                if v is not None and k not in ("out", "keep_runs")
            ),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "dataset": ds.meta.get("generator", {}),
            "split": "test",
            "pairs": len(ds.eval_pairs("test")) if args.max_pairs is None else args.max_pairs,
            "table": table,
            "seconds_per_run": {k: float(np.mean(v)) for k, v in timing.items()},
            "checks": checks,
            "markdown": md,
        },
    )
    print(f"wrote {args.out}")
    if args.keep_runs is None:
        shutil.rmtree(runs_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

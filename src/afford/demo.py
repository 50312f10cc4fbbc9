"""``afford demo``: both methods end to end on the synthetic world, with a report.

Stages (each prints a header; training shows the engine's progress bars with losses and ETA):

1. **data**: a small synthetic affordance dataset (AGD20K layout, :mod:`afford.synth.affordance`)
   and a correspondence dataset (:mod:`afford.synth.correspondence`) in ``DIR/data``; reused
   when ``dataset.json`` shows the same generator, version, seed and size.
2. **train**: the selective grounding model and the CE-only baseline
   (:func:`afford.grounding.train.train`), the full correspondence model and the spatial-only
   ablation (:func:`afford.correspondence.train.train`), all on tiny backbones. Each run's
   complete config is first written to ``DIR/configs/*.yaml`` and read back through the same
   loader the ``afford train`` commands use, so each number can be reproduced by a command.
3. **evaluate**: KLD/SIM/NSS on the held-out (Unseen-category) affordance test images
   (:func:`afford.grounding.evaluate.evaluate`); label transfer and discovery on the held-out
   correspondence pairs (:func:`afford.correspondence.evaluate.evaluate_rows`), with chance
   and the frozen tiny-backbone nearest neighbour as context rows.
4. **photo**: both models on ``skimage.data.coffee()`` (:func:`afford.grounding.infer.ground`,
   :func:`afford.correspondence.infer.correspond` against a flipped, cropped copy whose true
   matches are known).
5. **report**: ``DIR/report.md``, ``DIR/report.html`` and ``DIR/results.json`` (every number),
   written to temporary names and renamed together only when everything is ready.

The demo implements nothing of the methods itself: it only calls the modules above.
A failing stage stops the run with a message naming the stage, exit status non-zero, and no
report (the previous report is removed when a run starts).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from afford.errors import AffordError

log = logging.getLogger(__name__)

MARKER = "demo.json"
REPORT_FILES = ("report.md", "report.html", "results.json")
DEFAULT_OUT = "afford-demo"

# --------------------------------------------------------------------------------- recipes
# Only what differs from the training modules' own defaults; the fully resolved configs are
# written to DIR/configs. "quick" is the integration-test size (< 3 min on 2 CPU cores),
# "full" the default demo (< 15 min on 2 CPU cores).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "affordance": {"size": "small", "split": "Unseen"},
        "correspondence": {"size": "tiny", "views": 6},
        "grounding": {
            "data": {"augment": False, "preload": True},
            "train": {"epochs": 2, "batch_size": 8, "max_batches_per_epoch": 4},
        },
        "corr_train": {
            "proj_dim": 64,
            "hidden": 128,
            "out_dim": 64,
            "pairs": 4,
            "points": 64,
            "spatial_points": 64,
            "epochs": 2,
            "iters_per_epoch": 8,
            "lr": 1e-3,
            "val_batches": 1,
            "feature_augs": 2,
        },
        "eval": {"discovery_stride": 4, "max_pairs": 4, "match_figures": 2},
        "figures": {"per_action": 2, "actions": 4},
    },
    "full": {
        # custom counts per (affordance, object) folder: `afford synth affordance --ego 8 ...`
        "affordance": {
            "size": {"ego": 8, "exo": 16, "test": 6, "image_size": 160},
            "split": "Unseen",
        },
        "correspondence": {"size": "small", "views": 19},
        "grounding": {
            "data": {"augment": False, "preload": True},
            "train": {"epochs": 10, "batch_size": 8, "max_batches_per_epoch": 24},
        },
        "corr_train": {
            "proj_dim": 128,
            "hidden": 256,
            "out_dim": 128,
            "pairs": 6,
            "points": 128,
            "spatial_points": 128,
            "epochs": 3,
            "iters_per_epoch": 200,
            "lr": 1e-3,
            "val_batches": 4,
            "feature_augs": 2,  # frozen DINOv2 outputs precomputed (featbank): ~4x per step
        },
        "eval": {"discovery_stride": 4, "max_pairs": 16, "match_figures": 4},
        "figures": {"per_action": 3, "actions": 6},
    },
}

GROUNDING_RUNS = {  # run name -> model section (rows of the paper's Table 2)
    "grounding-selective": {"table2_row": "i"},  # full selective contrastive method
    "grounding-ce": {"table2_row": "a"},  # classification (CE) only
}
CORR_RUNS = {  # run name -> loss switches (paper Table 1 rows)
    "correspondence-full": {"name": "full", "functional": True, "spatial": True},
    "correspondence-spatial": {"name": "spatial-only", "functional": False, "spatial": True},
}
PHOTO_ACTIONS = ("hold", "drink_with")
PHOTO_FUNCTION = "drink-with"

# The papers' own numbers, on REAL data with full-size backbones (context only).
PAPER_GROUNDING = {
    "source": "Selective Contrastive Learning for Weakly Supervised Affordance Grounding "
    "(ICCV 2025), Table 1 and Table 2; AGD20K / HICO-IIF, DINO ViT-S/16 + CLIP ViT-B/16",
    "rows": {
        "Ours (Table 1)": {
            "AGD20K-Seen": {"kld": 1.124, "sim": 0.433, "nss": 1.280},
            "AGD20K-Unseen": {"kld": 1.243, "sim": 0.405, "nss": 1.368},
            "HICO-IIF": {"kld": 1.358, "sim": 0.378, "nss": 1.231},
        },
        "LOCATE (Table 1)": {
            "AGD20K-Seen": {"kld": 1.226, "sim": 0.401, "nss": 1.177},
            "AGD20K-Unseen": {"kld": 1.405, "sim": 0.372, "nss": 1.157},
            "HICO-IIF": {"kld": 1.593, "sim": 0.327, "nss": 0.966},
        },
        "CE only, row (a) (Table 2)": {"AGD20K-Seen": {"kld": 1.349, "sim": 0.365, "nss": 1.138}},
        "Full, row (i) (Table 2)": {"AGD20K-Seen": {"kld": 1.124, "sim": 0.433, "nss": 1.280}},
    },
}
PAPER_CORR = {
    "source": "Weakly-Supervised Learning of Dense Functional Correspondences (ICCV 2025), "
    "Table 1, synthetic evaluation dataset (Objaverse renders), DINOv2 ViT-B/14",
    "columns": ["norm_dist", "pck@23", "pck@10", "best_f1@23", "best_f1@10", "ap@23", "ap@10"],
    "rows": {
        "Chance": [0.310, 0.165, 0.046, 0.416, 0.176, 0.256, 0.093],
        "DINO": [0.212, 0.381, 0.148, 0.578, 0.281, 0.381, 0.130],
        "Ours (functional only)": [0.228, 0.287, 0.094, 0.575, 0.233, 0.441, 0.112],
        "Ours (spatial only)": [0.204, 0.470, 0.227, 0.610, 0.369, 0.412, 0.211],
        "Ours (full without mask loss)": [0.170, 0.486, 0.227, 0.768, 0.470, 0.685, 0.338],
        "Ours (full with mask loss)": [0.172, 0.480, 0.223, 0.774, 0.471, 0.684, 0.330],
    },
}
CORR_COLUMNS = PAPER_CORR["columns"]

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


class StageError(AffordError):
    """A demo stage failed; the message names the stage."""


# --------------------------------------------------------------------------------- helpers
def _say(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _write_yaml(path: Path, data: dict, header: str) -> Path:
    import yaml

    from afford.data.io import write_text

    text = "\n".join(f"# {line}" for line in header.splitlines()) + "\n"
    text += yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return write_text(path, text)


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON types (tuples -> lists) for comparisons with manifests."""
    import json

    return json.loads(json.dumps(obj))


def _finite(x: Any) -> bool:
    import math

    return isinstance(x, int | float) and math.isfinite(float(x))


class Demo:
    """One run of the demo; ``run()`` executes the stages in order."""

    def __init__(
        self,
        out: str | Path,
        quick: bool = False,
        seed: int = 0,
        device: str = "auto",
        force: bool = False,
        progress: bool = True,
    ) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise AffordError(f"--seed must be a non-negative integer, got {seed!r}")
        self.out = Path(out).expanduser().resolve()
        self.quick = bool(quick)
        self.profile_name = "quick" if quick else "full"
        self.profile = PROFILES[self.profile_name]
        self.seed = int(seed)
        self.device = device or "auto"
        self.force = bool(force)
        self.progress = progress
        self.results: dict[str, Any] = {}
        self.commands: list[dict[str, str]] = []
        self.timings: dict[str, dict[str, float]] = {}
        self.runs: dict[str, Path] = {}
        self.owned = False
        self.device_used = ""

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def aff_root(self) -> Path:
        return self.data_dir / "affordance"

    @property
    def corr_root(self) -> Path:
        return self.data_dir / "correspondence"

    @property
    def fig_dir(self) -> Path:
        return self.out / "figures"

    def cmd(self, purpose: str, command: str) -> None:
        self.commands.append({"purpose": purpose, "command": command})

    # ------------------------------------------------------------------ driver
    STAGES = ("data", "train", "evaluate", "photo", "report")

    def prepare_out(self) -> None:
        """Check the output folder, remove the previous report, write the run marker."""
        import shutil

        from afford import __version__
        from afford.data.io import read_json, write_json

        if self.out.exists() and not self.out.is_dir():
            raise AffordError(f"--out {self.out}: exists and is not a directory")
        marker = self.out / MARKER
        ours = False
        if marker.is_file():
            try:
                ours = read_json(marker).get("generator") == "afford.demo"
            except AffordError:
                ours = False
        empty = not self.out.exists() or not any(self.out.iterdir())
        if not (ours or empty or self.force):
            raise AffordError(
                f"--out {self.out}: the folder is not empty and was not written by "
                "`afford demo`; choose another --out or pass --force"
            )
        # only folders this command made (or an empty one) are ever cleaned
        self.owned = ours or empty
        self.out.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:  # a failed run must not leave an old report looking current
            (self.out / name).unlink(missing_ok=True)
        if self.owned:
            for sub in ("runs", "eval", "photo", "figures", "configs"):
                if (self.out / sub).is_dir():
                    shutil.rmtree(self.out / sub)
        write_json(
            marker,
            {
                "generator": "afford.demo",
                "afford": __version__,
                "profile": self.profile_name,
                "seed": self.seed,
                "device": self.device,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    def run(self) -> dict[str, Any]:
        """Run every stage; returns the results dict (also in ``DIR/results.json``)."""
        import torch

        from afford.engine import resolve_device

        dev = resolve_device(self.device)
        self.device_used = str(dev)
        self.prepare_out()
        t0, c0 = time.perf_counter(), _cpu_seconds()
        _say(
            f"afford demo ({self.profile_name}): seed {self.seed}, device {dev}, "
            f"{torch.get_num_threads()} torch threads, output {self.out}"
        )
        titles = {
            "data": "write the synthetic affordance and correspondence datasets",
            "train": "train selective grounding + CE baseline, correspondence full + "
            "spatial-only (tiny backbones)",
            "evaluate": "evaluate all four on the held-out synthetic test data",
            "photo": "run both models on a real photo (skimage.data.coffee)",
            "report": "write report.md, report.html and results.json",
        }
        for i, name in enumerate(self.STAGES, 1):
            _say(f"\n[{i}/{len(self.STAGES)}] {name}: {titles[name]}")
            s0, sc0 = time.perf_counter(), _cpu_seconds()
            if name == "report":
                self.timings["total_before_report"] = {
                    "wall_s": time.perf_counter() - t0,
                    "cpu_s": _cpu_seconds() - c0,
                }
            try:
                getattr(self, f"stage_{name}")()
            except KeyboardInterrupt:
                raise
            except AffordError as exc:
                raise StageError(
                    f"demo stage {i}/{len(self.STAGES)} '{name}' failed: {exc}; no report was "
                    "written"
                ) from exc
            except Exception as exc:
                log.debug("stage %s failed", name, exc_info=True)
                raise StageError(
                    f"demo stage {i}/{len(self.STAGES)} '{name}' failed with "
                    f"{type(exc).__name__}: {exc} (run `afford -v demo ...` for the traceback); "
                    "no report was written"
                ) from exc
            wall, cpu = time.perf_counter() - s0, _cpu_seconds() - sc0
            self.timings[name] = {"wall_s": wall, "cpu_s": cpu}
            _say(f"    {name} done in {_fmt_seconds(wall)} (cpu {_fmt_seconds(cpu)})")
        total = time.perf_counter() - t0
        _say(f"\ndemo finished in {_fmt_seconds(total)}: open {self.out / 'report.html'}")
        return self.results

    # ------------------------------------------------------------------ stage 1: data
    def _aff_request(self) -> tuple[str, Any]:
        """(size name, AffordanceSize): a preset name, or "custom" for explicit counts."""
        from afford.synth.affordance import SIZES, AffordanceSize

        size = self.profile["affordance"]["size"]
        if isinstance(size, dict):
            return "custom", AffordanceSize(**size)
        return size, SIZES[size]

    def _aff_cli_size(self) -> str:
        name, sz = self._aff_request()
        if name != "custom":
            return f"--size {name}"
        return f"--ego {sz.ego} --exo {sz.exo} --test {sz.test} --image-size {sz.image_size}"

    def _corr_config(self):
        from afford.synth.correspondence import CorrSynthConfig

        p = self.profile["correspondence"]
        return CorrSynthConfig(seed=self.seed, size=p["size"], views=p["views"])

    def _aff_unchanged(self) -> bool:
        from dataclasses import asdict

        from afford.data.io import read_json
        from afford.synth.affordance import GENERATOR, GENERATOR_VERSION

        path = self.aff_root / "dataset.json"
        if not path.is_file():
            return False
        try:
            m = read_json(path)
        except AffordError:
            return False
        size_name, sz = self._aff_request()
        return (
            m.get("generator") == GENERATOR
            and str(m.get("version")) == str(GENERATOR_VERSION)
            and m.get("seed") == self.seed
            and m.get("size") == size_name
            and m.get("sizes") == _jsonable(asdict(sz))
        )

    def _corr_unchanged(self) -> bool:
        from dataclasses import asdict

        from afford.data.io import read_json
        from afford.synth.correspondence import GENERATOR_VERSION

        path = self.corr_root / "dataset.json"
        if not path.is_file() or not (self.corr_root / "eval_pairs.json").is_file():
            return False
        try:
            g = read_json(path).get("generator", {})
        except AffordError:
            return False
        cfg = self._corr_config().resolved()
        options = {
            k: v
            for k, v in asdict(cfg).items()
            if k not in ("seed", "size", "views", "labeler", "pseudo")
        }
        return (
            isinstance(g, dict)
            and g.get("name") == "afford.synth.correspondence"
            and str(g.get("version")) == str(GENERATOR_VERSION)
            and g.get("seed") == self.seed
            and g.get("size") == cfg.size
            and g.get("views") == cfg.views
            and g.get("options") == _jsonable(options)
        )

    def stage_data(self) -> None:
        import shutil

        from afford.data.io import read_json
        from afford.synth.affordance import write_affordance_dataset
        from afford.synth.correspondence import write_correspondence_dataset

        size_name, size = self._aff_request()
        info: dict[str, Any] = {}
        if not self.force and self._aff_unchanged():
            _say(f"  affordance dataset: reusing {self.aff_root} (same generator, seed, size)")
            manifest, reused = read_json(self.aff_root / "dataset.json"), True
        else:
            _say(f"  affordance dataset: writing {self.aff_root} (size {size_name})")
            if self.owned and self.aff_root.exists():  # no stale manifest over a partial rewrite
                shutil.rmtree(self.aff_root)
            manifest = write_affordance_dataset(
                self.aff_root, seed=self.seed, size=size if size_name == "custom" else size_name,
                force=self.force,
                progress=self.progress,
            )  # fmt: skip
            reused = False
        split = self.profile["affordance"]["split"]
        info["affordance"] = {
            "root": str(self.aff_root),
            "reused": reused,
            "seed": self.seed,
            "size": size_name,
            "sizes": manifest["sizes"],
            "split": split,
            "classes": manifest["splits"][split]["affordances"],
            "train_categories": manifest["splits"][split]["train_categories"],
            "test_categories": manifest["splits"][split]["test_categories"],
            "counts": manifest["splits"][split]["counts"],
        }
        self.cmd(
            "synthetic affordance dataset",
            f"afford synth affordance --out {self.aff_root} --seed {self.seed} "
            + self._aff_cli_size(),
        )

        cfg = self._corr_config()
        if not self.force and self._corr_unchanged():
            _say(f"  correspondence dataset: reusing {self.corr_root} (same generator, seed, size)")
            manifest, reused = read_json(self.corr_root / "dataset.json"), True
        else:
            _say(f"  correspondence dataset: writing {self.corr_root} (size {cfg.size})")
            if self.owned and self.corr_root.exists():
                shutil.rmtree(self.corr_root)
            manifest = write_correspondence_dataset(self.corr_root, cfg, progress=self.progress)
            reused = False
        info["correspondence"] = {
            "root": str(self.corr_root),
            "reused": reused,
            "seed": self.seed,
            "size": cfg.size,
            "views": cfg.views,
            "functions": manifest["functions"],
            "categories": manifest["categories"],
            "counts": {k: manifest["counts"][k] for k in ("assets", "views", "eval_pairs")},
            "cross_category_fraction": manifest["counts"]["cross_category_fraction"],
            "pseudo_mean_iou_vs_gt": manifest["counts"]["pseudo_mean_iou_vs_gt"],
        }
        self.cmd(
            "synthetic correspondence dataset",
            f"afford synth correspondence --out {self.corr_root} --seed {self.seed} "
            f"--size {cfg.size} --views {cfg.views}",
        )
        self.results["data"] = info
        a, c = info["affordance"], info["correspondence"]
        _say(
            f"  affordance: {split} split, {len(a['classes'])} actions, train "
            f"{a['counts']['train_exocentric']} exo / {a['counts']['train_egocentric']} ego, "
            f"test {a['counts']['test_egocentric']} images of held-out categories "
            f"{', '.join(a['test_categories'])}"
        )
        _say(
            f"  correspondence: {c['counts']['assets']} assets x {c['views']} views, "
            f"{c['counts']['eval_pairs']['test']} test pairs "
            f"({100 * c['cross_category_fraction']:.0f}% cross-category)"
        )

    # ------------------------------------------------------------------ stage 2: train
    def grounding_config(self, run: str) -> dict:
        """The complete grounding experiment config of ``run`` (defaults resolved)."""
        from afford.grounding.train import resolve_config

        p = self.profile["grounding"]
        train = {
            **p["train"],
            "seed": self.seed,
            "device": self.device,
            "out": str(self.out / "runs" / run),
            "resume": False,
        }
        raw = {
            "data": {
                "dataset": "folders",
                "root": str(self.aff_root / self.profile["affordance"]["split"]),
                "cache": str(self.aff_root / "cache"),
                "affinity": "simulated",
                **p.get("data", {}),
            },
            # DINO: the tiny architecture pre-trained on synthetic renders without part,
            # affordance or function labels (shipped; docs/tiny-backbones.md): its keys carry
            # much more part signal than random init.
            "backbone": {"dino": {"variant": "tiny-synth"}, "clip": {"variant": "tiny"}},
            "model": dict(GROUNDING_RUNS[run]),
            "train": train,
        }
        return resolve_config(raw, f"demo {run}")

    def corr_config(self, run: str) -> dict:
        """The complete correspondence training config of ``run`` (every field)."""
        from afford.correspondence.train import CorrTrainConfig

        d = {
            **self.profile["corr_train"],
            **CORR_RUNS[run],
            "data": str(self.corr_root),
            "out": str(self.out / "runs" / run),
            "dinov2": "tiny-synth",  # pre-trained like the DINO (docs/tiny-backbones.md)
            "clip": "tiny",
            "seed": self.seed,
            "device": self.device,
        }
        return CorrTrainConfig.from_dict(d, f"demo {run}").to_dict()

    def stage_train(self) -> None:
        from afford.correspondence.train import CorrTrainConfig
        from afford.correspondence.train import train as train_corr
        from afford.grounding.train import load_config
        from afford.grounding.train import train as train_grounding

        header = "Written by `afford demo` ({profile}, seed {seed}). Reproduce with:\n  {command}"
        info: dict[str, Any] = {}
        for run in GROUNDING_RUNS:
            path = self.out / "configs" / f"{run}.yaml"
            command = f"afford train grounding --config {path} --no-resume"
            _write_yaml(
                path,
                self.grounding_config(run),
                header.format(profile=self.profile_name, seed=self.seed, command=command),
            )
            cfg = load_config(path)  # exactly what `afford train grounding` reads
            _say(f"  {run}: Table 2 row ({cfg['model']['table2_row']}) ({path.name})")
            t0, c0 = time.perf_counter(), _cpu_seconds()
            res = train_grounding(cfg)
            self.runs[run] = Path(res["out"])
            info[run] = {
                "config": str(path),
                "run": res["out"],
                "best_epoch": res["best_epoch"],
                "select": res["select"],
                "epochs": cfg["train"]["epochs"],
                "augment": bool(cfg["data"]["augment"]),
                "final_train": res["history"][-1]["train"] if res["history"] else {},
                "wall_s": time.perf_counter() - t0,
                "cpu_s": _cpu_seconds() - c0,
            }
            self.cmd(f"train {run}", command)
        for run in CORR_RUNS:
            path = self.out / "configs" / f"{run}.yaml"
            command = f"afford train correspondence --config {path} --no-resume"
            _write_yaml(
                path,
                self.corr_config(run),
                header.format(profile=self.profile_name, seed=self.seed, command=command),
            )
            cfg = CorrTrainConfig.from_yaml(
                path
            )  # exactly what `afford train correspondence` reads
            _say(f"  {run}: functional={cfg.functional} spatial={cfg.spatial} ({path.name})")
            t0, c0 = time.perf_counter(), _cpu_seconds()
            res = train_corr(cfg, resume=False, progress=self.progress)
            self.runs[run] = Path(res["out"])
            st = res["state"]
            info[run] = {
                "config": str(path),
                "run": res["out"],
                "best_epoch": st["best_epoch"],
                "select": "val_total",
                "epochs": cfg.epochs,
                "iterations": cfg.epochs * cfg.iters_per_epoch,
                "spatial_points": cfg.spatial_points,
                "final_train": st["epochs"][-1]["train"] if st["epochs"] else {},
                "wall_s": time.perf_counter() - t0,
                "cpu_s": _cpu_seconds() - c0,
            }
            self.cmd(f"train {run}", command)
        self.results["training"] = info

    # ------------------------------------------------------------------ stage 3: evaluate
    def stage_evaluate(self) -> None:
        from afford.backbones import load_dinov2
        from afford.correspondence.baselines import BackboneRow, ChanceRow, ModelRow
        from afford.correspondence.data import CorrespondenceDataset
        from afford.correspondence.evaluate import evaluate_rows
        from afford.correspondence.train import load_trained as load_corr
        from afford.engine import resolve_device
        from afford.grounding.evaluate import evaluate

        dev = resolve_device(self.device)
        g: dict[str, Any] = {}
        for run in GROUNDING_RUNS:
            out = self.out / "eval" / run
            t0 = _cpu_seconds()
            res = evaluate(
                self.runs[run], split="test", out=out, device=self.device, progress=self.progress
            )
            g[run] = {
                k: res[k] for k in ("split", "n", "kld", "sim", "nss", "per_affordance", "model")
            }
            g[run]["results"] = str(out / "results.json")
            g[run]["cpu_s"] = _cpu_seconds() - t0
            g[run]["per_image"] = [
                {k: r[k] for k in ("kld", "sim", "nss", "affordance", "object", "path")}
                for r in res["per_image"]
            ]
            self.cmd(
                f"evaluate {run} (KLD/SIM/NSS, test split)",
                f"afford eval grounding --checkpoint {self.runs[run]} --split test --out {out}",
            )
            _say(
                f"  {run}: KLD {res['kld']:.3f}  SIM {res['sim']:.3f}  NSS {res['nss']:.3f} "
                f"(n={res['n']}; KLD lower is better)"
            )
        self.results["grounding"] = g

        ev = self.profile["eval"]
        ds = CorrespondenceDataset(self.corr_root)
        rows = [ChanceRow(seed=self.seed)]
        rows.append(BackboneRow(load_dinov2(None, variant="tiny-synth", device=dev)))
        for run, spec in CORR_RUNS.items():
            model, dino, clip, functions, _ = load_corr(self.runs[run], dev)
            rows.append(ModelRow(model, dino, clip, functions, name=spec["name"]))
        out = self.out / "eval" / "correspondence"
        t0 = _cpu_seconds()
        res = evaluate_rows(
            ds,
            rows,
            split="test",
            out_dir=out,
            max_pairs=ev["max_pairs"],
            discovery_stride=ev["discovery_stride"],
            figures=ev["match_figures"],
            progress=self.progress,
        )
        c: dict[str, Any] = {
            "settings": res["settings"],
            "results": str(out / "results.json"),
            "cpu_s": _cpu_seconds() - t0,
        }
        names = {"chance": "chance", "dino": "dino (tiny-synth, frozen)"}
        for row in rows:
            r = res[row.name]
            c[row.name] = {
                "label": names.get(row.name, row.name),
                "overall": r["overall"],
                "within_category": r["within_category"],
                "across_category": r["across_category"],
            }
        self.results["correspondence"] = c
        stride = ev["discovery_stride"]
        base = (
            f"afford eval correspondence --pairs {self.corr_root} --split test "
            f"--discovery-stride {stride}"
        )
        if ev["max_pairs"] is not None:
            base += f" --max-pairs {ev['max_pairs']}"
        self.cmd(
            "evaluate chance row", f"{base} --baseline chance --seed {self.seed} --out {out}/chance"
        )
        self.cmd(
            "evaluate frozen tiny-synth DINOv2 row",
            f"{base} --baseline dino --dinov2 tiny-synth --out {out}/dino",
        )
        for run in CORR_RUNS:
            self.cmd(f"evaluate {run}", f"{base} --checkpoint {self.runs[run]} --out {out}/{run}")
        for row in rows:
            m = res[row.name]["overall"]
            _say(
                f"  correspondence {row.name:<12} PCK@23 {m['pck@23']:.3f}  PCK@10 "
                f"{m['pck@10']:.3f}  AP@23 {m['ap@23']:.3f}  (n={m['n']} pair directions)"
            )

    # ------------------------------------------------------------------ stage 4: photo
    def stage_photo(self) -> None:
        import numpy as np
        import skimage.data

        from afford.correspondence.baselines import ModelRow
        from afford.correspondence.infer import correspond
        from afford.correspondence.train import load_trained as load_corr
        from afford.data.io import write_image
        from afford.engine import resolve_device
        from afford.grounding.infer import ground
        from afford.viz import draw_matches, image_grid, overlay_heatmap

        dev = resolve_device(self.device)
        pdir = self.out / "photo"
        img = np.ascontiguousarray(skimage.data.coffee())
        src = write_image(pdir / "coffee.png", img)
        info: dict[str, Any] = {"image": str(src), "note": REAL_PHOTO_NOTE}

        classes = self.results["data"]["affordance"]["classes"]
        actions = [a for a in PHOTO_ACTIONS if a in classes] or classes[:2]
        tiles, titles, grounding = [], [], {}
        for action in actions:
            tiles.append(img)
            titles.append(f"coffee(), action '{action}'")
            for run in GROUNDING_RUNS:
                out = pdir / f"{run}_{action}.png"
                res = ground(src, action, checkpoint=self.runs[run], out=out, device=self.device)
                grid = np.asarray(res["grid"], dtype=np.float64)
                grounding[f"{run}:{action}"] = {
                    "heatmap": str(res["heatmap"]),
                    "overlay": str(res["overlay"]),
                    "max": float(grid.max()),
                    "mean": float(grid.mean()),
                }
                tiles.append(overlay_heatmap(img, grid))
                titles.append(f"{action}: {run.split('-')[1]}")
                self.cmd(
                    f"{run} heatmap of '{action}' on the photo",
                    f"afford ground {src} --action {action} --checkpoint {self.runs[run]} "
                    f"--out {out}",
                )
        sheet = image_grid(tiles, ncols=1 + len(GROUNDING_RUNS), titles=titles)
        info["grounding"] = grounding
        info["grounding_figure"] = str(write_image(self.fig_dir / "photo_grounding.png", sheet))

        # correspondence: the photo against a flipped, cropped copy (true matches known)
        h, w = img.shape[:2]
        r0, c0 = h // 10, w // 12
        flipped = np.ascontiguousarray(img[r0 : h - r0 // 2, ::-1][:, c0 : w - c0 // 2])
        src2 = write_image(pdir / "coffee_flipped.png", flipped)
        run = "correspondence-full"
        model, dino, clip, functions, _ = load_corr(self.runs[run], dev)
        function = PHOTO_FUNCTION if PHOTO_FUNCTION in functions else functions[0]
        row = ModelRow(model, dino, clip, functions, name="full")
        res = correspond(row, img, flipped, function, top=30)
        pts1, pts2 = np.asarray(res["pts1"]), np.asarray(res["pts2"])
        truth = np.stack([pts1[:, 0] - r0, (w - 1 - pts1[:, 1]) - c0], axis=1)
        tol = 23.0 / 224.0 * max(h, w)
        err = np.linalg.norm(pts2 - truth, axis=1)
        correct = err <= tol
        fig = draw_matches(img, flipped, pts1, pts2, correct=correct, thickness=2, radius=3)
        info["correspondence"] = {
            "function": function,
            "second_image": str(src2),
            "transform": f"horizontal flip, then crop rows {r0}: and cols {c0}: of the flip",
            "matches": int(len(pts1)),
            "correct": int(correct.sum()),
            "fraction_correct": float(correct.mean()) if len(correct) else float("nan"),
            "tolerance_px": float(tol),
            "figure": str(write_image(self.fig_dir / "photo_correspondence.png", fig)),
        }
        self.cmd(
            "correspondence on the photo (discovery, top 30 matches)",
            f"afford correspond {src} {src2} --function {function} --checkpoint "
            f"{self.runs[run]} --out {pdir / 'matches.png'}",
        )
        self.results["photo"] = info
        _say(
            f"  grounding heatmaps for {', '.join(actions)}; correspondence '{function}': "
            f"{correct.sum()}/{len(correct)} discovered matches within {tol:.0f} px of the true "
            "flipped position"
        )
        _say("  NOTE: tiny synthetic-trained backbones are not expected to be good on real "
             "photos; see the report for how to use real weights.")  # fmt: skip

    # ------------------------------------------------------------------ stage 5: report
    def make_figures(self) -> dict[str, Any]:
        """Heatmap sheets per action, correspondence matches, PR curves and loss curves."""
        import shutil

        import numpy as np
        import torch

        from afford.data.agd20k import EvalSet, scan_dataset
        from afford.data.io import read_json, write_image
        from afford.engine import resolve_device
        from afford.grounding.train import load_trained, open_cache, predict
        from afford.viz import image_grid, overlay_heatmap, plot_loss_curves

        figs: dict[str, Any] = {"heatmaps": {}, "matches": [], "pr": [], "loss": {}}
        dev = resolve_device(self.device)
        # grounding: image | GT | selective | CE for a few test images per action
        models = {run: load_trained(self.runs[run], dev) for run in GROUNDING_RUNS}
        cfg = models["grounding-selective"][1]
        dcfg = cfg["data"]
        data = scan_dataset(dcfg["root"], dcfg["dataset"], train=False, test=True)
        evalset = EvalSet(data.test, data.classes, open_cache(cfg, data.root, None))
        per_img = {
            run: {r["path"]: r["kld"] for r in self.results["grounding"][run]["per_image"]}
            for run in GROUNDING_RUNS
        }
        by_action: dict[str, list[int]] = {}
        for i, rec in enumerate(evalset.records):
            by_action.setdefault(rec.affordance, []).append(i)
        fp = self.profile["figures"]
        for action in sorted(by_action)[: fp["actions"]]:
            idx = by_action[action]
            pick = [
                idx[int(round(j))]
                for j in np.linspace(0, len(idx) - 1, min(fp["per_action"], len(idx)))
            ]
            tiles, titles = [], []
            for i in pick:
                it = evalset.item(i)
                rec = it["record"]
                img = (it["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                tiles += [img, overlay_heatmap(img, it["gt"].numpy())]
                titles += [f"{rec.obj}", "GT"]
                for run, (model, _, dino_r, _) in models.items():
                    with torch.no_grad():
                        heat = predict(model, dino_r, it["image"][None], it["label"][None],
                                       it["ego_action"][None])[0].float().cpu().numpy()  # fmt: skip
                    tiles.append(overlay_heatmap(img, heat))
                    kld = per_img[run].get(str(rec.path))
                    titles.append(f"{run.split('-')[1]} KLD {kld:.2f}" if kld is not None else run)
            sheet = image_grid(tiles, ncols=2 + len(models), titles=titles)
            figs["heatmaps"][action] = str(
                write_image(self.fig_dir / f"heatmaps_{action}.png", sheet)
            )

        # correspondence: evaluation figures copied next to the report
        ev = self.out / "eval" / "correspondence"
        for name in ("full", "spatial-only", "dino"):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
            pr = ev / f"pr_{safe}.png"
            if pr.is_file():
                dst = self.fig_dir / pr.name
                shutil.copyfile(pr, dst)
                figs["pr"].append({"row": name, "path": str(dst)})
            for m in sorted(ev.glob(f"matches_{safe}_*.png")):
                dst = self.fig_dir / m.name
                shutil.copyfile(m, dst)
                figs["matches"].append({"row": name, "path": str(dst)})

        # loss curves of the four runs
        for run, path in self.runs.items():
            hist = read_json(path / "history.json")["history"]
            keys = [k for k in hist[-1] if k not in ("epoch", "step") and not k.startswith("stat_")]
            figs["loss"][run] = str(
                plot_loss_curves(hist, self.fig_dir / f"loss_{run}.png", keys=keys, title=run)
            )
        return figs

    def stage_report(self) -> None:
        from afford import __version__

        figs = self.make_figures()
        self.results.update(
            {
                "generator": "afford.demo",
                "afford": __version__,
                "profile": self.profile_name,
                "seed": self.seed,
                "device": self.device,
                "device_used": self.device_used,
                "figures": figs,
                "papers": {"grounding": PAPER_GROUNDING, "correspondence": PAPER_CORR},
                "commands": self.commands,
                "timings": self.timings,
            }
        )
        check_results(self.results)
        md = render_markdown(self.results, self.out)
        html = render_html(md, title="afford demo report")
        write_report(self.out, md, html, self.results)


# --------------------------------------------------------------------------------- report
def check_results(results: dict) -> None:
    """Every headline number must be finite (a NaN in the report is a failed demo)."""
    bad = []
    for run in GROUNDING_RUNS:
        for k in ("kld", "sim", "nss"):
            if not _finite(results["grounding"][run].get(k)):
                bad.append(f"grounding {run} {k}")
    for spec in CORR_RUNS.values():
        m = results["correspondence"][spec["name"]]["overall"]
        for k in CORR_COLUMNS:
            if not _finite(m.get(k)):
                bad.append(f"correspondence {spec['name']} {k}")
    if bad:
        raise AffordError("non-finite metrics: " + ", ".join(bad))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x: Any, nd: int = 3) -> str:
    return f"{float(x):.{nd}f}" if _finite(x) else "-"


def render_markdown(r: dict, root: Path) -> str:
    """The report as Markdown (image links relative to ``root``)."""
    import math

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
        f"{r['afford']}. Stages 1-4 took {_fmt_seconds(total.get('wall_s', 0))} wall-clock "
        f"({_fmt_seconds(total.get('cpu_s', 0))} CPU). Every number below is in "
        "`results.json`; the commands that reproduce each one are at the end.\n"
    )
    cr = r["correspondence"]
    fo, so = cr["full"]["overall"], cr["spatial-only"]["overall"]
    gs, gc = g["grounding-selective"], g["grounding-ce"]
    add("## At a glance (synthetic held-out test data, this run)\n")
    add(
        _table(
            ["task", "metric", "ours", "baseline / ablation", "chance"],
            [
                ["affordance grounding", "KLD ↓", _f(gs["kld"]), f"{_f(gc['kld'])} (CE only)", "-"],
                ["affordance grounding", "SIM ↑", _f(gs["sim"]), f"{_f(gc['sim'])} (CE only)", "-"],
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
        "test."
    )
    add(
        "3. **Evaluation** on the held-out test data with the papers' metrics: KLD / SIM / NSS "
        "(affordance paper, AGD20K protocol) and label transfer (normalised distance, PCK@k) "
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
    add(_table(["model (this run, synthetic)", "KLD ↓", "SIM ↑", "NSS ↑", "images"], rows))
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
        add(f"**{action}**\n\n![{action}]({_rel(Path(path), root)})\n")

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
        chance_level = math.log(info.get("spatial_points", 128))
        if _finite(spatial) and abs(spatial - chance_level) < 0.02 * chance_level:
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
        add(f"**{m['row']}**: ![{m['row']}]({_rel(Path(m['path']), root)})\n")
    add("### Discovery precision-recall\n")
    for p in fig["pr"]:
        add(f"**{p['row']}**\n\n![PR {p['row']}]({_rel(Path(p['path']), root)})\n")

    add("## Training curves\n")
    for run, path in fig["loss"].items():
        best = r["training"][run]["best_epoch"]
        add(f"**{run}** (selected epoch {best})\n\n![{run}]({_rel(Path(path), root)})\n")

    add("## A real photo\n")
    p = r["photo"]
    add(f"> {p['note']}\n")
    add(f"![grounding on coffee]({_rel(Path(p['grounding_figure']), root)})\n")
    pc = p["correspondence"]
    add(
        f"Correspondence for `{pc['function']}` between the photo and a copy of it that was "
        f"{pc['transform']}: {pc['correct']} of {pc['matches']} discovered matches land within "
        f"{pc['tolerance_px']:.0f} px of the true position (green; red otherwise).\n"
    )
    add(f"![correspondence on coffee]({_rel(Path(pc['figure']), root)})\n")

    add("## Reproduce every number\n")
    add(
        "Configs (complete, every default resolved) are in `configs/`; run the commands in "
        "this order (training is deterministic on CPU for a seed):\n"
    )
    add("```bash")
    for cmd in r["commands"]:
        add(f"# {cmd['purpose']}\n{cmd['command']}")
    add("```\n")
    rows = [[name, _fmt_seconds(v["wall_s"]), _fmt_seconds(v["cpu_s"])]
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
    import html

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return HTML_TEMPLATE.format(title=html.escape(title), body=body)


def write_report(out: Path, md: str, html: str, results: dict) -> None:
    """Write report.md, report.html and results.json to temporary names, then rename all three
    (nothing is renamed unless all three were written)."""
    from afford.data.io import atomic_path, write_json, write_text

    with (
        atomic_path(out / "report.md") as t_md,
        atomic_path(out / "report.html") as t_html,
        atomic_path(out / "results.json") as t_json,
    ):
        write_json(t_json, results)
        write_text(t_md, md)
        write_text(t_html, html)


# --------------------------------------------------------------------------------- CLI
def _run(args: argparse.Namespace) -> int:
    demo = Demo(args.out, quick=args.quick, seed=args.seed, device=args.device, force=args.force)
    demo.run()
    return 0


def register(groups: dict) -> None:
    """Add ``afford demo``."""
    p = groups["top"].add_parser(
        "demo",
        help="both methods end to end on the synthetic world, with a report",
        description="Write small synthetic datasets, train the selective grounding model, the "
        "CE baseline, the full correspondence model and its spatial-only ablation on tiny "
        "backbones, evaluate them on held-out synthetic data, run them on a real photo, and "
        "write DIR/report.md, DIR/report.html and DIR/results.json. About 5 minutes on 2 CPU "
        "cores (--quick: under 2).",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="smaller data, fewer steps (< 3 min)")
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    p.add_argument(
        "--force",
        action="store_true",
        help="regenerate the datasets even when unchanged, and write into a non-empty folder "
        "not made by afford demo",
    )
    p.set_defaults(func=_run)

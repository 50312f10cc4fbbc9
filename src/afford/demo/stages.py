"""The stages of ``afford demo``: data, train, evaluate, photo, report (:class:`Demo`).

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
   (:func:`afford.grounding.evaluate.evaluate`), with a uniform map on the same images as the
   chance row (:func:`uniform_grounding_row`); label transfer and discovery on the held-out
   correspondence pairs (:func:`afford.correspondence.evaluate.evaluate_rows`), with chance
   and the frozen tiny-backbone nearest neighbour as context rows.
4. **photo**: both models on ``skimage.data.coffee()`` (:func:`afford.grounding.infer.ground`,
   :func:`afford.correspondence.infer.correspond` against a flipped, cropped copy whose true
   matches are known).
5. **report**: figures, then ``DIR/report.md``, ``DIR/report.html`` and ``DIR/results.json``
   (every number; :mod:`afford.demo.report`), written to temporary names and renamed together
   only when everything is ready; the headline (:func:`afford.demo.report.headline`) is
   printed last.

The demo implements nothing of the methods itself: it only calls the modules above, and every
call that builds a task config or trains / loads a task model is in the "task calls" section
below (one place to adapt when a task's API changes).
A failing stage stops the run with a message naming the stage, exit status non-zero, and no
report (the previous report is removed when a run starts).
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from afford import __version__
from afford.backbones import load_dinov2
from afford.config import dump_yaml, from_dict, load, replace, to_dict
from afford.correspondence.baselines import BackboneRow, ChanceRow, ModelRow
from afford.correspondence.config import CorrExperiment
from afford.correspondence.evaluate import evaluate_rows
from afford.correspondence.infer import correspond
from afford.correspondence.train import load_trained as load_corr_trained
from afford.correspondence.train import train as train_corr
from afford.data.agd20k import AffordanceData, EvalSet, scan_dataset
from afford.data.correspondence import CorrespondenceDataset
from afford.data.io import read_json, write_bytes, write_image, write_json, write_text
from afford.demo.recipes import (
    CORR_RUNS,
    GROUNDING_RUNS,
    PAPER_CORR,
    PAPER_GROUNDING,
    PHOTO_ACTIONS,
    PHOTO_FUNCTION,
    PROFILES,
    corr_raw_config,
    grounding_raw_config,
)
from afford.demo.report import (
    REAL_PHOTO_NOTE,
    REPORT_FILES,
    check_results,
    fmt_seconds,
    headline,
    render_html,
    render_markdown,
    write_report,
)
from afford.engine import resolve_device
from afford.errors import AffordError
from afford.grounding.build import load_trained as load_grounding_trained
from afford.grounding.build import open_cache
from afford.grounding.config import GroundingExperiment
from afford.grounding.evaluate import evaluate as evaluate_grounding
from afford.grounding.evaluate import uniform_row
from afford.grounding.infer import ground
from afford.grounding.train import predict
from afford.grounding.train import train as train_grounding
from afford.synth.affordance import GENERATOR as AFF_GENERATOR
from afford.synth.affordance import GENERATOR_VERSION as AFF_GENERATOR_VERSION
from afford.synth.affordance import SIZES, AffordanceSize, write_affordance_dataset
from afford.synth.correspondence import GENERATOR_VERSION as CORR_GENERATOR_VERSION
from afford.synth.correspondence import CorrSynthConfig, write_correspondence_dataset
from afford.viz import draw_matches, image_grid, overlay_heatmap, plot_loss_curves

log = logging.getLogger(__name__)

MARKER = "demo.json"
EVAL_SIZE = 224  # the AGD20K protocol's evaluation resolution (evaluate_map's default)


class StageError(AffordError):
    """A demo stage failed; the message names the stage."""


# --------------------------------------------------------------------------------- helpers
def _say(text: str) -> None:
    tqdm.write(text)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _write_yaml(path: Path, data: dict, header: str) -> Path:
    text = "\n".join(f"# {line}" for line in header.splitlines()) + "\n"
    return write_text(path, text + dump_yaml(data))


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON types (tuples -> lists) for comparisons with manifests."""
    return json.loads(json.dumps(obj))


def _coffee() -> np.ndarray:
    """``skimage.data.coffee()`` (H,W,3) uint8; scikit-image is an optional dependency."""
    try:
        import skimage.data
    except ImportError as exc:
        raise AffordError(
            "the demo's photo stage needs scikit-image: pip install 'afford[synth]'"
        ) from exc
    return np.ascontiguousarray(skimage.data.coffee())


# --------------------------------------------------------------------------------- task calls
# Every call that builds a task config or trains / loads a task model, in one place: when a
# task's config API changes, these functions are what to adapt. Each returns plain values
# (dicts, paths, models), so the stages never read a task config object themselves.
def resolve_grounding_config(raw: dict, name: str) -> dict:
    """The complete grounding experiment config (every default resolved) of a raw dict."""
    return to_dict(from_dict(GroundingExperiment, raw))


def read_grounding_config(path: Path) -> tuple[Any, dict[str, Any]]:
    """(config, facts) of a grounding config file, read exactly as ``afford train grounding``
    reads it; facts: ``{"table2_row", "epochs", "augment"}``."""
    cfg = load(GroundingExperiment, path)
    facts = {
        "table2_row": cfg.model.table2_row,
        "epochs": cfg.train.epochs,
        "augment": cfg.data.augment,
    }
    return cfg, facts


def fit_grounding(cfg: Any) -> dict[str, Any]:
    """Train one grounding experiment: ``{"run", "best_epoch", "select", "final_train"}``."""
    res = train_grounding(cfg)
    return {
        "run": res["out"],
        "best_epoch": res["best_epoch"],
        "select": res["select"],
        "selection": res["selection"],
        "final_train": res["history"][-1]["train"] if res["history"] else {},
    }


def load_grounding_model(run: Path, device: torch.device) -> tuple[Any, Any, Any]:
    """(model, frozen DINO, config) of a trained grounding run."""
    model, cfg, dino, _ = load_grounding_trained(run, device)
    return model, dino, cfg


def grounding_test_set(cfg: Any) -> EvalSet:
    """The test images of a grounding run's dataset, with its affinity map cache."""
    data = grounding_test_data(cfg.data.root, cfg.data.dataset)
    return EvalSet(data.test, data.classes, open_cache(cfg, data.root, None))


def resolve_corr_config(raw: dict, name: str) -> dict:
    """The complete correspondence training config (every field) of a raw dict."""
    return to_dict(from_dict(CorrExperiment, raw))


def read_corr_config(path: Path) -> tuple[Any, dict[str, Any]]:
    """(config, facts) of a correspondence config file, read exactly as ``afford train
    correspondence`` reads it; facts: ``{"functional", "spatial", "epochs", "iterations",
    "spatial_points"}``."""
    cfg = load(CorrExperiment, path)
    facts = {
        "functional": cfg.loss.functional,
        "spatial": cfg.loss.spatial,
        "epochs": cfg.train.epochs,
        "iterations": cfg.train.epochs * cfg.train.iters_per_epoch,
        "spatial_points": cfg.sampling.spatial_points,
    }
    return cfg, facts


def fit_corr(cfg: Any, progress: bool) -> dict[str, Any]:
    """Train one correspondence model: ``{"run", "best_epoch", "select", "final_train"}``."""
    res = train_corr(replace(cfg, train=replace(cfg.train, resume=False, progress=progress)))
    st = res["state"]
    return {
        "run": res["out"],
        "best_epoch": st["best_epoch"],
        "select": res["selection"]["metric"],
        "selection": res["selection"],
        "final_train": st["epochs"][-1]["train"] if st["epochs"] else {},
    }


def load_corr_row(run: Path, device: torch.device, name: str) -> tuple[ModelRow, list[str]]:
    """(evaluation row, function names) of a trained correspondence run."""
    model, dino, clip, functions, _ = load_corr_trained(run, device)
    return ModelRow(model, dino, clip, functions, name=name), functions


# --------------------------------------------------------------------------------- grounding data
def grounding_test_data(root: str | Path, dataset: str) -> AffordanceData:
    """The held-out test records of an affordance dataset (what ``evaluate`` scores)."""
    return scan_dataset(root, dataset, train=False, test=True)


def uniform_grounding_row(data: AffordanceData) -> dict[str, Any]:
    """KLD / SIM / NSS of the uniform map on every test image (the grounding chance row;
    :func:`afford.grounding.evaluate.uniform_row`, which says why a map of ones with a single
    0 is the uniform distribution under the protocol's min-max normalisation)."""
    return uniform_row(data.test, data.classes)


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
            _say(f"    {name} done in {fmt_seconds(wall)} (cpu {fmt_seconds(cpu)})")
        total = time.perf_counter() - t0
        _say(
            "\nheadline (held-out synthetic test data; each method vs the row that knows nothing):"
        )
        for line in self.results["headline"]:
            _say(f"  {line}")
        _say(f"\ndemo finished in {fmt_seconds(total)}: open {self.out / 'report.html'}")
        return self.results

    # ------------------------------------------------------------------ stage 1: data
    def _aff_request(self) -> tuple[str, Any]:
        """(size name, AffordanceSize): a preset name, or "custom" for explicit counts."""
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
        p = self.profile["correspondence"]
        return CorrSynthConfig(seed=self.seed, size=p["size"], views=p["views"])

    def _aff_unchanged(self) -> bool:
        path = self.aff_root / "dataset.json"
        if not path.is_file():
            return False
        try:
            m = read_json(path)
        except AffordError:
            return False
        size_name, sz = self._aff_request()
        return (
            m.get("generator") == AFF_GENERATOR
            and str(m.get("version")) == str(AFF_GENERATOR_VERSION)
            and m.get("seed") == self.seed
            and m.get("size") == size_name
            and m.get("sizes") == _jsonable(asdict(sz))
        )

    def _corr_unchanged(self) -> bool:
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
            and str(g.get("version")) == str(CORR_GENERATOR_VERSION)
            and g.get("seed") == self.seed
            and g.get("size") == cfg.size
            and g.get("views") == cfg.views
            and g.get("options") == _jsonable(options)
        )

    def stage_data(self) -> None:
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
                self.aff_root,
                seed=self.seed,
                size=size if size_name == "custom" else size_name,
                force=self.force,
                progress=self.progress,
            )
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
        raw = grounding_raw_config(self.profile, run, seed=self.seed, device=self.device,
                                   aff_root=self.aff_root, out=self.out / "runs" / run)  # fmt: skip
        return resolve_grounding_config(raw, f"demo {run}")

    def corr_config(self, run: str) -> dict:
        """The complete correspondence training config of ``run`` (every field)."""
        raw = corr_raw_config(self.profile, run, seed=self.seed, device=self.device,
                              corr_root=self.corr_root, out=self.out / "runs" / run)  # fmt: skip
        return resolve_corr_config(raw, f"demo {run}")

    def _train_run(
        self, run: str, task: str, config: dict, read, fit, describe, extra: tuple[str, ...]
    ) -> dict:
        """Write ``run``'s config, train it as ``afford train TASK`` would, return its facts.

        ``read(path) -> (cfg, facts)`` reads the written config exactly as the command does;
        ``fit(cfg) -> res`` trains; ``describe(facts)`` is the progress line; ``extra`` names
        the facts reported besides ``epochs``.
        """
        header = "Written by `afford demo` ({profile}, seed {seed}). Reproduce with:\n  {command}"
        path = self.out / "configs" / f"{run}.yaml"
        command = f"afford train {task} --config {path} --no-resume"
        _write_yaml(
            path, config, header.format(profile=self.profile_name, seed=self.seed, command=command)
        )
        cfg, facts = read(path)
        _say(f"  {run}: {describe(facts)} ({path.name})")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        res = fit(cfg)
        self.runs[run] = Path(res["run"])
        info = {
            "config": str(path),
            "run": res["run"],
            "best_epoch": res["best_epoch"],
            "select": res["select"],
            "selection": res.get("selection"),
            "epochs": facts["epochs"],
            **{k: facts[k] for k in extra},
            "final_train": res["final_train"],
            "wall_s": time.perf_counter() - t0,
            "cpu_s": _cpu_seconds() - c0,
        }
        self.cmd(f"train {run}", command)
        return info

    def stage_train(self) -> None:
        info: dict[str, Any] = {}
        for run in GROUNDING_RUNS:
            # read_grounding_config: exactly what `afford train grounding` reads
            info[run] = self._train_run(
                run,
                "grounding",
                self.grounding_config(run),
                read_grounding_config,
                fit_grounding,
                lambda f: f"Table 2 row ({f['table2_row']})",
                ("augment",),
            )
        for run in CORR_RUNS:
            # read_corr_config: exactly what `afford train correspondence` reads
            info[run] = self._train_run(
                run,
                "correspondence",
                self.corr_config(run),
                read_corr_config,
                partial(fit_corr, progress=self.progress),
                lambda f: f"functional={f['functional']} spatial={f['spatial']}",
                ("iterations", "spatial_points"),
            )
        self.results["training"] = info

    # ------------------------------------------------------------------ stage 3: evaluate
    def stage_evaluate(self) -> None:
        dev = resolve_device(self.device)
        g: dict[str, Any] = {}
        for run in GROUNDING_RUNS:
            out = self.out / "eval" / run
            t0 = _cpu_seconds()
            res = evaluate_grounding(
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
        # the same test images as the last evaluation: the uniform map's scores (chance)
        g["uniform"] = uniform_grounding_row(grounding_test_data(res["root"], res["dataset"]))
        u = g["uniform"]
        _say(
            f"  uniform map (chance): KLD {u['kld']:.3f}  SIM {u['sim']:.3f}  NSS {u['nss']:.3f} "
            f"(n={u['n']}; the same metrics of a map that knows nothing)"
        )
        self.results["grounding"] = g

        ev = self.profile["eval"]
        ds = CorrespondenceDataset(self.corr_root)
        rows = [ChanceRow(seed=self.seed)]
        rows.append(BackboneRow(load_dinov2(None, variant="tiny-synth", device=dev)))
        for run, spec in CORR_RUNS.items():
            rows.append(load_corr_row(self.runs[run], dev, spec["name"])[0])
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
        dev = resolve_device(self.device)
        pdir = self.out / "photo"
        img = _coffee()
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
        row, functions = load_corr_row(self.runs[run], dev, "full")
        function = PHOTO_FUNCTION if PHOTO_FUNCTION in functions else functions[0]
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

        figs: dict[str, Any] = {"heatmaps": {}, "matches": [], "pr": [], "loss": {}}
        dev = resolve_device(self.device)
        # grounding: image | GT | selective | CE for a few test images per action
        models = {run: load_grounding_model(self.runs[run], dev) for run in GROUNDING_RUNS}
        evalset = grounding_test_set(models["grounding-selective"][2])
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
                for run, (model, dino_r, _) in models.items():
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
                write_bytes(dst, pr.read_bytes())
                figs["pr"].append({"row": name, "path": str(dst)})
            for m in sorted(ev.glob(f"matches_{safe}_*.png")):
                dst = self.fig_dir / m.name
                write_bytes(dst, m.read_bytes())
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
        self.results["headline"] = headline(self.results)
        md = render_markdown(self.results, self.out)
        html = render_html(md, title="afford demo report")
        write_report(self.out, md, html, self.results)

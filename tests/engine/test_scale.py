"""The engine at scale, on tiny models and synthetic data (seconds each):

* 2 gloo processes train exactly like 1 process with the same global batch (both tasks);
* DataLoader workers do not change the batches;
* kill -9 in the middle of an epoch or of a checkpoint write, then resume: the final
  checkpoint is bit-identical to the uninterrupted run's (both tasks);
* bf16-mixed on CPU trains; TensorBoard and CSV logs hold the scalars.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from scale_helpers import corr_yaml, grounding_yaml, losses, run_cli, weights  # noqa: E402

from afford.data.io import read_json

TASKS = ("grounding", "correspondence")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("scale")


def _config(task: str, base: Path, **train) -> Path:
    return grounding_yaml(base, **train) if task == "grounding" else corr_yaml(base, **train)


def _train(task: str, cfg: Path, out: Path, *flags: str, env: dict | None = None, check=True):
    return run_cli("train", task, "--config", str(cfg), "--out", str(out), *flags, env=env,
                   check=check)  # fmt: skip


@pytest.mark.parametrize("task", [*TASKS, "correspondence-bank"])
def test_two_processes_train_like_one(task, base):
    extra: list[str] = []
    if task == "correspondence-bank":  # features from a bank built in shards by the 2 ranks
        task, extra = "correspondence", ["--set", "sampling.feature_augs=2"]
    # grounding with SGD (the released optimiser): the conv biases in front of BatchNorm have
    # a gradient that is exactly 0 in real arithmetic, float rounding noise (~1e-9) in
    # practice; Adam divides that noise by its own square root and moves those biases by
    # +-lr at random, which no reduction order can make reproducible.
    cfg = (
        _config(task, base, optimizer="sgd", lr=0.01)
        if task == "grounding"
        else _config(task, base)
    )
    tag = task + ("_bank" if extra else "")
    one, two = base / f"{tag}_1p", base / f"{tag}_2p"
    _train(task, cfg, one, "--devices", "1", "--accelerator", "cpu", *extra)
    _train(task, cfg, two, "--devices", "2", "--accelerator", "cpu", *extra)
    l1, l2 = losses(one), losses(two)
    assert len(l1) == len(l2) > 2
    assert l1 == pytest.approx(l2, abs=1e-5, rel=1e-5)
    w1, w2 = weights(one / "last"), weights(two / "last")
    assert w1.keys() == w2.keys()
    noise_only = set()
    if task == "correspondence":
        # layer_logits (the softmax mix of the backbone layers) gets a gradient at float
        # noise level (~1e-8) on the tiny backbone, below AdamW's eps: AdamW then moves it by
        # ~lr/2 per step in the direction of the noise, in one process as in two.  Checked:
        # its second moment is at noise level in both runs (so no real gradient is lost).
        o1 = load_file(str(one / "last" / "optimizer.safetensors"))
        o2 = load_file(str(two / "last" / "optimizer.safetensors"))
        shape = w1["layer_logits"].shape
        (pid,) = [k.split(".")[0] for k, v in o1.items() if k.endswith("exp_avg_sq")
                  and v.shape == shape]  # fmt: skip
        assert float(o1[f"{pid}.exp_avg_sq"].sqrt().max()) < 1e-7
        assert float(o2[f"{pid}.exp_avg_sq"].sqrt().max()) < 1e-7
        noise_only = {"layer_logits"}
    for k in w1:
        if k in noise_only:
            continue
        if w1[k].is_floating_point():
            torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-5, msg=k)
        else:
            assert torch.equal(w1[k], w2[k]), k
    assert not (two / "logs").exists()  # logger none; and rank 1 wrote nothing of its own


@pytest.mark.parametrize("task", TASKS)
def test_kill9_mid_epoch_and_mid_write_then_resume_is_bit_identical(task, base):
    cfg = _config(task, base, checkpoint_every=2, epochs=2)
    ref = base / f"{task}_ref"
    _train(task, cfg, ref)
    for crash in ("step:3", "write:2"):  # mid-epoch (after step 3, last at step 2), mid-write
        run = base / f"{task}_crash_{crash.replace(':', '')}"
        p = _train(task, cfg, run, env={"AFFORD_TEST_CRASH": crash}, check=False)
        assert p.returncode == -9, p.stderr[-2000:]
        _train(task, cfg, run)
        for name in ("last", "best"):
            a, b = ref / name, run / name
            assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
            assert (a / "optimizer.safetensors").read_bytes() == (
                b / "optimizer.safetensors"
            ).read_bytes()
            assert _meta(a) == _meta(b), (crash, name)
        assert not list(run.glob(".last*")) and not list(run.glob(".best*"))


def _meta(ckpt: Path) -> dict:
    """A checkpoint's config.json without the run folder (the runs differ only there)."""
    meta = read_json(ckpt / "config.json")
    conf = meta["config"]
    (conf.get("experiment") or conf)["train"].pop("out")
    return meta


def test_workers_give_the_same_batches(base):
    cfg = _config("grounding", base, epochs=1)
    _train("grounding", cfg, base / "w0", "--workers", "0")
    _train("grounding", cfg, base / "w2", "--workers", "2")
    assert losses(base / "w0") == losses(base / "w2")
    w0, w2 = weights(base / "w0" / "last"), weights(base / "w2" / "last")
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


@pytest.mark.parametrize("task", TASKS)
def test_bf16_mixed_on_cpu_trains(task, base):
    cfg = _config(task, base, epochs=3 if task == "grounding" else 4)
    run = base / f"{task}_bf16"
    _train(task, cfg, run, "--precision", "bf16-mixed", "--accelerator", "cpu")
    hist = read_json(run / "history.json")["epochs"]
    first, last = hist[0]["train"]["total"], hist[-1]["train"]["total"]
    assert last < first, (first, last)


def _tb_scalars(folder: Path) -> set[str]:
    """Tags of the scalar summaries in the TensorBoard event files under ``folder``."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for f in folder.rglob("events.out.tfevents.*"):
        data = f.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            tags.update(v.tag for v in ev.summary.value)
            pos += 12 + n + 4
    return tags


def test_tensorboard_and_csv_logs_hold_the_scalars(base):
    cfg = _config("grounding", base, epochs=1)
    _train("grounding", cfg, base / "tb", "--logger", "tensorboard", "--log-every", "1")
    tags = _tb_scalars(base / "tb" / "logs" / "tensorboard")
    assert {"train/total", "train/ce_ego", "lr", "samples_per_s", "val/val_kld"} <= tags, tags
    _train("grounding", cfg, base / "csv", "--logger", "csv", "--log-every", "1")
    (csv,) = (base / "csv" / "logs" / "csv").rglob("metrics.csv")
    header, *rows = csv.read_text().splitlines()
    assert {"train/total", "lr", "samples_per_s", "val/val_kld"} <= set(header.split(","))
    assert len(rows) >= 2


def test_non_tty_progress_is_one_line_per_n_steps(base):
    cfg = _config("correspondence", base, progress=True, epochs=1, iters_per_epoch=6)
    p = _train("correspondence", cfg, base / "lines", "--log-every", "2")
    lines = [ln for ln in p.stderr.splitlines() if " step " in ln and "samples/s" in ln]
    assert len(lines) == 3, p.stderr
    assert "\r" not in p.stderr  # no tqdm bar redraws in a log file


def test_validation_images_in_the_logs(base):
    """Grounding heatmaps and correspondence matches after each validation (csv: png files)."""
    g = _config("grounding", base, epochs=1, logger="csv")
    _train("grounding", g, base / "gimg")
    assert sorted(p.name for p in (base / "gimg" / "logs" / "images").glob("*.png"))[:1] == [
        "val_heatmap_0_0000001.png"
    ]
    c = _config("correspondence", base, epochs=1, logger="csv")
    _train("correspondence", c, base / "cimg", "--set", "data.val_fraction=0.3")
    assert len(list((base / "cimg" / "logs" / "images").glob("val_matches_*.png"))) == 2

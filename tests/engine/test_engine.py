import json

import pytest
import torch

from afford.engine import fit, load_checkpoint, resolve_device, save_checkpoint, seed_everything
from afford.errors import AffordError


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return x, y


def _batches(x, y):
    def batches(epoch):
        g = torch.Generator().manual_seed(1000 + epoch)
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 16):
            idx = perm[i : i + 16]
            yield x[idx], y[idx]

    return batches


def _step(model):
    def step(batch, epoch):
        xb, yb = batch
        loss = torch.nn.functional.mse_loss(model(xb).squeeze(-1), yb)
        return {"total": loss, "mse": loss.detach()}

    return step


def _linear():
    """A fresh Linear(3, 1) (global torch RNG) and its SGD optimiser (lr 0.1)."""
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _fit(model, opt, x, y, out_dir, epochs, **kwargs):
    """``fit`` on the linear problem: MSE steps, no config, no progress bars."""
    return fit(model, opt, _batches(x, y), _step(model), epochs=epochs, out_dir=out_dir,
               config={}, progress=False, **kwargs)  # fmt: skip


def test_checkpoint_roundtrip_with_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ck", model, {"kind": "linear"}, optimizer=opt, extra={"a": 1})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck["config"] == {"kind": "linear"} and ck["extra"] == {"a": 1}
    for k, v in model.state_dict().items():
        assert torch.equal(ck["state_dict"][k], v)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    opt2.load_state_dict(ck["optimizer"])
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and float(s1["step"]) == float(s2["step"])
    # no pickle: the folder holds only safetensors and JSON
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
    ]


def test_load_checkpoint_rejects_non_checkpoint(tmp_path):
    with pytest.raises(AffordError, match="not an afford checkpoint"):
        load_checkpoint(tmp_path)


def test_fit_learns_selects_and_resumes_exactly(tmp_path):
    x, y = _problem()
    seed_everything(0)
    model, opt = _linear()
    vals = iter([3.0, 1.0, 2.0, 5.0])
    state = _fit(
        model,
        opt,
        x,
        y,
        tmp_path / "run",
        4,
        validate=lambda e: {"loss": next(vals)},
        select="loss",
    )
    assert state.epochs[-1]["train"]["total"] < 0.2 * state.epochs[0]["train"]["total"]
    assert state.best_epoch == 2 and state.best == 1.0
    best = load_checkpoint(tmp_path / "run" / "best")
    assert best["extra"]["train_state"]["epoch"] == 2
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(hist["history"]) == 16 and hist["epoch"] == 4

    # Interrupted run: 2 epochs, then resume to 4 -> identical weights to a straight run.
    seed_everything(0)
    m2, o2 = _linear()
    _fit(m2, o2, x, y, tmp_path / "r2", 2)
    m3, o3 = _linear()
    st = _fit(m3, o3, x, y, tmp_path / "r2", 4)
    assert st.epoch == 4 and len(st.epochs) == 4
    for a, b in zip(m3.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_fit_rejects_nonfinite_loss(tmp_path):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(batch, epoch):
        return {"total": model(batch).sum() * float("nan")}

    with pytest.raises(AffordError, match="non-finite loss"):
        fit(
            model,
            opt,
            lambda e: [torch.ones(1, 1)],
            step,
            epochs=1,
            out_dir=tmp_path,
            config={},
            progress=False,
        )


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(AffordError):
        resolve_device("nonsense-device")


def test_fit_hooks_per_step_scheduler_and_stateful_objects(tmp_path):
    x, y = _problem()
    model, opt = _linear()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (k + 1))
    seen = []

    class Counter:
        def __init__(self):
            self.n = 0

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, d):
            self.n = d["n"]

    counter = Counter()

    def after_step(state):
        counter.n += 1
        seen.append((state.step, opt.param_groups[0]["lr"]))
        return state.step == 6  # stop in the middle of epoch 2

    state = _fit(
        model,
        opt,
        x,
        y,
        tmp_path,
        3,
        scheduler=sched,
        scheduler_interval="step",
        after_step=after_step,
        stateful={"counter": counter},
    )
    # the scheduler stepped after every optimizer step; the hook saw the finished step count
    assert [k for k, _ in seen[:3]] == [1, 2, 3]
    assert [lr for _, lr in seen[:3]] == pytest.approx([0.1 / 2, 0.1 / 3, 0.1 / 4])
    assert state.stopped_early and state.step == 6 and state.epoch == 2
    ck = load_checkpoint(tmp_path / "last")
    assert ck["extra"]["stateful"] == {"counter": {"n": 6}}
    fresh = Counter()
    _fit(model, opt, x, y, tmp_path, 2, stateful={"counter": fresh})
    assert fresh.n == 6  # restored on resume (nothing left to train: epoch 2 of 2 is done)
    with pytest.raises(AffordError, match="scheduler_interval"):
        _fit(model, opt, x, y, tmp_path / "x", 1, scheduler_interval="batch")

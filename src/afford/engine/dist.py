"""Cross-process pieces that keep a multi-process step equal to the one-process step.

A global batch of N samples is split into contiguous per-rank chunks (rank 0 holds the first
samples, :mod:`afford.engine.data`).  Gradients are averaged over the W ranks (DDP), so:

* a per-sample mean loss must be written as :func:`global_mean` (``sum_local * W / N``):
  its DDP average is the mean over the global batch even when the chunks are uneven;
* a loss that compares samples with each other (contrastive prototypes, k-means over the
  batch...) runs on the global batch: :func:`gather_cat` concatenates every rank's chunk
  (differentiable: the backward sums the incoming gradients over ranks, which DDP's average
  turns back into the exact gradient of the global loss);
* :func:`report_mean` turns each rank's value into the global batch's value for the logs.

Without an initialised process group (one process) every function is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _sizes(n: int, device: torch.device) -> list[int]:
    t = torch.tensor([n], device=device, dtype=torch.int64)
    out = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [int(v) for v in out]


class _GatherCat(torch.autograd.Function):
    """all_gather along dim 0 with uneven chunks; backward: all-reduce (sum), own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        sizes = _sizes(x.shape[0], x.device)
        big = max(sizes)
        pad = x.new_zeros((big, *x.shape[1:]))
        pad[: x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in sizes]
        dist.all_gather(parts, pad.contiguous())
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` (n_r, ...) concatenated in rank order -> (sum n_r, ...).

    Differentiable for floating tensors; integer/bool tensors are gathered without a graph.
    """
    if not is_distributed():
        return x
    if x.is_floating_point() and x.requires_grad:
        return _GatherCat.apply(x)
    with torch.no_grad():
        return _GatherCat.apply(x.float() if x.dtype == torch.bool else x).to(x.dtype)


def local_slice(x: torch.Tensor, n_local: int) -> slice:
    """The rows of this rank inside a :func:`gather_cat` result (``n_local``: own rows)."""
    if not is_distributed():
        return slice(0, x.shape[0])
    sizes = _sizes(n_local, x.device)
    start = sum(sizes[: rank()])
    return slice(start, start + n_local)


def global_count(n: int | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sum of ``n`` over ranks (a 0-dim float tensor)."""
    t = torch.as_tensor(n, dtype=torch.float64, device=device).detach().clone()
    if is_distributed():
        dist.all_reduce(t)
    return t


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """Per-sample ``values`` (n,) -> scalar whose DDP average (mean over ranks) is the mean
    over the global batch: ``sum(values) * W / N``.  With one process: ``values.mean()``.

    Empty everywhere -> 0 with a graph."""
    if not is_distributed():
        return values.mean() if values.numel() else values.sum() * 0.0
    n = global_count(values.numel(), values.device)
    if float(n) == 0:
        return values.sum() * 0.0
    return values.sum() * (world_size() / n.to(values.dtype))


def report_mean(value: float | torch.Tensor) -> float:
    """Mean over ranks of a scalar (what :func:`global_mean` / global losses log)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().clone()
    if is_distributed():
        dev = torch.device("cpu") if dist.get_backend() == "gloo" else torch.device("cuda")
        t = t.to(dev)
        dist.all_reduce(t)
        t = t / world_size()
    return float(t)


def report_means(values: list[float]) -> list[float]:
    """:func:`report_mean` of several scalars in one collective."""
    t = torch.tensor(values, dtype=torch.float64)
    if is_distributed():
        if dist.get_backend() != "gloo":
            t = t.cuda()
        dist.all_reduce(t)
        t = t.cpu() / world_size()
    return t.tolist()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward: the sum over ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.detach().clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity with one process)."""
    return _AllReduceSum.apply(x) if is_distributed() else x


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (every rank's
    chunk), on any device and backend (torch's SyncBatchNorm is GPU-only).  Two passes
    (mean, then the centred sum of squares) like the one-process kernel; same state dict."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm: expected (N,C,...) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        n = global_count(xf.numel() // xf.shape[1], x.device).to(torch.float32)
        mean = all_reduce_sum(xf.sum(dims)) / n
        var = all_reduce_sum(((xf - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every BatchNorm of ``module`` (in place) by a :class:`GlobalBatchNorm` holding
    the same parameter and buffer objects; returns ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, GlobalBatchNorm
        ):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)  # fmt: skip
            # the same Parameter and buffer objects: an optimizer built before keeps them
            for pname, p in child.named_parameters(recurse=False):
                setattr(new, pname, p)
            for bname, b in child.named_buffers(recurse=False):
                setattr(new, bname, b)
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module

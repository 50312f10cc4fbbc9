"""Map-style datasets on a DataLoader, sharded per rank, resumable mid-epoch.

A task describes an epoch as its list of *global* batches, each a list of sample keys
(``global_batches(epoch) -> [[key, ...], ...]``); a key is whatever its map-style Dataset's
``__getitem__`` takes (e.g. ``(epoch, index)``, so a sample's randomness is a function of
its key only, never of the worker, the rank or what came before).  :class:`ShardedBatches`
gives rank r the r-th contiguous chunk of every global batch (chunks differ by at most one
sample; every key of the epoch is read exactly once by exactly one rank), starting at batch
``start`` (a resumed run continues with exactly the batches of the uninterrupted one; the
loop saves how many batches of the epoch it consumed).

Workers are seeded from ``(seed, epoch, rank, worker)`` (Python, NumPy and torch global
generators, for third-party code; afford's own draws come from the keys).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def shard(keys: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The ``rank``-th of ``world`` contiguous chunks of ``keys`` (sizes differ by <= 1)."""
    n = len(keys)
    lo = (n * rank) // world
    hi = (n * (rank + 1)) // world
    return list(keys[lo:hi])


class ShardedBatches(Sampler):
    """Batch sampler: this rank's chunk of global batches ``start``, ``start + 1``, ..."""

    def __init__(self, batches: list[list[Any]], rank: int = 0, world: int = 1, start: int = 0):
        self.batches, self.rank, self.world, self.start = batches, rank, world, start

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start)

    def __iter__(self) -> Iterator[list[Any]]:
        for b in self.batches[self.start :]:
            yield shard(b, self.rank, self.world)


def worker_seed(seed: int, epoch: int, rank: int, worker: int) -> int:
    """A 63-bit seed determined by ``(seed, epoch, rank, worker)``."""
    state = np.random.SeedSequence([seed, epoch, rank, worker, 2718]).generate_state(1, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


class _SeedWorker:
    def __init__(self, seed: int, epoch: int, rank: int) -> None:
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def __call__(self, worker: int) -> None:
        s = worker_seed(self.seed, self.epoch, self.rank, worker)
        random.seed(s)
        np.random.seed(s % 2**32)  # noqa: NPY002 -- third-party code uses the global RNG
        torch.manual_seed(s)


def epoch_loader(
    dataset: Dataset,
    batches: list[list[Any]],
    *,
    collate: Callable[[list], Any],
    seed: int,
    epoch: int,
    start: int = 0,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The DataLoader of one epoch of this rank (batches ``start`` onwards)."""
    kw: dict[str, Any] = {}
    if workers > 0:
        kw = {"worker_init_fn": _SeedWorker(seed, epoch, rank), "prefetch_factor": 4}
    # its own generator: the loader never draws from the global torch RNG (a resumed run's
    # global stream stays the uninterrupted one's)
    gen = torch.Generator().manual_seed(worker_seed(seed, epoch, rank, -1 % 2**16))
    return DataLoader(
        dataset,
        batch_sampler=ShardedBatches(batches, rank, world, start),
        generator=gen,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin_memory,
        **kw,
    )


def permuted_batches(
    n: int, batch_size: int, seed: int, epoch: int, max_batches: int | None = None
) -> list[list[tuple[int, int]]]:
    """Global batches ``[[(epoch, index), ...], ...]`` of a seeded permutation of ``range(n)``
    (the last one may be smaller); at most ``max_batches``."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    out = [[(epoch, int(i)) for i in order[s : s + batch_size]] for s in range(0, n, batch_size)]
    return out if max_batches is None else out[:max_batches]

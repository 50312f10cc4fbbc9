"""Shared timing helper for the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

import time


def best_time(fn, repeats: int) -> float:
    """Best wall time in seconds of ``repeats`` calls of ``fn()`` (least disturbed by load)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

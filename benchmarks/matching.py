"""Correspondence discovery: blockwise ``afford.correspondence.matching.discover`` against a
naive implementation that builds the full (H*W) x (H*W) similarity matrix.

Each case runs in a fresh subprocess (one thread); peak extra memory is the growth of the
process's resident-set high-water mark (``ru_maxrss``) during the call, measured after the
inputs exist and the BLAS is warmed up. Features: random unit vectors, D = 256 (the model's
output size). The CPU is shared with other jobs, so times are indicative.

Run: ``cd /work/main && .venv/bin/python benchmarks/matching.py``; prints a markdown table and
writes benchmarks/results/matching.json.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from afford.correspondence.matching import discover
from afford.correspondence.model import FunctionalCorrespondenceModel
from afford.data.io import write_json

D = 256
RESULTS = Path(__file__).resolve().parent / "results" / "matching.json"
CASES = [
    ("naive", 112, "full"),
    ("blockwise", 112, "full"),
    ("blockwise", 224, "object"),
    ("blockwise", 224, "full"),
    ("dense", 224, "-"),
]


def naive_discover(fs, ft, sm, tm):
    """Reference: full similarity matrix, masked arg-maxes, cycle score, stable sort.

    Also the full-matrix reference of tests/correspondence/test_matching.py.
    """
    d, _, ws = fs.shape
    wt = ft.shape[2]
    a = F.normalize(fs.reshape(d, -1), dim=0).t()
    b = F.normalize(ft.reshape(d, -1), dim=0).t()
    S = a @ b.t()  # (Hs*Ws, Ht*Wt)
    s, j = S.masked_fill(~tm.reshape(1, -1), -math.inf).max(dim=1)
    back = S.t().masked_fill(~sm.reshape(1, -1), -math.inf).max(dim=1).indices
    qi = sm.reshape(-1).nonzero()[:, 0]
    s, j = s[qi], j[qi]
    pb = back[j]
    pq = torch.stack((qi // ws, qi % ws), 1)
    dist = (pq - torch.stack((pb // ws, pb % ws), 1)).to(s.dtype).norm(dim=1)

    def mm(x, deg):
        return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else torch.full_like(x, deg)

    score = (1.0 - mm(dist, 0.0)) * mm(s, 1.0)
    order = torch.sort(score, descending=True, stable=True).indices
    return pq[order], torch.stack((j // wt, j % wt), 1)[order], score[order]


def _inputs(size: int, masks: str):
    g = torch.Generator().manual_seed(size)
    fs = torch.randn(D, size, size, generator=g)
    ft = torch.randn(D, size, size, generator=g)
    if masks == "full":
        sm = torch.ones(size, size, dtype=torch.bool)
        tm = sm.clone()
    else:  # object-like: discs of radius 0.36 * size (about 40% of the image)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        r = 0.36 * size
        sm = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r**2
        tm = (yy - size / 2 + 5) ** 2 + (xx - size / 2 - 8) ** 2 < r**2
    return fs, ft, sm, tm


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_case(impl: str, size: int, masks: str) -> dict:
    torch.set_num_threads(1)
    fs, ft, sm, tm = _inputs(size, masks)
    fn = (
        (lambda: naive_discover(fs, ft, sm, tm))
        if impl == "naive"
        else (lambda: discover(fs, ft, sm, tm))
    )
    w = _inputs(8, "full")  # warm up BLAS and the code path on a tiny problem
    naive_discover(*w), discover(*w)
    base = _maxrss_mb()
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    peak = _maxrss_mb() - base
    return {
        "impl": impl,
        "size": f"{size}x{size}",
        "masks": masks,
        "query_pixels": int(sm.sum()),
        "target_pixels": int(tm.sum()),
        "seconds": round(sec, 3),
        "peak_extra_mb": round(peak, 1),
        "full_matrix_mb": round(int(sm.numel()) * int(tm.numel()) * 4 / 2**20, 1),
        "matches": int(out[0].shape[0]),
    }


def run_dense(size: int = 224) -> dict:
    """``FunctionalCorrespondenceModel.dense`` at the paper's sizes (768 -> 512, MLP 1024, 256)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = FunctionalCorrespondenceModel().eval()
    layers = [torch.randn(1, 768, 16, 16) for _ in range(3)]
    text = torch.randn(1, 512)
    model.dense(layers, text, image_size=16)  # warm-up
    base = _maxrss_mb()
    t0 = time.perf_counter()
    out = model.dense(layers, text, image_size=size)
    sec = time.perf_counter() - t0
    return {
        "impl": "model.dense (chunk 4096)",
        "size": f"{size}x{size}",
        "masks": "-",
        "query_pixels": size * size,
        "target_pixels": 0,
        "seconds": round(sec, 3),
        "peak_extra_mb": round(_maxrss_mb() - base, 1),
        "full_matrix_mb": 0.0,
        "output_mb": round(out["feat"].numel() * 4 / 2**20, 1),
    }


def check_equal(size: int = 64) -> dict:
    """Blockwise (small blocks) against naive on one problem: identical pairs, score error."""
    fs, ft, sm, tm = _inputs(size, "object")
    src, tgt, score = naive_discover(fs, ft, sm, tm)
    res = discover(fs, ft, sm, tm, block=100)
    return {
        "size": f"{size}x{size}",
        "same_pairs": bool(torch.equal(res.src, src) and torch.equal(res.tgt, tgt)),
        "max_score_diff": float((res.score - score).abs().max()),
    }


def main() -> None:
    rows = []
    for impl, size, masks in CASES:
        print(f"running {impl} {size}x{size} {masks} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--case", impl, str(size), masks],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    check = check_equal()
    lines = [
        "| implementation | size | masks | query x target px | time (s) | peak extra MB "
        "| full matrix MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["impl"].startswith("model.dense"):
            lines.append(
                f"| {r['impl']} | {r['size']} | - | {r['query_pixels']} px | {r['seconds']:.2f} "
                f"| {r['peak_extra_mb']:.0f} (output {r['output_mb']:.0f}) | - |"
            )
            continue
        lines.append(
            f"| {r['impl']} | {r['size']} | {r['masks']} | {r['query_pixels']} x "
            f"{r['target_pixels']} | {r['seconds']:.2f} | {r['peak_extra_mb']:.0f} "
            f"| {r['full_matrix_mb']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"\nblockwise == naive at {check['size']}: pairs identical = {check['same_pairs']}, "
          f"max score difference = {check['max_score_diff']:.2e}")  # fmt: skip
    write_json(
        RESULTS,
        {
            "benchmark": "correspondence discovery, blockwise vs naive full matrix",
            "feature_dim": D,
            "threads": 1,
            "note": "CPU shared with other jobs; peak = growth of ru_maxrss during the call",
            "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "rows": rows,
            "equality_check": check,
            "table": table,
        },
    )
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        impl, size = sys.argv[2], int(sys.argv[3])
        row = run_dense(size) if impl == "dense" else run_case(impl, size, sys.argv[4])
        print(json.dumps(row))
    else:
        main()

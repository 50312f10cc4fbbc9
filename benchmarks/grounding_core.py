"""Speed of the grounding method's training step and of the batched K-means.

Real sizes (DINO ViT-S/16 keys: D = 384, 14x14 grid; B = 8, E = 3, C = 36 AGD20K-Seen
classes): one ``GroundingModel.losses()`` forward + backward per configuration, and the
exocentric part discovery's K-means batched over the mini-batch vs one call per sample.

Run: ``cd /work/main && .venv/bin/python benchmarks/grounding_core.py``; prints a markdown
table and writes benchmarks/results/grounding_core.json.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from _timing import best_time
from afford.data.io import write_json
from afford.grounding.config import GroundingConfig
from afford.grounding.model import GroundingModel
from afford.grounding.parts import kmeans

B, E, D, H, C = 8, 3, 384, 14, 36
REPEATS = 5


def _time(fn, repeats: int = REPEATS) -> float:
    return best_time(fn, repeats)


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "ego_keys": torch.randn(B, D, H, H, generator=g),
        "ego_attn": torch.rand(B, 6, H, H, generator=g),
        "exo_keys": torch.randn(B, E, D, H, H, generator=g),
        "exo_attn": torch.rand(B, E, 6, H, H, generator=g),
        "ego_action": 0.3 * torch.rand(B, H, H, generator=g),
        "exo_action": 0.3 * torch.rand(B, E, H, H, generator=g),
        "exo_entity": 0.3 * torch.rand(B, E, H, H, generator=g),
        "label": torch.randint(0, C, (B,), generator=g),
    }


def main() -> None:
    torch.set_num_threads(1)
    names = [f"class{i}" for i in range(C)]
    batch = make_batch()
    rows = []
    configs = {
        "CE only (row a)": GroundingConfig.table2_row("a", class_names=names),
        "full, paper (row i)": GroundingConfig.table2_row("i", class_names=names),
        "full, official (row i)": GroundingConfig.table2_row(
            "i", class_names=names, mode="official"
        ),
        "LOCATE": GroundingConfig(method="locate", class_names=names),
    }
    for label, cfg in configs.items():
        torch.manual_seed(0)
        model = GroundingModel(cfg).train()

        def step(model=model):
            model.zero_grad(set_to_none=True)
            model.losses(batch, 1)["total"].backward()

        step()
        rows.append({"case": f"losses()+backward: {label}", "ms": 1e3 * _time(step)})

    # K-means on the part-discovery workload: up to E*196 = 588 descriptors per sample
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, E * H * H, D, generator=g)
    valid = torch.rand(B, E * H * H, generator=g) > 0.6

    def batched():
        kmeans(x, valid, k=3, iters=300, generator=torch.Generator().manual_seed(0))

    def per_sample():
        for i in range(B):
            xi = x[i : i + 1, valid[i]]
            kmeans(
                xi,
                torch.ones(xi.shape[:2], dtype=torch.bool),
                k=3,
                iters=300,
                generator=torch.Generator().manual_seed(0),
            )

    rows.append({"case": f"K-means batched (B={B})", "ms": 1e3 * _time(batched)})
    rows.append({"case": f"K-means per-sample loop (B={B})", "ms": 1e3 * _time(per_sample)})

    print(f"| case (B={B}, E={E}, D={D}, {H}x{H}, C={C}, 1 thread) | ms |")
    print("|---|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['ms']:.1f} |")
    out = Path(__file__).parent / "results" / "grounding_core.json"
    write_json(
        out,
        {
            "rows": rows,
            "sizes": {"B": B, "E": E, "D": D, "grid": H, "C": C},
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": 1,
        },
    )


if __name__ == "__main__":
    main()

"""What ``afford demo`` trains: the profiles, the runs, their configs, the papers' numbers.

Pure data and plain dicts (no task import, so ``afford --help`` stays instant). The raw
configs built here hold only what differs from the training modules' own defaults; the task
modules resolve them (:func:`afford.demo.stages.resolve_grounding_config`,
:func:`afford.demo.stages.resolve_corr_config`) and the resolved configs are written to
``DIR/configs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
            "model": {"proj_dim": 64, "hidden": 128, "out_dim": 64},
            "sampling": {"pairs": 4, "points": 64, "spatial_points": 64, "feature_augs": 2},
            "train": {"epochs": 2, "iters_per_epoch": 8, "lr": 1e-3, "val_batches": 1},
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
            "model": {"proj_dim": 128, "hidden": 256, "out_dim": 128},
            # feature_augs: frozen DINOv2 outputs precomputed (featbank): ~4x per step
            "sampling": {"pairs": 6, "points": 128, "spatial_points": 128, "feature_augs": 2},
            "train": {"epochs": 3, "iters_per_epoch": 200, "lr": 1e-3, "val_batches": 4},
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


# The headline: each trained model against the row that knows nothing, on the task's metrics
# (the first one is the task's main metric, the one that decides "under chance").
# (key in the results, label, lower is better)
GROUNDING_HEADLINE = (("kld", "KLD", True), ("sim", "SIM", False))
CORR_HEADLINE = (("pck@23", "PCK@23", False), ("ap@23", "AP@23", False))


# --------------------------------------------------------------------------------- configs
def grounding_raw_config(
    profile: dict[str, Any], run: str, *, seed: int, device: str, aff_root: Path, out: Path
) -> dict[str, Any]:
    """The grounding experiment of ``run`` as the raw nested dict the grounding loader reads
    (before its defaults are filled in)."""
    p = profile["grounding"]
    return {
        "data": {
            "dataset": "folders",
            "root": str(aff_root / profile["affordance"]["split"]),
            "cache": str(aff_root / "cache"),
            "affinity": "simulated",
            **p.get("data", {}),
        },
        # DINO: the tiny architecture pre-trained on synthetic renders without part,
        # affordance or function labels (shipped; docs/tiny-backbones.md): its keys carry
        # much more part signal than random init.
        "backbone": {"dino": {"variant": "tiny-synth"}, "clip": {"variant": "tiny"}},
        "model": dict(GROUNDING_RUNS[run]),
        "train": {**p["train"], "seed": seed, "device": device, "out": str(out), "resume": False},
    }


def corr_raw_config(
    profile: dict[str, Any], run: str, *, seed: int, device: str, corr_root: Path, out: Path
) -> dict[str, Any]:
    """The correspondence experiment of ``run`` as the raw nested dict its loader reads."""
    p, spec = profile["corr_train"], CORR_RUNS[run]
    return {
        "data": {"root": str(corr_root)},
        # DINOv2 pre-trained like the DINO (docs/tiny-backbones.md)
        "backbone": {"dinov2": {"variant": "tiny-synth"}, "clip": {"variant": "tiny"}},
        "model": dict(p["model"]),
        "loss": {"functional": spec["functional"], "spatial": spec["spatial"]},
        "sampling": dict(p["sampling"]),
        "train": {
            **p["train"],
            "name": spec["name"],
            "out": str(out),
            "seed": seed,
            "device": device,
            "resume": False,
        },
    }

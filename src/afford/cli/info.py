"""``afford info``: versions, device, the backbone registry and where each backbone's real
weights were found."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform

from afford import __version__

PACKAGES = [
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "scipy",
    "trimesh",
    "embreex",
    "opencv-python-headless",
    "safetensors",
]


def collect() -> dict:
    """Return a JSON-able dict: package versions, device, the backbone registry (family ->
    variant -> architecture facts) and backbone weight status."""
    import torch

    from afford.backbones import weights_status
    from afford.backbones.registry import FAMILIES

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "afford": __version__,
        "python": platform.python_version(),
        "packages": versions,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "registry": {
            name: {
                v.name: {
                    "arch": v.arch,
                    "feat_dim": v.feat_dim,
                    "depth": v.depth,
                    "heads": v.num_heads,
                    "patch": v.patch_size,
                    "grid": v.grid,
                    "weights": v.weights,
                }
                for v in spec.variants.values()
            }
            for name, spec in FAMILIES.items()
        },
        "backbones": weights_status(),
    }


def _run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"afford {info['afford']}  (python {info['python']})")
    for name, version in info["packages"].items():
        print(f"  {name:<24} {version or 'not installed'}")
    print(f"device: {info['device']}  (torch threads: {info['threads']})")
    print("backbone variants (family/variant: arch, dim x depth, patch -> grid at 224, weights):")
    for fam, variants in info["registry"].items():
        for name, v in variants.items():
            print(
                f"  {fam + '/' + name:<18} {v['arch']:<24} {v['feat_dim']} x {v['depth']}, "
                f"patch {v['patch']} -> {v['grid']}x{v['grid']}, {v['weights']}"
            )
    print("backbone weights:")
    for name, status in info["backbones"].items():
        where = status["path"] if status["found"] else f"not found -- {status['hint']}"
        print(f"  {name:<8} {where}")
    return 0


def register(groups: dict) -> None:
    p = groups["top"].add_parser("info", help="versions, device and backbone weight status")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=_run)

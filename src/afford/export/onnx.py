"""ONNX export of the trained models with their backbones (``afford export``).

:func:`export` builds the task's :mod:`~afford.export.graphs` module from a checkpoint, traces
it with PyTorch's TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``:
it needs nothing beyond ``onnx``; the newer ``dynamo=True`` exporter needs ``onnxscript`` as
well), stores what a runtime needs to know in the file's metadata (:data:`META_KEYS`), then
runs the file once with onnxruntime on a probe image and compares it with PyTorch
(:func:`compare`).

Files: one graph per task holding every action / function; the query is an int64 input
(its index in the ``afford.queries`` metadata, a JSON list).  Inputs and outputs:

=============== ======================================= =====================================
task            inputs                                  outputs
=============== ======================================= =====================================
grounding       ``image`` (B,3,224,224) float32 [0,1],  ``heatmap`` (B,h,w) in [0,1]
                ``action`` (B,) int64
correspondence  ``image`` (B,3,224,224) float32 [0,1],  ``features`` (B,O,224,224) unit norm
                ``function`` (B,) int64                 [``mask_logit`` (B,224,224)]
=============== ======================================= =====================================

B (the batch) is dynamic.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afford import __version__
from afford.data.io import atomic_path
from afford.errors import DataError, UsageError
from afford.export.graphs import INPUT_SIZE, CorrespondenceGraph, GroundingGraph

TASKS = ("grounding", "correspondence")
FORMATS = ("onnx",)
OPSET = 17
#: metadata_props written into every exported file.
META_KEYS = ("afford.task", "afford.queries", "afford.inputs", "afford.outputs", "afford.version")


@dataclass(frozen=True)
class TaskSpec:
    """How one task's graph is built and called."""

    query: str  # name of the int64 query input
    outputs: tuple[str, ...]
    load: Callable[[str | os.PathLike], torch.nn.Module]


def load_grounding_graph(checkpoint: str | os.PathLike) -> GroundingGraph:
    """The grounding graph of a checkpoint (folder, or run folder with best/ or last/)."""
    from afford.grounding.build import load_trained

    model, _, dino, clip = load_trained(checkpoint, "cpu", with_clip=True)
    return GroundingGraph(model, dino, clip).eval()


def load_correspondence_graph(checkpoint: str | os.PathLike) -> CorrespondenceGraph:
    """The correspondence graph of a checkpoint (folder, or run folder with best/)."""
    from afford.correspondence.train import load_trained

    model, dino, clip, functions, _ = load_trained(checkpoint, "cpu")
    return CorrespondenceGraph(model, dino, clip, functions).eval()


SPECS = {
    "grounding": TaskSpec("action", ("heatmap",), load_grounding_graph),
    "correspondence": TaskSpec("function", ("features", "mask_logit"), load_correspondence_graph),
}


def queries(graph: torch.nn.Module) -> list[str]:
    """The action / function names of a graph, in the order of its query index."""
    return list(graph.actions if isinstance(graph, GroundingGraph) else graph.functions)


def output_names(task: str, graph: torch.nn.Module) -> list[str]:
    names = list(SPECS[task].outputs)
    if task == "correspondence" and not graph.has_mask:
        names = names[:1]
    return names


def probe_image(seed: int = 0) -> np.ndarray:
    """A deterministic (224,224,3) uint8 test picture: smooth colour ramps plus noise."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE] / (INPUT_SIZE - 1)
    base = np.stack([r, c, 0.5 + 0.5 * np.sin(6 * (r + c))], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def to_input(image: np.ndarray) -> np.ndarray:
    """uint8 (224,224,3) -> float32 (1,3,224,224) in [0,1] (the graphs' image input)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise UsageError(
            f"image: expected uint8 ({INPUT_SIZE},{INPUT_SIZE},3), got {img.dtype} {img.shape} "
            "(resize or crop it to the model input first)"
        )
    return (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def check_args(task: str, fmt: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate ``afford export`` arguments; returns the output path."""
    if task not in TASKS:
        raise UsageError(f"export: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; choose one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--out {out}: the file name must end in .onnx")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name ending in .onnx")
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out}: the file exists; pass --overwrite to replace it")
    # the folder must be creatable and writable: found before the model is traced
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write into {out.parent} ({exc.strerror})") from None
    return out


def check_checkpoint(checkpoint: str | os.PathLike) -> None:
    """DataError naming ``--checkpoint`` when the path does not exist."""
    if not Path(checkpoint).expanduser().exists():
        raise DataError(f"--checkpoint {checkpoint}: no such file or folder")


def trace(graph: torch.nn.Module, task: str, path: Path) -> None:
    """Write ``graph`` as ONNX to ``path`` (TorchScript exporter, dynamic batch)."""
    spec = SPECS[task]
    outs = output_names(task, graph)
    image = torch.from_numpy(to_input(probe_image()))
    query = torch.zeros(1, dtype=torch.int64)
    axes = {"image": {0: "batch"}, spec.query: {0: "batch"}, **{o: {0: "batch"} for o in outs}}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's fused inference kernel (CLIP's blocks) has no ONNX form
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the shape checks of the task code are Python branches: traced as constants,
            # right for the fixed 224 x 224 input; the exporter's warnings about them are noise
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (image, query),
                str(path),
                dynamo=False,
                input_names=["image", spec.query],
                output_names=outs,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def write_metadata(path: Path, meta: dict[str, str]) -> None:
    """Store ``meta`` as the file's ONNX ``metadata_props``."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def session(path: str | os.PathLike):
    """An onnxruntime CPU InferenceSession of ``path``."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(sess, task: str, image: np.ndarray, index: int) -> list[np.ndarray]:
    """Outputs of an exported file for one uint8 (224,224,3) image and query index."""
    feed = {"image": to_input(image), SPECS[task].query: np.array([index], dtype=np.int64)}
    return sess.run(None, feed)


def run_torch(graph: torch.nn.Module, image: np.ndarray, index: int) -> list[np.ndarray]:
    """The same outputs from the PyTorch graph."""
    with torch.no_grad():
        out = graph(torch.from_numpy(to_input(image)), torch.tensor([index]))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def compare(graph: torch.nn.Module, task: str, path: Path, image: np.ndarray) -> float:
    """Largest |onnxruntime - PyTorch| over every output and every query, for ``image``."""
    sess = session(path)
    worst = 0.0
    for i in range(len(queries(graph))):
        for a, b in zip(run_onnx(sess, task, image, i), run_torch(graph, image, i)):
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def export(
    task: str,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str = "onnx",
    overwrite: bool = False,
    check: bool = True,
) -> dict[str, Any]:
    """Export ``task``'s checkpoint to ``out``; returns a summary (path, queries, inputs,
    outputs, size in bytes, and ``max_abs_diff`` of the check when ``check``)."""
    out = check_args(task, fmt, out, overwrite)
    check_checkpoint(checkpoint)
    graph = SPECS[task].load(checkpoint)
    outs = output_names(task, graph)
    meta = {
        "afford.task": task,
        "afford.queries": json.dumps(queries(graph)),
        "afford.inputs": f"image float32 (B,3,{INPUT_SIZE},{INPUT_SIZE}) RGB in [0,1]; "
        f"{SPECS[task].query} int64 (B,) index into afford.queries",
        "afford.outputs": ", ".join(outs),
        "afford.version": __version__,
    }
    with atomic_path(out) as tmp:
        trace(graph, task, tmp)
        write_metadata(tmp, meta)
        diff = compare(graph, task, tmp, probe_image()) if check else None
    return {
        "task": task,
        "path": str(out),
        "queries": queries(graph),
        "outputs": outs,
        "bytes": out.stat().st_size,
        "max_abs_diff": diff,
    }

"""What the web demo's buttons do, on the Python API only (no gradio here, so the handlers are
tested without a browser).  Each returns (overlay image, JSON dict) or, for transfer, (list of
overlays, JSON dict); problems are :class:`~afford.errors.AffordError` s with one-line
messages, which the app shows in the page."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from afford.api import Corresponder, Grounder, transfer
from afford.errors import UsageError

MODES = ("discover", "points")


def parse_points(text: str | None, arg: str = "points") -> np.ndarray | None:
    """``"row,col; row,col"`` (also one point a line) -> (N,2) float; None for blank text."""
    if text is None or not text.strip():
        return None
    pts = []
    for item in re.split(r"[;\n]+", text.strip()):
        if not item.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", item.strip()) if p]
        try:
            if len(parts) != 2:
                raise ValueError
            pts.append([float(parts[0]), float(parts[1])])
        except ValueError:
            raise UsageError(
                f"{arg}: {item.strip()!r} is not 'row,col' (write points as 'row,col; row,col')"
            ) from None
    return np.asarray(pts, dtype=np.float64)


def _need(image: Any, name: str) -> Any:
    if image is None:
        raise UsageError(f"{name}: upload an image first")
    return image


def _choice(value: str | None, known: list[str], what: str) -> str:
    if not value:
        raise UsageError(f"{what}: choose one of {', '.join(known)}")
    return value


def ground(grounder: Grounder, image: Any, action: str | None) -> tuple[np.ndarray, dict]:
    """Grounding tab: the heatmap overlay and the result's JSON (peak, statistics)."""
    res = grounder.predict(_need(image, "image"), _choice(action, grounder.actions, "action"))
    return res.overlay(), res.to_json()


def correspond(
    corresponder: Corresponder,
    image_a: Any,
    image_b: Any,
    function: str | None,
    mode: str = "discover",
    points: str | None = None,
    top_k: int = 20,
) -> tuple[np.ndarray, dict]:
    """Correspondence tab: discovery of the ``top_k`` best matches, or label transfer of the
    typed ``points`` (row, col in image A); the match drawing and the JSON."""
    a, b = _need(image_a, "image A"), _need(image_b, "image B")
    fn = _choice(function, corresponder.functions, "function")
    if mode not in MODES:
        raise UsageError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "points":
        pts = parse_points(points)
        if pts is None:
            raise UsageError("points: type at least one 'row,col' point of image A")
        m = corresponder.match(a, b, fn, points=pts)
    else:
        m = corresponder.discover(a, b, fn, top_k=int(top_k))
    return m.overlay(), m.to_json()


def transfer_tab(
    corresponder: Corresponder,
    grounder: Grounder | None,
    source: Any,
    targets: list[Any] | None,
    function: str | None,
    points: str | None = None,
    action: str | None = None,
) -> tuple[list[np.ndarray], dict]:
    """Transfer tab: carry typed ``points`` of the source, or else the grounding heatmap of
    ``action`` on the source, to every target image."""
    src = _need(source, "source image")
    if not targets:
        raise UsageError("target images: upload at least one")
    fn = _choice(function, corresponder.functions, "function")
    pts = parse_points(points)
    if pts is not None:
        results = transfer(src, list(targets), fn, corresponder=corresponder, points=pts)
        source_info: dict[str, Any] = {"points": pts.tolist()}
    else:
        if grounder is None:
            raise UsageError("points: type 'row,col' points (no grounding model is loaded)")
        heat = grounder.predict(src, _choice(action, grounder.actions, "action"))
        results = transfer(src, list(targets), fn, corresponder=corresponder, heatmap=heat)
        source_info = {"grounding": heat.to_json()}
    return [r.overlay() for r in results], {
        "source": source_info,
        "targets": [r.to_json() for r in results],
    }

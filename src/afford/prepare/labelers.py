"""Part labellers behind one interface (issue 14 part 4; docs/labelers.md).

A *labeller* proposes 2-D boxes of a functional part in a view image; the boxes of every view
are then clustered and aggregated by 3-D voting into pseudo-label masks
(:func:`afford.geometry.pseudolabel.pseudo_label_masks`, paper Sec. 4.1, REFERENCE_NOTES C).
One factory opens any of them from a ``--labeler`` spec::

    owlv2:MODEL            OWLv2 (transformers Owlv2ForObjectDetection)
    grounding-dino:MODEL   Grounding DINO (transformers GroundingDinoForObjectDetection)
    boxes:FILE             boxes made elsewhere (CogVLM, GPT, a person), afford-boxes JSON
    simulated              the synthetic world's noisy labeller, from rendered part ids

``MODEL`` is a local folder (``save_pretrained`` layout) or a Hugging Face id found in the
local HF cache (downloaded only when ``HF_HUB_OFFLINE``/``AFFORD_OFFLINE`` are unset).

Usage (what ``afford prepare correspondence`` does per asset)::

    labelers = open_labeler("owlv2:google/owlv2-base-patch16-ensemble", taxonomy, samples=4)
    label = labelers.for_asset("kettle_003", "kettle")
    boxes = label(image, PartQuery("kettle", "pour-with", "spout"), view)   # (4, 4)

``PartQuery.part`` is a part name of the taxonomy (aliases allowed), or several joined by
``" / "``; detectors prompt with the part name, the category and the taxonomy's part
description. Every labeller returns ``samples`` rows ``[x0, y0, x1, y1]`` in the view image's
pixels (afford's convention: pixel centres on integers), a row of nan = no box.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from afford.data.io import read_format_json
from afford.errors import DataError, UsageError
from afford.geometry.pseudolabel import BoxLabeler, PartQuery, SimulatedBoxLabeler

if TYPE_CHECKING:  # pragma: no cover
    from afford.taxonomy import Taxonomy

__all__ = [
    "KINDS",
    "BOXES_FORMAT",
    "BOXES_FORMAT_VERSION",
    "AssetLabelers",
    "open_labeler",
    "parse_spec",
    "query_parts",
    "part_prompts",
    "DetectorLabelers",
    "BoxesFileLabelers",
    "SimulatedLabelers",
]

log = logging.getLogger(__name__)

KINDS = ("owlv2", "grounding-dino", "boxes", "simulated")
BOXES_FORMAT = "afford-boxes"
BOXES_FORMAT_VERSION = 1
PART_SEPARATOR = " / "


@runtime_checkable
class AssetLabelers(Protocol):
    """An opened labeller: hands out one ``BoxLabeler`` per asset.

    Attributes:
        name: provenance string stored in the dataset manifest (e.g. ``"owlv2:/path/model"``).
        samples: box samples per (view, query), the S of the (S, 4) answers.
    """

    name: str
    samples: int

    def for_asset(
        self,
        asset_id: str,
        category: str,
        part_id: np.ndarray | None = None,
        parts: list[str] | None = None,
    ) -> BoxLabeler:
        """The labeller of one asset.

        Args:
            asset_id: the asset's id (the key of precomputed boxes; seeds the simulated one).
            category: its category in the taxonomy.
            part_id: (V, H, W) int rendered part index per pixel (-1 = background); only the
                simulated labeller needs it.
            parts: part names in ``part_id`` index order (simulated labeller).
        """
        ...


# ---------------------------------------------------------------------------------------------
# specs and prompts


def parse_spec(spec: str) -> tuple[str, str]:
    """``"kind:ARG"`` -> ``(kind, ARG)``; ``"simulated"`` -> ``("simulated", "")``."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"--labeler: empty spec; use one of {_SPEC_HELP}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower().replace("_", "-")
    if kind in ("groundingdino", "gdino"):
        kind = "grounding-dino"
    if kind not in KINDS:
        raise UsageError(f"--labeler {spec!r}: unknown labeller {kind!r}; use one of {_SPEC_HELP}")
    arg = arg.strip()
    if kind == "simulated":
        if arg:
            raise UsageError(f"--labeler {spec!r}: 'simulated' takes no argument")
    elif not arg:
        what = "FILE" if kind == "boxes" else "MODEL"
        raise UsageError(f"--labeler {spec!r}: {kind} needs {kind}:{what}; use one of {_SPEC_HELP}")
    return kind, arg


_SPEC_HELP = "'owlv2:MODEL', 'grounding-dino:MODEL', 'boxes:FILE', 'simulated'"


def query_parts(query: PartQuery) -> list[str]:
    """The part names of a query (``PartQuery.part`` split at ``" / "``)."""
    names = [p.strip() for p in str(query.part).split(PART_SEPARATOR.strip())]
    return [p for p in names if p] or [query.function]


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def part_prompts(taxonomy: Taxonomy | None, category: str, part: str) -> list[str]:
    """Detector prompt variants for one part (the several samples of a view come from them).

    Variants: ``"the {part} of a {category}"``, ``"{category} {part}"``, ``"{part}"`` and the
    part name with the taxonomy's one-sentence description (``"{part}: {description}"``,
    REFERENCE_NOTES D: name + description is the detector prompt); without a description the
    last is ``"a {part}"``.
    """
    p, c = _words(part), _words(category)
    desc = ""
    if taxonomy is not None:
        table = taxonomy.descriptions.get(category, {})
        desc = table.get(part) or table.get(taxonomy.canonical_part(category, part), "")
    last = f"{p}: {desc.strip().rstrip('.')}" if desc.strip() else f"a {p}"
    return [f"the {p} of a {c}", f"{c} {p}", p, last]


def _rank_samples(ranked: list[list[np.ndarray]], samples: int) -> np.ndarray:
    """(samples, 4) boxes from per-variant ranked box lists: sample s takes variant
    ``s % P`` at rank ``s // P`` (nan when that variant has fewer boxes)."""
    out = np.full((samples, 4), np.nan)
    n_var = len(ranked)
    for s in range(samples):
        boxes = ranked[s % n_var]
        r = s // n_var
        if r < len(boxes):
            out[s] = boxes[r]
    return out


# ---------------------------------------------------------------------------------------------
# detectors (transformers)


def _offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "AFFORD_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _resolve_model(kind: str, model: str) -> tuple[str, bool]:
    """(path or id, local_files_only)."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"--labeler {kind}:{model}: {path} holds no config.json (expected a "
                "save_pretrained folder of a transformers model)"
            )
        return str(path), True
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        raise UsageError(f"--labeler {kind}:{model}: model folder {path} not found")
    return model, _offline()


class DetectorLabelers:
    """OWLv2 or Grounding DINO through transformers (prompted per part, several samples).

    Per (view, query) and for each part name of the query, the prompt variants of
    :func:`part_prompts` are scored; each variant's boxes above ``threshold`` are ranked by
    score; sample ``s`` is variant ``s % P``'s box of rank ``s // P`` (nan if none), so the
    S samples agree when the prompts agree -- the same role as the paper's 4 VLM answers per
    view, clustered afterwards (REFERENCE_NOTES C). A query naming several parts pools their
    boxes per variant (score order).

    Args:
        kind: "owlv2" or "grounding-dino"; model: folder or HF id; taxonomy: the prompts'
            source of descriptions; device: torch device; samples: S;
        threshold: minimum box score (default 0.1 for OWLv2, 0.25 for Grounding DINO; a
            Grounding DINO box scores its best prompt word token).
    """

    def __init__(
        self,
        kind: str,
        model: str,
        taxonomy: Taxonomy | None,
        *,
        device: str = "cpu",
        samples: int = 4,
        threshold: float | None = None,
    ) -> None:
        import torch
        from transformers import AutoProcessor

        if kind == "owlv2":
            from transformers import Owlv2ForObjectDetection as Model
        elif kind == "grounding-dino":
            from transformers import GroundingDinoForObjectDetection as Model
        else:  # pragma: no cover - parse_spec filters
            raise UsageError(f"--labeler: {kind!r} is not a detector")
        self.kind = kind
        self.taxonomy = taxonomy
        self.samples = int(samples)
        self.threshold = float(threshold if threshold is not None else _THRESHOLDS[kind])
        self.device = torch.device(device)
        where, local = _resolve_model(kind, model)
        try:
            self.processor = AutoProcessor.from_pretrained(where, local_files_only=local)
            self.model = Model.from_pretrained(where, local_files_only=local)
        except (OSError, ValueError) as exc:
            hint = (
                " (offline: HF_HUB_OFFLINE/AFFORD_OFFLINE is set; download it once with "
                f"`huggingface-cli download {model}` or pass a local folder)"
                if local and where == model
                else ""
            )
            raise UsageError(
                f"--labeler {kind}:{model}: cannot load the model from "
                f"{'the HF cache' if where == model else where}{hint}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        self.model.eval().to(self.device)
        self.name = f"{kind}:{where}"
        self._prompts: dict[tuple[str, str], list[str]] = {}

    def for_asset(
        self,
        asset_id: str,
        category: str,
        part_id: np.ndarray | None = None,
        parts: list[str] | None = None,
    ) -> BoxLabeler:
        return _DetectorAsset(self, category)

    def prompts(self, category: str, part: str) -> list[str]:
        key = (category, part)
        if key not in self._prompts:
            self._prompts[key] = part_prompts(self.taxonomy, category, part)
        return self._prompts[key]

    def boxes(self, image: np.ndarray, query: PartQuery) -> np.ndarray:
        """(samples, 4) boxes of the query's part(s) in a uint8 (H, W, 3) image."""
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise UsageError(f"{self.name}: expected an (H, W, 3) image, got shape {img.shape}")
        img = img.astype(np.uint8, copy=False)
        names = query_parts(query)
        per_part = [self.prompts(query.category, n) for n in names]
        n_var = len(per_part[0])
        texts = [p for variants in per_part for p in variants]  # part-major
        scored = self._detect(img, texts)  # per text: (scores (k,), boxes (k, 4))
        ranked: list[list[np.ndarray]] = []
        for v in range(n_var):
            scores = np.concatenate([scored[i * n_var + v][0] for i in range(len(names))])
            boxes = np.concatenate([scored[i * n_var + v][1] for i in range(len(names))])
            order = np.argsort(-scores, kind="stable")
            ranked.append([boxes[k] for k in order])
        return _rank_samples(ranked, self.samples)

    def _detect(self, image: np.ndarray, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        h, w = image.shape[:2]
        with torch.inference_mode():
            if self.kind == "owlv2":
                return self._owlv2(image, texts, h, w)
            return self._gdino(image, texts, h, w)

    def _owlv2(self, image, texts, h, w):
        inputs = self.processor(
            text=[texts], images=image, return_tensors="pt", padding="max_length", truncation=True
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model(**inputs)
        # OWLv2 pads the image to a square at the bottom/right: boxes are relative to it
        side = max(h, w)
        probs = out.logits[0].float().sigmoid()  # (Q, T): every box scored for every text
        xyxy = _cxcywh_to_xyxy(out.pred_boxes[0].float()) * side
        return [_keep(probs[:, k], xyxy, self.threshold, h, w) for k in range(len(texts))]

    def _gdino(self, image, texts, h, w):
        """All prompt variants as the phrases of one Grounding DINO text (``"a . b . c ."``,
        its usual multi-class form; the text encoder masks attention per phrase), split into
        several passes only when the text exceeds the model's ``max_text_len`` tokens. A box
        scores each phrase by its best word token in that phrase's span."""
        tok = self.processor.tokenizer
        limit = int(getattr(self.model.config, "max_text_len", 256))
        phrases = [" ".join(t.lower().replace(".", ",").split()).strip(" ,") for t in texts]
        chunks: list[list[int]] = [[]]
        cost = 2  # [CLS] ... [SEP]
        for k, p in enumerate(phrases):
            c = len(tok(p, add_special_tokens=False)["input_ids"]) + 1  # + its '.'
            if chunks[-1] and cost + c > limit:
                chunks.append([])
                cost = 2
            chunks[-1].append(k)
            cost += c
        out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(texts)  # type: ignore[list-item]
        for chunk in chunks:
            passes = self._gdino_pass(image, [phrases[k] for k in chunk], h, w, limit)
            for k, res in zip(chunk, passes):
                out[k] = res
        return out

    def _gdino_pass(self, image, phrases, h, w, limit):
        import torch

        prompt = " . ".join(phrases) + " ."
        inputs = self.processor(
            images=image, text=prompt, return_tensors="pt", truncation=True, max_length=limit
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model(**inputs)
        prob = out.logits[0].float().sigmoid()  # (Q, L): query x text token
        ids = inputs["input_ids"][0]
        tok = self.processor.tokenizer
        special = torch.tensor(sorted(set(tok.all_special_ids)), device=ids.device)
        dot = tok.convert_tokens_to_ids(".")
        n = min(prob.shape[-1], len(ids))
        ids = ids[:n]
        word = ~torch.isin(ids, special) & (ids != dot)  # word tokens of some phrase
        phrase_of = torch.cumsum((ids == dot).long(), 0) - (ids == dot).long()  # span index
        xyxy = _cxcywh_to_xyxy(out.pred_boxes[0].float()) * prob.new_tensor([w, h, w, h])
        res = []
        for j in range(len(phrases)):
            span = (word & (phrase_of == j)).to(prob.dtype)
            if span.sum() == 0:  # truncated away: no box for this phrase
                res.append((np.zeros(0), np.zeros((0, 4))))
                continue
            score = (prob[:, :n] * span).max(dim=-1).values  # (Q,)
            res.append(_keep(score, xyxy, self.threshold, h, w))
        return res


_THRESHOLDS = {"owlv2": 0.1, "grounding-dino": 0.25}


def _cxcywh_to_xyxy(b):
    """(..., 4) ``[cx, cy, w, h]`` -> ``[x0, y0, x1, y1]`` (torch tensors)."""
    import torch

    cx, cy, bw, bh = b.unbind(-1)
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)


def _keep(scores, xyxy, threshold: float, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) scores and (Q, 4) detector boxes -> (scores (k,), boxes (k, 4)) of the boxes scoring
    ``>= threshold`` that keep a positive area inside the image, clipped to it and moved to
    afford's pixel convention (centres on integers: detector edge coordinates - 0.5)."""
    s = scores.detach().cpu().numpy().astype(np.float64)
    b = xyxy.detach().cpu().numpy().astype(np.float64) - 0.5
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], -0.5, w - 0.5)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], -0.5, h - 0.5)
    ok = (s >= threshold) & np.isfinite(b).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return s[ok], b[ok]


class _DetectorAsset:
    def __init__(self, parent: DetectorLabelers, category: str) -> None:
        self.parent = parent
        self.category = category

    def __call__(self, image: np.ndarray, query: PartQuery, view: int) -> np.ndarray:
        if image is None:
            raise UsageError(f"{self.parent.name}: a detector needs the view image")
        return self.parent.boxes(image, query)


# ---------------------------------------------------------------------------------------------
# precomputed boxes (afford-boxes JSON, docs/labelers.md)

_UNITS = ("pixels", "relative", "per_mille")
_ORIGINS = ("corner", "center")


class BoxesFileLabelers:
    """Boxes made elsewhere, read from one afford-boxes JSON file (docs/labelers.md).

    Keyed ``assets -> asset id -> view index -> function or part name -> [box | null, ...]``;
    a query looks up its function, then its part string, then each of its part names. Boxes
    are converted to afford's pixel convention (``units``/``pixel_origin`` of the file).
    Answers have exactly ``samples`` rows (nan padded; extra boxes dropped with a warning).
    """

    def __init__(self, path: str | os.PathLike, *, samples: int = 4) -> None:
        self.path = Path(path)
        data = read_format_json(
            self.path, BOXES_FORMAT, BOXES_FORMAT_VERSION, f"--labeler boxes:{path}"
        )
        where = str(self.path)
        unknown = sorted(
            set(data)
            - {"format", "format_version", "labeler", "units", "pixel_origin", "assets", "notes"}
        )
        if unknown:
            raise DataError(f"{where}: unknown top-level keys {unknown}")
        self.units = data.get("units", "pixels")
        if self.units not in _UNITS:
            raise DataError(f"{where}: units: expected one of {list(_UNITS)}, got {self.units!r}")
        self.origin = data.get("pixel_origin", "corner")
        if self.origin not in _ORIGINS:
            raise DataError(
                f"{where}: pixel_origin: expected one of {list(_ORIGINS)}, got {self.origin!r}"
            )
        assets = data.get("assets")
        if not isinstance(assets, dict):
            raise DataError(f"{where}: assets: expected an object {{asset id: {{view: ...}}}}")
        self.assets: dict[str, dict[int, dict[str, np.ndarray]]] = {
            a: self._asset(a, v) for a, v in assets.items()
        }
        self.samples = int(samples)
        source = data.get("labeler")
        self.name = f"boxes:{self.path}" + (f" ({source})" if isinstance(source, str) else "")

    def _asset(self, aid: str, views: Any) -> dict[int, dict[str, np.ndarray]]:
        where = f"{self.path}: assets.{aid}"
        if not isinstance(views, dict):
            raise DataError(f"{where}: expected an object {{view index: {{function: boxes}}}}")
        out: dict[int, dict[str, np.ndarray]] = {}
        for vk, table in views.items():
            try:
                v = int(vk)
            except ValueError:
                raise DataError(f"{where}: view key {vk!r} is not an integer") from None
            if v < 0 or str(v) != str(vk).strip():
                raise DataError(f"{where}: view key {vk!r} is not a view index (0, 1, ...)")
            if not isinstance(table, dict):
                raise DataError(f"{where}.{vk}: expected an object {{function or part: boxes}}")
            out[v] = {k: self._boxes(f"{where}.{vk}.{k}", b) for k, b in table.items()}
        return out

    @staticmethod
    def _boxes(where: str, boxes: Any) -> np.ndarray:
        if not isinstance(boxes, list):
            raise DataError(f"{where}: expected a list of [x0, y0, x1, y1] boxes or null")
        rows = np.full((len(boxes), 4), np.nan)
        for i, b in enumerate(boxes):
            if b is None:
                continue
            ok = (
                isinstance(b, list)
                and len(b) == 4
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
                and all(math.isfinite(x) for x in b)
            )
            if not ok:
                raise DataError(
                    f"{where}[{i}]: expected [x0, y0, x1, y1] numbers or null, got {b!r}"
                )
            if b[2] < b[0] or b[3] < b[1]:
                raise DataError(f"{where}[{i}]: x1 < x0 or y1 < y0 in {b!r}")
            rows[i] = b
        return rows

    def lookup(self, asset_id: str, view: int, query: PartQuery) -> np.ndarray:
        """The raw (n, 4) boxes stored for (asset, view, query) in the file's units."""
        if asset_id not in self.assets:
            raise DataError(f"{self.path}: assets: no boxes for asset {asset_id!r}")
        views = self.assets[asset_id]
        if int(view) not in views:
            raise DataError(f"{self.path}: assets.{asset_id}: no view {int(view)}")
        table = views[int(view)]
        keys = [query.function, str(query.part), *query_parts(query)]
        hits = [k for k in dict.fromkeys(keys) if k in table]
        if not hits:
            raise DataError(
                f"{self.path}: assets.{asset_id}.{int(view)}: none of the keys "
                f"{list(dict.fromkeys(keys))} (have {sorted(table)})"
            )
        if hits[0] == query.function or len(hits) == 1:
            return table[hits[0]]
        # several part names, no function key: pool the parts' boxes
        return np.concatenate([table[k] for k in hits if k in query_parts(query)])

    def to_pixels(self, boxes: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).copy()
        if self.units != "pixels":
            if image is None:
                raise UsageError(f"{self.path}: units {self.units!r} need the view image size")
            h, w = np.asarray(image).shape[:2]
            div = 1.0 if self.units == "relative" else 1000.0
            b *= np.array([w, h, w, h]) / div
        if self.origin == "corner" or self.units != "pixels":
            b -= 0.5
        return b

    def for_asset(
        self,
        asset_id: str,
        category: str,
        part_id: np.ndarray | None = None,
        parts: list[str] | None = None,
    ) -> BoxLabeler:
        if asset_id not in self.assets:
            raise DataError(f"{self.path}: assets: no boxes for asset {asset_id!r}")
        return _BoxesAsset(self, asset_id)


class _BoxesAsset:
    def __init__(self, parent: BoxesFileLabelers, asset_id: str) -> None:
        self.parent = parent
        self.asset_id = asset_id
        self._warned = False

    def __call__(self, image: np.ndarray | None, query: PartQuery, view: int) -> np.ndarray:
        p = self.parent
        raw = p.to_pixels(p.lookup(self.asset_id, view, query), image)
        out = np.full((p.samples, 4), np.nan)
        n = min(len(raw), p.samples)
        out[:n] = raw[:n]
        if len(raw) > p.samples and not self._warned:
            log.warning(
                "%s: %s view %d: %d boxes for %s, keeping the first %d (--samples)",
                p.path,
                self.asset_id,
                view,
                len(raw),
                query.function,
                p.samples,
            )
            self._warned = True
        return out


# ---------------------------------------------------------------------------------------------
# simulated


class SimulatedLabelers:
    """``--labeler simulated``: the synthetic world's noisy labeller on rendered part ids.

    The queried parts are the query's part names when they are parts of the asset, else the
    taxonomy's parts of the category for the function (aliases matched). Seeded per asset id.
    """

    def __init__(
        self,
        taxonomy: Taxonomy | None,
        *,
        samples: int = 4,
        seed: int = 0,
        options: dict[str, float] | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.samples = int(samples)
        self.seed = int(seed)
        self.options = dict(options or {})
        self.name = "simulated"

    def for_asset(
        self,
        asset_id: str,
        category: str,
        part_id: np.ndarray | None = None,
        parts: list[str] | None = None,
    ) -> BoxLabeler:
        if part_id is None or parts is None:
            raise UsageError(
                f"--labeler simulated: asset {asset_id!r} has no rendered part ids; the "
                "simulated labeller needs part_id (V, H, W) and the part names (meshes with "
                "named parts), use a detector or boxes:FILE otherwise"
            )
        part_id = np.asarray(part_id)
        if part_id.ndim != 3:
            raise UsageError(
                f"--labeler simulated: asset {asset_id!r}: part_id must be (V, H, W), got "
                f"{part_id.shape}"
            )
        seed = int(
            np.random.SeedSequence([self.seed, zlib.crc32(asset_id.encode())]).generate_state(1)[0]
        )
        sim = SimulatedBoxLabeler(part_id, list(parts), {}, seed, self.options)
        return _SimulatedAsset(self, sim, asset_id, category)


class _SimulatedAsset:
    def __init__(self, parent, sim: SimulatedBoxLabeler, asset_id: str, category: str) -> None:
        self.parent = parent
        self.sim = sim
        self.asset_id = asset_id
        self.category = category

    def targets(self, query: PartQuery) -> list[str]:
        names = query_parts(query)
        if all(n in self.sim.parts for n in names):
            return names
        tax = self.parent.taxonomy
        if tax is not None and self.category in tax.parts:
            canon = set(tax.parts_for(self.category, query.function))
            hit = [n for n in self.sim.parts if tax.canonical_part(self.category, n) in canon]
            if hit:
                return hit
        raise UsageError(
            f"--labeler simulated: asset {self.asset_id!r}: no part of {self.sim.parts} matches "
            f"{query.part!r} (function {query.function!r})"
        )

    def __call__(self, image: np.ndarray | None, query: PartQuery, view: int) -> np.ndarray:
        return self.sim.sample(view, self.targets(query), query.function, self.parent.samples)


# ---------------------------------------------------------------------------------------------
# factory


def open_labeler(
    spec: str,
    taxonomy: Taxonomy | None,
    *,
    device: str = "cpu",
    samples: int = 4,
    options: dict[str, Any] | None = None,
) -> AssetLabelers:
    """Open the labeller of a ``--labeler`` spec (module docstring; docs/labelers.md).

    Args:
        spec: ``owlv2:MODEL`` | ``grounding-dino:MODEL`` | ``boxes:FILE`` | ``simulated``.
        taxonomy: part descriptions for the prompts, parts of a function (simulated).
        device: torch device of the detectors.
        samples: box samples per (view, query) (paper: 4).
        options: per-kind extras: detectors ``threshold``; simulated
            ``seed`` and the noise probabilities of ``SimulatedBoxLabeler``.
    """
    if int(samples) < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    kind, arg = parse_spec(spec)
    opts = dict(options or {})
    if kind in ("owlv2", "grounding-dino"):
        allowed = {"threshold"}
        bad = sorted(set(opts) - allowed)
        if bad:
            raise UsageError(f"--labeler {spec}: unknown options {bad}; allowed {sorted(allowed)}")
        return DetectorLabelers(kind, arg, taxonomy, device=device, samples=samples, **opts)
    if kind == "boxes":
        if opts:
            raise UsageError(f"--labeler {spec}: takes no options, got {sorted(opts)}")
        return BoxesFileLabelers(arg, samples=samples)
    seed = int(opts.pop("seed", 0))
    return SimulatedLabelers(taxonomy, samples=samples, seed=seed, options=opts)

"""Function taxonomies: functions, categories, parts, aliases and asset splits as one type.

A :class:`Taxonomy` says which functions exist (``"pour-with"``), which parts of which object
categories perform them (``category -> part -> [function, ...]``), how parts are described
(the part labeller's prompt), which part names are aliases of one physical part
(``alias -> canonical``), optionally which AGD20K-style affordances a part has, and which
assets belong to which split.  Two readers:

- :meth:`Taxonomy.from_official` reads the taxonomy folder of the official dense functional
  correspondence release (``0_taxonomy_and_metadata/``, REFERENCE_NOTES D) from the user's
  own copy (afford never ships those files);
- :meth:`Taxonomy.load` / :meth:`Taxonomy.save` read and write afford's own single-file format
  (JSON or YAML, docs/taxonomy.md).  :meth:`Taxonomy.shipped` loads the taxonomies in
  ``afford/taxonomies/`` (``paper``: the paper's 24 functions; ``synth``: the synthetic world).

Every inconsistency is an :class:`~afford.errors.AffordError` naming the file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from afford.data.io import read_json, write_json, write_text
from afford.errors import AffordError

__all__ = ["AssetRef", "Taxonomy", "SPLITS", "FORMAT", "SHIPPED_DIR", "shipped_names"]

FORMAT = "afford-taxonomy"
FORMAT_VERSION = 1
SPLITS = ("train", "test", "unseen_test")  # the official split files, in this order
SHIPPED_DIR = Path(__file__).parent / "taxonomies"

# official folder layout (REFERENCE_NOTES D); the Objaverse files sit in Objaverse/
OFFICIAL_FUNCTIONS = "action2objects.json"  # {function: [category, ...]}   (required)
OFFICIAL_PARTS = "obj2part2function.json"  # {category: {part: [function]}}  (required)
OFFICIAL_DESCRIPTIONS = "obj2part_descriptions.json"  # {category: {part: "sentence"}}
OFFICIAL_ALIASES = "duplicated_parts.json"  # {category: {alias_part: canonical_part}}
OFFICIAL_SPLITS = {s: f"{s}_split.json" for s in SPLITS}  # ["<uuid>---<category>.glb", ...]

_KEYS = (
    "format",
    "format_version",
    "name",
    "functions",
    "function_categories",
    "parts",
    "descriptions",
    "aliases",
    "affordances",
    "splits",
)


@dataclass(frozen=True)
class AssetRef:
    """One asset of a split: its id (an Objaverse uuid, a file stem...) and its category."""

    id: str
    category: str

    @classmethod
    def from_filename(cls, name: str, where: str = "split") -> AssetRef:
        """Parse an official split entry ``"<uuid>---<category>.glb"`` (any mesh suffix)."""
        if not isinstance(name, str):
            raise AffordError(f"{where}: expected a '<uuid>---<category>.glb' string, got {name!r}")
        stem = Path(name).stem if Path(name).suffix else name
        uid, sep, category = stem.partition("---")
        if not sep or not uid or not category:
            raise AffordError(f"{where}: {name!r} is not of the form '<uuid>---<category>.glb'")
        return cls(uid, category)

    @property
    def filename(self) -> str:
        """The official file name ``"<id>---<category>.glb"``."""
        return f"{self.id}---{self.category}.glb"


def _k(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _fail(where: str, key: str, expected: str, got: Any) -> AffordError:
    shown = repr(got) if len(repr(got)) <= 60 else type(got).__name__
    return AffordError(f"{where}: {key or '(top level)'}: expected {expected}, got {shown}")


def _strings(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, key, "a list of non-empty strings", value)
    return list(value)


def _mapping(value: Any, where: str, key: str) -> dict:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise _fail(where, key, "a mapping with non-empty string keys", value)
    return dict(value)


def _nested_lists(value: Any, where: str, key: str) -> dict[str, dict[str, list[str]]]:
    """``{category: {part: [name, ...]}}``."""
    return {
        c: {
            p: _strings(v, where, _k(key, f"{c}.{p}"))
            for p, v in _mapping(d, where, _k(key, c)).items()
        }
        for c, d in _mapping(value, where, key).items()
    }


def _nested_strings(value: Any, where: str, key: str) -> dict[str, dict[str, str]]:
    """``{category: {part: "text"}}``."""
    out: dict[str, dict[str, str]] = {}
    for c, d in _mapping(value, where, key).items():
        out[c] = {}
        for p, v in _mapping(d, where, _k(key, c)).items():
            if not isinstance(v, str):
                raise _fail(where, _k(key, f"{c}.{p}"), "a string", v)
            out[c][p] = v
    return out


def _aliases(value: Any, parts: dict, where: str, key: str) -> dict[str, dict[str, str]]:
    """``{category: {alias: canonical}}``; the canonical part must be a part of the category."""
    aliases = _nested_strings(value, where, key)
    for c, table in aliases.items():
        for alias, canonical in table.items():
            if alias == canonical:
                raise AffordError(f"{where}: {_k(key, f'{c}.{alias}')}: an alias of itself")
            if c in parts and canonical not in parts[c]:
                raise AffordError(
                    f"{where}: {_k(key, f'{c}.{alias}')}: canonical part {canonical!r} is not a "
                    f"part of {c!r} (parts: {sorted(parts[c])})"
                )
    return aliases


@dataclass
class Taxonomy:
    """Functions, categories, parts, descriptions, aliases and splits (see module docstring).

    Attributes:
        functions: every function name (order kept).
        parts: category -> part -> functions it performs (a part may perform none).
        function_categories: function -> categories that have it (the official
            ``action2objects.json``; may name categories without part definitions).
        descriptions: category -> part -> one-sentence description (labeller prompt).
        aliases: category -> alias part -> canonical part (one physical part, two names).
        affordances: category -> part -> AGD20K-style affordances (optional).
        splits: split name -> assets (the official splits are ``SPLITS``).
        name: a short name; source: where it was read from (used in error messages).
    """

    functions: list[str]
    parts: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    function_categories: dict[str, list[str]] = field(default_factory=dict)
    descriptions: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    affordances: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    splits: dict[str, list[AssetRef]] = field(default_factory=dict)
    name: str = ""
    source: str = field(default="taxonomy", compare=False)

    def __post_init__(self) -> None:
        where = self.source
        self.functions = _strings(list(self.functions), where, "functions")
        dup = sorted({f for f in self.functions if self.functions.count(f) > 1})
        if dup:
            raise AffordError(f"{where}: functions: duplicated names {dup}")
        known = set(self.functions)
        self.parts = _nested_lists(self.parts, where, "parts")
        for c, parts in self.parts.items():
            for p, fns in parts.items():
                bad = [f for f in fns if f not in known]
                if bad:
                    raise AffordError(f"{where}: parts.{c}.{p}: unknown functions {bad}")
        self.function_categories = {
            f: _strings(v, where, f"function_categories.{f}")
            for f, v in _mapping(self.function_categories, where, "function_categories").items()
        }
        bad = [f for f in self.function_categories if f not in known]
        if bad:
            raise AffordError(f"{where}: function_categories: unknown functions {bad}")
        self.descriptions = _nested_strings(self.descriptions, where, "descriptions")
        self.aliases = _aliases(self.aliases, self.parts, where, "aliases")
        self.affordances = _nested_lists(self.affordances, where, "affordances")
        for c, table in self.affordances.items():
            for p in table:
                if p not in self.parts.get(c, {}):
                    raise AffordError(f"{where}: affordances.{c}.{p}: no such part in parts.{c}")
        splits = _mapping(self.splits, where, "splits")
        self.splits = {}
        for s, refs in splits.items():
            if not isinstance(refs, list) or not all(isinstance(r, AssetRef) for r in refs):
                raise _fail(where, f"splits.{s}", "a list of AssetRef", refs)
            self.splits[s] = list(refs)

    # -- queries -------------------------------------------------------------------------

    @property
    def categories(self) -> list[str]:
        """Every category (with part definitions or named by ``function_categories``)."""
        cats = set(self.parts)
        for v in self.function_categories.values():
            cats.update(v)
        return sorted(cats)

    def _category(self, category: str) -> dict[str, list[str]]:
        if category not in self.parts:
            raise AffordError(
                f"{self.source}: no parts for category {category!r}; "
                f"categories with parts: {sorted(self.parts)}"
            )
        return self.parts[category]

    def _function(self, function: str) -> str:
        if function not in self.functions:
            raise AffordError(
                f"{self.source}: unknown function {function!r}; known: {sorted(self.functions)}"
            )
        return function

    def canonical_part(self, category: str, part: str) -> str:
        """The canonical name of ``part`` (aliases resolved; other names unchanged)."""
        return self.aliases.get(category, {}).get(part, part)

    def functions_of(self, category: str, part: str | None = None) -> list[str]:
        """Functions of one part (aliases resolved), or of the whole category (sorted)."""
        parts = self._category(category)
        if part is None:
            return sorted({f for fns in parts.values() for f in fns})
        canonical = self.canonical_part(category, part)
        if canonical not in parts:
            raise AffordError(
                f"{self.source}: {category!r} has no part {part!r}; parts: {sorted(parts)}"
            )
        return list(parts[canonical])

    def affordances_of(self, category: str, part: str | None = None) -> list[str]:
        """Affordances of one part (aliases resolved), or of the whole category (sorted)."""
        table = self.affordances.get(category, {})
        if part is None:
            self._category(category)
            return sorted({a for affs in table.values() for a in affs})
        self.functions_of(category, part)  # checks the part exists
        return list(table.get(self.canonical_part(category, part), []))

    def categories_for(self, function: str) -> list[str]:
        """Categories that have ``function`` (function_categories and part definitions)."""
        cats = set(self.function_categories.get(self._function(function), []))
        cats.update(
            c for c, parts in self.parts.items() if any(function in v for v in parts.values())
        )
        return sorted(cats)

    def parts_for(self, category: str, function: str) -> list[str]:
        """Canonical parts of ``category`` that perform ``function`` (definition order)."""
        self._function(function)
        return [p for p, fns in self._category(category).items() if function in fns]

    def split(self, name: str) -> list[AssetRef]:
        """The assets of split ``name`` (AffordError listing the splits when absent)."""
        if name not in self.splits:
            raise AffordError(f"{self.source}: no split {name!r}; splits: {sorted(self.splits)}")
        return self.splits[name]

    # -- afford's own format -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The single-file form (docs/taxonomy.md); empty sections are left out."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        if self.name:
            out["name"] = self.name
        out["functions"] = list(self.functions)
        for key in ("function_categories", "parts", "descriptions", "aliases", "affordances"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.splits:
            out["splits"] = {
                s: [{"id": r.id, "category": r.category} for r in refs]
                for s, refs in self.splits.items()
            }
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "taxonomy") -> Taxonomy:
        """Inverse of :meth:`to_dict` (unknown keys, wrong shapes -> AffordError)."""
        data = _mapping(data, source, "")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise AffordError(f"{source}: unknown keys {unknown}; expected some of {list(_KEYS)}")
        if data.get("format", FORMAT) != FORMAT:
            raise _fail(source, "format", repr(FORMAT), data["format"])
        if data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise _fail(source, "format_version", str(FORMAT_VERSION), data["format_version"])
        if "functions" not in data:
            raise AffordError(f"{source}: functions: missing (a list of function names)")
        splits = {}
        for s, refs in _mapping(data.get("splits", {}), source, "splits").items():
            if not isinstance(refs, list):
                raise _fail(source, f"splits.{s}", "a list of {id, category} mappings", refs)
            splits[s] = []
            for i, r in enumerate(refs):
                if not (
                    isinstance(r, Mapping)
                    and set(r) == {"id", "category"}
                    and all(isinstance(v, str) and v for v in r.values())
                ):
                    raise _fail(source, f"splits.{s}[{i}]", "a mapping {id, category}", r)
                splits[s].append(AssetRef(r["id"], r["category"]))
        name = data.get("name", "")
        if not isinstance(name, str):
            raise _fail(source, "name", "a string", name)
        return cls(
            functions=data["functions"],
            parts=data.get("parts", {}),
            function_categories=data.get("function_categories", {}),
            descriptions=data.get("descriptions", {}),
            aliases=data.get("aliases", {}),
            affordances=data.get("affordances", {}),
            splits=splits,
            name=name,
            source=source,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Taxonomy:
        """Read afford's single-file taxonomy (``.json``, or ``.yaml`` / ``.yml``)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = read_json(path)
        elif path.suffix.lower() in (".yaml", ".yml"):
            if not path.is_file():
                raise AffordError(f"{path}: file not found")
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise AffordError(f"{path}: not valid YAML ({reason})") from None
        else:
            raise AffordError(f"{path}: a taxonomy file must end in .json, .yaml or .yml")
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the single-file form (JSON or YAML by the suffix)."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            return write_json(path, self.to_dict())
        if path.suffix.lower() in (".yaml", ".yml"):
            text = yaml.safe_dump(
                self.to_dict(), sort_keys=False, default_flow_style=None, width=100
            )
            return write_text(path, text)
        raise AffordError(f"{path}: a taxonomy file must end in .json, .yaml or .yml")

    @classmethod
    def shipped(cls, name: str) -> Taxonomy:
        """A taxonomy shipped with afford (``afford/taxonomies/<name>.yaml``)."""
        path = SHIPPED_DIR / f"{name}.yaml"
        if not path.is_file():
            raise AffordError(f"no shipped taxonomy {name!r}; choose one of {shipped_names()}")
        return cls.load(path)

    # -- the official release ------------------------------------------------------------

    @classmethod
    def from_official(cls, folder: str | os.PathLike, name: str = "official") -> Taxonomy:
        """Read the official taxonomy folder (``0_taxonomy_and_metadata/``, REFERENCE_NOTES D).

        Required: ``action2objects.json`` and ``Objaverse/obj2part2function.json``; optional
        (skipped when absent): ``Objaverse/obj2part_descriptions.json``,
        ``Objaverse/duplicated_parts.json`` and ``Objaverse/{train,test,unseen_test}_split.json``.
        The Objaverse files may also sit directly in ``folder``.  Functions are the keys of
        ``action2objects.json`` in file order, then any further function that
        ``obj2part2function.json`` names (sorted).
        """
        root = Path(folder)
        if not root.is_dir():
            raise AffordError(f"{root}: taxonomy folder not found")
        sub = root / "Objaverse" if (root / "Objaverse").is_dir() else root

        def read(path: Path, required: bool) -> Any:
            if not path.is_file():
                if required:
                    raise AffordError(
                        f"{path}: required taxonomy file not found (the official "
                        "0_taxonomy_and_metadata/ folder holds it)"
                    )
                return None
            return read_json(path)

        f_path, p_path = root / OFFICIAL_FUNCTIONS, sub / OFFICIAL_PARTS
        action2objects = read(f_path, True)
        function_categories = {
            f: _strings(v, str(f_path), f)
            for f, v in _mapping(action2objects, str(f_path), "").items()
        }
        parts = _nested_lists(read(p_path, True), str(p_path), "")
        extra = sorted(
            {f for d in parts.values() for v in d.values() for f in v} - set(function_categories)
        )
        d_path, a_path = sub / OFFICIAL_DESCRIPTIONS, sub / OFFICIAL_ALIASES
        descriptions = read(d_path, False)
        aliases = read(a_path, False)
        splits = {}
        for s, fname in OFFICIAL_SPLITS.items():
            s_path = sub / fname
            names = read(s_path, False)
            if names is None:
                continue
            if not isinstance(names, list):
                raise _fail(str(s_path), "", "a list of '<uuid>---<category>.glb'", names)
            splits[s] = [
                AssetRef.from_filename(n, f"{s_path}: entry {i}") for i, n in enumerate(names)
            ]
        return cls(
            functions=[*function_categories, *extra],
            parts=parts,
            function_categories=function_categories,
            descriptions=_nested_strings(descriptions or {}, str(d_path), ""),
            aliases=_aliases(aliases or {}, parts, str(a_path), ""),
            splits=splits,
            name=name,
            source=str(root),
        )


def shipped_names() -> list[str]:
    """Names of the taxonomies shipped in ``afford/taxonomies/``."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))

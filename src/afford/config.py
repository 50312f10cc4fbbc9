"""The one config system of afford: typed nested dataclasses, one YAML loader, one ``--set``.

Every ``train`` / ``eval`` / ``pretrain`` command describes its experiment as a tree of
dataclasses (sections ``data``, ``backbone``, ``model``, ``train``, ...).  A YAML file gives
some of the leaves, ``--set section.key=value`` overrides any leaf (the value is parsed as
YAML), and :func:`from_dict` builds the tree, strictly:

* an unknown key is an error naming the key and listing the known ones (with a guess);
* a value of the wrong type is an error naming the key, the value and the expected type
  (``train.epochs: 'abc' is not an integer (expected int)``); ``bool`` is never taken for a
  number and a float is never silently truncated to an int;
* NaN and infinity are refused for every float field;
* bounds and choices are declared on the field (:func:`option`), so "a negative size" is a
  one-line error too.

Field types are read from the dataclass annotations: ``bool``, ``int``, ``float``, ``str``,
``Literal[...]`` (choices), ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
``Any`` and nested dataclasses.  Cross-field rules go in a section's ``__post_init__`` and
raise :func:`config_error`.

Key names are shared by the tasks: ``train.epochs``, ``train.lr``, ``train.seed``,
``train.device``, ``train.out``, ... live in :class:`TrainConfig`, which every task's train
section extends.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from afford.errors import AffordError

T = TypeVar("T")

#: The two behaviours of every method: the equations as the papers write them (default) and
#: the authors' released code (``../shared`` reference notes, ``docs/reference-notes.md``).
Mode = Literal["paper", "official"]
MODES: tuple[str, ...] = typing.get_args(Mode)

#: Where the configs shipped inside the package live (``afford/configs/<task>/<name>.yaml``).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(AffordError):
    """A bad config value or key; ``key`` is the dotted path (``train.epochs``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}" if key else message)


def config_error(key: str, value: Any, expected: str) -> ConfigError:
    """The one-line error for ``key`` holding ``value`` where ``expected`` was wanted."""
    return ConfigError(key, f"{value!r} is not {expected}")


def option(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    min: float | None = None,  # noqa: A002 -- reads as the bound it is
    max: float | None = None,  # noqa: A002
    min_exclusive: bool = False,
    help: str = "",  # noqa: A002
) -> Any:
    """A dataclass field with bounds (``min`` / ``max``, inclusive unless ``min_exclusive``)
    and a help text (shown by ``afford ... --print-config`` and the docs)."""
    meta = {"min": min, "max": max, "min_exclusive": min_exclusive, "help": help}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ------------------------------------------------------------------------ type checking
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` checked (and normalised: int -> float, list -> tuple) against type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise config_error(key, value, "null")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise config_error(key, value, _type_name(tp))
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        raise ConfigError(key, f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise config_error(key, value, _type_name(tp))
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise config_error(key, value, "a mapping")
        args = typing.get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise config_error(key, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise config_error(key, value, "an integer (expected int)")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise config_error(key, value, "a finite number (expected float)")
            return float(value)
        raise config_error(key, value, "a number (expected float)")
    if tp is str:
        if isinstance(value, str):
            return value
        raise config_error(key, value, "a string (expected str)")
    raise TypeError(f"afford.config: unsupported field type {tp!r} at {key}")  # a bug, not input


def _check_bounds(f: dataclasses.Field, value: Any, key: str) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if lo is not None:
        if f.metadata.get("min_exclusive") and not value > lo:
            raise config_error(key, value, f"a value > {lo}")
        if not value >= lo:
            raise config_error(key, value, f"a value >= {lo}")
    if hi is not None and not value <= hi:
        raise config_error(key, value, f"a value <= {hi}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def _unknown_key(cls: type, key: str, name: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return ConfigError(key, f"unknown key (known: {', '.join(known)}){hint}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _default_section(f: dataclasses.Field, tp: Any) -> Any:
    """The default instance of a nested-section field (``field(default_factory=...)``), if any:
    ``WeightsSpec("vits16")`` as a default keeps ``vits16`` when a file sets only ``weights``."""
    if not dataclasses.is_dataclass(tp) or f.default_factory is dataclasses.MISSING:
        return None
    return f.default_factory()


def from_dict(cls: type[T], raw: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain mapping, strictly (see the module docstring).

    ``prefix`` is the dotted path of this section, used in error messages.  Missing keys take
    their defaults; a ``None`` section means "all defaults".
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"expected a mapping of keys, got {raw!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        key = _join(prefix, str(name))
        if name not in fields:
            raise _unknown_key(cls, key, str(name))
        default = _default_section(fields[name], hints[name])
        if default is not None and isinstance(value, dict):
            value = _merge(to_dict(default), value)  # a partial section keeps the field's defaults
        v = _coerce(hints[name], value, key)
        _check_bounds(fields[name], v, key)
        kwargs[name] = v
    for name in fields:  # nested sections left out take the field's default section
        if name not in kwargs and dataclasses.is_dataclass(hints[name]):
            default = _default_section(fields[name], hints[name])
            kwargs[name] = default if default is not None else from_dict(hints[name], {}, name)
    try:
        obj = cls(**kwargs)
    except ConfigError as e:
        if prefix and not e.key.startswith(prefix):
            raise ConfigError(_join(prefix, e.key), e.detail) from None
        raise
    except TypeError as e:  # a required field missing
        raise ConfigError(prefix, str(e)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain JSON / YAML-able tree of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def replace(obj: T, **changes: Any) -> T:
    """Copy of config section ``obj`` with some fields changed, validated like a load."""
    d = to_dict(obj)
    d.update(to_dict(changes))
    return from_dict(type(obj), d)


# ------------------------------------------------------------------------ --set and YAML
class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.2; PyYAML's 1.1 rules
    need a dot, ``1.0e-4``, and would hand ``lr: 1e-4`` over as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def safe_load(text: str) -> Any:
    """Parse YAML text safely (no object construction), with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


def parse_set(assignment: str) -> tuple[str, Any]:
    """``"train.lr=1e-3"`` -> ``("train.lr", 0.001)``; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError("", f"--set {assignment!r}: expected section.key=value")
    key, _, raw = assignment.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError("", f"--set {assignment!r}: expected section.key=value")
    try:
        value = safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text, the type check then names the key
    if isinstance(value, str) and value.strip().lower() in {"nan", ".nan", "inf", "-inf"}:
        value = float(value.strip().lstrip("."))
    return key, value


def apply_sets(raw: dict, assignments: Iterable[str]) -> dict:
    """Apply ``--set`` assignments to a raw config mapping (a modified copy)."""
    out = _deepcopy(raw)
    for assignment in assignments:
        key, value = parse_set(assignment)
        node = out
        parts = key.split(".")
        for i, p in enumerate(parts[:-1]):
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), f"--set {assignment!r}: not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (``yaml.safe_load``; clear errors for a missing file,
    bad YAML, or a document that is not a mapping)."""
    path = Path(path)
    if not path.is_file():
        raise AffordError(f"{path}: config file not found")
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AffordError(f"{path}: not valid YAML ({reason})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AffordError(
            f"{path}: expected a mapping of config sections, got {type(raw).__name__}"
        )
    return raw


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config file: ``name`` itself when it exists, else a config shipped in the package
    (``grounding/synth`` or ``grounding/synth.yaml`` -> ``afford/configs/grounding/synth.yaml``).
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    shipped = CONFIG_DIR / p
    for cand in (shipped, shipped.with_suffix(".yaml")):
        if cand.is_file():
            return cand
    names = ", ".join(shipped_configs()) or "none"
    raise AffordError(f"{name}: config file not found (shipped configs: {names})")


def shipped_configs() -> list[str]:
    """Names of the configs shipped in the package (``task/name``)."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(
        str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml")
    )


def load(
    cls: type[T],
    path: str | os.PathLike | None = None,
    sets: Iterable[str] = (),
    base: dict | None = None,
) -> T:
    """The config ``cls`` from a YAML file (or a shipped config name), ``--set`` overrides on
    top, strictly checked.  An error names the file, or ``--set`` when the bad value came from
    an override."""
    sets = list(sets or ())
    raw = _deepcopy(base or {})
    source = "config"
    if path is not None:
        p = resolve_config_path(path)
        raw = _merge(raw, read_yaml(p))
        source = str(p)
    set_keys = {parse_set(s)[0]: s for s in sets}
    merged = apply_sets(raw, sets)
    try:
        return from_dict(cls, merged)
    except ConfigError as e:
        hit = next((s for k, s in set_keys.items() if _related(e.key, k)), None)
        where = f"--set {hit}" if hit else source
        raise ConfigError(e.key, f"{e.detail} (in {where})") from None


def _related(a: str, b: str) -> bool:
    """True when dotted keys ``a`` and ``b`` are equal or one lies inside the other."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def _merge(base: dict, over: dict) -> dict:
    out = _deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = _deepcopy(v)
    return out


def dump_yaml(obj: Any) -> str:
    """The YAML text of a config (what a run writes next to its checkpoints)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Rows ``(key, type, default, help)`` of every leaf of config ``cls`` (for docs)."""
    rows = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, key)
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        rows.append((key, _type_name(tp), to_dict(default), f.metadata.get("help", "")))
    return rows


# ------------------------------------------------------------------------ shared sections
@dataclasses.dataclass
class TrainConfig:
    """Keys every training run shares (``train.*``); each task's train section extends it."""

    epochs: int = option(15, min=1, help="training epochs")
    lr: float = option(1e-3, min=0, min_exclusive=True, help="learning rate")
    weight_decay: float = option(0.0, min=0, help="weight decay")
    seed: int = option(0, min=0, help="seed of every random draw of the run")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N | mps")
    out: str = option("runs/experiment", help="output folder (checkpoints, history, report)")
    resume: bool = option(True, help="continue from <out>/last when it exists")
    threads: int | None = option(None, min=1, help="torch CPU threads (default: torch's)")
    progress: bool = option(True, help="progress bars")
    grad_clip: float | None = option(None, min=0, min_exclusive=True, help="max grad norm")
    # --- engine (Lightning Fabric, afford.engine.fabric; the same keys as the CLI flags)
    accelerator: Literal["auto", "cpu", "gpu"] = option(
        "auto", help="auto | cpu | gpu (auto: from train.device, else what the machine has)"
    )
    devices: int = option(1, min=1, help="processes (one device each) per node")
    num_nodes: int = option(1, min=1, help="machines (multi-node: launch with torchrun)")
    strategy: Literal["auto", "ddp", "fsdp"] = option(
        "auto", help="auto | ddp | fsdp (auto: ddp with more than one process)"
    )
    precision: Literal["32", "bf16-mixed", "16-mixed", 32] = option(
        "32", help="32 | bf16-mixed | 16-mixed (autocast; 16-mixed with a gradient scaler)"
    )
    max_steps: int | None = option(None, min=1, help="stop after this many optimizer steps")
    workers: int = option(0, min=0, help="DataLoader worker processes (0: main process)")
    logger: Literal["tensorboard", "csv", "none"] = option(
        "csv", help="tensorboard | csv | none: scalars (losses, lr, samples/s, validation)"
    )
    log_every: int = option(
        10, min=1, help="logger scalars and non-TTY progress lines every N steps"
    )
    checkpoint_every: int | None = option(
        None, min=1, help="also write <out>/last every N steps inside an epoch (exact resume)"
    )


#: The engine keys of :class:`TrainConfig` (shared CLI flags, ``afford.cli.engine_flags``).
ENGINE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "max_steps",
               "workers", "logger", "log_every", "checkpoint_every")  # fmt: skip


@dataclasses.dataclass
class WeightsSpec:
    """One frozen backbone: a registry variant and an optional weight file."""

    variant: str = option("tiny", help="registry name (afford info lists them)")
    weights: str | None = option(None, help="weight file; default: AFFORD_WEIGHTS / hub caches")


@dataclasses.dataclass
class ClipWeights(WeightsSpec):
    """``backbone.clip``: the frozen CLIP (ViT-B/16 in both papers)."""

    variant: str = option("vitb16", help="vitb16 (paper) | tiny")

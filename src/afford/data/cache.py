"""Frozen-output cache: maps computed once by a frozen model, keyed by image content.

Layout (one ``.npz`` per image and model)::

    <root>/<model_id>/<key[:2]>/<key>.npz      arrays, e.g. "action:hold", "entity:hold"
    <root>/<model_id>/meta.json                {"model_id": ..., "simulated": bool, ...}

``key`` is the SHA-256 of the image file's bytes, so a renamed or copied image hits the cache
and an edited one misses it.  Array names are ``"<kind>:<label>"``: the same image may sit in
several label folders (AGD20K does this), and each label has its own prompt.

The real ClearCLIP affinity extractor and the synthetic world's *simulated* affinity maps
write the same format; ``meta.json`` says which (``"simulated": true`` for the latter).
Maps are stored at the patch grid of the full image resized to the model's input size, so
geometric augmentations (crop, flip) are applied to them exactly, like to the image.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from afford.data.io import read_json, read_npz, write_json, write_npz
from afford.errors import AffordError, DataError


def content_key(data: bytes) -> str:
    """SHA-256 hex digest of raw bytes (the cache key of an image file)."""
    return hashlib.sha256(data).hexdigest()


def file_key(path: str | os.PathLike) -> str:
    """Cache key of an image file: SHA-256 of its bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    return content_key(path.read_bytes())


class MapCache:
    """Read/write cached per-image maps for one frozen model (``model_id``).

    Writes are atomic and idempotent; ``put`` merges new arrays into an existing entry.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        model_id: str,
        simulated: bool = False,
        meta: dict | None = None,
    ):
        if not model_id or "/" in model_id or model_id.startswith("."):
            raise AffordError(f"MapCache: invalid model_id {model_id!r} (no '/' or leading '.')")
        self.root = Path(root)
        self.model_id = model_id
        self.dir = self.root / model_id
        self._lock = threading.Lock()
        meta_path = self.dir / "meta.json"
        wanted = {"model_id": model_id, "simulated": bool(simulated), **(meta or {})}
        if meta_path.is_file():
            self.meta = read_json(meta_path)
        else:
            self.meta = wanted
            write_json(meta_path, wanted)

    @classmethod
    def open(cls, root: str | os.PathLike, model_id: str) -> MapCache:
        """Open an existing cache; error naming the folder if it does not exist."""
        if not (Path(root) / model_id / "meta.json").is_file():
            raise DataError(f"{Path(root) / model_id}: no map cache here (missing meta.json)")
        return cls(root, model_id)

    @property
    def simulated(self) -> bool:
        return bool(self.meta.get("simulated", False))

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """All arrays stored for ``key``, or None when the image is not cached."""
        p = self.path(key)
        return read_npz(p) if p.is_file() else None

    def get_map(self, key: str, name: str) -> np.ndarray | None:
        """One array (e.g. ``"action:hold"``) or None when absent."""
        entry = self.get(key)
        return None if entry is None else entry.get(name)

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` for ``key`` (merged with what is already there)."""
        with self._lock:
            entry = self.get(key) or {}
            entry.update({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
            write_npz(self.path(key), **entry)

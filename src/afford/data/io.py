"""Safe file I/O: every write is atomic (temporary file in the same folder, then rename).

Nothing already on disk is lost if a write fails half-way: the old file stays until the new
one is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from afford.errors import AffordError, DataError, UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would (0644 / 0755 under the usual
    umask 022). ``tempfile`` creates 0600 files and 0700 folders, which would keep results
    from colleagues on a shared machine."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a written file (or a folder's entries, after a rename) to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some platforms cannot open folders; nothing more to flush there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Files whose presence means a folder already holds a finished command's results.
RESULT_MARKERS = ("results.json",)


def output_dir(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    markers: tuple[str, ...] = RESULT_MARKERS,
    arg: str = "--out",
) -> Path:
    """Create (if needed) and return an output folder that is safe to write results into.

    A folder that already holds any of ``markers`` is refused unless ``overwrite``: results
    are never replaced silently.  A folder that cannot be created or written is refused too.
    Both are ``UsageError`` naming ``arg`` and the folder.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{arg}: {out} exists and is not a folder")
    held = [m for m in markers if (out / m).exists()]
    if held and not overwrite:
        raise UsageError(
            f"{arg}: {out} already holds results ({', '.join(held)}); pass --overwrite to "
            "replace them or choose another folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{arg}: cannot create {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"{arg}: {out} is not writable")
    return out


def remove_entries(folder: Path, names: Iterable[str]) -> None:
    """Delete the files and folders ``folder / name`` that exist (``--overwrite`` clearing
    the outputs a writer owns, and only those)."""
    for name in names:
        p = folder / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is flushed to disk (fsync) before the rename and the folder after it,
    so a crash (``kill -9``, power loss) at any moment leaves the old file or the new one,
    never a half-written one. The new file gets the usual mode (0644 under umask 022).
    The temporary name keeps the suffix of ``path`` so libraries that pick a format from the
    extension (PIL, OpenCV, trimesh, safetensors) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        default_mode(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent, directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON (numpy scalars/arrays allowed)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with an error naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_format_json(path: Path, fmt: str, version: int, arg: str) -> dict[str, Any]:
    """Read a versioned afford JSON file: an object whose ``format`` is ``fmt`` and whose
    ``format_version`` is ``version``. ``arg`` names the file in the not-found error (e.g.
    ``"--alignments a.json"``, a UsageError); the other errors are DataErrors naming ``path``."""
    if not path.is_file():
        raise UsageError(f"{arg}: file not found")
    data = read_json(path)
    where = str(path)
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object at the top level")
    if data.get("format") != fmt:
        raise DataError(f"{where}: format: expected {fmt!r}, got {data.get('format')!r}")
    if data.get("format_version") != version:
        raise DataError(
            f"{where}: format_version: expected {version}, got {data.get('format_version')!r}"
        )
    return data


def write_npz(
    path: str | os.PathLike, /, compresslevel: int | None = None, **arrays: np.ndarray
) -> Path:
    """Atomically write a compressed ``.npz`` (what ``np.load`` reads).

    ``compresslevel`` None: ``np.savez_compressed`` (zlib level 6); 1..9: that zlib level with
    fixed entry timestamps (1 is ~3x faster to write, files a little larger)."""
    buf = io.BytesIO()
    if compresslevel is None:
        np.savez_compressed(buf, **arrays)
    else:
        if not 1 <= compresslevel <= 9:
            raise UsageError(f"write_npz: compresslevel must be in 1..9, got {compresslevel}")
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type, info._compresslevel = zipfile.ZIP_DEFLATED, compresslevel
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` into memory."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (some libraries write paragraphs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: PIL modes of one integer or float channel wider than 8 bits (16-bit PNG / TIFF, 32-bit).
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def wide_to_uint8(im: Image.Image) -> np.ndarray:
    """A one-channel image of a wide mode (:data:`WIDE_MODES`) as uint8 (H,W), scaled, not
    clipped: 16-bit by 255/65535 (``I`` when its values exceed 255), float from [0, 1].

    PIL's own ``convert("L")`` / ``convert("RGB")`` clips at 255, which turns an ordinary
    16-bit photo or mask into a white picture."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        top = 1.0
    elif im.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        top = 65535.0
    else:
        top = 255.0
    arr = np.nan_to_num(arr, nan=0.0, posinf=top, neginf=0.0)
    return np.round(np.clip(arr, 0, top) * (255.0 / top)).astype(np.uint8)


def _read_pil(path: str | os.PathLike, mode: str) -> np.ndarray:
    """Read an image file converted to PIL ``mode`` as a uint8 array (DataError naming it).

    Wide one-channel images (16-bit, 32-bit, float) are scaled to 8 bits first
    (:func:`wide_to_uint8`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            if im.mode in WIDE_MODES:
                grey = Image.fromarray(wide_to_uint8(im))
                return np.asarray(grey.convert(mode), dtype=np.uint8).copy()
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({_first_line(exc)})") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode ({_first_line(exc)})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H,W,3). Grey and RGBA images are converted.

    Raises AffordError naming the file when it is missing or not an image.
    """
    return _read_pil(path, "RGB")


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 greyscale (H,W) (e.g. AGD20K GT maps)."""
    return _read_pil(path, "L")


def write_image(
    path: str | os.PathLike, image: np.ndarray, quality: int = 95, png_level: int | None = None
) -> Path:
    """Atomically write a uint8 (H,W) or (H,W,3) image; format from the suffix (png/jpg).

    ``quality``: JPEG quality; ``png_level``: zlib level 0-9 of a PNG (default PIL's 6; 1 is
    several times faster for slightly larger files, the pixels are the same)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise AffordError(f"{path}: write_image expects uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise AffordError(f"{path}: write_image expects (H,W) or (H,W,3|4), got {image.shape}")
    suffix = Path(path).suffix.lower()
    kwargs: dict[str, Any] = {}
    if suffix in (".jpg", ".jpeg"):
        kwargs = {"quality": quality, "subsampling": 0}
    elif suffix == ".png":
        kwargs = {"optimize": False}
        if png_level is not None:
            kwargs["compress_level"] = int(png_level)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, **kwargs)
    return Path(path)

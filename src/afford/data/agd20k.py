"""AGD20K (Seen / Unseen) and HICO-IIF datasets, plus any folder tree in the same layout.

Layout (REFERENCE_NOTES B)::

    <root>/trainset/egocentric/<affordance>/<object>/*.jpg
    <root>/trainset/exocentric/<affordance>/<object>/*.jpg
    <root>/testset/egocentric/<affordance>/<object>/*.jpg
    <root>/testset/GT/<affordance>/<object>/*.png          (same stem as the test image)

``<root>`` is ``AGD20K/Seen``, ``AGD20K/Unseen`` or ``HICO-IIF`` (for the AGD20K datasets the
parent ``AGD20K`` folder is accepted too).  The synthetic world writes the same layout.

Protocol:

* **Training sample** = one exocentric image (an epoch iterates over the exocentric images), its
  label from the affordance folder, one random egocentric image of the same
  ``<affordance>/<object>`` folder and ``E - 1`` more exocentric images of the same folder
  (``E = 3``).  Companions are drawn without replacement from the *other* images of the folder
  when there are enough, otherwise with replacement from the whole folder.  Each image:
  resize short side 256, random 224 crop, horizontal flip (:class:`~afford.data.transforms.CropFlip`);
  the cached CLIP affinity maps of the full image get exactly the same crop and flip.
  If an ``<affordance>/<object>`` exocentric folder has no egocentric image, the ego companion
  is drawn from the whole affordance (logged as a warning, counted in ``stats``).
* **Test**: resize to 224 x 224; only egocentric images with a GT png are used.
* **Validation** (``afford`` addition; the released code selects on test): carved from the
  training set *by image*, stratified per ``<affordance>/<object>`` folder and view: in each
  folder the images are ordered by ``sha256(f"{val_seed}:{relative path}")`` and the first
  ``round(val_fraction * n)`` (at most ``n - 1``, so every folder keeps a training image) go to
  validation.  Deterministic, disjoint, independent of the file system's listing order.
  Validation egocentric images are scored by KLD when ``trainset/GT/<aff>/<obj>/<stem>.png``
  exists for them (the synthetic world writes it), else by their classification loss.

Class lists: the real datasets use the fixed lists of REFERENCE_NOTES B in that index order
(a folder name outside the list is an error); ``dataset="folders"`` (custom / synthetic data)
reads the sorted affordance folder names of ``trainset/exocentric``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from afford.data.cache import MapCache, file_key
from afford.data.io import read_gray, read_image
from afford.data.transforms import CropFlip
from afford.errors import AffordError, DataError

log = logging.getLogger(__name__)

SEEN_CLASSES = [
    "beat", "boxing", "brush_with", "carry", "catch", "cut", "cut_with", "drag", "drink_with",
    "eat", "hit", "hold", "jump", "kick", "lie_on", "lift", "look_out", "open", "pack", "peel",
    "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick", "stir", "swing", "take_photo",
    "talk_on", "text_on", "throw", "type_on", "wash", "write",
]  # fmt: skip
UNSEEN_CLASSES = [
    "carry", "catch", "cut", "cut_with", "drink_with", "eat", "hit", "hold", "jump", "kick",
    "lie_on", "open", "peel", "pick_up", "pour", "push", "ride", "sip", "sit_on", "stick",
    "swing", "take_photo", "throw", "type_on", "wash",
]  # fmt: skip
HICO_IIF_CLASSES = [
    "cut_with", "drink_with", "hold", "open", "pour", "sip", "stick", "stir", "swing", "type_on",
]  # fmt: skip

DATASETS: dict[str, list[str] | None] = {
    "agd20k_seen": SEEN_CLASSES,
    "agd20k_unseen": UNSEEN_CLASSES,
    "hico_iif": HICO_IIF_CLASSES,
    "folders": None,
}
_SUBFOLDER = {"agd20k_seen": "Seen", "agd20k_unseen": "Unseen"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    """One image of the tree: its file, affordance folder, object folder, label and GT png."""

    path: Path
    affordance: str
    obj: str
    label: int
    gt: Path | None = None

    @property
    def folder(self) -> tuple[str, str]:
        return (self.affordance, self.obj)


@dataclass
class AffordanceData:
    """A scanned dataset: class list and the records of every split."""

    root: Path
    dataset: str
    classes: list[str]
    train_ego: list[ImageRecord] = field(default_factory=list)
    train_exo: list[ImageRecord] = field(default_factory=list)
    val_ego: list[ImageRecord] = field(default_factory=list)
    val_exo: list[ImageRecord] = field(default_factory=list)
    test: list[ImageRecord] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def split(self, name: str) -> list[ImageRecord]:
        """Evaluation records: ``"test"`` (ego images with GT) or ``"val"`` (val ego images)."""
        if name == "test":
            return self.test
        if name == "val":
            return self.val_ego
        raise AffordError(f"unknown split {name!r}; use 'test' or 'val'")


# ---------------------------------------------------------------------------------- scanning
def resolve_root(root: str | os.PathLike, dataset: str) -> Path:
    """The folder holding ``trainset``/``testset`` (accepts ``AGD20K`` for the AGD20K sets)."""
    root = Path(root).expanduser()
    if dataset not in DATASETS:
        raise AffordError(
            f"data.dataset: unknown dataset {dataset!r}; choose one of {list(DATASETS)}"
        )
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (data.root)")
    sub = _SUBFOLDER.get(dataset)
    if sub and not (root / "trainset").is_dir() and not (root / "testset").is_dir():
        if (root / sub).is_dir():
            return root / sub
    return root


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(
            f"{path}: missing folder ({what}); expected the AGD20K layout "
            "<root>/{trainset,testset}/{egocentric,exocentric,GT}/<affordance>/<object>/<image>"
        )
    return path


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_view(view_dir: Path, classes: list[str], view: str) -> list[ImageRecord]:
    """Records of ``<view_dir>/<affordance>/<object>/<image>``; layout errors name the folder."""
    index = {c: i for i, c in enumerate(classes)}
    records: list[ImageRecord] = []
    for aff_dir in _subdirs(view_dir):
        if aff_dir.name not in index:
            raise DataError(
                f"{aff_dir}: affordance folder {aff_dir.name!r} is not a class of this dataset "
                f"(known: {', '.join(classes)})"
            )
        stray = sorted(
            p.name for p in aff_dir.iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if stray:
            raise DataError(
                f"{aff_dir}: {view} images must sit in <affordance>/<object>/ sub-folders, found "
                f"files directly in the affordance folder (e.g. {stray[0]!r})"
            )
        for obj_dir in _subdirs(aff_dir):
            files = sorted(
                p for p in obj_dir.iterdir() if p.is_file() and not p.name.startswith(".")
            )
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
            if not images:
                raise DataError(f"{obj_dir}: object folder holds no images ({view})")
            for p in images:
                records.append(ImageRecord(p, aff_dir.name, obj_dir.name, index[aff_dir.name]))
    return records


def _folder_classes(train_dir: Path) -> list[str]:
    names = sorted(
        p.name
        for p in _subdirs(_require_dir(train_dir / "exocentric", "exocentric training images"))
    )
    if not names:
        raise DataError(f"{train_dir / 'exocentric'}: no affordance folders")
    return names


def _attach_gt(records: list[ImageRecord], gt_dir: Path) -> tuple[list[ImageRecord], int]:
    """Keep records with a GT png ``<gt_dir>/<aff>/<obj>/<stem>.png``; return (kept, dropped)."""
    kept = []
    for r in records:
        gt = gt_dir / r.affordance / r.obj / f"{r.path.stem}.png"
        if gt.is_file():
            kept.append(ImageRecord(r.path, r.affordance, r.obj, r.label, gt))
    return kept, len(records) - len(kept)


def _val_order_key(path: Path, root: Path, seed: int) -> str:
    rel = path.relative_to(root).as_posix()
    return hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest()


def carve_validation(
    records: list[ImageRecord], root: Path, fraction: float, seed: int = 0
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split records into (train, val), per ``<affordance>/<object>`` folder, by image.

    In each folder of ``n`` images the ``round(fraction * n)`` images (capped at ``n - 1``)
    with the smallest ``sha256(f"{seed}:{relative path}")`` go to validation.
    """
    if not 0.0 <= fraction < 1.0:
        raise AffordError(f"data.val_fraction must be in [0, 1), got {fraction!r}")
    by_folder: dict[tuple[str, str], list[ImageRecord]] = {}
    for r in records:
        by_folder.setdefault(r.folder, []).append(r)
    val_set: set[Path] = set()
    for recs in by_folder.values():
        n_val = min(len(recs) - 1, int(np.floor(fraction * len(recs) + 0.5)))
        if n_val > 0:
            ordered = sorted(recs, key=lambda r: _val_order_key(r.path, root, seed))
            val_set.update(r.path for r in ordered[:n_val])
    train = [r for r in records if r.path not in val_set]
    val = [r for r in records if r.path in val_set]
    return train, val


def scan_dataset(
    root: str | os.PathLike,
    dataset: str = "folders",
    *,
    train: bool = True,
    test: bool = True,
    val_fraction: float = 0.1,
    val_seed: int = 0,
) -> AffordanceData:
    """Scan an AGD20K-layout tree.

    Args:
        root: dataset folder (see module docstring).
        dataset: "agd20k_seen" | "agd20k_unseen" | "hico_iif" (fixed class lists) or
            "folders" (classes = sorted affordance folders of ``trainset/exocentric``).
        train, test: which parts to scan (both required to exist when asked for).
        val_fraction, val_seed: validation split carved from the training set.
    """
    root = resolve_root(root, dataset)
    fixed = DATASETS[dataset]
    if fixed is not None:
        classes = list(fixed)
    elif train or (root / "trainset" / "exocentric").is_dir():
        classes = _folder_classes(root / "trainset")
    else:
        classes = sorted(
            p.name for p in _subdirs(_require_dir(root / "testset" / "egocentric", "test images"))
        )
    data = AffordanceData(root=root, dataset=dataset, classes=classes)
    if train:
        tdir = _require_dir(root / "trainset", "training set")
        ego = _scan_view(
            _require_dir(tdir / "egocentric", "egocentric training images"), classes, "egocentric"
        )
        exo = _scan_view(
            _require_dir(tdir / "exocentric", "exocentric training images"), classes, "exocentric"
        )
        if not exo:
            raise DataError(f"{tdir / 'exocentric'}: no exocentric training images")
        if not ego:
            raise DataError(f"{tdir / 'egocentric'}: no egocentric training images")
        data.train_ego, data.val_ego = carve_validation(ego, root, val_fraction, val_seed)
        data.train_exo, data.val_exo = carve_validation(exo, root, val_fraction, val_seed)
        if (tdir / "GT").is_dir():
            with_gt, _ = _attach_gt(data.val_ego, tdir / "GT")
            if len(with_gt) == len(data.val_ego):
                data.val_ego = with_gt
        data.stats.update(
            train_ego=len(data.train_ego), train_exo=len(data.train_exo),
            val_ego=len(data.val_ego), val_exo=len(data.val_exo),
        )  # fmt: skip
    if test:
        sdir = _require_dir(root / "testset", "test set")
        ego = _scan_view(
            _require_dir(sdir / "egocentric", "egocentric test images"), classes, "egocentric"
        )
        data.test, dropped = _attach_gt(ego, _require_dir(sdir / "GT", "test GT maps"))
        if not data.test:
            raise DataError(
                f"{sdir / 'GT'}: no GT png matches any test image (<aff>/<obj>/<stem>.png)"
            )
        if dropped:
            log.info("%s: %d test images without a GT png are not used (protocol)", sdir, dropped)
        data.stats.update(test=len(data.test), test_without_gt=dropped)
    return data


# ---------------------------------------------------------------------------------- loading
def _to_float_image(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


class _Store:
    """Decoded images (optionally kept in memory) and the cached maps of every image."""

    def __init__(self, cache: MapCache | None, preload: bool):
        self.cache = cache
        self.preload = preload
        self._images: dict[Path, np.ndarray] = {}
        self._maps: dict[Path, dict[str, np.ndarray]] = {}

    def image(self, path: Path) -> np.ndarray:
        img = self._images.get(path)
        if img is None:
            img = read_image(path)
            if self.preload:
                self._images[path] = img
        return img

    def load_maps(self, needs: dict[Path, set[str]]) -> None:
        """Read the cached maps named in ``needs`` into memory; one error lists what is missing."""
        if self.cache is None:
            raise DataError("no affinity map cache configured (data.cache)")
        missing: list[str] = []
        for path, names in needs.items():
            if path in self._maps and names <= set(self._maps[path]):
                continue
            entry = self.cache.get(file_key(path)) or {}
            absent = sorted(n for n in names if n not in entry)
            if absent:
                missing.append(f"{path} ({', '.join(absent)})")
                continue
            self._maps[path] = {n: entry[n] for n in names}
        if missing:
            raise DataError(
                f"{self.cache.dir}: {len(missing)} image(s) have no cached affinity map, e.g. "
                f"{missing[0]}; compute them with the CLIP extractor (afford train does this "
                "when data.affinity is 'clip') or point data.cache at the right cache"
            )

    def map(self, path: Path, name: str) -> torch.Tensor:
        return torch.from_numpy(self._maps[path][name])


def ego_map_names(cls: str) -> set[str]:
    """Cached maps needed for an egocentric image of class ``cls``."""
    return {f"action:{cls}"}


def exo_map_names(cls: str) -> set[str]:
    """Cached maps needed for an exocentric image of class ``cls``."""
    return {f"action:{cls}", f"entity:{cls}"}


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of training sample ``index`` in epoch ``epoch``."""
    return np.random.default_rng([seed, epoch, index])


class TrainSet:
    """Training samples of the AGD20K protocol (one per exocentric image), batched per epoch.

    A map-style dataset: ``dataset[(epoch, index)]`` is sample ``index`` of epoch ``epoch``,
    its random choices (companions, crops, flips) from ``np.random.default_rng([seed, epoch,
    index])`` only, so a sample is the same whatever the worker, the process or the batch
    that reads it; the epoch's order is ``np.random.default_rng([seed, epoch])``'s
    permutation (:meth:`batches`, or the engine's sharded DataLoader).

    ``augment=False`` (an afford option for fast CPU runs, not the protocol): every view is
    the full image resized to ``crop x crop`` with no crop or flip, and batches carry image
    ids instead of pixels, so the trainer can compute the frozen DINO outputs once per image.
    """

    def __init__(
        self,
        exo: list[ImageRecord],
        ego: list[ImageRecord],
        classes: list[str],
        cache: MapCache | None,
        *,
        num_exo: int = 3,
        resize: int = 256,
        crop: int = 224,
        flip_prob: float = 0.5,
        preload: bool = False,
        with_maps: bool = True,
        augment: bool = True,
        seed: int = 0,
    ):
        if not exo:
            raise DataError("TrainSet: no exocentric images")
        if num_exo < 1:
            raise AffordError(f"data.num_exo must be >= 1, got {num_exo}")
        self.exo, self.ego, self.classes = exo, ego, classes
        self.num_exo, self.resize, self.crop, self.flip_prob = num_exo, resize, crop, flip_prob
        self.with_maps, self.augment, self.seed = with_maps, augment, int(seed)
        self.store = _Store(cache, preload)
        self.paths: list[Path] = sorted({r.path for r in [*exo, *ego]})
        self.path_id = {p: i for i, p in enumerate(self.paths)}
        self.exo_by_folder: dict[tuple[str, str], list[ImageRecord]] = {}
        for r in exo:
            self.exo_by_folder.setdefault(r.folder, []).append(r)
        ego_by_folder: dict[tuple[str, str], list[ImageRecord]] = {}
        ego_by_aff: dict[str, list[ImageRecord]] = {}
        for r in ego:
            ego_by_folder.setdefault(r.folder, []).append(r)
            ego_by_aff.setdefault(r.affordance, []).append(r)
        self.ego_pool: dict[tuple[str, str], list[ImageRecord]] = {}
        fallback = 0
        for folder in self.exo_by_folder:
            pool = ego_by_folder.get(folder)
            if not pool:
                pool = ego_by_aff.get(folder[0])
                if not pool:
                    raise DataError(
                        f"no egocentric training image for affordance {folder[0]!r} (exocentric "
                        f"folder {folder[0]}/{folder[1]} needs an egocentric companion)"
                    )
                fallback += 1
            self.ego_pool[folder] = pool
        if fallback:
            log.warning(
                "%d exocentric <affordance>/<object> folders have no egocentric images; their ego "
                "companion is drawn from the whole affordance", fallback,
            )  # fmt: skip
        self.stats = {"ego_fallback_folders": fallback}
        if with_maps:
            needs: dict[Path, set[str]] = {}
            for r in exo:
                needs.setdefault(r.path, set()).update(exo_map_names(r.affordance))
            for pool in self.ego_pool.values():
                for r in pool:
                    needs.setdefault(r.path, set()).update(ego_map_names(r.affordance))
            self.store.load_maps(needs)

    def __len__(self) -> int:
        return len(self.exo)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Sample ``index`` of epoch ``epoch`` (``key = (epoch, index)``), see the class."""
        epoch, index = key
        return self.sample(int(index), sample_rng(self.seed, int(epoch), int(index)))

    def _view(self, rec: ImageRecord, names: list[str], rng: np.random.Generator):
        if not self.augment:  # fixed view: resize to crop x crop; images on demand (image())
            tf = CropFlip.resize_only(self.crop)
            maps = [self.store.map(rec.path, n) for n in names] if self.with_maps else []
            return None, [tf.apply_map(m) for m in maps]
        img = self.store.image(rec.path)
        tf = CropFlip.random(img.shape[:2], rng, self.resize, self.crop, self.flip_prob)
        image = tf.apply_image(_to_float_image(img))
        maps = [tf.apply_map(self.store.map(rec.path, n)) for n in names] if self.with_maps else []
        return image, maps

    def images(self, ids: torch.Tensor) -> torch.Tensor:
        """Un-augmented images (N,3,crop,crop) of image ids (``augment=False`` batches carry
        ``ego_id`` / ``exo_ids`` instead of images, so frozen features can be memoised)."""
        tf = CropFlip.resize_only(self.crop)
        return torch.stack(
            [tf.apply_image(_to_float_image(self.store.image(self.paths[int(i)]))) for i in ids]
        )

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One training sample (shapes without the batch dim): ``ego_image (3,224,224)``,
        ``exo_images (E,3,224,224)`` (only with ``augment``), ``ego_action (14,14)``,
        ``exo_action (E,14,14)``, ``exo_entity (E,14,14)``, ``label ()`` long, ``ego_id ()``
        and ``exo_ids (E,)`` (indices into ``paths``)."""
        anchor = self.exo[index]
        cls = anchor.affordance
        folder = self.exo_by_folder[anchor.folder]
        others = [r for r in folder if r.path != anchor.path]
        k = self.num_exo - 1
        if len(others) >= k:
            picks = [others[i] for i in rng.choice(len(others), size=k, replace=False)]
        else:
            picks = [folder[i] for i in rng.integers(0, len(folder), size=k)]
        pool = self.ego_pool[anchor.folder]
        ego = pool[int(rng.integers(0, len(pool)))]
        ego_img, ego_maps = self._view(ego, [f"action:{cls}"], rng)
        exo_imgs, exo_act, exo_ent = [], [], []
        for r in [anchor, *picks]:
            img, maps = self._view(r, [f"action:{cls}", f"entity:{cls}"], rng)
            exo_imgs.append(img)
            if maps:
                exo_act.append(maps[0])
                exo_ent.append(maps[1])
        out = {
            "label": torch.tensor(anchor.label, dtype=torch.long),
            "ego_id": torch.tensor(self.path_id[ego.path], dtype=torch.long),
            "exo_ids": torch.tensor([self.path_id[r.path] for r in [anchor, *picks]]),
        }
        if self.augment:
            out.update(ego_image=ego_img, exo_images=torch.stack(exo_imgs))
        if self.with_maps:
            out.update(
                ego_action=ego_maps[0],
                exo_action=torch.stack(exo_act),
                exo_entity=torch.stack(exo_ent),
            )
        return out

    def batches(
        self, epoch: int, batch_size: int, seed: int = 0, max_batches: int | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled batches of one epoch (the last one may be smaller)."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self))
        n_batches = int(np.ceil(len(order) / batch_size))
        if max_batches is not None:
            n_batches = min(n_batches, max_batches)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            yield collate([self.sample(int(i), sample_rng(seed, epoch, int(i))) for i in idx])

    def num_batches(self, batch_size: int, max_batches: int | None = None) -> int:
        n = int(np.ceil(len(self) / batch_size))
        return n if max_batches is None else min(n, max_batches)


class EvalSet:
    """Egocentric evaluation images (test, or validation): resize to 224 x 224, no crop/flip.

    Items: ``image (3,224,224)``, ``ego_action (14,14)`` (when maps are used), ``label``,
    ``gt`` (H,W) float in [0,1] at the GT png's own size (None without GT), ``record``.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        classes: list[str],
        cache: MapCache | None,
        *,
        size: int = 224,
        with_maps: bool = True,
        preload: bool = False,
    ):
        self.records, self.classes, self.size, self.with_maps = records, classes, size, with_maps
        self.store = _Store(cache, preload)
        if with_maps:
            self.store.load_maps({r.path: ego_map_names(r.affordance) for r in records})

    def __len__(self) -> int:
        return len(self.records)

    def item(self, index: int) -> dict:
        rec = self.records[index]
        tf = CropFlip.resize_only(self.size)
        out: dict = {
            "image": tf.apply_image(_to_float_image(self.store.image(rec.path))),
            "label": torch.tensor(rec.label, dtype=torch.long),
            "gt": None
            if rec.gt is None
            else torch.from_numpy(read_gray(rec.gt).astype(np.float32) / 255.0),
            "record": rec,
        }
        if self.with_maps:
            out["ego_action"] = tf.apply_map(self.store.map(rec.path, f"action:{rec.affordance}"))
        return out

    def batches(self, batch_size: int) -> Iterator[dict]:
        """Batches in file order: tensors stacked; ``gt`` and ``record`` as lists."""
        for start in range(0, len(self), batch_size):
            items = [self.item(i) for i in range(start, min(len(self), start + batch_size))]
            batch = {"image": torch.stack([it["image"] for it in items]),
                     "label": torch.stack([it["label"] for it in items]),
                     "gt": [it["gt"] for it in items], "record": [it["record"] for it in items]}  # fmt: skip
            if self.with_maps:
                batch["ego_action"] = torch.stack([it["ego_action"] for it in items])
            yield batch


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of samples (same keys) along a new batch dimension."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}

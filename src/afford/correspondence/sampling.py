"""Training batches for the correspondence model (paper Sec. 4.2-4.3, REFERENCE_NOTES C).

A batch holds ``P`` pairs. Per pair: a function ``F`` drawn uniformly among the functions with
at least two labelled items, then two distinct items ``(asset, view)`` having a valid
(pseudo-)label for ``F`` (image 0 and image 1). Per image ``N`` points inside the functional
part mask and ``N`` object points outside it (functional loss, Eq. 1). For the spatial loss
(Eq. 2), a second view of image 0's asset and ``Ns`` multi-view correspondences whose image-0
end lies inside the part (image 2). Images are the 224 square crops (1.2 x the object's longer
side) with the background replaced by a random solid colour or two-colour gradient, plus
uniform noise in [-50, 50] half the time.

Everything random comes from generators seeded by ``(seed, step, pair)``, so batch ``step``
is the same whatever happened before it (exact resume) and whichever worker or process draws
a pair.  Point sampling is vectorised over the images of a pair: ``choose`` draws distinct indices (with replacement only when a set is smaller than
``N``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from afford.data.correspondence import CorrespondenceDataset, views_to_crop
from afford.errors import AffordError

log = logging.getLogger(__name__)

SPATIAL_REGIONS = ("part", "object")


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator determined by the integer ``keys`` only (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    gen = torch.Generator()
    gen.manual_seed(int(state) & ((1 << 63) - 1))
    return gen


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator determined by ``(seed, step)`` only."""
    return seeded_generator(seed, step)


def choose(counts: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Draw ``n`` indices in ``[0, counts[b])`` per row.

    Distinct when ``counts[b] >= n``; otherwise all ``counts[b]`` indices appear first and the
    remaining slots are drawn uniformly with replacement.

    Args: counts (B,) int64, every entry >= 1. Returns (B,n) int64.
    """
    counts = counts.to(torch.int64)
    if counts.numel() and int(counts.min()) < 1:
        raise AffordError("choose: every set must have at least one element")
    b = counts.shape[0]
    width = max(int(counts.max()) if b else 1, n)
    keys = torch.rand((b, width), generator=gen)
    ar = torch.arange(width)
    keys = torch.where(ar[None, :] < counts[:, None], keys, torch.full_like(keys, -1.0))
    idx = keys.topk(n, dim=1).indices  # distinct valid indices first (keys >= 0)
    extra = (torch.rand((b, n), generator=gen) * counts[:, None]).long()
    slot = torch.arange(n)[None, :]
    return torch.where(slot < counts[:, None], idx, extra.clamp_max(counts[:, None] - 1))


def sample_mask_points(masks: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """``n`` pixels of each mask, uniformly (distinct when the mask has >= n pixels).

    Args: masks (B,H,W) bool, each with >= 1 pixel. Returns (B,n,2) int64 ``(row, col)``.
    """
    b, h, w = masks.shape
    flat = masks.reshape(b, -1)
    counts = flat.sum(1)
    if b and int(counts.min()) < 1:
        bad = torch.nonzero(counts == 0).flatten().tolist()
        raise AffordError(f"sample_mask_points: mask(s) {bad} are empty")
    pos = choose(counts, n, gen)  # (B,n) rank among the mask pixels
    csum = flat.long().cumsum(1)  # csum[k] = mask pixels in [0..k]
    pix = torch.searchsorted(csum, pos + 1)  # first k with csum[k] >= pos + 1
    return torch.stack((pix // w, pix % w), dim=-1)


def randomize_background(
    images: Tensor,
    masks: Tensor,
    gen: torch.Generator,
    noise: float = 50.0,
    p_noise: float = 0.5,
    p_gradient: float = 0.5,
) -> Tensor:
    """Replace the background with a random solid colour or a two-colour linear gradient.

    Half the images (``p_noise``) get i.i.d. uniform noise in ``[-noise, noise]`` (0..255 scale)
    on the background. Args: images (B,H,W,3) uint8, masks (B,H,W) bool (object pixels).
    Returns (B,3,H,W) float in [0, 1].
    """
    b, h, w, _ = images.shape
    img = images.permute(0, 3, 1, 2).float()
    c0 = torch.rand((b, 3, 1, 1), generator=gen) * 255
    c1 = torch.rand((b, 3, 1, 1), generator=gen) * 255
    theta = torch.rand((b,), generator=gen) * (2 * torch.pi)
    grad = torch.rand((b,), generator=gen) < p_gradient
    yy = torch.linspace(0, 1, h)[:, None].expand(h, w)
    xx = torch.linspace(0, 1, w)[None, :].expand(h, w)
    proj = torch.cos(theta)[:, None, None] * xx + torch.sin(theta)[:, None, None] * yy  # (B,H,W)
    lo = proj.amin(dim=(1, 2), keepdim=True)
    hi = proj.amax(dim=(1, 2), keepdim=True)
    tt = ((proj - lo) / (hi - lo).clamp_min(1e-6))[:, None]  # (B,1,H,W)
    tt = torch.where(grad[:, None, None, None], tt, torch.zeros_like(tt))
    bg = c0 * (1 - tt) + c1 * tt
    noisy = torch.rand((b,), generator=gen) < p_noise
    eps = (torch.rand((b, 3, h, w), generator=gen) * 2 - 1) * noise
    bg = (bg + eps * noisy[:, None, None, None]).clamp(0, 255)
    out = torch.where(masks[:, None], img, bg)
    return out / 255.0


@dataclass
class TrainingSet:
    """Pre-cropped training views and the index the sampler draws from.

    Arrays (V views, I items, S = crop size):
        images (V,S,S,3) uint8, masks (V,S,S) bool, view_asset (V,), view_number (V,);
        item_view (I,), item_function (I,) (index into ``functions``), part (I,S,S) bool;
        spatial groups: group_item (G,), group_view (G,) (the other view), group_start/count
        into ``corr_src``/``corr_dst`` (M,2) float crop coordinates; item_groups (I+1,) CSR.
    """

    functions: list[str]
    assets: list[str]
    images: np.ndarray
    masks: np.ndarray
    view_asset: np.ndarray
    view_number: np.ndarray
    item_view: np.ndarray
    item_function: np.ndarray
    part: np.ndarray
    group_item: np.ndarray
    group_view: np.ndarray
    group_start: np.ndarray
    group_count: np.ndarray
    item_groups: np.ndarray
    corr_src: np.ndarray
    corr_dst: np.ndarray
    crop_size: int = 224

    @property
    def n_items(self) -> int:
        return int(self.item_view.shape[0])

    def summary(self) -> dict:
        return {
            "assets": len(self.assets),
            "views": int(self.images.shape[0]),
            "items": self.n_items,
            "functions": {
                f: int((self.item_function == i).sum()) for i, f in enumerate(self.functions)
            },
            "spatial_groups": int(self.group_item.shape[0]),
            "correspondences": int(self.corr_src.shape[0]),
        }


def build_training_set(
    dataset: CorrespondenceDataset,
    asset_ids: list[str],
    labels: str = "pseudo",
    min_points: int = 1,
    min_corr: int = 8,
    functions: list[str] | None = None,
    spatial_region: str = "part",
) -> TrainingSet:
    """Crop every view of ``asset_ids`` and index the (asset, view, function) items.

    Args:
        labels: "pseudo" (the paper: ``pseudo_mask`` where ``pseudo_valid``) or "gt"
            (``gt_mask``; an oracle ablation).
        min_points: items need at least this many part and non-part pixels in the crop.
        min_corr: a (item, other view) spatial group needs this many correspondences.
        functions: global function list (default: ``dataset.functions``).
        spatial_region: where the image-0 ends of the spatial correspondences may lie:
            "part" (inside the item's functional part, the released code) or "object" (any
            object pixel: the paper's Eq. 2, "q a pixel in the first view"). With "object" the
            correspondence rows are stored once per view pair and shared by the items of a view.
    Items failing the checks are dropped and counted in a log message (never silently).
    """
    if labels not in ("pseudo", "gt"):
        raise AffordError(f"labels must be 'pseudo' or 'gt', got {labels!r}")
    if spatial_region not in SPATIAL_REGIONS:
        raise AffordError(
            f"spatial_region must be one of {SPATIAL_REGIONS}, got {spatial_region!r}"
        )
    if not asset_ids:
        raise AffordError(f"{dataset.root}: no training assets")
    functions = list(functions or dataset.functions)
    fidx = {f: i for i, f in enumerate(functions)}
    s = dataset.crop_size
    images, masks, v_asset, v_num = [], [], [], []
    it_view, it_func, parts = [], [], []
    g_item, g_view, g_start, g_count = [], [], [], []
    csrc, cdst = [], []
    n_corr = 0
    dropped = {"invalid": 0, "small": 0}
    for a, aid in enumerate(asset_ids):
        info = dataset.asset(aid)
        v = dataset.views(aid)
        if labels == "gt" and "gt_mask" not in v:
            raise AffordError(f"{info.views}: labels='gt' needs the 'gt_mask' array")
        base = len(images)
        item_of = np.full((info.n_views, len(info.functions)), -1, dtype=np.int64)
        for k in range(info.n_views):
            crop = dataset.crop_view(aid, k)
            images.append(crop["image"])
            masks.append(crop["mask"])
            v_asset.append(a)
            v_num.append(k)
            lab = crop["gt_mask"] if labels == "gt" else crop["pseudo_mask"]
            valid = np.ones(len(info.functions), bool) if labels == "gt" else crop["pseudo_valid"]
            for fi, f in enumerate(info.functions):
                if f not in fidx:
                    continue
                if not valid[fi]:
                    dropped["invalid"] += 1
                    continue
                part = lab[fi] & crop["mask"]
                if part.sum() < min_points or (crop["mask"] & ~part).sum() < min_points:
                    dropped["small"] += 1
                    continue
                item_of[k, fi] = len(it_view)
                it_view.append(base + k)
                it_func.append(fidx[f])
                parts.append(part)
        if info.multiview is None:
            continue
        mv = dataset.multiview(aid)
        pairs, off = mv["view_pairs"].astype(np.int64), mv["offsets"].astype(np.int64)
        if pairs.shape[0] == 0:
            continue
        row_pair = np.repeat(np.arange(pairs.shape[0]), np.diff(off))
        vi, vj = pairs[row_pair, 0], pairs[row_pair, 1]
        boxes = v["crop_box"]
        src_c = views_to_crop(mv["src"], vi, boxes, s)  # (M,2)
        dst_c = views_to_crop(mv["dst"], vj, boxes, s)
        inside = np.all((src_c > -0.5) & (src_c < s - 0.5) & (dst_c > -0.5) & (dst_c < s - 0.5), 1)
        src_pix = np.rint(mv["src"]).astype(np.int64)
        h, w = info.image_size
        src_pix[:, 0] = src_pix[:, 0].clip(0, h - 1)
        src_pix[:, 1] = src_pix[:, 1].clip(0, w - 1)
        if spatial_region == "object":
            rows = np.flatnonzero(inside & v["mask"][vi, src_pix[:, 0], src_pix[:, 1]])
            order = np.lexsort((vj[rows], vi[rows]))
            rows = rows[order]
            keys = np.stack([vi[rows], vj[rows]], 1)
            if rows.size:
                uniq, start, count = np.unique(keys, axis=0, return_index=True, return_counts=True)
                keep = count >= min_corr
                uniq, start, count = uniq[keep], start[keep], count[keep]
                # every item of view uniq[g, 0] gets group g (the rows are stored once)
                items = item_of[uniq[:, 0]]  # (G', F)
                gi, fi_ = np.nonzero(items >= 0)
                g_item.append(items[gi, fi_])
                g_view.append(base + uniq[gi, 1])
                g_start.append(n_corr + start[gi])
                g_count.append(count[gi])
                csrc.append(src_c[rows].astype(np.float32))
                cdst.append(dst_c[rows].astype(np.float32))
                n_corr += rows.shape[0]
            continue
        lab_full = v["gt_mask"] if labels == "gt" else v["pseudo_mask"]
        in_part = lab_full[vi, :, src_pix[:, 0], src_pix[:, 1]]  # (M,F)
        for fi in range(len(info.functions)):
            items = item_of[vi, fi]
            ok = inside & in_part[:, fi] & (items >= 0)
            if not ok.any():
                continue
            rows = np.flatnonzero(ok)
            key_item, key_view = items[rows], vj[rows]
            order = np.lexsort((key_view, key_item))
            rows, key_item, key_view = rows[order], key_item[order], key_view[order]
            keys = np.stack([key_item, key_view], 1)
            uniq, start, count = np.unique(keys, axis=0, return_index=True, return_counts=True)
            keep = count >= min_corr
            csrc.append(src_c[rows].astype(np.float32))
            cdst.append(dst_c[rows].astype(np.float32))
            g_item.append(uniq[keep, 0])
            g_view.append(base + uniq[keep, 1])
            g_start.append(n_corr + start[keep])
            g_count.append(count[keep])
            n_corr += rows.shape[0]
    if not it_view:
        raise AffordError(
            f"{dataset.root}: no usable training items (all pseudo labels invalid or empty)"
        )
    if sum(dropped.values()):
        log.info(
            "training set: dropped %d items with invalid labels and %d with too few part/non-part "
            "pixels",
            dropped["invalid"],
            dropped["small"],
        )

    def cat(parts_: list, dtype, width: int | None = None) -> np.ndarray:
        if parts_:
            return np.concatenate(parts_).astype(dtype)
        return np.zeros((0,) if width is None else (0, width), dtype)

    group_item = cat(g_item, np.int64)
    order = np.argsort(group_item, kind="stable")
    group_item = group_item[order]
    n_items = len(it_view)
    item_groups = np.zeros(n_items + 1, np.int64)
    np.add.at(item_groups, group_item + 1, 1)
    return TrainingSet(
        functions=functions,
        assets=list(asset_ids),
        images=np.stack(images),
        masks=np.stack(masks),
        view_asset=np.asarray(v_asset, np.int64),
        view_number=np.asarray(v_num, np.int64),
        item_view=np.asarray(it_view, np.int64),
        item_function=np.asarray(it_func, np.int64),
        part=np.stack(parts),
        group_item=group_item,
        group_view=cat(g_view, np.int64)[order],
        group_start=cat(g_start, np.int64)[order],
        group_count=cat(g_count, np.int64)[order],
        item_groups=np.cumsum(item_groups),
        corr_src=cat(csrc, np.float32, 2),
        corr_dst=cat(cdst, np.float32, 2),
        crop_size=s,
    )


class PairSampler:
    """Draws training batches from a :class:`TrainingSet` (see the module docstring).

    Args:
        pairs: P pairs per batch (paper: 50).
        n_points: N part and N non-part points per image (paper: 128).
        n_spatial: Ns multi-view correspondences per pair (paper: 128); 0 disables image 2.
        seed: batch ``step`` depends on ``(seed, step)`` only.
        noise, p_noise: background noise amplitude (0..255) and probability.
        feature_augs: K > 0 returns ``augs`` (a background randomisation index in [0, K) per
            image, for a :class:`~afford.correspondence.featbank.FeatureBank`) instead of
            rendering ``images``; 0 renders the images.
    """

    def __init__(
        self,
        data: TrainingSet,
        pairs: int = 50,
        n_points: int = 128,
        n_spatial: int = 128,
        seed: int = 0,
        noise: float = 50.0,
        p_noise: float = 0.5,
        feature_augs: int = 0,
    ) -> None:
        if pairs < 1 or n_points < 1 or n_spatial < 0 or feature_augs < 0:
            raise AffordError("pairs and n_points must be >= 1, n_spatial and feature_augs >= 0")
        self.data, self.pairs, self.n_points, self.n_spatial = data, pairs, n_points, n_spatial
        self.seed, self.noise, self.p_noise = seed, noise, p_noise
        self.feature_augs = int(feature_augs)
        n_groups = np.diff(data.item_groups)
        eligible = n_groups > 0 if n_spatial > 0 else np.ones(data.n_items, bool)
        nf = len(data.functions)
        # per function: all items (image 1 pool) and eligible items (image 0 pool)
        self.items_by_f = [np.flatnonzero(data.item_function == f) for f in range(nf)]
        self.anchors_by_f = [
            np.flatnonzero((data.item_function == f) & eligible) for f in range(nf)
        ]
        self.usable = np.asarray(
            [
                f
                for f in range(nf)
                if len(self.items_by_f[f]) >= 2 and len(self.anchors_by_f[f]) >= 1
            ]
        )
        if self.usable.size == 0:
            raise AffordError(
                "no function has two labelled items"
                + (" and multi-view correspondences inside the part" if n_spatial else "")
                + f": {data.summary()}"
            )
        self._images = torch.from_numpy(data.images)
        self._masks = torch.from_numpy(data.masks)
        self._part = torch.from_numpy(data.part)

    def _pick(self, pools: list[np.ndarray], f: np.ndarray, u: Tensor) -> np.ndarray:
        sizes = np.asarray([len(pools[k]) for k in f])
        k = np.minimum((u.numpy() * sizes).astype(np.int64), sizes - 1)
        return np.asarray([pools[ff][kk] for ff, kk in zip(f, k)], np.int64)

    def batch(self, step: int) -> dict[str, Tensor]:
        """Batch number ``step``.

        Returns dict: ``views`` (2P or 3P,) training-view index of [image 0 | image 1 | image 2];
        ``images`` (2P or 3P, 3, S, S) float in [0,1] in that order, or with ``feature_augs`` K
        > 0 ``augs`` (2P or 3P,) int64 in [0, K) instead; ``function`` (P,) index into ``functions``; ``part0``, ``non0``, ``part1``,
        ``non1`` (P,N,2) (row, col) crop pixels; ``src``, ``dst`` (P,Ns,2) float crop
        coordinates in image 0 / image 2 (when n_spatial > 0); ``item0``, ``item1``, ``view2``.
        """
        return collate_pairs([self.pair(step, j) for j in range(self.pairs)])

    def pair(self, step: int, j: int) -> dict[str, Tensor]:
        """Pair ``j`` of batch ``step`` (the entries of :meth:`batch` for one pair, images
        and views ``(2 or 3, ...)``), drawn from a generator seeded by ``(seed, step, j)``
        only: the same whichever worker or process draws it (:func:`collate_pairs` joins)."""
        return self._draw(seeded_generator(self.seed, step, j), 1)

    def _draw(self, gen: torch.Generator, p: int) -> dict[str, Tensor]:
        d, n = self.data, self.n_points
        f = self.usable[
            (torch.rand(p, generator=gen).numpy() * len(self.usable))
            .astype(np.int64)
            .clip(max=len(self.usable) - 1)
        ]
        item0 = self._pick(self.anchors_by_f, f, torch.rand(p, generator=gen))
        # image 1: uniform among the other items of the function (distinct from item 0)
        sizes = np.asarray([len(self.items_by_f[k]) for k in f])
        pos0 = np.asarray([np.searchsorted(self.items_by_f[k], i) for k, i in zip(f, item0)])
        r = np.minimum(
            (torch.rand(p, generator=gen).numpy() * (sizes - 1)).astype(np.int64), sizes - 2
        )
        r = r + (r >= pos0)
        item1 = np.asarray([self.items_by_f[k][j] for k, j in zip(f, r)], np.int64)

        v0, v1 = d.item_view[item0], d.item_view[item1]
        obj0, obj1 = self._masks[v0], self._masks[v1]
        part0, part1 = self._part[item0], self._part[item1]
        pts = sample_mask_points(torch.cat([part0, obj0 & ~part0, part1, obj1 & ~part1]), n, gen)
        out: dict[str, Tensor] = {
            "function": torch.from_numpy(f),
            "part0": pts[:p],
            "non0": pts[p : 2 * p],
            "part1": pts[2 * p : 3 * p],
            "non1": pts[3 * p :],
            "item0": torch.from_numpy(item0),
            "item1": torch.from_numpy(item1),
        }
        views = [v0, v1]
        if self.n_spatial > 0:
            lo, cnt = d.item_groups[item0], np.diff(d.item_groups)[item0]
            g = lo + np.minimum(
                (torch.rand(p, generator=gen).numpy() * cnt).astype(np.int64), cnt - 1
            )
            rows = choose(torch.from_numpy(d.group_count[g]), self.n_spatial, gen).numpy()
            rows = rows + d.group_start[g][:, None]
            out["src"] = torch.from_numpy(d.corr_src[rows])
            out["dst"] = torch.from_numpy(d.corr_dst[rows])
            v2 = d.group_view[g]
            out["view2"] = torch.from_numpy(v2)
            views.append(v2)
        allv = np.concatenate(views)
        out["views"] = torch.from_numpy(allv)
        if self.feature_augs:
            out["augs"] = torch.randint(self.feature_augs, (allv.shape[0],), generator=gen)
        else:
            out["images"] = randomize_background(
                self._images[allv], self._masks[allv], gen, self.noise, self.p_noise
            )
        return out


#: batch entries laid out as [image 0 block | image 1 block | image 2 block] of P images
BLOCKED = ("views", "images", "augs")


def collate_pairs(pairs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Join :meth:`PairSampler.pair` outputs into one batch: per-pair entries concatenated,
    the image-level ones (``views``, ``images``, ``augs``) in image-index-major blocks."""
    out: dict[str, Tensor] = {}
    for k in pairs[0]:
        if k in BLOCKED:
            x = torch.stack([q[k] for q in pairs])  # (P,K,...)
            out[k] = x.transpose(0, 1).reshape(-1, *x.shape[2:])
        else:
            out[k] = torch.cat([q[k] for q in pairs])
    return out

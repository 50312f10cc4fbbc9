"""AGD20K-layout loader, validation split and exact map augmentation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from gtrain_helpers import TREE, folder_id, write_tree  # noqa: E402

from afford.backbones import load_clip, load_dino
from afford.data.agd20k import (
    HICO_IIF_CLASSES,
    SEEN_CLASSES,
    UNSEEN_CLASSES,
    EvalSet,
    TrainSet,
    carve_validation,
    scan_dataset,
)
from afford.data.cache import MapCache, file_key
from afford.data.io import write_image
from afford.data.transforms import CropFlip, interp_matrix
from afford.errors import AffordError
from afford.grounding.affinity import cache_model_id, fill_cache, image_affinity, load_image_224
from afford.grounding.train import frozen_batch


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("agd"))


def test_class_lists_follow_reference_notes():
    assert len(SEEN_CLASSES) == 36 and len(UNSEEN_CLASSES) == 25 and len(HICO_IIF_CLASSES) == 10
    assert SEEN_CLASSES[0] == "beat" and SEEN_CLASSES[11] == "hold" and SEEN_CLASSES[-1] == "write"
    assert UNSEEN_CLASSES.index("hold") == 7 and HICO_IIF_CLASSES.index("stir") == 7
    assert set(UNSEEN_CLASSES) <= set(SEEN_CLASSES) and set(HICO_IIF_CLASSES) <= set(SEEN_CLASSES)


def test_scan_counts_labels_and_test_gt(tree):
    data = scan_dataset(tree, "folders", val_fraction=0.0)
    assert data.classes == ["cut_with", "hold"]
    n_ego = sum(v[0] for objs in TREE.values() for v in objs.values())
    n_exo = sum(v[1] for objs in TREE.values() for v in objs.values())
    n_test = sum(v[2] for objs in TREE.values() for v in objs.values())
    assert len(data.train_ego) == n_ego and len(data.train_exo) == n_exo
    assert len(data.test) == n_test  # "nogt.png" is not used
    assert data.stats["test_without_gt"] == 1
    for r in data.train_exo + data.test:
        assert data.classes[r.label] == r.affordance == r.path.parent.parent.name
    assert all(r.gt is not None and r.gt.stem == r.path.stem for r in data.test)
    # fixed class list of a real dataset: indices follow the notes, not the folders
    real = scan_dataset(tree, "agd20k_unseen", val_fraction=0.0)
    assert real.classes == UNSEEN_CLASSES
    assert {r.label for r in real.train_exo if r.affordance == "hold"} == {7}


def test_validation_split_deterministic_disjoint_stratified(tree):
    a = scan_dataset(tree, "folders", val_fraction=0.34, val_seed=3, test=False)
    b = scan_dataset(tree, "folders", val_fraction=0.34, val_seed=3, test=False)
    assert [r.path for r in a.val_exo] == [r.path for r in b.val_exo]
    assert [r.path for r in a.val_ego] == [r.path for r in b.val_ego]
    for train, val in ((a.train_exo, a.val_exo), (a.train_ego, a.val_ego)):
        assert not {r.path for r in train} & {r.path for r in val}
        assert len(train) + len(val) == len(set(r.path for r in train + val))
    # per folder: round(0.34 n) images (at most n - 1) go to validation
    for aff, objs in TREE.items():
        for obj, (n_ego, n_exo, _) in objs.items():
            for n, val in ((n_ego, a.val_ego), (n_exo, a.val_exo)):
                k = sum(1 for r in val if r.folder == (aff, obj))
                assert k == min(n - 1, int(np.floor(0.34 * n + 0.5)))
    # the listing order does not matter; another seed gives another split
    recs = a.train_exo + a.val_exo
    t1, v1 = carve_validation(recs[::-1], a.root, 0.34, 3)
    assert {r.path for r in v1} == {r.path for r in a.val_exo}
    t2, v2 = carve_validation(recs, a.root, 0.5, 11)
    t3, v3 = carve_validation(recs, a.root, 0.5, 12)
    assert {r.path for r in v2} != {r.path for r in v3}


def test_layout_errors_name_the_folder(tmp_path):
    root = write_tree(tmp_path / "t", with_cache=False)
    bad = root / "trainset" / "exocentric" / "flyy"
    (bad / "thing").mkdir(parents=True)
    write_image(bad / "thing" / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(AffordError, match="flyy"):
        scan_dataset(root, "agd20k_seen")
    shutil.rmtree(bad)
    stray = root / "trainset" / "egocentric" / "hold" / "loose.png"
    write_image(stray, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(AffordError, match=r"hold.*sub-folders"):
        scan_dataset(root)
    stray.unlink()
    (root / "trainset" / "egocentric" / "hold" / "empty").mkdir()
    with pytest.raises(AffordError, match="empty: object folder holds no images"):
        scan_dataset(root)
    shutil.rmtree(root / "trainset" / "egocentric" / "hold" / "empty")
    shutil.rmtree(root / "testset" / "GT")
    with pytest.raises(AffordError, match=r"testset/GT: missing folder"):
        scan_dataset(root)
    assert scan_dataset(root, test=False).test == []
    shutil.rmtree(root / "trainset" / "exocentric")
    with pytest.raises(AffordError, match=r"trainset/exocentric: missing folder"):
        scan_dataset(root, test=False)
    with pytest.raises(AffordError, match="not found"):
        scan_dataset(tmp_path / "nope")


# ------------------------------------------------------------------------------ transforms
def _bilinear_fn(y, x):
    return 0.3 + 2.0 * y - 1.5 * x + 4.0 * x * y


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("hw", [(300, 400), (500, 260), (256, 256)])
def test_map_augmentation_is_exact_for_a_known_function_of_position(flip, hw):
    rng = np.random.default_rng(hw[0] + flip)
    tf = CropFlip.random(hw, rng, 256, 224, flip_prob=float(flip))
    assert tf.flip == flip and min(tf.height, tf.width) == 256
    n = 14
    c = (np.arange(n) + 0.5) / n
    full = torch.tensor(_bilinear_fn(c[:, None], c[None, :]), dtype=torch.float64)
    got = tf.apply_map(full).numpy()
    # brute force: where does the centre of output cell (r, q) of the augmented image come
    # from?  pixel centre in the crop -> un-flip -> + crop origin -> / resized size
    want = np.empty((n, n))
    for r in range(n):
        for q in range(n):
            py = (r + 0.5) * tf.crop_h / n
            px = (q + 0.5) * tf.crop_w / n
            if tf.flip:
                px = tf.crop_w - px
            want[r, q] = _bilinear_fn((tf.top + py) / tf.height, (tf.left + px) / tf.width)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_identity_and_resize_only_keep_the_map():
    m = torch.rand(2, 14, 14, dtype=torch.float64)
    np.testing.assert_allclose(CropFlip.resize_only().apply_map(m).numpy(), m.numpy(), atol=1e-12)
    flipped = CropFlip(224, 224, 0, 0, 224, 224, True).apply_map(m)
    np.testing.assert_allclose(flipped.numpy(), m.flip(-1).numpy(), atol=1e-12)
    # rows of the interpolation matrix sum to one (constants are preserved)
    np.testing.assert_allclose(interp_matrix(np.linspace(-0.01, 1.01, 9), 14).sum(1), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_and_map_get_the_same_geometry(seed):
    """Patch means of the augmented ramp image equal the augmented patch map of the ramp."""
    h, w = 240, 330
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    ramp = np.stack([0.1 + 0.8 * xx, 0.1 + 0.8 * yy, 0.5 + 0.3 * (xx - yy)]).astype(np.float32)
    img = torch.from_numpy(ramp)
    tf = CropFlip.random((h, w), np.random.default_rng(seed), 256, 224, flip_prob=0.5)
    aug = tf.apply_image(img)
    assert aug.shape == (3, 224, 224)
    pooled_aug = F.avg_pool2d(aug[None], 16)[0]  # (3,14,14): the augmented image's patch map
    full_map = F.avg_pool2d(CropFlip.resize_only().apply_image(img)[None], 16)[0]
    np.testing.assert_allclose(tf.apply_map(full_map).numpy(), pooled_aug.numpy(), atol=2e-3)


def test_bad_crop_is_rejected():
    with pytest.raises(AffordError, match="outside"):
        CropFlip(256, 300, 40, 0, 224, 224)
    with pytest.raises(AffordError, match="float"):
        CropFlip.resize_only().apply_image(torch.zeros(3, 10, 10, dtype=torch.uint8))


# ------------------------------------------------------------------------------ samples
def test_train_samples_follow_the_protocol(tree):
    data = scan_dataset(tree, "folders", val_fraction=0.0, test=False)
    cache = MapCache.open(tree / "cache", "simulated-clip")
    ts = TrainSet(
        data.train_exo, data.train_ego, data.classes, cache, num_exo=3, resize=64, crop=56
    )
    assert len(ts) == len(data.train_exo)
    rng = np.random.default_rng(0)
    for i in range(len(ts)):
        s = ts.sample(i, rng)
        rec = data.train_exo[i]
        fid = folder_id(*rec.folder)
        assert s["ego_image"].shape == (3, 56, 56) and s["exo_images"].shape == (3, 3, 56, 56)
        assert int(s["label"]) == rec.label
        # cached maps are constant per folder: ego and exo companions come from the same folder
        torch.testing.assert_close(s["ego_action"], torch.full((14, 14), fid))
        torch.testing.assert_close(s["exo_action"], torch.full((3, 14, 14), fid))
        torch.testing.assert_close(s["exo_entity"], torch.full((3, 14, 14), fid + 0.5))
    b1 = list(ts.batches(epoch=2, batch_size=5, seed=5))
    b2 = list(ts.batches(epoch=2, batch_size=5, seed=5, max_batches=2))
    b3 = list(ts.batches(epoch=3, batch_size=5, seed=5, max_batches=1))
    assert [len(b["label"]) for b in b1] == [5, 5, 2] and len(b2) == 2
    for x, y in zip(b1, b2):
        for k in x:
            torch.testing.assert_close(x[k], y[k])
    assert not torch.equal(b1[0]["ego_image"], b3[0]["ego_image"])
    assert sorted(torch.cat([b["label"] for b in b1]).tolist()) == sorted(
        r.label for r in data.train_exo
    )


def test_eval_set_and_missing_cache(tree, tmp_path):
    data = scan_dataset(tree, "folders", val_fraction=0.0)
    cache = MapCache.open(tree / "cache", "simulated-clip")
    es = EvalSet(data.test, data.classes, cache)
    it = es.item(0)
    assert it["image"].shape == (3, 224, 224) and it["ego_action"].shape == (14, 14)
    assert it["gt"].shape == (48, 64) and float(it["gt"].max()) == 1.0
    assert float(it["gt"].sum()) == 24 * 21
    batches = list(es.batches(4))
    assert sum(len(b["record"]) for b in batches) == len(data.test)
    empty = MapCache(tmp_path / "c", "simulated-clip", simulated=True)
    with pytest.raises(AffordError, match="no cached affinity map"):
        EvalSet(data.test, data.classes, empty)


# ------------------------------------------------------------------------------ affinity
def test_fill_cache_matches_direct_clearclip_cosine(tree, tmp_path):
    clip = load_clip(variant="tiny")
    data = scan_dataset(tree, "folders", val_fraction=0.0, test=False)
    ego = data.train_ego[:2]
    exo = data.train_exo[:1]
    needs = {r.path: {f"action:{r.affordance}"} for r in ego}
    needs[exo[0].path] = {f"action:{exo[0].affordance}", f"entity:{exo[0].affordance}"}
    cache = MapCache(tmp_path / "c", cache_model_id(clip))
    assert fill_cache(needs, clip, cache, batch_size=2, progress=False) == 3
    assert fill_cache(needs, clip, cache, progress=False) == 0  # computed once
    # direct computation: cosine of the ClearCLIP patch embedding and the prompt embedding
    for path, prompt, name in (
        (ego[0].path, f"an item to {ego[0].affordance}", f"action:{ego[0].affordance}"),
        (exo[0].path, f"a person {exo[0].affordance} an item", f"entity:{exo[0].affordance}"),
    ):
        if "with" not in prompt and name.startswith("action"):
            prompt += " with"
        dense = clip.dense(load_image_224(path)[None])[0]  # (E,14,14)
        text = clip.encode_text([prompt])[0]
        want = torch.einsum("ehw,e->hw", F.normalize(dense, dim=0), F.normalize(text, dim=0))
        got = torch.from_numpy(cache.get_map(file_key(path), name))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_online_affinity_batch_matches_per_image_maps(tree):
    """The no-cache path (CLIP on each augmented view, both prompts from one pass) picks the
    right prompt for each sample: compare with per-image, per-prompt computation."""
    data = scan_dataset(tree, "folders", val_fraction=0.0, test=False)
    ts = TrainSet(data.train_exo, data.train_ego, data.classes, None, with_maps=False)
    batch = next(ts.batches(0, 3, seed=0))
    clip, dino = load_clip(variant="tiny"), load_dino(variant="tiny")
    out = frozen_batch(batch, dino, clip, data.classes)
    assert sorted(set(batch["label"].tolist())) == [0, 1]  # both classes in the batch
    for b, lab in enumerate(batch["label"].tolist()):
        cls = data.classes[lab]
        act = "an item to cut_with" if cls == "cut_with" else f"an item to {cls} with"
        want = image_affinity(clip, batch["ego_image"][b : b + 1], [act])[0]
        torch.testing.assert_close(out["ego_action"][b], want, atol=1e-5, rtol=1e-5)
        for e in range(3):
            img = batch["exo_images"][b, e : e + 1]
            torch.testing.assert_close(
                out["exo_action"][b, e], image_affinity(clip, img, [act])[0], atol=1e-5, rtol=1e-5
            )
            ent = image_affinity(clip, img, [f"a person {cls} an item"])[0]
            torch.testing.assert_close(out["exo_entity"][b, e], ent, atol=1e-5, rtol=1e-5)
    assert out["ego_keys"].shape == (3, 96, 14, 14) and out["exo_attn"].shape == (3, 3, 6, 14, 14)

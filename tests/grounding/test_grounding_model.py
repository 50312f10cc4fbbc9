"""GroundingModel: every Table 2 row, LOCATE and CE; Eq. 2 wiring; calibration; BN quirk."""

import pytest
import torch
import torch.nn.functional as F

from afford.config import replace
from afford.errors import AffordError
from afford.grounding.config import TABLE2_ROWS, GroundingConfig
from afford.grounding.locate import (
    cam_weighted_embedding,
    concentration_loss,
    part_distillation_loss,
)
from afford.grounding.losses import pixel_loss, prototype_loss
from afford.grounding.model import GroundingModel
from afford.grounding.parts import exo_object_affinity, minmax
from afford.grounding.prototypes import phi_neg, phi_pos, pool_norm

NAMES = ["hold", "cut_with", "pour", "sit_on"]
D = 16


def val(t: torch.Tensor) -> float:
    """Python float of a (possibly graph-attached) scalar."""
    return float(t.detach())


def make_batch(b=4, e=3, d=D, h=6, w=6, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    batch = {
        "ego_keys": torch.randn(b, d, h, w, generator=g),
        "ego_attn": torch.rand(b, 6, h, w, generator=g),
        "exo_keys": torch.randn(b, e, d, h, w, generator=g),
        "exo_attn": torch.rand(b, e, 6, h, w, generator=g),
        "ego_action": 0.3 * torch.rand(b, h, w, generator=g),
        "exo_action": 0.3 * torch.rand(b, e, h, w, generator=g),
        "exo_entity": 0.3 * torch.rand(b, e, h, w, generator=g),
        "label": torch.tensor([0, 1, 0, 2][:b]),
    }
    if grad:
        for v in batch.values():
            if v.is_floating_point():
                v.requires_grad_(True)
    return batch


def model_for(cfg, seed=0):
    torch.manual_seed(seed)
    return GroundingModel(cfg)


CONFIGS = [(f"row-{r}", m) for r in sorted(TABLE2_ROWS) for m in ("paper", "official")]
CONFIGS += [("locate", "paper"), ("ce", "paper"), ("locate", "official")]


def cfg_for(name, mode, **kw):
    if name.startswith("row-"):
        return GroundingConfig.table2_row(
            name[4:], class_names=NAMES, feat_dim=D, mode=mode, kmeans_iters=50, **kw
        )
    return GroundingConfig(method=name, class_names=NAMES, feat_dim=D, mode=mode, **kw)


@pytest.mark.parametrize("name,mode", CONFIGS)
def test_losses_every_configuration(name, mode):
    cfg = cfg_for(name, mode)
    model = model_for(cfg)
    batch = make_batch(grad=True)
    for epoch in (0, 1):
        model.zero_grad()
        out = model.losses(batch, epoch)
        terms = {k for k in out if k not in ("total", "stats")}
        want = {"ce_ego", "ce_exo"}
        if cfg.method == "selective":
            want |= {"proto"} if cfg.use_proto else set()
            want |= {"pixel"} if cfg.use_pixel else set()
        if cfg.method == "locate":
            want |= {"locate_part", "locate_conc"}
        assert terms == want
        parts = [out[k] for k in terms]
        assert all(t.dim() == 0 and torch.isfinite(t) for t in parts + [out["total"]])
        assert isinstance(out["stats"], dict)
        assert all(isinstance(v, float) for v in out["stats"].values())
        # total = CE terms + weighted extras
        extra = {
            "proto": cfg.lambda_proto,
            "pixel": cfg.lambda_pixel,
            "locate_part": cfg.locate_weight,
            "locate_conc": cfg.locate_conc_weight,
        }
        want_total = sum(out[k] * extra.get(k, 1.0) for k in terms)
        assert val(out["total"]) == pytest.approx(val(want_total), rel=1e-6)
        out["total"].backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert model.aff_classifier.weight.grad is not None
        assert all(torch.isfinite(g).all() for g in grads if g is not None)
        for k, v in batch.items():  # frozen inputs receive no gradient
            if v.is_floating_point():
                assert v.grad is None, k
    if cfg.method == "selective" and not cfg.proto_part and cfg.use_proto:
        assert out["stats"]["part_frac"] == 0.0
    if cfg.method == "selective" and cfg.use_pixel and not cfg.pixel_part:
        assert out["stats"]["pixel_part_frac"] == 0.0
    assert model.last_stats == out["stats"]


def test_contrast_heads_receive_gradient():
    model = model_for(cfg_for("row-i", "paper"))
    model.losses(make_batch(), 1)["total"].backward()
    assert float(model.K_contrast_projection.weight.grad.abs().sum()) > 0
    assert float(model.pixel_contrast_projection.weight.grad.abs().sum()) > 0


def test_state_dict_uses_released_names():
    keys = set(model_for(cfg_for("row-i", "paper")).state_dict())
    for k in (
        "aff_proj.norm.weight",
        "aff_proj.fc1.weight",
        "aff_proj.fc2.bias",
        "aff_ego_proj.0.weight",
        "aff_ego_proj.1.running_mean",
        "aff_ego_proj.3.weight",
        "aff_ego_proj.4.running_var",
        "aff_exo_proj.0.weight",
        "aff_classifier.weight",
        "K_contrast_projection.weight",
        "pixel_contrast_projection.weight",
    ):
        assert k in keys, k
    assert model_for(cfg_for("row-i", "paper")).aff_classifier.out_channels == len(NAMES)


def _manual_object_level(model, batch, cfg):
    """Eq. 1-5 / Eq. 7-8 at object level (I = J = empty), from the model's own heads."""
    label = batch["label"]
    b, e = batch["exo_keys"].shape[:2]
    model.eval()  # deterministic BN for the comparison (both passes in eval)
    ego_proj = model.aff_ego_proj(model.aff_proj(batch["ego_keys"]))
    exo_proj = model.aff_exo_proj(model.aff_proj(batch["exo_keys"].flatten(0, 1)))
    ego_cam = torch.stack([model.aff_classifier(ego_proj)[i, label[i]] for i in range(b)])
    exo_maps = model.aff_classifier(exo_proj)
    exo_cam = torch.stack([exo_maps[i, label[i // e]] for i in range(b * e)])
    s = batch["ego_action"]
    a_exo = exo_object_affinity(batch["exo_entity"], batch["exo_action"]).flatten(0, 1)
    ft = model.K_contrast_projection(ego_proj)
    fx = model.K_contrast_projection(exo_proj)
    proto = prototype_loss(
        pool_norm(ft),
        phi_pos(ft, s),
        phi_neg(ft, s, F.relu(ego_cam), cfg.beta),
        phi_pos(fx, a_exo),
        phi_neg(fx, a_exo, F.relu(exo_cam), cfg.beta),
        label,
        tau=cfg.tau,
    )
    fh = F.normalize(model.pixel_contrast_projection(ego_proj), dim=1)
    pix = pixel_loss(fh, minmax(s) > cfg.gamma2, tau=cfg.tau)
    return proto, pix


def test_object_level_rows_match_manual_eq2():
    cfg = cfg_for("row-d", "paper")
    model = model_for(cfg)
    batch = make_batch()
    want_proto, want_pix = _manual_object_level(model, batch, cfg)
    out = model.losses(batch, 1)  # model is in eval mode -> same BN behaviour
    assert val(out["proto"]) == pytest.approx(val(want_proto), rel=1e-5)
    assert val(out["pixel"]) == pytest.approx(val(want_pix), rel=1e-5)


def test_no_reliable_part_falls_back_to_object_level():
    # alpha = 1 with random data: no part is reliable -> row (i) == row (d) numbers
    batch = make_batch()
    cfg_i = replace(cfg_for("row-h", "paper"), alpha=1.0)
    model = model_for(cfg_i)
    model.eval()
    out = model.losses(batch, 1)
    assert out["stats"]["part_frac"] == 0.0
    want_proto, _ = _manual_object_level(model, batch, cfg_i)
    assert val(out["proto"]) == pytest.approx(val(want_proto), rel=1e-5)


def test_fewer_than_k_descriptors_falls_back():
    batch = make_batch()
    batch["exo_action"] = torch.ones_like(batch["exo_action"])  # constant maps ->
    batch["exo_entity"] = torch.ones_like(batch["exo_entity"])  # no descriptors
    model = model_for(replace(cfg_for("row-i", "paper"), alpha=0.0))
    out = model.losses(batch, 0)
    assert out["stats"]["part_frac"] == 0.0 and torch.isfinite(out["total"])


def test_reliable_part_changes_the_loss():
    batch = make_batch()
    cfg = replace(cfg_for("row-f", "paper"), alpha=0.0)  # every sample with K descriptors
    model = model_for(cfg)
    model.eval()
    out = model.losses(batch, 0)
    assert out["stats"]["part_frac"] == 1.0
    want_proto, _ = _manual_object_level(model, batch, cfg)
    assert val(out["proto"]) != pytest.approx(val(want_proto), rel=1e-3)


def test_object_fallback_off_without_parts_is_zero_with_graph():
    cfg = replace(cfg_for("row-i", "paper"), alpha=1.0, object_fallback=False)
    model = model_for(cfg)
    batch = make_batch()
    batch["ego_action"] = torch.zeros_like(batch["ego_action"])  # nothing above rho: J empty
    out = model.losses(batch, 1)
    assert val(out["proto"]) == 0.0 and val(out["pixel"]) == 0.0
    out["total"].backward()
    assert model.aff_classifier.weight.grad is not None


@pytest.mark.parametrize("mode,calls", [("paper", 1), ("official", 2)])
def test_official_double_projection_quirk(mode, calls):
    model = model_for(cfg_for("row-c", mode))
    model.train()
    batch = make_batch()
    with torch.no_grad():
        y = model.aff_ego_proj[0](model.aff_proj(batch["ego_keys"]))
        mu = y.mean(dim=(0, 2, 3))
    model.losses(batch, 1)
    bn = model.aff_ego_proj[1]
    assert int(bn.num_batches_tracked) == calls
    assert int(model.aff_exo_proj[1].num_batches_tracked) == calls
    factor = 0.1 if calls == 1 else 0.1 + 0.9 * 0.1
    assert torch.allclose(bn.running_mean, factor * mu, atol=1e-5)
    model.eval()
    model.losses(batch, 1)
    assert int(bn.num_batches_tracked) == calls  # no update in eval mode


@pytest.mark.parametrize("how", ["binary", "soft", "none"])
@pytest.mark.parametrize("mode", ["paper", "official"])
def test_heatmap_calibration(how, mode):
    cfg = replace(cfg_for("row-i", mode), calibration=how)
    model = model_for(cfg).eval()
    batch = make_batch()
    labels = torch.tensor([3, 1, 0, 2])
    with torch.no_grad():
        heat = model.heatmap(batch["ego_keys"], labels, batch["ego_action"])
        maps = model.aff_classifier(model.aff_ego_proj(model.aff_proj(batch["ego_keys"])))
    for i in range(4):
        cam = maps[i, labels[i]]
        if mode == "paper":
            cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-10)
        s = batch["ego_action"][i]
        a = (s - s.min()) / (s.max() - s.min() + 1e-10)
        want = {"binary": cam * (a > 0.6).float(), "soft": cam * a, "none": cam}[how]
        assert torch.allclose(heat[i], want, atol=1e-6)
    assert heat.shape == (4, 6, 6)


def test_locate_losses_by_hand():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 4, 5, generator=g)
    got = concentration_loss(maps)
    tot = 0.0
    for b in range(2):
        for c in range(3):
            p = [[max(float(maps[b, c, i, j]), 0.0) for j in range(5)] for i in range(4)]
            s = sum(map(sum, p))
            p = [[v / (s + 1e-10) for v in row] for row in p]
            mr = sum(p[i][j] * i for i in range(4) for j in range(5))
            mc = sum(p[i][j] * j for i in range(4) for j in range(5))
            tot += sum(
                p[i][j] * ((i - mr) ** 2 + (j - mc) ** 2) for i in range(4) for j in range(5)
            )
    assert float(got) == pytest.approx(tot / 6, rel=1e-5)

    desc = torch.randn(2, 3, 4, 5, generator=g)
    cam = torch.randn(2, 4, 5, generator=g)
    proto = torch.randn(2, 3, generator=g)
    e = cam_weighted_embedding(desc, cam)
    for b in range(2):
        w = (cam[b] - cam[b].min()) / (cam[b].max() - cam[b].min() + 1e-10)
        want = (desc[b] * w).sum(dim=(1, 2)) / (w.sum() + 1e-10)
        assert torch.allclose(e[b], want, atol=1e-6)
    valid = torch.tensor([True, False])
    loss = part_distillation_loss(desc, cam, proto, valid, margin=0.5)
    want = max(0.0, 1 - float(F.cosine_similarity(e[0], proto[0], dim=0)) - 0.5)
    assert float(loss) == pytest.approx(want, abs=1e-6)
    zero = part_distillation_loss(desc, cam, proto, torch.tensor([False, False]))
    assert float(zero) == 0.0


def test_locate_part_loss_starts_second_epoch():
    model = model_for(replace(cfg_for("locate", "paper"), alpha=0.0))
    out0 = model.losses(make_batch(), 0)
    out1 = model.losses(make_batch(), 1)
    assert val(out0["locate_part"]) == 0.0 and out0["stats"]["part_frac"] == 0.0
    assert out1["stats"]["part_frac"] == 1.0
    assert model.aff_proj.residual and not model_for(cfg_for("ce", "paper")).aff_proj.residual


def test_bad_batches():
    model = model_for(cfg_for("row-i", "paper"))
    batch = make_batch()
    with pytest.raises(AffordError, match="missing"):
        model.losses({k: v for k, v in batch.items() if k != "exo_entity"}, 0)
    with pytest.raises(AffordError, match="feat_dim"):
        model.losses({**batch, "ego_keys": torch.randn(4, D + 1, 6, 6)}, 0)
    with pytest.raises(AffordError, match="label"):
        model.losses({**batch, "label": torch.tensor([0, 1, 2, 9])}, 0)
    with pytest.raises(AffordError, match="exo_action"):
        model.losses({**batch, "exo_action": torch.rand(4, 2, 6, 6)}, 0)
    with pytest.raises(AffordError, match="heatmap"):
        model.heatmap(batch["ego_keys"], batch["label"], torch.rand(4, 5, 5))


def test_required_keys_and_minimal_batches():
    full = make_batch()
    ce = model_for(cfg_for("ce", "paper"))
    assert ce.required_keys() == ("ego_keys", "exo_keys", "label")
    out = ce.losses({k: full[k] for k in ce.required_keys()}, 0)
    assert set(out) == {"ce_ego", "ce_exo", "total", "stats"}
    loc = model_for(cfg_for("locate", "paper"))
    assert set(loc.required_keys()) == {"ego_keys", "exo_keys", "label", "ego_attn"}
    sel_obj = model_for(cfg_for("row-d", "paper"))
    assert "ego_attn" not in sel_obj.required_keys()
    aff = model_for(cfg_for("row-i", "paper", part_saliency="affinity"))
    assert "ego_attn" not in aff.required_keys()
    out = aff.losses({k: full[k] for k in aff.required_keys()}, 1)
    assert torch.isfinite(out["total"])
    # baselines are not calibrated unless asked; the selective method is
    assert cfg_for("locate", "paper").calibration == "none"
    assert cfg_for("ce", "official").calibration == "none"
    assert GroundingConfig(class_names=NAMES).calibration == "binary"


def test_stats_keys_are_stable_and_heatmap_without_affinity():
    for name, want in [
        ("row-c", {"part_frac", "best_piou"}),
        ("row-i", {"part_frac", "best_piou", "pixel_part_frac", "mean_qpos"}),
        ("locate", {"part_frac", "best_piou"}),
    ]:
        model = model_for(cfg_for(name, "paper"))
        assert set(model.losses(make_batch(), 0)["stats"]) == want
        assert set(model.losses(make_batch(), 1)["stats"]) == want
    model = model_for(cfg_for("ce", "paper")).eval()
    batch = make_batch()
    with torch.no_grad():
        heat = model.heatmap(batch["ego_keys"], batch["label"], None)
        assert torch.allclose(heat, minmax(model.cam(batch["ego_keys"], batch["label"])))
    with pytest.raises(AffordError, match="ego_action"):
        model_for(cfg_for("row-i", "paper")).heatmap(batch["ego_keys"], batch["label"], None)

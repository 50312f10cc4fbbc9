"""Prototype loss (Eq. 3-5) and pixel loss (Eq. 8) against literal set/loop references."""

import math

import pytest
import torch
import torch.nn.functional as F

from afford.errors import AffordError
from afford.grounding.losses import pixel_loss, prototype_loss


def _protos(b=4, e=2, d=5, seed=0, labels=None):
    g = torch.Generator().manual_seed(seed)

    def unit(n):
        return F.normalize(torch.randn(n, d, generator=g), dim=1)

    lab = torch.tensor(labels) if labels is not None else torch.randint(0, 2, (b,), generator=g)
    return unit(b), unit(b), unit(b), unit(b * e), unit(b * e), lab


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def _proto_reference(anchors, ego_pos, ego_neg, exo_pos, exo_neg, labels, tau, mode):
    b = anchors.shape[0]
    e = exo_pos.shape[0] // b
    # every prototype as (vector, label, kind, owner ego index or None)
    pos = [(ego_pos[i], int(labels[i]), "ego", i) for i in range(b)]
    pos += [(exo_pos[i * e + j], int(labels[i]), "exo", None) for i in range(b) for j in range(e)]
    neg = [(ego_neg[i], int(labels[i])) for i in range(b)]
    neg += [(exo_neg[i * e + j], int(labels[i])) for i in range(b) for j in range(e)]
    losses = []
    for a in range(b):
        z, y = anchors[a], int(labels[a])
        if mode == "paper":
            p_plus = [p for p, lab, _, _ in pos if lab == y]  # Eq. 4 (own ego included)
            p_minus = [n for n, lab in neg if lab == y] + [p for p, lab, _, _ in pos if lab != y]
        else:
            p_plus = [p for p, lab, _, o in pos if lab == y and o != a]
            p_minus = [n for n, lab in neg if lab == y] + [p for p, lab, _, _ in pos if lab != y]
        denom = sum(math.exp(_dot(z, n) / tau) for n in p_plus + p_minus)
        terms = [math.log(math.exp(_dot(z, p) / tau) / denom) for p in p_plus]
        if terms:
            losses.append(-sum(terms) / len(terms))
    loss = sum(losses) / len(losses)
    return loss * (tau / 0.07) if mode == "official" else loss


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_prototype_loss_matches_sets(mode, seed, tau):
    args = _protos(seed=seed)
    got = prototype_loss(*args, tau=tau, mode=mode)
    assert float(got) == pytest.approx(_proto_reference(*args, tau, mode), rel=1e-5)


def test_prototype_loss_modes_differ_and_grad():
    args = [t.clone().requires_grad_(t.is_floating_point()) for t in _protos(labels=[0, 0, 1, 2])]
    p = prototype_loss(*args, mode="paper")
    o = prototype_loss(*args, mode="official")
    assert p.item() != pytest.approx(o.item())
    (p + o).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in args[:5])


def test_prototype_loss_single_sample_single_exo():
    # B=1, E=1: paper P+ = {ego+, exo+}, P- = {ego-, exo-}
    a, ep, en, xp, xn, lab = _protos(b=1, e=1, labels=[3])
    got = prototype_loss(a, ep, en, xp, xn, lab, tau=0.5)
    s = [float(a[0] @ v[0]) / 0.5 for v in (ep, xp, en, xn)]
    lse = math.log(sum(math.exp(v) for v in s))
    assert float(got) == pytest.approx(-0.5 * ((s[0] - lse) + (s[1] - lse)), rel=1e-5)
    # official: own ego excluded -> P+ = {exo+}, denominator {exo+, ego-, exo-}
    got = prototype_loss(a, ep, en, xp, xn, lab, tau=0.5, mode="official")
    lse = math.log(sum(math.exp(v) for v in s[1:]))
    assert float(got) == pytest.approx(-(s[1] - lse) * 0.5 / 0.07, rel=1e-5)


def test_prototype_loss_bad_input():
    a, ep, en, xp, xn, lab = _protos()
    with pytest.raises(AffordError):
        prototype_loss(a, ep, en, xp[:-1], xn[:-1], lab)
    with pytest.raises(AffordError):
        prototype_loss(a, ep, en, xp, xn, lab, mode="both")


def _pixel_reference(feats, pos, tau, mode, anchors=None):
    b, d, h, w = feats.shape
    f = feats.flatten(2)
    per_img = []
    for i in range(b):
        q = [n for n in range(h * w) if pos[i].flatten()[n]]
        s = [[_dot(f[i, :, u], f[i, :, v]) / tau for v in range(h * w)] for u in range(h * w)]
        if mode == "paper":
            if not q:
                continue
            tot = 0.0
            for z in q:
                denom = sum(math.exp(s[z][n]) for n in range(h * w))
                for p in q:
                    tot += math.log(math.exp(s[z][p]) / denom)
            per_img.append(-tot / len(q) ** 2)
        else:
            lab = pos[i].flatten().tolist()
            anc = (anchors if anchors is not None else pos)[i].flatten().tolist()
            vals = []
            for z in range(h * w):
                if not anc[z]:
                    continue
                others = [n for n in range(h * w) if n != z]
                ps = [p for p in others if lab[p] == lab[z]]
                if not ps:
                    continue
                denom = sum(math.exp(s[z][n]) for n in others)
                vals.append(sum(math.log(math.exp(s[z][p]) / denom) for p in ps) / len(ps))
            if vals:
                per_img.append(-(tau / 0.07) * sum(vals) / len(vals))
    return sum(per_img) / len(per_img)


def _pix(b=3, d=4, h=3, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(b, d, h, w, generator=g), dim=1)
    pos = torch.rand(b, h, w, generator=g) > 0.5
    return feats, pos


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_loss_matches_loops(mode, seed):
    feats, pos = _pix(seed=seed)
    pos[0] = False  # an image with empty Q+ is skipped
    pos[1, 0, 0] = True
    got = pixel_loss(feats, pos, tau=0.5, mode=mode)
    assert float(got) == pytest.approx(_pixel_reference(feats, pos, 0.5, mode), rel=1e-5)


def test_pixel_loss_official_separate_anchors():
    feats, pos = _pix(seed=3)
    anchors = torch.rand(pos.shape, generator=torch.Generator().manual_seed(9)) > 0.3
    got = pixel_loss(feats, pos, tau=0.4, mode="official", anchors=anchors)
    ref = _pixel_reference(feats, pos, 0.4, "official", anchors)
    assert float(got) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_pixel_loss_empty_is_zero_with_graph(mode):
    feats, pos = _pix()
    feats.requires_grad_(True)
    loss = pixel_loss(feats, torch.zeros_like(pos), mode=mode)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) == 0.0


def test_pixel_loss_single_positive_pixel():
    # paper: |Q+| = 1 -> -log softmax of the self-similarity; official: a lone foreground
    # anchor has no positive -> skipped -> 0
    feats, _ = _pix(b=1)
    pos = torch.zeros(1, 3, 3, dtype=torch.bool)
    pos[0, 1, 1] = True
    f = feats[0].flatten(1)
    s = (f[:, 4] @ f) / 0.5
    want = -(s[4] - torch.logsumexp(s, 0))
    assert float(pixel_loss(feats, pos)) == pytest.approx(float(want), rel=1e-5)
    assert float(pixel_loss(feats, pos, mode="official")) == 0.0

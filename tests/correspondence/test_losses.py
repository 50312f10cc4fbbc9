"""Correspondence losses against explicit-loop hand computations on tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from afford.correspondence.losses import functional_loss, mask_loss, spatial_loss, total_loss
from afford.errors import AffordError


def _feats(p, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(p, n, d, generator=g, dtype=torch.float64), dim=-1)
            for _ in range(4)]  # fmt: skip


def _dot(u, v):
    return sum(float(a) * float(b) for a, b in zip(u, v))


def _ce0(logits):
    """Cross-entropy with the target at index 0, by hand."""
    return -logits[0] + math.log(sum(math.exp(x) for x in logits))


def _functional_by_hand(a0, b0, a1, b1, tau, negneg, mode):
    P, N = a0.shape[:2]
    rows = []
    for p in range(P):
        for i in range(N):
            for j in range(N):
                x = i if mode == "paper" else j
                y = i if mode == "paper" else j
                logits = [_dot(a0[p, i], a1[p, j])]
                logits += [_dot(a0[p, x], b1[p, n]) for n in range(N)]
                logits += [_dot(a1[p, j], b0[p, n]) for n in range(N)]
                if negneg:
                    logits += [_dot(b0[p, y], b1[p, n]) for n in range(N)]
                rows.append(_ce0([v / tau for v in logits]))
    assert len(rows) == P * N * N
    return sum(rows) / len(rows)


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("negneg", [True, False])
def test_functional_loss_matches_hand_computation(mode, negneg):
    a0, b0, a1, b1 = _feats(2, 3, 4, seed=0)
    got = functional_loss(a0, b0, a1, b1, tau=0.1, negneg=negneg, mode=mode)
    ref = _functional_by_hand(a0, b0, a1, b1, 0.1, negneg, mode)
    assert got.shape == ()
    assert abs(got.item() - ref) < 1e-9


def test_functional_loss_modes_differ_and_tau_matters():
    a0, b0, a1, b1 = _feats(1, 4, 3, seed=1)
    paper = functional_loss(a0, b0, a1, b1, mode="paper").item()
    official = functional_loss(a0, b0, a1, b1, mode="official").item()
    assert abs(paper - official) > 1e-4
    ref = _functional_by_hand(a0, b0, a1, b1, 0.5, True, "official")
    assert abs(functional_loss(a0, b0, a1, b1, tau=0.5, mode="official").item() - ref) < 1e-9


def test_functional_loss_single_point_closed_form():
    # N = 1, D = 2: a0 = a1 = e1, b0 = b1 = e2 -> logits [1, 0, 0, 1] / tau
    e1 = torch.tensor([[[1.0, 0.0]]])
    e2 = torch.tensor([[[0.0, 1.0]]])
    tau = 0.5
    expect = -2.0 + math.log(math.exp(2) + 1 + 1 + math.exp(2))
    got = functional_loss(e1, e2, e1, e2, tau=tau)
    assert abs(got.item() - expect) < 1e-6
    got = functional_loss(e1, e2, e1, e2, tau=tau, negneg=False)
    assert abs(got.item() - (-2.0 + math.log(math.exp(2) + 2))) < 1e-6


def test_functional_loss_gradients_flow_to_all_inputs():
    feats = [f.clone().float().requires_grad_(True) for f in _feats(2, 3, 4, seed=2)]
    functional_loss(*feats).backward()
    for f in feats:
        assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_spatial_loss_matches_hand_computation():
    f0, f1, _, _ = _feats(2, 4, 3, seed=3)
    tau = 0.1
    rows = []
    for p in range(2):
        for i in range(4):
            logits = [_dot(f0[p, i], f1[p, k]) / tau for k in range(4)]
            rows.append(-logits[i] + math.log(sum(math.exp(v) for v in logits)))
    got = spatial_loss(f0, f1, tau=tau)
    assert abs(got.item() - sum(rows) / len(rows)) < 1e-9
    # one direction only: swapping the views changes the value in general
    assert abs(spatial_loss(f1, f0, tau=tau).item() - got.item()) > 1e-6


def _bce(x, y):
    s = 1.0 / (1.0 + math.exp(-x))
    return -(y * math.log(s) + (1 - y) * math.log(1 - s))


def test_mask_loss_is_mean_of_four_bce_means():
    pos0 = torch.tensor([2.0, -1.0])
    pos1 = torch.tensor([0.5, 0.0, 3.0])
    neg0 = torch.tensor([[-2.0], [1.0]])
    neg1 = torch.tensor([0.25])
    terms = [
        sum(_bce(float(v), 1) for v in pos0) / 2,
        sum(_bce(float(v), 1) for v in pos1) / 3,
        sum(_bce(float(v), 0) for v in neg0.flatten()) / 2,
        _bce(0.25, 0),
    ]
    got = mask_loss(pos0, pos1, neg0, neg1)
    assert abs(got.item() - sum(terms) / 4) < 1e-6
    with pytest.raises(AffordError, match="empty"):
        mask_loss(pos0, torch.empty(0), neg0, neg1)


def test_total_loss_weights():
    f, s, m = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    assert total_loss(f, s, m).item() == pytest.approx((1 + 3 + 20) / 12)
    assert total_loss(f, s).item() == pytest.approx((1 + 20) / 11)  # no mask: weight dropped
    assert total_loss(f, s, m, lambda_spatial=1, lambda_mask=2).item() == pytest.approx(9 / 4)
    assert total_loss(None, s).item() == pytest.approx(2.0)  # spatial only
    assert total_loss(f, None).item() == pytest.approx(1.0)  # functional only
    with pytest.raises(AffordError):
        total_loss(None, None)


def test_bad_shapes_raise():
    a0, b0, a1, b1 = _feats(2, 3, 4, seed=0)
    with pytest.raises(AffordError, match="b1"):
        functional_loss(a0, b0, a1, b1[:, :2])
    with pytest.raises(AffordError, match="mode"):
        functional_loss(a0, b0, a1, b1, mode="x")
    with pytest.raises(AffordError, match="tau"):
        spatial_loss(a0, a1, tau=0.0)

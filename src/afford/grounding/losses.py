"""Selective contrastive losses: prototype loss (Eq. 3-5) and pixel loss (Eq. 8).

Both take L2-normalised inputs and come in two modes:

* ``mode="paper"``: the equations as written.
* ``mode="official"``: the released code (REFERENCE_NOTES A): supervised-contrastive forms,
  scaled by ``tau / base_tau`` (base_tau = 0.07).
"""

from __future__ import annotations

import torch
from torch import Tensor

from afford.config import MODES
from afford.errors import AffordError


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise AffordError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def _zero(*ts: Tensor) -> Tensor:
    """A zero that is still connected to the graph of ``ts`` (backward works)."""
    return sum(t.sum() * 0.0 for t in ts)


def prototype_loss(
    anchors: Tensor,
    ego_pos: Tensor,
    ego_neg: Tensor,
    exo_pos: Tensor,
    exo_neg: Tensor,
    labels: Tensor,
    tau: float = 0.5,
    mode: str = "paper",
    base_tau: float = 0.07,
) -> Tensor:
    """Selective prototypical contrastive loss.

    Args:
        anchors: (B,D) egocentric anchors z_b^ego (Eq. 2).
        ego_pos, ego_neg: (B,D) egocentric positive / negative prototypes P^ego+ / P^ego-.
        exo_pos, exo_neg: (B*E,D) exocentric prototypes, sample-major (the E exo images of
            sample 0 first).
        labels: (B,) int action labels (the label of exo prototype b*E+e is labels[b]).
        tau: temperature.
        mode: "paper": Eq. 3 averaged over b, with P_b+ = every positive prototype (ego and
            exo, the anchor's own ego prototype included) of the anchor's label (Eq. 4) and
            P_b- = the negative prototypes of that label plus the positive prototypes of the
            other labels (Eq. 5); the denominator runs over P_b+ and P_b-.
            "official": the anchor's own ego prototype is excluded from both numerator and
            denominator; positives = same-label positive prototypes, denominator = every
            other positive prototype + same-label negatives; loss scaled by tau / base_tau.
        base_tau: official base temperature (0.07).

    Returns:
        Scalar loss; anchors without any positive are skipped (0 with a graph if none).
    """
    _check_mode(mode)
    b = anchors.shape[0]
    if ego_pos.shape != anchors.shape or ego_neg.shape != anchors.shape:
        raise AffordError(
            f"prototype_loss: anchors {tuple(anchors.shape)}, ego_pos {tuple(ego_pos.shape)},"
            f" ego_neg {tuple(ego_neg.shape)} must all be (B,D)"
        )
    if b == 0 or exo_pos.shape[0] % b or exo_neg.shape != exo_pos.shape:
        raise AffordError(
            f"prototype_loss: exo_pos {tuple(exo_pos.shape)} / exo_neg {tuple(exo_neg.shape)}"
            f" must be (B*E,D) with B={b}"
        )
    if labels.shape != (b,):
        raise AffordError(f"prototype_loss: labels must be (B,)={b}, got {tuple(labels.shape)}")
    e = exo_pos.shape[0] // b
    pos = torch.cat([ego_pos, exo_pos], dim=0)  # (P,D)
    neg = torch.cat([ego_neg, exo_neg], dim=0)
    plab = torch.cat([labels, labels.repeat_interleave(e)])
    same_pos = labels.view(-1, 1) == plab.view(1, -1)  # (B,P)
    same_neg = same_pos
    logits = torch.cat([anchors @ pos.T, anchors @ neg.T], dim=1) / tau  # (B,2P)
    npos = pos.shape[0]
    own = torch.zeros(b, npos, dtype=torch.bool, device=anchors.device)
    own[:, :b] = torch.eye(b, dtype=torch.bool, device=anchors.device)
    if mode == "paper":
        posmask = same_pos
        denom = torch.cat([torch.ones_like(same_pos), same_neg], dim=1)
    else:
        posmask = same_pos & ~own
        denom = torch.cat([~own, same_neg], dim=1)
    log_z = torch.logsumexp(logits.masked_fill(~denom, float("-inf")), dim=1, keepdim=True)
    logp = logits[:, :npos] - log_z
    cnt = posmask.sum(dim=1)
    ok = cnt > 0
    if not bool(ok.any()):
        return _zero(anchors, ego_pos, ego_neg, exo_pos, exo_neg)
    per_anchor = (logp * posmask).sum(dim=1) / cnt.clamp(min=1)
    loss = -per_anchor[ok].mean()
    if mode == "official":
        loss = loss * (tau / base_tau)
    return loss


def pixel_loss(
    feats: Tensor,
    positive: Tensor,
    tau: float = 0.5,
    mode: str = "paper",
    anchors: Tensor | None = None,
    base_tau: float = 0.07,
    mean=None,
) -> Tensor:
    """Selective pixel contrastive loss.

    Args:
        feats: (B,D,H,W) egocentric pixel features F^ego, L2-normalised over D.
        positive: (B,H,W) bool, Q+ (Q- = the other pixels).
        tau: temperature.
        mode: "paper": Eq. 8 per image, anchors z and positives p from Q+ (p = z included),
            denominator over every pixel of the image (Q+ and Q-), ``-1/|Q+|^2`` sum; averaged
            over images with a non-empty Q+.
            "official": supervised contrastive per image; label of a pixel = ``positive``;
            for each anchor pixel (``anchors``, default ``positive``) the positives are the
            *other* pixels with the same label and the denominator holds every pixel except
            the anchor; mean log-probability over positives, mean over anchors that have a
            positive, times ``-tau / base_tau``; averaged over images with such an anchor.
        anchors: (B,H,W) bool anchor pixels (official mode only).
        base_tau: official base temperature (0.07).
        mean: ``per-image losses (n,) -> scalar`` (default ``Tensor.mean``; the engine's
            ``dist.global_mean`` averages over the images of the global batch). Given, it is
            always called (also with no contributing image: it may be a collective).

    Returns:
        Scalar loss; 0 (with a graph) when no image contributes.
    """
    _check_mode(mode)
    if feats.dim() != 4 or positive.shape != (feats.shape[0], *feats.shape[2:]):
        raise AffordError(
            f"pixel_loss: feats {tuple(feats.shape)} must be (B,D,H,W) and positive"
            f" {tuple(positive.shape)} (B,H,W)"
        )
    f = feats.flatten(2)  # (B,D,N)
    sim = f.transpose(1, 2) @ f / tau  # (B,N,N) [anchor, other]
    pos = positive.flatten(1).bool()  # (B,N)
    if mode == "paper":
        logp = sim - torch.logsumexp(sim, dim=2, keepdim=True)
        pair = pos.unsqueeze(2) & pos.unsqueeze(1)
        n = pos.sum(dim=1).to(feats.dtype)
        ok = n > 0
        if mean is None and not bool(ok.any()):
            return _zero(feats)
        per_img = -(logp * pair).sum(dim=(1, 2)) / (n * n).clamp(min=1)
        return per_img[ok].mean() if mean is None else mean(per_img[ok]) + _zero(feats)
    anc = pos if anchors is None else anchors.flatten(1).bool()
    if anc.shape != pos.shape:
        raise AffordError(f"pixel_loss: anchors must be (B,H,W), got {tuple(anchors.shape)}")
    n_pix = pos.shape[1]
    eye = torch.eye(n_pix, dtype=torch.bool, device=feats.device).unsqueeze(0)
    logp = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=2, keepdim=True)
    same = (pos.unsqueeze(2) == pos.unsqueeze(1)) & ~eye  # (B,N,N)
    cnt = same.sum(dim=2)  # (B,N)
    valid = anc & (cnt > 0)
    if mean is None and not bool(valid.any()):
        return _zero(feats)
    mlp = (logp * same).sum(dim=2) / cnt.clamp(min=1)  # (B,N)
    n_anc = valid.sum(dim=1)
    img_ok = n_anc > 0
    per_img = -(mlp * valid).sum(dim=1) / n_anc.clamp(min=1)
    if mean is None:
        return per_img[img_ok].mean() * (tau / base_tau)
    return mean(per_img[img_ok]) * (tau / base_tau) + _zero(feats)

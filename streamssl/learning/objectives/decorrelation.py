"""Decorrelation — the variance and covariance terms of VICReg (Bardes, Ponce and LeCun,
"VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
ICLR 2022; formula after facebookresearch/vicreg), applied to frames.

For the frames h of one step, all examples and times together, N rows of D features:

    v(h) = 1/D sum_j max(0, gamma - sqrt(Var(h_j) + eps))
    C(h) = 1/(N-1) sum_n (h_n - mean(h)) (h_n - mean(h))^T
    c(h) = 1/D sum_{i != j} C(h)_ij^2
    L(h) = mu v(h) + nu c(h),   mu = 25, nu = 1, gamma = 1, eps = 1e-4 (VICReg's values)

The learner sums L over the encoder frames z and the context frames c of the query view.

Why: the readout a user probes is the mean and std of z and c, so every feature
direction that training lets die is lost to every downstream use. Without this term the
effective rank of that readout *fell* under training (165 against 187 at random init,
default model, 400 s of speech) and speaker identity went with it; with it (weight 0.3,
``objectives.decorrelation_weight``) the rank rises to ~240 and, with CPC's negatives
from other speakers, speaker accuracy recovers to random init's level (bench/RESULTS.md,
"Representation quality"). Weight 1 bought no more speaker and cost word accuracy.
VICReg's invariance term is not used: MoCo already pulls its two views together.
"""

from __future__ import annotations

import torch

VARIANCE_WEIGHT = 25.0  # mu
COVARIANCE_WEIGHT = 1.0  # nu
TARGET_STD = 1.0  # gamma
EPS = 1e-4


def decorrelation_loss(h: torch.Tensor) -> torch.Tensor:
    """Frames (..., D), at least two -> the scalar L(h) above."""
    x = h.reshape(-1, h.shape[-1]).float()
    n, d = x.shape
    if n < 2:
        return x.sum() * 0.0
    x = x - x.mean(dim=0)
    std = torch.sqrt(x.var(dim=0) + EPS)
    variance = torch.relu(TARGET_STD - std).mean()
    cov = (x.T @ x) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return VARIANCE_WEIGHT * variance + COVARIANCE_WEIGHT * off_diagonal.square().sum() / d

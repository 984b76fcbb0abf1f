"""CPC — contrastive predictive coding (van den Oord et al., "Representation Learning with
Contrastive Predictive Coding", 2018; loss layout after facebookresearch/CPC_audio).

For each step k = 1..K a linear predictor W_k maps c_t to a guess of z_{t+k}; the guess
must pick the true z_{t+k} out of N negatives (InfoNCE):

    L_CPC = -1/K sum_k mean_{b,t} log  exp(s(b,t,k,pos)) / (exp(s(b,t,k,pos)) + sum_j exp(s(b,t,k,j)))
    s(b,t,k,pos) = (W_k c_{b,t}) . z_{b,t+k},   s(b,t,k,j) = (W_k c_{b,t}) . z_{neg_j}

Where negatives come from (``objectives.cpc_negatives_from``):

- ``batch`` (default): one pool of N indices into all B*T frames per step, shared by all
  (b, t) — one matmul instead of a gather. Most negatives come from other examples, so
  they differ in speaker as well as in content, and the context must carry who is
  speaking to pick the positive: the CPC paper's own setting, whose context reached
  97 % speaker accuracy on LibriSpeech. This only works with targets that the
  augmentation does not mark (``objectives.cpc_target = "clean"``, the default: z of the
  un-augmented crop, ``streamssl.learning.views``). With targets from the augmented view
  itself, the positive was found by its augmentation fingerprint instead (measured: the
  trained model picked the right one of 8 differently augmented copies of the same
  audio 2x above chance).
- ``sequence`` (CPC_audio's sampling): N other time steps *of the same example*, per
  example and step. Every candidate then shares the example's speaker, channel and
  augmentation, so the positive can only be found by what is said next (the CPC paper's
  ablation: same-speaker negatives 65.5 % phone accuracy vs 64.6 % mixed). Measured
  here: the best word accuracy and the worst speaker accuracy (bench/RESULTS.md).

A negative that happens to be the positive itself is masked out in both.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from streamssl.learning.models.heads import StepPredictors


def _infonce_over_steps(
    preds: list[torch.Tensor], z: torch.Tensor, score_negatives: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The formula above for any choice of negatives: ``score_negatives(k, p)`` gives (B, T-k, N)
    scores of the guesses p = W_k c_t against their negatives, the positive itself masked to -inf."""
    t = z.shape[1]
    losses = []
    for k, pred in enumerate(preds, start=1):
        if t <= k:
            break
        p = pred[:, : t - k]  # (B, T-k, C)
        pos = (p * z[:, k:]).sum(-1, keepdim=True)  # (B, T-k, 1)
        logits = torch.cat([pos, score_negatives(k, p)], dim=-1)  # (B, T-k, 1+N)
        target = torch.zeros(logits.shape[0] * logits.shape[1], dtype=torch.long, device=z.device)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target))
    if not losses:
        return z.sum() * 0.0
    return torch.stack(losses).mean()


def cpc_loss(preds: list[torch.Tensor], z: torch.Tensor, neg_idx: torch.Tensor) -> torch.Tensor:
    """preds: K tensors (B, T, C) (W_k c_t for all t); z: (B, T, C); neg_idx: (K, N) long into B*T."""
    b, t, ch = z.shape
    flat = z.reshape(b * t, ch)

    def score(k: int, p: torch.Tensor) -> torch.Tensor:
        neg = torch.matmul(p, flat[neg_idx[k - 1]].T)  # (B, T-k, N)
        # index of each positive in the flattened frames, to mask it where drawn as negative
        pos_index = torch.arange(b, device=z.device)[:, None] * t + torch.arange(k, t, device=z.device)[None]
        return neg.masked_fill(pos_index[:, :, None] == neg_idx[k - 1][None, None], float("-inf"))

    return _infonce_over_steps(preds, z, score)


def cpc_loss_same_sequence(preds: list[torch.Tensor], z: torch.Tensor, neg_t: torch.Tensor) -> torch.Tensor:
    """As ``cpc_loss`` with negatives from each example's own frames; neg_t: (K, B, N) long time indices."""
    ch = z.shape[2]

    def score(k: int, p: torch.Tensor) -> torch.Tensor:
        idx = neg_t[k - 1]  # (B, N)
        neg = torch.bmm(p, torch.gather(z, 1, idx[:, :, None].expand(-1, -1, ch)).transpose(1, 2))  # (B, T-k, N)
        pos_t = torch.arange(k, z.shape[1], device=z.device)  # time of each positive
        return neg.masked_fill(pos_t[None, :, None] == idx[:, None, :], float("-inf"))

    return _infonce_over_steps(preds, z, score)


class CPC(nn.Module):
    """Predictors W_1..W_K plus the InfoNCE criterion above."""

    def __init__(self, context_dim: int, z_dim: int, steps: int, negatives: int, negatives_from: str = "sequence"):
        super().__init__()
        self.predictors = StepPredictors(context_dim, z_dim, steps)
        self.steps = steps
        self.negatives = negatives
        self.negatives_from = negatives_from

    def forward(self, c: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """c: (B, T, D); z: (B, T, C) -> scalar loss; negatives drawn with ``generator`` (CPU)."""
        b, t, _ = z.shape
        if self.negatives_from == "sequence":
            neg_t = torch.randint(0, t, (self.steps, b, self.negatives), generator=generator).to(z.device)
            return cpc_loss_same_sequence(self.predictors(c), z, neg_t)
        neg_idx = torch.randint(0, b * t, (self.steps, self.negatives), generator=generator).to(z.device)
        return cpc_loss(self.predictors(c), z, neg_idx)

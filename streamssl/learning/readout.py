"""The embedding a user gets: statistics pooling of encoder and context frames, gated by energy.

One readout serves the live stream (per window), ``streamssl embed`` (per window or per
file), ``streamssl eval`` (per utterance) and every row of the evaluation, trained and
random-init alike, so a comparison between rows compares models, not readouts.

Why this readout and not the mean of c:

- **z and c.** A predictive context drifts toward content as it trains (APC/CPC predict
  what is *said* next); speaker and channel identity live lower, in the encoder frames z
  (Chung et al. 2019 found the same layer split for APC). A user probing for either
  needs both.
- **mean and std.** The spread of a frame feature over a segment carries identity that
  its mean averages away (x-vector statistics pooling, Snyder et al. 2018); pooled
  log-mel, the baseline, gets mean and std too.
- **energy gate.** About two thirds of a live speech stream are pauses; a plain mean
  mostly describes the noise floor. Frames whose energy lies within ``ENERGY_RANGE_DB``
  of the segment's loudest frame are pooled with equal weight, the rest not at all. In a
  window of pure noise all frames are alike and all are pooled.
"""

from __future__ import annotations

import math

import torch

ENERGY_RANGE_DB = 25.0
_RANGE_NEPER = ENERGY_RANGE_DB / 10.0 * math.log(10.0)  # the same range on the natural-log power scale


def readout_dim(z_dim: int, c_dim: int) -> int:
    """Length of the pooled vector: mean and std of z and of c."""
    return 2 * (z_dim + c_dim)


def energy_weights(mel: torch.Tensor) -> torch.Tensor:
    """Raw log-mel (B, T, F) -> (B, T) weights summing to 1 over the frames within range of the loudest."""
    energy = torch.logsumexp(mel.float(), dim=-1)  # (B, T) log of the frame's mel power
    keep = energy >= energy.amax(dim=1, keepdim=True) - _RANGE_NEPER
    w = keep.float()
    return w / w.sum(dim=1, keepdim=True).clamp_min(1.0)


def stats_pool(h: torch.Tensor, w: torch.Tensor, var_floor: float = 0.0) -> torch.Tensor:
    """Frames (B, T, D) and weights (B, T) -> weighted mean and std (B, 2D).

    ``var_floor`` is added under the square root. The published readout keeps 0; a loss
    that trains *through* the readout needs a floor, because the gradient of the square
    root is infinite where a feature is constant over the frames.
    """
    w = w[..., None]
    mean = (w * h).sum(1)
    var = (w * (h - mean[:, None]).square()).sum(1)
    return torch.cat([mean, var.clamp_min(0.0).add(var_floor).sqrt()], dim=1)


def pool(z: torch.Tensor, c: torch.Tensor, mel: torch.Tensor, var_floor: float = 0.0) -> torch.Tensor:
    """Encoder z (B, T, C), context c (B, T, D), raw log-mel (B, T, F) -> embeddings (B, 2(C + D))."""
    w = energy_weights(mel)
    return torch.cat([stats_pool(z.float(), w, var_floor), stats_pool(c.float(), w, var_floor)], dim=1)

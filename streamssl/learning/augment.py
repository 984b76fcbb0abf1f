"""Augmentations that make MoCo's two views of one window: different, same content.

Waveform: a random crop in time (``crop_fraction`` of the window), a random gain
(+-6 dB) and white noise at a random SNR (5..30 dB). Features: one time mask and one
frequency mask per view (SpecAugment, Park et al. 2019), filled with 0 = the running
mean after normalisation. All randomness comes from the caller's CPU generator so a
resumed learner draws the same views.
"""

from __future__ import annotations

import torch

GAIN_DB = 6.0
SNR_DB = (5.0, 30.0)
TIME_MASK_FRACTION = 0.1
FREQ_MASK_FRACTION = 0.15


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment_waveform(audio: torch.Tensor, crop_fraction: float, g: torch.Generator) -> torch.Tensor:
    """(B, S) -> (B, round(S * crop_fraction)) cropped, gained, noised."""
    b, s = audio.shape
    length = max(1, int(round(s * crop_fraction)))
    starts = torch.randint(0, s - length + 1, (b,), generator=g)
    idx = (starts[:, None] + torch.arange(length)[None]).to(audio.device)  # (B, L)
    x = torch.gather(audio, 1, idx)
    gain = 10.0 ** (_uniform(b, -GAIN_DB, GAIN_DB, g) / 20.0)
    snr = 10.0 ** (_uniform(b, *SNR_DB, g) / 10.0)
    noise = torch.randn(b, length, generator=g)
    x = x * gain.to(x.device)[:, None]
    power = x.square().mean(1, keepdim=True).clamp_min(1e-8)  # (B, 1)
    return x + noise.to(x.device) * torch.sqrt(power / snr.to(x.device)[:, None])


def mask_features(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, T, F) normalised log-mel -> copy with one time and one frequency band set to 0 per row."""
    b, t, f = x.shape
    tw = (torch.rand(b, generator=g) * TIME_MASK_FRACTION * t).long()
    fw = (torch.rand(b, generator=g) * FREQ_MASK_FRACTION * f).long()
    t0 = (torch.rand(b, generator=g) * (t - tw + 1)).long()
    f0 = (torch.rand(b, generator=g) * (f - fw + 1)).long()
    ti = torch.arange(t)[None]
    fi = torch.arange(f)[None]
    tmask = (ti >= t0[:, None]) & (ti < (t0 + tw)[:, None])  # (B, T)
    fmask = (fi >= f0[:, None]) & (fi < (f0 + fw)[:, None])  # (B, F)
    keep = ~(tmask[:, :, None] | fmask[:, None, :])
    return x * keep.to(x.device, x.dtype)

"""Augmentations that make MoCo's two views of one window differ in what should not matter.

Waveform level: gain (loudness is not content) and additive noise at a random SNR
(microphones hiss). Feature level: a random time crop (the same sound, shifted) and
SpecAugment-style time and frequency masks (Park et al. 2019). All randomness comes from
the learner's own ``torch.Generator``, so a resumed learner draws the same views.
"""

from __future__ import annotations

import torch


def gain_and_noise(audio: torch.Tensor, g: torch.Generator, max_gain_db: float = 6.0,
                   snr_db: tuple[float, float] = (10.0, 40.0)) -> torch.Tensor:
    """(B, S) -> (B, S): random gain in +-max_gain_db, white noise at a random SNR."""
    b = audio.shape[0]
    gain_db = (torch.rand(b, 1, generator=g) * 2 - 1) * max_gain_db
    snr = snr_db[0] + torch.rand(b, 1, generator=g) * (snr_db[1] - snr_db[0])
    noise = torch.randn(audio.shape, generator=g)
    power = audio.square().mean(1, keepdim=True).clamp_min(1e-8)
    noise = noise * torch.sqrt(power.cpu() / 10 ** (snr / 10))
    return audio * (10 ** (gain_db / 20)).to(audio.device) + noise.to(audio.device)


def crop(x: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """(B, T, F) -> (B, T', F), one random window of ``fraction`` of the frames per batch."""
    t = x.shape[1]
    keep = max(1, int(round(t * fraction)))
    start = int(torch.randint(0, t - keep + 1, (1,), generator=g))
    return x[:, start : start + keep]


def masks(x: torch.Tensor, g: torch.Generator, max_time: float = 0.1, max_freq: float = 0.15) -> torch.Tensor:
    """(B, T, F) -> (B, T, F) with one time band and one mel band per row set to 0 (the normalised mean)."""
    b, t, f = x.shape
    out = x.clone()
    tw = (torch.rand(b, generator=g) * max_time * t).long()
    fw = (torch.rand(b, generator=g) * max_freq * f).long()
    t0 = (torch.rand(b, generator=g) * (t - tw).clamp_min(1)).long()
    f0 = (torch.rand(b, generator=g) * (f - fw).clamp_min(1)).long()
    ti = torch.arange(t)[None]
    fi = torch.arange(f)[None]
    time_mask = (ti >= t0[:, None]) & (ti < (t0 + tw)[:, None])  # (B, T)
    freq_mask = (fi >= f0[:, None]) & (fi < (f0 + fw)[:, None])  # (B, F)
    out[time_mask.to(x.device)] = 0.0
    out.transpose(1, 2)[freq_mask.to(x.device)] = 0.0
    return out

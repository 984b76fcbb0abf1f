"""Augmentations: the views every objective trains on, drawn so the channel cannot solve them.

Two families (``objectives.augment``):

- ``mild``: a random gain (+-6 dB) and white noise at 5..30 dB SNR; MoCo's key view also
  gets one time and one frequency mask (SpecAugment, Park et al. 2019).
- ``channel`` (default): each view passes its own random *channel* — gain -20..+6 dB,
  with probability 0.7 each a low-pass at 2-8 kHz and a high-pass at 50-400 Hz, a
  spectral tilt of +-3 dB/octave, coloured noise (white, pink or brown) at 5..35 dB SNR —
  then log-mixup-exp with another example of the batch as background (BYOL-A, Niizumi
  et al. 2021: log((1 - l) exp(x) + l exp(x_bg)), l up to ``mixup_ratio``). Microphones,
  rooms and codecs differ in exactly these ways; when the two views of a MoCo pair, or
  APC's input and its clean target, differ in them, the model cannot win by carrying
  gain, noise floor or band as its code (the shortcut measured before this change).

All randomness comes from the caller's CPU generator, so a resumed learner draws the
same views. Everything is done in the rFFT domain: one forward and one inverse
transform per view.
"""

from __future__ import annotations

import torch

GAIN_DB = 6.0
SNR_DB = (5.0, 30.0)
TIME_MASK_FRACTION = 0.1
FREQ_MASK_FRACTION = 0.15
CHANNEL_GAIN_DB = (-20.0, 6.0)
CHANNEL_SNR_DB = (5.0, 35.0)
LOWPASS_HZ = (2000.0, 8000.0)
HIGHPASS_HZ = (50.0, 400.0)
BAND_LIMIT_P = 0.7
TILT = 0.5  # exponent range of (f / 1 kHz): +-3 dB per octave


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def crop_waveform(audio: torch.Tensor, crop_fraction: float, g: torch.Generator) -> torch.Tensor:
    """(B, S) -> (B, round(S * crop_fraction)): one random crop per row."""
    b, s = audio.shape
    length = max(1, int(round(s * crop_fraction)))
    starts = torch.randint(0, s - length + 1, (b,), generator=g)
    idx = (starts[:, None] + torch.arange(length)[None]).to(audio.device)  # (B, L)
    return torch.gather(audio, 1, idx)


def mild_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(B, L) -> gained (+-6 dB) and white-noised (SNR 5..30 dB) copy."""
    b, length = x.shape
    gain = 10.0 ** (_uniform(b, -GAIN_DB, GAIN_DB, g) / 20.0)
    snr = 10.0 ** (_uniform(b, *SNR_DB, g) / 10.0)
    noise = torch.randn(b, length, generator=g)
    x = x * gain.to(x.device)[:, None]
    power = x.square().mean(1, keepdim=True).clamp_min(1e-8)  # (B, 1)
    return x + noise.to(x.device) * torch.sqrt(power / snr.to(x.device)[:, None])


def augment_waveform(audio: torch.Tensor, crop_fraction: float, g: torch.Generator) -> torch.Tensor:
    """(B, S) -> (B, round(S * crop_fraction)) cropped, then the mild gain and noise."""
    return mild_augment(crop_waveform(audio, crop_fraction, g), g)


def channel_augment(x: torch.Tensor, sample_rate: int, g: torch.Generator) -> torch.Tensor:
    """(B, L) -> the same audio through a random channel per row (module docstring)."""
    b, length = x.shape
    dev = x.device
    f = torch.fft.rfftfreq(length, 1.0 / sample_rate)[None].clamp_min(1.0)  # (1, F)
    lp, hp = _uniform(b, *LOWPASS_HZ, g), _uniform(b, *HIGHPASS_HZ, g)
    use_lp = torch.rand(b, generator=g) < BAND_LIMIT_P
    use_hp = torch.rand(b, generator=g) < BAND_LIMIT_P
    tilt = _uniform(b, -TILT, TILT, g)
    blocked = (use_lp[:, None] & (f > lp[:, None])) | (use_hp[:, None] & (f < hp[:, None]))  # (B, F)
    response = (~blocked).float() * (f / 1000.0) ** tilt[:, None]
    y = torch.fft.irfft(torch.fft.rfft(x.float(), dim=1) * response.to(dev), n=length, dim=1)
    alpha = torch.randint(0, 3, (b,), generator=g).float()  # white 0, pink 1, brown 2: power ~ 1 / f^alpha
    white = torch.randn(b, length, generator=g)
    noise = torch.fft.irfft(torch.fft.rfft(white, dim=1) * f ** (-alpha[:, None] / 2.0), n=length, dim=1).to(dev)
    noise = noise / noise.square().mean(1, keepdim=True).clamp_min(1e-12).sqrt()
    snr = 10.0 ** (_uniform(b, *CHANNEL_SNR_DB, g) / 10.0)
    power = y.square().mean(1, keepdim=True).clamp_min(1e-8)
    y = y + noise * torch.sqrt(power / snr.to(dev)[:, None])
    return y * (10.0 ** (_uniform(b, *CHANNEL_GAIN_DB, g) / 20.0)).to(dev)[:, None]


def log_mixup_exp(mel: torch.Tensor, g: torch.Generator, max_ratio: float) -> torch.Tensor:
    """(B, T, F) log-mel -> log((1 - l) exp(x) + l exp(x_bg)); the background is another row of the batch."""
    b = mel.shape[0]
    if b < 2 or max_ratio <= 0:
        return mel
    perm = (torch.arange(b) + torch.randint(1, b, (1,), generator=g)) % b  # never the row itself
    lam = _uniform(b, 0.0, max_ratio, g).to(mel.device)[:, None, None]
    bg = mel[perm.to(mel.device)]
    return torch.logaddexp(mel + torch.log1p(-lam), bg + torch.log(lam.clamp_min(1e-6)))


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

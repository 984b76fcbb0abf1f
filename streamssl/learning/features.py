"""Log-mel front end: STFT power -> mel filterbank -> log, plus online per-bin normalisation.

Framing is *causal and uncentred*: frame ``i`` covers samples ``[i*hop, i*hop + win)``,
so a stream can be cut anywhere and ``StreamingLogMel`` (which carries the samples not
yet consumed by a complete frame) yields exactly the frames of the whole stream. The mel
filterbank is built here (HTK mel scale, triangular filters) because torchaudio does not
import beside the CPU torch build.

Normalisation statistics are updated only by the training path (``Normaliser.update``),
so embedding the same audio with the same state is deterministic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from streamssl.config import FeatureConfig

LOG_FLOOR = 1e-6  # added before log so silence is a finite floor, not -inf


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters, equally spaced on the HTK mel scale."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(hz_to_mel(f_min).item(), hz_to_mel(f_max).item(), n_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mels)  # (n_mels + 2,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower[None]) / (centre - lower)[None]
    down = (upper[None] - freqs[:, None]) / (upper - centre)[None]
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


class LogMel(nn.Module):
    """Stateless log-mel of whole clips: (B, samples) -> (B, frames, n_mels).

    ``frames = (samples - win) // hop + 1`` (0 when the clip is shorter than one window).
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.sample_rate = cfg.sample_rate
        self.win = int(round(cfg.win_ms * cfg.sample_rate / 1000))
        self.hop = int(round(cfg.hop_ms * cfg.sample_rate / 1000))
        self.n_fft = 1 << math.ceil(math.log2(self.win))
        self.n_mels = cfg.n_mels
        self.register_buffer("window", torch.hann_window(self.win, periodic=True), persistent=False)
        self.register_buffer(
            "fbank", mel_filterbank(self.n_fft, cfg.sample_rate, cfg.n_mels, cfg.f_min, cfg.f_max), persistent=False
        )

    def n_frames(self, n_samples: int) -> int:
        return max(0, (n_samples - self.win) // self.hop + 1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = audio.float()
        b, n = audio.shape
        t = self.n_frames(n)
        if t == 0 or b == 0:  # no frame yet, or no audio (a learner group's rank with nothing this step)
            return audio.new_zeros(b, t, self.n_mels)
        # Frame i is samples [i*hop, i*hop + win), windowed, zero-padded to n_fft. (torch.stft
        # with win_length < n_fft would centre the window inside n_fft-sample frames: frames
        # shifted by (n_fft - win) / 2 and one frame fewer than n_frames, which broke streaming.)
        frames = audio[:, : (t - 1) * self.hop + self.win].unfold(1, self.win, self.hop)  # (B, T, win)
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)  # (B, T, n_fft//2+1)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power, self.fbank)  # (B, T, n_mels)
        return torch.log(mel + LOG_FLOOR)


class StreamingLogMel:
    """Chunk-by-chunk log-mel of one stream: identical frames to ``LogMel`` on the whole stream.

    Keeps the tail of samples that have not yet completed a frame (at most ``win - 1 +
    hop`` samples), so per-chunk cost is the chunk's own frames.
    """

    def __init__(self, logmel: LogMel, carry: torch.Tensor | None = None):
        self.logmel = logmel
        self.carry = carry if carry is not None else torch.zeros(0, device=logmel.window.device)

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (frames, n_mels)."""
        buf = torch.cat([self.carry, chunk.float()])
        t = self.logmel.n_frames(buf.shape[0])
        self.carry = buf[t * self.logmel.hop :]
        return self.logmel(buf[None])[0]


class Normaliser(nn.Module):
    """Per-bin running mean/variance of log-mel frames; buffers checkpoint with the model.

    The first updates use a cumulative average (rate ``1/n``) until it falls to
    ``momentum``, then an exponential moving average, so statistics are right from the
    first chunk and still track a drifting input.
    """

    def __init__(self, n_mels: int, momentum: float, eps: float = 1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("var", torch.ones(n_mels))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(..., n_mels) -> normalised (..., n_mels); reads the statistics, never writes them."""
        return (mel - self.mean) * torch.rsqrt(self.var + self.eps)

    @torch.no_grad()
    def update(self, mel: torch.Tensor) -> None:
        """Fold a batch of frames (..., n_mels) into the running statistics."""
        x = mel.reshape(-1, mel.shape[-1]).float()
        if x.shape[0] == 0:
            return
        # The rate stays on the device: reading the count back would stall a GPU step.
        rate = (1.0 / (self.count + 1).float()).clamp(min=self.momentum)
        self.mean.lerp_(x.mean(0), rate)
        self.var.lerp_(x.var(0, unbiased=False) if x.shape[0] > 1 else self.var, rate)
        self.count += 1

    @torch.no_grad()
    def update_moments(self, mean: torch.Tensor, var: torch.Tensor, frames: int) -> None:
        """Fold in a batch given by its moments (a learner group's reduced statistics, one update
        for the whole group's batch, as ``update`` on all its frames would be)."""
        rate = (1.0 / (self.count + 1).float()).clamp(min=self.momentum)
        self.mean.lerp_(mean, rate)
        self.var.lerp_(var if frames > 1 else self.var, rate)
        self.count += 1

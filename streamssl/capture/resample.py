"""Streaming sample-rate conversion, exact across chunk boundaries.

Used where audio arrives at a rate other than the one wanted: the file source (a file
at another rate than ``capture.sample_rate``) and the learner's per-stream state (a
capture at another rate than ``features.sample_rate``). One implementation, so both
sides resample identically.
"""

from __future__ import annotations

import math

import numpy as np


class StreamResampler:
    """Polyphase resampling (scipy ``resample_poly``) of an unbounded stream, chunk by chunk.

    Each call resamples the new input together with enough context on both sides that
    the output equals resampling the whole stream at once: segments start on multiples
    of ``down`` input samples so every segment's output grid lines up with the global
    one, and the context is longer than the anti-aliasing filter's half-length. Output
    lags input by the right context (a few hundred samples); ``flush`` emits the rest.
    The total output is ``ceil(n_in * out_rate / in_rate)`` samples, like resample_poly.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        half_in = math.ceil(10 * max(self.up, self.down) / self.up) + 2  # filter half-length, input samples
        self.pad = math.ceil(half_in / self.down) * self.down
        self._buf = np.zeros((self.pad, channels), dtype=np.float32)  # left context (zeros = stream start)
        self._n_in = 0
        self._n_out = 0

    def _run(self, seg: np.ndarray, n_core: int) -> np.ndarray:
        from scipy.signal import resample_poly

        y = resample_poly(seg, self.up, self.down, axis=0)
        start = self.pad * self.up // self.down
        return y[start : start + n_core * self.up // self.down].astype(np.float32, copy=False)

    def process(self, x: np.ndarray) -> np.ndarray:
        self._n_in += x.shape[0]
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        avail = self._buf.shape[0] - 2 * self.pad
        k = (avail // self.down) * self.down if avail > 0 else 0
        if k == 0:
            return self._buf[:0]
        y = self._run(self._buf[: 2 * self.pad + k], k)
        self._buf = self._buf[k:]
        self._n_out += y.shape[0]
        return y

    def flush(self) -> np.ndarray:
        rest = self._buf.shape[0] - self.pad
        k = math.ceil(rest / self.down) * self.down if rest > 0 else 0
        seg = np.concatenate([self._buf, np.zeros((k - rest + self.pad, self._buf.shape[1]), np.float32)])
        total = math.ceil(self._n_in * self.up / self.down)
        y = self._run(seg, k)[: total - self._n_out] if k else seg[:0]
        self._n_out += y.shape[0]
        self._buf = self._buf[:0]
        return y

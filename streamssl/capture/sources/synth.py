"""``synth``: tones and noise from a seeded generator.

For tests and benchmarks that must not depend on espeak-ng: a sequence of segments
(0.2–1.5 s), each a chord of one to three sines with a slow glide plus white noise at
a random level, phase-continuous across blocks. Same seed, same audio.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from streamssl.capture.sources.base import BaseSource, Block


class SynthSource(BaseSource):
    finite = False

    def __init__(self, *, seed: int = 0, **kw):
        super().__init__(**kw)
        self.rng = np.random.default_rng(seed)

    def _segments(self) -> Iterator[np.ndarray]:
        rate = self.sample_rate
        phases = np.zeros(3)
        while True:
            n = int(self.rng.uniform(0.2, 1.5) * rate)
            k = int(self.rng.integers(1, 4))
            f0 = self.rng.uniform(80.0, min(3000.0, rate / 4), size=k)
            f1 = f0 * self.rng.uniform(0.8, 1.25, size=k)
            amp = self.rng.uniform(0.05, 0.3, size=k)
            t = np.arange(n) / rate
            out = np.zeros(n)
            for i in range(k):
                freq = f0[i] + (f1[i] - f0[i]) * t / (n / rate)
                phase = phases[i] + 2 * np.pi * np.cumsum(freq) / rate
                out += amp[i] * np.sin(phase)
                phases[i] = phase[-1] % (2 * np.pi)
            out += self.rng.normal(0.0, self.rng.uniform(0.001, 0.05), size=n)
            mono = np.clip(out, -1.0, 1.0).astype(np.float32)[:, None]
            yield np.repeat(mono, self.channels, axis=1) if self.channels > 1 else mono

    def __iter__(self) -> Iterator[Block]:
        return self._paced(self._segments())

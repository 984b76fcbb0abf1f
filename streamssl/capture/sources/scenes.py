"""``scenes[:NOVEL_AFTER_S]``: segments of known kinds of sound, for sound-event discovery.

A seeded plan of segments (4–10 s each, never the same kind twice in a row) of four
kinds that differ the way real scenes do. Each kind is one kind of source with its own
natural variation (voices, notes, pitch, colour, level), not a family of unrelated
sounds: a listener would give each one name.

- ``speech``: espeak-ng sentences, a random voice, rate and pitch per utterance, short
  pauses over a faint noise floor (as the ``speech`` source);
- ``tones``: an electronic tone (400-800 Hz and up to three harmonics) with a slow glide;
- ``noise``: coloured noise, a random spectral slope from pink to brown (wind, rain,
  traffic), slowly swelling;
- ``music``: a synthetic band: a melody of harmonic notes with attack/decay envelopes
  over a bass line, a kick and hi-hats on a steady beat.

With ``NOVEL_AFTER_S``, a fifth kind, ``chirps`` (fast bird-like frequency sweeps), joins
the rotation only after that many seconds of audio: a class the listener has never
heard, to test novelty detection.

The plan depends only on the seed (``scene_plan``), so whoever knows the seed and the
capture's window length can label every window (``label_at``) without the audio: the
demo's summary and ``bench/events.py`` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from streamssl.capture.espeak import VOICES, SpeechUnavailable, missing_tool, synthesize
from streamssl.capture.sources.base import BaseSource, Block, SourceError
from streamssl.capture.sources.speech import WORDS
from streamssl.config import ConfigError

KINDS = ("speech", "tones", "noise", "music")
NOVEL_KIND = "chirps"
SEGMENT_S = (4.0, 10.0)


@dataclass(frozen=True)
class Segment:
    kind: str
    start_s: float
    duration_s: float
    seed: int  # the segment's own generator: its audio does not depend on the others'


def scene_plan(seed: int, novel_after_s: float | None = None) -> Iterator[Segment]:
    """The endless, seeded sequence of segments; after ``novel_after_s`` the novel kind joins.
    The first segment that starts after ``novel_after_s`` is the novel kind, so its onset is known."""
    rng = np.random.default_rng([seed, 0x5CE7E5])
    start, previous, novel_started = 0.0, None, False
    while True:
        kinds = list(KINDS)
        if novel_after_s is not None and start >= novel_after_s:
            kinds.append(NOVEL_KIND)
        if novel_after_s is not None and start >= novel_after_s and not novel_started:
            kind, novel_started = NOVEL_KIND, True
        else:
            kind = str(rng.choice([k for k in kinds if k != previous]))
        duration = float(np.round(rng.uniform(*SEGMENT_S), 2))
        yield Segment(kind, start, duration, int(rng.integers(2**31)))
        start += duration
        previous = kind


def label_at(t_s: float, seed: int, novel_after_s: float | None = None) -> str:
    """The kind of sound at ``t_s`` seconds into a ``scenes`` stream of this seed."""
    for seg in scene_plan(seed, novel_after_s):
        if t_s < seg.start_s + seg.duration_s:
            return seg.kind
    raise AssertionError("unreachable: the plan is endless")


def labels_for_windows(n: int, window_s: float, seed: int, novel_after_s: float | None = None) -> list[str]:
    """The kind at the middle of each of the first ``n`` windows of length ``window_s``."""
    out, plan = [], scene_plan(seed, novel_after_s)
    seg = next(plan)
    for i in range(n):
        t = (i + 0.5) * window_s
        while t >= seg.start_s + seg.duration_s:
            seg = next(plan)
        out.append(seg.kind)
    return out


def render(seg: Segment, rate: int) -> np.ndarray:
    """One segment's audio, float32 (samples,), exactly ``duration_s`` long."""
    n = int(round(seg.duration_s * rate))
    rng = np.random.default_rng(seg.seed)
    x = {"speech": _speech, "tones": _tones, "noise": _noise, "music": _music, NOVEL_KIND: _chirps}[seg.kind](n, rate, rng)
    x = x[:n]
    if x.shape[0] < n:
        x = np.concatenate([x, np.zeros(n - x.shape[0])])
    x = x + rng.normal(0.0, 3e-4, size=n)  # the room's floor, under every kind
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _speech(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    parts, have = [], 0
    while have < n:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
        voice = str(rng.choice(VOICES))
        x = synthesize(text, voice=voice, sample_rate=rate, words_per_minute=int(rng.integers(130, 210)),
                       pitch=int(rng.integers(20, 80)))
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        x = x * (rng.uniform(0.3, 0.8) / peak) if peak > 0 else x
        pause = np.zeros(int(rng.uniform(0.1, 0.4) * rate))
        parts += [x, pause]
        have += x.shape[0] + pause.shape[0]
    return np.concatenate(parts)


def _tones(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    f0 = rng.uniform(400.0, 800.0) * (1 + rng.uniform(-0.05, 0.05) * t / t[-1])  # a slow glide
    out = np.zeros(n)
    for h in range(1, int(rng.integers(2, 5))):  # a fundamental and up to 3 harmonics
        out += rng.uniform(0.05, 0.2) / h * np.sin(2 * np.pi * h * np.cumsum(f0) / rate)
    return out


def _noise(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    slope = rng.uniform(1.0, 2.0)  # power ~ 1/f^slope: pink (1) to brown (2), as wind, rain, traffic
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (slope / 2)
    x = np.fft.irfft(spectrum, n)
    swell = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(n) / rate)
    return rng.uniform(0.05, 0.3) * swell * x / (np.std(x) + 1e-12)


def _music(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    beat = int(rate * 60 / rng.uniform(90, 140))
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12) * 2 ** int(rng.integers(0, 2))
    for k, start in enumerate(range(0, n, beat)):
        length = min(beat, n - start)
        t = np.arange(length) / rate
        f = float(rng.choice(scale))
        note = sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3, 4))
        out[start:start + length] += 0.12 * note * np.exp(-3.0 * t) * np.minimum(1.0, t * 200)
        bass = scale[0] / 2 * (1.5 if k % 4 == 2 else 1.0)
        out[start:start + length] += 0.15 * np.sin(2 * np.pi * bass * t) * np.exp(-2.0 * t)
        if k % 2 == 0:  # kick: a falling low sine
            kick = np.sin(2 * np.pi * (60 + 90 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
            out[start:start + length] += 0.3 * kick
        hat_at = start + beat // 2
        if hat_at < n:  # hi-hat: a short burst of noise
            m = min(int(0.04 * rate), n - hat_at)
            out[hat_at:hat_at + m] += 0.05 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.01 * rate))
    return out


def _chirps(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    pos = int(rng.uniform(0.0, 0.2) * rate)
    while pos < n:
        length = min(int(rng.uniform(0.05, 0.15) * rate), n - pos)
        t = np.arange(length) / rate
        f0, f1 = rng.uniform(2500, 4500), rng.uniform(5000, 7000)
        if rng.random() < 0.5:
            f0, f1 = f1, f0
        f = f0 + (f1 - f0) * t / max(t[-1], 1e-9)
        out[pos:pos + length] += rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * np.cumsum(f) / rate) * np.hanning(length)
        pos += length + int(rng.uniform(0.03, 0.25) * rate)
    return out


class ScenesSource(BaseSource):
    finite = False

    def __init__(self, novel_after_s: float | None = None, *, seed: int = 0, **kw):
        super().__init__(**kw)
        if missing_tool():
            raise ConfigError("capture.source = 'scenes': espeak-ng and sox are needed for its speech (`make system`)")
        self.seed = seed
        self.novel_after_s = novel_after_s

    def _chunks(self) -> Iterator[np.ndarray]:
        for seg in scene_plan(self.seed, self.novel_after_s):
            if self.closed:
                return
            try:
                mono = render(seg, self.sample_rate)[:, None]
            except SpeechUnavailable as exc:
                raise SourceError(str(exc)) from None
            yield np.repeat(mono, self.channels, axis=1) if self.channels > 1 else mono

    def __iter__(self) -> Iterator[Block]:
        return self._paced(self._chunks())

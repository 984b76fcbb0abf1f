"""``speech``: an endless stream of spoken sentences, the embedded default source.

Real speech without downloading a data set: random sentences from a built-in
vocabulary spoken by espeak-ng (``streamssl.capture.espeak.synthesize``) with a random voice,
speaking rate, pitch and loudness per utterance, separated by pauses of varying length
with a faint noise floor (true digital silence never comes out of a microphone). The
stream is seeded, so tests and benchmarks see the same audio for the same seed.
Utterances are synthesised one ahead on a background thread (~25 ms each), so pacing
never waits on espeak-ng.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from streamssl.config import ConfigError
from streamssl.capture.espeak import VOICES, SpeechUnavailable, missing_tool, synthesize
from streamssl.capture.sources.base import BaseSource, Block, SourceError

WORDS = tuple(
    """
    the a one two three four five six seven eight nine ten red green blue yellow black white
    cat dog bird fish horse cow sheep mouse lion tiger river mountain forest ocean city village
    road bridge house garden window door table chair book paper pencil letter music song voice
    morning evening night summer winter spring autumn rain snow wind storm cloud sun moon star
    quick slow bright dark warm cold loud quiet happy tired early late small large old new
    runs walks jumps sings reads writes opens closes finds brings takes makes builds carries
    watches listens speaks answers waits follows remembers forgets sees hears moves turns
    under over near behind before after between through around across with without and but
    because while when where today tomorrow yesterday always never often sometimes again
    train station market kitchen school doctor teacher farmer driver sailor baker painter
    apple bread cheese water coffee orange lemon sugar salt pepper butter honey
    """.split()
)


class SpeechSource(BaseSource):
    finite = False

    def __init__(self, *, seed: int = 0, **kw):
        super().__init__(**kw)
        if tool := missing_tool():
            raise ConfigError(
                f"capture.source = 'speech': {tool} not found on PATH (Debian package {tool}; `make system`)"
            )
        self.rng = np.random.default_rng(seed)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        self._lock = threading.Lock()

    def sentence(self) -> str:
        n = int(self.rng.integers(3, 12))
        return " ".join(self.rng.choice(WORDS, size=n))

    def _utterance(self, text: str, voice: str, wpm: int, pitch: int, gain: float) -> np.ndarray:
        x = synthesize(text, voice=voice, sample_rate=self.sample_rate, words_per_minute=wpm, pitch=pitch)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        return (x * (gain / peak) if peak > 0 else x).astype(np.float32)

    def _submit(self) -> tuple[Future, float]:
        # All random draws happen here, in order, so the stream depends only on the seed.
        text = self.sentence()
        voice = str(self.rng.choice(VOICES))
        wpm = int(self.rng.integers(120, 220))
        pitch = int(self.rng.integers(20, 80))
        gain = float(self.rng.uniform(0.3, 0.9))
        pause_s = float(self.rng.uniform(0.15, 1.2))
        return self._pool.submit(self._utterance, text, voice, wpm, pitch, gain), pause_s

    def _chunks(self) -> Iterator[np.ndarray]:
        noise_rng = np.random.default_rng(int(self.rng.integers(2**63)))
        nxt = self._submit()
        while not self.closed:
            fut, pause_s = nxt
            nxt = self._submit()
            try:
                speech = fut.result(timeout=60)
            except SpeechUnavailable as exc:
                raise SourceError(str(exc)) from None
            pause = noise_rng.normal(0.0, 3e-4, size=int(pause_s * self.sample_rate)).astype(np.float32)
            mono = np.concatenate([speech, pause])[:, None]
            yield np.repeat(mono, self.channels, axis=1) if self.channels > 1 else mono

    def __iter__(self) -> Iterator[Block]:
        return self._paced(self._chunks())

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=False, cancel_futures=True)

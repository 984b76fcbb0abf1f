"""``speech[:turns|sentences]``: endless spoken audio, the embedded default source.

Why: real speech without downloading a data set, seeded, so tests, benchmarks and the
offline reference (which regenerates the stream from the seed) see the same samples.

- ``turns`` (the default, also plain ``speech``): a conversation. Real people's voices
  (``capture.voices``, train side only) take turns of 5-60 s, each with their own pitch and
  rate, heard through a microphone and room that change every few turns, with the odd
  overlap and non-speech stretch. Who speaks when is planned in
  ``sources/conversation.py`` (``conversation_plan`` labels the stream without audio);
  here each planned sentence is synthesised and fitted to exactly its planned length
  (``render_utterance``), and the session's ``capture.channel.Channel`` is applied.
- ``sentences``: the older stream, kept as it was: random sentences spoken by espeak-ng
  (``capture.espeak``) with a new voice, rate, pitch and loudness for every sentence,
  pauses of varying length over a faint noise floor. No speaker continuity.

Synthesis runs ahead on a background thread (~20-170 ms a sentence, a few sentences
ahead), so real-time pacing never waits on it.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from streamssl.capture.channel import REFERENCE_RMS, Channel
from streamssl.capture.espeak import VOICES, SpeechUnavailable, missing_tool, synthesize
from streamssl.capture.sources.base import BaseSource, Block, SourceError
from streamssl.capture.sources.conversation import WORDS, NonSpeech, Session, Utterance, timeline
from streamssl.capture.voices import Voice, available_voices, synthesize_voice
from streamssl.config import ConfigError
from streamssl.config.sources import SPEECH_MODES as MODES

__all__ = ["MODES", "WORDS", "SpeechSource", "render_nonspeech", "render_utterance", "speak", "stretch"]

AHEAD = 4  # sentences synthesised ahead of the one playing (turns mode)
REFIT = 0.05  # resynthesise at a corrected rate when the first take is further off its length than this


class SpeechSource(BaseSource):
    """Seeded endless speech; ``mode`` "turns" (a conversation, default) or "sentences" (the old stream)."""

    finite = False

    def __init__(self, *, seed: int = 0, mode: str = "turns", **kw):
        super().__init__(**kw)
        if mode not in MODES:
            raise ConfigError(f"capture.source = 'speech:{mode}': the mode is one of {', '.join(MODES)}")
        if tool := missing_tool():
            raise ConfigError(
                f"capture.source = 'speech': {tool} not found on PATH (Debian package {tool}; `make system`)"
            )
        self.seed = seed
        self.mode = mode
        self.rng = np.random.default_rng(seed)
        self._voices = available_voices("train") if mode == "turns" else []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speech")
        self._lock = threading.Lock()

    # --- sentences mode: a new random espeak-ng voice for every sentence -----------------

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

    def _sentence_chunks(self) -> Iterator[np.ndarray]:
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
            yield np.concatenate([speech, pause])

    # --- turns mode: the planned conversation --------------------------------------------

    def _render(self, event: Utterance | NonSpeech) -> np.ndarray:
        if isinstance(event, Utterance):
            return render_utterance(event, self.sample_rate)
        return render_nonspeech(event, self.sample_rate)

    def _turn_chunks(self) -> Iterator[np.ndarray]:
        """The dry timeline (sentences placed at their planned samples, summed where they
        overlap), cut where the next event starts (all before it is final) and heard
        through each session's channel."""
        events = timeline(self.seed, self.sample_rate, self._voices)
        ahead: deque[tuple[Session | Utterance | NonSpeech, Future | None]] = deque()
        dry, dry_at = np.zeros(0), 0  # dry[i] is sample dry_at + i of the stream
        channel: Channel | None = None
        while not self.closed:
            while sum(f is not None for _, f in ahead) < AHEAD:
                e = next(events)
                ahead.append((e, None if isinstance(e, Session) else self._pool.submit(self._render, e)))
            event, fut = ahead.popleft()
            if event.start > dry_at:
                take = event.start - dry_at
                chunk = np.concatenate([dry[:take], np.zeros(max(take - dry.shape[0], 0))])
                dry, dry_at = dry[take:], event.start
                yield channel.process(chunk)  # type: ignore[union-attr]  # a Session comes first
            if isinstance(event, Session):
                if channel is not None:
                    yield channel.flush()
                channel = Channel(event.channel, self.sample_rate)
                continue
            try:
                audio = fut.result(timeout=60)  # type: ignore[union-attr]
            except SpeechUnavailable as exc:
                raise SourceError(str(exc)) from None
            if dry.shape[0] < audio.shape[0]:
                dry = np.concatenate([dry, np.zeros(audio.shape[0] - dry.shape[0])])
            dry[: audio.shape[0]] += audio

    # --- both --------------------------------------------------------------------------

    def _chunks(self) -> Iterator[np.ndarray]:
        mono = self._turn_chunks() if self.mode == "turns" else self._sentence_chunks()
        for x in mono:
            x = x.astype(np.float32)[:, None]
            yield np.repeat(x, self.channels, axis=1) if self.channels > 1 else x

    def __iter__(self) -> Iterator[Block]:
        return self._paced(self._chunks())

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _trim(x: np.ndarray, rate: int, floor_db: float = -40.0) -> np.ndarray:
    """``x`` without its leading and trailing silence (10 ms frames below ``floor_db`` of the loudest)."""
    f = max(rate // 100, 1)
    m = x.shape[0] // f
    if m == 0:
        return x
    energy = np.sqrt(np.mean(x[: m * f].reshape(m, f).astype(np.float64) ** 2, axis=1))
    on = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 20))
    return x[on[0] * f: (on[-1] + 1) * f] if on.size else x[:0]


def stretch(x: np.ndarray, n: int, rate: int) -> np.ndarray:
    """``x`` made exactly ``n`` samples long at the same pitch (WSOLA: 30 ms Hann frames at
    50 % overlap, each taken within +-8 ms of its nominal place where it best continues
    the previous one); fades in and out over 15 ms."""
    x = np.asarray(x, dtype=np.float64)
    win = 2 * max(round(0.015 * rate), 1)
    hop, tol = win // 2, round(0.008 * rate)
    if x.shape[0] < win or n < win:  # too short to stretch: resample (pitch moves, but it is a blip)
        return np.interp(np.linspace(0, max(x.shape[0] - 1, 0), n), np.arange(x.shape[0]), x) if x.size else np.zeros(n)
    pad = win + tol
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad + win + int(hop * x.shape[0] / n) + 1)])
    w = np.hanning(win + 1)[:-1]  # periodic: 50 % overlaps sum to 1
    frames = n // hop + 1
    out = np.zeros(frames * hop + win)
    scale = x.shape[0] / n
    pos = pad
    for k in range(frames):
        if k:
            nominal = pad + round(k * hop * scale)
            lo, hi = nominal - tol, nominal + tol
            template = xp[pos + hop: pos + hop + win]  # what naturally follows the previous frame
            pos = lo + int(np.argmax(np.correlate(xp[lo: hi + win], template, "valid")))
        out[k * hop: k * hop + win] += w * xp[pos: pos + win]
    y = out[:n]
    y[-hop:] *= np.linspace(1.0, 0.0, hop)
    return y


def speak(voice: Voice, text: str, sample_rate: int, wpm: int, pitch: int) -> np.ndarray:
    """``voice`` saying ``text``, repeatably (``voices.synthesize_voice``)."""
    return synthesize_voice(voice, text, sample_rate=sample_rate, words_per_minute=wpm, pitch=pitch)


def render_utterance(u: Utterance, sample_rate: int) -> np.ndarray:
    """The sentence ``u`` as the stream plays it (dry): spoken by its speaker's voice at its pitch
    and rate, silence trimmed, fitted to exactly ``u.end - u.start`` samples, at its level.
    When the first take is off by more than 5 %, it is spoken again at the rate that should
    fit, so the final stretch is small."""
    n = u.end - u.start
    voice = u.speaker.voice
    x = _trim(speak(voice, u.text, sample_rate, u.wpm, u.pitch), sample_rate)
    ratio = x.shape[0] / n
    if abs(ratio - 1) > REFIT and x.size:
        wpm = int(np.clip(round(u.wpm * ratio), 80, 450))
        y = _trim(speak(voice, u.text, sample_rate, wpm, u.pitch), sample_rate)
        if abs(y.shape[0] / n - 1) < abs(ratio - 1):
            x = y
    y = stretch(x, n, sample_rate)
    rms = float(np.sqrt(np.mean(y**2)))
    return y * (REFERENCE_RMS * 10 ** (u.level_db / 20) / rms) if rms > 0 else y


def render_nonspeech(ns: NonSpeech, sample_rate: int) -> np.ndarray:
    """The non-speech stretch ``ns`` (dry): coloured noise that swells, mains hum with its
    harmonics, or silence (the channel adds its noise floor); exactly ``ns.end - ns.start`` samples."""
    n = ns.end - ns.start
    if ns.sound == "silence":
        return np.zeros(n)
    rng = np.random.default_rng(ns.seed)
    t = np.arange(n) / sample_rate
    if ns.sound == "noise":  # wind, rain, traffic, a fan: power ~ 1/f^slope, slowly swelling
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        slope = rng.uniform(0.5, 2.0)
        x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.maximum(freqs, 20.0) ** (slope / 2), n)
        x *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    else:  # hum: mains frequency and its first eight harmonics, falling 1/h
        x = sum(np.sin(2 * np.pi * h * ns.hum_hz * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 9))
    x = x * (REFERENCE_RMS * 10 ** (ns.level_db / 20) / (float(np.sqrt(np.mean(x**2))) or 1.0))
    fade = min(int(0.05 * sample_rate), n // 2)
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[n - fade:] *= ramp[::-1]
    return x

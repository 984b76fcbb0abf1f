"""Labelled evaluation sets: generated with espeak-ng, read back from a directory tree.

A labelled set is a directory ``DIR/<label 1>/<label 2>/.../<n>.wav``: every directory
level is one kind of label (for generated speech: speaker, then word), and the file is
one utterance. A ``labels.json`` at the root names the levels; without it they are
called ``level1``, ``level2``, ... so any tree of WAV files can be probed.

Speech comes from espeak-ng (``streamssl.espeak``) so that users and CI can rebuild the
same set without downloads: voices are the speakers, a fixed vocabulary gives the
words, and each repeat varies speaking rate and pitch so that a probe cannot win by
memorising one waveform per class; level, onset and a noise floor vary too
(``degrade``).
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamssl.capture.espeak import BASE_VOICES, VARIANTS, synthesize

# Short, frequent English words: digits plus commands, so word identity is a real
# phonetic distinction and not a length cue alone.
VOCABULARY = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
)
LABELS_FILE = "labels.json"
SPEECH_KINDS = ("speaker", "word")


def speaker_voices(n: int) -> list[str]:
    """``n`` espeak voices that differ in accent *and* timbre from their neighbours.

    Stepping base voice and variant together (5 and 8 are coprime) visits all 40
    combinations before repeating, so small sets never hold two variants of one accent.
    """
    total = len(BASE_VOICES) * len(VARIANTS)
    if not 1 <= n <= total:
        raise ValueError(f"--speakers must be in 1..{total}, got {n}")
    return [f"{BASE_VOICES[i % len(BASE_VOICES)]}+{VARIANTS[i % len(VARIANTS)]}" for i in range(n)]


def degrade(
    x: np.ndarray, sample_rate: int, *, gain_db: float, snr_db: float, pad_s: float, seed: int, channel: bool = True
) -> np.ndarray:
    """Level, onset, a band-limited channel and a coloured noise floor vary per utterance.

    Without this, espeak-ng's clean and perfectly repeatable output lets even pooled
    log-mel separate words almost perfectly, and the probe could no longer tell a
    learned representation from a lucky one. With ``channel`` each utterance also passes
    a random band limit (high-pass 50-400 Hz, low-pass 2-8 kHz) and its noise is white,
    pink or brown: a speaker must then be recognised through different microphones and
    rooms, which pooled log-mel statistics alone do poorly (they carry the channel too).
    """
    rng = np.random.default_rng(seed)
    pad = np.zeros(int(pad_s * sample_rate), np.float32)
    x = np.concatenate([pad, x.astype(np.float32), pad[: len(pad) // 2]]).astype(np.float64)
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    colour = 0
    if channel:
        spec = np.fft.rfft(x)
        spec[(freqs < rng.uniform(50, 400)) | (freqs > rng.uniform(2000, 8000))] = 0
        x = np.fft.irfft(spec, n=n)
        colour = int(rng.integers(0, 3))  # 0 white, 1 pink (1/f power), 2 brown (1/f^2)
    x = x * 10 ** (gain_db / 20)
    noise = rng.standard_normal(n)
    if colour:
        noise = np.fft.irfft(np.fft.rfft(noise) * np.maximum(freqs, 1.0) ** (-colour / 2), n=n)
    noise /= float(np.sqrt(np.mean(noise**2))) or 1.0
    speech_rms = float(np.sqrt(np.mean(x**2))) or 1e-4
    return np.clip(x + noise * speech_rms / 10 ** (snr_db / 20), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Utterance:
    """One file of a labelled set: where it is and its label of each kind."""

    path: Path
    labels: dict[str, str]


@dataclass
class LabelledSet:
    """The utterances of a labelled directory and the names of its label kinds."""

    root: Path
    kinds: tuple[str, ...]
    utterances: list[Utterance]

    def labels(self, kind: str) -> list[str]:
        return [u.labels[kind] for u in self.utterances]

    def load_audio(self, sample_rate: int) -> list[np.ndarray]:
        """Every utterance as mono float32 at ``sample_rate`` (resampled linearly if needed)."""
        out = []
        for u in self.utterances:
            x, rate = sf.read(u.path, dtype="float32", always_2d=True)
            x = x.mean(axis=1).astype(np.float32)
            if rate != sample_rate:
                n = int(round(len(x) * sample_rate / rate))
                x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
            out.append(x)
        return out


def generate_speech(
    out: str | Path,
    *,
    speakers: int = 8,
    words: int = 10,
    repeats: int = 10,
    sample_rate: int = 16000,
    seed: int = 0,
    workers: int = 4,
    channel: bool = True,
) -> LabelledSet:
    """Write ``speakers x words x repeats`` utterances to ``out/<speaker>/<word>/<n>.wav``.

    Rate and pitch are drawn per utterance from a seeded generator, so the same
    arguments give the same set. espeak-ng runs as a subprocess, so a few threads keep
    both cores busy without the GIL in the way.
    """
    if not 1 <= words <= len(VOCABULARY):
        raise ValueError(f"--words must be in 1..{len(VOCABULARY)}, got {words}")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    root = Path(out)
    rng = random.Random(seed)
    jobs = []
    for voice in speaker_voices(speakers):
        for word in VOCABULARY[:words]:
            for n in range(repeats):
                wpm, pitch = rng.randint(120, 220), rng.randint(25, 75)
                gain_db, snr_db, pad_s = rng.uniform(-20, 0), rng.uniform(5, 30), rng.uniform(0, 0.3)
                jobs.append((root / voice / word / f"{n}.wav", word, voice, wpm, pitch, gain_db, snr_db, pad_s,
                             rng.randrange(2**32)))

    def make(job: tuple) -> None:
        path, word, voice, wpm, pitch, gain_db, snr_db, pad_s, noise_seed = job
        x = synthesize(word, voice=voice, sample_rate=sample_rate, words_per_minute=wpm, pitch=pitch)
        x = degrade(x, sample_rate, gain_db=gain_db, snr_db=snr_db, pad_s=pad_s, seed=noise_seed, channel=channel)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x, sample_rate, subtype="PCM_16")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(make, jobs))
    (root / LABELS_FILE).write_text(json.dumps({"kinds": list(SPEECH_KINDS), "sample_rate": sample_rate}) + "\n")
    return load_labelled(root)


def load_labelled(root: str | Path) -> LabelledSet:
    """Read a labelled tree; every WAV must sit at the same depth below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    files = sorted(p for p in root.rglob("*.wav") if p.is_file())
    if not files:
        raise ValueError(f"{root}: no .wav files found")
    depths = {len(p.relative_to(root).parts) - 1 for p in files}
    if len(depths) != 1 or 0 in depths:
        raise ValueError(f"{root}: WAV files must all sit at the same depth >= 1 (found depths {sorted(depths)})")
    depth = depths.pop()
    meta = root / LABELS_FILE
    kinds: tuple[str, ...] = tuple(f"level{i + 1}" for i in range(depth))
    if meta.is_file():
        named = tuple(json.loads(meta.read_text()).get("kinds", ()))
        if len(named) == depth:
            kinds = named
    utterances = [
        Utterance(p, dict(zip(kinds, p.relative_to(root).parts[:-1]))) for p in files
    ]
    return LabelledSet(root, kinds, utterances)

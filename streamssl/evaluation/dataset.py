"""Labelled evaluation sets: generated speech of held-out people, read back from a directory tree.

A labelled set is a directory ``DIR/<label 1>/<label 2>/.../<n>.wav``: every directory
level is one kind of label (for generated speech: speaker, then word), and the file is
one utterance. A ``labels.json`` at the root names the levels; without it they are
called ``level1``, ``level2``, ... so any tree of WAV files can be probed.

Speech is synthesised locally so that users and CI can rebuild the same set without
downloads; a fixed vocabulary gives the words. Two kinds of speakers (``voices``):

- ``heldout`` (the default): the held-out side of ``streamssl.capture.voices`` -- recorded
  voices of real people (MBROLA, flite, RHVoice, SVOX pico) that the training stream never
  plays, so the speaker probe asks about people the learner never heard. Each person keeps
  their voice: a base pitch and rate drawn once per person from the seed, with only a small
  jitter per utterance (``PITCH_JITTER``, ``RATE_JITTER``). Speaker directories are the
  person ids; ``labels.json`` records the side, each speaker's person, engine and voice,
  and every utterance's parameters. Where the non-free voices are not installed,
  ``voices.available_voices`` warns and fills up with synthetic espeak-ng voices, and
  ``labels.json`` says so (``real_person: false``).
- ``espeak``: the original set, espeak-ng formant variants whose rate and pitch are drawn
  over a wide range per utterance (a weak speaker label, not a person). The same arguments
  give the same files as before this option existed, so old results can be reproduced.

Either way level, onset, a band limit and a coloured noise floor vary per utterance
(``degrade``) so that a probe cannot win by memorising one waveform per class.
"""

from __future__ import annotations

import json
import random
import re
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

VOICE_SETS = ("heldout", "espeak")
# Defaults per voice set. espeak: the original set (8 voices x 10 repeats). heldout: every
# held-out person; 4 repeats keep the set near the old one's size (960 against 800
# utterances), so `make eval` costs about what it did while the speaker probe still
# trains and tests on 20 utterances per person (5 words x 4 repeats each side).
DEFAULT_SPEAKERS = {"heldout": 24, "espeak": 8}
DEFAULT_REPEATS = {"heldout": 4, "espeak": 10}
# heldout: a person's base voice (espeak-ng's scales; other engines map them, see
# capture/voices.py), drawn once per person, and the small per-utterance jitter around it.
BASE_PITCH = (35, 65)
BASE_WPM = (140, 190)
PITCH_JITTER = 3  # +- steps of the 0-99 pitch scale
RATE_JITTER = 0.05  # +- fraction of the person's base rate


def speaker_voices(n: int) -> list[str]:
    """``n`` espeak voices that differ in accent *and* timbre from their neighbours.

    Stepping base voice and variant together (5 and 8 are coprime) visits all 40
    combinations before repeating, so small sets never hold two variants of one accent.
    """
    total = len(BASE_VOICES) * len(VARIANTS)
    if not 1 <= n <= total:
        raise ValueError(f"--speakers must be in 1..{total}, got {n}")
    return [f"{BASE_VOICES[i % len(BASE_VOICES)]}+{VARIANTS[i % len(VARIANTS)]}" for i in range(n)]


def speaker_dir(person: str) -> str:
    """A person id as a directory name: anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", person)


def heldout_speakers(n: int | None = None) -> list:
    """The first ``n`` (default all) held-out voices in a fixed, gender-balanced order.

    Women and men alternate (each in inventory order), so any prefix is balanced within
    one person. Voices come from ``voices.available_voices("heldout")``: the installed real
    people, or, where they are missing, synthetic espeak-ng fill-ins (with a warning).
    """
    from streamssl.capture.voices import available_voices

    pool = available_voices("heldout")
    women = [v for v in pool if v.gender == "female"]
    men = [v for v in pool if v.gender != "female"]
    order = [v for pair in zip(women, men) for v in pair]
    order += women[len(order) // 2:] + men[len(order) // 2:]
    if n is None:
        return order
    if not 1 <= n <= len(order):
        raise ValueError(f"--speakers must be in 1..{len(order)} for the held-out voices, got {n}")
    return order[:n]


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
    voices: str = "heldout",
    speakers: int | None = None,
    words: int = 10,
    repeats: int | None = None,
    sample_rate: int = 16000,
    seed: int = 0,
    workers: int = 4,
    channel: bool = True,
) -> LabelledSet:
    """Write ``speakers x words x repeats`` utterances to ``out/<speaker>/<word>/<n>.wav``.

    ``voices`` picks the speakers (module docstring): ``"heldout"`` (default) the
    held-out real people of ``capture/voices.py``, ``"espeak"`` the original espeak-ng
    variants; ``speakers`` and ``repeats`` default per voice set (``DEFAULT_SPEAKERS``,
    ``DEFAULT_REPEATS``). ``generate_speech(out, voices="espeak", ...)`` with the
    arguments of an older call writes the same files that call wrote.

    Everything is drawn from a seeded generator, so the same arguments give the same set.
    The synthesisers run as subprocesses, so a few threads keep both cores busy without
    the GIL in the way.
    """
    if voices not in VOICE_SETS:
        raise ValueError(f"--voices must be one of {', '.join(VOICE_SETS)}, got {voices!r}")
    speakers = DEFAULT_SPEAKERS[voices] if speakers is None else speakers
    repeats = DEFAULT_REPEATS[voices] if repeats is None else repeats
    if not 1 <= words <= len(VOCABULARY):
        raise ValueError(f"--words must be in 1..{len(VOCABULARY)}, got {words}")
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    root = Path(out)
    rng = random.Random(seed)
    jobs, speaker_meta = [], []
    if voices == "espeak":
        for voice in speaker_voices(speakers):
            speaker_meta.append({"dir": voice, "person": None, "engine": "espeak", "voice_id": voice,
                                 "real_person": False})
            for word in VOCABULARY[:words]:
                for n in range(repeats):
                    wpm, pitch = rng.randint(120, 220), rng.randint(25, 75)
                    gain_db, snr_db, pad_s = rng.uniform(-20, 0), rng.uniform(5, 30), rng.uniform(0, 0.3)
                    jobs.append((voice, voice, word, n, wpm, pitch, gain_db, snr_db, pad_s, rng.randrange(2**32)))
    else:
        # Base voices are drawn for every held-out person in the fixed order first, so a
        # person keeps the same base pitch and rate whatever --speakers is.
        everyone = heldout_speakers()
        if not 1 <= speakers <= len(everyone):
            raise ValueError(f"--speakers must be in 1..{len(everyone)} for the held-out voices, got {speakers}")
        bases = {v.person: (rng.randint(*BASE_PITCH), rng.randint(*BASE_WPM)) for v in everyone}
        for voice in everyone[:speakers]:
            name = speaker_dir(voice.person)
            base_pitch, base_wpm = bases[voice.person]
            speaker_meta.append({
                "dir": name, "person": voice.person, "engine": voice.engine, "voice_id": voice.voice_id,
                "gender": voice.gender, "language": voice.language, "real_person": voice.real_person,
                "side": voice.side, "base_pitch": base_pitch, "base_wpm": base_wpm,
            })
            for word in VOCABULARY[:words]:
                for n in range(repeats):
                    pitch = base_pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER)
                    wpm = int(round(base_wpm * rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER)))
                    gain_db, snr_db, pad_s = rng.uniform(-20, 0), rng.uniform(5, 30), rng.uniform(0, 0.3)
                    jobs.append((voice, name, word, n, wpm, pitch, gain_db, snr_db, pad_s, rng.randrange(2**32)))

    def make(job: tuple) -> None:
        voice, name, word, n, wpm, pitch, gain_db, snr_db, pad_s, noise_seed = job
        if voices == "espeak":
            x = synthesize(word, voice=voice, sample_rate=sample_rate, words_per_minute=wpm, pitch=pitch)
        else:
            from streamssl.capture.voices import synthesize_voice

            x = synthesize_voice(voice, word, sample_rate=sample_rate, words_per_minute=wpm, pitch=pitch)
        x = degrade(x, sample_rate, gain_db=gain_db, snr_db=snr_db, pad_s=pad_s, seed=noise_seed, channel=channel)
        path = root / name / word / f"{n}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x, sample_rate, subtype="PCM_16")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(make, jobs))
    meta = {
        "kinds": list(SPEECH_KINDS), "sample_rate": sample_rate, "voices": voices,
        "side": "heldout" if voices == "heldout" else None, "seed": seed, "words": list(VOCABULARY[:words]),
        "repeats": repeats, "channel": channel,
        "engines": sorted({m["engine"] for m in speaker_meta}), "speakers": speaker_meta,
        "utterances": [
            {"file": f"{name}/{word}/{n}.wav", "speaker": name, "word": word, "wpm": wpm, "pitch": pitch,
             "gain_db": round(gain_db, 3), "snr_db": round(snr_db, 3), "pad_s": round(pad_s, 4)}
            for _, name, word, n, wpm, pitch, gain_db, snr_db, pad_s, _ in jobs
        ],
    }
    (root / LABELS_FILE).write_text(json.dumps(meta) + "\n")
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

"""Real speech without data downloads: espeak-ng synthesis resampled by sox.

The speech source (the demo's and the tests' embedded default), the labelled
evaluation set and the virtual-microphone test all speak through ``synthesize`` so
that one voice list and one resampling path serve them all.

sox runs with ``-R`` (repeatable): it dithers the 16-bit output, and without ``-R`` the
dither is seeded from the clock, so the same text would differ in its last bit from run
to run and the seeded speech source (and the offline reference that regenerates it)
would not be repeatable.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from streamssl.wire import pcm16_to_float

# eSpeak NG base voices x variants: distinct accents, genders and timbres, all shipped
# with the espeak-ng-data package (mbrola voices are not).
BASE_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
VARIANTS = ("m1", "m3", "m7", "f1", "f2", "f4", "croak", "klatt2")
VOICES = tuple(f"{b}+{v}" for b in BASE_VOICES for v in VARIANTS)


class SpeechUnavailable(RuntimeError):
    """espeak-ng or sox is missing or failed; install them with `make system`."""


def synthesize(
    text: str, *, voice: str = "en-us", sample_rate: int = 16000, words_per_minute: int = 160, pitch: int = 50
) -> np.ndarray:
    """Speak ``text`` and return mono float32 samples in [-1, 1] at ``sample_rate``."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SpeechUnavailable(f"{tool} not found on PATH (Debian package: {tool}); run `make system`")
    speak = subprocess.Popen(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), text],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        raw = subprocess.run(
            ["sox", "-q", "-R", "-t", "wav", "-", "-t", "raw", "-r", str(sample_rate), "-e", "signed", "-b", "16",
             "-c", "1", "-"],
            stdin=speak.stdout, capture_output=True, check=True, timeout=30,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise SpeechUnavailable(f"sox failed: {exc.stderr.decode(errors='replace').strip()}") from None
    finally:
        speak.stdout.close()
        err = speak.stderr.read().decode(errors="replace").strip()
        if speak.wait(timeout=30) != 0:
            raise SpeechUnavailable(f"espeak-ng failed for voice {voice!r}: {err}")
    return pcm16_to_float(np.frombuffer(raw, dtype="<i2"))

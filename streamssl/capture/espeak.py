"""Real speech without data downloads: espeak-ng synthesis resampled by sox.

The speech source (the demo's and the tests' embedded default), the labelled evaluation
set and the virtual-microphone test all speak through ``synthesize`` so that one voice
list and one resampling path serve them all. sox runs without dither (``-D``), so the
same text, voice and settings give the same samples every time: a seeded speech stream
can be regenerated exactly (the offline reference of ``streamssl eval`` relies on it).
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


def missing_tool() -> str | None:
    """The first of espeak-ng and sox (both Debian packages of that name) not on PATH, or None:
    the sources that speak check it at start, so a missing tool is a config error, not a crash later."""
    return next((tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None), None)


def synthesize(
    text: str, *, voice: str = "en-us", sample_rate: int = 16000, words_per_minute: int = 160, pitch: int = 50
) -> np.ndarray:
    """Speak ``text`` and return mono float32 samples in [-1, 1] at ``sample_rate``."""
    if tool := missing_tool():
        raise SpeechUnavailable(f"{tool} not found on PATH (Debian package: {tool}); run `make system`")
    speak = subprocess.Popen(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), text],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        raw = subprocess.run(
            ["sox", "-q", "-D", "-t", "wav", "-", "-t", "raw", "-r", str(sample_rate), "-e", "signed", "-b", "16",
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

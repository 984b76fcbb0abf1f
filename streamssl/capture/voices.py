"""Real human voices: the speaker inventory, its train/held-out split, and their synthesis.

Why: espeak-ng's own voices are formant synthesis, so every "speaker" of the speech stream
was the same algorithm with other settings. Debian ships voices recorded from real people
(MBROLA diphone databases driven by espeak-ng, flite's CMU voices, RHVoice, SVOX pico),
and a held-out set of speakers never heard in training is only meaningful when those
speakers are different people. This module is the one place that says which person is
which voice and on which side of the split it lies; ``install_voices.sh`` beside it
installs the packages (contrib/non-free for all but flite).

Facts behind the table (checked on Debian bookworm, see the report of the voice survey):
- one entry per person: the same recording appears in several engines (CMU ARCTIC slt in
  flite, RHVoice and festival; kal in flite twice and in festival; mbrola de6 as mb-de6 and
  mb-de6-grc), so ``DUPLICATES`` lists the left-out aliases;
- held-out voices all read English (the evaluation needs real English words): mb-us*,
  mb-en1, the mb-<id>-en variants and the English voices of the other engines, 12 women
  and 12 men; the training side keeps every other working voice (50 persons);
- MBROLA voices of languages without Latin-script rules (Japanese, Hebrew, Arabic, Hindi,
  Telugu, Maori) or with a broken phoneme map (nl1, cn1) turn English text into mostly
  silence or spelled letters: they are in ``EXCLUDED``, not in the inventory;
- genders follow the upstream MBROLA voice list (numediart/MBROLA-voices) where Debian's
  descriptions disagree (hu1 is female, br2 male);
- if the non-free voices are missing, ``available_voices`` warns and fills each side up
  to its minimum with espeak-ng voices marked ``real_person=False`` (synthetic, disjoint
  variants per side).

Synthesis is deterministic: sox runs without dither (``-D``), as in ``espeak.py``, and MBROLA
voices are driven as ``espeak-ng --pho | mbrola`` because espeak-ng's own mbrola wrapper
is not repeatable (``_mbrola``); the other engines gave the same bytes run after run.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from streamssl.capture.espeak import SpeechUnavailable
from streamssl.capture.espeak import synthesize as espeak_synthesize
from streamssl.wire import pcm16_to_float

Side = Literal["train", "heldout"]
Engine = Literal["espeak-mbrola", "flite", "pico", "rhvoice", "espeak"]

MIN_PERSONS: dict[str, int] = {"train": 40, "heldout": 24}
INSTALL_HINT = "run `sudo sh streamssl/capture/install_voices.sh` (adds Debian contrib/non-free)"
NEUTRAL_WPM = 160  # words_per_minute at which engines other than espeak-ng keep their own pace
NEUTRAL_PITCH = 50  # espeak-ng's 0-99 pitch scale; other engines shift 8 cents per step from here

MBROLA_DIR = Path("/usr/share/mbrola")
PICO_LANG_DIR = Path("/usr/share/pico/lang")
RHVOICE_DIR = Path("/usr/share/RHVoice/voices")

MBROLA_LICENCE = "MBROLA licence: non-commercial, use with the MBROLA program only, not to be sold"
LICENCES = {
    "flite": "CMU free licence (BSD-like, commercial use allowed)",
    "pico": "Apache-2.0 per SVOX, lingware without source (Debian non-free)",
    "rhvoice": "LGPL-2.1+ per Debian copyright; upstream voice packs say CC-BY-NC-ND-4.0",
    "rhvoice-nc": "CC-BY-NC-ND-4.0",
    "espeak": "GPL-3+ (espeak-ng)",
}


@dataclass(frozen=True)
class Voice:
    engine: Engine
    voice_id: str  # as passed to the engine (espeak-ng -v, flite -voice, pico2wave -l, RHVoice -p)
    person: str  # one id per human being; equal ids are the same person across engines
    language: str  # the recorded speaker's language
    gender: str  # "female", "male"
    licence: str
    package: str  # the Debian package to install for it
    side: Side
    real_person: bool = True
    english: bool = True  # pronounces English text by English rules (held-out needs this)
    native_rate: int = 16000  # the engine's output rate before sox resamples


# MBROLA databases, driven by espeak-ng: (id, language, gender, side, native rate).
# mb-us*, mb-en1 and the ids in _MBROLA_EN_VARIANTS read English; the others read English
# text by their own language's rules (a real voice, accented words: training only).
_MBROLA_EN_VARIANTS = frozenset("af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2".split())
_MBROLA = (
    ("us1", "en-US", "female", "heldout", 16000), ("us2", "en-US", "male", "heldout", 16000),
    ("us3", "en-US", "male", "train", 16000), ("en1", "en-GB", "male", "heldout", 16000),
    ("af1", "af", "male", "heldout", 16000), ("de1", "de", "female", "heldout", 16000),
    ("de2", "de", "male", "heldout", 16000), ("de3", "de", "female", "heldout", 22050),
    ("de4", "de", "male", "heldout", 16000), ("de5", "de", "female", "heldout", 22050),
    ("de6", "de", "male", "train", 22050), ("fr1", "fr", "male", "heldout", 16000),
    ("fr4", "fr", "female", "heldout", 22050), ("gr2", "el", "male", "heldout", 22050),
    ("hu1", "hu", "female", "heldout", 16000), ("nl2", "nl", "male", "train", 16000),
    ("pl1", "pl", "female", "heldout", 16000), ("ro1", "ro", "male", "heldout", 16000),
    ("sw1", "sv", "male", "heldout", 16000), ("sw2", "sv", "female", "heldout", 16000),
    ("br1", "pt-BR", "male", "train", 16000), ("br2", "pt-BR", "male", "train", 22050),
    ("br3", "pt-BR", "male", "train", 22050), ("br4", "pt-BR", "female", "train", 16000),
    ("ca1", "fr-CA", "male", "train", 16000), ("ca2", "fr-CA", "male", "train", 22050),
    ("cr1", "hr", "male", "train", 16000), ("cz1", "cs", "female", "train", 16000),
    ("cz2", "cs", "male", "train", 16000), ("de7", "de", "female", "train", 22050),
    ("de8", "bar", "male", "train", 16000), ("ee1", "et", "male", "train", 16000),
    ("es1", "es", "male", "train", 16000), ("es2", "es", "male", "train", 22050),
    ("es3", "es", "female", "train", 16000), ("es4", "es", "male", "train", 16000),
    ("fr2", "fr", "female", "train", 22050), ("fr3", "fr", "male", "train", 16000),
    ("fr5", "fr-BE", "male", "train", 16000), ("fr6", "fr", "male", "train", 16000),
    ("fr7", "fr-BE", "male", "train", 16000), ("gr1", "el", "male", "train", 16000),
    ("ic1", "is", "male", "train", 16000), ("id1", "id", "male", "train", 16000),
    ("ir1", "fa", "male", "train", 16000), ("it1", "it", "male", "train", 16000),
    ("it2", "it", "female", "train", 16000), ("it3", "it", "male", "train", 16000),
    ("it4", "it", "female", "train", 16000), ("la1", "la", "male", "train", 16000),
    ("lt1", "lt", "male", "train", 16000), ("lt2", "lt", "male", "train", 16000),
    ("ma1", "ms", "female", "train", 16000), ("mx1", "es-MX", "male", "train", 16000),
    ("mx2", "es-MX", "male", "train", 16000), ("nl3", "nl", "female", "train", 16000),
    ("pt1", "pt-PT", "female", "train", 22050), ("tr1", "tr", "male", "train", 16000),
    ("tr2", "tr", "female", "train", 22050), ("vz1", "es-VE", "male", "train", 16000),
)
_MBROLA_LICENCE_EXTRA = {
    "en1": "MBROLA licence (use with MBROLA only); University of Edinburgh ROGER terms (free redistribution)",
    "de4": MBROLA_LICENCE + "; no military or pornographic use",
}


def _mbrola(db: str, language: str, gender: str, side: Side, rate: int) -> Voice:
    english = db in _MBROLA_EN_VARIANTS or language.startswith("en")
    return Voice(
        "espeak-mbrola", f"mb-{db}-en" if db in _MBROLA_EN_VARIANTS else f"mb-{db}",
        "cstr-roger" if db == "en1" else f"mbrola-{db}",  # en1 is the Edinburgh ROGER database
        language, gender, _MBROLA_LICENCE_EXTRA.get(db, MBROLA_LICENCE), f"mbrola-{db}", side,
        english=english, native_rate=rate,
    )


INVENTORY: tuple[Voice, ...] = (
    *(_mbrola(*row) for row in _MBROLA),  # type: ignore[arg-type]
    Voice("flite", "kal16", "cmu-kal", "en-US", "male", LICENCES["flite"], "flite", "train"),
    Voice("flite", "awb", "cmu-arctic-awb", "en-GB", "male", LICENCES["flite"], "flite", "heldout"),
    Voice("flite", "rms", "cmu-arctic-rms", "en-US", "male", LICENCES["flite"], "flite", "heldout"),
    Voice("flite", "slt", "cmu-arctic-slt", "en-US", "female", LICENCES["flite"], "flite", "heldout"),
    Voice("rhvoice", "bdl", "cmu-arctic-bdl", "en-US", "male", LICENCES["rhvoice"], "rhvoice-english", "heldout",
          native_rate=24000),
    Voice("rhvoice", "clb", "cmu-arctic-clb", "en-US", "female", LICENCES["rhvoice"], "rhvoice-english", "heldout",
          native_rate=24000),
    Voice("rhvoice", "evgeniy-eng", "rhvoice-evgeniy", "en", "male", LICENCES["rhvoice-nc"], "rhvoice-english",
          "train", native_rate=24000),
    Voice("rhvoice", "lyubov", "rhvoice-lyubov", "en", "female", LICENCES["rhvoice-nc"], "rhvoice-english",
          "train", native_rate=24000),
    Voice("pico", "en-US", "svox-en-US", "en-US", "female", LICENCES["pico"], "libttspico-utils", "heldout"),
    Voice("pico", "en-GB", "svox-en-GB", "en-GB", "female", LICENCES["pico"], "libttspico-utils", "heldout"),
    *(Voice("pico", lang, f"svox-{lang}", lang, "female", LICENCES["pico"], "libttspico-utils", "train",
            english=False) for lang in ("de-DE", "es-ES", "fr-FR", "it-IT")),
)

# Same person as an inventory entry, left out on purpose: engine:voice -> person.
DUPLICATES: dict[str, str] = {
    "flite:kal": "cmu-kal",  # 8 kHz version of kal16
    "rhvoice:slt": "cmu-arctic-slt",
    "rhvoice:alan": "cmu-arctic-awb",  # Scottish male trained on ARCTIC recordings; taken as awb
    "espeak-mbrola:mb-de6-grc": "mbrola-de6",
    "festival:rab_diphone": "cstr-roger", "festival:kal_diphone": "cmu-kal",
    "festival:cmu_us_slt_arctic_hts": "cmu-arctic-slt",
}

# MBROLA voices espeak-ng can drive but that do not speak English text (measured: share of
# the utterance that is speech, for a 17-word sentence): not installed, not used.
EXCLUDED: dict[str, str] = {
    "mb-cn1": "espeak-ng fails: its zh_phtrans table is missing",
    "mb-nl1": "mostly silent even for Dutch text (diphone set does not match nl_phtrans)",
    **{f"mb-{v}": "English text is spelled letter by letter, most diphones missing: near silence"
       for v in ("hb1", "hb2", "jp1", "jp2", "jp3")},
    **{f"mb-{v}": "under 1.3 s of speech for 4+ s of English text (missing diphones)"
       for v in ("ar1", "ar2", "tl1", "in1", "in2")},
    "mb-nz1": "spells most English words; 1.8 s of speech in 9.7 s",
}

# Fallback speakers when the real voices are missing: espeak-ng formant variants, disjoint
# variant sets per side, each variant x accent one synthetic "speaker".
_SYNTHETIC_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-029")
_SYNTHETIC_VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("m1", "male"), ("f1", "female"), ("m2", "male"), ("f2", "female"), ("m3", "male"),
              ("f3", "female"), ("m4", "male"), ("m5", "male"), ("m6", "male"), ("croak", "male")),
    "heldout": (("m7", "male"), ("f4", "female"), ("m8", "male"), ("f5", "female"), ("klatt2", "male"),
                ("linda", "female")),
}
SYNTHETIC: tuple[Voice, ...] = tuple(
    Voice("espeak", f"{base}+{variant}", f"espeak-{base}+{variant}", base, gender, LICENCES["espeak"],
          "espeak-ng", side, real_person=False, native_rate=22050)  # type: ignore[arg-type]
    for side, variants in _SYNTHETIC_VARIANTS.items() for base in _SYNTHETIC_BASES for variant, gender in variants
)


def inventory(side: Side | None = None) -> list[Voice]:
    """The real-person voices of ``side`` (all of them for None), installed or not."""
    return [v for v in INVENTORY if side is None or v.side == side]


@functools.cache
def _flite_voices() -> frozenset[str]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(out.split(":", 1)[-1].split())


@functools.cache
def _available(engine: str, voice_id: str) -> bool:
    which = shutil.which
    if which("sox") is None:
        return False
    if engine == "espeak":
        return which("espeak-ng") is not None
    if engine == "espeak-mbrola":
        db = voice_id.split("-")[1]
        return bool(which("espeak-ng") and which("mbrola")) and (MBROLA_DIR / db / db).is_file()
    if engine == "flite":
        return which("flite") is not None and voice_id in _flite_voices()
    if engine == "pico":
        return which("pico2wave") is not None and any(PICO_LANG_DIR.glob(f"{voice_id}_*.bin"))
    if engine == "rhvoice":
        return which("RHVoice-test") is not None and (RHVOICE_DIR / voice_id / "voice.info").is_file()
    raise ValueError(f"unknown engine {engine!r}")


def available(voice: Voice) -> bool:
    """Whether ``voice`` can speak here (its tools and data files are installed); cached."""
    return _available(voice.engine, voice.voice_id)


def clear_cache() -> None:
    """Forget what was found installed (after installing voices, or in tests)."""
    _available.cache_clear()
    _flite_voices.cache_clear()


def available_voices(side: Side, *, voices: tuple[Voice, ...] = INVENTORY) -> list[Voice]:
    """The installed real voices of ``side``; with fewer than ``MIN_PERSONS[side]`` of them,
    warns and fills up with espeak-ng synthetic voices (``real_person=False``) of that side."""
    real = [v for v in voices if v.side == side and v.real_person and available(v)]
    missing = [v for v in voices if v.side == side and v.real_person and not available(v)]
    need = MIN_PERSONS[side] - len(real)
    fill = [v for v in SYNTHETIC if v.side == side and available(v)][: max(need, 0)]
    if missing:
        packages = sorted({v.package for v in missing})
        warnings.warn(
            f"{len(missing)} {side} voices are not installed (Debian packages: {', '.join(packages[:6])}"
            f"{', ...' if len(packages) > 6 else ''}); {INSTALL_HINT}."
            + (f" Using {len(real)} real voices and {len(fill)} synthetic espeak-ng voices instead." if fill else ""),
            stacklevel=2,
        )
    return real + fill


def _shift_cents(pitch: int) -> int:
    return (pitch - NEUTRAL_PITCH) * 8


def _sox(wav: Path, sample_rate: int, effects: list[str]) -> np.ndarray:
    """A WAV file -> mono float32 at ``sample_rate``; no dither, so deterministic."""
    try:
        raw = subprocess.run(
            ["sox", "-q", "-D", str(wav), "-t", "raw", "-r", str(sample_rate), "-e", "signed", "-b", "16",
             "-c", "1", "-", *effects],
            capture_output=True, check=True, timeout=30,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise SpeechUnavailable(f"sox failed: {exc.stderr.decode(errors='replace').strip()}") from None
    return pcm16_to_float(np.frombuffer(raw, dtype="<i2"))


def _pipe(cmd: list[str], stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise SpeechUnavailable(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _mbrola(voice: Voice, text: str, sample_rate: int, wpm: int, pitch: int) -> np.ndarray:
    """An MBROLA voice as ``espeak-ng --pho | mbrola -e``, not through espeak-ng's mbrola wrapper:
    the wrapper's output is not repeatable (for English read with missing diphones, mb-mx1 and
    others, about 1 run in 10 came out another length), the pipe gave the same bytes 12 times
    in 12 and the wrapper's usual waveform up to a gain. A stream or a labelled set rebuilt from
    its seed needs the same samples."""
    db = voice.voice_id.split("-")[1]
    pho = _pipe(["espeak-ng", "-q", "--pho", "-v", voice.voice_id, "-s", str(wpm), "-p", str(pitch), text])
    raw = _pipe(["mbrola", "-e", str(MBROLA_DIR / db / db), "-", "-.raw"], pho)
    out = _pipe(["sox", "-q", "-D", "-t", "raw", "-r", str(voice.native_rate), "-e", "signed", "-b", "16", "-c", "1",
                 "-", "-t", "raw", "-r", str(sample_rate), "-e", "signed", "-b", "16", "-c", "1", "-"], raw)
    return pcm16_to_float(np.frombuffer(out, dtype="<i2"))


def _engine_command(voice: Voice, text: str, out: Path, wpm: int, pitch: int) -> tuple[list[str], bytes | None]:
    """The command writing ``out`` and its stdin; rate and pitch the engine can set itself."""
    if voice.engine == "flite":
        stretch = f"{NEUTRAL_WPM / wpm:.4f}"
        return ["flite", "-voice", voice.voice_id, "--setf", f"duration_stretch={stretch}", "-t", text,
                "-o", str(out)], None
    if voice.engine == "pico":
        return ["pico2wave", "-l", voice.voice_id, "-w", str(out), "--", text], None
    if voice.engine == "rhvoice":
        rate, tone = round(100 * wpm / NEUTRAL_WPM), round(100 * 2 ** (_shift_cents(pitch) / 1200))
        return ["RHVoice-test", "-p", voice.voice_id, "-r", str(rate), "-t", str(tone), "-o", str(out)], text.encode()
    raise ValueError(f"not a file-writing engine: {voice.engine}")


def synthesize_voice(
    voice: Voice, text: str, sample_rate: int = 16000, words_per_minute: int = NEUTRAL_WPM,
    pitch: int = NEUTRAL_PITCH,
) -> np.ndarray:
    """Speak ``text`` with ``voice``: mono float32 in [-1, 1] at ``sample_rate``, the same
    samples for the same arguments. ``words_per_minute`` and ``pitch`` are espeak-ng's
    (-s, -p 0-99); other engines scale their own pace by words_per_minute/160 and shift
    pitch by 8 cents per step from 50 (flite: duration_stretch and sox pitch; RHVoice:
    its -r/-t; pico: sox tempo and pitch)."""
    if not available(voice):
        raise SpeechUnavailable(f"voice {voice.engine}:{voice.voice_id} is not installed "
                                f"(Debian package {voice.package}); {INSTALL_HINT}")
    if voice.engine == "espeak":
        return espeak_synthesize(text, voice=voice.voice_id, sample_rate=sample_rate,
                                 words_per_minute=words_per_minute, pitch=pitch)
    if voice.engine == "espeak-mbrola":
        return _mbrola(voice, text, sample_rate, words_per_minute, pitch)
    effects: list[str] = []
    if voice.engine == "pico" and words_per_minute != NEUTRAL_WPM:
        effects += ["tempo", "-s", f"{words_per_minute / NEUTRAL_WPM:.4f}"]
    if voice.engine in ("flite", "pico") and pitch != NEUTRAL_PITCH:
        effects += ["pitch", str(_shift_cents(pitch))]
    with tempfile.TemporaryDirectory(prefix="streamssl-voice-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd, stdin = _engine_command(voice, text, out, words_per_minute, pitch)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
        if proc.returncode != 0 or not out.is_file():
            err = proc.stderr.decode(errors="replace").strip()
            raise SpeechUnavailable(f"{cmd[0]} failed for voice {voice.voice_id!r}: {err}")
        return _sox(out, sample_rate, effects)

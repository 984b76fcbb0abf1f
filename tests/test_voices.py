"""The real-person voice inventory (streamssl/capture/voices.py) and its install script.

A missing voice package is a skip on a developer's machine and a failure in CI (CI=true),
where `install_voices.sh` has installed them.
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamssl.capture import voices as V
from streamssl.capture.espeak import SpeechUnavailable

SCRIPT = Path(V.__file__).with_name("install_voices.sh")
TEXT = "Seven quiet people watched the brown fox jump over the lazy dog."


def require(voice: V.Voice) -> None:
    if V.available(voice):
        return
    msg = f"{voice.engine} voice {voice.voice_id} is not installed (Debian package {voice.package})"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}; CI runs `sh streamssl/capture/install_voices.sh` first")
    pytest.skip(msg)


def test_split_is_disjoint_by_person_and_one_entry_per_person():
    persons = [v.person for v in V.INVENTORY + V.SYNTHETIC]
    assert len(persons) == len(set(persons)), [p for p, n in Counter(persons).items() if n > 1]
    sides = {s: {v.person for v in V.INVENTORY + V.SYNTHETIC if v.side == s} for s in ("train", "heldout")}
    assert not sides["train"] & sides["heldout"]
    assert {v.side for v in V.INVENTORY + V.SYNTHETIC} == {"train", "heldout"}
    assert all(v.real_person for v in V.INVENTORY) and not any(v.real_person for v in V.SYNTHETIC)
    # the left-out aliases are of people the inventory has, so nobody comes in twice
    assert set(V.DUPLICATES.values()) <= {v.person for v in V.INVENTORY}
    assert not {v.voice_id for v in V.INVENTORY} & set(V.EXCLUDED)


def test_each_side_meets_its_minimum_and_heldout_is_english_and_balanced():
    for side, minimum in V.MIN_PERSONS.items():
        assert len(V.inventory(side)) >= minimum, side
        assert len([v for v in V.SYNTHETIC if v.side == side]) >= minimum, side
    heldout = V.inventory("heldout")
    assert all(v.english for v in heldout)
    genders = Counter(v.gender for v in heldout)
    assert abs(genders["female"] - genders["male"]) <= 2, genders


@pytest.mark.parametrize("side", ["train", "heldout"])
def test_installed_voices_fill_each_side_without_fallback(side):
    for voice in V.inventory(side):
        require(voice)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all installed: no fallback warning
        got = V.available_voices(side)
    assert len(got) >= V.MIN_PERSONS[side] and all(v.real_person and v.side == side for v in got)


def _first(engine: str) -> V.Voice:
    return next(v for v in V.INVENTORY + V.SYNTHETIC if v.engine == engine)


@pytest.mark.parametrize("engine", ["espeak-mbrola", "flite", "rhvoice", "pico", "espeak"])
def test_each_engine_speaks_deterministically_at_16k(engine):
    voice = _first(engine)
    require(voice)
    a = V.synthesize_voice(voice, TEXT, sample_rate=16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert 1.0 < len(a) / 16000 < 10.0, len(a)
    assert np.sqrt(np.mean(a**2)) > 0.01 and np.abs(a).max() <= 1.0
    assert np.array_equal(a, V.synthesize_voice(voice, TEXT, sample_rate=16000))
    fast = V.synthesize_voice(voice, TEXT, sample_rate=16000, words_per_minute=240)
    assert len(fast) < 0.85 * len(a)


def test_missing_voice_warns_and_falls_back_to_synthetic_espeak():
    ghost = V.Voice("espeak-mbrola", "mb-zz9-en", "mbrola-zz9", "en", "female", V.MBROLA_LICENCE,
                    "mbrola-zz9", "heldout")
    assert not V.available(ghost)
    with pytest.raises(SpeechUnavailable, match="mbrola-zz9"):
        V.synthesize_voice(ghost, TEXT)
    if not V.available(V.SYNTHETIC[0]):
        pytest.fail("espeak-ng and sox are needed for the fallback (Makefile: make system)")
    with pytest.warns(UserWarning, match=r"not installed \(Debian packages: mbrola-zz9\).*synthetic"):
        got = V.available_voices("heldout", voices=(ghost,))
    assert ghost not in got and len(got) == V.MIN_PERSONS["heldout"]
    assert all(not v.real_person and v.side == "heldout" for v in got)


def test_install_script_installs_exactly_the_inventory_voices():
    text = SCRIPT.read_text()
    lists = {name: set(re.search(rf'{name}="([^"]*)"', text).group(1).split())
             for name in ("MBROLA_EN", "MBROLA_OTHER")}
    mbrola = [v for v in V.INVENTORY if v.engine == "espeak-mbrola"]
    assert lists["MBROLA_EN"] | lists["MBROLA_OTHER"] == {v.package.removeprefix("mbrola-") for v in mbrola}
    assert lists["MBROLA_EN"] == {v.package.removeprefix("mbrola-") for v in mbrola if v.english}
    for package in {v.package for v in V.INVENTORY if v.engine != "espeak-mbrola"}:
        assert re.search(rf"\b{re.escape(package)}\b", text), package
    assert "debian.org" not in text  # the mirror comes from the machine's own apt sources


def test_install_script_copies_the_configured_debian_main_entry(tmp_path):
    def entry(**files: str) -> list[str]:
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        env = {**os.environ, "APT_SOURCES_DIR": str(tmp_path), "APT_SOURCES_LIST": str(tmp_path / "sources.list"),
               "OS_RELEASE": str(tmp_path / "os-release")}
        out = subprocess.run(["sh", str(SCRIPT), "--sources-entry"], env=env, capture_output=True, text=True,
                             check=True, timeout=10)
        return out.stdout.strip().split("|") if out.stdout.strip() else []

    key = "/usr/share/keyrings/debian-archive-keyring.gpg"
    debian = (f"Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
              f"Components: main\nSigned-By: {key}\n\n"
              f"Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n")
    uris, suites, comps, signed_by = entry(**{
        "os-release": 'PRETTY_NAME="Debian"\nID=debian\nVERSION_CODENAME=bookworm\n',
        "a-nodesource.sources": "Types: deb\nURIs: https://node.invalid/node_20.x\nSuites: nodistro\nComponents: main\n",
        "debian.sources": debian,
    })
    assert (uris, suites, comps.split(), signed_by) == (
        "http://mirror.invalid/debian", "bookworm bookworm-updates", ["main"], key)
    (tmp_path / "debian.sources").unlink()  # a machine with a one-line sources.list
    assert entry(**{"sources.list": "deb [arch=amd64] http://other.invalid/debian bookworm main contrib\n"})[:2] == [
        "http://other.invalid/debian", "bookworm"]
    assert entry(**{"os-release": "ID=ubuntu\nVERSION_CODENAME=noble\n"}) == []  # not Debian: adds nothing

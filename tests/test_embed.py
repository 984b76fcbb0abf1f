"""``streamssl embed`` as a real subprocess: its rows equal ``learner.embed`` on windows of
the same audio cut as the live capture cuts them, from the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import gcd
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from streamssl import config
from streamssl.learning import checkpoint
from streamssl.capture.espeak import synthesize
from streamssl.learning.learner import OnlineLearner
from support import cut_windows

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small learner after a few steps (non-trivial normaliser and weights), checkpointed."""
    d = tmp_path_factory.mktemp("embed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope runs before the autouse one-thread fixture
    learner = OnlineLearner(config.load("tests/configs/small.toml"), device="cpu")
    speech = _int16(synthesize("Seven quiet ships sailed past the harbour lights.", voice="en-gb+f2"))
    for w in cut_windows(speech, [8000], "train")[:3]:
        learner.update([w])
    # the checkpoint carries a stream with the same name as a file: embed must start it fresh
    learner.embed(cut_windows(speech[:12000], [8000], "one.wav"))
    ckpt = checkpoint.save(learner, d / "ckpt", keep=2)
    torch.set_num_threads(threads)
    return d, ckpt


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "streamssl", "embed", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_embed_command_matches_learner_embed(trained):
    d, ckpt = trained
    a = synthesize("Please hand me the small green box from the top shelf.", voice="en-us+m3")
    b = synthesize("Numbers like forty two and ninety nine are easy to say.", voice="en-gb-scotland+f1")
    one, two = d / "one.wav", d / "two.wav"
    sf.write(one, _int16(a), 16000, subtype="PCM_16")  # model rate, int16: bit-exact path
    stereo = np.stack([b, 0.5 * b[::-1]], axis=1)[: 22050 * 2]  # 22.05 kHz stereo: mixed and resampled
    stereo_44 = resample_poly(stereo, 441, 320, axis=0).astype(np.float32)[: 22050 * 2]
    sf.write(two, stereo_44, 22050, subtype="FLOAT")
    out = d / "emb.npy"

    r = _run("--checkpoint", str(ckpt.parent), str(one), str(two), "--out", str(out), "--window-ms", "500")
    assert r.returncode == 0, r.stderr
    rows = np.load(out)
    index = json.loads((d / "emb.index.json").read_text())

    ref_learner = checkpoint.learner_from_checkpoint(ckpt)
    assert index["model_step"] == ref_learner.step == 3 and index["dim"] == ref_learner.dim
    # reference 1: the int16 samples as written, cut into 8000-sample windows (the last shorter)
    pcm_one = sf.read(one, dtype="int16")[0]
    ref_one = np.stack([f.embedding for f in ref_learner.embed(cut_windows(pcm_one, [8000], "ref-one"))])
    # reference 2: mono mix, whole-file resample_poly to 16 kHz, clip, int16, windows
    x, rate = sf.read(two, dtype="float32", always_2d=True)
    g = gcd(rate, 16000)
    mono = np.clip(resample_poly(x.mean(1), 16000 // g, rate // g), -1, 1)
    ref_two = np.stack([f.embedding for f in ref_learner.embed(cut_windows(_int16(mono), [8000], "ref-two"))])

    n1, n2 = -(-len(pcm_one) // 8000), -(-len(mono) // 8000)
    assert rows.shape == (n1 + n2, ref_learner.dim) and rows.dtype == np.float32
    assert [(r["file"], r["seq"]) for r in index["rows"]] == [(str(one), i) for i in range(n1)] + [
        (str(two), i) for i in range(n2)]
    assert index["rows"][1]["start_s"] == 0.5 and index["rows"][n1 - 1]["duration_s"] <= 0.5
    np.testing.assert_allclose(rows[:n1], ref_one, rtol=1e-5, atol=1e-5)
    # the capture's streaming resampler equals resample_poly up to float rounding, which can
    # flip an int16 sample by one step: a looser bound, still far below any real difference
    np.testing.assert_allclose(rows[n1:], ref_two, rtol=1e-3, atol=1e-3)
    # rows differ between windows and files (not one constant vector)
    assert np.std(rows, axis=0).mean() > 1e-3


def test_embed_command_refuses_a_damaged_checkpoint(trained, tmp_path):
    d, ckpt = trained
    bad = tmp_path / "ckpt-000000000009.pt"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    wav = tmp_path / "x.wav"
    sf.write(wav, np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    r = _run("--checkpoint", str(bad), str(wav), "--out", str(tmp_path / "x.npy"))
    assert r.returncode == 1
    assert "ckpt-000000000009.pt" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.npy").exists()


def test_embed_per_file_is_the_readout_over_the_whole_file(trained):
    d, ckpt = trained
    a = synthesize("Every file becomes one row of the matrix.", voice="en-gb+m3")
    b = synthesize("And a second voice gives a second row.", voice="en-us+f2")
    paths = [d / "pf-a.wav", d / "pf-b.wav"]
    for path, x in zip(paths, (a, b)):
        sf.write(path, _int16(x), 16000, subtype="PCM_16")
    out = d / "per-file.npy"
    r = _run("--checkpoint", str(ckpt.parent), *map(str, paths), "--out", str(out), "--per-file")
    assert r.returncode == 0, r.stderr
    rows = np.load(out)
    index = json.loads((d / "per-file.index.json").read_text())
    learner = checkpoint.learner_from_checkpoint(ckpt)
    assert rows.shape == (2, learner.dim) and index["per_file"] is True
    assert [row["file"] for row in index["rows"]] == [str(p) for p in paths]
    for row, path in zip(rows, paths):
        pcm = sf.read(path, dtype="int16")[0].astype(np.float32) / 32768.0
        np.testing.assert_allclose(row, learner.embed_segments(pcm[None])[0], rtol=1e-5, atol=1e-5)
    assert np.abs(rows[0] - rows[1]).max() > 1e-3, "two different files give two different rows"

"""Log-mel front end: filterbank sanity, streaming == whole, and the normaliser's schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.learning.features import LogMel, Normaliser, StreamingLogMel, hz_to_mel, mel_filterbank


def test_mel_filterbank_shape_and_partition_of_unity():
    n_fft, rate, n_mels, f_min, f_max = 512, 16000, 40, 0.0, 8000.0
    fb = mel_filterbank(n_fft, rate, n_mels, f_min, f_max).double()
    assert fb.shape == (n_fft // 2 + 1, n_mels)
    assert (fb >= 0).all() and (fb <= 1 + 1e-6).all()
    assert (fb.sum(0) > 0).all(), "every filter covers at least one FFT bin"

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    peaks = freqs[fb.argmax(0).numpy()]
    assert (np.diff(peaks) >= 0).all(), "filters are ordered by centre frequency"
    # centres equally spaced in mel: the peak bins' mel spacing is ~constant (up to bin quantisation)
    mel_edges = np.linspace(hz_to_mel(f_min).item(), hz_to_mel(f_max).item(), n_mels + 2)
    centres_hz = 700.0 * (10 ** (mel_edges[1:-1] / 2595.0) - 1)
    assert np.abs(peaks - centres_hz).max() <= rate / n_fft + 1e-9  # within one FFT bin

    # adjacent triangles cross-fade: between the first and the last centre they sum to 1
    inside = (freqs >= centres_hz[0]) & (freqs <= centres_hz[-1])
    np.testing.assert_allclose(fb.sum(1).numpy()[inside], 1.0, atol=1e-5)
    # below f_min's lower edge nothing, above f_max nothing
    fb2 = mel_filterbank(n_fft, rate, n_mels, 300.0, 4000.0)
    assert fb2[freqs > 4000.0].abs().sum() == 0
    assert fb2[freqs < 300.0].abs().sum() == 0


def _logmel(**over) -> LogMel:
    cfg = config.load("tests/configs/small.toml", [f"features.{k}={v}" for k, v in over.items()])
    return LogMel(cfg.features)


def test_logmel_frame_count_and_uncentred_framing():
    lm = _logmel()
    assert (lm.win, lm.hop, lm.n_fft) == (400, 160, 512)
    for n, t in [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)]:
        assert lm.n_frames(n) == t
        assert lm(torch.zeros(2, n)).shape == (2, t, lm.n_mels)
    # frame i depends only on samples [i*hop, i*hop+win): changing later samples leaves it alone
    x = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 160 * 5 + 400 :] += 1.0
    a, b = lm(x), lm(y)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_logmel_random_cuts_equal_whole(seed):
    lm = _logmel()
    rng = np.random.default_rng(seed)
    audio = torch.from_numpy(rng.standard_normal(16000 * 3).astype(np.float32) * 0.1)
    whole = lm(audio[None])[0]
    # random cut points, including empty chunks, one-sample chunks and chunks shorter than a hop
    cuts = np.sort(np.concatenate([rng.integers(0, len(audio), 40), [5, 5, 6, 401, 402]]))
    pieces = np.split(audio.numpy(), cuts)
    assert any(len(p) == 0 for p in pieces) and any(0 < len(p) < 160 for p in pieces)
    stream = StreamingLogMel(lm)
    parts = [stream(torch.from_numpy(p)) for p in pieces]
    chunked = torch.cat(parts)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert stream.carry.shape[0] < lm.win + lm.hop


def _reference_normaliser(batches, momentum):
    mean, var = np.zeros(batches[0].shape[1]), np.ones(batches[0].shape[1])
    for n, b in enumerate(batches):
        rate = max(1.0 / (n + 1), momentum)
        mean = mean + rate * (b.mean(0) - mean)
        var = var + rate * (b.var(0) - var)
    return mean, var


def test_normaliser_cumulative_then_ema():
    rng = np.random.default_rng(3)
    f, momentum = 8, 0.25  # 1/n >= 0.25 for the first 4 updates: cumulative; then EMA at 0.25
    batches = [rng.normal(loc=i, scale=1 + i, size=(20, f)) for i in range(9)]
    norm = Normaliser(f, momentum)
    for i, b in enumerate(batches):
        norm.update(torch.from_numpy(b).float())
        mean, var = _reference_normaliser(batches[: i + 1], momentum)
        np.testing.assert_allclose(norm.mean.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(norm.var.numpy(), var, rtol=1e-5, atol=1e-5)
        if i < 4:  # cumulative phase: the running mean is the average of the batch means so far
            np.testing.assert_allclose(norm.mean.numpy(), np.mean([x.mean(0) for x in batches[: i + 1]], 0),
                                       rtol=1e-5, atol=1e-5)
    assert int(norm.count) == 9
    # the first update alone makes the statistics those of the first batch (no bias toward the init)
    n1 = Normaliser(f, 0.01)
    n1.update(torch.from_numpy(batches[5]).float())
    x = torch.from_numpy(batches[5]).float()
    y = n1(x)
    np.testing.assert_allclose(y.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.var(0, unbiased=False).numpy(), 1.0, atol=1e-3)


def test_normaliser_forward_reads_only_and_skips_empty():
    norm = Normaliser(4, 0.1)
    norm.update(torch.randn(10, 4) * 3 + 1)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm(torch.randn(5, 4))
    norm.update(torch.zeros(0, 4))  # no frames: nothing to learn, count unchanged
    for k, v in norm.state_dict().items():
        assert torch.equal(v, before[k]), k
    norm.update(torch.ones(1, 4) * 7)  # a single frame moves the mean, not the variance
    assert torch.equal(norm.var, before["var"])
    assert not torch.equal(norm.mean, before["mean"])

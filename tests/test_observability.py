"""The learner daemon's small helpers, alone: real-time factor, probe set, history records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamssl.observability.history import History, HistoryRecorder
from streamssl.observability.probe_set import ProbeSet
from streamssl.observability.throughput import RealtimeFactor
from streamssl.wire import AudioWindow, to_pcm16


def test_realtime_factor_is_audio_over_busy_time_within_its_window():
    rtf = RealtimeFactor(window_s=60.0)
    assert rtf.value == 0.0
    assert rtf.observe(0.5, 0.1, now=0.0) == 5.0
    assert rtf.observe(0.5, 0.4, now=30.0) == 2.0  # 1.0 s of audio in 0.5 s busy
    assert rtf.audio_seconds == 1.0
    assert rtf.observe(0.5, 0.5, now=70.0) == pytest.approx(1.0 / 0.9)  # the batch at t=0 left the window
    assert rtf.audio_seconds == 1.0


def window(seq: int, rate: int = 16000, frames: int = 8000) -> AudioWindow:
    x = np.sin(np.arange(frames, dtype=np.float32) * (seq + 1) / 50)[:, None] * 0.5
    return AudioWindow("s", seq, 0, rate, to_pcm16(x))


def test_probe_set_keeps_the_first_windows_at_the_feature_rate_and_survives_a_checkpoint():
    probe = ProbeSet(size=3, sample_rate=16000)
    assert not probe
    probe.offer(window(0, rate=8000))  # another rate: would not be the same input twice
    for seq in range(5):
        probe.offer(window(seq, frames=8000 - seq))
    assert len(probe) == 3
    arr = probe.array()
    assert arr.shape == (3, 7998) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0], window(0).mono_float()[:7998])
    state = probe.state()
    assert all(isinstance(t, torch.Tensor) for t in state)
    restored = ProbeSet(size=3, sample_rate=16000)
    restored.load(state)
    np.testing.assert_array_equal(restored.array(), arr)


def test_history_recorder_writes_mean_losses_once_per_interval(tmp_path):
    rec = HistoryRecorder(tmp_path / "metrics.jsonl", every_s=1.0)
    assert not rec.due()  # nothing to write yet
    rec.add_losses({"apc": 1.0, "total": 3.0})
    rec.add_losses({"apc": 2.0, "total": float("nan")})
    assert not rec.due(now=rec._last + 0.5)  # noqa: SLF001
    assert rec.due(now=rec._last + 1.0)  # noqa: SLF001
    rec.write(step=7, rtf=2.5, audio_seconds=10.0, cka={"initial": 0.9}, detections=["loss/adwin"])
    assert not rec.due()
    (record,) = History.read(tmp_path / "metrics.jsonl")
    assert record["step"] == 7 and record["losses"]["apc"] == 1.5 and record["losses"]["total"] is None
    assert record["cka_initial"] == 0.9 and record["cka_previous"] is None and record["detections"] == ["loss/adwin"]

"""The microphone path on a real PortAudio device.

A private PulseAudio provides a virtual microphone (sink ``virt`` and its monitor,
see tests/pulse.py); a known espeak-ng utterance is played into it with ``pacat``
while ``streamssl capture --source mic`` runs as a separate process, and the windows
it pushes are received on a PULL socket. The received audio must contain the played
utterance: the normalised cross-correlation peak must exceed 0.5, while a different
utterance (the control) must stay far below it. Nothing here is mocked and nothing
skips: no PulseAudio, PortAudio or espeak-ng means a failure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamssl.capture.espeak import synthesize
from streamssl.wire import decode_audio
from support import free_endpoint, free_port, metric, pull_socket, scrape, start_streamssl, stop, wait_until

pytestmark = pytest.mark.e2e

RATE = 16000
THRESHOLD = 0.5
CONTROL_MAX = 0.3


def ncc_peak(reference: np.ndarray, recording: np.ndarray) -> float:
    """max over lags of <ref, rec[lag:lag+n]> / (|ref| |rec[lag:lag+n]|): 1.0 = an exact (scaled) copy."""
    from scipy.signal import correlate

    n = len(reference)
    if len(recording) < n:
        recording = np.concatenate([recording, np.zeros(n - len(recording), recording.dtype)])
    dots = correlate(recording.astype(np.float64), reference.astype(np.float64), mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(recording.astype(np.float64) ** 2)])
    window_norm = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12))
    return float(np.max(np.abs(dots) / (np.linalg.norm(reference) * window_norm)))


def _mic_capture(pulse, tmp_path, stream_id: str):
    """``streamssl capture --source mic`` (100 ms windows) into a PULL socket here; returns
    the process, the socket, its metrics port, the windows list and ``receive(seconds)``
    that appends what arrives in that time."""
    endpoint, mport = free_endpoint(), free_port()
    sock = pull_socket(endpoint)
    cap = start_streamssl(
        "capture", "--source", "mic", "--connect", endpoint, "--window-ms", "100", "--metrics-port", str(mport),
        "--stream-id", stream_id, log_path=tmp_path / "capture.log", env=pulse.env,
    )
    windows: list = []

    def receive(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if sock.poll(100):
                windows.append(decode_audio(sock.recv_multipart()))

    return cap, sock, mport, windows, receive


@pytest.mark.e2e
def test_mic_capture_receives_what_was_played(pulse, tmp_path):
    played = synthesize("the quick brown fox jumps over the lazy dog", voice="en-us+m3", sample_rate=RATE)
    control = synthesize("seven green apples under a winter moon", voice="en-gb+f2", sample_rate=RATE)
    played, control = 0.8 * played / np.abs(played).max(), 0.8 * control / np.abs(control).max()

    cap, sock, mport, windows, receive = _mic_capture(pulse, tmp_path, "mic-test")
    try:
        # The device is live once windows arrive (the first callback can take 1-2 s).
        wait_until(lambda: (receive(0.2), len(windows) >= 3)[1] or cap.poll() is not None, 30,
                   message="first windows from the microphone")
        assert cap.poll() is None, "capture exited before audio arrived"
        player = pulse.play(np.concatenate([played, np.zeros(RATE // 2)]), RATE)
        receive(len(played) / RATE + 0.5)
        assert player.wait(timeout=30) == 0, player.stderr.read().decode()
        receive(1.0)
        samples = scrape(mport)
    finally:
        rc = stop(cap)
        sock.close(0)
    assert rc == 0

    seqs = [w.seq for w in windows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "windows lost between capture and test"
    assert seqs[0] == 0
    assert all(w.stream_id == "mic-test" and w.sample_rate == RATE and w.frames == RATE // 10 for w in windows)
    recording = np.concatenate([w.mono_float() for w in windows])
    peak, control_peak = ncc_peak(played, recording), ncc_peak(control, recording)
    print(f"\nmic: {len(windows)} windows, {len(recording) / RATE:.1f} s; NCC peak played={peak:.3f} "
          f"control={control_peak:.3f}; sent={metric(samples, 'streamssl_capture_windows_sent_total'):.0f} "
          f"overflows={metric(samples, 'streamssl_capture_input_overflows_total'):.0f}")
    with open("/tmp/streamssl-mic-correlation.txt", "w") as f:
        f.write(f"played={peak:.4f} control={control_peak:.4f} windows={len(windows)}\n")
    assert peak > THRESHOLD
    assert control_peak < CONTROL_MAX
    assert metric(samples, "streamssl_capture_windows_sent_total", stream="mic-test") >= len(windows)


@pytest.mark.e2e
def test_microphone_that_disappears_and_returns_is_reopened_as_a_new_session(pulse, tmp_path):
    """A microphone unplugged for a few seconds and plugged in again (the PulseAudio null
    sink unloaded and loaded) must not end the capture: the daemon counts the failure and
    the time away, reopens the device with its backoff, and the audio after the return
    comes as a new session from seq 0, so the learner sees a restart and not a gap storm."""
    cap, sock, mport, windows, receive = _mic_capture(pulse, tmp_path, "unplugged")
    away_s = 3.0
    try:
        wait_until(lambda: (receive(0.2), len(windows) >= 5)[1] or cap.poll() is not None, 30,
                   message="first windows from the microphone")
        first = windows[0].session
        pulse.unplug()
        try:
            wait_until(lambda: metric(scrape(mport), "streamssl_capture_up", stream="unplugged") == 0, 20,
                       message="capture to notice the microphone is gone")
            receive(away_s)
        finally:
            pulse.plug_in()
        before_return = len(windows)
        # Backoff doubles from 0.5 s; after a few seconds away the next attempt is at most ~8 s off.
        wait_until(lambda: (receive(0.2), any(w.session != first for w in windows))[1] or cap.poll() is not None,
                   40, message="windows from the microphone after it came back")
        receive(1.0)
        samples = scrape(mport)
        alive = cap.poll() is None
    finally:
        rc = stop(cap)
        sock.close(0)
    assert alive, "capture exited when the microphone went away"
    assert rc == 0
    sessions = list(dict.fromkeys(w.session for w in windows))
    assert len(sessions) >= 2 and sessions[0] == first
    for s in sessions:  # every session numbers its windows from 0 without holes
        seqs = [w.seq for w in windows if w.session == s]
        assert seqs == list(range(len(seqs))), f"session {s:016x}: seqs {seqs[:5]}..."
    assert len(windows) - before_return >= 5, "audio did not resume"
    assert metric(samples, "streamssl_capture_source_errors_total", stream="unplugged") >= 1
    assert metric(samples, "streamssl_capture_up", stream="unplugged") == 1
    assert metric(samples, "streamssl_capture_source_gap_seconds_total", stream="unplugged") >= away_s

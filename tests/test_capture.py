"""The capture daemon as a process: absent/restarting learner, bad config, signals.

The absent-learner test is the one whose numbers go into the issue note: it prints the
measured window rate and the drop counters and writes them to
/tmp/streamssl-capture-absent-learner.txt.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamssl.wire import FLAG_AFTER_DROP, decode_audio
from support import (REPO, free_endpoint, free_port, metric, pull_socket, scrape, start_streamssl, stop,
                     wait_until)

DROPPED = "streamssl_capture_windows_dropped_total"
SENT = "streamssl_capture_windows_sent_total"


def receive_until(sock: zmq.Socket, enough, timeout_s: float = 60) -> list:
    """(arrival time, window) pairs until ``enough(pairs)`` holds: a count decides, not a clock,
    so a slow machine only waits longer; ``timeout_s`` catches a capture that never delivers."""
    out, end = [], time.monotonic() + timeout_s
    while not enough(out):
        assert time.monotonic() < end, f"{len(out)} windows in {timeout_s} s, not enough"
        if sock.poll(50):
            out.append((time.monotonic(), decode_audio(sock.recv_multipart())))
    return out


def after_gap(pairs: list) -> int:
    """Windows received after the first hole in seq (0 while there is none)."""
    seqs = [w.seq for _, w in pairs]
    gap_at = next((i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1), None)
    return 0 if gap_at is None else len(seqs) - gap_at


def bind_when_free(endpoint: str) -> zmq.Socket:
    """Bind again after a close: libzmq releases the port asynchronously."""
    return wait_until(lambda: pull_socket(endpoint), 10, message=f"rebind {endpoint}")


@pytest.mark.e2e
def test_learner_absent_then_present_then_restarting(tmp_path):
    endpoint, mport = free_endpoint(), free_port()
    cap = start_streamssl(
        "capture", "--source", "synth", "--connect", endpoint, "--window-ms", "100", "--metrics-port", str(mport),
        "--stream-id", "absent", "--set", "transport.hwm=4", "--set", "transport.reconnect_max_ms=200",
        log_path=tmp_path / "capture.log",
    )
    report = {}
    try:
        # 1. Nobody listens: the socket's queue fills (hwm=4) and then windows are dropped, counted.
        wait_until(lambda: metric(scrape(mport), DROPPED, reason="hwm") > 0, 30, message="hwm drops counted")
        assert cap.poll() is None, "capture must keep running without a learner"
        absent = scrape(mport)
        report["absent_hwm_drops"] = metric(absent, DROPPED, reason="hwm")
        report["absent_sent_to_socket_queue"] = metric(absent, SENT)

        # 2. The learner appears: windows flow, the ones queued before it came first, then a seq gap.
        sock = pull_socket(endpoint)
        t_bind = time.monotonic()
        got = receive_until(sock, lambda pairs: after_gap(pairs) >= 10)  # the queued ones, the gap, 10 live
        seqs = [w.seq for _, w in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        gap_at = next(i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1)
        assert seqs[:gap_at] == list(range(gap_at)), "the windows queued while absent start at seq 0"
        assert got[gap_at][1].flags & FLAG_AFTER_DROP, "the first window after the drops says so"
        live = got[gap_at:]
        assert [w.seq for _, w in live] == list(range(live[0][1].seq, live[0][1].seq + len(live)))
        span = live[-1][0] - live[0][0]
        report["reconnect_s"] = round(live[0][0] - t_bind, 3)
        report["window_rate_per_s"] = round((len(live) - 1) / span, 2) if span > 0 else 0.0
        cap_span = (live[-1][1].capture_ns - live[0][1].capture_ns) / 1e9
        report["capture_clock_rate_per_s"] = round((len(live) - 1) / cap_span, 3)
        report["missing_at_learner"] = seqs[gap_at] - seqs[gap_at - 1] - 1
        assert all(w.frames == 1600 and np.abs(w.mono_float()).max() > 0 for _, w in live)

        # 3. The learner restarts: drops are counted again while it is gone, then windows flow again.
        before = metric(scrape(mport), DROPPED, reason="hwm")
        sock.close(0)
        wait_until(lambda: metric(scrape(mport), DROPPED, reason="hwm") > before, 30, message="drops while restarting")
        sock = bind_when_free(endpoint)
        again = receive_until(sock, lambda pairs: len(pairs) >= 1)
        assert again[-1][1].seq > seqs[-1]
        sock.close(0)
        final = scrape(mport)
        assert cap.poll() is None
        report["final_sent"] = metric(final, SENT)
        report["final_dropped_hwm"] = metric(final, DROPPED, reason="hwm")
        report["final_dropped_queue_full"] = metric(final, DROPPED, reason="queue_full")
        report["final_dropped_device_queue_full"] = metric(final, DROPPED, reason="device_queue_full")
        report["audio_seconds"] = round(metric(final, "streamssl_capture_audio_seconds_total"), 2)
    finally:
        rc = stop(cap, signal.SIGTERM)
    assert rc == 0, "SIGTERM is a clean stop"
    log = Path(cap.log_path).read_text()
    assert "windows/s" in log and "dropped hwm=" in log, "one-line summary at exit"
    line = " ".join(f"{k}={v}" for k, v in report.items())
    print(f"\nabsent-learner: {line}")
    Path("/tmp/streamssl-capture-absent-learner.txt").write_text(line + "\n")
    assert 8.0 < report["capture_clock_rate_per_s"] < 12.0  # 100 ms windows from the source clock


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_the_exit_summary_counts_every_window_sent(tmp_path, sig):
    endpoint, mport = free_endpoint(), free_port()
    summary = tmp_path / "summary.json"
    sock = pull_socket(endpoint)
    cap = start_streamssl("capture", "--source", "speech", "--connect", endpoint, "--window-ms", "200",
                          "--metrics-port", str(mport), "--summary-json", str(summary), log_path=tmp_path / "capture.log")
    try:
        wait_until(lambda: metric(scrape(mport), SENT) >= 2, 30, message="windows sent")
    finally:
        rc = stop(cap, sig)
    received = 0
    while sock.poll(500):  # everything the capture sent before it exited is here by now
        decode_audio(sock.recv_multipart())
        received += 1
    sock.close(0)
    assert rc == 0
    final = json.loads(summary.read_text())
    assert final["windows_sent"] == received >= 2, "the exit summary counts exactly the windows that left"
    assert final["windows_dropped"] == {"hwm": 0, "queue_full": 0, "device_queue_full": 0}


BAD = [
    (["--window-ms", "-5"], "capture.window_ms"),
    (["--source", "nosuch"], "capture.source"),
    (["--source", "file:/nonexistent/a.wav"], "capture.source"),
    (["--source", "ffmpeg:/nonexistent/a.ogg"], "capture.source"),
    (["--source", "mic:no-such-device-xyz"], "capture.source"),
    (["--connect", "tcp//127.0.0.1"], "capture.connect"),
    (["--connect", "tcp://127.0.0.1:70000"], "capture.connect"),
    (["--dtype", "int8"], "capture.dtype"),
    (["--sample-rate", "100"], "capture.sample_rate"),
    (["--set", "transport.hwm=0"], "transport.hwm"),
    (["--set", "capture.queue_windows=many"], "capture.queue_windows"),
]


@pytest.mark.parametrize("args,field", BAD, ids=[f for _, f in BAD])
def test_bad_config_is_one_line_and_exit_2(args, field):
    r = subprocess.run([sys.executable, "-m", "streamssl", "capture", "--metrics-port", "0", *args],
                       capture_output=True, text=True, timeout=30, cwd=REPO, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert field in lines[0]


def test_installed_entry_point_runs_capture(tmp_path):
    """What the systemd unit's ExecStart runs (see test_units.py)."""
    endpoint = free_endpoint()
    sock = pull_socket(endpoint)
    try:
        proc = subprocess.run(
            [str(Path(sys.prefix) / "bin" / "streamssl"), "capture", "--source", "synth", "--connect", endpoint,
             "--metrics-port", "0", "--no-realtime", "--max-seconds", "1"],
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr
        seqs = []
        while sock.poll(500):
            seqs.append(decode_audio(sock.recv_multipart()).seq)
    finally:
        sock.close(0)
    assert seqs == [0, 1]

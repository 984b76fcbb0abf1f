"""Helpers shared by the end-to-end tests: real processes, real sockets, real /metrics.

Tests start the daemons as separate processes (``start_streamssl``) exactly as a user
would, talk to them over loopback ZeroMQ on ports picked at run time (``free_port``;
other suites run concurrently on the same machine, so no fixed ports), and read their
state through ``/metrics`` (``scrape``/``metric``) rather than through internals.
Output goes to a log file, not a pipe, so a chatty daemon can never block on a full
pipe; ``stop`` prints the log tail when a process misbehaves so CI failures explain
themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from streamssl.config import TransportConfig
from streamssl.procs import spawn
from streamssl.transport import make_socket
from streamssl.wire import AudioWindow

REPO = Path(__file__).resolve().parent.parent

# One implementation for the demo, the benchmarks and the tests.
from streamssl.procs import Samples, free_port, log_tail, metric, scrape  # noqa: E402,F401


def free_endpoint() -> str:
    """A ZeroMQ endpoint ``tcp://127.0.0.1:PORT`` on a free port."""
    return f"tcp://127.0.0.1:{free_port()}"


def start_streamssl(
    *args: str, log_path: str | os.PathLike | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Run ``python -m streamssl ARGS`` as a separate process, output to a log file.

    ``env`` is merged over the current environment. The log path is stored on the
    returned object as ``proc.log_path`` (a temp file when not given).
    """
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="streamssl-", suffix=".log")
        os.close(fd)
    return spawn(list(args), log_path, env=env, cwd=REPO)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Send ``sig`` (if still running), wait up to ``timeout`` s, return the exit code.

    A process that does not exit in time is killed, its log tail printed, and the test
    fails: a daemon that ignores SIGTERM is a bug.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"--- {proc.args} ignored signal {sig}; log tail:\n{log_tail(proc)}")
        raise AssertionError(f"process {proc.pid} did not exit within {timeout}s of signal {sig}") from None
    if rc != 0:
        print(f"--- {proc.args} exited {rc}; log tail:\n{log_tail(proc)}")
    return rc


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05, message: str = "") -> object:
    """Poll ``predicate`` until truthy (returned) or raise AssertionError after ``timeout`` s.

    Exceptions from the predicate (e.g. /metrics not served yet) count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting: {message}{detail}")
        time.sleep(interval)


def connections_to(endpoint: str) -> int:
    """Established TCP connections to the port of ``endpoint`` on this machine (``ss``, iproute2):
    how a test knows its subscribers have joined a PUB socket, instead of sleeping and hoping."""
    port = endpoint.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def pull_socket(endpoint: str, ctx: zmq.Context | None = None, cfg: TransportConfig | None = None) -> zmq.Socket:
    """A PULL socket bound at ``endpoint`` for receiving AudioWindows in a test.

    Close it with ``sock.close(0)``; decode messages with
    ``streamssl.wire.decode_audio(sock.recv_multipart())``.
    """
    return make_socket(ctx or zmq.Context.instance(), zmq.PULL, cfg or TransportConfig(), bind=endpoint)


def cut_windows(pcm: np.ndarray, sizes: list[int], stream: str, rate: int = 16000) -> list[AudioWindow]:
    """Cut mono ``pcm`` into AudioWindows of ``sizes`` samples (cycled), seq from 0, each
    stamped at its last sample as a capture would; the last window may be shorter."""
    out, pos, seq = [], 0, 0
    while pos < len(pcm):
        chunk = pcm[pos : pos + sizes[seq % len(sizes)]]
        pos += len(chunk)
        out.append(AudioWindow(stream, seq, int(pos / rate * 1e9), rate, chunk[:, None].copy()))
        seq += 1
    return out

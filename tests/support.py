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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import zmq
from prometheus_client.parser import text_string_to_metric_families

from streamssl.config import TransportConfig
from streamssl.transport import make_socket

REPO = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset], float]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamssl", *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env, cwd=REPO,
        )
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    return proc


def log_tail(proc: subprocess.Popen, lines: int = 40) -> str:
    """The last ``lines`` lines a process started by ``start_streamssl`` wrote."""
    try:
        text = Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


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


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 5) -> Samples:
    """Fetch http://host:port/metrics; returns {(sample name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0.0 if none)."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


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


def pull_socket(endpoint: str, ctx: zmq.Context | None = None, cfg: TransportConfig | None = None) -> zmq.Socket:
    """A PULL socket bound at ``endpoint`` for receiving AudioWindows in a test.

    Close it with ``sock.close(0)``; decode messages with
    ``streamssl.wire.decode_audio(sock.recv_multipart())``.
    """
    return make_socket(ctx or zmq.Context.instance(), zmq.PULL, cfg or TransportConfig(), bind=endpoint)

"""Starting and stopping streamssl daemons as real processes (demo, bench, make eval).

The demo and the benchmarks run exactly what a user runs: separate ``python -m
streamssl`` processes on loopback, talking over ZeroMQ, read through ``/metrics``.
Output goes to a log file, never a pipe that could fill and block a daemon.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    args: list[str], log_path: str | os.PathLike, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None
) -> subprocess.Popen:
    """Run ``python -m streamssl ARGS`` with output to ``log_path``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamssl", *args], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
        )
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    return proc


def spawn_group(
    ranks: int, args: list[str], log_path: str | os.PathLike, launcher: list[str] = (), env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.Popen:
    """Run ``torchrun --nproc-per-node RANKS [LAUNCHER...] -m streamssl ARGS`` (a learner group on
    this host; ``launcher`` adds e.g. ``--max-restarts 1`` or ``--nnodes``), output to ``log_path``.
    Without ``--nnodes`` in ``launcher`` it runs standalone (its own rendezvous on a free port)."""
    rendezvous = [] if "--nnodes" in launcher else ["--standalone"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--nproc-per-node", str(ranks), *launcher,
             "-m", "streamssl", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
        )
    proc.log_path = str(log_path)  # type: ignore[attr-defined]
    return proc


def terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Send ``sig`` if still running and wait; kill after ``timeout`` s. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def log_tail(proc: subprocess.Popen, lines: int = 40) -> str:
    try:
        text = Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return ""
    return "\n".join(text.splitlines()[-lines:])


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> Samples:
    """All samples a daemon's /metrics serves, keyed by (sample name, labels)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)

"""Embedding latency through the real daemons: capture timestamp to subscriber receive.

Part of ``streamssl bench``: real ``streamssl learn`` and ``streamssl capture`` processes on
loopback at real-time pace, one stream and many.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from streamssl.config import Config


# --- latency ----------------------------------------------------------------------


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


@dataclass
class LatencyResult:
    streams: int
    p50_ms: float
    p99_ms: float
    frames: int
    processes: int


def _collect(endpoint: str, stream_ids: set[str], warmup_s: float, measure_s: float) -> list[float]:
    """Latencies (ms) of frames from ``stream_ids`` received after every stream has spoken
    and ``warmup_s`` has passed, for ``measure_s`` seconds."""
    from streamssl.serving.subscriber import subscribe

    seen: set[str] = set()
    lat: list[float] = []
    t_measure = None
    for frame in subscribe(endpoint, timeout=60):
        now = time.time_ns()
        if frame.stream_id not in stream_ids:
            continue
        seen.add(frame.stream_id)
        if t_measure is None:
            if seen == stream_ids:
                t_measure = time.monotonic() + warmup_s
            continue
        if time.monotonic() < t_measure:
            continue
        lat.append((now - frame.capture_ns) / 1e6)
        if time.monotonic() >= t_measure + measure_s:
            break
    return lat


def measure_latency(
    config_args: list[str], cfg: Config, device: str, stream_counts: tuple[int, ...], warmup_s: float, measure_s: float,
    log_dir: Path, progress: Callable[[str], None] = lambda s: None, env: dict[str, str] | None = None,
) -> list[LatencyResult]:
    """Start one real ``streamssl learn`` and, per stream count, real ``streamssl capture``
    daemons (speech at real-time pace, one stream each) on loopback; subscribe and time.

    The learner stays up across stream counts so its start-up is paid once; captures of
    one count are stopped before the next count starts.
    """
    from streamssl.procs import free_port, log_tail, spawn, terminate

    audio_ep = f"tcp://127.0.0.1:{free_port()}"
    emb_ep = f"tcp://127.0.0.1:{free_port()}"
    learner = spawn(
        ["learn", *config_args, "--audio-bind", audio_ep, "--embeddings-bind", emb_ep, "--metrics-port", "0",
         "--device", device],
        log_dir / "learn.log", env=env,
    )
    results = []
    try:
        for n in stream_counts:
            progress(f"latency: {n} stream(s)")
            ids = [f"lat{n}-{i}" for i in range(n)]
            captures = [
                spawn(["capture", *config_args, "--set", f"capture.stream_id={sid}", "--set", f"capture.connect={audio_ep}",
                       "--set", "capture.source=speech", "--set", "capture.realtime=true",
                       "--set", f"capture.seed={i}", "--set", "capture.metrics_port=0"],
                      log_dir / f"capture-{sid}.log", env=env)
                for i, sid in enumerate(ids)
            ]
            try:
                lat = _collect(emb_ep, set(ids), warmup_s, measure_s)
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}\n--- learner log:\n{log_tail(learner)}") from None
            finally:
                for c in captures:
                    terminate(c, timeout=10)
            p50, p99 = _percentiles(lat)
            results.append(LatencyResult(n, p50, p99, len(lat), len(captures)))
    finally:
        terminate(learner, timeout=30)
    return results



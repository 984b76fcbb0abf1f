"""Benchmarks: how fast we learn, how late embeddings arrive, and what each layer costs.

Every number is measured in one run on one machine and compared against a ceiling
measured the same way in the same run, so the ratios mean something even on a noisy
shared machine:

- ``learner_rtf`` — audio seconds learned per wall second by ``OnlineLearner.update``
  fed ``batch_max`` new windows per call (plus its ``replay_per_step`` replayed
  examples); ``offline_rtf`` — the learner's own modules doing the same tensor work on
  the same batch size in a plain PyTorch loop over tensors prepared in advance
  (``OfflineLoop``; its counted FLOPs per step are reported beside the learner's to show
  the work is the same). Their ratio is the cost of everything the online path adds
  (window objects, per-stream history, replay bookkeeping, checks, stats).
- ``latency_*`` — capture timestamp to subscriber receive, through the real
  ``streamssl learn`` and ``streamssl capture`` processes on loopback at real-time pace.
- ``transport_msgs_per_s`` vs ``raw_zmq_msgs_per_s`` — our encode/decode over real
  PUSH/PULL TCP sockets against bare pyzmq moving the same frame sizes.
- ``model_gflop_per_audio_s`` (counted by ``FlopCounterMode``) vs
  ``machine_gemm_gflops`` (a timed matmul): how far the model is from the hardware.

Timings on an accelerator call ``torch.cuda.synchronize`` before reading the clock.
Benchmarks never assert; they report.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from streamssl.config import Config
from streamssl.wire import to_pcm16, window_frames

# Keys the JSON always carries (the smoke test checks every one is present and finite).
KEYS = (
    "learner_rtf", "offline_rtf", "learner_vs_offline",
    "latency_p50_ms", "latency_p99_ms",
    "latency_p50_ms_1stream", "latency_p99_ms_1stream",
    "latency_p50_ms_16streams", "latency_p99_ms_16streams",
    "transport_msgs_per_s", "raw_zmq_msgs_per_s", "transport_vs_raw",
    "model_gflop_per_audio_s", "machine_gemm_gflops",
    "threads", "model_params",
)


@dataclass
class BenchPlan:
    """How long each measurement runs; ``quick`` shrinks everything for the smoke test."""

    quick: bool = False
    learner_steps: int = 30
    warmup_steps: int = 3
    transport_msgs: int = 50_000
    gemm_size: int = 2048
    latency_s: float = 20.0
    latency_warmup_s: float = 5.0
    many_streams: int = 16

    @classmethod
    def make(cls, quick: bool) -> "BenchPlan":
        if not quick:
            return cls()
        return cls(quick=True, learner_steps=3, warmup_steps=1, transport_msgs=5_000, gemm_size=512,
                   latency_s=3.0, latency_warmup_s=2.0, many_streams=16)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# --- hardware ceiling -------------------------------------------------------------


def machine_gemm_gflops(device: str, n: int = 2048, repeats: int = 5) -> float:
    """Median fp32 GFLOP/s of an n x n matmul: the ceiling any model step is measured against."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up: allocator, kernel selection
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


# --- transport --------------------------------------------------------------------


def _window_frames(cfg: Config) -> int:
    return window_frames(cfg.capture.sample_rate, cfg.capture.window_ms)


def _send_ours(endpoint: str, n: int, frames: int, rate: int) -> None:
    """Sender process: a fresh AudioWindow per message through encode_audio, like capture."""
    import zmq

    from streamssl import wire
    from streamssl.config import TransportConfig
    from streamssl.transport import make_socket

    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.PUSH, TransportConfig(), connect=endpoint)
    samples = (np.random.default_rng(0).standard_normal((frames, 1)) * 3000).astype(np.int16)
    for seq in range(n):
        w = wire.AudioWindow("bench", seq, time.time_ns(), rate, samples, session=1, sent_ns=time.time_ns())
        sock.send_multipart(wire.encode_audio(w), copy=False)
    sock.close(linger=10_000)
    ctx.term()


def _send_raw(endpoint: str, n: int, frames: int, rate: int) -> None:
    """Sender process: bare pyzmq, the same two frame sizes, nothing encoded."""
    import zmq

    from streamssl.wire import HEADER_SIZE

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(endpoint)
    header, payload = bytes(HEADER_SIZE), bytes(frames * 2)
    for _ in range(n):
        sock.send_multipart([header, payload])
    sock.close(linger=10_000)
    ctx.term()


def transport_rate(cfg: Config, n: int, ours: bool) -> float:
    """Messages/s received over a real PUSH/PULL TCP loopback pair, sender in its own process.

    Ours: ``make_socket`` on both ends, ``recv_multipart(copy=False)`` + ``decode_audio`` as
    the learner does. Raw: default sockets, plain ``recv_multipart()``. The clock runs from
    the first message received to the last, so process start-up is not counted.
    """
    import zmq

    from streamssl import wire
    from streamssl.procs import free_port
    from streamssl.transport import make_socket

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    if ours:
        sock = make_socket(ctx, zmq.PULL, cfg.transport, bind=endpoint)
    else:
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
    sender = mp.get_context("spawn").Process(
        target=_send_ours if ours else _send_raw, args=(endpoint, n, _window_frames(cfg), cfg.capture.sample_rate)
    )
    sender.start()
    try:
        sock.setsockopt(zmq.RCVTIMEO, 30_000)
        if ours:
            wire.decode_audio(sock.recv_multipart(copy=False))
            start = time.perf_counter()
            for _ in range(n - 1):
                wire.decode_audio(sock.recv_multipart(copy=False))
        else:
            sock.recv_multipart()
            start = time.perf_counter()
            for _ in range(n - 1):
                sock.recv_multipart()
        elapsed = time.perf_counter() - start
    finally:
        sender.join(30)
        sock.close(0)
        ctx.term()
    return (n - 1) / elapsed


# --- learning speed ---------------------------------------------------------------


def speech_windows(cfg: Config, n: int, streams: int = 8, seed: int = 0) -> list:
    """``n`` AudioWindows of real espeak speech, round-robin over ``streams`` stream ids.

    int16 windows of ``capture.window_ms``, exactly what a capture daemon sends; seq and
    capture time advance per stream as they would live.
    """
    from streamssl.capture.sources.speech import SpeechSource
    from streamssl.wire import AudioWindow

    frames = _window_frames(cfg)
    src = SpeechSource(seed=seed, sample_rate=cfg.capture.sample_rate, channels=1, block_frames=frames, realtime=False)
    out = []
    now = time.time_ns()
    try:
        for i, block in zip(range(n), src):
            pcm = to_pcm16(block.samples)
            sid, seq = i % streams, i // streams
            out.append(AudioWindow(f"bench-{sid}", seq, now + int(seq * cfg.capture.window_ms * 1e6),
                                   cfg.capture.sample_rate, pcm, session=1))
    finally:
        src.close()
    return out


def model_gflop_per_audio_s(cfg: Config, warmup: int = 1) -> tuple[float, int, float]:
    """FLOPs of one ``update`` (forward + backward, all losses) counted on CPU, per audio second.

    Counted on CPU whatever the benchmark device: FLOPs do not depend on it, and cuDNN's
    fused RNN kernels have no formula in ``FlopCounterMode`` while CPU's GRU decomposes
    into counted matmuls. Returns (GFLOP per audio second, parameter count, GFLOP per step).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from streamssl.learning.learner import OnlineLearner

    learner = OnlineLearner(cfg, device="cpu")
    b = cfg.learner.batch_max
    windows = speech_windows(cfg, b * (warmup + 1), seed=1)
    for i in range(warmup):
        learner.update(windows[i * b:(i + 1) * b])
    counter = FlopCounterMode(display=False)
    with counter:
        stats = learner.update(windows[warmup * b:])
    params = sum(p.numel() for p in learner.parameters())
    gflop = counter.get_total_flops() / 1e9
    return gflop / stats.audio_seconds, int(params), gflop


class OfflineLoop:
    """The ceiling: ``LearnerCore.step`` on batches prepared as tensors before the clock starts.

    A fresh ``LearnerCore`` (the learner's own tensor half: front end, normaliser,
    backbone, objectives, optimizer, generator) is fed batches of ``batch_max`` new +
    ``replay_per_step`` replayed examples of ``learner.window_s`` seconds, cut from real
    speech in advance. It runs exactly the step the online learner runs; what it leaves
    out is what the online path adds: AudioWindow objects, per-stream conversion and
    history, replay sampling and storage, and StepStats. Its counted FLOPs per step are
    reported beside ``update``'s so a drift between the two is visible. Audio credited per
    step is the *new* audio (``batch_max`` capture windows), as ``StepStats.audio_seconds``.
    """

    def __init__(self, cfg: Config, device: str, steps: int, seed: int = 2):
        import torch

        from streamssl.learning.core import LearnerCore
        from streamssl.learning.objectives import stream_hash

        self.cfg, self.device = cfg, device
        self.core = LearnerCore(cfg, device=device)
        lc = cfg.learner
        self.new = lc.batch_max
        batch = lc.batch_max + lc.replay_per_step
        n = int(round(lc.window_s * cfg.features.sample_rate))
        windows = speech_windows(cfg, max(1, math.ceil(batch * n / _window_frames(cfg))) * 4, streams=1, seed=seed)
        pcm = np.concatenate([w.mono_float() for w in windows]).astype(np.float32)
        rng = np.random.default_rng(seed)
        self.audio = torch.from_numpy(np.stack([
            np.stack([pcm[s:s + n] for s in rng.integers(0, len(pcm) - n, batch)]) for _ in range(steps)
        ])).to(device)  # (steps, batch, samples): prepared before the clock starts
        streams = 8  # as many streams as speech_windows feeds the online learner
        self.stream = torch.tensor([stream_hash(f"bench-{i % streams}") for i in range(batch)], device=device)
        window_ns = cfg.capture.window_ms * 1_000_000
        t0 = time.time_ns()
        self.time_ns = torch.tensor(
            [[t0 + (k * self.new + i) // streams * window_ns for i in range(batch)] for k in range(steps)],
            dtype=torch.int64, device=device,
        )
        self.new_audio_s = self.new * cfg.capture.window_ms / 1000

    def step(self, k: int) -> None:
        self.core.step(self.audio[k], self.stream, self.time_ns[k], self.new)


@dataclass
class LearningSpeed:
    """Online vs offline, medians of per-step wall times measured in alternating blocks."""

    learner_rtf: float
    offline_rtf: float
    learner_step_s: float
    offline_step_s: float
    audio_s_per_step: float  # new audio per step, both paths
    batch_size: int  # examples per step, both paths: batch_max new + replay_per_step replayed
    rtf_with_embed: float  # embed + update per batch, what the daemon does per arrival
    offline_gflop_per_step: float


def _timed(fn: Callable[[], object], device: str) -> float:
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def learning_speed(cfg: Config, device: str, steps: int, warmup: int, blocks: int = 3) -> LearningSpeed:
    """``OnlineLearner.update`` fed ``learner.batch_max`` new windows per call (plus its own
    ``replay_per_step`` replayed examples: the batch is full once the first update has
    filled the replay) against ``OfflineLoop`` on the same batch size.

    The two alternate in ``blocks`` blocks of ``steps / blocks`` steps each, and each rate is
    new audio per step over the *median* step time, so a neighbour's burst on a shared
    machine hits both sides alike instead of whichever ran second. Then embed+update per
    batch, the daemon's path, is timed the same way.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from streamssl.learning.learner import OnlineLearner

    learner = OnlineLearner(cfg, device=device)
    b = cfg.learner.batch_max
    windows = speech_windows(cfg, b * (warmup + 2 * steps))
    batches = iter([windows[i:i + b] for i in range(0, len(windows), b)])
    offline = OfflineLoop(cfg, device, warmup + steps)
    for _ in range(warmup):
        learner.update(next(batches))
        offline.step(0)
    _sync(device)
    online_t, offline_t, embed_t = [], [], []
    audio_per_step = 0.0
    k = warmup
    per_block = max(1, steps // blocks)
    for _ in range(blocks):
        for _ in range(per_block):
            batch = next(batches)
            online_t.append(_timed(lambda: learner.update(batch), device))
            audio_per_step = sum(w.duration_s for w in batch)
        for _ in range(per_block):
            offline_t.append(_timed(lambda: offline.step(k), device))
            k = min(k + 1, warmup + steps - 1)
    for _ in range(per_block * blocks):
        batch = next(batches)
        embed_t.append(_timed(lambda: (learner.embed(batch), learner.update(batch)), device))
    flops = math.nan
    if device == "cpu":
        counter = FlopCounterMode(display=False)
        with counter:
            offline.step(k)
        flops = counter.get_total_flops() / 1e9
    on, off, emb = (statistics.median(t) for t in (online_t, offline_t, embed_t))
    return LearningSpeed(
        learner_rtf=audio_per_step / on, offline_rtf=offline.new_audio_s / off, learner_step_s=on, offline_step_s=off,
        audio_s_per_step=audio_per_step, batch_size=b + cfg.learner.replay_per_step,
        rtf_with_embed=audio_per_step / emb, offline_gflop_per_step=flops,
    )


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


# --- everything -------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def run_benchmarks(
    cfg: Config, config_args: list[str], device: str, plan: BenchPlan, *, skip_latency: bool = False,
    progress: Callable[[str], None] = lambda s: None, daemon_env: dict[str, str] | None = None,
) -> dict:
    """Run every measurement and return the flat result dict written as JSON."""
    import torch

    out: dict = {
        "device": device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})",
        "torch_version": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "quick": plan.quick, "batch_size": cfg.learner.batch_max, "replay_per_step": cfg.learner.replay_per_step, "window_ms": cfg.capture.window_ms,
        "model": f"{cfg.model.context}-{cfg.model.encoder_channels}x{cfg.model.encoder_layers}",
    }
    progress("gemm ceiling")
    out["machine_gemm_gflops"] = machine_gemm_gflops(device, plan.gemm_size)
    progress("model FLOPs")
    out["model_gflop_per_audio_s"], out["model_params"], out["learner_gflop_per_step"] = model_gflop_per_audio_s(cfg)
    progress("online learner vs offline loop")
    speed = learning_speed(cfg, device, plan.learner_steps, plan.warmup_steps)
    out["learner_rtf"] = speed.learner_rtf
    out["offline_rtf"] = speed.offline_rtf
    out["learner_vs_offline"] = _ratio(speed.learner_rtf, speed.offline_rtf)
    out["learner_step_ms"] = speed.learner_step_s * 1000
    out["offline_step_ms"] = speed.offline_step_s * 1000
    out["learner_rtf_with_embed"] = speed.rtf_with_embed
    out["audio_s_per_step"] = speed.audio_s_per_step
    out["train_batch"] = speed.batch_size
    out["offline_gflop_per_step"] = speed.offline_gflop_per_step
    out["achieved_gflops"] = out["model_gflop_per_audio_s"] * out["learner_rtf"]
    out["gemm_efficiency"] = _ratio(out["achieved_gflops"], out["machine_gemm_gflops"])
    progress("transport (ours)")
    out["transport_msgs_per_s"] = transport_rate(cfg, plan.transport_msgs, ours=True)
    progress("transport (raw pyzmq)")
    out["raw_zmq_msgs_per_s"] = transport_rate(cfg, plan.transport_msgs, ours=False)
    out["transport_vs_raw"] = _ratio(out["transport_msgs_per_s"], out["raw_zmq_msgs_per_s"])
    out["transport_x_realtime"] = out["transport_msgs_per_s"] * cfg.capture.window_ms / 1000
    counts = (1, plan.many_streams)
    if skip_latency:
        lat = [LatencyResult(n, math.nan, math.nan, 0, 0) for n in counts]
    else:
        with tempfile.TemporaryDirectory(prefix="streamssl-bench-") as tmp:
            lat = measure_latency(config_args, cfg, device, counts, plan.latency_warmup_s, plan.latency_s,
                                  Path(tmp), progress, daemon_env)
    for r in lat:
        suffix = "1stream" if r.streams == 1 else f"{r.streams}streams"
        out[f"latency_p50_ms_{suffix}"] = r.p50_ms
        out[f"latency_p99_ms_{suffix}"] = r.p99_ms
        out[f"latency_frames_{suffix}"] = r.frames
    out["latency_p50_ms"] = out["latency_p50_ms_1stream"]
    out["latency_p99_ms"] = out["latency_p99_ms_1stream"]
    return out


ROWS = (
    ("learner_rtf", "online learner, audio s learned / wall s", "{:.1f}"),
    ("offline_rtf", "plain PyTorch loop, same model/losses/batch", "{:.1f}"),
    ("learner_vs_offline", "online / offline", "{:.3f}"),
    ("learner_rtf_with_embed", "online, embed + update per batch (daemon path)", "{:.1f}"),
    ("learner_step_ms", "online step", "{:.1f} ms"),
    ("offline_step_ms", "offline step", "{:.1f} ms"),
    ("learner_gflop_per_step", "counted FLOPs of one OnlineLearner.update", "{:.2f} GFLOP"),
    ("offline_gflop_per_step", "counted FLOPs of one offline step (same work)", "{:.2f} GFLOP"),
    ("latency_p50_ms_1stream", "capture -> subscriber p50, 1 stream", "{:.1f} ms"),
    ("latency_p99_ms_1stream", "capture -> subscriber p99, 1 stream", "{:.1f} ms"),
    ("latency_p50_ms_16streams", "capture -> subscriber p50, 16 streams", "{:.1f} ms"),
    ("latency_p99_ms_16streams", "capture -> subscriber p99, 16 streams", "{:.1f} ms"),
    ("transport_msgs_per_s", "our wire over PUSH/PULL tcp loopback", "{:,.0f} msg/s"),
    ("raw_zmq_msgs_per_s", "bare pyzmq, same frame sizes", "{:,.0f} msg/s"),
    ("transport_vs_raw", "ours / raw", "{:.3f}"),
    ("transport_x_realtime", "transport capacity in audio s / s", "{:,.0f}x"),
    ("model_gflop_per_audio_s", "counted fwd+bwd FLOPs per audio second", "{:.2f} GFLOP"),
    ("achieved_gflops", "model FLOPs x learner_rtf", "{:.1f} GFLOP/s"),
    ("machine_gemm_gflops", "measured fp32 matmul", "{:.1f} GFLOP/s"),
    ("gemm_efficiency", "achieved / matmul ceiling", "{:.3f}"),
    ("model_params", "parameters (encoder + context + heads)", "{:,}"),
    ("threads", "torch threads", "{}"),
    ("device", "", "{}"),
    ("torch_version", "", "{}"),
)


def print_results(results: dict) -> None:
    """The results as one rich table, in the order a reader asks the questions."""
    from rich.console import Console
    from rich.table import Table

    title = "streamssl bench" + (" --quick" if results.get("quick") else "")
    table = Table(title=f"{title} — {results.get('model')}, batch {results.get('batch_size')} new + "
                        f"{results.get('replay_per_step')} replay windows per step")
    table.add_column("key")
    table.add_column("value", justify="right")
    table.add_column("what")
    for key, what, fmt in ROWS:
        if key not in results:
            continue
        v = results[key]
        text = "n/a" if isinstance(v, float) and not math.isfinite(v) else fmt.format(v)
        table.add_row(key, text, what)
    Console().print(table)

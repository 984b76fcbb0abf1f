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
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamssl.config import Config
from streamssl.evaluation.latency import LatencyResult, measure_latency
from streamssl.evaluation.speed import learning_speed, machine_gemm_gflops, model_gflop_per_audio_s, speech_windows
from streamssl.evaluation.transport_speed import transport_rate

__all__ = ["KEYS", "BenchPlan", "print_results", "run_benchmarks", "speech_windows"]

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
                   latency_s=1.0, latency_warmup_s=0.5, many_streams=16)


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

"""How fast the learner learns: the machine's matmul ceiling, counted FLOPs, online vs offline steps.

Part of ``streamssl bench`` (``streamssl.evaluation.benchmark`` runs it and prints the table).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from streamssl.config import Config
from streamssl.wire import to_pcm16, window_frames


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



# --- learning speed ---------------------------------------------------------------


def speech_windows(cfg: Config, n: int, streams: int = 8, seed: int = 0) -> list:
    """``n`` AudioWindows of real espeak speech, round-robin over ``streams`` stream ids.

    int16 windows of ``capture.window_ms``, exactly what a capture daemon sends; seq and
    capture time advance per stream as they would live.
    """
    from streamssl.capture.sources.speech import SpeechSource
    from streamssl.wire import AudioWindow

    frames = window_frames(cfg.capture.sample_rate, cfg.capture.window_ms)
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
        windows = speech_windows(cfg, max(1, math.ceil(batch * n / window_frames(cfg.capture.sample_rate, cfg.capture.window_ms))) * 4, streams=1, seed=seed)
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



"""The offline reference: what the same model learns from the same audio when it may shuffle.

A live learner sees each moment of its stream once, in order, and a stream is highly
correlated (one voice for seconds, one topic for minutes). The reference answers "how
much does learning online cost?": a fresh learner with the same config and seed, trained
for the same number of steps with the same batch size on the same audio, but with every
example drawn at a uniformly random position of the whole recording — decorrelated,
several passes over the audio (steps x batch examples of ``window_s``, typically many
times the recording's length). ``streamssl eval --reference`` probes it beside the
online checkpoint; online / offline is the number to watch.

The audio is regenerated, not stored: the speech source is seeded, so ``capture.seed``
and the seconds the online learner consumed give back the exact stream it saw.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from streamssl.config import ConfigError, parse_source_spec

REFERENCE_STREAM = "offline-reference"


def recorded_speech(seed: int, seconds: float, sample_rate: int, mode: str = "turns") -> np.ndarray:
    """The first ``seconds`` of ``SpeechSource(seed, mode)``, as fast as it can be synthesised."""
    from streamssl.capture.sources.speech import SpeechSource

    block = sample_rate // 2
    need = int(round(seconds * sample_rate))
    src = SpeechSource(seed=seed, mode=mode, sample_rate=sample_rate, channels=1, block_frames=block, realtime=False)
    out, have = [], 0
    try:
        for b in src:
            out.append(b.samples[:, 0])
            have += b.frames
            if have >= need:
                break
    finally:
        src.close()
    return np.concatenate(out)[:need].astype(np.float32)


def learn_online(learner, audio: np.ndarray, stream_id: str = "speech", window_ms: int = 500) -> list:
    """Feed ``audio`` to ``learner`` as one live stream: int16 capture windows, one ``update`` each.

    What the daemon does per arrival at real-time pace, without sockets: the quick way for
    tests and benchmarks to get a model trained online. Returns every ``StepStats``.
    """
    from streamssl.wire import AudioWindow, to_pcm16, window_frames

    rate = learner.sample_rate
    n = window_frames(rate, window_ms)
    stats = []
    for seq in range(len(audio) // n):
        pcm = to_pcm16(audio[seq * n:(seq + 1) * n, None])
        stats.append(learner.update([AudioWindow(stream_id, seq, (seq + 1) * window_ms * 1_000_000, rate, pcm)]))
    return stats


@functools.lru_cache(maxsize=1)
def _recorded_speech_once(seed: int, seconds: float, sample_rate: int, mode: str) -> np.ndarray:
    """Several reference runs share one regeneration of the stream (synthesis takes a while for minutes)."""
    return recorded_speech(seed, seconds, sample_rate, mode)


def train_reference(online, device: str = "cpu", run: int = 0):
    """A fresh ``OnlineLearner`` trained offline on shuffled examples of the audio ``online`` saw.

    Runs differ only in the order examples are drawn (``learner.seed + run``); model init
    and config are the online learner's. Its augmentation generator starts from the same
    seed, but it is applied to other examples, so each run sees other crops and views.
    """
    from streamssl.learning.learner import OnlineLearner
    from streamssl.learning.objectives import stream_hash

    cfg = online.cfg
    if not cfg.capture.source.startswith("speech"):
        raise ConfigError(
            f"--reference: the checkpoint learned from capture.source = {cfg.capture.source!r}; only the seeded "
            "speech source can be regenerated for an offline reference"
        )
    rate = cfg.features.sample_rate
    _, mode = parse_source_spec(cfg.capture.source)
    audio = _recorded_speech_once(cfg.capture.seed, online.audio_seconds, rate, mode or "turns")
    ref = OnlineLearner(cfg, device=device)
    n = ref.example_samples
    if len(audio) <= n:
        raise ConfigError(f"--reference: the checkpoint learned from {online.audio_seconds:.1f} s, too little to shuffle")
    rng = np.random.default_rng(cfg.learner.seed + run)
    # As many new windows per step as the online learner had on average: one at real-time pace,
    # up to batch_max when it caught up on recorded audio (demo --audio-seconds); plus replay.
    new = max(1, round(online.audio_seconds / (cfg.capture.window_ms / 1000) / max(1, online.step)))
    batch = new + cfg.learner.replay_per_step
    stream = torch.full((batch,), stream_hash(REFERENCE_STREAM), dtype=torch.long, device=ref.device)
    for _ in range(online.step):
        starts = rng.integers(0, len(audio) - n, batch)
        examples = torch.from_numpy(np.stack([audio[s:s + n] for s in starts])).to(ref.device)
        time_ns = torch.from_numpy(((starts + n) * (1e9 / rate)).astype(np.int64)).to(ref.device)
        ref.core.step(examples, stream, time_ns, new=new)
    return ref

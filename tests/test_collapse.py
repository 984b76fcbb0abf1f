"""The collapse gauge (``streamssl_learner_embedding_spread``) falls below the alert floor
when the model maps every input to the same embedding, and stays well above it on speech.

Real parts only: an ``OnlineLearner`` with the small test model embeds espeak-ng speech
through the streaming ``embed`` path the daemon uses (250 ms windows, state carried
between them), and a ``DriftMonitor`` with a real ``LearnerMetrics`` registry turns the
embeddings into the gauge, read back from the registry as Prometheus would scrape it.

Collapse is forced where the input enters: the first encoder convolution's weights are
zeroed (its bias kept), so its output, and after LayerNorm every later block's, is one
constant vector whatever the audio; every weight of the context GRU is zeroed too, so its
hidden state converges within a few frames to one constant, non-zero vector. The readout
(mean and std of z and c) is then one vector for every window. (Zeroing only the last
encoder convolution would not do: its residual path still passes the input through.)

The floor is the ``StreamsslCollapse`` alert's threshold, read from the rules file, so
this test and the alert cannot disagree: 0.05. The gauge is scaled by sqrt(dim), so it is
about 1 for embeddings spread evenly over the sphere at any size; the untrained small
model (192-d readout) on speech measures about 0.3.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.observability.drift import DriftMonitor
from streamssl.capture.espeak import VOICES, synthesize
from streamssl.learning.learner import OnlineLearner
from streamssl.observability.metrics import LearnerMetrics
from streamssl.wire import AudioWindow

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "tests" / "configs" / "small.toml"
RULES = REPO / "monitoring" / "prometheus" / "rules" / "streamssl.rules.yml"
RATE = 16000
WINDOW = RATE // 4  # 250 ms, as the capture daemon sends by default
SPREAD_WINDOW = 64  # recent embeddings the gauge covers (the daemon's default is 256)
SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Seven silver swans swam silently seaward past the harbour lights.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A large fawn jumped quickly over white zinc boxes in the early morning.",
)


def collapse_floor() -> float:
    m = re.search(r"expr:\s*streamssl_learner_embedding_spread\s*<\s*([0-9.eE+-]+)", RULES.read_text())
    assert m, "StreamsslCollapse must be written as `streamssl_learner_embedding_spread < FLOOR`"
    return float(m.group(1))


@functools.cache
def speech() -> np.ndarray:
    return np.concatenate([
        np.concatenate([synthesize(text, voice=VOICES[(7 * i) % len(VOICES)], sample_rate=RATE),
                        np.zeros(RATE // 10, np.float32)])
        for i, text in enumerate(SENTENCES)
    ])


def speech_windows(stream: str, first_seq: int, count: int) -> list[AudioWindow]:
    """``count`` 250 ms windows of espeak-ng speech (several voices, looped) as int16 AudioWindows."""
    audio = speech()
    need = count * WINDOW
    audio = np.tile(audio, -(-need // audio.size))[:need]
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    return [
        AudioWindow(stream, first_seq + i, (first_seq + i + 1) * 250_000_000, RATE, pcm[i * WINDOW:(i + 1) * WINDOW, None])
        for i in range(count)
    ]


def feed(learner: OnlineLearner, monitor: DriftMonitor, windows: list[AudioWindow], batch: int = 8) -> None:
    """Embed in batches and hand each batch's embeddings to the monitor, as the daemon does."""
    for i in range(0, len(windows), batch):
        frames = learner.embed(windows[i:i + batch])
        monitor.observe_embeddings(np.stack([f.embedding for f in frames]))


def test_collapse_floor_is_the_alert_threshold():
    assert collapse_floor() == pytest.approx(0.05)


def test_spread_gauge_falls_below_the_floor_when_the_model_outputs_a_constant():
    floor = collapse_floor()
    cfg = config.load(SMALL)
    learner = OnlineLearner(cfg, device="cpu")
    metrics = LearnerMetrics()
    monitor = DriftMonitor(config.DriftConfig(spread_window=SPREAD_WINDOW), metrics)

    def gauge() -> float:
        return metrics.registry.get_sample_value("streamssl_learner_embedding_spread")

    assert np.isnan(gauge()), "before any embedding the gauge exists but has no value yet (NaN)"

    windows = speech_windows("voice", 0, 3 * SPREAD_WINDOW)
    feed(learner, monitor, windows[:SPREAD_WINDOW])
    healthy = gauge()
    print(f"spread on speech: {healthy:.4f} (floor {floor}, even spread over the sphere = 1)")
    assert healthy == pytest.approx(monitor.spread)
    assert healthy > 2 * floor, f"speech embeddings should be well spread, got {healthy:.4f}"

    with torch.no_grad():
        learner.core.backbone.encoder.blocks[0].conv.weight.zero_()
        for name, p in learner.core.backbone.context.gru.named_parameters():
            if name.startswith("weight_"):
                p.zero_()
    # The stream goes on (same stream, state carried): the gauge covers the last
    # SPREAD_WINDOW embeddings, so it has fallen once that many collapsed ones arrived.
    trace = []
    for start in range(SPREAD_WINDOW, 3 * SPREAD_WINDOW, SPREAD_WINDOW // 4):
        feed(learner, monitor, windows[start:start + SPREAD_WINDOW // 4])
        trace.append(gauge())
    print("spread after forcing a constant output:", " ".join(f"{v:.5f}" for v in trace))
    collapsed = trace[-1]
    assert collapsed < floor, f"spread {collapsed:.5f} should be below the floor {floor}"
    assert collapsed < healthy / 100
    # (It need not fall at once: while old and collapsed embeddings share the window the
    # set is bimodal and the spread can even rise; it falls as the old ones age out.)

    # The embeddings really are one vector now, and a non-zero one.
    frames = learner.embed(speech_windows("voice", 3 * SPREAD_WINDOW, 8))
    emb = np.stack([f.embedding for f in frames])
    assert np.linalg.norm(emb[0]) > 0
    np.testing.assert_allclose(emb, np.broadcast_to(emb[0], emb.shape), atol=1e-5)

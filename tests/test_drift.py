"""Drift detectors, representation CKA and the collapse gauge, on real synthesised speech.

The embedding signal in the switch test is a deterministic stand-in for the model
(``PooledLogMelEmbedder``): each 500 ms window's log-mel spectrogram (computed here
with numpy) pooled to its per-bin mean and standard deviation, standardised with
statistics frozen on the first 30 s of speech. It changes when the input changes, as a
learner's embeddings do, without making the test depend on training.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from streamssl.config import DriftConfig
from streamssl.observability.drift import DETECTORS, SIGNALS, DriftMonitor, embedding_spread, input_statistics, linear_cka
from streamssl.observability.signals import effective_rank
from streamssl.capture.espeak import VOICES, synthesize
from streamssl.observability.metrics import LearnerMetrics

SR = 16000
WINDOW = SR // 2  # 500 ms, the capture default
WORDS = "the cat sees a river under the bright moon while the baker sings a quiet song in the morning".split()


@pytest.fixture(scope="session")
def speech(request) -> np.ndarray:
    """About two minutes of espeak-ng speech (varied voices, rates, pauses), cached across runs."""
    cache = request.config.cache.mkdir("streamssl-drift") / "speech-v1.npy"
    if cache.exists():
        return np.load(cache)
    rng = np.random.default_rng(0)
    parts = []
    for _ in range(45):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 10))))
        x = synthesize(text, voice=str(rng.choice(VOICES)), words_per_minute=int(rng.integers(120, 220)),
                       pitch=int(rng.integers(20, 80)))
        parts.append(x * (rng.uniform(0.3, 0.9) / np.abs(x).max()))
        # Pauses carry a faint noise floor, as from a real microphone.
        parts.append(rng.normal(0, 3e-4, int(rng.uniform(0.15, 1.2) * SR)))
    out = np.concatenate(parts).astype(np.float32)
    np.save(cache, out)
    return out


def noise_windows(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, a, WINDOW).astype(np.float32) for a in rng.uniform(0.02, 0.2, n)]


def tone_windows(n: int) -> list[np.ndarray]:
    t = np.arange(WINDOW) / SR
    freqs = np.repeat([440.0, 1000.0, 250.0], -(-n // 3))[:n]
    return [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in freqs]


def mel_filterbank(n_fft: int = 512, n_mels: int = 40) -> np.ndarray:
    def hz_to_mel(f):
        return 2595 * np.log10(1 + f / 700)

    mels = np.linspace(hz_to_mel(0), hz_to_mel(SR / 2), n_mels + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / SR)
    fb = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        lo, mid, hi = hz[i : i + 3]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return fb


FB = mel_filterbank()


def pooled_logmel(window: np.ndarray) -> np.ndarray:
    """25 ms / 10 ms log-mel frames pooled to per-bin mean and std: an (80,) vector."""
    idx = np.arange(400)[None, :] + 160 * np.arange((len(window) - 400) // 160 + 1)[:, None]
    frames = window[idx] * np.hanning(400)
    power = np.abs(np.fft.rfft(frames, n=512)) ** 2
    logmel = np.log10(power @ FB.T + 1e-8)
    return np.concatenate([logmel.mean(0), logmel.std(0)])


class PooledLogMelEmbedder:
    """Pooled log-mel standardised by statistics frozen on the first windows, like the
    learner's per-bin normaliser: centred vectors whose directions mean something."""

    def __init__(self, warmup: list[np.ndarray]):
        feats = np.stack([pooled_logmel(w) for w in warmup])
        self.mean, self.std = feats.mean(0), feats.std(0) + 1e-3

    def __call__(self, window: np.ndarray) -> np.ndarray:
        return ((pooled_logmel(window) - self.mean) / self.std)[None, :]


def first_at_or_after(events: list[tuple[int, str]], index: int) -> int | None:
    return next((i for i, _ in events if i >= index), None)


@pytest.mark.parametrize("switch_to", ["noise", "tones"])
def test_detectors_fire_after_a_switch_from_speech_and_not_before(speech, switch_to):
    windows = [speech[i : i + WINDOW] for i in range(0, len(speech) - WINDOW + 1, WINDOW)]
    switch = len(windows)
    windows += noise_windows(80) if switch_to == "noise" else tone_windows(80)
    embed = PooledLogMelEmbedder(windows[:60])
    metrics = LearnerMetrics()
    mon = DriftMonitor(DriftConfig(), metrics)
    input_events, emb_events = [], []
    for i, w in enumerate(windows):
        input_events += [(i, d) for d in mon.observe_window(w, SR)]
        emb_events += [(i, d) for d in mon.observe_embeddings(embed(w))]

    assert [e for e in input_events if e[0] < switch] == [], "false alarm on stationary speech (input)"
    assert [e for e in emb_events if e[0] < switch] == [], "false alarm on stationary speech (embedding)"
    in_at, emb_at = first_at_or_after(input_events, switch), first_at_or_after(emb_events, switch)
    assert in_at is not None, f"speech -> {switch_to} not detected on the input signal"
    assert emb_at is not None, f"speech -> {switch_to} not detected on the embedding signal"
    for key in [f"{s}/{d}" for s in ("input", "embedding") for d in DETECTORS]:
        at = next((i for i, e in input_events + emb_events if e == key and i >= switch), None)
        delay = "not fired" if at is None else f"{at - switch + 1} windows = {(at - switch + 1) * 0.5:.1f} s"
        print(f"speech -> {switch_to}: {key} delay {delay}")  # windows seen after the switch, incl. the one that fired
    # Every detection is counted by signal and detector, nothing else.
    for s in SIGNALS:
        for d in DETECTORS:
            n = sum(1 for _, e in input_events + emb_events if e == f"{s}/{d}")
            assert metrics.registry.get_sample_value(
                "streamssl_learner_drift_detections_total", {"signal": s, "detector": d}) == n
    assert sorted(mon.pop_detections()) == sorted(d for _, d in input_events + emb_events)
    assert mon.pop_detections() == []


def test_input_statistics_measure_level_and_spectrum():
    t = np.arange(WINDOW) / SR
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    st = input_statistics(tone, SR)
    assert st["spectral_centroid_hz"] == pytest.approx(1000, abs=5)
    assert st["log_energy_db"] == pytest.approx(10 * np.log10(0.125), abs=0.01)
    assert st["high_band_db"] < -60  # nothing above 4 kHz
    white = input_statistics(np.random.default_rng(0).normal(0, 0.1, WINDOW), SR)
    assert white["spectral_centroid_hz"] == pytest.approx(4000, rel=0.05)
    assert white["high_band_db"] == pytest.approx(-23, abs=1)  # half the power of -20 dB noise


def test_loss_jump_is_detected_but_slow_learning_is_not():
    mon = DriftMonitor(DriftConfig())
    rng = np.random.default_rng(0)
    # A loss that halves over 2000 steps with noise: learning, not drift.
    steady = 6.0 * np.exp(-np.arange(2000) / 2900) * (1 + rng.normal(0, 0.02, 2000))
    assert [d for x in steady for d in mon.observe_loss(x)] == []
    jumped = [d for x in 2.0 * steady[-1] * (1 + rng.normal(0, 0.02, 30)) for d in mon.observe_loss(x)]
    assert "loss/page_hinkley" in jumped or "loss/adwin" in jumped


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Reference CKA through Gram matrices and the centering matrix H (Kornblith et al. eq. 1-3)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def test_cka_gauges_equal_a_direct_computation_on_the_probe_embeddings():
    rng = np.random.default_rng(0)
    metrics = LearnerMetrics()
    mon = DriftMonitor(DriftConfig(check_every=5), metrics)
    assert not mon.probe_due(0) and not mon.probe_due(3) and mon.probe_due(5) and mon.probe_due(10)
    gauge = lambda ref: metrics.registry.get_sample_value("streamssl_learner_probe_cka", {"reference": ref})  # noqa: E731
    assert np.isnan(gauge("previous")) and np.isnan(gauge("initial"))  # series exist before the first check

    first = rng.normal(size=(16, 32))
    assert mon.check_probe(first) == {"previous": pytest.approx(1.0), "initial": pytest.approx(1.0)}
    second = first + rng.normal(scale=0.5, size=first.shape)
    third = second @ rng.normal(size=(32, 24)) + rng.normal(scale=0.5, size=(16, 24))  # other width too
    mon.check_probe(second)
    got = mon.check_probe(third)
    assert gauge("previous") == pytest.approx(hsic_cka(second, third), rel=1e-6)
    assert gauge("initial") == pytest.approx(hsic_cka(first, third), rel=1e-6)
    assert got == {"previous": gauge("previous"), "initial": gauge("initial")}
    assert 0 < gauge("initial") < 0.99
    assert linear_cka(first, rng.normal(size=(16, 32))) < linear_cka(first, second)


def test_spread_gauge_falls_when_embeddings_collapse_to_a_constant():
    rng = np.random.default_rng(0)
    metrics = LearnerMetrics()
    mon = DriftMonitor(DriftConfig(spread_window=64), metrics)
    spread = lambda: metrics.registry.get_sample_value("streamssl_learner_embedding_spread")  # noqa: E731
    mon.observe_embeddings(rng.normal(size=(64, 128)))
    healthy = spread()
    assert healthy == pytest.approx(1.0, rel=0.15)  # evenly over the sphere: 1 at any dimension
    constant = np.tile(rng.normal(size=(1, 128)), (64, 1))
    mon.observe_embeddings(constant)
    assert spread() < 1e-6 < healthy
    assert embedding_spread(constant) == pytest.approx(0.0, abs=1e-9)


def test_state_survives_a_weights_only_checkpoint_round_trip(speech):
    rng = np.random.default_rng(0)
    mon = DriftMonitor(DriftConfig(warmup=10))
    for i in range(0, 40 * WINDOW, WINDOW):
        mon.observe_window(speech[i : i + WINDOW], SR)
    mon.observe_embeddings(rng.normal(size=(30, 16)))
    for x in rng.normal(3.0, 0.01, 30):
        mon.observe_loss(x)
    probe = rng.normal(size=(8, 16))
    mon.check_probe(probe)
    buf = io.BytesIO()
    torch.save(mon.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)

    metrics = LearnerMetrics(CollectorRegistry())
    restored = DriftMonitor(DriftConfig(warmup=10), metrics)
    restored.load_state_dict(sd)
    assert restored.spread == pytest.approx(mon.spread, rel=1e-5)
    assert restored.last_cka == mon.last_cka
    later = probe + rng.normal(scale=0.3, size=probe.shape)
    assert restored.check_probe(later)["initial"] == pytest.approx(mon.check_probe(later)["initial"], rel=1e-5)
    # Scales restored: the same value gives the same z-score, so no warm-up is repeated.
    assert restored._channels["loss"].std == pytest.approx(mon._channels["loss"].std)  # noqa: SLF001
    assert restored._inputs[""]["input_centroid"].mean == pytest.approx(mon._inputs[""]["input_centroid"].mean)  # noqa: SLF001


def small_learner_and_speech(speech):
    """A random-init one-block learner and 64 windows of speech to embed with it."""
    from streamssl.config import load
    from streamssl.learning.learner import OnlineLearner

    cfg = load(overrides=["model.encoder_channels=48", "model.encoder_layers=1", "model.context_dim=32",
                          "features.n_mels=32", "objectives.moco_queue=64"])
    segments = np.stack([speech[i : i + WINDOW] for i in range(0, 64 * WINDOW, WINDOW)]).astype(np.float32)
    return OnlineLearner(cfg), segments


def test_spread_gauge_falls_when_the_learners_encoder_is_forced_to_a_constant(speech):
    learner, segments = small_learner_and_speech(speech)
    metrics = LearnerMetrics()
    mon = DriftMonitor(DriftConfig(spread_window=64), metrics)
    mon.observe_embeddings(learner.embed_segments(segments))
    healthy = metrics.registry.get_sample_value("streamssl_learner_embedding_spread")

    # The encoder's only block ends in LayerNorm -> ReLU: zero gain and bias make z = 0 for any input.
    block = learner.core.backbone.encoder.blocks[-1]
    assert not block.residual
    with torch.no_grad():
        block.norm.weight.zero_()
        block.norm.bias.zero_()
    mon.observe_embeddings(learner.embed_segments(segments))
    collapsed = metrics.registry.get_sample_value("streamssl_learner_embedding_spread")
    print(f"spread of a random-init learner on speech {healthy:.4f}, with a constant encoder {collapsed:.2e}")
    assert healthy > 0.05
    # Only the GRU's start-up transient from z = 0 is left (the same trajectory for every
    # segment), sampled at different frames by the readout's energy gate: below the alert
    # floor and an order of magnitude below the healthy spread.
    assert collapsed < 0.05 and collapsed < healthy / 10


def test_effective_rank_sees_the_dimensional_collapse_the_spread_misses():
    """Embeddings that vary along one direction only: the spread reads *higher* than healthy ones', the rank ~1."""
    rng = np.random.default_rng(0)
    metrics = LearnerMetrics()
    mon = DriftMonitor(DriftConfig(spread_window=256, rank_every=1), metrics)
    sample = lambda name: metrics.registry.get_sample_value(f"streamssl_learner_embedding_{name}")  # noqa: E731
    # Like a real model's: a common component (the normalised rows sit in one cap of the
    # sphere, spread ~0.05 measured on the test model) plus variation in every direction.
    healthy = 2.0 * rng.normal(size=64) + rng.normal(size=(256, 64))
    mon.observe_embeddings(healthy)
    healthy_spread, healthy_rank = sample("spread"), sample("effective_rank")
    direction = rng.normal(size=64)
    one_line = np.outer(rng.normal(size=256), direction) + 0.01 * direction  # all on one line through the origin
    mon.observe_embeddings(one_line)
    assert sample("spread") > healthy_spread  # blind: larger on the collapsed model
    assert sample("effective_rank") < 1.5 < 2 < 0.5 * healthy_rank
    assert effective_rank(one_line) == pytest.approx(1.0, abs=0.05)
    assert 1.0 <= effective_rank(np.ones((10, 8))) < 1.01  # complete collapse too


def test_effective_rank_falls_when_the_learners_encoder_is_forced_to_one_direction(speech):
    learner, segments = small_learner_and_speech(speech)
    metrics = LearnerMetrics()
    rank = lambda: metrics.registry.get_sample_value("streamssl_learner_embedding_effective_rank")  # noqa: E731
    mon = DriftMonitor(DriftConfig(spread_window=64, rank_every=1), metrics)
    mon.observe_embeddings(learner.embed_segments(segments))
    healthy = rank()

    # The encoder's only block ends in LayerNorm -> ReLU: a one-hot gain lets one channel through,
    # so every frame the rest of the model sees varies along a single direction.
    block = learner.core.backbone.encoder.blocks[-1]
    with torch.no_grad():
        block.norm.weight.zero_()
        block.norm.weight[0] = 1.0
        block.norm.bias.zero_()
    mon = DriftMonitor(DriftConfig(spread_window=64, rank_every=1), metrics)
    mon.observe_embeddings(learner.embed_segments(segments))
    one_direction = rank()
    with torch.no_grad():
        block.norm.weight.zero_()
    mon = DriftMonitor(DriftConfig(spread_window=64, rank_every=1), metrics)
    mon.observe_embeddings(learner.embed_segments(segments))
    constant = rank()
    print(f"effective rank at random init {healthy:.2f}, one encoder direction {one_direction:.2f}, constant {constant:.2f}")
    assert healthy > 4
    assert one_direction < 0.5 * healthy
    assert constant < 2  # the alert's floor; the GRU's start-up transient from z = 0 is all that varies


@pytest.mark.parametrize("shape", [(256, 1024), (300, 40), (8, 8)])
def test_gram_singular_values_match_the_svd(shape):
    from streamssl.observability.signals import singular_values

    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) * np.geomspace(1.0, 1e-3, shape[1])  # a spread of scales, like real embeddings
    np.testing.assert_allclose(singular_values(x)[: min(shape)], np.linalg.svd(x, compute_uv=False),
                               rtol=1e-6, atol=1e-6 * np.linalg.norm(x, 2))
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum() + 1e-12
    assert effective_rank(x, unit_rows=False) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)


def test_many_interleaved_speech_streams_raise_no_input_drift():
    """The daemon feeds one monitor with every stream, interleaved. One set of input
    detectors over all of them read 16 stationary speech streams as drift (13 times in
    3 minutes here; 61 in 9.5 minutes of a real-time soak): each stream has its own."""
    from streamssl.capture.sources.speech import SpeechSource

    streams, seconds = 16, 90
    windows = []
    for i in range(streams):
        # Stationary speech: the conversation stream changes microphone and room every few turns,
        # which is input drift by design; this test is about speech that does not drift.
        with SpeechSource(seed=i, mode="sentences", sample_rate=16000, channels=1, block_frames=8000,
                          realtime=False) as src:
            windows.append([b.samples[:, 0].copy() for b in itertools.islice(src, seconds * 2)])
    mon = DriftMonitor(DriftConfig())
    found = [d for k in range(seconds * 2) for s in range(streams)
             for d in mon.observe_window(windows[s][k], 16000, f"speech{s}")]
    assert found == []
    assert len(mon._inputs) == streams  # noqa: SLF001 - one set of input detectors per stream, each warmed up
    assert all(not c.warming for chans in mon._inputs.values() for c in chans.values())  # noqa: SLF001


def test_page_hinkley_stays_quiet_on_a_long_stationary_signal():
    """river's default forgetting (alpha = 1 - 1e-4) lets Page-Hinkley's sums settle and then wander
    by ~70 standard deviations: on stationary input it fired every ~10 000 observations (every
    ~5 minutes of 16 streams' embeddings in the soak). Without forgetting, 40 000 stationary
    values raise nothing, and a shift of 2 standard deviations afterwards is still found."""
    from streamssl.observability.detectors import Channel

    rng = np.random.default_rng(0)
    chan = Channel("embedding", DriftConfig(warmup=200), floor=0.01)
    fired = [d for x in rng.normal(1.0, 0.3, 40_000) for d in chan.observe(float(x))[1]]
    assert fired == []
    after = [d for x in rng.normal(1.6, 0.3, 50) for d in chan.observe(float(x))[1]]
    assert "page_hinkley" in after

"""The causal model: the future never changes the past, and a stream cut into chunks
(carrying ``BackboneState``) gives exactly what the whole stream gives, for the GRU and
the causal-transformer context; the learner's streaming ``embed`` inherits that."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.learning.learner import OnlineLearner
from streamssl.learning.models import BackboneState, build_backbone
from support import cut_windows

SMALL = "tests/configs/small.toml"
# transformer: a short look-back and two layers, so streams longer than the receptive
# field (window * layers = 16 frames) exercise the carried inputs
CONTEXTS = {
    "gru": ["model.context=gru"],
    "mingru": ["model.context=mingru", "model.context_layers=2"],  # two layers: the residual path too
    "transformer": ["model.context=transformer", "model.transformer_window=8", "model.context_layers=2",
                    "model.transformer_heads=4"],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(*overrides: str):
    return config.load(SMALL, list(overrides))


def _backbone(kind: str):
    torch.manual_seed(0)
    return build_backbone(config.load(SMALL, CONTEXTS[kind])).eval()


def _frames(t: int, seed: int = 0, n_mels: int = 32) -> torch.Tensor:
    return torch.randn(1, t, n_mels, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", list(CONTEXTS))
def test_future_frames_do_not_change_past_outputs(kind):
    bb = _backbone(kind)
    x = _frames(60)
    y = x.clone()
    y[:, 37:] = torch.randn(1, 23, x.shape[2]) * 5  # a different future from frame 37 on
    with torch.no_grad():
        zx, cx, _ = bb(x)
        zy, cy, _ = bb(y)
    torch.testing.assert_close(zx[:, :37], zy[:, :37], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cx[:, :37], cy[:, :37], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(cx[:, 37:], cy[:, 37:], atol=1e-3), "the changed frames must matter"


@pytest.mark.parametrize("kind", list(CONTEXTS))
def test_chunked_with_state_equals_whole(kind):
    bb = _backbone(kind)
    x = _frames(97, seed=1)
    with torch.no_grad():
        z_whole, c_whole, _ = bb(x)
        state = BackboneState()
        zs, cs = [], []
        for a, b in [(0, 1), (1, 4), (4, 4), (4, 5), (5, 30), (30, 31), (31, 31), (31, 70), (70, 97)]:  # 0/1-frame chunks
            z, c, state = bb(x[:, a:b], state)
            zs.append(z)
            cs.append(c)
        # without the state, a chunk restarts from zeros and differs: the state is what makes this work
        _, c_cold, _ = bb(x[:, 31:70])
    torch.testing.assert_close(torch.cat(zs, 1), z_whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(cs, 1), c_whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(c_cold, c_whole[:, 31:70], atol=1e-3)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic non-stationary audio (chirps + noise bursts); int16 like the wire default."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (1 + np.sin(2 * np.pi * 1.5 * t))
    x += 0.05 * rng.standard_normal(t.shape) * (np.sin(2 * np.pi * 0.7 * t) > 0)
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("kind", list(CONTEXTS))
def test_learner_embed_per_frame_independent_of_window_cutting(kind):
    """Per-frame embeddings of one stream are the same however the capture cut it into windows.

    (The pooled embedding is per window, so it differs between cuttings by design; the
    per-frame ones, concatenated, must not.) A couple of updates first so the normaliser
    and weights are not at their initial values.
    """
    cfg = config.load(SMALL, [*CONTEXTS[kind], "learner.per_frame_embeddings=true"])
    learner = OnlineLearner(cfg, device="cpu")
    audio = _speechlike(3.2)
    for w in cut_windows(_speechlike(1.5, seed=7), [8000], "warmup"):
        learner.update([w])

    cut_a = cut_windows(audio, [8000], "a")  # 500 ms windows, as the capture default
    cut_b = cut_windows(audio, [5000, 137, 11000, 301, 2222], "b")  # odd sizes, some shorter than one frame
    per_frame = {}
    for name, ws in (("a", cut_a), ("b", cut_b)):
        frames = learner.embed(ws)
        rows = []
        for w, f in zip(ws, frames):
            fe = f.frame_embeddings
            if fe is None or fe.shape[0] == 0:
                continue
            assert fe.shape[1] == learner.core.frame_dim and f.embedding.shape == (learner.dim,)
            d = fe.shape[1]
            c_mean = f.embedding[learner.dim - 2 * d : learner.dim - d]  # layout: z mean, z std, c mean, c std
            assert fe.min(0).min() - 1e-5 <= c_mean.min() and c_mean.max() <= fe.max(0).max() + 1e-5
            rows.append(fe)
        per_frame[name] = np.concatenate(rows)

    # the whole stream in one pass through the same front end and model
    with torch.no_grad():
        x = torch.from_numpy(audio.astype(np.float32) / 32768.0)[None]
        feats = learner.core.logmel(x)
        _, c, _ = learner.core.backbone(learner.core.normaliser(feats))
    whole = c[0].numpy()
    assert per_frame["a"].shape == per_frame["b"].shape == whole.shape
    np.testing.assert_allclose(per_frame["a"], per_frame["b"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(per_frame["a"], whole, rtol=1e-4, atol=1e-5)


def test_windows_shorter_than_a_frame_publish_the_last_embedding():
    """A window that completes no frame (shorter than the STFT still needs) changes no state
    and publishes the stream's last embedding again; before any frame, zeros."""
    learner = OnlineLearner(_cfg("learner.per_frame_embeddings=true"), device="cpu")
    audio = (np.random.default_rng(3).standard_normal(8000) * 3000).astype(np.int16)
    first = learner.embed(cut_windows(audio[:100], [100], "tiny"))[0]  # 100 samples: no frame yet
    np.testing.assert_array_equal(first.embedding, np.zeros(learner.dim, np.float32))
    assert first.frame_embeddings is None or first.frame_embeddings.shape[0] == 0
    full, short = learner.embed(cut_windows(audio[100:4150], [4000, 50], "tiny"))
    # 4100 samples -> 24 frames, 260 samples carried; +50 = 310 < 400: still no new frame
    assert short.frame_embeddings is None or short.frame_embeddings.shape[0] == 0
    np.testing.assert_array_equal(short.embedding, full.embedding)
    # and the state was not disturbed: the next frames equal those of an uncut stream
    rest = learner.embed(cut_windows(audio[4150:], [3850], "tiny"))[0].frame_embeddings
    ref = OnlineLearner(_cfg("learner.per_frame_embeddings=true"), device="cpu")
    whole = ref.embed(cut_windows(audio, [8000], "ref"))[0].frame_embeddings
    np.testing.assert_allclose(np.concatenate([full.frame_embeddings, rest]), whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", list(CONTEXTS))
def test_streams_embedded_together_equal_each_stream_embedded_alone(kind):
    """``embed`` batches windows of different streams into one backbone call; that must
    not change any stream's embeddings. Streams with different window sizes (so different
    frame counts and, for the transformer, different carried pasts), one joining late,
    several windows of one stream in a single call, and sub-frame windows."""
    cfg = config.load(SMALL, [*CONTEXTS[kind], "learner.per_frame_embeddings=true"])
    together, alone = OnlineLearner(cfg, device="cpu"), OnlineLearner(cfg, device="cpu")  # same seed, same weights
    streams = {
        "a": cut_windows(_speechlike(3.0, seed=1), [8000], "a"),
        "b": cut_windows(_speechlike(3.0, seed=2), [8000, 4000], "b"),
        "c": cut_windows(_speechlike(2.0, seed=3), [4800, 100], "c"),
    }
    joins = {"a": 0, "b": 0, "c": 2}  # c's first window arrives in round 2
    rounds = range(max(joins[sid] + len(ws) for sid, ws in streams.items()))
    interleaved = [
        streams[sid][k - joins[sid]] for k in rounds for sid in streams if 0 <= k - joins[sid] < len(streams[sid])
    ]
    got = {}
    for start in range(0, len(interleaved), 7):  # calls of 7 windows: several per stream in one call
        for f in together.embed(interleaved[start : start + 7]):
            got[(f.stream_id, f.seq)] = f
    assert len(got) == sum(len(v) for v in streams.values())
    for sid, ws in streams.items():
        for w in ws:
            (ref,) = alone.embed([w])
            f = got[(sid, w.seq)]
            np.testing.assert_allclose(f.embedding, ref.embedding, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(f.frame_embeddings, ref.frame_embeddings, rtol=1e-5, atol=1e-6)


def test_mingru_parallel_scan_equals_the_recurrence_step_by_step():
    """The log-space scan is the minGRU recurrence h_t = (1 - z_t) h_{t-1} + z_t g(v_t),
    computed here one step at a time from the same gates, with and without a carried h_0."""
    from streamssl.learning.models.context import MinGRULayer

    torch.manual_seed(0)
    layer = MinGRULayer(6, 5)
    x = torch.randn(3, 40, 6)
    for h0 in (None, torch.rand(3, 5) + 0.1):
        k, v = layer.gates(x).chunk(2, dim=-1)
        z, g = torch.sigmoid(k), torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
        h = torch.zeros(3, 5) if h0 is None else h0
        steps = []
        for t in range(x.shape[1]):
            h = (1 - z[:, t]) * h + z[:, t] * g[:, t]
            steps.append(h)
        torch.testing.assert_close(layer(x, h0), torch.stack(steps, dim=1), rtol=1e-5, atol=1e-6)

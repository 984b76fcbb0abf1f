"""OnlineLearner: one step per call, skipped non-finite steps, replay, weights 0, bit-for-bit resume."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.learning import checkpoint
from streamssl.learning.learner import OnlineLearner
from streamssl.learning.objectives import OBJECTIVES
from streamssl.learning.replay import ReplayBuffer
from streamssl.wire import AudioWindow


def _cfg(*over: str):
    return config.load("tests/configs/small.toml", list(over))


def _windows(n: int, streams=("a", "b"), seed: int = 0, start: int = 0) -> list[list[AudioWindow]]:
    """n arrivals, one window per stream each: noisy tones, 500 ms int16 like the capture default."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        batch = []
        for j, s in enumerate(streams):
            t = np.arange(8000) / 16000
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * j + 10 * i) * t) + 0.05 * rng.standard_normal(8000)
            batch.append(AudioWindow(s, i, (i + 1) * 500_000_000, 16000, (x[:, None] * 32767).astype(np.int16)))
        out.append(batch)
    return out


def _weights(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.clone() for name, mod in learner.core.modules().items() for k, v in mod.state_dict().items()}


def test_update_takes_one_step_and_reports_stats():
    cfg = _cfg()
    learner = OnlineLearner(cfg)
    stats = [learner.update(b) for b in _windows(3)]
    s = stats[-1]
    assert [x.step for x in stats] == [1, 2, 3] and learner.step == 3
    assert set(s.losses) == {"apc", "cpc", "moco", "decorrelation", "total"}
    weights = {k: getattr(cfg.objectives, f"{k}_weight") for k in OBJECTIVES}
    assert s.losses["total"] == pytest.approx(sum(w * s.losses[k] for k, w in weights.items()), rel=1e-5)
    assert s.new_windows == 2 and s.batch_size == 2 + min(cfg.learner.replay_per_step, 4)
    assert s.audio_seconds == pytest.approx(1.0) and not s.skipped
    assert np.isfinite(s.grad_norm) and s.lr == cfg.learner.lr and s.duration_s > 0
    assert learner.queue_fill == pytest.approx(6 / cfg.objectives.moco_queue)
    frames, s4 = learner.process(_windows(1, start=3)[0])
    assert [f.model_step for f in frames] == [3, 3] and s4.step == 4, "embed first (old weights), then learn"


def test_weight_zero_disables_an_objective():
    learner = OnlineLearner(_cfg("objectives.cpc_weight=0", "objectives.moco_weight=0", "objectives.decorrelation_weight=0"))
    s = learner.update(_windows(1)[0])
    assert set(s.losses) == {"apc", "total"} and learner.core.cpc is None and learner.core.moco is None
    assert learner.queue_fill == 0.0


@pytest.mark.parametrize("how", ["nan_audio", "inf_audio", "forced_nan_loss"])
def test_non_finite_step_is_skipped_and_changes_nothing(how, monkeypatch):
    learner = OnlineLearner(_cfg())
    for b in _windows(2):
        learner.update(b)
    before = _weights(learner)
    opt_before = io.BytesIO()
    torch.save(learner.core.optimizer.state_dict(), opt_before)
    replay_before = len(learner.replay)
    batch = _windows(1, start=2)[0]
    if how == "forced_nan_loss":
        real = learner.core.apc.forward
        monkeypatch.setattr(learner.core.apc, "forward", lambda c, x: real(c, x) * float("nan"))
    else:
        bad = np.full((8000, 1), np.nan if how == "nan_audio" else np.inf, dtype=np.float32)
        batch = [AudioWindow("a", 2, 1_500_000_000, 16000, bad), batch[1]]
    s = learner.update(batch)
    assert s.skipped and s.step == 2 and learner.step == 2 and learner.skipped_steps == 1
    after = _weights(learner)
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed by a skipped step"
    opt_after = io.BytesIO()
    torch.save(learner.core.optimizer.state_dict(), opt_after)
    assert opt_before.getvalue() == opt_after.getvalue()
    assert len(learner.replay) == replay_before
    monkeypatch.undo()
    # the stream's history holds no NaN: the next window learns normally
    s = learner.update(_windows(1, start=3)[0])
    assert not s.skipped and np.isfinite(s.losses["total"]) and learner.step == 3


@pytest.mark.parametrize("policy", ["fifo", "reservoir"])
def test_replay_buffer_policies(policy):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(4, 10, policy, rng)
    for i in range(20):
        buf.add(np.full((1, 10), i / 100, np.float32), np.array([i]), np.array([i]))
    assert len(buf) == 4
    ids = sorted(buf._stream.tolist())
    if policy == "fifo":
        assert ids == [16, 17, 18, 19]
    else:
        assert ids != [16, 17, 18, 19] and all(0 <= i < 20 for i in ids)  # a sample of the whole history
    audio, stream, _ = buf.sample(3)
    assert audio.shape == (3, 10) and len(set(stream.tolist())) == 3
    np.testing.assert_allclose(audio[:, 0], stream / 100, atol=1e-4)  # int16 storage keeps the audio
    assert buf.nbytes == 4 * 10 * 2 + 4 * 8 * 2


def test_training_example_is_the_last_window_s_of_its_stream():
    learner = OnlineLearner(_cfg("learner.window_s=0.75"))
    w = _windows(3, streams=("a",))
    def example(window):
        (p,) = learner.prepare([window])
        return p.stream.example(p, learner.window_samples)

    first = example(w[0][0])
    assert first.shape == (12000,) and (first[:4000] == 0).all(), "zero-padded at stream start"
    example(w[1][0])
    third = example(w[2][0])
    np.testing.assert_array_equal(third[4000:], w[2][0].mono_float())
    np.testing.assert_array_equal(third[:4000], w[1][0].mono_float()[4000:])


def test_resume_continues_bit_for_bit(tmp_path):
    cfg = _cfg("learner.replay_policy=reservoir", "learner.replay_size=6")
    data = _windows(12)
    a = OnlineLearner(cfg)
    for b in data[:6]:
        a.update(b)
        a.embed(b)
    path = checkpoint.save(a, tmp_path)
    b_ = checkpoint.learner_from_checkpoint(path)
    assert b_.step == a.step == 6
    for batch in data[6:]:
        sa, sb = a.process(batch), b_.process(batch)
        assert sa[1].losses == sb[1].losses
        for fa, fb in zip(sa[0], sb[0]):
            np.testing.assert_array_equal(fa.embedding, fb.embedding)
    wa, wb = _weights(a), _weights(b_)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    sa, sb = a.state_dict(), b_.state_dict()
    assert torch.equal(sa["core"]["generator"], sb["core"]["generator"]) and sa["replay_rng"] == sb["replay_rng"]


def test_replay_update_steps_on_replayed_examples_alone_and_adds_nothing():
    """Idle time's step: it moves the weights and the step count, and leaves what holds the
    stream's audio (buffer, MoCo queue, input statistics) as it was."""
    learner = OnlineLearner(_cfg())
    assert learner.replay_update() is None, "an empty buffer is no batch"
    for b in _windows(2):  # 4 windows in the buffer: fewer than a live step's 1 + 4
        learner.update(b)
    assert learner.replay_update() is None and learner.step == 2
    learner.update(_windows(1, start=2)[0])
    before = _weights(learner)
    held = (len(learner.replay), learner.queue_fill, learner.core.normaliser.count.item())
    s = learner.replay_update()
    assert s is not None and not s.skipped and s.step == learner.step == 4
    assert s.new_windows == 0 and s.audio_seconds == 0 and s.batch_size == 1 + learner.cfg.learner.replay_per_step
    assert set(s.losses) == {"apc", "cpc", "moco", "decorrelation", "total"} and np.isfinite(s.losses["total"])
    after = _weights(learner)
    assert not torch.equal(before["backbone.encoder.blocks.0.conv.weight"], after["backbone.encoder.blocks.0.conv.weight"])
    assert (len(learner.replay), learner.queue_fill, learner.core.normaliser.count.item()) == held
    for k in ("normaliser.mean", "normaliser.var", "moco.queue"):
        assert torch.equal(before[k], after[k]), k


def test_update_without_windows_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        OnlineLearner(_cfg()).update([])


def test_a_backlog_is_served_in_full_and_learned_from_an_evenly_spaced_sample():
    """Overload: every window is embedded, the step learns from learn_at_most of them, the rest are
    listed as untrained, and every window still enters its stream's history (examples stay continuous)."""
    learner = OnlineLearner(_cfg("learner.window_s=0.75"))
    backlog = [b[0] for b in _windows(10, streams=("a",))]
    prepared = learner.prepare(backlog)
    frames = learner.embed(prepared)
    stats = learner.update(prepared, learn_at_most=4)
    assert len(frames) == 10 and stats.new_windows == 4 and stats.untrained == ["a"] * 6
    assert stats.audio_seconds == pytest.approx(4 * 0.5) and stats.step == 1
    # history holds the last window_s of *all* ten windows, not of the four learned from
    history = learner.streams["a"].history
    tail = np.concatenate([w.mono_float() for w in backlog])[-history.shape[0]:]
    np.testing.assert_array_equal(history, tail)
    small = learner.update(learner.prepare([b[0] for b in _windows(2, streams=("a",), start=10)]), learn_at_most=4)
    assert small.new_windows == 2 and small.untrained == []


def test_cpc_targets_are_the_clean_crop_whatever_view_the_query_got():
    """CPC's targets come from frames no augmentation marked: two different random views of
    the same (uncropped) window give different queries and the same clean frames."""
    cfg = _cfg("objectives.moco_crop_fraction=1.0", "objectives.apc_target=input")
    core = OnlineLearner(cfg).core
    audio = torch.tensor(np.random.default_rng(0).standard_normal((2, core.example_samples)) * 0.1, dtype=torch.float32)
    a = core.views(audio, torch.Generator().manual_seed(1), with_key=False)
    b = core.views(audio, torch.Generator().manual_seed(2), with_key=False)
    assert not torch.allclose(a.query, b.query), "the two queries got different channels"
    assert torch.equal(a.clean, b.clean) and a.clean.shape == a.query.shape
    assert a.clean.mean().abs() < 1e-5, "the level is removed"
    assert torch.equal(a.apc_target, a.query), "apc_target=input still reads its own view"
    off = OnlineLearner(_cfg("objectives.cpc_target=view", "objectives.apc_target=input")).core
    assert off.views(audio, torch.Generator().manual_seed(1), with_key=False).clean is None

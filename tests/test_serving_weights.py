"""Serving beside training: the copy of the weights that embeds while another thread steps.

``OnlineLearner.serve_from_copy`` makes every embedding come from ``ServingWeights``;
``publish_weights`` (the training thread, after a step) refreshes it. What a user relies
on: a stream's embeddings are the offline ones at the weights of the step they name
(equal up to float summation order, 1e-6), never a mix of two steps, and the copy
follows training one step behind at most.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch

from streamssl import config
from streamssl.learning.learner import OnlineLearner
from test_learner import _windows


def _cfg(*over: str):
    return config.load("tests/configs/small.toml", list(over))


def _snapshot(learner: OnlineLearner) -> dict:
    """The core's state as it is now (state_dict holds live tensors: copy them)."""
    return copy.deepcopy(learner.core.state_dict())


def _offline(cfg, core_state: dict, audio: np.ndarray) -> np.ndarray:
    """Embeddings of whole clips by a separate learner holding ``core_state``'s weights."""
    other = OnlineLearner(cfg)
    other.core.load_state_dict(core_state)
    return other.embed_segments(audio)


def test_the_copy_serves_the_published_step_and_lags_until_the_next_publish(one_torch_thread):
    cfg = _cfg()
    learner = OnlineLearner(cfg)
    learner.serve_from_copy()
    for batch in _windows(3):
        learner.update(batch)
        learner.publish_weights()
    published = _snapshot(learner)
    clip = np.stack([w.mono_float() for w in _windows(1, start=7)[0]]).astype(np.float32)

    served = learner.embed_segments(clip)
    # Same weights, other tensors: equal up to float summation order (measured 1.2e-7).
    np.testing.assert_allclose(served, learner.core.embed_clips(torch.from_numpy(clip)).numpy(), rtol=1e-5, atol=1e-6)
    learner.update(_windows(1, start=3)[0])  # a step the copy has not seen yet
    assert learner.step == 4 and learner.serving.step == 3
    np.testing.assert_array_equal(learner.embed_segments(clip), served)
    assert [f.model_step for f in learner.embed(_windows(1, start=4)[0])] == [3, 3]
    np.testing.assert_allclose(served, _offline(cfg, published, clip), rtol=1e-5, atol=1e-6)
    learner.publish_weights()
    assert learner.serving.step == 4
    assert not np.array_equal(learner.embed_segments(clip), served)


def test_a_stream_served_from_the_copy_equals_the_offline_embedding_at_those_weights(one_torch_thread):
    """Windows of one stream embedded on the serving path (streaming state carried
    window to window, weights from the copy) equal the same windows through a learner
    that embeds with the training weights themselves, loaded from the same step."""
    cfg = _cfg()
    learner = OnlineLearner(cfg)
    learner.serve_from_copy()
    for batch in _windows(2, streams=("warm",)):
        learner.update(batch)
        learner.publish_weights()
    stream = _windows(6, streams=("s",), seed=3)
    frames = [f for batch in stream for f in learner.embed(batch)]
    assert {f.model_step for f in frames} == {2}
    reference = OnlineLearner(cfg)
    reference.core.load_state_dict(learner.core.state_dict())
    ref_frames = reference.embed([w for batch in stream for w in batch])
    np.testing.assert_allclose(np.stack([f.embedding for f in frames]), np.stack([f.embedding for f in ref_frames]),
                               rtol=1e-5, atol=1e-6)


def test_embeddings_made_while_another_thread_trains_are_each_from_one_step(one_torch_thread):
    """A training thread steps and publishes as fast as it can while this thread embeds
    the same clip over and over: every result must equal the clip's embedding at the
    weights of the step it reports (snapshots kept per step), never a half-copied mix."""
    cfg = _cfg()
    learner = OnlineLearner(cfg)
    learner.serve_from_copy()
    clip = np.stack([w.mono_float() for w in _windows(1, start=9)[0]]).astype(np.float32)
    snapshots = {0: _snapshot(learner)}
    done = threading.Event()

    def train() -> None:
        for batch in _windows(12, seed=1):
            learner.update(batch)
            snapshots[learner.step] = _snapshot(learner)
            learner.publish_weights()
        done.set()

    trainer = threading.Thread(target=train)
    trainer.start()
    seen = []
    while not done.is_set() or not seen:
        with learner.serving.use() as embedder:
            seen.append((embedder.step, embedder.embed_clips(torch.from_numpy(clip)).numpy()))
    trainer.join()
    steps = [s for s, _ in seen]
    assert steps == sorted(steps), "served weights never go back a step"
    assert len(set(steps)) >= 3, f"training and serving did not overlap (steps seen: {sorted(set(steps))})"
    for step in sorted(set(steps)):
        expected = _offline(cfg, snapshots[step], clip)
        for s, emb in seen:
            if s == step:
                np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


def test_a_failing_training_step_stops_the_daemon_with_its_error_and_a_checkpoint(tmp_path, monkeypatch):
    """An exception in the trainer thread must not leave a daemon that serves forever
    without learning: the loop re-raises it (as one thread would), after which the
    daemon still closes its sockets and writes its final checkpoint."""
    import time

    import zmq

    from streamssl.serving.daemon import LearnerDaemon
    from streamssl.transport import make_socket
    from streamssl.config import TransportConfig
    from streamssl.wire import encode_audio
    from support import free_endpoint, free_port

    audio = free_endpoint()
    cfg = _cfg(f"learner.checkpoint_dir={tmp_path}", f"learner.audio_bind={audio}",
               f"learner.embeddings_bind={free_endpoint()}", f"learner.metrics_port={free_port()}")
    daemon = LearnerDaemon(cfg)
    real, calls = daemon.learner.update, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated device failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(daemon.learner, "update", flaky)
    errors = []
    runner = threading.Thread(target=lambda: errors.append(_run(daemon)))
    runner.start()
    push = make_socket(zmq.Context.instance(), zmq.PUSH, TransportConfig(), connect=audio)
    try:
        for batch in _windows(20, streams=("s",)):
            push.send_multipart(encode_audio(batch[0]))
            time.sleep(0.05)
            if not runner.is_alive():
                break
        runner.join(60)
    finally:
        push.close(0)
        daemon.stop()
        runner.join(10)
    assert not runner.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError) and "training thread failed" in str(errors[0])
    assert list(tmp_path.glob("ckpt-*.pt")), "the final checkpoint was written"


def _run(daemon) -> BaseException | None:
    try:
        daemon.run()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    return None

"""Periodic checkpoints in the background: the serving loop never waits for a step to end or
for the file to be written, and what is written is the state between two steps.

The step in progress is played by the test itself holding the training thread's lock
(what ``Trainer.run`` holds for a whole step), so "never waits" is checked by what can
happen while it is held, not by a wall-clock figure.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.learning import checkpoint
from streamssl.learning.learner import OnlineLearner
from streamssl.serving.daemon import LearnerDaemon
from support import REPO
from test_learner import _windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEADLINE_S = 60  # a hang, not a speed: each wait below takes well under a second when it works


def _cfg(tmp_path):
    return config.load(REPO / "tests" / "configs" / "small.toml",
                       [f"learner.checkpoint_dir={tmp_path}", "learner.checkpoint_interval_s=5"])


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"waited {DEADLINE_S} s for {what}"
        time.sleep(0.01)


def _serve_and_train(daemon: LearnerDaemon, batches) -> None:
    """The serving loop's part of ``_process``: embed, then hand the windows to the training
    thread; returns when every window has been learned from."""
    submitted = learned = 0
    for batch in batches:
        prepared = daemon.learner.prepare(batch)
        daemon.learner.embed(prepared)
        daemon.trainer.submit(prepared)
        submitted += len(prepared)

    def all_learned() -> bool:
        nonlocal learned
        while not daemon.trainer.results.empty():
            learned += len(daemon.trainer.results.get()[1])
        return learned == submitted

    _wait(all_learned, "the steps")


def _state_tensors(sd: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def test_the_training_state_is_a_copy_that_the_next_step_leaves_alone():
    learner = OnlineLearner(config.load(REPO / "tests" / "configs" / "small.toml"))
    for batch in _windows(2):
        learner.update(batch)
    taken = learner.training_state()
    before = {k: v.clone() for k, v in _state_tensors(taken["core"]["modules"]["backbone"]).items()}
    exp_avg = next(iter(taken["core"]["optimizer"]["state"].values()))["exp_avg"].clone()
    learner.update(_windows(1, start=2)[0])

    assert taken["core"]["step"] == 2 and learner.step == 3
    for name, value in _state_tensors(taken["core"]["modules"]["backbone"]).items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(next(iter(taken["core"]["optimizer"]["state"].values()))["exp_avg"], exp_avg, rtol=0, atol=0)
    assert sorted(taken["histories"]) == ["a", "b"]


def test_a_periodic_checkpoint_never_waits_for_the_step_in_progress(tmp_path):
    daemon = LearnerDaemon(_cfg(tmp_path))
    learner, trainer, ckpt = daemon.learner, daemon.trainer, daemon.checkpointer
    trainer.start()
    try:
        _serve_and_train(daemon, _windows(3))
        step = learner.step
        assert step >= 1

        trainer.lock.acquire()  # a step in progress, from here on
        try:
            polled = threading.Thread(target=ckpt.poll, args=(time.monotonic() + 10,))
            polled.start()
            polled.join(DEADLINE_S)
            assert not polled.is_alive(), "poll() waited for the training thread's lock"
            assert ckpt.busy and not list(tmp_path.glob(checkpoint.PATTERN)), "nothing copied mid-step"
            frames = learner.embed(_windows(1, start=3)[0])  # serving goes on meanwhile
            assert [f.model_step for f in frames] == [step, step]
        finally:
            trainer.lock.release()

        _wait(lambda: (ckpt.poll(time.monotonic()), not ckpt.busy)[1], "the background checkpoint")
        written = list(tmp_path.glob(checkpoint.PATTERN))
        assert len(written) == 1 and daemon.metrics.registry.get_sample_value(
            "streamssl_learner_checkpoint_errors_total") == 0
    finally:
        trainer.stop()
        ckpt.close()

    state = checkpoint.load(written[0])
    assert state["learner"]["core"]["step"] == step
    # The windows embedded while the step was held are in the streaming state, not the history.
    assert set(state["learner"]["streams"]) == {"a", "b"}
    assert state["daemon"]["streams"] == {}  # the test fed the learner directly, not through the intake

    resumed = LearnerDaemon(_cfg(tmp_path))
    assert resumed.learner.step == step
    for name, value in learner.core.state_dict()["modules"]["backbone"].items():
        torch.testing.assert_close(resumed.learner.core.state_dict()["modules"]["backbone"][name], value,
                                   rtol=0, atol=0, msg=name)
    for sid in ("a", "b"):
        np.testing.assert_array_equal(resumed.learner.streams[sid].stft.carry.numpy(),
                                      learner.streams[sid].stft.carry.numpy())
    resumed.checkpointer.close()


def test_between_steps_runs_on_the_training_thread_holding_its_lock(tmp_path):
    daemon = LearnerDaemon(_cfg(tmp_path))
    trainer = daemon.trainer
    trainer.start()
    try:
        seen = trainer.between_steps(lambda: (threading.current_thread().name, trainer.lock.locked()))
        assert seen.result(DEADLINE_S) == ("trainer", True)
        failing = trainer.between_steps(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(DEADLINE_S)
        trainer.check()  # a failed call is the caller's, the training thread goes on
        _serve_and_train(daemon, _windows(1))
    finally:
        trainer.stop()
        daemon.checkpointer.close()
    assert trainer.between_steps(lambda: 1).cancelled(), "a stopped trainer cancels, never hangs the caller"

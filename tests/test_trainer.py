"""The training thread's idle time: replay-only steps, as many as the windows learned allow.

A real ``Trainer`` thread over a real ``OnlineLearner`` (small model). All windows go in
as one submission, so the thread takes exactly one live step, learning ``learn_at_most``
of them, and the number of replay steps that follows is fixed by ``idle_replay``, not by
timing.
"""

from __future__ import annotations

import time

import pytest

from streamssl import config
from streamssl.learning.learner import OnlineLearner
from streamssl.serving.trainer import Trainer
from test_learner import _windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEADLINE_S = 120  # a hang, not a speed: each step of the small model takes well under a second
LEARN_AT_MOST = 16


def _run(idle_replay: float) -> tuple[OnlineLearner, list]:
    """20 windows in one submission; every step result once the thread has nothing left to do."""
    learner = OnlineLearner(config.load("tests/configs/small.toml"))
    learner.serve_from_copy()
    trainer = Trainer(learner, learn_at_most=LEARN_AT_MOST, max_pending=256, idle_replay=idle_replay)
    prepared = learner.prepare([w for arrival in _windows(10) for w in arrival])
    trainer.start()
    results = []
    try:
        trainer.submit(prepared)
        expected = 1 + int(idle_replay * LEARN_AT_MOST)
        deadline = time.monotonic() + DEADLINE_S
        while len(results) < expected:
            assert time.monotonic() < deadline, f"waited {DEADLINE_S} s for {expected} steps, got {len(results)}"
            trainer.check()
            while not trainer.results.empty():
                results.append(trainer.results.get())
            time.sleep(0.01)
        # Idle and out of allowance: a step now would be one too many. Give a thread that
        # wrongly keeps stepping the time for one; it finishes a step in progress before
        # stop() returns, so anything it took shows up below.
        time.sleep(0.5)
        assert trainer.replay_allowance < 1
    finally:
        trainer.stop()
    while not trainer.results.empty():
        results.append(trainer.results.get())
    return learner, results


def test_idle_time_takes_idle_replay_steps_per_window_learned_and_then_rests():
    learner, results = _run(idle_replay=0.5)
    (live, batch), *replays = results
    assert live.new_windows == LEARN_AT_MOST and len(batch) == 20, "one live step, learning a sample of 16"
    assert len(replays) == 8, "0.5 replay-only steps per window learned, and no more"
    assert all(s.new_windows == 0 and s.audio_seconds == 0 and not b and not s.skipped for s, b in replays)
    assert [s.step for s, _ in results] == list(range(1, 10)) and learner.step == 9
    assert learner.serving.step == 9, "each replay step's weights are published to serving too"
    assert len(learner.replay) == LEARN_AT_MOST, "replay steps add nothing to the buffer"


def test_no_idle_replay_means_one_step_per_submission():
    learner, results = _run(idle_replay=0.0)
    assert len(results) == 1 and learner.step == 1

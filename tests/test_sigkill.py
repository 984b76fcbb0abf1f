"""SIGKILL at random moments, over and over: the learner always comes back from a loadable
checkpoint, and never loses more than one checkpoint interval (plus the step in flight).

Real processes: a ``streamssl learn`` that checkpoints every 0.5 s (so some kills land
during writes) fed by an unpaced ``streamssl capture``; the learner is killed with SIGKILL
at a random moment 4 times and restarted on the same checkpoint directory each time.
"""

from __future__ import annotations

import signal
import time

import numpy as np

from support import stop, wait_until
from test_learner_daemon import Learner, start_capture

from streamssl.learning import checkpoint

KILLS = 4
INTERVAL_S = 0.5
STEP_AND_WRITE_S = 5.0  # the longest one step plus one checkpoint write may take on a loaded 2-core box


def test_sigkill_at_random_moments_always_resumes_from_a_loadable_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    extra = ("--set", f"learner.checkpoint_interval_s={INTERVAL_S}", "--set", "learner.checkpoint_keep=2")
    learner = Learner(tmp_path, *extra)
    capture, _ = start_capture(tmp_path, learner, "synth", "tones", "--no-realtime")
    record = []  # (step at kill, step resumed, seconds between the newest checkpoint and the kill)
    try:
        for kill in range(KILLS):
            floor = record[-1][1] + 3 if record else 3
            wait_until(lambda: learner.value("streamssl_learner_model_step") >= floor, 90, message="learning")
            time.sleep(float(rng.uniform(0.05, 1.0)))  # a random moment: mid-step, mid-write or between
            step_at_kill = learner.value("streamssl_learner_model_step")
            learner.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            learner.proc.wait(timeout=30)
            state = checkpoint.load_latest(learner.checkpoints)  # what the restart will read
            assert state is not None, f"kill {kill}: no loadable checkpoint"
            saved = state["learner"]["core"]["step"]
            learner = Learner(tmp_path, *extra, same_as=learner)
            resumed = learner.value("streamssl_learner_model_step")
            record.append((step_at_kill, resumed, killed_at - state["saved_at"]))
            assert resumed == saved, f"kill {kill}: resumed step {resumed}, newest checkpoint {saved}"
            assert resumed <= step_at_kill + 1, "a checkpoint is never ahead of the model (+1: a step may end after the scrape)"
            assert killed_at - state["saved_at"] < INTERVAL_S + STEP_AND_WRITE_S, f"kill {kill}: lost too much"
    finally:
        stop(capture)
        stop(learner.proc)
    print("\n(step at kill, step resumed, s since newest checkpoint):",
          [(a, b, round(c, 2)) for a, b, c in record])
    assert [b for _, b, _ in record] == sorted(b for _, b, _ in record), "the step never goes back across kills"

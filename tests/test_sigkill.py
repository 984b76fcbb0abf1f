"""SIGKILL at random moments, over and over: the learner always comes back from a loadable
checkpoint, and never loses a checkpoint it had finished writing.

Real processes: a ``streamssl learn`` that checkpoints every 0.5 s (so some kills land
during writes) fed by an unpaced ``streamssl capture``; the learner is killed with SIGKILL
at a random moment 4 times and restarted on the same checkpoint directory each time.

What "lost too much" means here is decided by the files, not by the clock: a checkpoint is
finished when its rename lands (``checkpoint.atomic_write``), so the newest finished file
listed just before the kill is the oldest state the restart may resume from. A write in
flight at the kill may be lost, never one that finished. Seconds between the last write
and the kill depend on how busy the machine is (a loaded 2-core box once took 5.6 s for a
step and a write); the order of files does not.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from support import stop, wait_until
from test_learner_daemon import Learner, start_capture

from streamssl.learning import checkpoint

pytestmark = pytest.mark.e2e

KILLS = 4
INTERVAL_S = 0.5


def finished_checkpoints(directory: Path) -> list[tuple[int, int]]:
    """(step, write ns) of every finished checkpoint file, oldest first (temp files are dot-files)."""
    out = []
    for p in directory.glob(checkpoint.PATTERN):
        _, step, ns = p.stem.split("-")
        out.append((int(step), int(ns)))
    return sorted(out, key=lambda t: t[1])


def test_sigkill_at_random_moments_always_resumes_from_a_loadable_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    extra = ("--set", f"learner.checkpoint_interval_s={INTERVAL_S}", "--set", "learner.checkpoint_keep=2")
    learner = Learner(tmp_path, *extra)
    capture, _ = start_capture(tmp_path, learner, "synth", "tones", "--no-realtime")
    record = []  # (step at kill, newest finished checkpoint's step before the kill, step resumed)
    newest_before_restart = (-1, 0)
    try:
        for kill in range(KILLS):
            floor = record[-1][2] + 3 if record else 3
            wait_until(lambda: learner.value("streamssl_learner_model_step") >= floor, 90, message="learning")
            # The checkpointer is alive in this process: it finished a file after the (re)start.
            wait_until(lambda: finished_checkpoints(learner.checkpoints)[-1:] > [newest_before_restart], 90,
                       message=f"kill {kill}: a checkpoint written after the restart")
            time.sleep(float(rng.uniform(0.05, 1.0)))  # a random moment: mid-step, mid-write or between
            step_at_kill = learner.value("streamssl_learner_model_step")
            finished = finished_checkpoints(learner.checkpoints)[-1]
            learner.proc.send_signal(signal.SIGKILL)
            learner.proc.wait(timeout=30)
            state = checkpoint.load_latest(learner.checkpoints)  # what the restart will read
            assert state is not None, f"kill {kill}: no loadable checkpoint"
            saved = state["learner"]["core"]["step"]
            newest_before_restart = finished_checkpoints(learner.checkpoints)[-1]
            learner = Learner(tmp_path, *extra, same_as=learner)
            resumed = learner.value("streamssl_learner_model_step")
            record.append((step_at_kill, finished[0], resumed))
            assert resumed == saved, f"kill {kill}: resumed step {resumed}, newest checkpoint {saved}"
            assert resumed >= finished[0], (
                f"kill {kill}: lost a finished checkpoint: resumed step {resumed}, but step {finished[0]} "
                f"was written before the kill")
            assert resumed <= step_at_kill + 1, "a checkpoint is never ahead of the model (+1: a step may end after the scrape)"
    finally:
        stop(capture)
        stop(learner.proc)
    print("\n(step at kill, newest finished checkpoint before it, step resumed):", record)
    assert [r for _, _, r in record] == sorted(r for _, _, r in record), "the step never goes back across kills"

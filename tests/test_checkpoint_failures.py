"""A full disk or a read-only checkpoint directory: counted errors, the learner keeps serving and
learning, the previous checkpoint stays intact and loadable, no temp file is left behind.

Real filesystems, not mocks: the checkpoint directory is a small tmpfs mounted for the test
(the suite runs as root, as CI does), filled to the brim with a real file for the disk-full
case and remounted read-only for the other.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from streamssl import config
from streamssl.learning import checkpoint
from streamssl.serving.daemon import LearnerDaemon
from streamssl.wire import AudioWindow, to_pcm16
from support import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "ckpt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _windows(start: int, n: int) -> list[AudioWindow]:
    rng = np.random.default_rng(start)
    return [AudioWindow("mic", i, (i + 1) * 500_000_000, 16000, to_pcm16(0.1 * rng.standard_normal((8000, 1))))
            for i in range(start, start + n)]


def _errors(daemon: LearnerDaemon) -> float:
    return daemon.metrics.registry.get_sample_value("streamssl_learner_checkpoint_errors_total")


def test_full_disk_and_read_only_directory_are_counted_and_lose_nothing(small_fs):
    cfg = config.load(REPO / "tests" / "configs" / "small.toml", [f"learner.checkpoint_dir={small_fs}"])
    daemon = LearnerDaemon(cfg)
    for w in _windows(0, 3):
        daemon.learner.process([w])
    good = daemon.save_checkpoint()
    assert good is not None and _errors(daemon) == 0

    # Disk full: a filler file takes every free byte.
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    for w in _windows(3, 2):
        daemon.learner.process([w])  # still learning
    assert daemon.save_checkpoint() is None and _errors(daemon) == 1
    filler.unlink()

    assert sorted(p.name for p in small_fs.iterdir()) == [good.name], "no temp file, previous checkpoint kept"
    assert daemon.learner.step == 5

    # Read-only directory, the daemon restarted on it: it resumes from the checkpoint there,
    # serves, learns, and counts every checkpoint it cannot write.
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    restarted = LearnerDaemon(cfg)
    assert restarted.learner.step == 3
    frames, stats = restarted.learner.process(_windows(5, 1))
    assert frames[0].embedding.shape == (restarted.learner.dim,) and not stats.skipped, "still serving and learning"
    restarted._housekeeping()  # noqa: SLF001 - history record on a read-only directory: dropped, logged, not fatal
    assert restarted.save_checkpoint() is None and _errors(restarted) == 1

    assert sorted(p.name for p in small_fs.iterdir()) == [good.name]
    state = checkpoint.load_latest(small_fs)
    assert state["path"] == str(good) and state["learner"]["core"]["step"] == 3

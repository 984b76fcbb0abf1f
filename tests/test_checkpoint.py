"""Checkpoints: atomic files, newest-k retention, damaged ones refused with the previous one used."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.learning import checkpoint
from streamssl.learning.checkpoint import CheckpointError
from streamssl.learning.learner import OnlineLearner
from streamssl.wire import AudioWindow


def _learner() -> OnlineLearner:
    return OnlineLearner(config.load("tests/configs/small.toml"))


def _feed(learner: OnlineLearner, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        x = (rng.standard_normal((8000, 1)) * 2000).astype(np.int16)
        learner.update([AudioWindow("s", i, (i + 1) * 500_000_000, 16000, x)])


def test_save_load_roundtrip_keeps_newest_and_no_temp_files(tmp_path):
    learner = _learner()
    paths = []
    for _ in range(4):
        _feed(learner, 1)
        paths.append(checkpoint.save(learner, tmp_path, keep=2, extra={"probe": [torch.ones(3)]}))
    left = sorted(tmp_path.iterdir())
    assert left == sorted(paths[-2:]), "only the newest two are kept, no temp files left behind"
    state = checkpoint.load_latest(tmp_path)
    assert state["path"] == str(paths[-1]) and state["learner"]["core"]["step"] == 4
    assert state["daemon"]["probe"][0].tolist() == [1.0, 1.0, 1.0]
    assert state["config"]["model"]["encoder_channels"] == 48


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_damaged_checkpoint_is_refused_and_the_previous_one_used(tmp_path, damage, caplog):
    learner = _learner()
    _feed(learner, 1)
    good = checkpoint.save(learner, tmp_path)
    _feed(learner, 1)
    bad = checkpoint.save(learner, tmp_path)
    raw = bad.read_bytes()
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":  # inside the payload: torch.load alone would not notice
        mid = bytearray(raw)
        mid[len(raw) // 2] ^= 0xFF
        bad.write_bytes(bytes(mid))
    else:
        bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=bad.name):
        checkpoint.load(bad)
    with caplog.at_level(logging.ERROR, logger="streamssl.learning.checkpoint"):
        state = checkpoint.load_latest(tmp_path)
    assert state["path"] == str(good) and state["learner"]["core"]["step"] == 1
    assert any("refusing checkpoint" in r.message and bad.name in r.message for r in caplog.records)
    restored = checkpoint.learner_from_checkpoint(tmp_path)
    assert restored.step == 1


def test_no_loadable_checkpoint(tmp_path):
    assert checkpoint.load_latest(tmp_path) is None
    (tmp_path / "ckpt-000000000001-1.pt").write_bytes(b"")
    assert checkpoint.load_latest(tmp_path) is None
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        checkpoint.learner_from_checkpoint(tmp_path)


def test_learner_from_checkpoint_takes_architecture_from_the_file(tmp_path):
    learner = _learner()
    _feed(learner, 2)
    path = checkpoint.save(learner, tmp_path)
    other = config.load(None, ["learner.lr=0.5"])  # default-size model, different learner settings
    restored = checkpoint.learner_from_checkpoint(path, cfg=other)
    assert restored.cfg.model.encoder_channels == 48 and restored.cfg.learner.lr == 0.5
    audio = np.random.default_rng(5).standard_normal((2, 16000)).astype(np.float32) * 0.1
    np.testing.assert_array_equal(restored.embed_segments(audio), learner.embed_segments(audio))

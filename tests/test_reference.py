"""The offline reference trains the same model, steps and audio as an online run, shuffled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamssl import config
from streamssl.config import ConfigError
from streamssl.evaluation.reference import learn_online, recorded_speech, train_reference
from streamssl.learning.learner import OnlineLearner
from support import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _online(steps: int, seed: int = 3) -> tuple[OnlineLearner, np.ndarray]:
    cfg = config.load(REPO / "tests" / "configs" / "small.toml", [f"capture.seed={seed}"])
    learner = OnlineLearner(cfg)
    audio = recorded_speech(seed, steps * 0.5, 16000)
    learn_online(learner, audio, stream_id="live")
    return learner, audio


def test_reference_regenerates_the_audio_and_takes_as_many_steps():
    online, audio = _online(6)
    assert online.audio_seconds == pytest.approx(3.0)
    np.testing.assert_array_equal(recorded_speech(3, 3.0, 16000), audio)  # the seeded source is repeatable
    ref = train_reference(online)
    assert ref.step == online.step == 6
    fresh = OnlineLearner(online.cfg)
    moved = [not torch.equal(a, b) for a, b in zip(ref.parameters(), fresh.parameters())]
    assert all(moved), "every trainable tensor took steps"
    assert any(not torch.equal(a, b) for a, b in zip(ref.parameters(), online.parameters())), "other examples"


def test_reference_refuses_a_source_it_cannot_regenerate():
    online, _ = _online(1)
    online.cfg.capture.source = "mic"
    with pytest.raises(ConfigError, match="speech source"):
        train_reference(online)

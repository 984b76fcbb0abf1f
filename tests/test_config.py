"""Configs: shipped files load, overrides apply, and each bad value fails in one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamssl import config
from streamssl.config import ConfigError

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    assert isinstance(config.load(path), config.Config)


def test_overrides_are_typed_like_their_fields():
    cfg = config.load(None, ["capture.window_ms=250", "learner.lr=3e-4", "capture.realtime=false"])
    assert cfg.capture.window_ms == 250 and cfg.learner.lr == 3e-4 and cfg.capture.realtime is False


BAD = {
    "capture.window_ms=-5": "capture.window_ms",
    "capture.sample_rate=0": "capture.sample_rate",
    "capture.source=webcam": "capture.source",
    "capture.source=file:/nonexistent/a.wav": "capture.source",
    "capture.connect=tcp://127.0.0.1": "capture.connect",
    "capture.connect=tcp://127.0.0.1:70000": "capture.connect",
    "capture.dtype=int8": "capture.dtype",
    "learner.device=tpu": "learner.device",
    "learner.lr=abc": "learner.lr",
    "learner.lr=nan": "learner.lr",
    "model.context=lstm": "model.context",
    "objectives.moco_momentum=1.5": "objectives.moco_momentum",
    "features.f_max=12000": "features.f_max",
    "capture.nonsense=1": "capture.nonsense",
    "nosection.x=1": "nosection",
}


@pytest.mark.parametrize("override", BAD)
def test_bad_values_fail_with_one_line_naming_the_field(override):
    with pytest.raises(ConfigError) as err:
        config.load(None, [override])
    message = str(err.value)
    assert BAD[override] in message and "\n" not in message


def test_unknown_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match="allowed values: auto, cpu, cuda"):
        config.load(None, ["learner.device=tpu"])


def test_malformed_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture\nsource=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


def test_all_objectives_off_is_a_config_error():
    with pytest.raises(ConfigError, match="all 0"):
        config.load(None, ["objectives.apc_weight=0", "objectives.cpc_weight=0", "objectives.moco_weight=0"])

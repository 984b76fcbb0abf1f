"""Typed, validated configuration: every hyper-parameter and endpoint in one place.

A config is a TOML file with one table per section (``sections.py``), overridden from the command
line with ``--set section.field=value`` (commands also map their own flags onto
fields). Every field declares its type and constraint; a bad value fails at start with
one line that names the field and what is allowed (``ConfigError``), and commands turn
that into exit code 2.
"""

from __future__ import annotations

from streamssl.config.checks import (
    ENDPOINT_RE, ConfigError, endpoint, endpoints, existing_file_or_empty, in_range, non_negative, one_of, port,
    positive, stream_id, writable_dir_or_empty,
)
from streamssl.config.loading import from_dict, load, parse_override, validate
from streamssl.config.sections import (
    SECTIONS, CaptureConfig, Config, DriftConfig, EventsConfig, FeatureConfig, LearnerConfig, ModelConfig,
    ObjectiveConfig, TransportConfig,
)
from streamssl.config.sources import SOURCE_KINDS, SOURCE_SPECS, parse_source_spec, source_spec, source_spec_problem

__all__ = [
    "ENDPOINT_RE", "ConfigError", "endpoint", "endpoints", "existing_file_or_empty", "in_range", "non_negative",
    "one_of", "port", "positive", "stream_id", "writable_dir_or_empty", "from_dict", "load", "parse_override",
    "validate", "SECTIONS", "CaptureConfig", "Config", "DriftConfig", "EventsConfig", "FeatureConfig",
    "LearnerConfig", "ModelConfig", "ObjectiveConfig", "TransportConfig", "SOURCE_KINDS", "SOURCE_SPECS",
    "parse_source_spec", "source_spec", "source_spec_problem",
]

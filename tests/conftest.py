"""Fixtures for the capture-side tests. Shared helpers live in tests/support.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import support`, `import pulse`


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio with a 16 kHz mono virtual microphone (see tests/pulse.py)."""
    from pulse import PulseServer

    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    yield server
    server.close()

"""Fixtures shared across test files. Helpers shared with the daemons live in tests/support.py."""

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


@pytest.fixture
def one_torch_thread():
    """Run the test's torch work on one thread: with other processes busy on 2 cores, two
    OpenMP threads spin against each other and a small-model step takes ~50x longer."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

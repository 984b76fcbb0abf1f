"""`streamssl bench --quick` runs every measurement for real and reports every key.

Benchmarks are not tests: nothing here asserts a speed. The smoke run starts the real
learner and capture daemons and real sockets, so a broken measurement path (a daemon
that no longer starts, a key that went missing, a NaN ratio) fails here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from support import REPO

from streamssl.evaluation.benchmark import KEYS

pytestmark = pytest.mark.e2e


def test_quick_bench_writes_every_key_with_a_finite_value(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        # One torch thread: on a shared 2-core CI box two threads per process spin against each
        # other and every other process (a small-model update went from ~0.4 s to ~8 s).
        [sys.executable, "-m", "streamssl", "bench", "--quick", "--device", "cpu", "--threads", "1", "--json", str(out),
         "--config", str(REPO / "tests" / "configs" / "small.toml")],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    missing = [k for k in KEYS if k not in results]
    assert not missing, f"missing keys: {missing}"
    not_finite = {k: results[k] for k in KEYS if not (isinstance(results[k], (int, float)) and math.isfinite(results[k]))}
    assert not not_finite, f"non-finite values: {not_finite}"
    assert results["device"] == "cpu" and results["torch_version"] and results["threads"] == 1
    assert results["latency_frames_1stream"] > 0 and results["latency_frames_16streams"] > 0
    assert "learner_rtf" in proc.stdout  # the table was printed

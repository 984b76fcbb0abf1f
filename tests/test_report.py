"""Run history (metrics.jsonl) and `streamssl report`: records round-trip, plots are real images."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from streamssl.observability.history import History
from streamssl.observability.report import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_run(n: int = 120) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        loss = {k: float(v * np.exp(-i / 60) + rng.normal(0, 0.02)) for k, v in (("apc", 1.0), ("cpc", 2.5), ("moco", 5.0))}
        loss["total"] = sum(loss.values())
        out.append({
            "time": 1_700_000_000.0 + 5 * i, "step": 10 * i, "losses": loss, "rtf": 3.0 + rng.normal(0, 0.1),
            "audio_seconds": 60.0, "cka_previous": None if i % 10 else 0.95, "cka_initial": None if i % 10 else 1 - i / 300,
            "detections": ["input/page_hinkley"] if i == 70 else [],
        })
    return out


def test_history_appends_one_flushed_line_per_record_and_reads_back(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    h = History(path)
    records = synthetic_run(5)
    for i, r in enumerate(records):
        h.append(r)
        assert len(path.read_text().splitlines()) == i + 1  # flushed, readable while the run goes on
    h.append({**records[0], "cka_previous": float("nan"), "rtf": np.float32(2.5)})  # strict JSON: NaN -> null
    h.close()
    with path.open("a") as f:
        f.write('{"time": 1, "ste')  # torn last line from a crash
    back = History.read(path)
    assert back[:5] == records
    assert back[5]["cka_previous"] is None and math.isclose(back[5]["rtf"], 2.5)
    assert len(back) == 6


def test_report_command_writes_nontrivial_pngs(tmp_path):
    h = History(tmp_path / "metrics.jsonl")
    for r in synthetic_run():
        h.append(r)
    h.close()
    out = tmp_path / "plots"
    proc = subprocess.run([sys.executable, "-m", "streamssl", "report", "--checkpoint-dir", str(tmp_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["drift.png", "losses.png", "throughput.png"]
    for p in out.iterdir():
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, p
    import matplotlib.image

    img = matplotlib.image.imread(out / "losses.png")
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert np.std(img[..., :3]) > 0.05  # curves drawn, not a blank canvas


def test_report_without_history_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "streamssl", "report", "--checkpoint-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "metrics.jsonl" in proc.stderr


@pytest.mark.parametrize("records", [[]])
def test_plot_of_an_empty_history_writes_nothing(tmp_path, records):
    assert plot(records, tmp_path) == []

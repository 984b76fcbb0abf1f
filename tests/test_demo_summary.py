"""The demo's summary rows say what the daemons counted, and say why when two counts differ."""

from __future__ import annotations

import json

from streamssl.serving.demo import Progress


def progress(capture_sent: float, learner_received: float) -> Progress:
    p = Progress(learner_port=0, capture_port=0)
    p.capture = {("streamssl_capture_windows_sent_total", frozenset()): capture_sent}
    p.learner = {("streamssl_learner_windows_received_total", frozenset()): learner_received}
    return p


def test_equal_counts_read_plainly():
    assert progress(40, 40).sent_received() == "40 / 40"


def test_windows_on_the_way_are_named_as_such():
    assert progress(40, 37).sent_received() == "40 / 37 (3 in flight)"


def test_the_capture_exit_counts_replace_its_stale_scrape(tmp_path):
    """The last scrape of the capture came before it sent its final windows (the demo once
    printed 118 / 119); its exit counts are the ones the summary shows."""
    p = progress(118, 119)
    assert "older" in p.sent_received()  # never shown as if more arrived than left
    summary = tmp_path / "capture-summary.json"
    summary.write_text(json.dumps({"windows_sent": 119, "windows_dropped": {"hwm": 0, "queue_full": 2}}))
    p.read_capture_summary(summary)
    assert p.sent_received() == "119 / 119"
    assert p.sent_and_dropped() == (119, 2)


def test_a_missing_summary_keeps_the_last_scrape(tmp_path):
    p = progress(12, 10)
    p.read_capture_summary(tmp_path / "absent.json")
    assert p.sent_received() == "12 / 10 (2 in flight)"

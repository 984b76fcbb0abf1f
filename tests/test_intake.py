"""The learner's intake: every window is either queued, rejected with a reason, or shed, and counted."""

from __future__ import annotations

import numpy as np

from streamssl import wire
from streamssl.serving.intake import STALE, Intake
from streamssl.observability.metrics import LearnerMetrics
from streamssl.wire import AudioWindow


def _msg(seq: int, stream: str = "a", session: int = 1) -> list[bytes]:
    w = AudioWindow(stream, seq, 0, 16000, np.zeros((160, 1), np.int16), session=session)
    return [bytes(f) for f in wire.encode_audio(w)]


def _value(metrics: LearnerMetrics, name: str, **labels) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_gaps_are_counted_once_with_the_number_of_missing_windows():
    m = LearnerMetrics()
    intake = Intake(m, max_backlog=100)
    for seq in (0, 1, 5, 6, 9):
        assert intake.offer(_msg(seq)) is not None
    assert _value(m, "streamssl_learner_sequence_gaps_total", stream="a") == 2
    assert _value(m, "streamssl_learner_missing_windows_total", stream="a") == 3 + 2
    assert [w.seq for w in intake.take(10)] == [0, 1, 5, 6, 9]


def test_a_restarted_capture_is_a_new_session_not_a_gap_storm():
    m = LearnerMetrics()
    restarted: list[str] = []
    intake = Intake(m, max_backlog=100, on_new_session=restarted.append)
    for seq in range(50):
        intake.offer(_msg(seq, session=1))
    for seq in range(3):
        assert intake.offer(_msg(seq, session=2)) is not None
    assert _value(m, "streamssl_learner_sequence_gaps_total", stream="a") == 0
    assert _value(m, "streamssl_learner_stream_sessions_total", stream="a") == 2
    assert restarted == ["a", "a"]


def test_duplicates_and_reordered_windows_are_rejected_as_stale():
    m = LearnerMetrics()
    intake = Intake(m, max_backlog=100)
    intake.offer(_msg(0))
    intake.offer(_msg(1))
    assert intake.offer(_msg(1)) is None
    assert intake.offer(_msg(0)) is None
    assert _value(m, "streamssl_learner_messages_rejected_total", reason=STALE) == 2


def test_malformed_messages_are_counted_by_reason_and_never_queued():
    m = LearnerMetrics()
    intake = Intake(m, max_backlog=100)
    header, payload = _msg(0)
    assert intake.offer([header]) is None
    assert intake.offer([b"RIFF" + header[4:], payload]) is None
    assert intake.offer([header, payload[:-2]]) is None
    for reason in ("frame_count", "bad_magic", "size_mismatch"):
        assert _value(m, "streamssl_learner_messages_rejected_total", reason=reason) == 1
    assert _value(m, "streamssl_learner_messages_rejected_total", reason="bad_dtype") == 0  # series exists at 0
    assert not intake.backlog


def test_a_full_backlog_sheds_the_oldest_windows_and_counts_them():
    m = LearnerMetrics()
    intake = Intake(m, max_backlog=4)
    for seq in range(10):
        intake.offer(_msg(seq))
    assert [w.seq for w in intake.backlog] == [6, 7, 8, 9]
    assert _value(m, "streamssl_learner_windows_shed_total", stream="a") == 6
    assert _value(m, "streamssl_learner_backlog_windows") == 4
    received = _value(m, "streamssl_learner_windows_received_total", stream="a")
    assert received == len(intake.backlog) + _value(m, "streamssl_learner_windows_shed_total", stream="a")


def test_what_queued_during_a_step_forms_one_batch_of_at_most_the_limit():
    m = LearnerMetrics()
    intake = Intake(m, max_backlog=100)
    for seq in range(5):
        intake.offer(_msg(seq, "a"))
        intake.offer(_msg(seq, "b"))
    assert len(intake.take(8)) == 8 and len(intake.take(8)) == 2 and intake.take(8) == []

"""Ten thousand bad messages into a real learner: every one counted by its reason, none crashes it.

A real ``streamssl learn`` process (message limit lowered to 64 KiB so oversized
messages stay cheap); a PUSH socket sends, in a seeded random order, every
malformed-audio case of the wire tests (each ``Reason`` an audio message can have),
random byte strings in one to four frames and oversized messages within libzmq's
ceiling (``too_large``), 10 420 messages in all. Then messages beyond the ceiling, each
from its own connection, which libzmq cuts off: each must show as a counted disconnect.
Last, one valid window, which must come out as an embedding.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from support import REPO, free_endpoint, free_port, metric, scrape, start_streamssl, stop, wait_until
from test_wire import MALFORMED

from streamssl import wire
from streamssl.config import TransportConfig
from streamssl.transport import LIBZMQ_CEILING, make_socket

pytestmark = pytest.mark.e2e

ROUNDS = 400  # x 19 cases = 7 600 known-reason messages
RANDOM = 2_800
LIMIT = 64 * 1024
OVERSIZED = 20  # between the limit and libzmq's ceiling: rejected as too_large
BEYOND_CEILING = 3  # past LIBZMQ_CEILING x the limit: the connection is cut


def _random_messages(rng: np.random.Generator, n: int) -> list[list[bytes]]:
    out = []
    for _ in range(n):
        frames = int(rng.integers(1, 5))
        out.append([rng.bytes(int(rng.integers(0, 200))) for _ in range(frames)])
    return out


def test_every_malformed_message_is_counted_and_the_learner_keeps_serving(tmp_path):
    audio, port = free_endpoint(), free_port()
    learner = start_streamssl(
        "learn", "--config", str(REPO / "tests" / "configs" / "small.toml"), "--audio-bind", audio,
        "--embeddings-bind", free_endpoint(), "--metrics-port", str(port), "--device", "cpu",
        "--set", f"transport.max_message_bytes={LIMIT}", log_path=tmp_path / "learner.log",
    )
    try:
        wait_until(lambda: scrape(port), 60, message="learner /metrics")
        rng = np.random.default_rng(0)
        known = [(frames, reason) for frames, reason in MALFORMED.values()] * ROUNDS
        oversized = wire.encode_audio(wire.AudioWindow("big", 0, 0, 16000, np.zeros((LIMIT, 1), np.int16)))
        known += [(oversized, wire.Reason.TOO_LARGE)] * OVERSIZED
        messages = [m for m, _ in known] + _random_messages(rng, RANDOM)
        order = rng.permutation(len(messages))
        push = make_socket(zmq.Context.instance(), zmq.PUSH, TransportConfig(hwm=100_000), connect=audio)
        for i in order:
            push.send_multipart(messages[i])
        wait_until(lambda: sum(metric(scrape(port), "streamssl_learner_messages_rejected_total", reason=r.value)
                               for r in wire.Reason) == len(messages), 120, message="every fuzz message counted")
        # One sender for all of them: libzmq cuts it, it reconnects (100 ms), the next one is cut again.
        huge = [b"x" * (LIBZMQ_CEILING * LIMIT + 1)]
        cut = make_socket(zmq.Context.instance(), zmq.PUSH, TransportConfig(), connect=audio)
        for k in range(1, BEYOND_CEILING + 1):
            cut.send_multipart(huge)
            wait_until(lambda: metric(scrape(port), "streamssl_learner_audio_disconnects_total") >= k, 30,
                       message=f"the cut-off connection {k} counted")
        good = wire.AudioWindow("after-fuzz", 0, time.time_ns(), 16000, np.zeros((1600, 1), np.int16))
        push.send_multipart(wire.encode_audio(good))
        total = len(messages)
        wait_until(lambda: metric(scrape(port), "streamssl_learner_embeddings_published_total", stream="after-fuzz") == 1,
                   120, message="the valid window after the fuzz, embedded")
        s = scrape(port)
        rejected = {r: metric(s, "streamssl_learner_messages_rejected_total", reason=r)
                    for r in (x.value for x in wire.Reason)}
        print(f"\n{total} malformed messages sent; rejected by reason: { {k: int(v) for k, v in rejected.items() if v} };"
              f" {BEYOND_CEILING} beyond the ceiling -> disconnects {metric(s, 'streamssl_learner_audio_disconnects_total'):.0f}")
        assert sum(rejected.values()) == total, "every malformed message is counted exactly once"
        expected: dict[str, int] = {}
        for _, reason in known:
            expected[reason.value] = expected.get(reason.value, 0) + 1
        for reason, n in expected.items():
            assert rejected[reason] >= n, f"{reason}: {rejected[reason]} counted, {n} sent"
        assert metric(s, "streamssl_learner_embeddings_published_total", stream="after-fuzz") == 1
        assert metric(s, "streamssl_learner_audio_disconnects_total") == BEYOND_CEILING, "one cut per message, no other"
        assert learner.poll() is None
        push.close(0)
        cut.close(0)
    finally:
        assert stop(learner) == 0

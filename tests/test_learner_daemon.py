"""The learner daemon end to end: real capture processes, real sockets, real subscribers."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamssl import wire
from streamssl.config import TransportConfig
from streamssl.serving.subscriber import subscribe
from streamssl.transport import make_socket
from support import connections_to, free_endpoint, free_port, metric, scrape, start_streamssl, stop, wait_until

pytestmark = pytest.mark.e2e
SMALL = str(Path(__file__).parent / "configs" / "small.toml")


class Learner:
    """A `streamssl learn` process on free ports with the small test model."""

    def __init__(self, tmp_path: Path, *extra: str, same_as: "Learner | None" = None):
        """``same_as``: restart on that learner's endpoints and port (its captures reconnect to it)."""
        if same_as is not None:
            self.audio, self.embeddings, self.port = same_as.audio, same_as.embeddings, same_as.port
        else:
            self.audio, self.embeddings = free_endpoint(), free_endpoint()
            self.port = free_port()
        self.checkpoints = tmp_path / "checkpoints"
        self.proc = start_streamssl(
            "learn", "--config", SMALL, "--audio-bind", self.audio, "--embeddings-bind", self.embeddings,
            "--metrics-port", str(self.port), "--checkpoint-dir", str(self.checkpoints), "--device", "cpu", *extra,
            log_path=tmp_path / f"learner-{time.monotonic_ns()}.log",
        )
        wait_until(lambda: scrape(self.port), 60, message="learner /metrics")

    def value(self, name: str, **labels: str) -> float:
        return metric(scrape(self.port), name, **labels)


def start_capture(tmp_path: Path, learner: Learner, source: str, stream: str, *extra: str):
    port = free_port()
    proc = start_streamssl(
        "capture", "--source", source, "--stream-id", stream, "--connect", learner.audio,
        "--metrics-port", str(port), "--window-ms", "250", *extra,
        log_path=tmp_path / f"capture-{stream}-{time.monotonic_ns()}.log",
    )
    return proc, port


class Collector(threading.Thread):
    """Subscribes in the background and keeps every frame it receives."""

    def __init__(self, endpoint: str, streams=None):
        super().__init__(daemon=True)
        self.sub = subscribe(endpoint, streams=streams, timeout=30)
        self.frames: list[wire.EmbeddingFrame] = []
        self.done = threading.Event()

    def run(self):
        with self.sub:
            try:
                for frame in self.sub:
                    self.frames.append(frame)
                    if self.done.is_set():
                        return
            except TimeoutError:
                pass


def test_two_captures_two_subscribers_every_window_embedded_or_counted(tmp_path):
    learner = Learner(tmp_path, "--set", "learner.idle_replay=1")  # and idle time spent on replay steps
    everything, only_synth = Collector(learner.embeddings), Collector(learner.embeddings, streams=["tones"])
    everything.start()
    only_synth.start()
    jsonl, npy = tmp_path / "tones.jsonl", tmp_path / "all.npy"
    cli_subscribers = [
        start_streamssl("subscribe", learner.embeddings, "--stream", "tones", "--count", "5", "--timeout", "60",
                        "--out", str(jsonl), log_path=tmp_path / "sub-jsonl.log"),
        start_streamssl("subscribe", learner.embeddings, "--count", "6", "--timeout", "60", "--out", str(npy),
                        log_path=tmp_path / "sub-npy.log"),
    ]
    # PUB/SUB slow joiner: all four subscribers connected (the subscription follows on the same
    # connection at once) before any data flows, however long their start-up takes.
    wait_until(lambda: connections_to(learner.embeddings) >= 4, 60, message="4 subscribers connected")
    time.sleep(0.2)
    captures = [start_capture(tmp_path, learner, "speech", "voice"), start_capture(tmp_path, learner, "synth", "tones")]
    try:
        wait_until(lambda: learner.value("streamssl_learner_updates_total") >= 10, 90, message="10 updates")
        step_mid = learner.value("streamssl_learner_model_step")
        sent = {}
        for (proc, port), stream in zip(captures, ("voice", "tones")):
            s = scrape(port)
            sent[stream] = (metric(s, "streamssl_capture_windows_sent_total"),
                            metric(s, "streamssl_capture_windows_dropped_total"))
            assert stop(proc) == 0
        for stream, (n_sent, _) in sent.items():
            wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream=stream) >= n_sent,
                       30, message=f"learner received all {n_sent} windows of {stream}")
        wait_until(lambda: learner.value("streamssl_learner_backlog_windows") == 0, 60, message="backlog drained")
        time.sleep(1.0)
        s = scrape(learner.port)
        for stream, (n_sent, n_dropped) in sent.items():
            received = metric(s, "streamssl_learner_windows_received_total", stream=stream)
            embedded = metric(s, "streamssl_learner_embeddings_published_total", stream=stream)
            shed = metric(s, "streamssl_learner_windows_shed_total", stream=stream)
            missing = metric(s, "streamssl_learner_missing_windows_total", stream=stream)
            assert received >= n_sent, f"{stream}: sent {n_sent}, learner received {received}"
            assert embedded + shed == received, f"{stream}: {embedded} embedded + {shed} shed != {received} received"
            assert missing <= n_dropped + (received - n_sent), f"{stream}: {missing} missing, capture dropped {n_dropped}"
            print(f"{stream}: sent {n_sent:.0f}, dropped at capture {n_dropped:.0f}, received {received:.0f}, "
                  f"embedded {embedded:.0f}, shed {shed:.0f}")
        assert metric(s, "streamssl_learner_model_step") > step_mid > 0
        # Input over, backlog drained: the training thread spends its allowance on replay-only
        # steps, at most one per window learned (the received ones, less any left untrained).
        wait_until(lambda: learner.value("streamssl_learner_replay_updates_total") >= 1, 60, message="a replay step")
        s = scrape(learner.port)
        replayed, updates = metric(s, "streamssl_learner_replay_updates_total"), metric(s, "streamssl_learner_updates_total")
        assert replayed <= sum(metric(s, "streamssl_learner_windows_received_total", stream=k) for k in sent)
        assert updates > replayed, "replay steps are counted among the updates"
        assert [p.wait(timeout=60) for p in cli_subscribers] == [0, 0]
    finally:
        for proc, _ in captures:
            stop(proc)
        everything.done.set()
        only_synth.done.set()
        assert stop(learner.proc) == 0

    streams = {f.stream_id for f in everything.frames}
    assert streams == {"voice", "tones"}
    assert only_synth.frames and {f.stream_id for f in only_synth.frames} == {"tones"}
    for stream in streams:
        seqs = [f.seq for f in everything.frames if f.stream_id == stream]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"{stream} embeddings out of seq order"
    steps = [f.model_step for f in everything.frames]
    assert steps[-1] > steps[0]
    dims = {f.dim for f in everything.frames}
    assert len(dims) == 1 and all(np.isfinite(f.embedding).all() for f in everything.frames)

    (dim,) = dims
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 5 and {r["stream_id"] for r in records} == {"tones"}
    for r in records:
        assert {"stream_id", "seq", "capture_ns", "model_step", "embedding"} <= set(r)
        assert len(r["embedding"]) == dim
    assert np.load(npy).shape == (6, dim)


def test_survives_malformed_burst_and_a_restarted_capture(tmp_path):
    learner = Learner(tmp_path)
    ctx = zmq.Context.instance()
    push = make_socket(ctx, zmq.PUSH, TransportConfig(), connect=learner.audio)
    good = wire.encode_audio(wire.AudioWindow("probe", 0, time.time_ns(), 16000, np.zeros((1600, 1), np.int16)))
    header, payload = bytes(good[0]), bytes(good[1])
    nan_header = bytes(wire.encode_audio(wire.AudioWindow("probe", 0, 0, 16000, np.zeros((800, 1), np.float32)))[0])
    burst = [[b"garbage"], [b"RIFF" + header[4:], payload], [header, payload[:-2]], [header[:50], payload],
             [nan_header, np.full(800, np.nan, np.float32).tobytes()]]
    for _ in range(40):
        for msg in burst:
            push.send_multipart(msg)
    push.send_multipart([header, payload])
    wait_until(lambda: learner.value("streamssl_learner_messages_rejected_total") >= 200, 30, message="200 rejections")
    s = scrape(learner.port)
    for reason in ("frame_count", "bad_magic", "size_mismatch", "short_header", "non_finite"):
        assert metric(s, "streamssl_learner_messages_rejected_total", reason=reason) >= 40, reason
    wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream="probe") == 1, 30)
    push.close(0)

    first, _ = start_capture(tmp_path, learner, "synth", "mic")
    wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream="mic") >= 8, 60)
    assert stop(first) == 0
    second, _ = start_capture(tmp_path, learner, "synth", "mic")  # seq restarts at 0 in a new session
    before = learner.value("streamssl_learner_windows_received_total", stream="mic")
    wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream="mic") >= before + 8, 60)
    assert stop(second) == 0
    s = scrape(learner.port)
    assert metric(s, "streamssl_learner_stream_sessions_total", stream="mic") == 2
    assert metric(s, "streamssl_learner_sequence_gaps_total", stream="mic") == 0
    assert metric(s, "streamssl_learner_messages_rejected_total", reason="stale_seq") == 0
    assert learner.proc.poll() is None, "learner died on bad input"
    assert stop(learner.proc) == 0


def test_sigterm_checkpoints_and_a_restart_continues_the_model_step(tmp_path):
    learner = Learner(tmp_path)
    capture, _ = start_capture(tmp_path, learner, "synth", "tones", "--no-realtime")
    wait_until(lambda: learner.value("streamssl_learner_updates_total") >= 5, 90, message="5 updates")
    assert stop(capture) == 0
    time.sleep(0.5)
    step_before = learner.value("streamssl_learner_model_step")
    assert stop(learner.proc, signal.SIGTERM, timeout=60) == 0
    assert list(learner.checkpoints.glob("*.pt")), "no checkpoint written on SIGTERM"

    again = Learner(tmp_path)
    try:
        resumed = again.value("streamssl_learner_model_step")  # the learner drained its backlog before stopping
        assert resumed >= step_before > 0
        assert again.value("streamssl_learner_last_checkpoint_timestamp_seconds") > 0
        capture, _ = start_capture(tmp_path, again, "synth", "tones", "--no-realtime")
        wait_until(lambda: again.value("streamssl_learner_model_step") > resumed, 90, message="step continues")
        assert stop(capture) == 0
    finally:
        assert stop(again.proc) == 0


def test_demo_runs_prints_summary_and_writes_plot_and_checkpoint(tmp_path):
    out = tmp_path / "demo"
    proc = start_streamssl(
        "demo", "--seconds", "8", "--out", str(out), "--no-live", "--config", SMALL,
        log_path=tmp_path / "demo.log",
    )
    rc = proc.wait(timeout=240)
    log = Path(proc.log_path).read_text()
    assert rc == 0, log[-3000:]
    assert "streamssl demo summary" in log and "embedding latency p50 / p99" in log
    assert "loss apc" in log and "loss total" in log  # objective rows, named from the scraped labels
    # The counts agree: the capture's exit counts against what the learner received.
    summary = log[log.index("streamssl demo summary"):]
    sent, received = map(int, re.search(r"windows sent / received\W+(\d+) / (\d+)", summary).groups())
    final = json.loads((out / "capture-summary.json").read_text())
    assert sent == final["windows_sent"] > 0 and sum(final["windows_dropped"].values()) == 0
    assert received == sent, f"nothing dropped on loopback, yet sent {sent} / received {received}"
    assert list((out / "checkpoints").glob("*.pt"))
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)


def test_overload_serves_every_window_it_can_and_learns_from_a_sample(tmp_path):
    """A capture that floods (no real-time pacing) 30 s of tones in 250 ms windows: the learner
    embeds and publishes every window it keeps (received = embedded + shed), learns from at most
    batch_max = 4 of each backlog, and counts the windows it served without learning from them."""
    learner = Learner(tmp_path, "--set", "learner.batch_max=4", "--set", "learner.max_backlog=64")
    proc, _ = start_capture(tmp_path, learner, "synth", "flood", "--set", "capture.realtime=false",
                            "--set", "capture.max_seconds=30")
    try:
        assert proc.wait(timeout=120) == 0
        wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream="flood") >= 120, 60,
                   message="all 120 windows received")
        wait_until(lambda: learner.value("streamssl_learner_backlog_windows") == 0, 120, message="backlog drained")

        def learned_at_most_batch_max_per_step():
            # Windows still waiting in the training thread are neither learned nor untrained yet,
            # so this becomes true once the thread has caught up (however slow the machine), and
            # never if a step learned from more than batch_max windows.
            s = scrape(learner.port)
            embedded = metric(s, "streamssl_learner_embeddings_published_total", stream="flood")
            untrained = metric(s, "streamssl_learner_windows_untrained_total", stream="flood")
            return embedded - untrained <= 4 * metric(s, "streamssl_learner_updates_total")

        wait_until(learned_at_most_batch_max_per_step, 120, message="each step learned from at most batch_max windows")
        s = scrape(learner.port)
        received = metric(s, "streamssl_learner_windows_received_total", stream="flood")
        embedded = metric(s, "streamssl_learner_embeddings_published_total", stream="flood")
        shed = metric(s, "streamssl_learner_windows_shed_total", stream="flood")
        untrained = metric(s, "streamssl_learner_windows_untrained_total", stream="flood")
        steps = metric(s, "streamssl_learner_updates_total")
        print(f"\nflood: received {received:.0f}, embedded {embedded:.0f}, shed {shed:.0f}, "
              f"served but not learned {untrained:.0f}, steps {steps:.0f}")
        assert embedded + shed == received
        assert untrained > 0 and embedded - untrained <= 4 * steps, "each step learned from at most batch_max windows"
        assert embedded > 4 * steps, "serving did not wait for training: more windows embedded than learned from"
    finally:
        stop(proc)
        assert stop(learner.proc) == 0


def test_learn_every_window_makes_a_flooding_capture_wait_and_learns_all_of_it(tmp_path):
    """Catching up on recorded audio (``learner.learn_every_window``): the same flood as above,
    but the learner receives only what its training thread has room for, so the lossless
    capture waits: nothing shed, nothing left untrained, every window in a step."""
    learner = Learner(tmp_path, "--set", "learner.batch_max=4", "--set", "learner.max_backlog=64",
                      "--set", "learner.learn_every_window=true")
    proc, _ = start_capture(tmp_path, learner, "synth", "catchup", "--set", "capture.realtime=false",
                            "--set", "capture.max_seconds=30")
    try:
        assert proc.wait(timeout=180) == 0
        wait_until(lambda: learner.value("streamssl_learner_windows_received_total", stream="catchup") >= 120, 60,
                   message="all 120 windows received")
        # At most 4 windows a step and none left out: 120 windows take at least 30 steps.
        wait_until(lambda: learner.value("streamssl_learner_updates_total") >= 120 / 4, 60, message="all learned")
        s = scrape(learner.port)
        assert metric(s, "streamssl_learner_windows_shed_total", stream="catchup") == 0
        assert metric(s, "streamssl_learner_windows_untrained_total", stream="catchup") == 0
        assert metric(s, "streamssl_learner_embeddings_published_total", stream="catchup") == 120
    finally:
        stop(proc)
        assert stop(learner.proc) == 0

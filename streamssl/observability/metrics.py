"""Every Prometheus metric the daemons export, defined once.

Dashboards, alert rules and tests refer to these names; keeping them in one module
makes the list reviewable. Each daemon gets its own ``CollectorRegistry`` (no global
state, no multiprocess mode) and serves it on its own ``/metrics`` port.
Names follow node_exporter: ``streamssl_<thing>_<unit>``; prometheus-client appends
``_total`` to counters itself.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.metrics_core import Metric

# Latency of live audio is tens of ms to seconds, not web-request sized.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class RankLabelled:
    """``registry`` with ``rank="r"`` added to every sample: each rank of a learner group serves
    its own ``/metrics`` (port + rank), and dashboards split or sum by that label."""

    def __init__(self, registry: CollectorRegistry, rank: int):
        self.registry = registry
        self.rank = str(rank)

    def collect(self):
        for family in self.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                out.add_sample(s.name, {**s.labels, "rank": self.rank}, s.value, s.timestamp, s.exemplar)
            yield out


def serve(registry: CollectorRegistry, host: str, port: int):
    """Serve ``registry`` on http://host:port/metrics; port 0 disables. Returns (server, thread) or None."""
    if port == 0:
        return None
    return start_http_server(port, addr=host, registry=registry)


class CaptureMetrics:
    """What a capture daemon exports: is audio leaving, and is any being lost."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.windows_sent = Counter(
            "streamssl_capture_windows_sent", "Audio windows handed to the socket", ["stream"], registry=r
        )
        self.bytes_sent = Counter(
            "streamssl_capture_sent_bytes", "Payload and header bytes handed to the socket", ["stream"], registry=r
        )
        self.audio_seconds = Counter(
            "streamssl_capture_audio_seconds", "Seconds of audio read from the source", ["stream"], registry=r
        )
        self.overflows = Counter(
            "streamssl_capture_input_overflows", "Input overflows reported by the audio device", ["stream"], registry=r
        )
        self.dropped = Counter(
            "streamssl_capture_windows_dropped",
            "Windows lost before reaching the socket (queue_full: source outran the sender; "
            "hwm: learner absent or slow)",
            ["stream", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "streamssl_capture_queue_windows", "Windows waiting between source and socket", ["stream"], registry=r
        )
        self.source_errors = Counter(
            "streamssl_capture_source_errors", "Source failures (the daemon retries or ends)", ["stream"], registry=r
        )
        self.up = Gauge("streamssl_capture_up", "1 while the source is producing audio", ["stream"], registry=r)
        self.source_gap_seconds = Counter(
            "streamssl_capture_source_gap_seconds",
            "Wall time a live source was away: from its last audio before a failure to its first after reopening",
            ["stream"],
            registry=r,
        )
        self.info = Info("streamssl_capture", "Capture daemon build and source", registry=r)


class LearnerMetrics:
    """What the learner daemon exports: input, learning, latency, health and drift."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        # input
        self.windows_received = Counter(
            "streamssl_learner_windows_received", "Valid audio windows received", ["stream"], registry=r
        )
        self.audio_seconds = Counter(
            "streamssl_learner_audio_seconds", "Seconds of audio received", ["stream"], registry=r
        )
        self.rejected = Counter(
            "streamssl_learner_messages_rejected", "Malformed messages rejected, by reason", ["reason"], registry=r
        )
        self.disconnects = Counter(
            "streamssl_learner_audio_disconnects",
            "Audio connections closed: a capture that stopped, a dead peer, or a sender libzmq cut off for a message"
            " beyond the size ceiling (transport.max_message_bytes x 4)", registry=r,
        )
        self.seq_gaps = Counter(
            "streamssl_learner_sequence_gaps", "Gaps in a stream's seq (each gap once)", ["stream"], registry=r
        )
        self.missing_windows = Counter(
            "streamssl_learner_missing_windows", "Windows missing inside seq gaps", ["stream"], registry=r
        )
        self.sessions = Counter(
            "streamssl_learner_stream_sessions", "Capture sessions seen (restarts start a new one)", ["stream"],
            registry=r,
        )
        self.shed = Counter(
            "streamssl_learner_windows_shed", "Windows shed oldest-first because the backlog was full", ["stream"],
            registry=r,
        )
        self.untrained = Counter(
            "streamssl_learner_windows_untrained",
            "Windows embedded and published but not learned from: under overload a step learns from a sample of the backlog",
            ["stream"], registry=r,
        )
        self.backlog = Gauge("streamssl_learner_backlog_windows", "Windows waiting for the learner", registry=r)
        self.active_streams = Gauge(
            "streamssl_learner_active_streams", "Streams whose state the learner holds (at most learner.max_streams)",
            registry=r,
        )
        self.streams_evicted = Counter(
            "streamssl_learner_streams_evicted",
            "Streams whose state was dropped: capacity (least recently active, to make room) or idle", ["reason"],
            registry=r,
        )
        # learning
        # "step" in code, "updates" in the metric names (kept for dashboards and alerts)
        self.steps = Counter("streamssl_learner_updates", "Optimizer steps taken", registry=r)
        self.replay_steps = Counter(
            "streamssl_learner_replay_updates",
            "Optimizer steps on replayed examples alone, taken while no window waited (learner.idle_replay); "
            "also counted in streamssl_learner_updates_total", registry=r)
        self.nonfinite = Counter(
            "streamssl_learner_nonfinite_steps", "Steps skipped because the loss was NaN or Inf", registry=r
        )
        self.loss = Gauge("streamssl_learner_loss", "Last loss value per objective", ["objective"], registry=r)
        self.model_step = Gauge("streamssl_learner_model_step", "Optimizer step of the published model", registry=r)
        self.step_seconds = Histogram(
            "streamssl_learner_update_duration_seconds", "Wall time of one optimizer step", buckets=STEP_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamssl_learner_batch_windows", "Windows per optimizer step (new + replay)", buckets=BATCH_BUCKETS, registry=r
        )
        self.rtf = Gauge(
            "streamssl_learner_realtime_factor",
            "Audio seconds processed per second spent processing (embed + update), last minute; < 1 cannot keep up",
            registry=r,
        )
        self.queue_fill = Gauge("streamssl_learner_moco_queue_fill_ratio", "MoCo key queue fill, 0..1", registry=r)
        self.lr = Gauge("streamssl_learner_learning_rate", "Current learning rate", registry=r)
        self.grad_norm = Gauge("streamssl_learner_grad_norm", "Gradient norm before clipping", registry=r)
        # output
        self.embeddings_published = Counter(
            "streamssl_learner_embeddings_published", "Embedding frames published", ["stream"], registry=r
        )
        self.latency = Histogram(
            "streamssl_learner_embedding_latency_seconds",
            "Capture time of a window's last sample to its embedding being published", buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # health
        self.checkpoint_timestamp = Gauge(
            "streamssl_learner_last_checkpoint_timestamp_seconds", "Unix time of the last good checkpoint",
            registry=r,
        )
        self.checkpoint_errors = Counter(
            "streamssl_learner_checkpoint_errors", "Checkpoint writes that failed (previous one kept)", registry=r
        )
        self.embedding_spread = Gauge(
            "streamssl_learner_embedding_spread",
            "Mean per-dimension std of L2-normalised recent embeddings (near 0 = collapse)", registry=r,
        )
        self.embedding_effective_rank = Gauge(
            "streamssl_learner_embedding_effective_rank",
            "RankMe effective rank of recent embeddings: directions their variance uses (near 1 = collapse)",
            registry=r,
        )
        self.memory = Gauge("streamssl_learner_memory_bytes", "Resident memory of the process", registry=r)
        self.device_memory = Gauge(
            "streamssl_learner_device_memory_bytes", "Accelerator memory allocated (0 on CPU)", registry=r
        )
        # drift
        self.cka = Gauge(
            "streamssl_learner_probe_cka",
            "Linear CKA of probe-set embeddings against a reference (1 = same geometry)", ["reference"],
            registry=r,
        )
        self.drift_detections = Counter(
            "streamssl_learner_drift_detections", "Drift detections by signal and detector", ["signal", "detector"],
            registry=r,
        )
        self.drift_signal = Gauge(
            "streamssl_learner_drift_signal", "Last value fed to the drift detectors", ["signal"], registry=r
        )
        self.info = Info("streamssl_learner", "Learner build, model and device", registry=r)

    def forget_stream(self, stream_id: str) -> None:
        """Drop an evicted stream's labelled series, so label cardinality stays bounded like the state."""
        for family in (self.windows_received, self.audio_seconds, self.seq_gaps, self.missing_windows,
                       self.sessions, self.shed, self.untrained, self.embeddings_published):
            try:
                family.remove(stream_id)
            except KeyError:
                pass

    def observe_process_memory(self) -> None:
        """Resident set size from /proc (Linux); no psutil needed."""
        try:
            with open(f"/proc/{os.getpid()}/statm") as f:
                rss_pages = int(f.read().split()[1])
            self.memory.set(rss_pages * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, IndexError):
            pass


class EventsMetrics:
    """What ``streamssl events`` exports: how many kinds of sound, how often a new one, novelty by stream."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.windows = Counter("streamssl_events_windows", "Embeddings clustered", ["stream"], registry=r)
        self.novel = Counter(
            "streamssl_events_novel", "Novelty events: runs of windows far from every established cluster", ["stream"],
            registry=r,
        )
        self.new_clusters = Counter(
            "streamssl_events_new_clusters", "Clusters that became established (a new kind of sound)", registry=r
        )
        self.clusters_alive = Gauge("streamssl_events_clusters_alive", "Established clusters held now", registry=r)
        self.resets = Counter(
            "streamssl_events_resets", "Times the clusterer started over (embeddings of another model)", registry=r
        )
        self.rejected = Counter(
            "streamssl_events_messages_rejected", "Malformed embedding messages skipped", registry=r
        )
        self.gaps = Counter(
            "streamssl_events_gap_windows", "Windows missing between consecutive embeddings of a stream session",
            registry=r,
        )
        self.checkpoint_errors = Counter(
            "streamssl_events_checkpoint_errors", "Clusterer checkpoints that could not be written", registry=r
        )
        self.write_errors = Counter(
            "streamssl_events_write_errors", "Event lines that could not be written to stdout or --out", registry=r
        )
        self.model_step = Gauge("streamssl_events_model_step", "Model step of the last embedding clustered", registry=r)

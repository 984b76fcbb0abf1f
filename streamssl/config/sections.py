"""The config's sections: one dataclass each, every field with its type, default, check and doc."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from streamssl.config.checks import (
    _f, endpoint, endpoints, existing_file_or_empty, in_range, non_negative, one_of, port, positive, stream_id,
    writable_dir_or_empty,
)
from streamssl.config.sources import source_spec
from streamssl.wire import MAX_CHANNELS



@dataclass
class TransportConfig:
    """ZeroMQ socket options shared by every daemon."""

    hwm: int = _f(1000, check=positive, doc="send/receive high-water mark, in messages")
    linger_ms: int = _f(200, check=non_negative, doc="how long close() waits for unsent messages")
    max_message_bytes: int = _f(16 * 1024 * 1024, check=positive, doc="larger messages are rejected and counted (too_large); beyond 4x this libzmq drops the sender's connection")
    heartbeat_ms: int = _f(2000, check=non_negative, doc="dead-peer check interval: ZMTP heartbeats on PUB/SUB, TCP keepalive on PUSH/PULL (0 = off)")
    reconnect_max_ms: int = _f(2000, check=non_negative, doc="cap on reconnect back-off")
    curve_secret_key: str = _f("", check=existing_file_or_empty, doc="own secret certificate (streamssl keys)")
    curve_server_key: str = _f("", check=existing_file_or_empty, doc="server public certificate (clients)")
    curve_authorized_dir: str = _f("", doc="directory of client public certificates a server accepts")
    allow_insecure_bind: bool = _f(False, doc="permit binding beyond loopback without CURVE")


@dataclass
class CaptureConfig:
    """The capture daemon: where audio comes from and where it goes."""

    source: str = _f("speech", check=source_spec, doc="mic[:DEVICE] | file:PATH | ffmpeg:URL | stdin | speech[:turns|sentences] | synth | scenes[:NOVEL_AFTER_S]")
    stream_id: str = _f("default", check=stream_id)
    connect: str = _f("tcp://127.0.0.1:5555", check=endpoints, doc="learner audio endpoint; several, comma-separated (a learner group's ranks): the stream goes to one, chosen by a stable hash of its id")
    sample_rate: int = _f(16000, check=in_range(8000, 192000))
    channels: int = _f(1, check=in_range(1, MAX_CHANNELS))
    window_ms: int = _f(500, check=in_range(10, 10000))
    dtype: str = _f("int16", check=one_of("int16", "float32"))
    queue_windows: int = _f(64, check=positive, doc="bound of the queue between source and socket")
    realtime: bool = _f(True, doc="pace file/synth/speech sources at real time")
    loop: bool = _f(False, doc="loop file sources")
    seed: int = _f(0, doc="seed for the speech/synth/scenes generators")
    metrics_port: int = _f(9109, check=port)
    metrics_host: str = _f("127.0.0.1")
    max_seconds: float = _f(0.0, check=non_negative, doc="stop after this much audio (0 = run forever)")


@dataclass
class FeatureConfig:
    """Log-mel front end."""

    sample_rate: int = _f(16000, check=in_range(8000, 48000))
    n_mels: int = _f(64, check=in_range(16, 128))
    win_ms: float = _f(25.0, check=positive)
    hop_ms: float = _f(10.0, check=positive)
    f_min: float = _f(0.0, check=non_negative)
    f_max: float = _f(8000.0, check=positive)
    norm_momentum: float = _f(0.01, check=in_range(0.0, 1.0), doc="EMA rate of per-bin running statistics")


@dataclass
class ModelConfig:
    """Encoder f (causal convs) and context g (GRU or causal transformer)."""

    encoder_channels: int = _f(256, check=positive)
    encoder_layers: int = _f(3, check=in_range(1, 16))
    kernel_size: int = _f(3, check=in_range(1, 15))
    context: str = _f("gru", check=one_of("gru", "mingru", "transformer"),
                      doc="gru: step by step; mingru: parallel scan in training, one vector per layer streaming; transformer: bounded window")
    context_dim: int = _f(256, check=positive)
    context_layers: int = _f(1, check=in_range(1, 12))
    transformer_heads: int = _f(4, check=positive)
    transformer_window: int = _f(100, check=in_range(1, 10000), doc="frames each transformer layer looks back")
    projection_dim: int = _f(128, check=positive)


@dataclass
class ObjectiveConfig:
    """Loss weights and hyper-parameters; a weight of 0 switches an objective off."""

    apc_weight: float = _f(1.0, check=non_negative)
    apc_shift: int = _f(3, check=in_range(1, 100))
    cpc_weight: float = _f(1.0, check=non_negative)
    cpc_steps: int = _f(12, check=in_range(1, 100))
    cpc_negatives: int = _f(16, check=positive)
    moco_weight: float = _f(1.0, check=non_negative)
    decorrelation_weight: float = _f(0.3, check=non_negative,
                                     doc="VICReg's variance and covariance terms on the z and c frames (keeps the readout's directions alive)")
    moco_momentum: float = _f(0.99, check=in_range(0.0, 1.0))
    moco_queue: int = _f(4096, check=positive)
    moco_temperature: float = _f(0.2, check=positive)
    moco_exclude_recent_s: float = _f(5.0, check=non_negative, doc="same-stream keys this recent are not negatives")
    moco_horizon_s: float = _f(0.0, check=non_negative,
                               doc="same-stream keys of the query's segment this recent are positives too (speaker continuity; 0 = off); at most moco_exclude_recent_s")
    moco_crop_fraction: float = _f(0.8, check=in_range(0.1, 1.0), doc="length of each view, as a fraction of learner.window_s")
    augment: str = _f("channel", check=one_of("channel", "mild"),
                      doc="channel: own gain, band limit, tilt, coloured noise and log-mixup per view; mild: gain + white noise")
    mixup_ratio: float = _f(0.4, check=in_range(0.0, 0.9), doc="largest background share of log-mixup-exp (channel views)")
    apc_target: str = _f("clean", check=one_of("clean", "input"),
                         doc="clean: APC predicts the un-augmented frames, per-example level removed; input: its own augmented input")
    cpc_negatives_from: str = _f("batch", check=one_of("sequence", "batch"),
                                 doc="batch: any frame of the batch (other speakers too); sequence: other times of the same example")
    cpc_target: str = _f("clean", check=one_of("clean", "view"),
                         doc="clean: CPC's targets z come from the un-augmented frames (no gradient); view: from the query view itself")
    moco_positive: str = _f("adjacent", check=one_of("adjacent", "crop"),
                            doc="adjacent: the window's crop and the non-overlapping audio just before it; crop: two crops of one window")


@dataclass
class LearnerConfig:
    """The learner daemon and its online update policy."""

    audio_bind: str = _f("tcp://127.0.0.1:5555", check=endpoint)
    embeddings_bind: str = _f("tcp://127.0.0.1:5556", check=endpoint)
    metrics_port: int = _f(9108, check=port)
    metrics_host: str = _f("127.0.0.1")
    device: str = _f("auto", check=one_of("auto", "cpu", "cuda"))
    threads: int = _f(0, check=non_negative, doc="torch CPU threads (0 = torch's default, all cores); 1 where other busy processes share few cores")
    window_s: float = _f(1.0, check=positive, doc="length of the windows the model trains on")
    batch_max: int = _f(32, check=positive,
                        doc="most new windows one step learns from; a larger backlog is served in full and learned from a sample")
    max_backlog: int = _f(256, check=positive,
                          doc="queued windows beyond this are shed oldest-first, never embedded (windows_shed)")
    max_streams: int = _f(256, check=positive,
                          doc="streams whose state is held (~60 KB each at the default model, +115 KB of training history once learned from); a new one beyond it evicts the least recently active")
    stream_idle_s: float = _f(600.0, check=non_negative, doc="a stream silent this long is evicted (0 = never)")
    learn_every_window: bool = _f(False, doc="catching up on recorded audio: receive only while the training thread has room (batch_max windows), so a capture with --no-realtime waits and every window is learned, none shed or left untrained; live streams keep false")
    serve_while_learning: bool = _f(True, doc="embed on the receiving thread from a copy of the weights while a training thread steps; false = embed, then step, on one thread")
    replay_size: int = _f(512, check=non_negative)
    replay_policy: str = _f("fifo", check=one_of("fifo", "reservoir", "diverse"),
                            doc="diverse: when full, evict the example most similar (MoCo key) to another one")
    replay_per_step: int = _f(8, check=non_negative)
    idle_replay: float = _f(0.0, check=non_negative,
                            doc="replay-only steps the training thread may take per window learned, while no window waits: "
                                "1 learns the first minutes as fast as twice the audio would, for up to twice the compute "
                                "(bench/RESULTS.md, 'Steps, not audio'); 0 = none; off in a learner group and with "
                                "serve_while_learning = false")
    optimizer: str = _f("adamw", check=one_of("adamw", "rmsprop"))
    lr: float = _f(1e-3, check=positive)
    weight_decay: float = _f(0.01, check=non_negative)
    grad_clip: float = _f(1.0, check=positive)
    seed: int = _f(0)
    per_frame_embeddings: bool = _f(False)
    checkpoint_dir: str = _f("", check=writable_dir_or_empty, doc="empty = no checkpoints")
    checkpoint_interval_s: float = _f(300.0, check=positive)
    checkpoint_keep: int = _f(3, check=positive)


@dataclass
class DriftConfig:
    """Representation drift and collapse monitoring."""

    probe_size: int = _f(64, check=non_negative)
    check_every: int = _f(50, check=positive, doc="optimizer steps between probe re-embeddings")
    warmup: int = _f(60, check=in_range(2, 100000), doc="observations per signal and per stream feeding it that fix its scale before detectors run")
    adwin_delta: float = _f(0.002, check=in_range(1e-9, 1.0), doc="ADWIN confidence (smaller = fewer alarms, later)")
    adwin_clock: int = _f(4, check=in_range(1, 1024), doc="ADWIN tests for a cut every this many observations")
    ph_delta: float = _f(0.75, check=non_negative, doc="Page-Hinkley tolerance, in warm-up standard deviations")
    ph_threshold: float = _f(10.0, check=positive, doc="Page-Hinkley alarm level, in warm-up standard deviations (embedding and loss)")
    input_ph_threshold: float = _f(20.0, check=positive, doc="Page-Hinkley alarm level of the per-stream input statistics: speech alternates talk and pause, and a run of pauses moved their sum up to 10.1 in 8 stream-hours of stationary speech")
    centroid_fading: float = _f(0.02, check=in_range(1e-6, 1.0), doc="EW rate of the running embedding centroid")
    spread_window: int = _f(256, check=in_range(2, 100000), doc="recent embeddings the spread and effective-rank (collapse) gauges cover")
    rank_every: int = _f(8, check=positive, doc="embedding batches between effective-rank recomputations (one SVD of spread_window x dim)")


@dataclass
class EventsConfig:
    """``streamssl events``: online sound-event discovery on the embedding stream."""

    smoothing: float = _f(1.0, check=in_range(0.01, 1.0), doc="weight of the newest window in each stream's running embedding (1 = no smoothing): a sound lasts longer than a window")
    components: int = _f(8, check=in_range(1, 256), doc="principal components of the standardised embeddings the clusters live in")
    scale_halflife: float = _f(600.0, check=positive, doc="windows over which the standardisation and the components forget (they follow the model as it trains)")
    basis_every: int = _f(60, check=in_range(2, 100000), doc="windows between re-computations of the components (each aligned to the previous ones)")
    radius: float = _f(0.8, check=positive, doc="a window farther than this from every cluster centre opens a new cluster (unit: the RMS norm of a point)")
    fading: float = _f(0.001, check=in_range(1e-7, 1.0), doc="a cluster's weight decays by this fraction per window; below 0.5 (half a window's weight) it is forgotten")
    min_weight: float = _f(4.0, check=positive, doc="weight a cluster needs to be established: only established clusters make a window familiar")
    max_clusters: int = _f(256, check=in_range(2, 100000), doc="clusters kept at most (the lightest is forgotten first)")
    residual_limit: float = _f(3.0, check=positive, doc="a window whose energy off the components exceeds this many times the typical (RMS) is far, wherever it projects")
    warmup_windows: int = _f(240, check=non_negative, doc="windows clustered (all streams together) before anything can be called novel: 240 = 2 minutes of one stream of 500-ms windows")
    novelty_windows: int = _f(3, check=in_range(1, 1000), doc="consecutive windows of a stream far from every established cluster that make a novelty event")
    checkpoint_interval_s: float = _f(60.0, check=positive, doc="seconds between checkpoints of the clusterer (with --checkpoint-dir)")


SECTIONS: dict[str, type] = {
    "transport": TransportConfig,
    "capture": CaptureConfig,
    "features": FeatureConfig,
    "model": ModelConfig,
    "objectives": ObjectiveConfig,
    "learner": LearnerConfig,
    "drift": DriftConfig,
    "events": EventsConfig,
}


@dataclass
class Config:
    transport: TransportConfig = field(default_factory=TransportConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    events: EventsConfig = field(default_factory=EventsConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

"""The wire format: the one contract between capture, learner and subscribers.

Every message is a multipart ``[header, payload]`` (audio, embeddings, sound events). The header is a fixed 96-byte
little-endian struct so that any language can read it without a schema compiler; the
payload is raw samples (int16 or float32 PCM) or float32 embedding rows, decoded
zero-copy with ``np.frombuffer``. Embeddings on PUB carry a leading topic frame (see
``topic_for``) so that SUB prefix filtering can select one stream exactly.

Nothing here pickles or parses JSON: decoding is a ``struct.unpack`` and a view.
Every way a message can be wrong raises ``WireError`` with a ``Reason`` that daemons
use as a metric label.

The rules every side must agree on live here too, each once: ``window_frames`` (how
many frames a window of ``window_ms`` holds), the PCM scale (``to_pcm16`` /
``pcm16_to_float``) and the stream id limit (``stream_id_problem``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

MAGIC = b"SSLW"
VERSION = 1

# magic, version, kind, dtype, channels, stream_id, session, seq, capture_ns, sent_ns,
# sample_rate, frames, model_step, dim, flags
_HEADER = struct.Struct("<4sBBBB32sQQqqIIQII")
HEADER_SIZE = _HEADER.size  # 96
assert HEADER_SIZE == 96

STREAM_ID_MAX_BYTES = 32  # the header's stream_id field; config.capture.stream_id is checked against it
MIN_RATE, MAX_RATE = 1_000, 384_000
MAX_CHANNELS = 32
MAX_EMBEDDING_DIM = 65_536
# Float PCM is nominally in [-1, 1]; allow generous headroom, but squaring anything far
# larger overflows float32 in the front end's power spectrum and would poison the model.
MAX_FLOAT_AMPLITUDE = 1_000.0

# Window flags set by capture.
FLAG_INPUT_OVERFLOW = 1 << 0  # the audio device reported an overflow inside this window
FLAG_AFTER_DROP = 1 << 1  # windows were dropped locally just before this one

# Event flags set by `streamssl events`.
FLAG_NOVEL = 1 << 0  # the window completes a novelty run (a sound not heard before)
FLAG_ESTABLISHED = 1 << 1  # the window made its cluster established (a new kind of sound)

_EVENT_PAYLOAD = struct.Struct("<qd")  # cluster (i64, -1 = none yet), distance to its centre (f64)


# --- the rules shared by every side ---------------------------------------------

# PCM convention: float32 full scale [-1, 1) <-> int16 by a factor of 2**15 = 32768 (as
# libsndfile/soundfile read int16), so int16 -32768 maps to exactly -1.0 and float +1.0
# clips to +32767. Every int16<->float conversion in the package goes through these two.
PCM16_SCALE = 32768.0


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """float samples (nominally [-1, 1]) -> int16: scaled by 32768, rounded, clipped."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * PCM16_SCALE), -32768, 32767).astype(np.int16)


def pcm16_to_float(x: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1): divided by 32768 (the inverse of ``to_pcm16``)."""
    return np.asarray(x).astype(np.float32) * np.float32(1.0 / PCM16_SCALE)


def window_frames(sample_rate: int, window_ms: int) -> int:
    """Frames per window: ``sample_rate * window_ms // 1000``, at least 1.

    Integer arithmetic, so capture, the offline embedder and the benchmarks cut the same
    windows (16 kHz x 500 ms = 8000 frames).
    """
    return max(1, int(sample_rate) * int(window_ms) // 1000)


def stream_id_problem(stream_id: str) -> str | None:
    """Why ``stream_id`` cannot go in a header, or None: 1..32 UTF-8 bytes without NUL."""
    raw = stream_id.encode("utf-8")
    if not raw or len(raw) > STREAM_ID_MAX_BYTES or b"\x00" in raw:
        return f"must be 1..{STREAM_ID_MAX_BYTES} UTF-8 bytes without NUL"
    return None


class Kind(enum.IntEnum):
    AUDIO = 1
    EMBEDDING = 2
    EVENT = 3


class Dtype(enum.IntEnum):
    INT16 = 1
    FLOAT32 = 2


_NP_DTYPES = {Dtype.INT16: np.dtype("<i2"), Dtype.FLOAT32: np.dtype("<f4")}


class Reason(str, enum.Enum):
    """Why a message was rejected; the values are metric label values."""

    FRAMES = "frame_count"
    SHORT_HEADER = "short_header"
    MAGIC = "bad_magic"
    VERSION = "bad_version"
    KIND = "bad_kind"
    DTYPE = "bad_dtype"
    STREAM_ID = "bad_stream_id"
    RATE = "bad_rate"
    CHANNELS = "bad_channels"
    SIZE = "size_mismatch"
    NONFINITE = "non_finite"
    RANGE = "out_of_range"
    SHAPE = "bad_shape"
    TOO_LARGE = "too_large"


class WireError(ValueError):
    """A message that does not follow the wire format."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _buffer(frame) -> memoryview:
    """Accept bytes, memoryview, numpy arrays or zmq.Frame without copying."""
    buf = getattr(frame, "buffer", frame)  # zmq.Frame exposes .buffer
    return memoryview(buf).cast("B")


@functools.lru_cache(maxsize=4096)  # a capture sends one id over and over; invalid ids raise and are not cached
def _encode_stream_id(stream_id: str) -> bytes:
    problem = stream_id_problem(stream_id)
    if problem:
        raise WireError(Reason.STREAM_ID, f"stream_id {problem}, got {stream_id!r}")
    return stream_id.encode("utf-8")


@functools.lru_cache(maxsize=4096)  # stream ids repeat on every message; the cache is bounded
def _decode_stream_id(raw: bytes) -> str:
    raw = raw.rstrip(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(Reason.STREAM_ID, f"stream_id is not UTF-8: {exc}") from None
    if not text or "\x00" in text:
        raise WireError(Reason.STREAM_ID, "stream_id is empty or has an inner NUL")
    return text


def topic_for(stream_id: str) -> bytes:
    """PUB topic of a stream: its id plus NUL, so that prefix filtering is exact."""
    return _encode_stream_id(stream_id) + b"\x00"


@dataclass(frozen=True)
class AudioWindow:
    """One window of captured audio.

    ``samples`` has shape (frames, channels). ``capture_ns`` is wall-clock time when
    the window's last sample was captured, so anything measured downstream against it
    is processing latency, not window length. ``session`` changes whenever a capture
    process starts, so a learner can tell a restart (seq back to 0) from lost windows.
    """

    stream_id: str
    seq: int
    capture_ns: int
    sample_rate: int
    samples: np.ndarray
    session: int = 0
    sent_ns: int = 0
    flags: int = 0

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def mono_float(self) -> np.ndarray:
        """Samples as float32 in [-1, 1], averaged over channels."""
        x = self.samples
        if x.dtype == np.int16:
            x = pcm16_to_float(x)
        return x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0].astype(np.float32, copy=False)


@dataclass(frozen=True)
class EmbeddingFrame:
    """The embedding of one processed audio window, published by the learner.

    ``embedding`` is the pooled vector (dim,); ``frame_embeddings`` the optional
    per-frame vectors (T, dim). ``seq``/``session``/``capture_ns`` are copied from the
    source window so subscribers can detect gaps and measure end-to-end latency.
    """

    stream_id: str
    seq: int
    capture_ns: int
    model_step: int
    embedding: np.ndarray
    session: int = 0
    sent_ns: int = 0
    frame_embeddings: np.ndarray | None = field(default=None)

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[0])


def encode_audio(w: AudioWindow) -> list[bytes | memoryview]:
    """Frames for ``socket.send_multipart``; the payload is a view, not a copy."""
    x = w.samples
    if x.ndim != 2:
        raise WireError(Reason.SHAPE, f"samples must be (frames, channels), got shape {x.shape}")
    if x.dtype == np.int16:
        dtype = Dtype.INT16
    elif x.dtype == np.float32:
        dtype = Dtype.FLOAT32
    else:
        raise WireError(Reason.DTYPE, f"samples dtype must be int16 or float32, got {x.dtype}")
    _check_audio_fields(w.sample_rate, x.shape[1])
    header = _HEADER.pack(
        MAGIC, VERSION, Kind.AUDIO, dtype, x.shape[1], _encode_stream_id(w.stream_id),
        w.session, w.seq, w.capture_ns, w.sent_ns, w.sample_rate, x.shape[0], 0, 0, w.flags,
    )
    payload = np.ascontiguousarray(x, dtype=_NP_DTYPES[dtype])
    return [header, memoryview(payload).cast("B")]


def encode_embedding(e: EmbeddingFrame) -> list[bytes | memoryview]:
    """Frames ``[topic, header, payload]`` for a PUB socket."""
    emb = np.asarray(e.embedding, dtype="<f4")
    if emb.ndim != 1 or not 0 < emb.shape[0] <= MAX_EMBEDDING_DIM:
        raise WireError(Reason.SHAPE, f"embedding must be a vector of 1..{MAX_EMBEDDING_DIM}, got {emb.shape}")
    rows = [emb[None, :]]
    n_frames = 0
    if e.frame_embeddings is not None:
        fe = np.asarray(e.frame_embeddings, dtype="<f4")
        if fe.ndim != 2 or fe.shape[1] != emb.shape[0]:
            raise WireError(Reason.SHAPE, f"frame_embeddings must be (T, {emb.shape[0]}), got {fe.shape}")
        rows.append(fe)
        n_frames = fe.shape[0]
    payload = np.ascontiguousarray(np.concatenate(rows) if len(rows) > 1 else rows[0])
    header = _HEADER.pack(
        MAGIC, VERSION, Kind.EMBEDDING, Dtype.FLOAT32, 1, _encode_stream_id(e.stream_id),
        e.session, e.seq, e.capture_ns, e.sent_ns, 0, n_frames, e.model_step, emb.shape[0], 0,
    )
    return [topic_for(e.stream_id), header, memoryview(payload).cast("B")]


@dataclass(frozen=True)
class SoundEvent:
    """What ``streamssl events`` says about one window (``streamssl.events``)."""

    stream_id: str
    seq: int
    capture_ns: int
    model_step: int
    cluster: int  # stable cluster id, -1 before the clusterer has its space
    distance: float  # to that cluster's centre (unit: RMS norm of a point); NaN for a new cluster
    novel: bool
    established: bool = False
    session: int = 0
    sent_ns: int = 0

    def record(self) -> dict:
        """The JSON line of ``streamssl events`` (the keys its issue names, then the rest)."""
        return {
            "stream_id": self.stream_id, "seq": self.seq, "model_step": self.model_step, "cluster": self.cluster,
            "distance": None if self.distance != self.distance else round(self.distance, 6), "novel": self.novel,
            "new_cluster": self.established, "session": self.session, "capture_ns": self.capture_ns,
        }


def encode_event(e: SoundEvent) -> list[bytes]:
    """Frames ``[topic, header, payload]`` for a PUB socket; payload ``<qd``: cluster, distance."""
    flags = (FLAG_NOVEL if e.novel else 0) | (FLAG_ESTABLISHED if e.established else 0)
    header = _HEADER.pack(
        MAGIC, VERSION, Kind.EVENT, 0, 0, _encode_stream_id(e.stream_id),
        e.session, e.seq, e.capture_ns, e.sent_ns, 0, 0, e.model_step, 0, flags,
    )
    return [topic_for(e.stream_id), header, _EVENT_PAYLOAD.pack(e.cluster, e.distance)]


def decode_event(frames: Sequence) -> SoundEvent:
    """Parse ``[topic, header, payload]`` (or ``[header, payload]``) into a SoundEvent."""
    if len(frames) == 3:
        frames = frames[1:]
    if len(frames) != 2:
        raise WireError(Reason.FRAMES, f"event message has {len(frames)} frames, expected 2 or 3")
    (_, _, _, _, _, sid, session, seq, cap_ns, sent_ns, _, _, step, _, flags) = _unpack_header(frames[0], Kind.EVENT)
    payload = _buffer(frames[1])
    if len(payload) != _EVENT_PAYLOAD.size:
        raise WireError(Reason.SIZE, f"event payload is {len(payload)} bytes, expected {_EVENT_PAYLOAD.size}")
    cluster, distance = _EVENT_PAYLOAD.unpack(payload)
    return SoundEvent(_decode_stream_id(sid), seq, cap_ns, step, cluster, distance, bool(flags & FLAG_NOVEL),
                      bool(flags & FLAG_ESTABLISHED), session=session, sent_ns=sent_ns)


def _check_audio_fields(rate: int, channels: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WireError(Reason.RATE, f"sample rate {rate} Hz outside {MIN_RATE}..{MAX_RATE}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise WireError(Reason.CHANNELS, f"channels {channels} outside 1..{MAX_CHANNELS}")


def _unpack_header(frame, expected: Kind) -> tuple:
    buf = _buffer(frame)
    if len(buf) != HEADER_SIZE:
        raise WireError(Reason.SHORT_HEADER, f"header is {len(buf)} bytes, expected {HEADER_SIZE}")
    fields = _HEADER.unpack(buf)
    magic, version, kind = fields[0], fields[1], fields[2]
    if magic != MAGIC:
        raise WireError(Reason.MAGIC, f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise WireError(Reason.VERSION, f"format version {version}, this build speaks {VERSION}")
    if kind != expected:
        raise WireError(Reason.KIND, f"message kind {kind}, expected {expected.name.lower()} ({int(expected)})")
    return fields


def decode_audio(frames: Sequence, max_bytes: int | None = None) -> AudioWindow:
    """Parse ``[header, payload]`` into an AudioWindow whose samples view the payload.

    ``max_bytes`` bounds the whole message (``transport.max_message_bytes``): a larger one
    is rejected before any of it is parsed."""
    if max_bytes is not None:
        size = sum(len(_buffer(f)) for f in frames)
        if size > max_bytes:
            raise WireError(Reason.TOO_LARGE, f"message is {size} bytes, the limit is {max_bytes}")
    if len(frames) != 2:
        raise WireError(Reason.FRAMES, f"audio message has {len(frames)} frames, expected 2")
    (_, _, _, dtype, channels, sid, session, seq, cap_ns, sent_ns, rate, n, _, _, flags) = _unpack_header(
        frames[0], Kind.AUDIO
    )
    try:
        np_dtype = _NP_DTYPES[dtype]  # IntEnum keys: the raw code looks up without building an enum
    except KeyError:
        raise WireError(Reason.DTYPE, f"dtype code {dtype} is not int16 (1) or float32 (2)") from None
    _check_audio_fields(rate, channels)
    stream_id = _decode_stream_id(sid)
    payload = _buffer(frames[1])
    expected = n * channels * np_dtype.itemsize
    if len(payload) != expected or n == 0:
        raise WireError(
            Reason.SIZE, f"payload is {len(payload)} bytes, header says {n} frames x {channels} ch x {np_dtype.itemsize} B"
        )
    samples = np.frombuffer(payload, dtype=np_dtype).reshape(n, channels)
    if np_dtype.kind == "f":
        if not np.isfinite(samples).all():
            raise WireError(Reason.NONFINITE, "float audio contains NaN or Inf")
        if samples.size and float(np.abs(samples).max()) > MAX_FLOAT_AMPLITUDE:
            raise WireError(Reason.RANGE, f"float audio beyond +-{MAX_FLOAT_AMPLITUDE:g} (full scale is 1.0)")
    return AudioWindow(stream_id, seq, cap_ns, rate, samples, session=session, sent_ns=sent_ns, flags=flags)


def decode_embedding(frames: Sequence) -> EmbeddingFrame:
    """Parse ``[topic, header, payload]`` (or ``[header, payload]``) into an EmbeddingFrame."""
    if len(frames) == 3:
        frames = frames[1:]
    if len(frames) != 2:
        raise WireError(Reason.FRAMES, f"embedding message has {len(frames)} frames, expected 2 or 3")
    (_, _, _, dtype, _, sid, session, seq, cap_ns, sent_ns, _, n_frames, step, dim, _) = _unpack_header(
        frames[0], Kind.EMBEDDING
    )
    if dtype != Dtype.FLOAT32:
        raise WireError(Reason.DTYPE, f"embedding dtype code {dtype}, expected float32 (2)")
    if not 0 < dim <= MAX_EMBEDDING_DIM:
        raise WireError(Reason.SHAPE, f"embedding dim {dim} outside 1..{MAX_EMBEDDING_DIM}")
    payload = _buffer(frames[1])
    if len(payload) != (1 + n_frames) * dim * 4:
        raise WireError(Reason.SIZE, f"payload is {len(payload)} bytes, header says {1 + n_frames} x {dim} float32")
    rows = np.frombuffer(payload, dtype="<f4").reshape(1 + n_frames, dim)
    if not np.isfinite(rows).all():
        raise WireError(Reason.NONFINITE, "embedding contains NaN or Inf")
    return EmbeddingFrame(
        _decode_stream_id(sid), seq, cap_ns, step, rows[0], session=session, sent_ns=sent_ns,
        frame_embeddings=rows[1:] if n_frames else None,
    )


def stream_hash(stream_id: str) -> int:
    """Stable signed 64-bit id of a stream (Python's ``hash`` is salted per process): MoCo's
    queue tags keys with it, and a capture with several learner endpoints picks one by it."""
    return int.from_bytes(hashlib.blake2b(stream_id.encode(), digest_size=8).digest(), "little", signed=True)


def endpoint_for_stream(endpoints: Sequence[str], stream_id: str) -> str:
    """The one of ``endpoints`` (the ranks of a learner group) that serves ``stream_id``: the same
    for every capture of that stream, so its streaming state stays on one rank."""
    return endpoints[stream_hash(stream_id) % len(endpoints)]

"""The wire format: symmetric, versioned, zero-copy, and strict about malformed input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamssl import wire
from streamssl.wire import AudioWindow, EmbeddingFrame, Reason, WireError

stream_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8
)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def audio_windows(draw):
    channels = draw(st.integers(1, 4))
    frames = draw(st.integers(1, 400))
    dtype = draw(st.sampled_from([np.int16, np.float32]))
    elements = st.floats(-1, 1, width=32) if dtype == np.float32 else st.integers(-32768, 32767)
    samples = draw(hnp.arrays(dtype, (frames, channels), elements=elements))
    return AudioWindow(
        stream_id=draw(stream_ids), seq=draw(u64), capture_ns=draw(i64), sample_rate=draw(st.integers(1000, 384000)),
        samples=samples, session=draw(u64), sent_ns=draw(i64), flags=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=200, deadline=None)
@given(audio_windows())
def test_audio_round_trip_preserves_every_field(w):
    back = wire.decode_audio([bytes(f) for f in wire.encode_audio(w)])
    assert (back.stream_id, back.seq, back.capture_ns, back.sample_rate, back.session, back.sent_ns, back.flags) == (
        w.stream_id, w.seq, w.capture_ns, w.sample_rate, w.session, w.sent_ns, w.flags,
    )
    assert back.samples.dtype == w.samples.dtype and back.samples.shape == w.samples.shape
    np.testing.assert_array_equal(back.samples, w.samples)


@settings(max_examples=200, deadline=None)
@given(
    stream_ids, u64, i64, u64, st.integers(1, 64), st.integers(0, 5), st.data(),
)
def test_embedding_round_trip_preserves_every_field(sid, seq, cap, step, dim, n_frames, data):
    vec = data.draw(hnp.arrays(np.float32, (dim,), elements=st.floats(-1e6, 1e6, width=32)))
    frames = data.draw(hnp.arrays(np.float32, (n_frames, dim), elements=st.floats(-1e6, 1e6, width=32)))
    e = EmbeddingFrame(sid, seq, cap, step, vec, session=7, sent_ns=9, frame_embeddings=frames if n_frames else None)
    parts = wire.encode_embedding(e)
    assert bytes(parts[0]) == sid.encode() + b"\x00"
    back = wire.decode_embedding([bytes(p) for p in parts])
    assert (back.stream_id, back.seq, back.capture_ns, back.model_step, back.session, back.sent_ns) == (
        sid, seq, cap, step, 7, 9,
    )
    np.testing.assert_array_equal(back.embedding, vec)
    if n_frames:
        np.testing.assert_array_equal(back.frame_embeddings, frames)
    else:
        assert back.frame_embeddings is None


def test_decoded_samples_view_the_payload_without_copying():
    w = AudioWindow("s", 0, 0, 16000, np.arange(320, dtype=np.int16).reshape(160, 2))
    header, payload = wire.encode_audio(w)
    buf = bytearray(payload)
    back = wire.decode_audio([bytes(header), buf])
    buf[0:2] = b"\x07\x00"  # mutate the receive buffer: a view sees it, a copy would not
    assert back.samples[0, 0] == 7


def _good_audio() -> list[bytes]:
    w = AudioWindow("mic", 3, 123, 16000, np.zeros((160, 1), np.float32))
    return [bytes(f) for f in wire.encode_audio(w)]


def _patch_header(**fields) -> list[bytes]:
    header, payload = _good_audio()
    names = ["magic", "version", "kind", "dtype", "channels", "stream_id", "session", "seq", "capture_ns",
             "sent_ns", "sample_rate", "frames", "model_step", "dim", "flags"]
    values = dict(zip(names, wire._HEADER.unpack(header)))
    values.update(fields)
    return [wire._HEADER.pack(*values.values()), payload]


def _float_payload(value: float) -> list[bytes]:
    header, payload = _good_audio()
    x = np.frombuffer(payload, np.float32).copy()
    x[5] = value
    return [header, x.tobytes()]


MALFORMED = {
    "one frame": ([b"only"], Reason.FRAMES),
    "three frames": ([b"a", b"b", b"c"], Reason.FRAMES),
    "short header": ([b"SSLW\x01", b""], Reason.SHORT_HEADER),
    "long header": ([_good_audio()[0] + b"x", _good_audio()[1]], Reason.SHORT_HEADER),
    "wrong magic": (_patch_header(magic=b"RIFF"), Reason.MAGIC),
    "future version": (_patch_header(version=2), Reason.VERSION),
    "embedding kind on audio socket": (_patch_header(kind=2), Reason.KIND),
    "unknown kind": (_patch_header(kind=9), Reason.KIND),
    "unsupported dtype": (_patch_header(dtype=3), Reason.DTYPE),
    "absurd rate": (_patch_header(sample_rate=10), Reason.RATE),
    "zero channels": (_patch_header(channels=0), Reason.CHANNELS),
    "empty stream id": (_patch_header(stream_id=b""), Reason.STREAM_ID),
    "non-UTF-8 stream id": (_patch_header(stream_id=b"\xff\xfe"), Reason.STREAM_ID),
    "payload shorter than header says": ([_good_audio()[0], _good_audio()[1][:-4]], Reason.SIZE),
    "frame count larger than payload": (_patch_header(frames=161), Reason.SIZE),
    "zero frames": (_patch_header(frames=0), Reason.SIZE),
    "NaN in float audio": (_float_payload(np.nan), Reason.NONFINITE),
    "Inf in float audio": (_float_payload(-np.inf), Reason.NONFINITE),
    "finite but absurd float sample": (_float_payload(1e30), Reason.RANGE),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_audio_is_rejected_with_its_reason(case):
    frames, reason = MALFORMED[case]
    with pytest.raises(WireError) as err:
        wire.decode_audio(frames)
    assert err.value.reason is reason


def test_malformed_embeddings_are_rejected_with_their_reason():
    e = EmbeddingFrame("s", 1, 2, 3, np.ones(8, np.float32))
    topic, header, payload = (bytes(p) for p in wire.encode_embedding(e))
    bad_vec = np.ones(8, np.float32)
    bad_vec[2] = np.inf
    cases = [
        ([topic, header, payload[:-1]], Reason.SIZE),
        ([topic, header, bad_vec.tobytes()], Reason.NONFINITE),
        ([topic, _good_audio()[0], payload], Reason.KIND),
        ([topic], Reason.FRAMES),
    ]
    for frames, reason in cases:
        with pytest.raises(WireError) as err:
            wire.decode_embedding(frames)
        assert err.value.reason is reason


def test_encoder_refuses_what_the_decoder_would_reject():
    with pytest.raises(WireError) as err:
        wire.encode_audio(AudioWindow("s", 0, 0, 16000, np.zeros((10, 1), np.float64)))
    assert err.value.reason is Reason.DTYPE
    with pytest.raises(WireError) as err:
        wire.encode_audio(AudioWindow("x" * 33, 0, 0, 16000, np.zeros((10, 1), np.int16)))
    assert err.value.reason is Reason.STREAM_ID
    with pytest.raises(WireError) as err:
        wire.encode_audio(AudioWindow("s", 0, 0, 50, np.zeros((10, 1), np.int16)))
    assert err.value.reason is Reason.RATE


def test_topic_prefix_filtering_is_exact():
    assert not wire.topic_for("mic2").startswith(wire.topic_for("mic"))


def test_header_layout_is_fixed_little_endian():
    assert wire.HEADER_SIZE == 96
    header = _good_audio()[0]
    assert header[:4] == b"SSLW" and header[4] == wire.VERSION
    assert struct.unpack_from("<Q", header, 48)[0] == 3  # seq sits at a fixed offset for other languages


def test_pcm16_scale_is_one_convention_both_ways():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, -2.0], dtype=np.float32)
    pcm = wire.to_pcm16(x)
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [-32768, -16384, 0, 16384, 32767, 32767, -32768]  # x 32768, clipped
    back = wire.pcm16_to_float(pcm)
    assert back.dtype == np.float32 and back[0] == -1.0 and back[1] == -0.5
    i16 = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert np.array_equal(wire.to_pcm16(wire.pcm16_to_float(i16)), i16)  # exact round trip


def test_window_frames_and_stream_id_rule_are_shared_with_config():
    from streamssl import config

    assert wire.window_frames(16000, 500) == 8000
    assert wire.window_frames(44100, 10) == 441
    assert wire.window_frames(8000, 0) == 1
    too_long = "x" * (wire.STREAM_ID_MAX_BYTES + 1)
    assert wire.stream_id_problem("x" * wire.STREAM_ID_MAX_BYTES) is None
    assert wire.stream_id_problem(too_long) and wire.stream_id_problem("")
    with pytest.raises(config.ConfigError, match="capture.stream_id"):
        config.load(None, [f"capture.stream_id={too_long}"])


def test_a_message_over_the_size_limit_is_rejected_before_it_is_parsed():
    frames = _good_audio()
    size = sum(len(f) for f in frames)
    assert wire.decode_audio(frames, max_bytes=size).seq == wire.decode_audio(frames).seq
    with pytest.raises(WireError) as err:
        wire.decode_audio(frames, max_bytes=size - 1)
    assert err.value.reason is Reason.TOO_LARGE
    with pytest.raises(WireError) as err:  # size first: a huge message of garbage is "too large", not "bad magic"
        wire.decode_audio([b"x" * 100, b"y"], max_bytes=50)
    assert err.value.reason is Reason.TOO_LARGE

"""Every source kind produces the expected number of samples, in fixed windows with a
gap-free seq from 0, through the real ``streamssl capture`` process and a PULL socket.

Sources are read with ``--no-realtime`` (as fast as consumed, with back-pressure, so
nothing may be dropped) to keep the suite fast; real-time pacing is exercised by the
capture and mic tests. A few in-process checks cover the pieces with exact answers:
the streaming resampler and re-blocking.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq

from streamssl.config import ConfigError
from streamssl.capture.sources import open_source
from streamssl.capture.sources.base import reblock
from streamssl.capture.resample import StreamResampler
from streamssl.wire import AudioWindow, decode_audio
from support import REPO, free_endpoint, log_tail, pull_socket, start_streamssl

RATE = 16000
WINDOW_MS = 250
WINDOW = RATE * WINDOW_MS // 1000


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def collect(sock: zmq.Socket, proc: subprocess.Popen, timeout: float = 30.0) -> list[AudioWindow]:
    """Receive windows until the capture process has exited and the socket is drained."""
    windows: list[AudioWindow] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.poll(200):
            windows.append(decode_audio(sock.recv_multipart()))
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
        raise AssertionError(f"capture did not finish in {timeout}s:\n{log_tail(proc)}")
    return windows


def capture(source: str, tmp_path: Path, *extra: str, stdin_bytes: bytes | None = None) -> list[AudioWindow]:
    """Run ``streamssl capture --no-realtime`` on ``source`` into a PULL socket; check the exit and the seq."""
    endpoint = free_endpoint()
    sock = pull_socket(endpoint)
    args = ["capture", "--source", source, "--connect", endpoint, "--window-ms", str(WINDOW_MS),
            "--metrics-port", "0", "--no-realtime", "--stream-id", "t", *extra]
    try:
        if stdin_bytes is None:
            proc = start_streamssl(*args, log_path=tmp_path / "capture.log")
        else:
            log = open(tmp_path / "capture.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "streamssl", *args], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            proc.log_path = str(tmp_path / "capture.log")
            proc.stdin.write(stdin_bytes)
            proc.stdin.close()
        windows = collect(sock, proc)
    finally:
        sock.close(0)
    assert proc.wait(timeout=10) == 0, log_tail(proc)
    assert [w.seq for w in windows] == list(range(len(windows))), "seq must be gap-free from 0"
    assert len({w.session for w in windows}) == 1
    assert all(w.frames == WINDOW for w in windows[:-1]), "all windows but the last are full"
    assert all(w.stream_id == "t" and w.sample_rate == RATE and w.samples.dtype == np.int16 for w in windows)
    return windows


def total_frames(windows: list[AudioWindow]) -> int:
    return sum(w.frames for w in windows)


def audio(windows: list[AudioWindow]) -> np.ndarray:
    return np.concatenate([w.mono_float() for w in windows])


# --- through the real capture process ------------------------------------------------


def test_file_source_resamples_to_the_configured_rate(tmp_path):
    path = tmp_path / "tone44k.wav"
    x = tone(2.3, 44100)
    sf.write(path, x, 44100, subtype="PCM_16")
    windows = capture(f"file:{path}", tmp_path)
    assert total_frames(windows) == math.ceil(len(x) * RATE / 44100)
    # still a 440 Hz tone after resampling: the spectrum peak sits at 440 Hz
    y = audio(windows)[: RATE * 2]
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) * RATE / len(y) - 440) < 2


def test_file_source_loops_until_max_seconds(tmp_path):
    path = tmp_path / "short.flac"
    sf.write(path, tone(0.7, RATE, channels=2), RATE)  # stereo file, mono capture: averaged
    windows = capture(f"file:{path}", tmp_path, "--loop", "--max-seconds", "3")
    assert total_frames(windows) == 3 * RATE


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_ffmpeg_source_decodes_containers(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    x = tone(2.0, 22050)
    sf.write(path, x, 22050, format=fmt.upper(), **({"subtype": "VORBIS"} if fmt == "ogg" else {}))
    windows = capture(f"ffmpeg:{path}", tmp_path)
    expected = len(x) * RATE / 22050
    # ffmpeg's resampler may emit a few samples more or less at the end than the exact
    # ratio; a lossy codec (Vorbis) also pads to its frame size (up to ~50 ms here)
    assert abs(total_frames(windows) - expected) <= (64 if fmt != "ogg" else RATE // 20)
    assert np.abs(audio(windows)).max() > 0.3


def test_ffmpeg_source_exact_count_at_native_rate(tmp_path):
    path = tmp_path / "native.wav"
    x = tone(1.9, RATE)
    sf.write(path, x, RATE, subtype="PCM_16")
    windows = capture(f"ffmpeg:{path}", tmp_path)
    assert total_frames(windows) == len(x)
    np.testing.assert_allclose(audio(windows), x[:, 0], atol=2 / 32768)


def test_ffmpeg_failure_exits_nonzero_with_ffmpeg_message(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF this is not audio" * 10)
    endpoint = free_endpoint()
    proc = start_streamssl("capture", "--source", f"ffmpeg:{path}", "--connect", endpoint, "--metrics-port", "0",
                           "--no-realtime", log_path=tmp_path / "capture.log")
    assert proc.wait(timeout=30) == 1
    log = Path(proc.log_path).read_text()
    assert "ffmpeg exited with status" in log and "FAILED" in log


def test_stdin_source_reads_raw_s16le(tmp_path):
    pcm = (tone(1.6, RATE)[:, 0] * 32767).astype("<i2")
    windows = capture("stdin", tmp_path, stdin_bytes=pcm.tobytes() + b"\x01")  # a stray odd byte is ignored
    assert total_frames(windows) == len(pcm)
    np.testing.assert_array_equal(np.concatenate([w.samples[:, 0] for w in windows]), pcm)


@pytest.mark.parametrize("kind", ["speech", "synth"])
def test_generated_sources_give_exactly_max_seconds(tmp_path, kind):
    windows = capture(kind, tmp_path, "--max-seconds", "4.1")
    assert total_frames(windows) == int(4.1 * RATE)
    y = audio(windows)
    assert 0.01 < np.sqrt(np.mean(y**2)) < 0.7, "audible, not clipped"


def test_speech_is_seeded(tmp_path):
    a = audio(capture("speech", tmp_path, "--max-seconds", "2", "--seed", "7"))
    b = audio(capture("speech", tmp_path, "--max-seconds", "2", "--seed", "7"))
    c = audio(capture("speech", tmp_path, "--max-seconds", "2", "--seed", "8"))
    # Same seed, same sentences, voices, pauses and noise floor, to the bit: sox's dither is
    # repeatable (-R in capture/espeak.py); without it the last bit differed from run to run.
    np.testing.assert_array_equal(a, b)
    assert np.corrcoef(a, c)[0, 1] < 0.5


# --- in process ------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [(44100, 16000), (8000, 16000), (48000, 16000), (22050, 16000)])
def test_stream_resampler_equals_whole_signal_resampling(rates):
    from scipy.signal import resample_poly

    rin, rout = rates
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.1, size=(rin + 123, 2)).astype(np.float32)
    g = math.gcd(rin, rout)
    ref = resample_poly(x, rout // g, rin // g, axis=0)
    rs, out, i = StreamResampler(rin, rout, 2), [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out.append(rs.process(x[i : i + n]))
        i += n
    out.append(rs.flush())
    y = np.concatenate(out)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_reblock_makes_fixed_blocks_and_a_short_tail():
    chunks = [np.ones((n, 1), np.float32) * i for i, n in enumerate([3, 10, 1, 0, 7])]
    blocks = list(reblock(chunks, 4))
    assert [b.shape[0] for b in blocks] == [4, 4, 4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), np.concatenate(chunks))


def test_open_source_rejects_bad_specs_as_config_errors(tmp_path):
    for spec in ["nosuch", "file:", f"file:{tmp_path}/missing.wav", f"ffmpeg:{tmp_path}/missing.ogg", "synth:x",
                 "scenes:soon", "scenes:-5"]:
        with pytest.raises(ConfigError, match="capture.source"):
            open_source(spec, sample_rate=RATE, block_frames=WINDOW)


def test_synth_blocks_in_process():
    src = open_source("synth", sample_rate=RATE, channels=2, block_frames=WINDOW, realtime=False, seed=3)
    blocks = [b for _, b in zip(range(5), src)]
    src.close()
    assert all(b.samples.shape == (WINDOW, 2) and b.samples.dtype == np.float32 for b in blocks)
    assert all(b.capture_ns > 0 for b in blocks)


def test_scenes_are_seeded_labelled_and_bring_the_novel_kind_after_its_time():
    from itertools import islice

    from streamssl.capture.sources.scenes import KINDS, NOVEL_KIND, labels_for_windows, scene_plan

    src = open_source("scenes:30", sample_rate=RATE, block_frames=WINDOW, realtime=False, seed=4)
    again = open_source("scenes:30", sample_rate=RATE, block_frames=WINDOW, realtime=False, seed=4)
    a = np.concatenate([b.samples for _, b in zip(range(120), src)])
    b = np.concatenate([b.samples for _, b in zip(range(120), again)])
    src.close()
    again.close()
    np.testing.assert_array_equal(a, b)  # same seed, same scene, to the bit
    plan = list(islice(scene_plan(4, 30.0), 20))
    assert all(p.kind != q.kind for p, q in zip(plan, plan[1:])), "never the same kind twice in a row"
    before = [p.kind for p in plan if p.start_s < 30.0]
    assert set(before) <= set(KINDS) and len(set(before)) >= 3
    assert next(p for p in plan if p.start_s >= 30.0).kind == NOVEL_KIND
    labels = labels_for_windows(120, WINDOW / RATE, 4, 30.0)
    first = plan[1].start_s  # the second segment starts here: its kind labels the windows after it
    assert labels[0] == plan[0].kind and labels[int(first / (WINDOW / RATE)) + 1] == plan[1].kind

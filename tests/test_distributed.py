"""A learner group: torchrun, gloo on CPU, 2 ranks on loopback (issue "Beyond one machine").

The math (bit-identical ranks, 2 x B = 1 x 2B) runs ``tests/group_worker.py`` under real
torchrun; the daemons (stream affinity, the proxy, a rank killed and the group restarted)
run ``streamssl learn`` under torchrun with real captures and a real subscriber.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamssl.config import ConfigError, load
from streamssl.learning.distributed import rank_endpoint, rank_ports
from streamssl.procs import spawn_group
from streamssl.serving.subscriber import subscribe
from streamssl.wire import endpoint_for_stream

from support import REPO, free_port, log_tail, metric, scrape, start_streamssl, stop, wait_until

WORKER = Path(__file__).parent / "group_worker.py"
SMALL = Path(__file__).parent / "configs" / "small.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(*launcher: str, mode: str, out: Path, log: Path, timeout: float = 180) -> None:
    with open(log, "ab") as f:
        rc = subprocess.run([sys.executable, "-m", "torch.distributed.run", *launcher, str(WORKER), "--mode", mode,
                             "--out", str(out)], stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=REPO,
                            timeout=timeout).returncode
    assert rc == 0, log.read_text()[-3000:]


def load_rank(out: Path, rank: int) -> dict:
    return torch.load(out / f"rank-{rank}.pt", weights_only=True)


# --- the math -----------------------------------------------------------------------

@pytest.mark.e2e
def test_ranks_stay_bit_identical_through_uneven_steps(tmp_path):
    """Rank 1 has nothing at step 0 and no new windows at step 2 (replay only): both still
    hold the same weights, momentum encoder, normaliser and MoCo queue, bit for bit."""
    torchrun("--standalone", "--nproc-per-node", "2", mode="identical", out=tmp_path, log=tmp_path / "log")
    r0, r1 = load_rank(tmp_path, 0), load_rank(tmp_path, 1)
    assert int(r0["world"]) == 2 and int(r0["step"]) == int(r1["step"]) == 4
    for key in ("params", "key_params", "queue", "queue_stream", "queue_valid", "norm_mean", "norm_var"):
        assert torch.equal(r0[key], r1[key]), f"{key} differs between ranks"
    # The queue holds both ranks' keys: 4 steps x 3 windows of rank 0, 2 x 3 of rank 1.
    assert int(r0["queue_valid"].sum()) == 4 * 3 + 2 * 3


@pytest.mark.e2e
def test_two_ranks_with_b_windows_each_update_like_one_rank_with_2b(tmp_path):
    """Same weights after 4 steps. Tolerance, fixed before the first run: the two differ only by
    float32 rounding (sums in another order, ~1e-7 relative), which AdamW can turn into a few
    1e-6 where it tips m / sqrt(v); atol 5e-5 leaves room for that and stays 20x below one
    AdamW step of one weight (~lr = 1e-3), which a wrong reduction (a sum instead of the mean,
    one rank's gradient only) changes in every weight at every step."""
    torchrun("--standalone", "--nproc-per-node", "2", mode="equivalence", out=tmp_path / "two", log=tmp_path / "log")
    with open(tmp_path / "log", "ab") as f:
        subprocess.run([sys.executable, str(WORKER), "--mode", "equivalence", "--out", str(tmp_path / "one")],
                       check=True, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=REPO, timeout=600)
    two, one = load_rank(tmp_path / "two", 0), load_rank(tmp_path / "one", 0)
    diff = (two["params"] - one["params"]).abs().max().item()
    print(f"2 ranks x B vs 1 rank x 2B: max |weight difference| {diff:.2e}")
    assert diff < 5e-5
    torch.testing.assert_close(two["norm_mean"], one["norm_mean"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two["queue"], one["queue"], rtol=1e-4, atol=1e-4)  # same keys, same order
    assert torch.equal(two["queue_stream"], one["queue_stream"])


@pytest.mark.e2e
def test_two_nodes_on_one_machine_train_one_model(tmp_path):
    """Two torchrun "nodes" (--nnodes 2, c10d rendezvous on 127.0.0.1), one rank each."""
    port = free_port()
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "streamssl-test"]
    procs = []
    for node in range(2):
        log = open(tmp_path / f"node{node}.log", "ab")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *common, str(WORKER), "--mode", "identical",
             "--out", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO))
    for node, p in enumerate(procs):
        assert p.wait(timeout=180) == 0, (tmp_path / f"node{node}.log").read_text()[-3000:]
    r0, r1 = load_rank(tmp_path, 0), load_rank(tmp_path, 1)
    assert int(r0["world"]) == 2
    assert torch.equal(r0["params"], r1["params"]) and torch.equal(r0["queue"], r1["queue"])


# --- ports and affinity -------------------------------------------------------------

def test_rank_r_binds_each_configured_port_plus_r():
    assert rank_ports("tcp://127.0.0.1:5600", "tcp://127.0.0.1:5700", 9108, 1, 2) == (
        "tcp://127.0.0.1:5601", "tcp://127.0.0.1:5701", 9109)
    assert rank_endpoint("tcp://*:5600", 3) == "tcp://*:5603"
    with pytest.raises(ValueError, match="collides"):
        rank_ports("tcp://127.0.0.1:5600", "tcp://127.0.0.1:5601", 0, 0, 2)
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        rank_endpoint("ipc:///tmp/learner", 1)


def test_colliding_ports_are_refused_before_anything_starts():
    rc = subprocess.run(
        [sys.executable, "-m", "streamssl", "learn", "--config", str(SMALL), "--audio-bind", "tcp://127.0.0.1:5600",
         "--embeddings-bind", "tcp://127.0.0.1:5601", "--metrics-port", "0"],
        env={**ENV, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, capture_output=True, text=True, timeout=60)
    assert rc.returncode == 2
    assert "collides" in rc.stderr


def test_a_stream_always_goes_to_the_same_endpoint():
    eps = ["tcp://127.0.0.1:5600", "tcp://127.0.0.1:5601"]
    chosen = {f"mic-{i}": endpoint_for_stream(eps, f"mic-{i}") for i in range(40)}
    assert chosen == {f"mic-{i}": endpoint_for_stream(eps, f"mic-{i}") for i in range(40)}  # stable
    assert 10 < sum(e == eps[0] for e in chosen.values()) < 30  # spread over both
    assert load(None, ["capture.connect=tcp://127.0.0.1:5600, tcp://127.0.0.1:5601"]).capture.connect
    with pytest.raises(ConfigError, match="capture.connect"):
        load(None, ["capture.connect=tcp://127.0.0.1:5600,,"])


# --- the daemons --------------------------------------------------------------------

def free_port_pair() -> int:
    """A port P with P and P + 1 free a moment ago (rank 1 binds P + 1)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


def two_streams_on_two_ranks(eps: list[str]) -> list[str]:
    """Stream ids whose hash sends one to each rank."""
    ids = [f"s{i}" for i in range(64)]
    return [next(s for s in ids if endpoint_for_stream(eps, s) == e) for e in eps]


def rank_pids(marker: str) -> dict[int, int]:
    """Worker pid by rank: the learner processes whose command line holds ``marker`` (their checkpoint dir)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_text().split("\0") if "=" in kv)
            cmd = (entry / "cmdline").read_text()
        except OSError:
            continue
        if "TORCHELASTIC_RUN_ID" in env and "RANK" in env and marker in cmd:
            out[int(env["RANK"])] = int(entry.name)
    return out


@pytest.mark.e2e
def test_group_serves_each_stream_on_one_rank_through_one_proxy_and_restarts_after_a_kill(tmp_path):
    audio_base, emb_base, metrics_base = free_port_pair(), free_port_pair(), free_port_pair()
    while len({audio_base, audio_base + 1, emb_base, emb_base + 1, metrics_base, metrics_base + 1}) < 6:
        emb_base, metrics_base = free_port_pair(), free_port_pair()
    ckpt = tmp_path / "ckpt"
    group = spawn_group(
        2, ["learn", "--config", str(SMALL), "--audio-bind", f"tcp://127.0.0.1:{audio_base}",
            "--embeddings-bind", f"tcp://127.0.0.1:{emb_base}", "--metrics-port", str(metrics_base),
            "--checkpoint-dir", str(ckpt), "--checkpoint-interval", "2"],
        tmp_path / "group.log", launcher=["--max-restarts", "1"], cwd=REPO)
    audio_eps = [f"tcp://127.0.0.1:{audio_base + r}" for r in range(2)]
    emb_eps = [f"tcp://127.0.0.1:{emb_base + r}" for r in range(2)]
    streams = two_streams_on_two_ranks(audio_eps)
    proxy_ep = f"tcp://127.0.0.1:{free_port()}"
    proxy = start_streamssl("proxy", "--connect", ",".join(emb_eps), "--bind", proxy_ep, log_path=tmp_path / "proxy.log")
    captures = []
    try:
        for r in range(2):
            wait_until(lambda r=r: scrape(metrics_base + r), 120, message=f"rank {r} /metrics ({log_tail(group)})")
        sub = subscribe(proxy_ep, timeout=60)
        for sid in streams:
            captures.append(start_streamssl(
                "capture", "--config", str(SMALL), "--source", "synth", "--stream-id", sid,
                "--connect", ",".join(audio_eps), "--window-ms", "100", "--set", "capture.metrics_port=0",
                log_path=tmp_path / f"{sid}.log"))  # 100-ms windows: 20 per stream in 2 s of real time
        seen: dict[str, list[int]] = {sid: [] for sid in streams}
        for frame in sub:
            seen[frame.stream_id].append(frame.seq)
            if min(len(v) for v in seen.values()) >= 20:
                break
        # Each stream on exactly one rank, the one its hash names; rank label on every sample.
        for r in range(2):
            s = scrape(metrics_base + r)
            assert metric(s, "streamssl_learner_windows_received_total", stream=streams[r], rank=str(r)) > 0
            assert metric(s, "streamssl_learner_windows_received_total", stream=streams[1 - r]) == 0
        # No window lost or duplicated between capture and subscriber, through the proxy.
        for sid, seqs in seen.items():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{sid}: gaps or duplicates {seqs[:40]}"
        assert sub.gaps == 0 and sub.rejected == 0
        steps = [metric(scrape(metrics_base + r), "streamssl_learner_model_step") for r in range(2)]
        wait_until(lambda: any(ckpt.glob("*.pt")), 30, message="rank 0's first checkpoint")
        # SIGKILL rank 1: torchrun stops rank 0 (SIGTERM: it writes a last checkpoint) and restarts both.
        pids = rank_pids(str(ckpt))
        assert set(pids) == {0, 1}, pids
        os.kill(pids[1], signal.SIGKILL)

        def restarted():
            now = rank_pids(str(ckpt))
            return set(now) == {0, 1} and now[1] != pids[1]

        wait_until(restarted, 90, message=f"torchrun restarts the group ({log_tail(group)})")
        before = max(steps)
        wait_until(lambda: min(metric(scrape(metrics_base + r), "streamssl_learner_model_step") for r in range(2)) > before,
                   120, message=f"the restarted group steps on from the checkpoint ({log_tail(group)})")
        log = Path(group.log_path).read_text()
        resumed = [int(m) for m in re.findall(r"resumed from checkpoint at step (\d+)", log)]
        resumed_1 = [int(m) for m in re.findall(r"rank 1 resumed the model at step (\d+)", log)]
        assert resumed and resumed_1 and resumed[-1] == resumed_1[-1] >= before, (resumed, resumed_1, before)
        print(f"steps before the kill {steps}, both ranks resumed at {resumed[-1]}")
        sub.close()
    finally:
        for c in captures:
            stop(c)
        stop(proxy)
        stop(group, timeout=60)

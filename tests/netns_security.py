"""Run inside a private network namespace (``unshare --net``) by tests/test_security.py.

The namespace is made here: loopback up, plus ``ADDRESS`` (not in 127/8, so the daemons
treat it as a wide address) on the same interface. Nothing outside the namespace sees
either, so the host's network is untouched and fixed ports cannot collide.

Real processes only: a ``streamssl learn`` bound to ``ADDRESS`` with CURVE and an
allow-list holding one client key, captures with the authorised key, a stranger's key
and no key, and subscribers likewise. Prints one JSON object of what was observed; the
test decides what is right.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import REPO, metric, scrape, start_streamssl, stop, wait_until  # noqa: E402

from streamssl import wire  # noqa: E402
from streamssl.config import TransportConfig  # noqa: E402
from streamssl.transport import make_socket, write_keypair  # noqa: E402

ADDRESS = "10.213.0.1"
AUDIO, EMBEDDINGS, LEARNER_METRICS, CAPTURE_METRICS = 5600, 5700, 9108, 9109
ENOUGH_EMBEDDINGS = 10  # ~2 s of the authorised capture's 200-ms windows


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def reachable(host: str, port: int) -> bool:
    try:
        scrape(port, host=host, timeout=1.0)
        return True
    except (urllib.error.URLError, OSError):
        return False


def embeddings_seen(configs: dict[str, TransportConfig], enough: str, count: int, timeout_s: float) -> dict[str, int]:
    """Embeddings each subscriber receives, all listening at once, until the ``enough`` one has
    seen ``count`` (a count, not a time: on a slow machine the window simply lasts longer).

    The others share the same window: in that time an admitted subscriber is handed the same
    frames, so zero for them means refused, not merely not yet joined."""
    ctx = zmq.Context.instance()
    socks = {}
    for who, cfg in configs.items():
        socks[who] = make_socket(ctx, zmq.SUB, cfg, connect=f"tcp://{ADDRESS}:{EMBEDDINGS}")
        socks[who].setsockopt(zmq.SUBSCRIBE, b"")
    seen = dict.fromkeys(configs, 0)
    poller = zmq.Poller()
    for s in socks.values():
        poller.register(s, zmq.POLLIN)
    end = time.monotonic() + timeout_s
    try:
        while seen[enough] < count and time.monotonic() < end:
            for sock, _ in poller.poll(100):
                who = next(w for w, s in socks.items() if s is sock)
                wire.decode_embedding(sock.recv_multipart())
                seen[who] += 1
    finally:
        for s in socks.values():
            s.close(0)
    return seen


def main() -> int:
    ip("link", "set", "lo", "up")
    ip("addr", "add", f"{ADDRESS}/32", "dev", "lo")
    tmp = Path(tempfile.mkdtemp(prefix="streamssl-netns-"))
    server_public, server_secret = write_keypair(tmp / "server", "learner")
    _, client_secret = write_keypair(tmp / "clients", "capture")
    _, stranger_secret = write_keypair(tmp / "strangers", "stranger")
    small = str(REPO / "tests" / "configs" / "small.toml")
    wide = ["--audio-bind", f"tcp://{ADDRESS}:{AUDIO}", "--embeddings-bind", f"tcp://{ADDRESS}:{EMBEDDINGS}"]
    facts: dict[str, object] = {}

    # Without CURVE the learner must refuse the wide address and say why.
    plain = subprocess.run([sys.executable, "-m", "streamssl", "learn", "--config", small, *wide, "--device", "cpu",
                            "--metrics-port", "0"], capture_output=True, text=True, timeout=600, cwd=REPO)
    facts["plain_learner_rc"] = plain.returncode
    facts["plain_learner_says_curve"] = "without CURVE" in plain.stderr + plain.stdout

    learner = start_streamssl(
        "learn", "--config", small, *wide, "--device", "cpu", "--metrics-port", str(LEARNER_METRICS),
        "--set", f"transport.curve_secret_key={server_secret}", "--set", f"transport.curve_authorized_dir={tmp / 'clients'}",
        log_path=tmp / "learner.log",
    )
    captures = []
    try:
        wait_until(lambda: reachable("127.0.0.1", LEARNER_METRICS) or learner.poll() is not None, 90,
                   message="learner /metrics")
        keys = {
            "authorised": ["--set", f"transport.curve_server_key={server_public}",
                           "--set", f"transport.curve_secret_key={client_secret}"],
            "stranger": ["--set", f"transport.curve_server_key={server_public}",
                         "--set", f"transport.curve_secret_key={stranger_secret}"],
            "anonymous": ["--set", f"transport.curve_server_key={server_public}"],
            "plaintext": [],
        }
        for i, (who, args) in enumerate(keys.items()):
            metrics_port = ["--metrics-port", str(CAPTURE_METRICS)] if who == "authorised" else ["--metrics-port", "0"]
            captures.append(start_streamssl(
                "capture", "--source", "synth", "--stream-id", who, "--connect", f"tcp://{ADDRESS}:{AUDIO}",
                "--window-ms", "200", *metrics_port, *args, log_path=tmp / f"capture-{who}.log",
            ))
        wait_until(lambda: metric(scrape(LEARNER_METRICS), "streamssl_learner_windows_received_total",
                                  stream="authorised") >= 5, 60, message="authorised windows at the learner")
        facts["subscriber_embeddings"] = embeddings_seen({
            "authorised": TransportConfig(curve_server_key=str(server_public), curve_secret_key=str(client_secret)),
            "stranger": TransportConfig(curve_server_key=str(server_public), curve_secret_key=str(stranger_secret)),
            "plaintext": TransportConfig(),
        }, enough="authorised", count=ENOUGH_EMBEDDINGS, timeout_s=60)
        samples = scrape(LEARNER_METRICS)
        facts["windows_received"] = {
            who: metric(samples, "streamssl_learner_windows_received_total", stream=who) for who in keys
        }
        facts["captures_running"] = {who: c.poll() is None for who, c in zip(keys, captures)}
        facts["metrics_reachable"] = {
            "learner_loopback": reachable("127.0.0.1", LEARNER_METRICS),
            "learner_wide": reachable(ADDRESS, LEARNER_METRICS),
            "capture_loopback": reachable("127.0.0.1", CAPTURE_METRICS),
            "capture_wide": reachable(ADDRESS, CAPTURE_METRICS),
        }
    finally:
        for c in captures:
            stop(c)
        facts["learner_rc"] = stop(learner)
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Transport security: loopback by default, CURVE for anything wider, size limits on receivers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import zmq

from streamssl.config import ConfigError, TransportConfig
from streamssl.transport import is_loopback, make_socket, start_authenticator, write_keypair
from support import free_endpoint, free_port


@pytest.mark.parametrize("endpoint,loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.9.9.9:5555", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False),
    ("tcp://eth0:5555", False),
])
def test_loopback_is_recognised(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_binding_beyond_loopback_without_curve_is_refused():
    with pytest.raises(ConfigError, match="without CURVE"):
        make_socket(zmq.Context.instance(), zmq.PULL, TransportConfig(), bind=f"tcp://0.0.0.0:{free_port()}")


def test_keys_command_writes_a_pair_with_a_private_secret(tmp_path):
    out = subprocess.run([sys.executable, "-m", "streamssl", "keys", "--dir", str(tmp_path), "--name", "learner"],
                         capture_output=True, text=True, check=True)
    assert "learner.key_secret" in out.stdout
    assert (tmp_path / "learner.key").is_file()
    assert (tmp_path / "learner.key_secret").stat().st_mode & 0o077 == 0


def _roundtrip(server_cfg: TransportConfig, client_cfg: TransportConfig, endpoint: str) -> bytes | None:
    ctx = zmq.Context()
    auth = start_authenticator(ctx, server_cfg)
    pull = make_socket(ctx, zmq.PULL, server_cfg, bind=endpoint)
    push = make_socket(ctx, zmq.PUSH, client_cfg, connect=endpoint)
    try:
        if push.poll(2000, zmq.POLLOUT):  # writable only once a (CURVE) handshake succeeded
            push.send(b"audio", zmq.NOBLOCK)
        return pull.recv() if pull.poll(2000) else None
    finally:
        push.close(0)
        pull.close(0)
        if auth:
            auth.stop()
        ctx.term()


def test_curve_lets_authorised_clients_through_and_keeps_others_out(tmp_path):
    server_public, server_secret = write_keypair(tmp_path / "server", "learner")
    _, client_secret = write_keypair(tmp_path / "clients", "capture")
    _, stranger_secret = write_keypair(tmp_path / "strangers", "stranger")
    server = TransportConfig(curve_secret_key=str(server_secret), curve_authorized_dir=str(tmp_path / "clients"))
    endpoint = free_endpoint()
    good = TransportConfig(curve_server_key=str(server_public), curve_secret_key=str(client_secret))
    assert _roundtrip(server, good, endpoint) == b"audio"
    stranger = TransportConfig(curve_server_key=str(server_public), curve_secret_key=str(stranger_secret))
    assert _roundtrip(server, stranger, free_endpoint()) is None
    plaintext = TransportConfig()
    assert _roundtrip(server, plaintext, free_endpoint()) is None


def test_receivers_refuse_messages_over_the_size_limit():
    endpoint = free_endpoint()
    ctx = zmq.Context()
    pull = make_socket(ctx, zmq.PULL, TransportConfig(max_message_bytes=1000), bind=endpoint)
    push = make_socket(ctx, zmq.PUSH, TransportConfig(), connect=endpoint)
    try:
        push.send(b"x" * 5000)
        assert not pull.poll(1000), "an oversized message was delivered"
        push.close(0)
        push = make_socket(ctx, zmq.PUSH, TransportConfig(), connect=endpoint)  # libzmq dropped the offender
        push.send(b"x" * 500)
        assert pull.poll(5000) and pull.recv() == b"x" * 500
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()

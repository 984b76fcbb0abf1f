"""ZeroMQ sockets with every option set on purpose.

libzmq's defaults suit none of our daemons: LINGER is infinite (a daemon would hang at
exit), reconnect back-off is uncapped, receivers accept messages of any size (here: bounded, see ``LIBZMQ_CEILING``), and dead
TCP peers are never noticed. ``make_socket`` sets them all, binds or connects
explicitly, and refuses to bind beyond loopback without CURVE unless told to.

Dead-peer detection differs by pattern. PUB/SUB never back-pressures (PUB drops), so
ZMTP heartbeats work there. PUSH/PULL audio *does* back-pressure when the learner falls
behind: libzmq then stops reading the connection, the sender's PINGs wait behind audio
in the TCP buffer, the heartbeat times out and the sender reconnects mid-flood (seen
here as reordered windows and a libzmq assertion in the learner). So audio sockets
use kernel TCP keepalive instead, which no application-level queue can starve.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import zmq
import zmq.auth

from streamssl.config import ConfigError, TransportConfig

log = logging.getLogger(__name__)

_RECEIVERS = {zmq.PULL, zmq.SUB, zmq.XSUB, zmq.XPUB, zmq.ROUTER, zmq.DEALER, zmq.PAIR}
_BACKPRESSURED = {zmq.PUSH, zmq.PULL}  # see the module docstring: no ZMTP heartbeats here
# Receivers take messages up to this many times ``max_message_bytes`` into memory, so a
# message over the limit reaches the application and is rejected *and counted* with its
# reason (``too_large``). Past the ceiling libzmq itself cuts the sender's connection
# before buffering the message (``ZMQ_MAXMSGSIZE``): memory stays bounded, and the cut is
# visible only as a disconnect (libzmq reports no reason), which the learner counts.
LIBZMQ_CEILING = 4


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[6:].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    if host == "*":
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or interface name: assume it is reachable from outside


def make_socket(
    ctx: zmq.Context,
    kind: int,
    cfg: TransportConfig,
    *,
    bind: str | None = None,
    connect: str | None = None,
) -> zmq.Socket:
    """Create a socket of ``kind`` and bind or connect it to exactly one endpoint."""
    if (bind is None) == (connect is None):
        raise ValueError("give exactly one of bind= or connect=")
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, cfg.linger_ms)
    sock.setsockopt(zmq.SNDHWM, cfg.hwm)
    sock.setsockopt(zmq.RCVHWM, cfg.hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, cfg.reconnect_max_ms)
    if kind in _RECEIVERS:
        sock.setsockopt(zmq.MAXMSGSIZE, LIBZMQ_CEILING * cfg.max_message_bytes)
    if cfg.heartbeat_ms and kind in _BACKPRESSURED:
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, max(1, cfg.heartbeat_ms // 1000))
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(1, cfg.heartbeat_ms // 1000))
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
    elif cfg.heartbeat_ms:
        sock.setsockopt(zmq.HEARTBEAT_IVL, cfg.heartbeat_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, cfg.heartbeat_ms * 3)
        sock.setsockopt(zmq.HEARTBEAT_TTL, cfg.heartbeat_ms * 3)
    try:
        if bind is not None:
            _secure_server(sock, cfg, bind)
            sock.bind(bind)
        else:
            _secure_client(sock, cfg)
            sock.connect(connect)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise ConfigError(f"cannot {'bind' if bind else 'connect'} {bind or connect}: {exc}") from None
    return sock


def _secure_server(sock: zmq.Socket, cfg: TransportConfig, endpoint: str) -> None:
    if cfg.curve_secret_key:
        public, secret = zmq.auth.load_certificate(cfg.curve_secret_key)
        if secret is None:
            raise ConfigError(f"transport.curve_secret_key = {cfg.curve_secret_key!r}: holds no secret key")
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
        return
    if not is_loopback(endpoint) and not cfg.allow_insecure_bind:
        raise ConfigError(
            f"bind {endpoint}: refusing to listen beyond loopback without CURVE; "
            "set transport.curve_secret_key (see `streamssl keys`) or transport.allow_insecure_bind=true"
        )


def _secure_client(sock: zmq.Socket, cfg: TransportConfig) -> None:
    if not cfg.curve_server_key:
        return
    server_public, _ = zmq.auth.load_certificate(cfg.curve_server_key)
    if cfg.curve_secret_key:
        public, secret = zmq.auth.load_certificate(cfg.curve_secret_key)
    else:
        public, secret = zmq.curve_keypair()  # anonymous client; servers with an allow-list refuse it
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def start_authenticator(ctx: zmq.Context, cfg: TransportConfig):
    """Restrict CURVE clients to the certificates in ``curve_authorized_dir``.

    Returns the running authenticator (stop it at shutdown) or None when no CURVE or no
    allow-list is configured (then any client that knows the server key may connect).
    """
    if not cfg.curve_secret_key:
        return None
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    if cfg.curve_authorized_dir:
        auth.configure_curve(domain="*", location=str(Path(cfg.curve_authorized_dir)))
    else:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    return auth


def write_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)

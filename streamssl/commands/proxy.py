"""``streamssl proxy``: one embeddings endpoint for the ranks of a learner group.

Each rank publishes its own streams' embeddings on its own PUB socket (the configured
embeddings port + rank). The proxy connects an XSUB socket to all of them and binds one
XPUB socket, joined by ZeroMQ's own ``zmq.proxy`` (here ``proxy_steerable``, so SIGTERM
ends it cleanly): subscribers connect once, and their stream filters (topics) travel
upstream to every rank as usual. It applies the daemons' rules: binds beyond loopback
only with CURVE (``transport.curve_secret_key``), CURVE to the ranks with
``transport.curve_server_key``, receive size limits from ``transport.max_message_bytes``.
Messages are forwarded as they are (not decoded), so a subscriber sees exactly what the
rank published; PUB/SUB drops nothing below the high-water mark (``transport.hwm``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

import zmq

from streamssl import config
from streamssl.cli import add_config_arguments
from streamssl.transport import make_socket, start_authenticator

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--connect", required=True,
                   help="the ranks' embeddings endpoints, comma-separated, e.g. tcp://127.0.0.1:5700,tcp://127.0.0.1:5701")
    p.add_argument("--bind", default="tcp://127.0.0.1:5556", help="the one endpoint subscribers connect to")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, args.overrides)
    upstream = [e.strip() for e in args.connect.split(",")]
    for e in [*upstream, args.bind]:
        if problem := config.endpoint(e):
            raise config.ConfigError(f"{e!r} {problem}")
    ctx = zmq.Context()
    auth = start_authenticator(ctx, cfg.transport)
    xsub = make_socket(ctx, zmq.XSUB, cfg.transport, connect=upstream[0])
    for e in upstream[1:]:
        xsub.connect(e)
    xpub = make_socket(ctx, zmq.XPUB, cfg.transport, bind=args.bind)
    control = ctx.socket(zmq.PAIR)
    control.bind(f"inproc://proxy-control-{id(control)}")
    stopper = ctx.socket(zmq.PAIR)
    stopper.connect(f"inproc://proxy-control-{id(control)}")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    # The proxy runs on its own thread; the main thread stays free for signals and ends it
    # through the control socket.
    forwarder = threading.Thread(target=zmq.proxy_steerable, args=(xsub, xpub, None, control), name="proxy", daemon=True)
    forwarder.start()
    log.info("proxy: %s -> %s", ", ".join(upstream), args.bind)
    try:
        while not stopping.wait(0.5):
            if not forwarder.is_alive():
                log.error("the proxy stopped on its own")
                return 1
    finally:
        stopper.send(b"TERMINATE")
        forwarder.join(5)
        for s in (xsub, xpub, control, stopper):
            s.close(0)
        if auth is not None:
            auth.stop()
        ctx.term()
    return 0

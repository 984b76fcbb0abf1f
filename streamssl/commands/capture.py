"""``streamssl capture``: read an audio source and push windows to a learner.

Command flags are turned into ``capture.*`` overrides applied after ``--config`` and
``--set``, so a flag and a config file are validated by the same code and fail the
same way (one line, exit code 2).
"""

from __future__ import annotations

import argparse

from streamssl import config
from streamssl.cli import add_config_arguments, flag_overrides

# flag dest -> config field
_FLAGS = {
    "source": "capture.source",
    "connect": "capture.connect",
    "window_ms": "capture.window_ms",
    "stream_id": "capture.stream_id",
    "metrics_port": "capture.metrics_port",
    "sample_rate": "capture.sample_rate",
    "channels": "capture.channels",
    "dtype": "capture.dtype",
    "max_seconds": "capture.max_seconds",
    "seed": "capture.seed",
    "realtime": "capture.realtime",
    "loop": "capture.loop",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="mic[:DEVICE] | file:PATH | ffmpeg:URL_OR_PATH | stdin | speech[:turns|sentences] (turns: a conversation of real voices, the default; sentences: a new espeak-ng voice per sentence) | synth | scenes[:NOVEL_AFTER_S]")
    parser.add_argument("--connect", help="learner audio endpoint, e.g. tcp://127.0.0.1:5555; a learner group's ranks comma-separated (the stream goes to one, by a hash of its id)")
    parser.add_argument("--window-ms", help="window length in milliseconds")
    parser.add_argument("--stream-id", help="stream name (1..32 bytes)")
    parser.add_argument("--metrics-port", help="port of /metrics on capture.metrics_host (0 disables)")
    parser.add_argument("--sample-rate", help="sample rate of the windows, Hz")
    parser.add_argument("--channels", help="channels of the windows")
    parser.add_argument("--dtype", help="int16 | float32 on the wire")
    parser.add_argument("--max-seconds", help="stop after this much audio (0 = forever)")
    parser.add_argument("--seed", help="seed of the speech/synth/scenes generators")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false", default=None,
                        help="read file/stdin/ffmpeg/speech/synth/scenes as fast as consumed, with back-pressure instead of drops")
    parser.add_argument("--loop", action="store_true", default=None, help="loop file/ffmpeg sources")
    parser.add_argument("--summary-json", metavar="FILE",
                        help="on exit, write the final counts (windows sent, dropped by reason, audio seconds) as JSON")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from streamssl.capture.daemon import run_capture

    cfg = config.load(args.config or None, flag_overrides(args, _FLAGS))
    return run_capture(cfg, args.summary_json)

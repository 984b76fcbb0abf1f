"""The ``streamssl`` command: a dispatcher over one module per subcommand.

Each module in ``streamssl.commands`` exposes ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``streamssl capture`` starts
without importing torch. Config problems become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from streamssl import __version__
from streamssl.config import ConfigError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "capture": ("streamssl.commands.capture", "read an audio source and push windows to a learner"),
    "learn": ("streamssl.commands.learn", "run the online learner daemon"),
    "subscribe": ("streamssl.commands.subscribe", "receive embeddings from a learner"),
    "events": ("streamssl.commands.events", "cluster embeddings online: kinds of sound and novelty, per window"),
    "proxy": ("streamssl.commands.proxy", "one embeddings endpoint for the ranks of a learner group (XSUB/XPUB)"),
    "demo": ("streamssl.commands.demo", "learner + speech capture + subscriber on loopback, with a live display"),
    "embed": ("streamssl.commands.embed", "embed audio files offline with a checkpoint"),
    "keys": ("streamssl.commands.keys", "write a CURVE key pair"),
    "bench": ("streamssl.commands.bench", "measure throughput, latency and efficiency"),
    "eval": ("streamssl.commands.eval", "linear-probe evaluation of a checkpoint against baselines"),
    "data": ("streamssl.commands.data", "generate labelled evaluation data"),
    "report": ("streamssl.commands.report", "plot loss, drift and throughput of a run"),
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and --set, shared by every command that reads a config."""
    parser.add_argument("--config", help="TOML config file (configs/default.toml if omitted)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
        help="override one config field; repeatable",
    )


def flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """``--set`` values, then every given flag as ``section.field=value`` (flag dest -> field),
    so a flag and a config file are validated by the same code and fail the same way."""
    given = ((field, getattr(args, dest)) for dest, field in flags.items())
    return [*args.overrides, *(f"{field}={value}" for field, value in given if value is not None)]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``command``, that command's module adds its arguments.

    Only the chosen command's module is imported (so ``streamssl capture`` never
    imports torch); the others parse as bare subcommands, which is all ``--help`` needs.
    """
    parser = argparse.ArgumentParser(prog="streamssl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"streamssl {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command name is found before argparse sees --help, so the chosen command's
    # own arguments are there for its --help too.
    parser = build_parser(next((a for a in argv if a in COMMANDS), None))
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(module.run(args) or 0)
    except ConfigError as exc:
        print(f"streamssl {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

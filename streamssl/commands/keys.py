"""``streamssl keys``: write a CURVE certificate pair for transport security."""

from __future__ import annotations

import argparse

from streamssl.transport import write_keypair


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="keys", help="directory for NAME.key and NAME.key_secret")
    p.add_argument("--name", default="server", help="certificate base name")


def run(args: argparse.Namespace) -> int:
    public, secret = write_keypair(args.dir, args.name)
    print(f"public: {public}\nsecret: {secret} (mode 600; give only the public file to peers)")
    return 0

"""The checks every config field declares: one function per rule, returning why a value
cannot work (one line for the user) or None. ``_f`` attaches a check and a doc to a field."""

from __future__ import annotations

import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any, Callable

from streamssl.wire import stream_id_problem

ENDPOINT_RE = re.compile(r"^(tcp://(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})|ipc://.+|inproc://.+)$")


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line for the user."""



def _f(default: Any, *, check: Callable[[Any], str | None] | None = None, doc: str = "") -> Any:
    return field(default=default, metadata={"check": check, "doc": doc})


def positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v) -> str | None:
    return None if v >= 0 else "must be >= 0"


def in_range(lo, hi) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be in [{lo}, {hi}]"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"allowed values: {', '.join(choices)}"


def endpoint(v: str) -> str | None:
    if not v:
        return None  # empty means "disabled" where a section allows it
    m = ENDPOINT_RE.match(v)
    if not m:
        return "must look like tcp://HOST:PORT, ipc://PATH or inproc://NAME"
    if m.group(3) is not None and not 0 < int(m.group(3)) < 65536:
        return "port must be in 1..65535"
    return None


def endpoints(v: str) -> str | None:
    """A comma-separated list of endpoints, each as ``endpoint`` wants it."""
    parts = [p.strip() for p in v.split(",")]
    if not all(parts):
        return "must be one endpoint or several separated by commas, none empty"
    problems = [f"{p!r} {why}" for p in parts if (why := endpoint(p))]
    return "; ".join(problems) or None


def existing_file_or_empty(v: str) -> str | None:
    return None if not v or Path(v).expanduser().is_file() else f"file {v!r} does not exist"


def writable_dir_or_empty(v: str) -> str | None:
    if not v:
        return None
    p = Path(v).expanduser()
    parent = p if p.exists() else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if p.exists() and not p.is_dir():
        return f"{v!r} exists and is not a directory"
    return None if os.access(parent, os.W_OK) else f"{v!r} is not writable"


def port(v: int) -> str | None:
    return None if 0 <= v < 65536 else "must be a port in 0..65535 (0 disables)"


def stream_id(v: str) -> str | None:
    return stream_id_problem(v)  # the header's limit, defined once by the wire format

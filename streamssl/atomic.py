"""Writing a file so that a reader sees the old one or the new one, never half of one.

One home for checkpoints (``learning/checkpoint.py``), the events clusterer's state and the
capture's exit summary; torch-free, so a capture box can use it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into ``path`` so a reader sees the old file or the new one, never half of one:
    a temp file in the same directory, fsync, rename, fsync of the directory. On any failure
    (a full disk) the temp file is removed and the old file stays."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{threading.get_native_id()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Checkpoints: everything a learner needs to continue, written so a crash never corrupts one.

A checkpoint is one ``torch.save`` file of tensors and plain containers (no pickled
classes): the learner's ``state_dict``, the config as a dict, the daemon's own extras
(stream sequence positions, probe set, drift state) and a format number. Writes are
atomic — temp file in the same directory, fsync, rename, fsync of the directory — so a
reader sees the previous checkpoint or the new one, never half of one, and a full disk
leaves the previous one in place. Loading uses ``torch.load(weights_only=True)``; a
file that fails to load or lacks the expected keys is refused with ``CheckpointError``
and ``load_latest`` falls back to the next newest.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from streamssl import config as config_mod

log = logging.getLogger(__name__)

FORMAT = 1
PATTERN = "ckpt-*.pt"
_REQUIRED = ("format", "learner", "config", "saved_at")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (truncated, corrupted, wrong format)."""


def save(learner, directory: str | Path, keep: int = 3, extra: dict | None = None) -> Path:
    """Atomically write ``ckpt-<step>.pt`` into ``directory``; keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{learner.step:012d}.pt"
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    payload = {
        "format": FORMAT,
        "saved_at": time.time(),
        "config": learner.cfg.to_dict(),
        "learner": learner.state_dict(),
        "daemon": extra or {},
    }
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in sorted(directory.glob(PATTERN))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load(path: str | Path) -> dict:
    """Read and check one checkpoint file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise CheckpointError(f"{path}: not a streamssl checkpoint (missing {', '.join(_REQUIRED)})")
    if state["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state['format']}, this build reads {FORMAT}")
    return state


def load_latest(directory: str | Path) -> dict | None:
    """The newest checkpoint in ``directory`` that loads; damaged ones are logged and skipped."""
    for path in sorted(Path(directory).glob(PATTERN), reverse=True):
        try:
            state = load(path)
        except CheckpointError as exc:
            log.error("refusing checkpoint, trying the previous one: %s", exc)
            continue
        state["path"] = str(path)
        return state
    return None


def learner_from_checkpoint(path_or_dir: str | Path, device: str = "cpu", cfg=None):
    """An OnlineLearner restored from a checkpoint file or the newest one in a directory."""
    from streamssl.learner import OnlineLearner

    p = Path(path_or_dir)
    state = load_latest(p) if p.is_dir() else load(p)
    if state is None:
        raise CheckpointError(f"{p}: no loadable checkpoint")
    learner = OnlineLearner(cfg or config_mod.from_dict(state["config"]), device=device)
    learner.load_state_dict(state["learner"])
    return learner

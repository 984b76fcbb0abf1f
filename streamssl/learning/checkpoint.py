"""Checkpoints: everything a learner needs to continue, written so a crash never corrupts one.

A checkpoint holds the learner's ``state_dict``, the config as a dict, the daemon's own
extras (stream positions, probe set, drift state) and a format number — tensors and
plain containers only, read back with ``torch.load(weights_only=True)``: no pickled
classes, no code runs on load.

Integrity: the payload is serialised once, its SHA-256 computed, and the file is an
envelope ``{"format", "sha256", "payload": uint8 tensor}``. A truncated file fails to
open; a flipped byte inside tensor data, which ``torch.load`` alone would read back as
silently wrong weights, fails the digest. Either way ``CheckpointError`` names the file
and the reason, and ``load_latest`` falls back to the previous good checkpoint.

Writes are atomic: a temp file in the same directory, fsync, rename, fsync of the
directory — a reader sees the previous checkpoint or the new one, never half of one, and
a full disk leaves the previous one in place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import time
from pathlib import Path

import numpy as np
import torch

from streamssl import config as config_mod
from streamssl.atomic import atomic_write  # noqa: F401 - re-exported: the checkpoint's own write

log = logging.getLogger(__name__)

FORMAT = 3  # 3: learner state split into core / streams / replay
PATTERN = "ckpt-*.pt"
_REQUIRED = ("format", "learner", "config", "saved_at")
# Sections that define the weights' shapes and meaning: always taken from the checkpoint.
MODEL_SECTIONS = ("features", "model", "objectives")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (truncated, corrupted, wrong format)."""


def _serialise(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(learner, directory: str | Path, keep: int = 3, extra: dict | None = None) -> Path:
    """Atomically write ``ckpt-<step>-<ns>.pt`` into ``directory``; keep the newest ``keep``."""
    return write(payload(learner.state_dict(), extra), directory, keep)


def payload(learner_state: dict, extra: dict | None = None) -> dict:
    """What a checkpoint holds, around a learner's ``state_dict`` (or its two halves joined)."""
    return {
        "format": FORMAT,
        "saved_at": time.time(),
        "config": learner_state["config"],
        "learner": learner_state,
        "daemon": extra or {},
    }


def write(state: dict, directory: str | Path, keep: int = 3) -> Path:
    """Atomically write a ``payload`` as ``ckpt-<step>-<ns>.pt``; keep the newest ``keep``.

    Needs no lock on the learner: ``state`` holds copies, so a thread may write it while
    the learner serves and trains (the learner daemon does)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(state["learner"]["core"]["step"])
    # The time suffix keeps two saves at one step (no update in between) from colliding.
    path = directory / f"ckpt-{step:012d}-{time.time_ns():020d}.pt"
    serialised = _serialise(state)
    envelope = {
        "format": FORMAT,
        "sha256": hashlib.sha256(serialised).hexdigest(),
        "payload": torch.frombuffer(bytearray(serialised), dtype=torch.uint8),
    }
    atomic_write(path, lambda f: torch.save(envelope, f))
    prune(directory, PATTERN, keep)
    return path


def prune(directory: Path, pattern: str, keep: int) -> None:
    """Delete all but the newest ``keep`` files matching ``pattern`` (their names sort by age)."""
    for old in sorted(directory.glob(pattern))[:-keep]:
        old.unlink(missing_ok=True)


def copied(obj):
    """``obj`` with every tensor and array copied: a module's or optimizer's ``state_dict`` shares
    their storage, and a checkpoint written by another thread must not see the next step."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        out = type(obj)((k, copied(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module's state_dict: versions that load_state_dict reads
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(copied(v) for v in obj)
    return obj


def load(path: str | Path) -> dict:
    """Read, verify and return one checkpoint; ``CheckpointError`` says why one is refused."""
    try:
        envelope = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot be loaded, truncated or damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(envelope, dict) or not {"format", "sha256", "payload"} <= envelope.keys():
        raise CheckpointError(f"{path}: not a streamssl checkpoint (no format/sha256/payload)")
    if envelope["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {envelope['format']}, this build reads {FORMAT}")
    payload = envelope["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != envelope["sha256"]:
        raise CheckpointError(f"{path}: corrupted (SHA-256 of the payload does not match the one written)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: payload cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise CheckpointError(f"{path}: not a streamssl checkpoint (missing {', '.join(_REQUIRED)})")
    return state


def newest_loadable(directory: str | Path, pattern: str, load_one, refused: type[Exception]):
    """``(path, load_one(path))`` for the newest file matching ``pattern`` (names sort by age) that
    loads, or None; each one refused (``refused`` raised) is logged and the previous one tried.
    The learner's checkpoints and the events service's clusterer states both resume this way."""
    for path in sorted(Path(directory).glob(pattern), reverse=True):
        try:
            return path, load_one(path)
        except refused as exc:
            log.error("refusing checkpoint, trying the previous one: %s", exc)
    return None


def load_latest(directory: str | Path) -> dict | None:
    """The newest checkpoint in ``directory`` that loads; damaged ones are logged and skipped."""
    found = newest_loadable(directory, PATTERN, load, CheckpointError)
    if found is None:
        return None
    path, state = found
    state["path"] = str(path)
    return state


def learner_from_checkpoint(path_or_dir: str | Path, device: str = "cpu", cfg=None):
    """An OnlineLearner restored from a checkpoint file or the newest good one in a directory.

    The architecture (features, model, objectives) always comes from the checkpoint, so
    the weights fit; a given ``cfg`` supplies everything else (learner, transport, ...).
    """
    from streamssl.learning.learner import OnlineLearner

    p = Path(path_or_dir)
    state = load_latest(p) if p.is_dir() else load(p)
    if state is None:
        raise CheckpointError(f"{p}: no loadable checkpoint")
    stored = config_mod.from_dict(state["config"])
    if cfg is not None:  # a copy: the caller's config stays as it was
        cfg = dataclasses.replace(
            cfg, **{section: getattr(stored, section) for section in MODEL_SECTIONS},
            learner=dataclasses.replace(cfg.learner, window_s=stored.learner.window_s),
        )
    learner = OnlineLearner(cfg or stored, device=device)
    learner.load_state_dict(state["learner"])
    return learner

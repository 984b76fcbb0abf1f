"""The rules of a source spec (``mic[:DEVICE]``, ``file:PATH``, ...): the one home both the
config check and ``capture.sources.open_source`` ask, so both refuse the same specs."""

from __future__ import annotations

from pathlib import Path

from streamssl.config.checks import ConfigError

SOURCE_KINDS = ("mic", "file", "ffmpeg", "stdin", "speech", "synth", "scenes")
SOURCE_SPECS = (
    "mic[:DEVICE], file:PATH, ffmpeg:URL_OR_PATH, stdin, speech[:turns|sentences], synth, scenes[:NOVEL_AFTER_S]"
)
SPEECH_MODES = ("turns", "sentences")  # speech's argument; none means turns (capture/sources/speech.py)


def source_spec_problem(spec: str) -> str | None:
    """Why ``spec`` names no source, or None. The one home of the source-spec rules:
    the config check below and ``parse_source_spec`` (used by ``open_source``) both ask here."""
    kind, _, arg = spec.partition(":")
    if kind not in SOURCE_KINDS:
        return f"unknown source {kind!r}; allowed: {SOURCE_SPECS}"
    if kind in ("file", "ffmpeg") and not arg:
        return f"{kind} needs a path or URL, e.g. {kind}:/path/to/audio.wav"
    if kind in ("stdin", "synth") and arg:
        return f"{kind} takes no argument"
    if kind == "speech" and arg and arg not in SPEECH_MODES:
        return f"speech:{arg}: the argument is the mode, one of {', '.join(SPEECH_MODES)} (none: turns)"
    if kind == "scenes" and arg:
        try:
            novel_after = float(arg)
        except ValueError:
            novel_after = -1.0
        if not novel_after >= 0:
            return f"scenes:{arg}: the argument is the second after which the novel kind joins (a number >= 0)"
    return None


def parse_source_spec(spec: str) -> tuple[str, str]:
    """``"file:/a.wav"`` -> ``("file", "/a.wav")``; ``"mic"`` -> ``("mic", "")``; ConfigError if invalid."""
    problem = source_spec_problem(spec)
    if problem:
        raise ConfigError(f"capture.source = {spec!r}: {problem}")
    kind, _, arg = spec.partition(":")
    return kind, arg


def source_spec(v: str) -> str | None:
    problem = source_spec_problem(v)
    if problem is None and v.startswith("file:") and not Path(v[5:]).expanduser().is_file():
        return f"file {v[5:]!r} does not exist"
    return problem

"""Reading a config: TOML file, then ``--set section.field=value`` overrides, then the checks."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Iterable

from streamssl.config.checks import ConfigError
from streamssl.config.sections import SECTIONS, Config



def _coerce(name: str, typ: str, value: Any) -> Any:
    """Turn a TOML value or a command-line string into the field's declared type."""
    from_cli = isinstance(value, str) and typ != "str"
    try:
        if typ == "bool":
            if isinstance(value, bool):
                return value
            if from_cli and value.lower() in ("1", "true", "yes", "on"):
                return True
            if from_cli and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
            return out
        if typ == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{name} = {value!r}: expected {typ}")


def _apply(cfg: Config, section: str, key: str, value: Any) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"[{section}]: unknown section; allowed: {', '.join(SECTIONS)}")
    obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    name = f"{section}.{key}"
    if key not in fields:
        raise ConfigError(f"{name}: unknown field; allowed: {', '.join(fields)}")
    setattr(obj, key, _coerce(name, str(fields[key].type), value))


def validate(cfg: Config) -> Config:
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            check = f.metadata.get("check")
            value = getattr(obj, f.name)
            problem = check(value) if check else None
            if problem:
                raise ConfigError(f"{section}.{f.name} = {value!r}: {problem}")
    if cfg.features.f_max > cfg.features.sample_rate / 2:
        raise ConfigError(
            f"features.f_max = {cfg.features.f_max}: must be <= sample_rate/2 = {cfg.features.sample_rate / 2}"
        )
    if cfg.features.hop_ms > cfg.features.win_ms:
        raise ConfigError(f"features.hop_ms = {cfg.features.hop_ms}: must be <= features.win_ms")
    if cfg.model.context == "transformer" and cfg.model.context_dim % cfg.model.transformer_heads:
        raise ConfigError(
            f"model.transformer_heads = {cfg.model.transformer_heads}: must divide model.context_dim = {cfg.model.context_dim}"
        )
    o = cfg.objectives
    if o.moco_horizon_s > o.moco_exclude_recent_s:
        raise ConfigError(f"objectives.moco_horizon_s = {o.moco_horizon_s}: must be <= objectives.moco_exclude_recent_s "
                          f"= {o.moco_exclude_recent_s} (a positive must not also be a negative)")
    if not (o.apc_weight or o.cpc_weight or o.moco_weight):
        raise ConfigError("objectives.apc_weight, cpc_weight and moco_weight are all 0: the learner would learn nothing")
    return cfg


def parse_override(text: str) -> tuple[str, str, str]:
    """``section.key=value`` -> (section, key, value)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.field=value, e.g. capture.window_ms=250")
    lhs, value = text.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    return section, key, value.strip()


def load(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config (or the defaults), apply ``section.key=value`` overrides, validate."""
    cfg = Config()
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"--config {str(path)!r}: file does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{p}: top-level key {section!r} must be a [section] table")
            for key, value in table.items():
                _apply(cfg, section, key, value)
    for text in overrides:
        _apply(cfg, *parse_override(text))
    return validate(cfg)


def from_dict(data: dict[str, dict[str, Any]]) -> Config:
    """Rebuild a validated Config from ``Config.to_dict()`` (e.g. stored in a checkpoint).

    Fields this build does not know are ignored, so a checkpoint from an older or newer
    build still loads; missing ones keep their defaults.
    """
    cfg = Config()
    for section, table in data.items():
        if section not in SECTIONS:
            continue
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key, value in table.items():
            if key in known:
                _apply(cfg, section, key, value)
    return validate(cfg)

"""The systemd units install as documented: `make install-units` renders daemons/*.service.in
with the venv's streamssl, and the result passes `systemd-analyze verify` (or, on a
machine without systemd-analyze, the unit text is checked instead: never skipped)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the venv running the tests holds the streamssl script the units must run
UNITS = ("streamssl-learn.service", "streamssl-capture@.service")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    if not (VENV / "bin" / "streamssl").exists():
        pytest.fail(f"{VENV}/bin/streamssl missing: the package is not installed in the test venv (make dev)")
    root = tmp_path_factory.mktemp("root")
    r = subprocess.run(["make", "-s", "install-units", f"VENV={VENV}", f"DESTDIR={root}", "CONFDIR=/etc/streamssl"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "etc" / "systemd" / "system"


def exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(unit)
    return parser["Service"]["ExecStart"].split()


@pytest.mark.parametrize("name", UNITS)
def test_rendered_unit_runs_the_venvs_streamssl(rendered, name):
    unit = rendered / name
    text = unit.read_text()
    assert "@STREAMSSL@" not in text and "@CONFDIR@" not in text, "a placeholder was left unrendered"
    argv = exec_start(unit)
    assert argv[0] == str(VENV / "bin" / "streamssl")
    assert os.access(argv[0], os.X_OK)
    assert argv[1] == ("learn" if "learn" in name else "capture")
    assert argv[2:4] == ["--config", "/etc/streamssl/learner.toml" if "learn" in name else "/etc/streamssl/%i.toml"]


@pytest.mark.parametrize("name", UNITS)
def test_rendered_unit_verifies(rendered, name):
    unit = rendered / name
    if "@." in name:  # a template verifies as an instance of it
        instance = rendered / name.replace("@.", "@mic.")
        instance.symlink_to(unit)
        unit = instance
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # no systemd here: check what verify would, from the text
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit)
        assert {"Unit", "Service", "Install"} <= set(parser.sections())
        assert Path(exec_start(unit)[0]).is_absolute()
        return
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not executable" not in r.stderr


def test_install_units_refuses_a_venv_without_streamssl(tmp_path):
    r = subprocess.run(["make", "-s", "install-units", f"VENV={tmp_path / 'nothing'}", f"DESTDIR={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "make venv" in r.stderr
    assert not (tmp_path / "etc").exists()


def test_installed_entry_point_is_what_the_units_run():
    """The units' ExecStart is the venv's console script; it dispatches like python -m streamssl."""
    r = subprocess.run([str(VENV / "bin" / "streamssl"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("streamssl ")

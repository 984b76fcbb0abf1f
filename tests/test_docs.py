"""The documents stay true to the tree: every command in the README, every stage module in
ARCHITECTURE.md, and no pointer to a document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamssl.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
ARCH = (REPO / "ARCHITECTURE.md").read_text()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_readme_lists_every_command(command):
    assert f"`streamssl {command}" in README


def test_architecture_names_every_module_of_the_stage_folders():
    pkg = REPO / "streamssl"
    modules = [p for p in pkg.glob("*.py") if p.name != "__init__.py"]
    assert "`streamssl/__init__.py`" in ARCH
    for stage in ("capture", "serving", "observability", "learning", "evaluation", "events"):
        modules += [p for p in (pkg / stage).glob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(pkg)) for p in modules if f"`{p.relative_to(pkg)}`" not in ARCH
               and f"`{p.name}`" not in ARCH]
    assert not missing, f"ARCHITECTURE.md does not say what these own: {missing}"
    for folder in ("capture/sources/", "learning/", "evaluation/", "commands/"):
        assert f"`{folder}`" in ARCH


def test_no_document_points_outside_the_repository():
    texts = {p: p.read_text() for p in [REPO / "README.md", REPO / "ARCHITECTURE.md", *REPO.glob("streamssl/**/*.py")]}
    for path, text in texts.items():
        assert not re.search(r"DESIGN\.md|shared folder|\.\./shared", text), path


def test_wire_table_matches_the_header_struct():
    from streamssl import wire

    offsets = [int(m) for m in re.findall(r"^\| (\d+) \| \d+ \|", ARCH, flags=re.M)]
    sizes = [int(m) for m in re.findall(r"^\| \d+ \| (\d+) \|", ARCH, flags=re.M)]
    assert offsets[0] == 0 and sum(sizes) == wire.HEADER_SIZE
    assert all(a + s == b for a, s, b in zip(offsets, sizes, offsets[1:]))
    assert "<4sBBBB32sQQqqIIQII" in ARCH and wire._HEADER.format == "<4sBBBB32sQQqqIIQII"  # noqa: SLF001

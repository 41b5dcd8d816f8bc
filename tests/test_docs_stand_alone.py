"""The documentation stands alone: every file it names is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `path/to/file.md` in code spans (not URL paths such as `/openapi.json`), and [text](relative/link) targets.
NAMED_FILE = re.compile(r"`(\w[\w./-]*\.(?:md|py|toml|json))`|\]\((?!https?:|#)([^)#\s]+)")


def exists_in_repository(name: str, doc: Path) -> bool:
    if (doc.parent / name).exists() or (ROOT / name).exists() or (ROOT / "src" / "modelport" / name).exists():
        return True
    return "/" not in name and any((ROOT / "src").rglob(name))  # a module named by its file alone


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_file_a_doc_names_is_in_the_repository(doc: Path):
    named = {span or link for span, link in NAMED_FILE.findall(doc.read_text())}
    missing = sorted(name for name in named if not exists_in_repository(name, doc))
    assert not missing, f"{doc.name} names files that are not in the repository: {missing}"


def test_the_architecture_needs_no_other_design_file():
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert "DESIGN.md" not in text and "../shared" not in text

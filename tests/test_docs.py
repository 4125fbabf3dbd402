"""The README stays a one-sitting read (issue 22) and the generated references stay current."""
import re
from pathlib import Path

from petlib.config import params_markdown

REPO = Path(__file__).resolve().parent.parent


def test_params_reference_is_current():
    assert (REPO / "docs" / "params.md").read_text() == params_markdown(), \
        "docs/params.md is stale: run `make docs`"


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes; the rest belongs in docs/"
    for cmd in ("make study", "make test", "make test-fast", "make lab"):
        assert cmd in text, cmd
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_every_doc_is_indexed_in_the_readme():
    text = (REPO / "README.md").read_text()
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in text, f"README's docs index lacks docs/{doc.name}"

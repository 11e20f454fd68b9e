"""The documentation stays whole: a short README, links that resolve, every page in the nav, and a
strict MkDocs build (docs/ is the single source; see ``mkdocs.yml`` and ``make docs``)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def relative_links(page: Path) -> list[str]:
    """Links to files of the checkout: no scheme, no pure anchor; code blocks are not text."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", [ROOT / "README.md", *doc_pages()], ids=lambda p: p.name)
def test_relative_links_point_to_files(page: Path) -> None:
    missing = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: missing link targets {missing}"


def nav_files(nav: object) -> set[str]:
    """Every page named anywhere in the (nested) nav of mkdocs.yml."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(nav_files(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(nav_files(value) for value in nav.values()))
    return set()


def mkdocs_nav() -> set[str]:
    # the nav is plain YAML; mkdocs.yml has no custom tags, so safe_load reads it
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return nav_files(config["nav"])


def test_every_page_is_in_the_nav() -> None:
    nav = mkdocs_nav()
    pages = {p.relative_to(DOCS).as_posix() for p in doc_pages()}
    assert pages - nav == set(), "pages missing from the mkdocs nav"
    assert nav - pages == set(), "nav entries without a page"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
     check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (site / "index.html").exists()
    assert (site / "api" / "genome" / "index.html").exists()

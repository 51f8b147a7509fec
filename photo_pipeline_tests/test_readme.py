"""The README stands alone: every link in it (and in the contract it points at) resolves inside
the repository - a file that a clone has, and a heading there for an #anchor."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from photo_pipeline_tests.markdown import anchors, links

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("document", ["README.md", "docs/contract.md"])
def test_every_link_resolves_inside_the_repository(document: str) -> None:
    source = ROOT / document
    broken = []
    for target in links(source.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https", "mailto"):
            continue
        path = (source.parent / parts.path).resolve() if parts.path else source
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(f"{target}: no {path} in the repository")
        elif parts.fragment and parts.fragment not in anchors(path):
            broken.append(f"{target}: no heading #{parts.fragment} in {path.relative_to(ROOT)}")
    assert broken == [], broken


def test_the_readme_links_the_contract_and_shows_the_ui_s_port() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/contract.md" in links(readme)
    assert "photo-pipeline ui --port" in readme
    assert "shared/" not in readme, "a clone has no shared/ folder"

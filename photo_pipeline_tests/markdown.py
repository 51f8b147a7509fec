"""Reading the repository's Markdown in tests: sections, table rows, links and GitHub's anchors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`]+)`")
PLANNED = "*(planned"


@dataclass(frozen=True)
class Row:
    cells: list[str]

    @property
    def planned(self) -> bool:
        return any(PLANNED in cell for cell in self.cells)

    def names(self, column: int = 0) -> list[str]:
        """The backticked names of a cell."""
        return CODE.findall(self.cells[column])


def sections(text: str, level: int) -> dict[str, str]:
    """Heading (without its #s) -> the text under it, up to the next heading of that level or higher."""
    marker = "#" * level + " "
    found: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if re.match(rf"^#{{1,{level}}} ", line):
            current = line[len(marker) :].strip() if line.startswith(marker) else None
            if current is not None:
                found[current] = ""
            continue
        if current is not None:
            found[current] += line + "\n"
    return found


def table_rows(text: str) -> list[Row]:
    """The body rows of the Markdown tables in `text` (header and rule rows skipped)."""
    rows: list[Row] = []
    in_body = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_body = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if all(set(cell) <= set("-: ") for cell in cells):
            in_body = True
        elif in_body:
            rows.append(Row(cells))
    return rows


def links(text: str) -> list[str]:
    return LINK.findall(text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}

"""The docs hold to the tree and the code: the map of the code on docs/architecture.md names every
package and module (and nothing that is not there), the README links only to pages that exist,
every page is in mkdocs.yml's nav, and the reference tables name every setting and every refusal.
Pure file reading (and two imports), no build: `make lint` builds the site with --strict."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"

# Every module of these is named on the map, one row each.
MAPPED_PACKAGES = ("worker", "producers", "devtools", "bench")
# Top-level folders that are not the project's: made by tools, or ignored by git.
NOT_OURS = {"build", "dist", "site", "node_modules", "__pycache__"}
VISIBLE_HIDDEN = {".ci"}  # the one hidden folder that is the project's

ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)
TICKED = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next `## `."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def mapped() -> set[str]:
    """The paths the Layout section's tables name in their first column."""
    return set(ROW.findall(section(ARCHITECTURE.read_text(), "Layout")))


def top_level_folders() -> set[str]:
    return {
        f"{path.name}/"
        for path in ROOT.iterdir()
        if path.is_dir()
        and path.name not in NOT_OURS
        and not path.name.endswith(".egg-info")
        and (not path.name.startswith(".") or path.name in VISIBLE_HIDDEN)
    }


def modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for package in MAPPED_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_the_map_names_every_module_and_top_level_folder() -> None:
    missing = (modules() | top_level_folders()) - mapped()
    assert not missing, f"add to docs/architecture.md's Layout, one row each: {sorted(missing)}"


def test_the_map_names_every_test_tier() -> None:
    tiers = {f"tests/{p.name}/" for p in (ROOT / "tests").iterdir() if (p / "__init__.py").exists()}
    assert tiers - mapped() == set()


def test_every_path_the_architecture_page_names_exists() -> None:
    roots = {name.rstrip("/") for name in top_level_folders()} | {"Procfile", "Makefile"}
    named = {t for t in TICKED.findall(ARCHITECTURE.read_text()) if t.split("/", 1)[0] in roots}
    assert mapped() <= named | {"Procfile", "Makefile"}
    gone = sorted(t for t in named if not (ROOT / t).exists())
    assert not gone, f"docs/architecture.md names paths that do not exist: {gone}"


def slug(heading: str) -> str:
    """Python-Markdown's toc slug, as mkdocs makes a heading's anchor."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_links_only_to_docs_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    local = [t for t in LINK.findall(readme) if not t.startswith(("http://", "https://", "mailto:"))]
    assert local, "the README links to the docs pages"
    for target in local:
        path, _, anchor = target.partition("#")
        assert path.startswith("docs/") and path.endswith(".md"), f"{target}: link a docs page"
        page = ROOT / path
        assert page.is_file(), f"{target}: no such page"
        assert not anchor or anchor in anchors(page), f"{target}: no such heading on {path}"


def nav_pages(nav: list) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages |= nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert nav_pages(config["nav"]) == pages


def test_the_configuration_page_names_every_setting() -> None:
    from worker.settings import Settings

    page = (DOCS / "configuration.md").read_text()
    aliases = {str(field.validation_alias) for field in Settings.model_fields.values()}
    missing = sorted(alias for alias in aliases if f"`{alias}`" not in page)
    assert not missing, f"docs/configuration.md does not name {missing}"


def test_the_http_api_answers_table_names_every_reason() -> None:
    from worker.web.openapi import Reason

    table = section((DOCS / "http-api.md").read_text(), "Answers")
    missing = sorted(reason.value for reason in Reason if f"`{reason.value}`" not in table)
    assert not missing, f"docs/http-api.md's Answers table does not name {missing}"

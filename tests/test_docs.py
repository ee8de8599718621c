"""The READMEs stay short and the rest lives in docs/: word limits, links that resolve, pages per answer."""

import re
from pathlib import Path

import pytest
from helpers import TEMPLATE_ROOT, baked

GENERATED_README_WORDS = 2000
TEMPLATE_README_WORDS = 1500
ALL_PARTS = {"sweeps": True, "mlflow": True, "wandb": True}
# A docs page that belongs to an answer -> (the answer, the value that brings it).
ANSWER_PAGES = {"docs/sweeps.md": ("sweeps", True), "docs/csv-table.md": ("dataset", "csv_table")}
# [text](target) outside code; an image's ![alt](target) too. Inline code is dropped before matching.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def words(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").split())


def markdown_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, spaces to '-', punctuation other than '-' and '_' dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    outside = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", outside)


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", prose(path.read_text(encoding="utf-8")), flags=re.MULTILINE)
    return {slug(heading) for heading in headings}


def broken_links(path: Path, root: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of this repository
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or not linked.resolve().is_relative_to(root.resolve()):
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.fixture(scope="module")
def default_bake(cookies_session) -> Path:
    return baked(cookies_session)


@pytest.fixture(scope="module")
def all_parts_bake(cookies_session) -> Path:
    return baked(cookies_session, **ALL_PARTS)


@pytest.fixture(scope="module")
def table_bake(cookies_session) -> Path:
    return baked(cookies_session, dataset="csv_table")


def test_the_generated_readme_is_read_in_ten_minutes(default_bake: Path, all_parts_bake: Path, table_bake: Path):
    for project in (default_bake, all_parts_bake, table_bake):
        assert words(project / "README.md") <= GENERATED_README_WORDS, project


def test_the_template_readme_is_short() -> None:
    assert words(TEMPLATE_ROOT / "README.md") <= TEMPLATE_README_WORDS


def test_every_docs_page_opens_with_what_it_is_for(all_parts_bake: Path, table_bake: Path) -> None:
    for page in [*markdown_files(all_parts_bake)[1:], table_bake / "docs" / "csv-table.md"]:
        title, blank, purpose, *_ = page.read_text(encoding="utf-8").splitlines()
        assert title.startswith("# ") and blank == "" and purpose.endswith("."), page.name


def test_every_relative_link_of_the_generated_docs_resolves(
    default_bake: Path, all_parts_bake: Path, table_bake: Path
) -> None:
    for project in (default_bake, all_parts_bake, table_bake):
        pages = markdown_files(project)
        broken = {f"{page.relative_to(project)}: {link}" for page in pages for link in broken_links(page, project)}
        assert not broken, sorted(broken)


def test_every_readme_topic_is_linked(all_parts_bake: Path) -> None:
    readme = (all_parts_bake / "README.md").read_text(encoding="utf-8")
    unlinked = [page.name for page in markdown_files(all_parts_bake)[1:] if f"](docs/{page.name})" not in readme]
    assert not unlinked, f"pages the README does not link to: {unlinked}"


def test_every_relative_link_of_the_template_readme_resolves() -> None:
    pages = [TEMPLATE_ROOT / "README.md", *sorted((TEMPLATE_ROOT / "docs").glob("*.md"))]
    broken = [f"{page.name}: {link}" for page in pages for link in broken_links(page, TEMPLATE_ROOT)]
    assert not broken, broken


@pytest.mark.parametrize("page", sorted(ANSWER_PAGES))
def test_a_page_of_an_answer_comes_only_with_it(default_bake: Path, all_parts_bake: Path, table_bake: Path, page: str):
    answer, value = ANSWER_PAGES[page]
    bakes = {"default": (default_bake, {}), "all parts": (all_parts_bake, ALL_PARTS), "table": (table_bake, {})}
    for name, (project, answers) in bakes.items():
        given = answers.get(answer, "csv_table" if name == "table" else None)
        assert (project / page).is_file() is (given == value), f"{page} in the {name} bake"


def test_github_anchor_slugs() -> None:
    assert slug("Many GPUs, many nodes") == "many-gpus-many-nodes"
    assert slug("Speed: the Trainer against a hand-written loop") == "speed-the-trainer-against-a-hand-written-loop"
    assert slug("config.json") == "configjson" and slug("Add a_thing") == "add-a_thing"

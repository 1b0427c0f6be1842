"""A gate's Data Docs, opened in a real browser: the failed expectation is on the page.

A copy of the demo's Flickr image shards gets one black frame; ``vcat check`` fails on it and
writes great-expectations' Data Docs. Headless chromium opens the index, the test follows its
link to the images table's validation page, and reads that page's DOM after its scripts ran:
the ``mean`` column's expectation failed, with its threshold and the black frame's file
name. The page's CDN links cannot load (every host name is unresolvable), so this is what a
person sees offline. A screenshot is kept (and copied to ``$VCAT_ARTIFACTS_DIR`` when set).

The page names each check (vcat passes it as the expectation's description). Offline the
index draws no links (its table comes from a CDN script), so ``vcat check`` prints the failed
table's validation page itself: the test checks that it is the page the index links.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.browser import Chromium, require_chromium, visible_text
from vcat.cli import app
from vcat.shards import INDEX_NAME, ShardReader, ShardWriter

REPO = Path(__file__).resolve().parents[1]
FLICKR = "data/prepared/flickr-images/demo-flickr/0.5k"
BLACK_AT = 7  # the sample made black, by position in the index
ARTIFACTS_VARIABLE = "VCAT_ARTIFACTS_DIR"
SCREENSHOT_NAME = "gate-docs-black-frame.png"
SCREEN = (1280, 2000)
# The index page lists validations in tables that bootstrap-table (from a CDN) would draw;
# their rows are literals in an inline script (``data: [{...}, ...]``), a row's page in
# ``_table_row_link_path`` and, for a validation, its table in ``asset_name``.
TABLE_DATA = re.compile(r"\bdata:\s*(?=\[)")
# Each column of a validation page is a section headed by the column's name.
SECTION_HEAD = re.compile(r"(\S+) Status Expectation Observed Value ")

pytestmark = pytest.mark.slow


def black_frame_copy(source: Path, destination: Path) -> str:
    """A copy of the shard folder ``source`` whose sample at ``BLACK_AT`` is re-encoded as an
    all-black JPEG of the same size; returns that member's name (``<key>.jpg``)."""
    destination.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("shard-") and path.name != INDEX_NAME:
            shutil.copy2(path, destination / path.name)
    with ShardReader(source) as reader:
        victim = reader.keys()[BLACK_AT]
        limits = {"max_count": reader.index.max_count, "max_bytes": reader.index.max_bytes}
        with ShardWriter(destination, **limits) as writer:
            for key, sample in reader:
                if key == victim:
                    with Image.open(io.BytesIO(sample["jpg"])) as original:
                        size = original.size
                    black = io.BytesIO()
                    Image.new("RGB", size).save(black, "JPEG", quality=75)
                    sample = {**sample, "jpg": black.getvalue()}
                writer.add(key, sample)
    return f"{victim}.jpg"


def table_rows(dom: str) -> list[dict[str, object]]:
    """The rows of every table the index page's scripts would draw."""
    rows = []
    for start in TABLE_DATA.finditer(dom):
        literal = bracketed(dom, start.end())
        try:
            value = ast.literal_eval(literal)
        except (SyntaxError, ValueError):
            continue  # another script's `data:`
        rows.extend(row for row in value if isinstance(row, dict))
    return rows


def bracketed(text: str, start: int) -> str:
    """The bracketed literal at ``text[start]``, up to its closing bracket (quotes heeded)."""
    depth, quote, escaped = 0, "", False
    for position in range(start, len(text)):
        char = text[position]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return text[start : position + 1]
    return text[start:]


def validation_page(index_dom: str, index: Path, asset: str) -> Path:
    """The validation page of ``asset``, by the link the rendered index gives for it."""
    rows = table_rows(index_dom)
    pages = [
        str(row["_table_row_link_path"])
        for row in rows
        if row.get("asset_name") == asset
        and str(row.get("_table_row_link_path", "")).startswith("validations/")
    ]
    assert len(pages) == 1, f"{index} links {len(pages)} validation pages of {asset}: {rows}"
    page = index.parent / pages[0]
    assert page.is_file(), f"{index} links {pages[0]}, which is not there"
    return page


def column_sections(text: str) -> dict[str, str]:
    """The visible text of a validation page, cut into its columns' sections."""
    heads = list(SECTION_HEAD.finditer(text))
    ends = [head.start() for head in heads[1:]] + [len(text)]
    return {head.group(1): text[head.end() : end] for head, end in zip(heads, ends, strict=True)}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> dict[str, object]:
    """The failing gate's images validation page, rendered, with its screenshot."""
    browser = Chromium(require_chromium(), tmp_path_factory.mktemp("chromium"))
    source = demo_root / FLICKR
    work = tmp_path_factory.mktemp("docs")
    artifact = work / "flickr-0.5k"
    black = black_frame_copy(source, artifact)

    result = CliRunner().invoke(app, ["check", str(artifact), "--workers", "2"])
    assert result.exit_code == 1, result.output
    index = artifact.with_name(artifact.name + ".gate") / "docs" / "index.html"
    assert index.is_file(), result.output

    index_dom = browser.dom(index)
    page = validation_page(index_dom, index, "images")
    dom = browser.dom(page)
    picture = browser.screenshot(page, work / SCREENSHOT_NAME, *SCREEN)
    kept = os.environ.get(ARTIFACTS_VARIABLE)
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        shutil.copy2(picture, Path(kept) / SCREENSHOT_NAME)
    text = visible_text(dom)
    return {
        "black": black,
        "text": text,
        "sections": column_sections(text),
        "picture": picture,
        "index_dom": index_dom,
        "page": page,
        "output": result.output,
    }


def test_the_page_says_the_validation_failed(rendered: dict[str, object]) -> None:
    text = str(rendered["text"])
    assert "Status: Failed" in text
    assert re.search(r"Unsuccessful Expectations 2\b", text), text[:2000]


def test_the_mean_column_shows_the_failed_expectation_and_the_black_frame(
    rendered: dict[str, object],
) -> None:
    sections = rendered["sections"]
    assert isinstance(sections, dict)
    assert "mean" in sections, f"no section for the column mean: {sorted(sections)}"
    mean = sections["mean"]
    assert "8.0" in mean  # not_black's threshold, min_mean
    assert "1 unexpected values found" in mean
    assert str(rendered["black"]) in mean
    # the columns whose expectations passed do not name it
    for column in ("channels", "decodable", "item"):
        assert str(rendered["black"]) not in sections[column]


def test_the_page_names_the_check(rendered: dict[str, object]) -> None:
    sections = rendered["sections"]
    assert isinstance(sections, dict)
    assert "not_black" in sections["mean"]
    assert "not a black frame" in sections["mean"]


def test_vcat_check_names_the_page_the_index_links(rendered: dict[str, object]) -> None:
    page = rendered["page"]
    assert isinstance(page, Path)
    assert f"Data Docs (images): {page}" in str(rendered["output"])


def test_the_screenshot_shows_a_page(rendered: dict[str, object]) -> None:
    picture = rendered["picture"]
    assert isinstance(picture, Path)
    with Image.open(picture) as image:
        assert image.format == "PNG"
        assert image.size == SCREEN
        low, high = image.convert("L").getextrema()
    assert high - low > 100, "the screenshot is one flat colour"
    kept = os.environ.get(ARTIFACTS_VARIABLE)
    if kept:
        assert (Path(kept) / SCREENSHOT_NAME).is_file()

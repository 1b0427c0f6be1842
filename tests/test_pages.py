"""Recognising the web pages servers send instead of files."""

from __future__ import annotations

import pytest

from tests.http_server import DRIVE_PERMISSION_PAGE, LOGIN_PAGE, QUOTA_PAGE
from tests.http_server import drive_confirmation_page as confirmation_page
from vcat.failures import FailureClass, looks_like_html
from vcat.fetch.pages import ServedPage, drive_download_url, read_page

SHARE = "https://drive.google.com/file/d/1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y/view?usp=sharing"


def test_share_links_become_download_links() -> None:
    assert drive_download_url(SHARE) == (
        "https://drive.google.com/uc?export=download&id=1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y"
    )
    assert drive_download_url("https://example.org/a.zip") == "https://example.org/a.zip"


def test_confirmation_form_gives_the_next_request() -> None:
    follow = read_page(confirmation_page("ABC"), "https://drive.google.com/uc?id=ABC")
    assert follow.url == "https://drive.google.com/drive/download"
    assert follow.params == {"id": "ABC", "export": "download", "confirm": "t", "uuid": "5b7c-11aa"}


def test_older_confirmation_link_is_followed() -> None:
    page = (
        b'<html><body><a id="uc-download-link" '
        b'href="/uc?export=download&amp;confirm=Xy_1&amp;id=ABC">Download anyway</a></body></html>'
    )
    follow = read_page(page, "https://drive.google.com/uc?export=download&id=ABC")
    assert follow.url == "https://drive.google.com/uc?export=download&confirm=Xy_1&id=ABC"


@pytest.mark.parametrize(
    ("page", "failure"),
    [
        (QUOTA_PAGE, FailureClass.QUOTA_EXCEEDED),
        (DRIVE_PERMISSION_PAGE, FailureClass.FORBIDDEN),
        (LOGIN_PAGE, FailureClass.HTML_INSTEAD_OF_FILE),
        (b"<html><body>Maintenance</body></html>", FailureClass.HTML_INSTEAD_OF_FILE),
    ],
)
def test_other_pages_are_classified(page: bytes, failure: FailureClass) -> None:
    with pytest.raises(ServedPage) as caught:
        read_page(page, "https://example.org/file")
    assert caught.value.failure == failure
    assert caught.value.page == page


@pytest.mark.parametrize(
    ("head", "is_page"),
    [
        (b"  <!DOCTYPE html><html>", True),
        (b"<HTML><head>", True),
        (b"\x1f\x8b\x08\x00", False),
        (b"PK\x03\x04<html>", False),
    ],
)
def test_html_sniffing(head: bytes, is_page: bool) -> None:
    assert looks_like_html(head) is is_page

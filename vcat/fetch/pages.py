"""What a web page served in place of a file is: a Drive confirmation step, a quota or
permission page, or some other HTML the user must look at in a browser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

from vcat.failures import FailureClass, FetchFailure
from vcat.urls import drive_file_id

DRIVE_DOWNLOAD_URL = "https://drive.google.com/uc"
MAX_PAGE_BYTES = 2 << 20  # pages are small; anything larger is read only this far

_QUOTA = re.compile(
    r"quota (exceeded|for this file)|too many users have (viewed|downloaded)", re.IGNORECASE
)
_PERMISSION = re.compile(  # Drive's own pages; other login pages stay html_instead_of_file
    r"you need access|request access|you need permission|"
    r"accounts\.google\.com/(v3/signin|servicelogin)|sign in - google accounts",
    re.IGNORECASE,
)
_CONFIRM_LINK = re.compile(r'href="(/uc\?export=download[^"]*confirm=[^"]+)"')


def drive_download_url(url: str) -> str:
    """The direct-download form of a Drive share link; other URLs unchanged."""
    file_id = drive_file_id(url)
    if file_id is None:
        return url
    return f"{DRIVE_DOWNLOAD_URL}?{urlencode({'export': 'download', 'id': file_id})}"


@dataclass(frozen=True)
class FollowUp:
    """The request a confirmation page asks for: GET ``url`` with ``params``."""

    url: str
    params: dict[str, str] = field(default_factory=dict)


class ServedPage(FetchFailure):
    """A web page where a file was expected; ``page`` holds its first bytes as evidence."""

    def __init__(self, failure: FailureClass, reason: str, page: bytes) -> None:
        super().__init__(failure, reason)
        self.page = page


class _FormReader(HTMLParser):
    """Collects the download form (action and hidden inputs) and the page title."""

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.form_inputs: dict[str, str] = {}
        self.title = ""
        self._in_download_form = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and values.get("id") == "download-form":
            self._in_download_form = True
            self.form_action = values.get("action", "")
        elif tag == "input" and self._in_download_form and values.get("name"):
            self.form_inputs[values["name"]] = values.get("value", "")
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_download_form = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def read_page(page: bytes, page_url: str) -> FollowUp:
    """Classify an HTML page received instead of a file.

    Returns the follow-up request of a Drive large-file confirmation page; raises
    ``ServedPage`` (quota_exceeded, forbidden or html_instead_of_file) for anything else.
    """
    page = page[:MAX_PAGE_BYTES]
    text = page.decode("utf-8", errors="replace")
    reader = _FormReader()
    reader.feed(text)
    if reader.form_action is not None and reader.form_inputs.get("id"):
        return FollowUp(urljoin(page_url, unescape(reader.form_action)), reader.form_inputs)
    link = _CONFIRM_LINK.search(text)
    if link:
        return FollowUp(urljoin(page_url, unescape(link.group(1))))
    title = " ".join(reader.title.split()) or "untitled page"
    if _QUOTA.search(text):
        failure, what = FailureClass.QUOTA_EXCEEDED, "a quota page"
    elif _PERMISSION.search(text):
        failure, what = FailureClass.FORBIDDEN, "a login or permission page"
    else:
        failure, what = FailureClass.HTML_INSTEAD_OF_FILE, "a web page"
    raise ServedPage(failure, f"{page_url} answered with {what} ({title!r})", page)

"""Debian's chromium, headless, for tests that look at a page as a person's browser shows it.

``.ci/install-browser`` installs the ``chromium`` package where it is missing. Pages are
opened from files with every host name unresolvable, so a page's CDN links fail at once
instead of waiting on the network: what a test sees is what the page's own files give.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_SCRIPT = ".ci/install-browser"
#: Set in CI: a missing browser fails the test instead of skipping it.
REQUIRE_VARIABLE = "VCAT_REQUIRE_BROWSER"
TIMEOUT_S = 120


def find_chromium() -> Path | None:
    """``/usr/bin/chromium``, else ``chromium`` on the PATH, else None."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def require_chromium() -> Path:
    """The chromium binary; skips the test when there is none (fails when
    ``VCAT_REQUIRE_BROWSER`` is set, as in CI)."""
    found = find_chromium()
    if found is not None:
        return found
    message = f"Debian's chromium is not installed: run {INSTALL_SCRIPT} (apt-get, as root)"
    if os.environ.get(REQUIRE_VARIABLE):
        pytest.fail(message)
    pytest.skip(message)


class Chromium:
    """Headless chromium runs, each with a fresh profile under ``profile_root``."""

    def __init__(self, binary: Path, profile_root: Path) -> None:
        self.binary = binary
        self.profile_root = profile_root
        self._runs = 0

    def _run(self, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        self._runs += 1
        profile = self.profile_root / f"profile-{self._runs}"
        command = [
            str(self.binary),
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            *extra,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.splitlines()[-10:])
            raise AssertionError(f"chromium exited {done.returncode} on {page}:\n{tail}")
        return done

    def dom(self, page: Path) -> str:
        """The page's DOM, serialised after its scripts ran."""
        return self._run(page, "--dump-dom").stdout

    def screenshot(self, page: Path, picture: Path, width: int = 1280, height: int = 2000) -> Path:
        """A PNG of the page's first ``width`` x ``height`` pixels."""
        self._run(page, f"--screenshot={picture.resolve()}", f"--window-size={width},{height}")
        if not picture.is_file():
            raise AssertionError(f"chromium wrote no screenshot of {page} at {picture}")
        return picture


class _TextParser(HTMLParser):
    HIDDEN = frozenset({"script", "style", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    """The text of ``dom`` outside scripts and styles, whitespace collapsed to single spaces."""
    parser = _TextParser()
    parser.feed(dom)
    parser.close()
    return re.sub(r"\s+", " ", html.unescape(" ".join(parser.parts))).strip()

"""Print the `uv pip install` options that stand for this machine's pip configuration.

uv does not read pip's configuration files or PIP_* variables, so a machine whose pip is set
up with its own indexes, local wheel folders or constraints would get other packages from uv.
This reads what pip itself reports (`pip config list`: files and environment) and prints the
equivalent options, shell-quoted, on one line; nothing when pip has no such settings.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

#: pip's setting -> uv's option; each value may hold several, separated by spaces
OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_settings(listing: str) -> dict[str, list[str]]:
    """``pip config list`` output as setting -> values; for a setting given in several places
    (a file and the environment), every value once, in the order listed."""
    found: dict[str, list[str]] = {}
    for line in listing.splitlines():
        key, separator, quoted = line.partition("=")
        if not separator:
            continue
        setting = key.rsplit(".", 1)[-1]
        for value in shlex.split(quoted):
            for part in value.split():
                if part not in found.setdefault(setting, []):
                    found[setting].append(part)
    return found


def uv_options(settings: dict[str, list[str]]) -> list[str]:
    """The uv options for ``settings``; a constraints file that is not there is left out."""
    options: list[str] = []
    for setting, option in OPTIONS.items():
        for value in settings.get(setting, []):
            if setting == "constraint" and not Path(value).is_file():
                continue
            options += [option, value]
    if settings.get("cert"):
        options.append("--native-tls")  # pip was given the system's certificates
    return options


def main() -> int:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    print(shlex.join(uv_options(pip_settings(listing))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

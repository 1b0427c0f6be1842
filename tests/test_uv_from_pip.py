"""tools/uv_from_pip.py: the `uv pip install` options that stand for pip's configuration."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "uv_from_pip.py"
spec = importlib.util.spec_from_file_location("uv_from_pip", TOOL)
assert spec is not None and spec.loader is not None
uv_from_pip = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_from_pip)

LISTING = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.constraint='{constraint}'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
"""


def test_every_index_link_and_constraint_once_in_order(tmp_path: Path) -> None:
    constraint = tmp_path / "constraints.txt"
    constraint.write_text("torch<=2.14.1\n")
    settings = uv_from_pip.pip_settings(LISTING.format(constraint=constraint))
    assert settings["find-links"] == ["/opt/wheels"]  # from the environment and a file: once
    assert uv_from_pip.uv_options(settings) == [
        "--extra-index-url",
        "file:///opt/pypi/simple",
        "--extra-index-url",
        "file:///opt/pypi-more/simple",
        "--find-links",
        "/opt/wheels",
        "--constraint",
        str(constraint),
        "--native-tls",
    ]


def test_a_constraints_file_that_is_gone_is_left_out(tmp_path: Path) -> None:
    settings = uv_from_pip.pip_settings(LISTING.format(constraint=tmp_path / "gone.txt"))
    assert "--constraint" not in uv_from_pip.uv_options(settings)


def test_settings_uv_has_no_use_for_give_no_options() -> None:
    listing = ":env:.default-timeout='180'\n:env:.disable-pip-version-check='1'\n"
    assert uv_from_pip.uv_options(uv_from_pip.pip_settings(listing)) == []


def run_tool(environment: dict[str, str]) -> str:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # os.devnull as the config file: pip reads no configuration file, only the environment
    environment = {**keep, "PIP_CONFIG_FILE": os.devnull, **environment}
    done = subprocess.run(
        [sys.executable, str(TOOL)], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_what_pip_itself_reports_becomes_options(tmp_path: Path) -> None:
    folder = tmp_path / "wheels$HOME"  # quoted for the shell (pip splits values on spaces)
    folder.mkdir()
    printed = run_tool(
        {"PIP_EXTRA_INDEX_URL": "file:///a/simple file:///b/simple", "PIP_FIND_LINKS": str(folder)}
    )
    assert printed == (
        f"--extra-index-url file:///a/simple --extra-index-url file:///b/simple "
        f"--find-links '{folder}'"
    )
    assert run_tool({}) == ""

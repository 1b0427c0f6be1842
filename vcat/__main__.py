"""``python -m vcat``: the ``vcat`` command (what executors start on other processes and nodes)."""

from vcat.cli import main

main()

"""What an executor knows of a sharded run, kept beside its parts: ``executor.json``.

It records the shards that finished, the attempts of each, and the SLURM job of each shard's
last attempt, so that a run started again after its submitter was killed skips the finished
shards and waits for the jobs still queued or running instead of starting them twice. A
ledger of another command line or another number of shards is not reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vcat.stage import write_text_atomic

LEDGER_NAME = "executor.json"
LEDGER_FORMAT = "vcat.executor.ledger/1"


@dataclass
class Ledger:
    path: Path
    command: list[str]
    shards: int
    done: set[int] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)
    jobs: dict[int, str] = field(default_factory=dict)

    @classmethod
    def open(cls, folder: Path, command: list[str], shards: int) -> Ledger:
        """The ledger in ``folder`` when it is for ``command`` split in ``shards``; a new,
        empty one otherwise (also when the file is unreadable: it only saves work)."""
        path = folder / LEDGER_NAME
        fresh = cls(path, command, shards)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if (
                record.get("format") != LEDGER_FORMAT
                or record.get("command") != command
                or record.get("shards") != shards
            ):
                return fresh
            return cls(
                path,
                command,
                shards,
                done={int(index) for index in record["done"]},
                attempts={int(index): int(n) for index, n in record["attempts"].items()},
                jobs={int(index): str(job) for index, job in record["jobs"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return fresh

    @staticmethod
    def read_command(folder: Path) -> list[str]:
        """The command line of the ledger in ``folder``; empty when there is none."""
        try:
            command = json.loads((folder / LEDGER_NAME).read_text(encoding="utf-8"))["command"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [str(word) for word in command] if isinstance(command, list) else []

    def save(self) -> None:
        record = {
            "format": LEDGER_FORMAT,
            "command": self.command,
            "shards": self.shards,
            "done": sorted(self.done),
            "attempts": {str(index): n for index, n in sorted(self.attempts.items())},
            "jobs": {str(index): job for index, job in sorted(self.jobs.items())},
        }
        write_text_atomic(self.path, json.dumps(record, indent=2) + "\n")

    def todo(self) -> list[int]:
        return [index for index in range(self.shards) if index not in self.done]

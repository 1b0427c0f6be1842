"""Copy-detection training sets: the copydetect-train stage's folder (shards of ``<cls>_<j>``
samples, ``ground_truth.csv``, ``.run.json``, ``failures.tsv``).

The ``images`` and ``shards`` tables and their checks are those of
``vcat.gates.kinds.images``. The ``classes`` table has one row per class of the run (the range
``.run.json`` records, and any other class found in the shards): whether its reference
``<cls>_0`` is there, its augmented copies ``<cls>_<j>`` (j >= 1), the copies expected (the
``copies_per_class`` check's ``equal``, else the recipe's ``copies`` that ``.run.json``
records) and whether the stage listed the class as failed. The ``ground_truth`` table has one
row per line of ``ground_truth.csv`` (item ``ground_truth.csv:<line> <query>,<reference>``),
and one per copy in the shards that no line names (item ``<query> (no line)``): the line is
there, its query and reference are images of the shards, the reference is the query's class's
``<cls>_0``, and no earlier line names the same query.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vcat.gates.checks import Check, Expect, Params, mostly_of, row_count, values_true
from vcat.gates.kinds import images
from vcat.gates.profile import Profile, ProfileError, Table
from vcat.shards import INDEX_NAME

KIND = "copydetect"
DESCRIPTION = "copy-detection training sets: shards of <class>_<copy> with ground_truth.csv"
GROUND_TRUTH_NAME = "ground_truth.csv"
RUN_NAME = ".run.json"
FAILURES_NAME = "failures.tsv"
HEADER = ["query_id", "reference_id"]
IMAGE_MEMBER = "jpg"
_IMAGE_ID = re.compile(r"(\d+)_(\d+)")
GROUND_TRUTH_COLUMNS = ("listed", "query_present", "reference_present", "consistent", "first")


def _ground_truth_complete(params: Params) -> list[Expect]:
    return [
        Expect(
            "ExpectColumnValuesToBeInSet",
            {"column": column, "value_set": [True], **mostly_of(params)},
        )
        for column in GROUND_TRUTH_COLUMNS
    ]


def _copies_match(params: Params) -> list[Expect]:
    kwargs = {"column": "copies_match", "value_set": [True], **mostly_of(params)}
    return [Expect("ExpectColumnValuesToBeInSet", kwargs)]


CHECKS: list[Check] = [
    *images.CHECKS,
    Check(
        "copies_per_class",
        "classes",
        "every class has the augmented copies declared besides its reference (equal: "
        "{equal}; None: the recipe's count that .run.json records, off without one)",
        {"equal": None, "max_bad_fraction": 0.0},
        _copies_match,
        "copies_match",
    ),
    values_true("references", "classes", "has_reference", "every class has its <cls>_0"),
    row_count("class_count", "classes", "classes: exactly {equal}, or between {min} and {max}"),
    Check(
        "ground_truth_complete",
        "ground_truth",
        "every copy has its ground-truth line, once, naming images of the shards and its "
        "class's reference",
        {"max_bad_fraction": 0.0},
        _ground_truth_complete,
        "listed",
    ),
]


def detect(artifact: Path) -> bool:
    return (artifact / INDEX_NAME).is_file() and (artifact / GROUND_TRUTH_NAME).is_file()


def _run_record(artifact: Path) -> dict[str, Any]:
    try:
        record = json.loads((artifact / RUN_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{artifact / RUN_NAME}: cannot read it ({exc})") from None
    return record if isinstance(record, dict) else {}


def _recorded_classes(record: Mapping[str, Any]) -> range:
    span = record.get("classes")
    if isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span):
        return range(span[0], span[1])
    return range(0)


def _recorded_copies(record: Mapping[str, Any]) -> int | None:
    copies = (record.get("recipe") or {}).get("copies")
    return copies if isinstance(copies, int) else None


def _failed_classes(artifact: Path) -> set[int]:
    try:
        lines = (artifact / FAILURES_NAME).read_text(encoding="utf-8").splitlines()[1:]
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{artifact / FAILURES_NAME}: cannot read it ({exc})") from None
    failed = set()
    for line in lines:
        first = line.split("\t", 1)[0]
        if first.isdigit():
            failed.add(int(first))
    return failed


def _image_ids(artifact: Path) -> list[str]:
    """The samples with an image, in index order."""
    index = images.load_index(artifact)
    return [key for key, location in index.samples.items() if IMAGE_MEMBER in location.members]


def class_rows(artifact: Path, ids: list[str], params: Mapping[str, Any]) -> Any:
    """The ``classes`` table."""
    import pandas as pd

    record = _run_record(artifact)
    equal = params.get("equal")
    expected = equal if equal is not None else _recorded_copies(record)
    failed = _failed_classes(artifact)
    copies: dict[int, int] = defaultdict(int)
    references: set[int] = set()
    for key in ids:
        match = _IMAGE_ID.fullmatch(key)
        if match is None:
            continue
        cls, copy = int(match.group(1)), int(match.group(2))
        copies[cls] += copy > 0
        if copy == 0:
            references.add(cls)
    classes = sorted(set(_recorded_classes(record)) | set(copies))
    rows = [
        (
            str(cls),
            cls in references,
            copies[cls],
            math.nan if expected is None else expected,
            expected is None or copies[cls] == expected,
            cls in failed,
        )
        for cls in classes
    ]
    columns = ["item", "has_reference", "copies", "expected", "copies_match", "failed"]
    return pd.DataFrame.from_records(rows, columns=columns)


def _ground_truth_lines(path: Path) -> list[tuple[int, str, str]]:
    """``(line, query, reference)`` of every row; ProfileError for no DISC21 header."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read it ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [field.strip() for field in rows[0]] != HEADER:
        raise ProfileError(
            f"{path}:1: the header must be {','.join(HEADER)}; is it a DISC21 ground truth?"
        )
    found = []
    for number, fields in enumerate(rows[1:], start=2):
        if not fields:
            continue
        query = fields[0].strip()
        reference = fields[1].strip() if len(fields) > 1 else ""
        found.append((number, query, reference))
    return found


def ground_truth_rows(artifact: Path, ids: list[str]) -> Any:
    """The ``ground_truth`` table."""
    import pandas as pd

    present = set(ids)
    lines = _ground_truth_lines(artifact / GROUND_TRUTH_NAME)
    seen: Counter[str] = Counter()
    rows = []
    for number, query, reference in lines:
        seen[query] += 1
        match = _IMAGE_ID.fullmatch(query)
        consistent = (
            match is not None and match.group(2) != "0" and reference == f"{match.group(1)}_0"
        )
        rows.append(
            (
                f"{GROUND_TRUTH_NAME}:{number} {query},{reference}",
                query,
                reference,
                True,
                query in present,
                reference in present,
                consistent,
                seen[query] == 1,
            )
        )
    for key in ids:
        match = _IMAGE_ID.fullmatch(key)
        if match is not None and match.group(2) != "0" and key not in seen:
            rows.append((f"{key} (no line)", key, "", False, True, False, False, True))
    columns = ["item", "query", "reference", *GROUND_TRUTH_COLUMNS]
    return pd.DataFrame.from_records(rows, columns=columns)


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    if not detect(artifact):
        raise ProfileError(
            f"{artifact}: no {INDEX_NAME} and {GROUND_TRUTH_NAME}, so not a finished folder of "
            "the copydetect-train stage; run it again"
        )
    found = images.tables(artifact, workers)
    ids = _image_ids(artifact)
    copies_params = (params or {}).get("copies_per_class", {})
    found["classes"] = Table(class_rows(artifact, ids, copies_params), "item")
    found["ground_truth"] = Table(ground_truth_rows(artifact, ids), "item")
    classes = found["classes"].frame
    facts = {
        "failures": images.failure_counts(found["images"].frame),
        "classes": len(classes),
        "classes_failed": int(classes["failed"].sum()),
        "copies_expected": None if classes.empty else _first_number(classes["expected"]),
        "ground_truth_lines": int(found["ground_truth"].frame["listed"].sum()),
    }
    return Profile(KIND, artifact, found, facts)


def _first_number(column: Any) -> int | None:
    value = float(column.iloc[0])
    return None if math.isnan(value) else int(value)

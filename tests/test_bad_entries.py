"""Malformed catalog entries: each is reported as ``path:line: error: message``, never a crash.

Every case builds a small catalog in a temporary folder holding one valid dataset entry
(``good``) plus the bad file(s), runs the real ``vcat catalog lint`` and checks the exit
code, the absence of a traceback, the exact line of the reported problem, and that the good
entry still loads.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vcat.catalog.yaml_source import MAX_EXPANDED_VALUES, LineMap, parse_yaml
from vcat.cli import app
from vcat.problems import CatalogError
from vcat.stage import stage_names

SHIPPED_CATALOG = Path(__file__).parents[1] / "catalog"
#: Replaced by the temporary folder in entry texts (for the code-execution probe).
TMP = "@TMP@"

GOOD_DATASET = """\
title: Good dataset
description: A minimal valid entry that must keep loading next to broken ones.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: public
sources:
  - name: images
    url: https://example.org/good/images.zip
    filename: images.zip
    checksum: md5:0123456789abcdef0123456789abcdef
    checksum_source: {kind: published, where: the download page}
    archive: zip
"""

GOOD_MODEL = """\
title: Good model
description: A minimal valid model entry.
licence:
  name: MIT
  redistribution: allowed
architecture:
  library: timm
  name: resnet50
weights:
  name: checkpoint
  url: https://example.org/good/model.pth
  filename: model.pth
  checksum: unpublished
"""


def entry(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def alias_bomb() -> str:
    """Billion laughs: 9 levels of anchors, each referring 9 times to the previous one."""
    lines = [
        "title: Bomb",
        'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for level in range(1, 9):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Expected:
    """A problem line: ``<file>:<line>: <severity>: ...<fragment>...``."""

    file: str  # relative to the temporary folder
    line: int
    fragment: str
    severity: str = "error"


@dataclass(frozen=True)
class Case:
    files: dict[str, str | bytes]  # relative to the temporary folder
    expected: list[Expected]
    extra_paths: list[str] = field(default_factory=list)  # further PATH arguments to lint


def one(path: str, text: str | bytes, line: int, fragment: str) -> Case:
    return Case({path: text}, [Expected(path, line, fragment)])


BAD_ENTRIES: dict[str, Case] = {
    "python-object-tag": one(
        "catalog/datasets/evil.yaml",
        entry(
            f"""
            title: Evil
            description: !!python/object/apply:os.system ["echo pwned > {TMP}/pwned"]
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: manual
              instructions: none
            """
        ),
        2,
        "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    "custom-include-tag": one(
        "catalog/datasets/included.yaml",
        entry(
            """
            title: Includes another file
            description: Local tags are not YAML core types.
            licence: !include other.yaml
            access:
              kind: public
            """
        ),
        3,
        "tag '!include' is not allowed",
    ),
    "alias-bomb": one(
        "catalog/datasets/bomb.yaml",
        alias_bomb(),
        # The limit is crossed while expanding the innermost list, written on line 2.
        2,
        f"aliases expand to more than {MAX_EXPANDED_VALUES:,} values (an alias bomb?)",
    ),
    "recursive-alias": one(
        "catalog/datasets/recursive.yaml",
        entry(
            """
            title: Recursive
            description: A list that contains itself.
            known_issues: &loop
              - first
              - *loop
            """
        ),
        3,
        "recursive alias",
    ),
    "unclosed-bracket": one(
        "catalog/datasets/unclosed.yaml",
        entry(
            """
            title: Unclosed
            description: A flow list that never ends.
            known_issues: [one, two
            licence:
              name: MIT
              redistribution: allowed
            """
        ),
        # The parser notices on the first line that cannot continue the list.
        4,
        "invalid YAML: expected ',' or ']'",
    ),
    "bad-indentation": one(
        "catalog/datasets/indent.yaml",
        entry(
            """
            title: Badly indented
            description: One key is indented deeper than its siblings.
            licence:
              name: MIT
                redistribution: allowed
            access:
              kind: public
            """
        ),
        5,
        "invalid YAML: mapping values are not allowed here",
    ),
    "tab-indentation": one(
        "catalog/datasets/tabs.yaml",
        "title: Tabs\ndescription: Tabs do not indent YAML.\nlicence:\n\tname: MIT\n",
        4,
        "invalid YAML: found character '\\t' that cannot start any token",
    ),
    "duplicate-key": one(
        "catalog/datasets/dupkey.yaml",
        entry(
            """
            title: First title
            description: The title is given twice.
            licence:
              name: MIT
              redistribution: allowed
            title: Second title
            access:
              kind: public
            """
        ),
        6,
        "duplicate key 'title' (first defined on line 1)",
    ),
    "unknown-key-with-hint": one(
        "catalog/datasets/spelling.yaml",
        entry(
            """
            title: American spelling
            description: The key is 'licence'.
            license:
              name: MIT
              redistribution: allowed
            access:
              kind: manual
              instructions: Ask.
            """
        ),
        3,
        "unknown key 'license'; did you mean 'licence'?",
    ),
    "unknown-nested-key": one(
        "catalog/datasets/nested-unknown.yaml",
        entry(
            """
            title: Nested unknown key
            description: A misspelt key inside a source.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: https://example.org/nested/data.zip
                filename: data.zip
                checksum: unpublished
                archve: zip
            """
        ),
        13,
        "unknown key 'archve' in sources[0]; did you mean 'archive'?",
    ),
    "missing-required-key": one(
        "catalog/datasets/nolicence.yaml",
        entry(
            """
            # An entry without a licence: the problem is reported where the mapping starts.
            title: No licence
            description: Nobody read the terms.
            access:
              kind: manual
              instructions: Ask the authors.
            """
        ),
        2,
        "missing required key 'licence'",
    ),
    "md5-wrong-length": one(
        "catalog/datasets/shortmd5.yaml",
        entry(
            """
            title: Short digest
            description: An md5 digest with too few digits.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: https://example.org/short/data.zip
                filename: data.zip
                checksum: md5:0123456789abcdef
            """
        ),
        12,
        "md5 digest '0123456789abcdef' is malformed: expected 32 hex digits, got 16 characters",
    ),
    "unknown-checksum-algorithm": one(
        "catalog/datasets/sha1.yaml",
        entry(
            """
            title: SHA-1
            description: An algorithm the catalog does not accept.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: https://example.org/sha1/data.zip
                filename: data.zip
                checksum: sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709
                archive: zip
            """
        ),
        12,
        "is not a checksum: write 'md5:<32 hex digits>'",
    ),
    "wrong-type": one(
        "catalog/datasets/wrongtype.yaml",
        entry(
            """
            title: Wrong type
            description: A size that is not a number.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: https://example.org/type/data.zip
                filename: data.zip
                size: lots
                checksum: unpublished
            """
        ),
        12,
        "sources[0].size: 'lots' is a string, not a whole number",
    ),
    "list-expected": one(
        "catalog/datasets/notalist.yaml",
        entry(
            """
            title: Mapping instead of list
            description: Sources must be a list.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              name: data
              url: https://example.org/notalist/data.zip
            """
        ),
        8,
        "sources: Input should be a valid list",
    ),
    "bad-url-scheme": one(
        "catalog/datasets/ftp.yaml",
        entry(
            """
            title: FTP
            description: A scheme the fetcher does not speak.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: ftp://example.org/ftp/data.zip
                filename: data.zip
                checksum: unpublished
            """
        ),
        10,
        "sources[0].url: 'ftp://example.org/ftp/data.zip' is not a URL with one of the schemes",
    ),
    "path-traversal": one(
        "catalog/datasets/traversal.yaml",
        entry(
            """
            title: Traversal
            description: Unpacks outside the dataset root.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: data
                url: https://example.org/traversal/data.tar.gz
                filename: data.tar.gz
                checksum: unpublished
                archive: tar.gz
                unpack_to: ../../etc
            """
        ),
        14,
        "sources[0].unpack_to: '../../etc' must not contain '..'",
    ),
    "conditional-requirement": one(
        "catalog/datasets/noinstructions.yaml",
        entry(
            """
            title: Registration without instructions
            description: A validator that spans fields in a nested mapping.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: registration
              url: https://example.org/register
            sources:
              - name: data
                url: https://example.org/register/data.zip
                filename: data.zip
                checksum: unpublished
            """
        ),
        6,
        "access: access of kind 'registration' needs 'instructions'",
    ),
    "top-level-list": one(
        "catalog/datasets/alist.yaml",
        entry(
            """
            - title: A list
            - description: Not a mapping.
            """
        ),
        1,
        "an entry must be a YAML mapping of keys to values",
    ),
    "empty-file": one("catalog/datasets/empty.yaml", "", 1, "file is empty"),
    "two-documents": one(
        "catalog/datasets/twodocs.yaml",
        entry(
            """
            title: One
            description: First document.
            ---
            title: Two
            """
        ),
        4,
        "file holds more than one document",
    ),
    "not-utf8": one(
        "catalog/datasets/latin1.yaml",
        "title: Caf\u00e9\ndescription: Latin-1 text.\nlicence:\n  name: na\u00efve\n".encode(
            "latin-1"
        ),
        1,
        "file is not valid UTF-8",
    ),
    "not-utf8-later-line": one(
        "catalog/datasets/latin1-later.yaml",
        "title: Cafe\ndescription: Latin-1 text.\nlicence:\n  name: na\u00efve\n".encode("latin-1"),
        4,
        "file is not valid UTF-8",
    ),
    "subset-list-file-unknown-source": one(
        "catalog/datasets/subset.yaml",
        entry(
            """
            title: Subset
            description: A subset listed in a source that does not exist.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: images
                url: https://example.org/subset/images.zip
                filename: images.zip
                checksum: unpublished
                archive: zip
            subsets:
              - name: small
                list_file:
                  source: image
                  format: path-list
            """
        ),
        17,
        "subset 'small' lists its files in source 'image', which this entry does not define; "
        "did you mean 'images'?",
    ),
    "split-unknown-subset": one(
        "catalog/datasets/split.yaml",
        entry(
            """
            title: Split
            description: A split of a subset that does not exist.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: images
                url: https://example.org/split/images.zip
                filename: images.zip
                checksum: unpublished
            splits:
              - name: test
                subset: everything
            """
        ),
        15,
        "split 'test' refers to subset 'everything', which this entry does not define",
    ),
    "duplicate-part-name": one(
        "catalog/datasets/twice.yaml",
        entry(
            """
            title: Twice
            description: Two sources with one name.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: images
                url: https://example.org/twice/a.zip
                filename: a.zip
                checksum: unpublished
              - name: images
                url: https://example.org/twice/b.zip
                filename: b.zip
                checksum: unpublished
            """
        ),
        13,
        "part name 'images' is used twice in this entry (first on line 9)",
    ),
    "prepare-input-unknown-entry": one(
        "catalog/datasets/prepared.yaml",
        entry(
            """
            title: Prepared
            description: A prepare step whose input is misspelt.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: images
                url: https://example.org/prepared/images.zip
                filename: images.zip
                checksum: unpublished
            prepare:
              - name: features
                stage: features
                inputs:
                  - prepared:images
                  - goood
            """
        ),
        18,
        "reference 'goood': no catalog entry named 'goood'; did you mean 'good'?",
    ),
    "reference-unknown-part": one(
        "catalog/datasets/partref.yaml",
        entry(
            """
            title: Part reference
            description: A prepare step naming a part the other entry lacks.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: public
            sources:
              - name: images
                url: https://example.org/partref/images.zip
                filename: images.zip
                checksum: unpublished
            prepare:
              - name: features
                stage: features
                inputs: [good:image]
            """
        ),
        16,
        "reference 'good:image': entry 'good' has no source or subset named 'image'; "
        "did you mean 'images'?",
    ),
    "conflicting-checksums": Case(
        {
            "catalog/datasets/one.yaml": entry(
                """
                title: One
                description: Links a shared URL with one digest.
                licence:
                  name: MIT
                  redistribution: allowed
                access:
                  kind: public
                sources:
                  - name: data
                    url: https://example.org/shared/data.zip
                    filename: data.zip
                    checksum: md5:11111111111111111111111111111111
                """
            ),
            "catalog/datasets/two.yaml": entry(
                """
                title: Two
                description: Links the same URL with another digest.
                licence:
                  name: MIT
                  redistribution: allowed
                access:
                  kind: public
                sources:
                  - name: first
                    url: https://example.org/two/first.zip
                    filename: first.zip
                    checksum: unpublished
                  - name: data
                    url: https://EXAMPLE.org/shared/data.zip
                    filename: data.zip
                    checksum: md5:22222222222222222222222222222222
                """
            ),
        },
        [
            Expected(
                "catalog/datasets/one.yaml",
                10,
                "URL is registered with 2 different checksums (also used by two:data "
                "(two.yaml:14)): at most one of them can be right; fix the URL, or record",
            ),
            Expected(
                "catalog/datasets/two.yaml",
                14,
                "URL is registered with 2 different checksums (also used by one:data "
                "(one.yaml:10))",
            ),
        ],
    ),
    "duplicate-entry-name": Case(
        {"catalog/models/good.yaml": GOOD_MODEL},
        [
            Expected(
                "catalog/models/good.yaml",
                1,
                "duplicate entry name 'good': also defined in ",
            )
        ],
    ),
    "bad-file-name": one(
        "catalog/datasets/Bad_Name.yaml",
        GOOD_DATASET,
        1,
        "file name 'Bad_Name' is not a valid entry name",
    ),
    "yml-suffix": one(
        "catalog/datasets/other.yml",
        GOOD_DATASET,
        1,
        "entry files end in '.yaml'; rename it",
    ),
    "entry-outside-kind-folder": Case(
        {"misc/stray.yaml": GOOD_DATASET},
        [
            Expected(
                "misc/stray.yaml",
                1,
                "cannot tell whether this is a dataset or a model: put it in a folder named "
                "'datasets' or 'models'",
            )
        ],
        extra_paths=["misc/stray.yaml"],
    ),
    "missing-path": Case(
        {},
        [Expected("catalog/nowhere.yaml", 1, "no such file or folder")],
        extra_paths=["catalog/nowhere.yaml"],
    ),
    "model-without-weights-or-stage": one(
        "catalog/models/orphan.yaml",
        entry(
            """
            title: Orphan
            description: Neither downloadable nor trained here.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: timm
              name: resnet50
            """
        ),
        1,
        "a model needs 'weights' to download or 'produced_by' to train it",
    ),
    "model-backbone-is-dataset": one(
        "catalog/models/head.yaml",
        entry(
            """
            title: Head
            description: Its backbone names a dataset.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: external
              name: head
              backbone: good
            produced_by:
              stage: train-head
              inputs: [good:images]
            """
        ),
        9,
        "reference 'good' must name a model, but 'good' is a dataset",
    ),
    "model-trained-on-model": one(
        "catalog/models/student.yaml",
        entry(
            """
            title: Student
            description: Claims to be trained on a model.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: timm
              name: resnet18
            produced_by:
              stage: distil
            trained_on:
              - good
              - student
            """
        ),
        13,
        "reference 'student' must name a dataset, but 'student' is a model",
    ),
}


# --- what cannot be a file, what two sources would both write, numbers, control characters ---

SOURCES_HEADER = """\
title: {title}
description: An entry whose sources are the point of the case.
licence:
  name: MIT
  redistribution: allowed
access:
  kind: public
sources:
"""


def with_sources(sources: str, title: str = "Sources", tail: str = "") -> str:
    """A public dataset whose ``sources:`` list is ``sources`` (its first item on line 9)."""
    return SOURCES_HEADER.format(title=title) + entry(sources) + entry(tail)


def source(name: str, filename: str, *extra: str) -> str:
    """One source item (4 lines plus ``extra``), its ``filename`` on the item's third line."""
    lines = [
        f"- name: {name}",
        f"  url: https://example.org/{name}/download",
        f"  filename: {filename}",
        "  checksum: unpublished",
        *(f"  {line}" for line in extra),
    ]
    return "".join(f"  {line}\n" for line in lines)


def one_source(slug: str, field_line: str, line: int, fragment: str) -> Case:
    """A dataset ``slug`` whose only source has ``field_line`` (``filename: ...`` replaces
    the filename; anything else is added after the checksum)."""
    if field_line.startswith("filename:"):
        text = source("data", field_line.removeprefix("filename: "))
    else:
        text = source("data", "data.bin", field_line)
    return one(f"catalog/datasets/{slug}.yaml", with_sources(text, title=slug), line, fragment)


FILE_AND_PATH_CASES: dict[str, Case] = {
    "filename-dot": one_source("dot", 'filename: "."', 11, "'.' names a folder, not a file"),
    "filename-dotdot": one_source("dotdot", 'filename: ".."', 11, "'..' must not contain '..'"),
    "filename-absolute": one_source(
        "absolute", "filename: /etc/passwd", 11, "must be a relative path inside the dataset root"
    ),
    "filename-with-folder": one_source(
        "nested", "filename: a/b.bin", 11, "'a/b.bin' must be a file name without directories"
    ),
    "filename-home": one_source(
        "home", "filename: ~root", 11, "'~root' must be a relative path inside"
    ),
    "filename-nul": one_source(
        "nul", r'filename: "a\0b.bin"', 11, "holds the control character '\\x00' (U+0000)"
    ),
    "filename-tab": one_source(
        "tab", r'filename: "a\tb.bin"', 11, "holds the control character '\\t'"
    ),
    "filename-backslash": one_source(
        "backslash", r"filename: 'a\b.bin'", 11, "must use '/' as separator"
    ),
    "filename-too-long": one_source(
        "longname",
        "filename: " + "x" * 256,
        11,
        "is 256 bytes long; file systems accept names of at most 255 bytes",
    ),
    "filename-too-long-in-bytes": one_source(
        "longbytes", "filename: " + "é" * 128, 11, "is 256 bytes long"
    ),
    "unpack-to-absolute": one_source(
        "unpackabs",
        "unpack_to: /var/tmp",
        13,
        "sources[0].unpack_to: '/var/tmp' must be a relative",
    ),
    "unpack-to-long-folder": one_source(
        "unpacklong", "unpack_to: a/" + "y" * 300, 13, "is 300 bytes long"
    ),
    "unpack-to-whole-path-too-long": one_source(
        "unpackpath", "unpack_to: " + "/".join(["d" * 200] * 6), 13, "paths are limited to 1,024"
    ),
    "source-name-too-long": one(
        "catalog/datasets/longpart.yaml",
        with_sources(source("n" * 129, "data.bin")),
        9,
        "is not a valid name: use up to 128 letters",
    ),
    "member-traversal": one(
        "catalog/datasets/member.yaml",
        with_sources(
            source("lists", "lists.zip", "archive: zip"),
            tail="""
            subsets:
              - name: all
                list_file: {source: lists, member: ../../etc/passwd, format: path-list}
            """,
        ),
        16,
        "subsets[0].list_file.member: '../../etc/passwd' must not contain '..'",
    ),
    "include-glob-escapes": one(
        "catalog/datasets/include.yaml",
        with_sources(
            source("data", "data.zip", "archive: zip"),
            tail="""
            subsets:
              - name: all
                include: ["images/*", "../../*"]
            """,
        ),
        16,
        "subsets[0].include[1]: '../../*' must not contain '..'",
    ),
    "layout-glob-absolute": one(
        "catalog/datasets/layoutabs.yaml",
        entry(
            """
            title: Layout
            description: A layout rule outside the root.
            licence:
              name: MIT
              redistribution: allowed
            access:
              kind: manual
              instructions: Ask for it.
            layout:
              rules:
                - glob: images/*.jpg
                - glob: /etc/*
            """
        ),
        12,
        "layout.rules[1].glob: '/etc/*' must be a relative path",
    ),
}

COLLISION_CASES: dict[str, Case] = {
    "two-sources-one-file": one(
        "catalog/datasets/samefile.yaml",
        with_sources(source("a", "data.bin") + source("b", "data.bin")),
        15,
        "source 'b' writes 'data.bin', as source 'a' (line 9) does: one would overwrite the other",
    ),
    "one-file-after-normalising": one(
        "catalog/datasets/normalised.yaml",
        with_sources(
            source("a", "list.txt", "unpack_to: lists/.")
            + source("b", "list.txt", "unpack_to: ./lists/")
        ),
        16,
        "source 'b' writes 'lists/list.txt', as source 'a' (line 9) does",
    ),
    "one-file-but-for-case": one(
        "catalog/datasets/casefold.yaml",
        with_sources(source("a", "README.txt") + source("b", "readme.txt")),
        15,
        "source 'b' writes 'readme.txt', as source 'a' (line 9) does",
    ),
    "file-where-an-archive-unpacks": one(
        "catalog/datasets/unpackclash.yaml",
        with_sources(
            source("images", "images.zip", "archive: zip", "unpack_to: images")
            + source("index", "images")
        ),
        17,
        "source 'index' writes a file at 'images', where source 'images' (line 14) needs a folder",
    ),
    "file-where-another-file-needs-a-folder": one(
        "catalog/datasets/fileclash.yaml",
        with_sources(source("a", "lists") + source("b", "one.txt", "unpack_to: lists/sub")),
        11,
        "source 'a' writes a file at 'lists', where source 'b' (line 17) needs a folder",
    ),
    "two-archives-one-name": one(
        "catalog/datasets/samearchive.yaml",
        with_sources(
            source("a", "part.zip", "archive: zip", "unpack_to: a")
            + source("b", "part.zip", "archive: auto", "unpack_to: b")
        ),
        17,
        "source 'b' keeps its archive in the work area as 'part.zip', as source 'a' (line 9)",
    ),
}

NUMBER_CASES: dict[str, Case] = {
    "size-as-text": one_source(
        "sizetext",
        'size: "12"',
        13,
        "sources[0].size: '12' is a string, not a whole number; write it without quotes",
    ),
    "size-as-boolean": one_source(
        "sizebool", "size: true", 13, "sources[0].size: True is a boolean, not a whole number"
    ),
    "size-as-decimal": one_source(
        "sizefloat", "size: 12.5", 13, "sources[0].size: 12.5 is a decimal number"
    ),
    "size-negative": one_source(
        "sizeneg", "size: -5", 13, "sources[0].size: Input should be greater than or equal to 1"
    ),
    "size-zero": one_source(
        "sizezero", "size: 0", 13, "sources[0].size: Input should be greater than or equal to 1"
    ),
    "size-absurd": one_source(
        "sizehuge", f"size: {2**70}", 13, "sources[0].size: Input should be less than or equal"
    ),
    "size-published-absurd": one_source(
        "publishedhuge",
        "size_published: " + "9" * 400 + "T",
        13,
        "is larger than any single file (at most 1 PiB)",
    ),
    "size-published-just-too-big": one_source(
        "publishedbig", "size_published: 1025 TiB", 13, "'1025 TiB' is larger than any single file"
    ),
    "size-published-in-petabytes": one_source(
        "publishedpeta", "size_published: 1.1P", 13, "'1.1P' is not a size such as '2.3Mb'"
    ),
    "size-published-as-number": one_source(
        "publishednumber",
        "size_published: 5",
        13,
        "sources[0].size_published: Input should be a valid string",
    ),
    "count-as-text": one(
        "catalog/datasets/counttext.yaml",
        with_sources(
            source("data", "data.zip", "archive: zip"),
            tail="""
            counts:
              - unit: images
                published: "1000"
            """,
        ),
        16,
        "counts[0].published: '1000' is a string, not a whole number",
    ),
    "layout-count-as-boolean": one(
        "catalog/datasets/layoutbool.yaml",
        with_sources(
            source("data", "data.zip", "archive: zip"),
            tail="""
            layout:
              rules:
                - glob: images/*
                  min: yes
            """,
        ),
        17,
        "layout.rules[0].min: True is a boolean, not a whole number",
    ),
    "year-as-text": one(
        "catalog/datasets/yeartext.yaml",
        with_sources(
            source("data", "data.zip", "archive: zip"),
            tail="""
            paper:
              title: A paper
              year: "2021"
            """,
        ),
        16,
        "paper.year: '2021' is a string, not a whole number",
    ),
    "result-not-finite": one(
        "catalog/models/infinite.yaml",
        entry(
            """
            title: Infinite
            description: A published result of infinity.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: timm
              name: resnet50
            weights:
              name: checkpoint
              url: https://example.org/inf/model.pth
              filename: model.pth
              checksum: unpublished
            published_results:
              - dataset: good
                metric: recall
                value: .inf
            """
        ),
        17,
        "published_results[0].value: inf is not a finite number",
    ),
    "input-mean-as-text": one(
        "catalog/models/meantext.yaml",
        entry(
            """
            title: Mean as text
            description: A normalisation mean written as text.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: timm
              name: resnet50
            weights:
              name: checkpoint
              url: https://example.org/mean/model.pth
              filename: model.pth
              checksum: unpublished
            input:
              width: 224
              height: "224"
            """
        ),
        16,
        "input.height: '224' is a string, not a whole number",
    ),
}

CONTROL_CHARACTER_CASES: dict[str, Case] = {
    "title-with-csi": one(
        "catalog/datasets/csi.yaml",
        with_sources(source("data", "data.bin"), title=r'"Red \e[31mtitle\e[0m"'),
        1,
        "title: text holds the control character '\\x1b' (U+001B), which terminals act on",
    ),
    "osc8-link-in-description": one(
        "catalog/datasets/osc8.yaml",
        with_sources(source("data", "data.bin")).replace(
            "description: An entry whose sources are the point of the case.",
            r'description: "\e]8;;https://evil.example/\e\\looks safe\e]8;;\e\\"',
        ),
        2,
        "description: text holds the control character '\\x1b'",
    ),
    "bell-in-licence-notes": one(
        "catalog/datasets/bell.yaml",
        with_sources(source("data", "data.bin")).replace(
            "  redistribution: allowed\n", '  redistribution: allowed\n  notes: "ding\\a"\n'
        ),
        6,
        "licence.notes: text holds the control character '\\x07' (U+0007)",
    ),
    "carriage-return-in-known-issue": one_source(
        "cr",
        r'known_issue: "all is well\rnothing to see"',
        13,
        "known_issue: text holds the control character '\\r'",
    ),
    "bidi-override-in-url-text": one_source(
        "bidi", 'description: "harmless \u202etxt.exe"', 13, "'\\u202e' (U+202E)"
    ),
    "c1-csi-in-title": one(
        "catalog/datasets/c1.yaml",
        with_sources(source("data", "data.bin"), title=r'"C1 \x9b31m"'),
        1,
        "title: text holds the control character '\\x9b' (U+009B)",
    ),
    "escape-in-a-key": one(
        "catalog/datasets/key.yaml",
        with_sources(source("data", "data.bin"), tail=r'"bad\ekey": 1' + "\n"),
        13,
        "bad\\x1bkey: key holds the control character '\\x1b'",
    ),
    "escape-in-free-params": one(
        "catalog/datasets/params.yaml",
        with_sources(
            source("data", "data.bin"),
            tail="""
            prepare:
              - name: stats
                stage: dataset-stats
                params: {label: "\\e[2J"}
            """,
        ),
        16,
        "prepare[0].params.label: text holds the control character '\\x1b'",
    ),
}

MD5 = "md5:" + "0123456789abcdef" * 2

PROVENANCE_CASES: dict[str, Case] = {
    "published-without-where": one_source(
        "nowhere",
        "checksum_source: {kind: published}",
        13,
        "sources[0].checksum_source: a published checksum needs 'where'",
    ),
    "recorded-without-date": one_source(
        "nodate",
        "checksum_source: {kind: recorded, recorded_from: first trusted download}",
        13,
        "sources[0].checksum_source: a recorded checksum needs 'date' and 'recorded_from'",
    ),
    "recorded-on-no-day": one_source(
        "badday",
        "checksum_source: {kind: recorded, date: '2024-02-30', recorded_from: a download}",
        13,
        "'2024-02-30' is not a date: write YYYY-MM-DD",
    ),
    "recorded-date-as-yaml-date": one_source(
        "yamldate",
        "checksum_source: {kind: recorded, date: 2024-02-28 10:00, recorded_from: x}",
        13,
        "'2024-02-28 10:00' is not a date",
    ),
    "unknown-provenance-kind": one_source(
        "guessed",
        "checksum_source: {kind: guessed, where: memory}",
        13,
        "sources[0].checksum_source.kind: Input should be 'published' or 'recorded'",
    ),
}
# one_source writes 'checksum: unpublished'; these cases need a real checksum
for _case in PROVENANCE_CASES.values():
    for _path, _text in list(_case.files.items()):
        _case.files[_path] = str(_text).replace("checksum: unpublished", f"checksum: {MD5}")

STAGES = "registered: " + ", ".join(stage_names())
STAGE_CASES: dict[str, Case] = {
    "prepare-unknown-stage": one(
        "catalog/datasets/later.yaml",
        with_sources(
            source("data", "data.bin"),
            tail="""
            prepare:
              - name: segmentations
                stage: mesh-segmentation
                description: Segmentation maps that no stage makes yet.
            """,
        ),
        15,
        f"stage 'mesh-segmentation' is not a registered stage ({STAGES}); describe work that "
        "no stage does yet in 'notes'",
    ),
    "prepare-misspelt-stage": one(
        "catalog/datasets/typo.yaml",
        with_sources(
            source("data", "data.bin"),
            tail="""
            prepare:
              - name: stats
                stage: dataset-stat
            """,
        ),
        15,
        f"stage 'dataset-stat' is not a registered stage ({STAGES}); did you mean 'dataset-stats'?",
    ),
    "model-produced-by-unknown-stage": one(
        "catalog/models/trained.yaml",
        entry(
            """
            title: Trained here
            description: Made by a stage that does not exist.
            licence:
              name: MIT
              redistribution: allowed
            architecture:
              library: timm
              name: resnet18
            produced_by:
              stage: locus-train
            """
        ),
        10,
        f"stage 'locus-train' is not a registered stage ({STAGES})",
    ),
}

BAD_ENTRIES.update(STAGE_CASES)
BAD_ENTRIES.update(PROVENANCE_CASES)


def test_a_checksum_without_provenance_is_a_warning(root: Path) -> None:
    """The checksum still verifies the file, so lint passes (and fetch may use the entry)
    while it asks where the checksum comes from."""
    text = with_sources(source("data", "data.bin")).replace("unpublished", MD5)
    write(root, {"catalog/datasets/noprovenance.yaml": text})
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 0)
    assert_reported(
        problem_lines(result),
        Expected(
            "catalog/datasets/noprovenance.yaml",
            12,
            "checksum of source 'data' does not say where it comes from: add 'checksum_source' "
            "with kind 'published' and 'where', or kind 'recorded' with 'date' and "
            "'recorded_from' (`vcat catalog record noprovenance` writes it",
            severity="warning",
        ),
    )


def test_an_unpublished_checksum_with_provenance_is_a_warning(root: Path) -> None:
    text = with_sources(
        source("data", "data.bin", "checksum_source: {kind: published, where: the guide}")
    )
    write(root, {"catalog/datasets/needless.yaml": text})
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 0)
    assert_reported(
        problem_lines(result),
        Expected(
            "catalog/datasets/needless.yaml",
            13,
            "'checksum_source' describes a checksum, but this one is unpublished; remove it",
            severity="warning",
        ),
    )


BAD_ENTRIES.update(FILE_AND_PATH_CASES)
BAD_ENTRIES.update(COLLISION_CASES)
BAD_ENTRIES.update(NUMBER_CASES)
BAD_ENTRIES.update(CONTROL_CHARACTER_CASES)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder, made the working directory, holding a catalog with ``good``."""
    root = tmp_path.resolve()
    monkeypatch.chdir(root)
    write(root, {"catalog/datasets/good.yaml": GOOD_DATASET})
    (root / "catalog" / "models").mkdir()
    return root


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace(TMP, str(root)), encoding="utf-8")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def assert_clean_exit(result: Result, code: int) -> None:
    """Exit ``code`` through ``typer.Exit``/normal return, with no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    )
    assert "Traceback" not in result.output


def problem_lines(result: Result) -> list[str]:
    """The ``path:line: severity: message`` lines lint printed on stdout."""
    return [line for line in result.stdout.splitlines() if line.strip()]


def assert_reported(lines: list[str], expected: Expected) -> None:
    prefix = f"{expected.file}:{expected.line}: {expected.severity}: "
    matches = [line for line in lines if line.startswith(prefix) and expected.fragment in line]
    assert matches, f"no line starting {prefix!r} containing {expected.fragment!r} in:\n" + (
        "\n".join(lines)
    )


def listed_names(catalog_dir: Path) -> set[str]:
    result = invoke("catalog", "list", "--json", "--catalog", str(catalog_dir))
    assert_clean_exit(result, 0)
    return {item["name"] for item in json.loads(result.stdout)["entries"]}


def test_good_catalog_is_clean(root: Path) -> None:
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 0)
    assert problem_lines(result) == []
    assert "1 entries checked: 0 error(s), 0 warning(s)" in result.stderr
    assert listed_names(root / "catalog") == {"good"}


@pytest.mark.parametrize("case", list(BAD_ENTRIES.values()), ids=list(BAD_ENTRIES))
def test_bad_entry_is_reported_with_file_and_line(root: Path, case: Case) -> None:
    write(root, case.files)
    catalog_dir = root / "catalog"
    args = [str(catalog_dir), *(str(root / extra) for extra in case.extra_paths)]

    result = invoke("catalog", "lint", *args)

    assert_clean_exit(result, 1)
    lines = problem_lines(result)
    for line in lines:  # one line per problem, in the compiler format
        assert ": error: " in line or ": warning: " in line, line
    for expected in case.expected:
        assert_reported(lines, expected)
    assert "good" in listed_names(catalog_dir)
    assert not (root / "pwned").exists()


def test_python_tag_does_not_execute(root: Path) -> None:
    marker = root / "pwned"
    write(
        root,
        {
            "catalog/datasets/evil.yaml": (
                f'title: !!python/object/apply:os.system ["touch {marker}"]\n'
                f"description: !!python/object/new:os.system [touch {marker}]\n"
            )
        },
    )
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 1)
    assert not marker.exists()
    assert_reported(problem_lines(result), Expected("catalog/datasets/evil.yaml", 1, "not allowed"))


SHARED_URL_ENTRY = """\
title: Shares {name}
description: Links a URL another entry links too.
licence:
  name: MIT
  redistribution: allowed
access:
  kind: public
sources:
  - name: list
    url: https://example.org/shared/list.txt
    filename: list.txt
    checksum: {checksum}
{known_issue}"""


def shared_url_entry(name: str, checksum: str, known_issue: bool) -> str:
    tail = "    known_issue: the upstream guide links two files to one URL\n" if known_issue else ""
    if checksum != "unpublished":
        tail += "    checksum_source: {kind: published, where: the guide}\n"
    return SHARED_URL_ENTRY.format(name=name, checksum=checksum, known_issue=tail)


def test_acknowledged_checksum_conflict_only_warns(root: Path) -> None:
    write(
        root,
        {
            "catalog/datasets/alpha.yaml": shared_url_entry(
                "alpha", "md5:" + "a" * 32, known_issue=True
            ),
            "catalog/datasets/beta.yaml": shared_url_entry(
                "beta", "sha256:" + "b" * 64, known_issue=True
            ),
        },
    )
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 0)
    lines = problem_lines(result)
    assert len(lines) == 2
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        assert_reported(
            lines,
            Expected(
                f"catalog/datasets/{name}.yaml",
                10,
                f"URL is registered with 2 different checksums (also used by {other}:list "
                f"({other}.yaml:10))",
                severity="warning",
            ),
        )
    assert not any(": error: " in line for line in lines)


def test_checksum_conflict_acknowledged_by_one_side_is_an_error(root: Path) -> None:
    write(
        root,
        {
            "catalog/datasets/alpha.yaml": shared_url_entry(
                "alpha", "md5:" + "a" * 32, known_issue=True
            ),
            "catalog/datasets/beta.yaml": shared_url_entry(
                "beta", "md5:" + "b" * 32, known_issue=False
            ),
        },
    )
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 1)
    lines = problem_lines(result)
    for name in ("alpha", "beta"):
        assert_reported(
            lines, Expected(f"catalog/datasets/{name}.yaml", 10, "2 different checksums")
        )


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        ("unpublished", "unpublished"),
        ("md5:" + "c" * 32, "unpublished"),
        ("md5:" + "C" * 32, "md5:" + "c" * 32),  # digests compare case-insensitively
    ],
    ids=["both-unpublished", "one-unpublished", "same-digest-other-case"],
)
def test_shared_link_without_conflict_only_warns(root: Path, alpha: str, beta: str) -> None:
    write(
        root,
        {
            "catalog/datasets/alpha.yaml": shared_url_entry("alpha", alpha, known_issue=False),
            "catalog/datasets/beta.yaml": shared_url_entry("beta", beta, known_issue=False),
        },
    )
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 0)
    lines = problem_lines(result)
    assert len(lines) == 2
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        assert_reported(
            lines,
            Expected(
                f"catalog/datasets/{name}.yaml",
                10,
                f"download link shared with {other}:list ({other}.yaml:10)",
                severity="warning",
            ),
        )
    assert listed_names(root / "catalog") == {"good", "alpha", "beta"}


def test_many_bad_entries_at_once_still_load_the_good_one(root: Path) -> None:
    """All single-file cases together: every one is reported, the good entry survives."""
    expected: list[Expected] = []
    for case in BAD_ENTRIES.values():
        if case.extra_paths or any(not f.startswith("catalog/datasets/") for f in case.files):
            continue
        write(root, case.files)
        expected += case.expected
    assert len(expected) >= 16
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 1)
    lines = problem_lines(result)
    for item in expected:
        assert_reported(lines, item)
    assert "good" in listed_names(root / "catalog")


def test_shipped_catalog_lints_clean() -> None:
    result = invoke("catalog", "lint", str(SHIPPED_CATALOG))
    assert_clean_exit(result, 0)
    for line in problem_lines(result):
        assert ": warning: " in line, line
        assert ": error: " not in line, line
    assert "0 error(s)" in result.stderr


# --- parse_yaml directly -------------------------------------------------------------------


def parse(text: str):
    return parse_yaml(entry(text), Path("entry.yaml"))


def test_line_map_records_nested_keys_and_list_items() -> None:
    document = parse(
        """
        title: Lines
        licence:
          name: MIT
          redistribution: allowed
        sources:
          - name: a
            url: https://example.org/a

          - name: b
            url: https://example.org/b
        tags: [x,
               y]
        """
    )
    lines = document.lines
    assert lines.line_of(()) == 1
    assert lines.line_of(("title",)) == 1
    assert lines.line_of(("licence",)) == 2
    assert lines.line_of(("licence", "name")) == 3
    assert lines.line_of(("licence", "redistribution")) == 4
    assert lines.line_of(("sources",)) == 5
    assert lines.line_of(("sources", 0)) == 6
    assert lines.line_of(("sources", 0, "url")) == 7
    assert lines.line_of(("sources", 1)) == 9
    assert lines.line_of(("sources", 1, "name")) == 9
    assert lines.line_of(("sources", 1, "url")) == 10
    assert lines.line_of(("tags", 0)) == 11
    assert lines.line_of(("tags", 1)) == 12
    # Unknown parts (pydantic's union member names) are skipped; the deepest known one wins.
    assert lines.line_of(("sources", 1, "function-after[check(), str]", "url")) == 10
    assert lines.line_of(("sources", 7, "url")) == 5
    assert lines.line_of(("nowhere",)) == 1


def test_line_map_defaults_to_line_one() -> None:
    assert LineMap().line_of(("anything", 0)) == 1


def test_leading_comments_shift_the_root_line() -> None:
    document = parse(
        """
        # yaml-language-server: $schema=../schema/dataset.schema.json

        title: After comments
        """
    )
    assert document.lines.line_of(()) == 3
    assert document.data == {"title": "After comments"}


def test_merge_keys_are_resolved() -> None:
    document = parse(
        """
        defaults: &defaults
          archive: zip
          checksum: unpublished
        sources:
          - <<: *defaults
            name: a
          - name: b
            <<: *defaults
        """
    )
    sources = document.data["sources"]
    assert sources[0] == {"archive": "zip", "checksum": "unpublished", "name": "a"}
    assert sources[1] == {"archive": "zip", "checksum": "unpublished", "name": "b"}
    assert "<<" not in sources[0]
    # Merged values point at the lines where they were written.
    assert document.lines.line_of(("sources", 0, "archive")) == 2
    assert document.lines.line_of(("sources", 0, "name")) == 6
    assert document.lines.line_of(("sources", 1, "name")) == 7


def test_merge_of_a_list_of_mappings() -> None:
    document = parse(
        """
        a: &a {x: 1}
        b: &b {y: 2}
        c:
          <<: [*a, *b]
          z: 3
        """
    )
    assert document.data["c"] == {"x": 1, "y": 2, "z": 3}


def test_aliases_expand_to_plain_values() -> None:
    document = parse(
        """
        one: &one [1, 2]
        two: *one
        """
    )
    assert document.data == {"one": [1, 2], "two": [1, 2]}


def test_core_schema_scalars_are_allowed() -> None:
    document = parse(
        """
        s: text
        i: 3
        f: 1.5
        b: true
        n: null
        explicit: !!str 42
        """
    )
    assert document.data == {"s": "text", "i": 3, "f": 1.5, "b": True, "n": None, "explicit": "42"}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: &a [1, *a]\n", 1, "recursive alias"),
        ("a: 1\nb: &b\n  c: *b\n", 2, "recursive alias"),
        ("x: !!binary aGVsbG8=\n", 1, "'tag:yaml.org,2002:binary' is not allowed"),
        ("x: !!set {a}\n", 1, "'tag:yaml.org,2002:set' is not allowed"),
        ("x:\n  y: !!python/name:os.system\n", 2, "python/name:os.system' is not allowed"),
        ("? [a, b]\n: 1\n", 1, "mapping keys must be plain strings"),
        ("x:\n  <<: 3\n", 2, "invalid merge key"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first defined on line 1)"),
        ("x:\n  a: 1\n  a: 2\n", 3, "duplicate key 'a' (first defined on line 2)"),
    ],
    ids=[
        "recursive-sequence",
        "recursive-mapping",
        "binary-tag",
        "set-tag",
        "python-name-tag",
        "sequence-key",
        "scalar-merge",
        "duplicate-top-level",
        "duplicate-nested",
    ],
)
def test_parse_errors_are_catalog_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_yaml(text, Path("bad.yaml"))
    [problem] = raised.value.problems
    assert problem.path == Path("bad.yaml")
    assert problem.line == line
    assert fragment in problem.message


def test_alias_bomb_fails_fast() -> None:
    with pytest.raises(CatalogError, match="alias bomb"):
        parse_yaml(alias_bomb(), Path("bomb.yaml"))


# --- values PyYAML cannot construct, nesting, merges ---------------------------------------


def test_merge_key_override() -> None:
    document = parse(
        """
        base: &base
          archive: zip
          checksum: unpublished
        source:
          <<: *base
          archive: tar
        """
    )
    assert document.data["source"] == {"archive": "tar", "checksum": "unpublished"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("title: !!int abc\n", "invalid int value"),
        ("title: !!int ''\n", "invalid int value"),
        ("title: !!float abc\n", "invalid float value"),
        ("title: !!bool maybe\n", "invalid bool value"),
        ("size: " + "9" * 5000 + "\n", "invalid int value"),
        ("title: " + "[" * 2000 + "]" * 2000 + "\n", "nested more than"),
        ("title: !!map abc\n", "expected a mapping node"),
    ],
    ids=["int-tag", "empty-int", "float-tag", "bool-tag", "int-over-4300-digits",
         "deep-nesting", "map-tag-on-scalar"],
)  # fmt: skip
def test_unconstructible_scalars_are_one_line_catalog_errors(text: str, fragment: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_yaml(text, Path("bad.yaml"))
    message = raised.value.problems[0].message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["title: 2024-13-45\n", "title: !!timestamp abc\n"])
def test_date_like_values_are_text(text: str) -> None:
    # The catalog records no dates, so anything that looks like one stays the text written.
    value = parse_yaml(text, Path("dated.yaml")).data["title"]
    assert isinstance(value, str)
    assert value == text.split(" ")[-1].strip()


def test_impossible_date_does_not_crash_lint(root: Path) -> None:
    write(root, {"catalog/datasets/when.yaml": "title: Dated\nreleased_on: 2024-13-45\n"})
    result = invoke("catalog", "lint", str(root / "catalog"))
    assert_clean_exit(result, 1)
    assert_reported(
        problem_lines(result),
        Expected("catalog/datasets/when.yaml", 2, "unknown key 'released_on'"),
    )


def test_unclosed_quote_points_inside_the_file_and_at_its_start() -> None:
    with pytest.raises(CatalogError) as raised:
        parse_yaml('a: 1\nb: "unclosed\nc: 2\n', Path("quote.yaml"))
    problem = raised.value.problems[0]
    assert problem.line <= 4
    assert "on line 2" in problem.message

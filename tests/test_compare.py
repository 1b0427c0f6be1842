"""`vcat compare` on a real git + DVC repository with a stage that writes metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app
from vcat.compare import (
    MISSING,
    CompareError,
    Comparison,
    NothingChanged,
    Revision,
    Row,
    abbreviate_keys,
    abbreviate_middle,
    compare,
    plot_metrics,
)

DVC_YAML = """\
stages:
  train:
    cmd: {python} train.py
    deps: [train.py]
    params: [train.lr]
    metrics:
      - metrics/train.json:
          cache: false
"""
TRAIN_PY = """\
import json, pathlib, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
pathlib.Path("metrics").mkdir(exist_ok=True)
result = {"accuracy": round(0.5 + lr, 6), "loss": {"final": round(1 - lr, 6)}, "epochs": 3}
pathlib.Path("metrics/train.json").write_text(json.dumps(result))
"""
RATES = (0.1, 0.2, 0.35)
runner = CliRunner()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def dvc(repo: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three commits; each changes train.lr, and `dvc repro` rewrites metrics/train.json."""
    repo = tmp_path_factory.mktemp("history")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.org")
    git(repo, "config", "user.name", "CI")
    dvc(repo, "init", "-q")
    (repo / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable))
    (repo / "train.py").write_text(TRAIN_PY)
    for rate in RATES:
        (repo / "params.yaml").write_text(f"train:\n  lr: {rate}\n  batch: 32\n")
        dvc(repo, "repro", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"lr {rate}")
    git(repo, "tag", "baseline", "HEAD~2")
    return repo


@pytest.fixture
def inside(history: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(history)
    yield history
    # a test may leave the workspace dirty; the next one starts from HEAD
    git(history, "checkout", "-q", "--", ".")


def test_table_shows_each_revision_and_the_change(inside: Path) -> None:
    result = runner.invoke(app, ["compare", "HEAD~2", "HEAD~1", "HEAD"])
    assert result.exit_code == 0, result.output
    out = result.output
    shas = [git(inside, "rev-parse", "--short=7", f"HEAD~{n}") for n in (2, 1, 0)]
    assert all(sha in out for sha in shas)
    assert "baseline" in out and "main" in out  # tag and branch beside the short sha
    accuracy = next(line for line in out.splitlines() if "accuracy" in line)
    assert accuracy.split()[:2] == ["│", "*"]  # marked as changed
    assert "0.6" in accuracy and "0.7 (+0.1)" in accuracy and "0.85 (+0.25)" in accuracy
    lr = next(line for line in out.splitlines() if "train.lr" in line)
    assert "0.2 (+0.1)" in lr and "0.35 (+0.25)" in lr
    batch = next(line for line in out.splitlines() if "train.batch" in line)
    assert "*" not in batch and "(+" not in batch
    assert "read better as a plot" in out  # three revisions, no --plot


def test_json_layout(inside: Path) -> None:
    result = runner.invoke(app, ["compare", "baseline", "HEAD", "--json", "--no-params"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "vcat.compare/1"
    assert [r["rev"] for r in document["revisions"]] == ["baseline", "HEAD"]
    assert document["revisions"][0]["names"] == ["baseline"]
    assert document["revisions"][1]["sha"] == git(inside, "rev-parse", "HEAD")
    assert document["params"] == []
    rows = {(row["file"], row["key"]): row for row in document["metrics"]}
    assert set(rows) == {
        ("metrics/train.json", "accuracy"),
        ("metrics/train.json", "loss.final"),
        ("metrics/train.json", "epochs"),
    }
    assert rows["metrics/train.json", "loss.final"] == {
        "file": "metrics/train.json",
        "key": "loss.final",
        "values": [0.9, 0.65],
        "absent": [],
        "changed": True,
        "deltas": [0.0, -0.25],
    }
    assert rows["metrics/train.json", "epochs"]["changed"] is False
    assert document["notices"] == []


def test_unknown_revision_is_an_error_naming_it(inside: Path) -> None:
    result = runner.invoke(app, ["compare", "HEAD", "no-such-branch"])
    assert result.exit_code == 2
    assert "unknown revision 'no-such-branch'" in result.output
    result = runner.invoke(app, ["compare", "HEAD", "--no-metrics", "--no-params"])
    assert result.exit_code == 2 and "nothing to compare" in result.output


def test_unparsable_metrics_file_is_a_notice_naming_revision_and_file(inside: Path) -> None:
    (inside / "metrics" / "train.json").write_text('{"accuracy": \n')
    result = runner.invoke(app, ["compare", "HEAD", "workspace"])
    assert result.exit_code == 0, result.output
    assert "notice: workspace: metrics/train.json: cannot be parsed" in result.output
    assert "line 2" in result.output
    comparison = compare(["HEAD", "workspace"], metrics=True, params=False)
    accuracy = next(row for row in comparison.metrics if row.key == "accuracy")
    assert accuracy.values == (0.85, MISSING)


def test_plot_is_a_png_with_a_panel_per_metric(inside: Path, tmp_path: Path) -> None:
    target = tmp_path / "plots" / "compare.png"
    result = runner.invoke(app, ["compare", "HEAD~2", "HEAD~1", "HEAD", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert "(2 panels; 1 unchanged metric(s) left out)" in result.output  # epochs stays 3
    assert "read better as a plot" not in result.output
    from PIL import Image

    with Image.open(target) as image:
        assert image.format == "PNG"
        image.verify()
    assert [p.name for p in target.parent.iterdir()] == ["compare.png"]


def test_same_commit_twice_and_workspace_columns(inside: Path) -> None:
    (inside / "params.yaml").write_text(textwrap.dedent("train:\n  lr: 0.5\n  batch: 32\n"))
    comparison = compare(["main", "HEAD", "workspace"], metrics=False)
    lr = next(row for row in comparison.params if row.key == "train.lr")
    assert lr.values == (0.35, 0.35, 0.5)
    assert lr.deltas == (0.0, 0.0, 0.15)
    assert [r.short for r in comparison.revisions][2] == "workspace"


# A wide project: one metrics file with long keys that share their start and their end, as
# per-class metrics do; committed twice, with a few values changed the second time.
CLASSES = [f"category_{name}" for name in ("person", "persons", "bicycle", "car", "carpet")]
STATS = ("precision_at_10", "recall_at_10", "average_precision")


def eval_metrics(version: int) -> dict[str, dict[str, dict[str, float]]]:
    return {
        "per_class": {
            name: {
                stat: round(0.5 + index / 100 + (0.05 if version and index % 4 == 0 else 0), 6)
                for index, stat in enumerate(STATS, start=classes * len(STATS))
            }
            for classes, name in enumerate(CLASSES)
        }
    }


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("wide")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.org")
    git(repo, "config", "user.name", "CI")
    dvc(repo, "init", "-q")
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/evaluation_of_the_model.json\n")
    (repo / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (repo / "metrics").mkdir()
    for version in (0, 1):
        target = repo / "metrics" / "evaluation_of_the_model.json"
        target.write_text(json.dumps(eval_metrics(version)))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"evaluation {version}")
    return repo


def table_keys(output: str) -> list[str]:
    """The key column of the metrics table: the first cell of every row that has values."""
    keys = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) > 1 and cells[1] and cells[0] not in ("key", ""):
            keys.append(cells[0].removeprefix("* "))
    return keys


def test_at_80_columns_keys_are_shortened_in_the_middle_and_stay_distinct(
    wide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wide)
    revisions = ["HEAD~1", "HEAD", "workspace"]
    result = runner.invoke(app, ["compare", *revisions, "--no-params"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80  # the legend wraps too
    keys = table_keys(result.stdout)
    assert len(keys) == len(CLASSES) * len(STATS)
    assert len(set(keys)) == len(keys)  # no two rows look the same
    assert all("…" in key for key in keys)
    full = [f"per_class.{name}.{stat}" for name in CLASSES for stat in STATS]
    for short, key in zip(keys, full, strict=True):
        head, tail = short.split("…")
        assert key.startswith(head) and key.endswith(tail)
    for value in ("0.55 (+0.05)", "0.59 (+0.05)", "0.63 (+0.05)", "0.51"):
        assert value in result.stdout  # values are never shortened


def test_through_a_pipe_keys_and_lines_are_whole(
    wide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wide)
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["compare", "HEAD~1", "HEAD", "--no-params"])
    assert result.exit_code == 0, result.output
    keys = table_keys(result.stdout)
    assert keys == [f"per_class.{name}.{stat}" for name in CLASSES for stat in STATS]
    assert "…" not in result.stdout
    assert "metrics/evaluation_of_the_model.json" in result.stdout


def test_changed_only_keeps_the_rows_that_differ(
    wide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(wide)
    result = runner.invoke(app, ["compare", "HEAD~1", "HEAD", "--changed-only"])
    assert result.exit_code == 0, result.output
    keys = table_keys(result.stdout)
    changed = [
        f"per_class.{name}.{stat}"
        for classes, name in enumerate(CLASSES)
        for index, stat in enumerate(STATS, start=classes * len(STATS))
        if index % 4 == 0
    ]
    assert keys == changed
    assert "no params changed" in result.stdout
    document = json.loads(
        runner.invoke(app, ["compare", "HEAD~1", "HEAD", "--changed-only", "--json"]).stdout
    )
    assert [row["key"] for row in document["metrics"]] == changed
    assert all(row["changed"] for row in document["metrics"])
    assert document["params"] == []


def test_plot_draws_only_what_changed_and_says_when_nothing_did(
    wide: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(wide)
    target = tmp_path / "changed.png"
    result = runner.invoke(app, ["compare", "HEAD~1", "HEAD", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert "(4 panels; 11 unchanged metric(s) left out)" in result.stderr
    assert target.is_file()
    same = tmp_path / "same.png"
    result = runner.invoke(app, ["compare", "HEAD", "HEAD", "--plot", str(same)])
    assert result.exit_code == 0, result.output
    assert "none of the 15 numeric metric(s) changed between these revisions" in result.stderr
    assert f"{same} not written" in result.stderr
    assert not same.exists() and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("keys", "width"),
    [
        (["a.b.c.precision", "a.b.c.recall"], 8),
        ([f"per_class.class_{i:02d}.ap" for i in range(40)], 10),
        (["metrics.x.final", "metrics.y.final", "metrics.final"], 6),
        (["short", "a.much.longer.key.that.needs.cutting"], 12),
        (["same_start_and_end_1_end", "same_start_and_end_2_end"], 1),
    ],
)
def test_abbreviated_keys_never_look_alike(keys: list[str], width: int) -> None:
    shown = abbreviate_keys(keys, width)
    assert set(shown) == set(keys)
    assert len(set(shown.values())) == len(keys)
    for key, short in shown.items():
        assert short == key or short not in keys  # never another key written out
        if short != key:
            head, tail = short.split("…")
            assert key.startswith(head) and key.endswith(tail)
        assert len(short) <= max(width, len(short))


def test_abbreviate_middle_keeps_the_end() -> None:
    assert abbreviate_middle("per_class.person.precision", 14) == "per_…precision"
    assert abbreviate_middle("short", 14) == "short"
    assert abbreviate_middle("abc", 1) == "…"
    assert len(abbreviate_middle("x" * 100, 20)) == 20


def test_plot_of_absent_nan_infinite_and_boolean_values(tmp_path: Path) -> None:
    revisions = [
        Revision("HEAD~1", "a" * 40, ("v1",)),
        Revision("HEAD", "b" * 40),
        Revision("workspace", None),
    ]
    rows = [
        Row("metric", "m.json", "absent", (0.5, MISSING, 0.7)),
        Row("metric", "m.json", "nan", (float("nan"), 0.2, 0.3)),
        Row("metric", "m.json", "infinite", (float("inf"), float("-inf"), 1.0)),
        Row("metric", "m.json", "all.nan", (float("nan"), float("inf"), float("nan"))),
        Row("metric", "m.json", "flag", (True, False, True)),  # not a number: no panel
        Row("metric", "m.json", "steady", (3, 3, 3)),  # unchanged: no panel
        Row("metric", "n.json", "ints", (1, 2, 10**18)),
    ]
    target = tmp_path / "edge.png"
    assert plot_metrics(Comparison(revisions, metrics=rows), target) == 5
    from PIL import Image

    with Image.open(target) as image:
        assert image.format == "PNG" and image.width == 4 * 320
    with pytest.raises(NothingChanged, match="none of the 1 numeric metric"):
        plot_metrics(Comparison(revisions, metrics=rows[5:6]), tmp_path / "same.png")
    with pytest.raises(CompareError, match="no numeric metric"):
        plot_metrics(Comparison(revisions, metrics=rows[4:5]), tmp_path / "flags.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge.png"]

"""A gate between a producer and a consumer in a real DVC pipeline: ``dvc repro`` with a
corrupted input stops at the gate, and the consumer's output stays as it was."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from vcat.shards import ShardReader, ShardWriter

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SOURCE = "data/prepared/flickr-images/demo-flickr/0.1k"
PIPELINE = {
    "stages": {
        "produce": {
            "cmd": "mkdir -p data && cp -r source data/shards",
            "deps": ["source"],
            "outs": ["data/shards"],
        },
        "gate": {
            "cmd": "vcat stage gate shards --metrics metrics/gate.json",
            "deps": ["data/shards"],
            "params": ["gates.shards"],
            "outs": ["data/shards.gate/result.json", "data/shards.gate/bad-items.tsv"],
            "metrics": [{"metrics/gate.json": {"cache": False}}],
        },
        "consume": {
            "cmd": "cat data/shards.gate/bad-items.tsv data/shards/index.json > data/consumed.txt",
            "deps": ["data/shards", "data/shards.gate/bad-items.tsv"],
            "outs": ["data/consumed.txt"],
        },
    }
}
PARAMS = {"gates": {"shards": {"artifact": "data/shards", "kind": "images"}}}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VCAT_CATALOG", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def black_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def pipeline(tmp_path: Path, demo_root: Path) -> Path:
    shutil.copytree(demo_root / SOURCE, tmp_path / "source")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (tmp_path / "catalog" / "datasets").mkdir(parents=True)
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(args, tmp_path).returncode == 0
    return tmp_path


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_repro_stops_at_a_failing_gate_and_leaves_the_consumer_alone(pipeline: Path) -> None:
    first = run(["dvc", "repro"], pipeline)
    assert first.returncode == 0, first.stdout + first.stderr
    consumed = pipeline / "data" / "consumed.txt"
    before, mtime = digest(consumed), consumed.stat().st_mtime_ns

    # the producer's input now holds black frames: a faulty upstream step
    source = pipeline / "source"
    repacked = pipeline / "repacked"
    with ShardReader(source) as reader, ShardWriter(repacked) as writer:
        for number, (key, sample) in enumerate(reader):
            writer.add(key, {"jpg": black_jpeg()} if number % 10 == 0 else sample)
    shutil.rmtree(source)
    repacked.rename(source)

    second = run(["dvc", "repro"], pipeline)
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert "failed to reproduce 'gate'" in output
    assert "failed not_black" in output and "10 row(s) fail it" in output
    assert "Running stage 'consume'" not in output
    assert digest(consumed) == before and consumed.stat().st_mtime_ns == mtime
    gate = yaml.safe_load((pipeline / "metrics" / "gate.json").read_text())
    assert gate["passed"] == 0 and gate["checks"]["not_black"]["failing"] == 10
    status = run(["dvc", "status"], pipeline)
    assert "consume" in status.stdout  # still to run once the data is fixed

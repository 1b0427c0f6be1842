"""A model's weights: found on local disk only and verified before they are used.

Published weights are the entry's ``weights`` source, placed by ``vcat fetch NAME`` under the
entry's root (the remembered root, else ``data/sources/NAME``); they are checked against the
catalog's checksum or, where upstream publishes none, against the digest the fetch recorded,
re-hashing only when the file changed since (as ``vcat verify`` does). Checkpoints this
project trains are the ``produced_by.checkpoint`` file of the entry, a DVC output checked
against the md5 that ``dvc.lock`` records for it. Nothing is ever downloaded here: a missing
or unverifiable file is a ``WeightsError`` that says how to obtain it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from vcat.catalog.fields import parse_checksum
from vcat.catalog.loader import Entry
from vcat.catalog.schema import ModelEntry
from vcat.hashing import hash_file

LOCK_FILE = "dvc.lock"


class WeightsError(Exception):
    """The weights cannot be used: missing, changed, or with nothing to check them against."""


@dataclass(frozen=True)
class VerifiedWeights:
    """A weights file that matched ``checksum`` (``algorithm:hex``) per ``checked_against``."""

    path: Path
    checksum: str
    checked_against: str  # "catalog", "fetch record" or "dvc.lock"


def verified_weights(entry: Entry, project: Path) -> VerifiedWeights:
    """The verified weights file of the model ``entry``; raises ``WeightsError``."""
    spec = entry.spec
    if not isinstance(spec, ModelEntry):
        raise WeightsError(f"{entry.name} is a dataset, not a model")
    if spec.weights is not None:
        return _published(entry, spec, project)
    if spec.produced_by is None or spec.produced_by.checkpoint is None:
        raise WeightsError(
            f"{entry.name} names no weights file and no produced_by.checkpoint: add the "
            "checkpoint its stage writes to the entry"
        )
    return _trained(entry.name, spec.produced_by.stage, project, spec.produced_by.checkpoint)


def _published(entry: Entry, spec: ModelEntry, project: Path) -> VerifiedWeights:
    from vcat.fetch.integrity import check_placed
    from vcat.fetch.workspace import Workspace
    from vcat.settings import dataset_root

    assert spec.weights is not None
    source = spec.weights
    root = dataset_root(entry.name, project)
    path = root / source.filename
    how = f"run `vcat fetch {entry.name}` (it downloads {source.url} and checks it)"
    if not path.is_file():
        raise WeightsError(f"the weights of {entry.name} are not at {path}: {how}")
    published = parse_checksum(source.checksum)
    if published is not None:
        actual = hash_file(path, [published.algorithm])[published.algorithm]
        if actual != published.hexdigest:
            raise WeightsError(
                f"{path} has {published.algorithm} {actual}, but the catalog publishes "
                f"{published.hexdigest}: the file is damaged or another version; {how}"
            )
        return VerifiedWeights(path, str(published), "catalog")
    workspace = Workspace(root)
    record = workspace.read_record(source.name)
    report = check_placed(source, record, workspace) if record is not None else None
    if report is None or record is None:
        raise WeightsError(
            f"{path} cannot be verified: upstream publishes no checksum and no fetch of it is "
            f"recorded; {how}, or record a trusted copy's checksum with "
            f"`vcat catalog record {entry.name}`"
        )
    if not report.ok:
        raise WeightsError(
            f"{path} differs from what `vcat fetch` placed ({report.failures[0].failure}): "
            f"run `vcat fetch {entry.name}` to repair it"
        )
    return VerifiedWeights(path, f"md5:{record.digests['md5']}", "fetch record")


def _trained(name: str, stage: str, project: Path, relative: str) -> VerifiedWeights:
    path = project / relative
    how = f"run `dvc repro {stage}` to train it, or `dvc pull` to fetch a released copy"
    if not path.is_file():
        raise WeightsError(f"the checkpoint of {name} is not at {path}: {how}")
    expected = _locked_md5(project / LOCK_FILE, relative)
    if expected is None:
        raise WeightsError(f"{LOCK_FILE} records no {relative}: {how}")
    actual = hash_file(path, ["md5"])["md5"]
    if actual != expected:
        raise WeightsError(
            f"{path} is not the checkpoint {LOCK_FILE} records (md5 {actual}, locked "
            f"{expected}): run `dvc checkout {relative}`, or {how}"
        )
    return VerifiedWeights(path, f"md5:{expected}", LOCK_FILE)


def _locked_md5(lock: Path, relative: str) -> str | None:
    """The md5 ``lock`` records for the output ``relative``, None when it records none."""
    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"cannot read {lock}: {exc}; `vcat doctor` can restore it") from None
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == relative and "md5" in out:
                return str(out["md5"])
    return None

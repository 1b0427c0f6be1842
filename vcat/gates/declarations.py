"""Where a gate's expectations are declared: ``params.yaml`` and the catalog entry.

A gate is declared in the ``gates:`` section of ``params.yaml``, one key per gate::

    gates:
      croco-crops@demo-megadepth:
        artifact: data/prepared/croco-crops/demo-megadepth   # what it checks
        kind: pairs                                          # optional: detected otherwise
        entry: demo-megadepth   # optional: that entry's `quality:` applies too
        subset: 0.1k            # optional: the `count` check expects the subset's count
        checks:                 # optional: check -> parameters, over the defaults
          imsize: {imsize: 256}

The parameters in force are the kind's defaults, then the count the catalog gives for the
subset (released, else published), then the entry's ``quality.<kind>``, then the gate's
``checks``; an unknown check or parameter is an error naming the file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcat.gates.checks import DeclarationError, Declared, declare
from vcat.gates.profile import Kind
from vcat.stage import StageError, read_params_section

#: The gates of prepared data, then those of what training makes (dvc.yaml: gate@, model-gate@).
SECTIONS = ("gates", "model_gates", "result_gates")
GATE_KEYS = frozenset({"artifact", "kind", "entry", "subset", "checks"})

Layer = tuple[Mapping[str, Any] | None, Callable[[str], str] | None, str]


@dataclass(frozen=True)
class GateDeclaration:
    name: str
    artifact: Path | None = None
    kind: str | None = None
    entry: str | None = None
    subset: str | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)
    locate: Callable[[str], str] | None = None  # "checks.x.y" -> "params.yaml:12: gates.N..."


def read_gates(params: Path) -> dict[str, GateDeclaration]:
    """Every gate declared in ``params``, in ``gates`` (prepared data) and ``model_gates``
    (checkpoints and features); DeclarationError naming file:line for a bad one, or for a
    name given twice."""
    gates: dict[str, GateDeclaration] = {}
    for section_name in SECTIONS:
        for name, gate in _read_section(params, section_name).items():
            if name in gates:
                raise DeclarationError(
                    f"{gate.locate and gate.locate('artifact')}: gate {name!r} is also declared "
                    "in another section; gate names are one namespace"
                )
            gates[name] = gate
    return gates


def _read_section(params: Path, section_name: str) -> dict[str, GateDeclaration]:
    try:
        section, locate = read_params_section(params, section_name)
    except StageError as exc:
        raise DeclarationError(str(exc)) from None
    gates = {}
    for name, body in section.items():
        if not isinstance(body, Mapping):
            raise DeclarationError(f"{locate(str(name))} must be a mapping (artifact, checks...)")
        unknown = sorted(set(body) - GATE_KEYS)
        if unknown:
            raise DeclarationError(
                f"{locate(f'{name}.{unknown[0]}')} is not a gate setting "
                f"(known: {', '.join(sorted(GATE_KEYS))})"
            )
        checks = body.get("checks") or {}
        if not isinstance(checks, Mapping):
            raise DeclarationError(f"{locate(f'{name}.checks')} must map checks to parameters")
        artifact = body.get("artifact")
        gates[str(name)] = GateDeclaration(
            name=str(name),
            artifact=Path(artifact) if artifact else None,
            kind=body.get("kind"),
            entry=body.get("entry"),
            subset=None if body.get("subset") is None else str(body["subset"]),
            checks=checks,
            locate=lambda key, gate=str(name): locate(f"{gate}.{key}"),
        )
    return gates


def gate_for_artifact(
    gates: Mapping[str, GateDeclaration], artifact: Path
) -> GateDeclaration | None:
    """The gate declared for ``artifact`` (compared as resolved paths), if any."""
    wanted = artifact.resolve()
    for gate in gates.values():
        if gate.artifact is not None and gate.artifact.resolve() == wanted:
            return gate
    return None


def catalog_layers(gate: GateDeclaration, kind: str, catalog_dir: Path | None) -> list[Layer]:
    """The subset's count and the ``quality.<kind>`` of the gate's catalog entry, located by
    file and line; DeclarationError for an entry or subset that is not in the catalog."""
    from vcat.catalog.lint import entry_errors
    from vcat.catalog.loader import load_around
    from vcat.catalog.schema import DatasetEntry
    from vcat.problems import CatalogError
    from vcat.project import default_catalog_dir

    assert gate.entry is not None
    folder = catalog_dir or default_catalog_dir()
    catalog = load_around(folder, gate.entry)
    try:
        entry = catalog.get(gate.entry)
    except KeyError as exc:
        raise DeclarationError(f"gate {gate.name}: {exc.args[0]}") from None
    errors = entry_errors(catalog, entry)
    if errors:
        raise DeclarationError(str(CatalogError.of(errors)))
    spec = entry.spec
    if not isinstance(spec, DatasetEntry):
        raise DeclarationError(f"gate {gate.name}: {gate.entry} is a model, not a dataset")
    layers: list[Layer] = []
    if gate.subset is not None:
        subsets = {subset.name: subset for subset in spec.subsets}
        if gate.subset not in subsets:
            known = ", ".join(subsets) or "none"
            raise DeclarationError(
                f"gate {gate.name}: {gate.entry} has no subset {gate.subset!r} (known: {known})"
            )
        count = subsets[gate.subset].count
        expected = None if count is None else (count.released or count.published)
        if expected is not None:
            layers.append(({"count": {"equal": int(expected)}}, None, f"{entry.path}"))
    quality = spec.quality.get(kind)

    def locate(key: str) -> str:
        loc = ("quality", kind, *key.split("."))
        return f"{entry.path}:{entry.lines.line_of(loc)}: quality.{kind}.{key}"

    layers.append((quality, locate, f"catalog entry {gate.entry}"))
    return layers


def declared_checks(
    kind: Kind, gate: GateDeclaration | None, catalog_dir: Path | None
) -> list[Declared]:
    """The kind's checks with the catalog's and the gate's parameters in force."""
    layers: list[Layer] = []
    if gate is not None and gate.entry:
        layers.extend(catalog_layers(gate, kind.name, catalog_dir))
    if gate is not None and gate.checks:
        layers.append((gate.checks, _checks_locate(gate), f"gate {gate.name}"))
    return declare(kind.checks, layers)


def _checks_locate(gate: GateDeclaration) -> Callable[[str], str] | None:
    if gate.locate is None:
        return None
    locate = gate.locate
    return lambda key: locate(f"checks.{key}")

"""Running a suite: great-expectations 1.x validates a profile's tables, offline.

Everything lives in an ephemeral context (no project folder, no network, analytics off):
one pandas data source, one asset and suite per table, one checkpoint whose action writes
the Data Docs site into ``docs/`` of the gate's folder. Each expectation carries its check's
name in ``meta``, so results map back to what was declared; results are asked for in GX's
``COMPLETE`` format with the table's item column, so every failing row is named.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcat.gates.checks import Declared
from vcat.gates.profile import Profile

DOCS_FOLDER = "docs"
SITE_NAME = "vcat"


class ValidationError(Exception):
    """great-expectations could not validate the tables (not: the tables failed)."""


@dataclass
class Outcome:
    """What great-expectations found for one expectation of a check."""

    check: str
    table: str
    expectation: str  # GX's snake-case type, e.g. expect_column_values_to_be_between
    description: str
    success: bool
    column: str | None = None
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_fraction: float | None = None
    #: Every failing row's item (file or key), in table order.
    items: list[str] = field(default_factory=list)


@dataclass
class SuiteRun:
    success: bool
    outcomes: list[Outcome]
    #: GX's own result of each table, as JSON-ready dicts.
    raw: dict[str, Any]
    docs: Path | None  # the Data Docs index page
    #: The Data Docs page of each table's validation (the index lists them only online: its
    #: table is drawn by a script from a CDN).
    pages: dict[str, Path] = field(default_factory=dict)


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="great_expectations")


def _context(docs: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # no default docs site: GX would build one in a new temporary folder at every run
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs is not None:
        context.add_data_docs_site(
            site_name=SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def _expectation(declared: Declared, index: int) -> Any:
    import great_expectations as gx

    spec = declared.check.build(declared.params)[index]
    text = declared.check.describe(declared.params)
    meta = {"check": declared.check.name, "notes": text}
    # the Data Docs page shows `description` in place of GX's own sentence; it is a
    # string.Template, so a `$` in the text is doubled
    description = f"{declared.check.name}: {text}".replace("$", "$$")
    return getattr(gx.expectations, spec.type)(**spec.kwargs, meta=meta, description=description)


def run_suite(
    name: str, profile: Profile, declared: Sequence[Declared], docs: Path | None
) -> SuiteRun:
    """Validate ``profile`` against the enabled checks of ``declared``; with ``docs``, write
    the Data Docs site there. Raises ValidationError when great-expectations cannot run."""
    try:
        return _run_suite(name, profile, declared, docs)
    except OSError:
        raise  # a full disk or an unwritable folder: reported with its file by the caller
    except Exception as exc:  # GX's own errors have no common base class
        raise ValidationError(
            f"great-expectations could not validate {profile.artifact}: {type(exc).__name__}: {exc}"
        ) from exc


def _run_suite(
    name: str, profile: Profile, declared: Sequence[Declared], docs: Path | None
) -> SuiteRun:
    import great_expectations as gx

    _quiet_gx()
    context = _context(docs)
    source = context.data_sources.add_pandas(name=f"{name}-source")
    definitions = []
    batches: dict[str, Any] = {}
    for table_name, table in profile.tables.items():
        checks = [d for d in declared if d.check.table == table_name and d.enabled]
        if not checks:
            continue
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}.{table_name}"))
        for check in checks:
            for index in range(len(check.expectations)):
                suite.add_expectation(_expectation(check, index))
        asset = source.add_dataframe_asset(name=table_name)
        batch = asset.add_batch_definition_whole_dataframe(f"{table_name}-all")
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{name}.{table_name}", data=batch, suite=suite)
            )
        )
        batches[table_name] = table
    if not definitions:
        return SuiteRun(True, [], {}, None)
    outcomes: list[Outcome] = []
    raw: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    success = True
    # one checkpoint per table: each is given its own dataframe
    for definition in definitions:
        table_name = definition.data.data_asset.name
        table = batches[table_name]
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{definition.name}.checkpoint",
                validation_definitions=[definition],
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [table.item_column],
                },
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": table.frame})
        success = success and bool(result.success)
        for key, validation in result.run_results.items():
            raw[table_name] = validation.to_json_dict()
            outcomes.extend(_outcomes(table_name, table.item_column, validation.results))
            keys[table_name] = key
    pages: dict[str, Path] = {}
    if docs is not None:
        # once for all tables: a docs action per checkpoint would rebuild the site each time
        context.build_data_docs(site_names=[SITE_NAME])
        pages = {table_name: _page(context, key) for table_name, key in keys.items()}
    index = docs / "index.html" if docs is not None else None
    return SuiteRun(success, outcomes, raw, index, pages)


def _page(context: Any, key: Any) -> Path:
    """The local file of the Data Docs page of the validation result ``key``."""
    from urllib.parse import unquote, urlsplit

    (site,) = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE_NAME])
    return Path(unquote(urlsplit(site["site_url"]).path))


def _outcomes(table: str, item_column: str, results: Sequence[Any]) -> list[Outcome]:
    found = []
    for result in results:
        config = result.expectation_config
        details = result.result or {}
        items = [
            str(row[item_column])
            for row in details.get("unexpected_index_list") or []
            if isinstance(row, dict) and item_column in row
        ]
        fraction = details.get("unexpected_percent")
        found.append(
            Outcome(
                check=str(config.meta.get("check", config.type)),
                table=table,
                expectation=str(config.type),
                description=str(config.meta.get("notes", "")),
                success=bool(result.success),
                column=config.kwargs.get("column"),
                observed=_plain(details.get("observed_value")),
                unexpected_count=details.get("unexpected_count"),
                unexpected_fraction=None if fraction is None else float(fraction) / 100.0,
                items=items,
            )
        )
    return found


def _plain(value: Any) -> Any:
    """Numpy scalars as Python numbers, for JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value

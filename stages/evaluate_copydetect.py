"""Stage ``evaluate-copydetect``: copy-detection micro-AP of a catalog backbone on a DISC21-style
evaluation set, by k-NN over global descriptors.

ROOT holds ``references/`` and ``queries/`` (the images, named by id: ``R000036.jpg`` is
``R000036``) and DISC21's ``ground_truth.csv`` (``query_id,reference_id``, one row per query,
the reference empty for a distractor). Every image is described by the backbone of the model
entry ``--model`` (its global descriptor, L2-normalised; :mod:`vcat.evaluation.descriptors`
reads and resizes it), each query's ``k`` nearest references are found with faiss (inner
product of unit vectors, i.e. cosine) and every neighbour is a prediction scored by that
cosine. OUTPUT receives the predictions in ISC2021's form, the form its
``scripts/compute_metrics.py`` reads: the header ``query_id,reference_id,score``, then one
line per prediction, queries in id order and each query's neighbours best first, the score
with 6 decimals. The metrics (``--metrics``) are computed from those rounded scores, so they
are what ISC2021's scorer gives for OUTPUT: micro-AP and recall at precision 0.9
(:mod:`vcat.evaluation.copydetect`; 0 where ISC2021 says "does not reach P90"), and recall@1
over the queries that copy a reference, a tie with another reference counting as a miss.

The baseline, computed in the same run and reported beside the backbone's numbers, is the
same architecture with its untrained initialisation (timm's, seeded by ``seed``): the same
input size, resizing, pooling, normalisation and search, so the only difference is the
weights, and the gap between the two numbers is what the backbone's training bought. Tiny
raw-pixel thumbnails were the other candidate; they differ from the backbone in resolution,
colour handling and pooling as well, so their gap would mix all of these with the training.
Both networks read the same decoded batch: the images are decoded once, the forward work
doubles.

Bad input is an error naming the file (and line): a missing folder or ground truth, a
malformed ground-truth line, a row naming an image that is not there, a query image without
a row, an image that does not decode. Nothing is skipped. Outputs are written under a
temporary name and renamed into place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vcat.stage import MetricsOption, ParamsOption, StageError, write_json, write_text_atomic
from vcat.stage_cli import folder_argument, output_argument, run_stage, settings

if TYPE_CHECKING:
    from vcat.evaluation.copydetect import Prediction

NAME = "evaluate-copydetect"
default_conf: dict[str, Any] = {
    "k": 10,  # references predicted per query
    "batch_size": 64,
    "workers": 4,  # DataLoader processes decoding and resizing images (0: in this process)
    "device": "auto",  # auto (CUDA when available), cpu or cuda
    "seed": 0,  # the baseline's initialisation
}
# params.yaml keys that only dvc.yaml reads: the evaluation sets and the backbone entry
pipeline_keys = ("entries", "model")

REFERENCES = "references"
QUERIES = "queries"
GROUND_TRUTH = "ground_truth.csv"
HEADER = "query_id,reference_id,score"
BASELINE = "untrained"


def _check(conf: Any) -> None:
    from vcat.devices import resolve_device

    for key, least in (("k", 1), ("batch_size", 1), ("workers", 0)):
        if int(conf[key]) < least:
            raise StageError(f"stage {NAME}: {key} must be at least {least}, not {conf[key]}")
    try:
        resolve_device(str(conf.device))
    except ValueError as exc:
        raise StageError(f"stage {NAME}: {exc}") from None


def _images(folder: Path) -> dict[str, Path]:
    from vcat.evaluation.descriptors import DescriptorError, image_files

    try:
        found = image_files(folder)
    except DescriptorError as exc:
        raise StageError(str(exc)) from None
    for image_id, path in found.items():
        if any(character in image_id for character in ',"\r\n'):
            raise StageError(
                f"{path}: an id cannot hold a comma, a quote or a line break (ISC2021's CSV "
                "cannot); rename the file"
            )
    return found


def read_set(root: Path) -> tuple[dict[str, Path], dict[str, Path], list[tuple[str, str | None]]]:
    """The references and queries of the set ``root`` (id -> file) and its ground-truth rows,
    checked against each other; StageError naming the file (and line) of the first problem."""
    from vcat.copydetect.groundtruth import GroundTruthError, read

    references = _images(root / REFERENCES)
    queries = _images(root / QUERIES)
    truth = root / GROUND_TRUTH
    if not truth.is_file():
        raise StageError(f"{truth}: no such file; the set needs DISC21's query_id,reference_id")
    try:
        rows = read(truth)
    except (GroundTruthError, OSError) as exc:
        raise StageError(str(exc)) from None
    # groundtruth counts one line per row after the header, as its own messages do
    for line, (query, reference) in enumerate(rows, start=2):
        if query not in queries:
            raise StageError(f"{truth}:{line}: query {query!r} has no image in {root / QUERIES}")
        if reference is not None and reference not in references:
            raise StageError(
                f"{truth}:{line}: reference {reference!r} has no image in {root / REFERENCES}"
            )
    listed = {query for query, _ in rows}
    for query, path in queries.items():
        if query not in listed:
            raise StageError(
                f"{path}: query {query!r} has no row in {truth}; add `{query},` for a "
                "distractor or remove the image"
            )
    if all(reference is None for _, reference in rows):
        raise StageError(f"{truth}: no query names a reference; micro-AP needs at least one copy")
    return references, queries, rows


def as_written(predictions: Sequence[Prediction]) -> list[Prediction]:
    """``predictions`` with their scores as OUTPUT holds them (6 decimals)."""
    from vcat.evaluation.copydetect import Prediction

    return [Prediction(p.query, p.reference, float(f"{p.score:.6f}")) for p in predictions]


def predictions_text(predictions: Sequence[Prediction]) -> str:
    """ISC2021's predictions CSV of ``predictions`` (module docstring)."""
    lines = [HEADER, *(f"{p.query},{p.reference},{p.score:.6f}" for p in predictions)]
    return "\n".join(lines) + "\n"


def scores(
    predictions: Sequence[Prediction], rows: Sequence[tuple[str, str | None]]
) -> dict[str, float]:
    """micro-AP and recall at precision 0.9 of the pooled ``predictions`` against the
    ground-truth ``rows``, and recall@1: the share of queries with a reference whose
    reference scores above every other prediction of that query (a tie is a miss, as
    ISC2021's scorer ranks it)."""
    from vcat.evaluation.copydetect import micro_average_precision

    pooled = micro_average_precision(predictions, rows)
    by_query: dict[str, dict[str, float]] = {}
    for p in predictions:
        by_query.setdefault(p.query, {})[p.reference] = p.score
    copies = [(query, reference) for query, reference in rows if reference is not None]
    first = 0
    for query, reference in copies:
        found = by_query.get(query, {})
        if reference in found and all(
            score < found[reference] for other, score in found.items() if other != reference
        ):
            first += 1
    return {
        "micro_ap": pooled.micro_average_precision,
        "recall_at_p90": pooled.recall_at_p90,
        "recall_at_1": first / len(copies),
    }


def main(
    conf: Mapping[str, Any] | None,
    root: Path,
    model_name: str,
    output: Path,
    metrics: Path | None = None,
    project: Path | None = None,
) -> Path:
    """Evaluate the backbone of the model entry ``model_name`` on the set ``root``; the
    predictions go to ``output``, the metrics to ``metrics`` (module docstring). ``project``
    (default: the enclosing one) holds the catalog and the weights. Returns ``output``."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from vcat.console import stderr, stderr_bars
    from vcat.devices import resolve_device
    from vcat.evaluation.copydetect import knn_predictions
    from vcat.evaluation.descriptors import DescriptorError, describe
    from vcat.features.extract import Extractor
    from vcat.models.factory import build_model, input_config, model_entry
    from vcat.project import find_project_root

    started = time.perf_counter()
    conf = settings(NAME, default_conf, conf)
    _check(conf)
    references, queries, rows = read_set(root)
    k = int(conf.k)
    if k > len(references):
        raise StageError(
            f"stage {NAME}: k={k}, but {root / REFERENCES} holds {len(references)} image(s); "
            "lower k"
        )
    project = project or find_project_root()
    entry = model_entry(model_name, project)
    config = input_config(entry)
    if config.width != config.height:
        raise StageError(
            f"{model_name}: input {config.width}x{config.height} is not square; the stage "
            "resizes images to a square input"
        )
    device = resolve_device(str(conf.device))
    trained = build_model(entry, project)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(conf.seed))
        untrained = build_model(entry, project, load_weights=False)
    networks = [
        Extractor(network, config.width, config.mean, config.std, device)
        for network in (trained, untrained)
    ]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    described: dict[str, list[Any]] = {}
    with stderr_bars(*columns, TimeRemainingColumn()) as progress:
        # queries first: a query that does not decode stops the run before the references
        for what, files in ((QUERIES, queries), (REFERENCES, references)):
            task = progress.add_task(what, total=len(files))
            try:
                described[what] = describe(
                    list(files.values()),
                    networks,
                    interpolation=config.interpolation,
                    batch_size=int(conf.batch_size),
                    workers=int(conf.workers),
                    step=lambda n, task=task: progress.advance(task, n),
                )
            except DescriptorError as exc:
                raise StageError(str(exc)) from None
    results = []  # (predictions, scores) of the backbone, then of the baseline
    for on_queries, on_references in zip(described[QUERIES], described[REFERENCES], strict=True):
        found = knn_predictions(on_queries, list(queries), on_references, list(references), k)
        predictions = as_written(found)
        results.append((predictions, scores(predictions, rows)))
    write_text_atomic(output, predictions_text(results[0][0]))
    values: dict[str, Any] = {
        "model": model_name,
        "k": k,
        "queries": len(queries),
        "distractors": sum(reference is None for _, reference in rows),
        "references": len(references),
        **results[0][1],
        "baseline": {"kind": BASELINE, "seed": int(conf.seed), **results[1][1]},
    }
    if metrics is not None:
        write_json(metrics, values)
    stderr.print(
        f"{output}: micro-AP {values['micro_ap']:.4f}, recall@1 {values['recall_at_1']:.4f} "
        f"(untrained baseline {results[1][1]['micro_ap']:.4f}, "
        f"{results[1][1]['recall_at_1']:.4f}); {len(queries)} queries, {len(references)} "
        f"references, {time.perf_counter() - started:.1f} s on {device}",
        highlight=False,
    )
    return output


def command(
    root: folder_argument(
        "Evaluation set: references/, queries/ and ground_truth.csv (DISC21's form).", "ROOT"
    ),
    output: output_argument(
        "The predictions (ISC2021's query_id,reference_id,score CSV).", folder=False
    ),
    model: Annotated[
        str, typer.Option("--model", help="The catalog's model entry whose backbone describes.")
    ],
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Copy-detection micro-AP of a backbone by k-NN over its global descriptors."""
    from vcat.features.extract import BackboneError
    from vcat.models.factory import ModelError
    from vcat.models.weights import WeightsError

    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, root, model, output, metrics),
        pipeline_keys,
        input_errors=(BackboneError, ModelError, WeightsError),
    )

"""vcat.evaluation.knn_index: exact inner-product search, on the CPU when asked or without a
GPU build of faiss."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vcat.devices import DEVICE_ENV
from vcat.evaluation.knn_index import gpu_available, inner_product_index


def test_cpu_is_forced_by_the_device_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert not gpu_available()
    assert isinstance(inner_product_index(4), faiss.IndexFlatIP)


def test_search_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    rng = np.random.default_rng(0)
    references = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    index = inner_product_index(8)
    index.add(references)
    similarity, neighbours = index.search(queries, 3)
    expected = np.argsort(-(queries @ references.T), axis=1, kind="stable")[:, :3]
    assert neighbours.tolist() == expected.tolist()
    assert np.allclose(
        similarity, np.take_along_axis(queries @ references.T, expected, 1), atol=1e-4
    )
    if faiss.get_num_gpus() == 0:  # this machine: faiss-cpu, or no GPU
        assert not gpu_available() and isinstance(index, faiss.IndexFlatIP)

"""Exact inner-product k-NN indexes on the GPU where faiss can use one, else on the CPU.

With the ``gpu`` extra (faiss built with CUDA kernels) and a GPU in sight, a flat index is
moved to GPU 0; with faiss-cpu, no GPU, or ``VCAT_DEVICE=cpu`` (:mod:`vcat.devices`), it stays
on the CPU. Both search exactly, so results agree up to float rounding. Range search (VOP's
patch votes) has no GPU flat kernel in faiss and always runs on the CPU.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import faiss

from vcat.devices import requested_device


@cache
def _gpu_resources() -> Any:
    # one set of scratch memory and streams per process, kept alive as long as the indexes
    return faiss.StandardGpuResources()


def gpu_available() -> bool:
    """Whether this faiss build has CUDA kernels, sees a GPU, and the run did not ask for the
    CPU."""
    if requested_device("auto") == "cpu":
        return False
    count = getattr(faiss, "get_num_gpus", lambda: 0)()
    return count > 0 and hasattr(faiss, "StandardGpuResources")


def inner_product_index(dim: int) -> Any:
    """An empty exact inner-product index of ``dim`` dimensions (module doc for where)."""
    index = faiss.IndexFlatIP(dim)
    if gpu_available():
        return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    return index

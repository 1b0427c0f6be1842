"""Random generators derived from the key of what they decide, never from a global state.

Each copy of each class gets its own generator keyed ``(seed, stream, class, copy, attempt)``
through numpy's SeedSequence (which hashes the key, so neighbouring keys give independent
streams) feeding a Philox bit generator. The same key gives the same draws in any process, in
any order, with any number of workers: what a copy looks like depends on its key alone.
"""

from __future__ import annotations

import numpy as np

COPY_STREAM = 1  # the draws that make one augmented copy


def derived_rng(*key: int) -> np.random.Generator:
    """A generator for ``key`` (non-negative integers)."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([int(k) for k in key])))


def copy_rng(seed: int, cls: int, copy: int, attempt: int) -> np.random.Generator:
    """The generator of attempt ``attempt`` at copy ``copy`` of class ``cls``."""
    return derived_rng(seed, COPY_STREAM, cls, copy, attempt)


def child_seed(rng: np.random.Generator) -> int:
    """A 32-bit seed drawn from ``rng``, for a library transform's own generator."""
    return int(rng.integers(2**32))

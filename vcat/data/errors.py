"""The error of the data loading package."""

from __future__ import annotations


class DataError(ValueError):
    """A prepared artifact, split or loading option that cannot be used; says what to do."""

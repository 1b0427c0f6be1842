"""The names CroCo gives its pairs: a hexadecimal folder tree keyed by the global index.

For N pairs, at most ``max_levels`` levels and about ``ideal`` pairs per folder::

    levels  = min(ceil(log_ideal(N)), max_levels)
    per_dir = ceil(N ** (1 / levels))

Pair ``idx`` is named ``hex(idx // per_dir**(levels-1)) / hex(idx // per_dir**(levels-2) %
per_dir) / ... / hex(idx)``: ``levels - 1`` folders, then the global index itself in hex. With
N = 1,070,414 (ARKitScenes) and the defaults (5, 500): 3 levels, 103 per folder, and pair
123456 is ``b/41/1e240``.

Both are computed with integers here: ``levels`` is the least k with ``ideal**k >= N`` and
``per_dir`` the least p with ``p**levels >= N``, which is what the formulas mean. CroCo's
floating-point ``math.log`` and ``**`` round up past some exact powers: for 125,000,000 =
500**3 pairs it takes 4 levels of 106 where the formula gives 3 of 500, and for 3,125 = 5**5
pairs over 5 levels it takes 6 per folder instead of 5. The released lists (1,070,414,
2,014,789 and 144,228 pairs with ideal 500) get the same numbers either way. N = 0 and N = 1
take one level (CroCo divides by zero there).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_LEVELS = 5
DEFAULT_IDEAL_PAIRS_IN_DIR = 500


def least_power_exponent(base: int, total: int) -> int:
    """The least k >= 0 with ``base**k >= total`` (``base`` >= 2)."""
    exponent, power = 0, 1
    while power < total:
        power *= base
        exponent += 1
    return exponent


def integer_root_ceiling(total: int, degree: int) -> int:
    """The least p >= 1 with ``p**degree >= total``."""
    if total <= 1:
        return 1
    root = max(1, round(total ** (1.0 / degree)))
    while root**degree < total:
        root += 1
    while root > 1 and (root - 1) ** degree >= total:
        root -= 1
    return root


@dataclass(frozen=True)
class StemLayout:
    """The folder tree for ``total`` pairs."""

    total: int
    levels: int
    per_dir: int

    @classmethod
    def for_total(
        cls,
        total: int,
        max_levels: int = DEFAULT_MAX_LEVELS,
        ideal_pairs_in_dir: int = DEFAULT_IDEAL_PAIRS_IN_DIR,
    ) -> StemLayout:
        if total < 0:
            raise ValueError(f"a pair count cannot be negative: {total}")
        if max_levels < 1 or ideal_pairs_in_dir < 2:
            raise ValueError(
                f"max_subdir_levels must be at least 1 and ideal_number_pairs_in_dir at least "
                f"2 (got {max_levels} and {ideal_pairs_in_dir})"
            )
        levels = max(1, min(least_power_exponent(ideal_pairs_in_dir, total), max_levels))
        return cls(total, levels, integer_root_ceiling(total, levels))

    def stem(self, index: int) -> str:
        """The name of pair ``index`` (folders, then the index), without ``_1.jpg``."""
        parts = []
        rest = index
        for level in range(self.levels - 1, 0, -1):
            power = self.per_dir**level
            parts.append(format(rest // power, "x"))
            rest %= power
        parts.append(format(index, "x"))
        return "/".join(parts)

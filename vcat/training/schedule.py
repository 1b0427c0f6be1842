"""Learning-rate schedules by epoch, and schedules kept iteration-equivalent on smaller data.

CroCo (after MAE) warms the rate up linearly, then follows a half cosine to ``min_lr`` over
``cosine_epochs``, and may stop before the cosine ends (``epochs`` < ``cosine_epochs``): its
released IndoorVL subset made the schedule 125 epochs, 12 of warm-up and a cosine of 250
instead of 100, 10 and 200.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Schedule:
    """Epochs trained, epochs of linear warm-up, and the length of the cosine decay."""

    epochs: int
    warmup_epochs: int
    cosine_epochs: int

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.warmup_epochs < 0 or self.cosine_epochs < 1:
            raise ValueError(f"a schedule needs epochs >= 1 and a cosine >= 1: {self}")
        if self.warmup_epochs >= self.cosine_epochs:
            raise ValueError(f"the warm-up must end before the cosine does: {self}")

    def learning_rate(self, epoch: float, base_lr: float, min_lr: float = 0.0) -> float:
        """The rate at fractional ``epoch`` (0 at the start of training)."""
        if epoch < self.warmup_epochs:
            return base_lr * epoch / self.warmup_epochs
        progress = (epoch - self.warmup_epochs) / (self.cosine_epochs - self.warmup_epochs)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return min_lr + (base_lr - min_lr) * cosine


def iteration_equivalent(schedule: Schedule, published: int, released: int) -> Schedule:
    """``schedule`` stretched so that training on ``released`` items takes about as many
    iterations as on the ``published`` ones: every length times published/released, rounded
    down (never more iterations than the published run). 100/10/200 at a ratio of 1.25 gives
    CroCo's 125/12/250."""
    if released < 1 or published < released:
        raise ValueError(
            f"need 0 < released <= published, not released={released}, published={published}"
        )
    ratio = Fraction(published, released)
    return Schedule(
        epochs=math.floor(schedule.epochs * ratio),
        warmup_epochs=math.floor(schedule.warmup_epochs * ratio),
        cosine_epochs=math.floor(schedule.cosine_epochs * ratio),
    )

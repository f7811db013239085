"""Early stopping on the validation ELBO, rebuilt from metrics.jsonl on resume."""

from __future__ import annotations

import math
from typing import Optional

from vae_jax.store.metrics import EpochRecord

__all__ = ["EarlyStopping"]


class EarlyStopping:
  """The best validation ELBO so far and the epochs since it."""

  def __init__(self, patience: int, history: list[EpochRecord]):
    self.patience = patience
    self.best: Optional[float] = None
    self.best_epoch: Optional[int] = None
    self.epochs_since_best = 0
    for record in history:
      self.update(record)

  def update(self, record: EpochRecord) -> bool:
    """Takes an epoch's record; True if its val_elbo is the best so far."""
    value = record.val_elbo
    if value is None:
      return False
    if math.isfinite(value) and (self.best is None or value > self.best):
      self.best, self.best_epoch = value, record.epoch
      self.epochs_since_best = 0
      return True
    self.epochs_since_best += 1
    return False

  @property
  def should_stop(self) -> bool:
    return self.patience > 0 and self.epochs_since_best >= self.patience

  def describe(self) -> str:
    best = (
      "no finite validation ELBO yet"
      if self.best is None
      else f"best {self.best:.2f} at epoch {self.best_epoch}"
    )
    return (
      f"no better validation ELBO in {self.epochs_since_best} epochs ({best})"
    )

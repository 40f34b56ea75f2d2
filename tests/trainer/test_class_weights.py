"""Class weights: inverse class frequency, fully or partly balanced."""

from __future__ import annotations

import numpy as np
from emostream_trainer.dataset import Dataset
from emostream_trainer.training import balanced_weights


def counts_dataset(counts: list[int]) -> Dataset:
    targets = np.repeat(np.arange(len(counts)), counts)
    return Dataset(np.zeros((len(targets), 48, 48, 1), np.uint8), targets, tuple(f"c{i}" for i in range(len(counts))))


def test_full_balance_gives_every_class_the_same_total_weight() -> None:
    data = counts_dataset([60, 30, 10])
    weights = balanced_weights(data)
    totals = weights * np.asarray([60, 30, 10])
    np.testing.assert_allclose(totals, totals[0])
    np.testing.assert_allclose(totals.sum(), len(data))


def test_half_power_is_the_square_root_and_keeps_the_order() -> None:
    data = counts_dataset([60, 30, 10])
    full, half = balanced_weights(data), balanced_weights(data, 0.5)
    np.testing.assert_allclose(half, np.sqrt(full))
    assert half[2] > half[1] > half[0]
    assert half[2] / half[0] < full[2] / full[0]  # the rare class is boosted less

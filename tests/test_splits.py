"""Index subsets: class-balanced semi-supervised subsets, few-shot classes and episodes, held-out
classes and the validation hold-out."""

from __future__ import annotations

import numpy as np
import pytest

from stars.data.splits import (
    fewshot_ntu120_classes,
    heldout_class_split,
    ntu120_fewshot_mask,
    sample_episode,
    semi_supervised_subset,
    validation_holdout,
)

# class sizes 100, 50, 7, 1, 25 in shuffled order
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(5), [100, 50, 7, 1, 25]))


def test_semi_subset_is_class_balanced():
    subset = semi_supervised_subset(LABELS, 0.1, seed=0)
    counts = np.bincount(LABELS[subset], minlength=5)
    assert counts.tolist() == [10, 5, 1, 1, 3]  # max(1, round(0.1 n_c)), 2.5 rounds up
    assert np.all(np.diff(subset) > 0)  # sorted, no repeats
    assert semi_supervised_subset(LABELS, 1.0, seed=0).tolist() == list(range(len(LABELS)))
    one_percent = semi_supervised_subset(np.repeat(np.arange(60), 668), 0.01, seed=0)
    assert len(one_percent) == 60 * 7  # 6.68 -> 7 per class


def test_semi_subset_is_deterministic_and_seeded():
    first = semi_supervised_subset(LABELS, 0.2, seed=4)
    assert np.array_equal(first, semi_supervised_subset(LABELS.copy(), 0.2, seed=4))
    other = semi_supervised_subset(LABELS, 0.2, seed=5)
    assert not np.array_equal(first, other)
    assert np.array_equal(np.bincount(LABELS[first]), np.bincount(LABELS[other]))
    with pytest.raises(ValueError, match="fraction"):
        semi_supervised_subset(LABELS, 0.0, seed=0)
    with pytest.raises(ValueError, match="labels"):
        semi_supervised_subset(LABELS.astype(float), 0.1, seed=0)


def test_fewshot_classes_and_setups():
    classes = fewshot_ntu120_classes()
    assert classes[0] == 60 and classes[-1] == 119 and len(classes) == 60
    mask = ntu120_fewshot_mask({"setup": np.arange(1, 33)})
    assert np.flatnonzero(mask).tolist() == list(range(17, 32))  # setups 18..32
    with pytest.raises(ValueError, match="setup"):
        ntu120_fewshot_mask({"subject": np.arange(3)})


def test_heldout_class_split_partitions_the_classes():
    seen, unseen = heldout_class_split(120, 20, seed=1)
    assert len(unseen) == 20 and len(seen) == 100
    assert sorted(np.concatenate([seen, unseen]).tolist()) == list(range(120))
    again = heldout_class_split(120, 20, seed=1)
    assert np.array_equal(unseen, again[1])
    assert not np.array_equal(unseen, heldout_class_split(120, 20, seed=2)[1])
    with pytest.raises(ValueError):
        heldout_class_split(10, 10, seed=0)


def test_episode_has_exact_shots_and_disjoint_sets():
    classes = [4, 0, 2]
    support, query = sample_episode(LABELS, classes, shots=5, seed=3)
    assert LABELS[support].tolist() == [4] * 5 + [0] * 5 + [2] * 5
    assert not set(support) & set(query)
    expected_queries = sum(int((LABELS == c).sum()) - 5 for c in classes)
    assert len(query) == expected_queries and set(LABELS[query]) == set(classes)
    support2, query2 = sample_episode(LABELS, classes, shots=5, seed=3, queries=2)
    assert np.array_equal(support, support2)
    assert np.bincount(LABELS[query2], minlength=5).tolist() == [2, 0, 2, 0, 2]
    assert not np.array_equal(support, sample_episode(LABELS, classes, shots=5, seed=4)[0])
    with pytest.raises(ValueError, match="class 3 has 1 samples"):
        sample_episode(LABELS, [3], shots=2, seed=0)


def test_validation_holdout_is_stratified():
    train, val = validation_holdout(LABELS, 0.1, seed=0)
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(LABELS)))
    assert np.bincount(LABELS[val], minlength=5).tolist() == [10, 5, 1, 0, 3]  # singletons stay in train
    assert np.array_equal(val, validation_holdout(LABELS, 0.1, seed=0)[1])
    assert not np.array_equal(val, validation_holdout(LABELS, 0.1, seed=1)[1])

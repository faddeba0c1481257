"""kNN classifiers: majority vote equals scikit-learn, weighted vote equals a loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import normalize

from stars.eval.knn import (
    KNNConfig,
    knn_majority,
    knn_weighted,
    knn_weighted_leave_one_out,
    nearest_neighbours,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _case(rng: np.random.Generator, n_train: int, n_test: int, dim: int, labels: np.ndarray):
    train_f = rng.normal(size=(n_train, dim))
    test_f = rng.normal(size=(n_test, dim))
    train_y = rng.choice(labels, size=n_train)
    test_y = rng.choice(labels, size=n_test)
    return train_f, train_y, test_f, test_y


def _vote_ties(train_f, train_y, test_f, k) -> int:
    """How many test samples have a tied majority vote among their k nearest neighbours."""
    sims = normalize(test_f) @ normalize(train_f).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    ties = 0
    for row in train_y[order]:
        counts = np.bincount(row)
        ties += int((counts == counts.max()).sum() > 1)
    return ties


def test_majority_vote_equals_sklearn_on_many_random_cases():
    rng = np.random.default_rng(0)
    total_ties = 0
    for case in range(40):
        n_train = int(rng.integers(12, 80))
        labels = np.array([0, 1, 2]) if case % 2 else np.array([0, 2, 3, 7])  # also non-contiguous labels
        train_f, train_y, test_f, test_y = _case(rng, n_train, 30, int(rng.integers(2, 9)), labels)
        ks = (1, 2, 3, 4, 6, 10)
        ours = knn_majority(train_f, train_y, test_f, test_y, ks, device="cpu")
        for k in ks:
            sk = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(normalize(train_f), train_y)
            expected = sk.predict(normalize(test_f))
            np.testing.assert_array_equal(ours.predictions[k], expected, err_msg=f"case {case}, k={k}")
            assert ours.top1[k] == pytest.approx(100.0 * np.mean(expected == test_y))
            total_ties += _vote_ties(train_f, train_y, test_f, k)
    assert total_ties > 100  # the tie rule (smallest label wins) was exercised many times


def test_majority_tie_goes_to_the_smallest_label():
    train_f = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0]])
    train_y = np.array([3, 1, 0])
    outcome = knn_majority(train_f, train_y, np.array([[1.0, 0.05]]), np.array([1]), ks=(1, 2), device="cpu")
    assert outcome.predictions[1].tolist() == [3]  # nearest neighbour alone
    assert outcome.predictions[2].tolist() == [1]  # one vote each for 3 and 1 -> 1
    assert outcome.top1 == {1: 0.0, 2: 100.0}


def test_equal_distances_keep_the_smallest_training_indices():
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    bank = np.array([b, a, a, a, b], dtype=np.float32)
    labels = np.array([0, 5, 4, 2, 0])
    sims, idx = nearest_neighbours(torch.tensor(bank), torch.tensor([a], dtype=torch.float32), k=4)
    assert idx.tolist() == [[1, 2, 3, 0]]
    assert sims[0, :3].tolist() == [1.0, 1.0, 1.0]
    outcome = knn_majority(bank, labels, np.array([a]), np.array([4]), ks=(1, 2), device="cpu")
    assert outcome.predictions[1].tolist() == [5]
    assert outcome.predictions[2].tolist() == [4]  # neighbours 1 and 2: tie between 5 and 4 -> 4


def _weighted_reference(train_f, train_y, test_f, k, temperature, num_classes):
    train_n, test_n = normalize(train_f), normalize(test_f)
    predictions = []
    for query in test_n:
        sims = train_n @ query
        order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]
        scores = [0.0] * num_classes
        for i in order:
            scores[train_y[i]] += float(np.exp(sims[i] / temperature))
        predictions.append(int(np.argmax(scores)))
    return np.array(predictions)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_weighted_vote_equals_loop_reference(temperature):
    rng = np.random.default_rng(1)
    for case in range(6):
        train_f, train_y, test_f, test_y = _case(rng, 60, 25, 5, np.arange(5))
        ks = (1, 10, 20, 40)
        ours = knn_weighted(train_f, train_y, test_f, test_y, ks, temperature, num_classes=5, device="cpu")
        for k in ks:
            expected = _weighted_reference(train_f, train_y, test_f, k, temperature, 5)
            np.testing.assert_array_equal(ours.predictions[k], expected, err_msg=f"case {case}, k={k}")
            assert ours.top1[k] == pytest.approx(100.0 * np.mean(expected == test_y))


def test_weighted_differs_from_majority_when_weights_matter():
    # Two far-but-many neighbours of class 0 against one very close neighbour of class 1.
    train_f = np.array([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    train_y = np.array([1, 0, 0])
    query = np.array([[1.0, 0.02]])
    majority = knn_majority(train_f, train_y, query, np.array([1]), ks=(3,), device="cpu")
    weighted = knn_weighted(train_f, train_y, query, np.array([1]), ks=(3,), temperature=0.1, device="cpu")
    assert majority.predictions[3].tolist() == [0]
    assert weighted.predictions[3].tolist() == [1]


def test_results_do_not_depend_on_chunking_or_precision():
    rng = np.random.default_rng(2)
    train_f, train_y, test_f, test_y = _case(rng, 200, 77, 16, np.arange(6))
    whole = knn_majority(train_f, train_y, test_f, test_y, (1, 5), device="cpu", chunk=4096)
    chunked = knn_majority(train_f, train_y, test_f, test_y, (1, 5), device="cpu", chunk=7)
    single = knn_majority(train_f.astype(np.float32), train_y, test_f.astype(np.float32), test_y, (1, 5), device="cpu")
    for k in (1, 5):
        np.testing.assert_array_equal(whole.predictions[k], chunked.predictions[k])
        np.testing.assert_array_equal(whole.predictions[k], single.predictions[k])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="features must be"):
        knn_majority(np.zeros((4, 3)), np.zeros(4, int), np.zeros((2, 5)), np.zeros(2, int), device="cpu")
    with pytest.raises(ValueError, match="labels must be"):
        knn_majority(np.ones((4, 3)), np.zeros(3, int), np.ones((2, 3)), np.zeros(2, int), device="cpu")
    with pytest.raises(ValueError, match="temperature"):
        KNNConfig(temperature=0.0)
    with pytest.raises(ValueError, match="k must be"):
        KNNConfig(ks_majority=(0, 1))


def test_leave_one_out_weighted_knn_equals_a_loop_reference():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 6))
    labels = rng.integers(0, 4, size=40)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = {}
    for k in (1, 5):
        correct = 0
        for i in range(40):
            sims = unit @ unit[i]
            sims[i] = -np.inf  # the sample itself is not its own neighbour
            nearest = np.argsort(-sims, kind="stable")[:k]
            scores = np.zeros(4)
            for j in nearest:
                scores[labels[j]] += np.exp(sims[j] / 0.1)
            correct += int(scores.argmax() == labels[i])
        expected[k] = 100.0 * correct / 40
    outcome = knn_weighted_leave_one_out(features, labels, (1, 5), 0.1, num_classes=4)
    assert outcome.top1 == pytest.approx(expected)
    # without the exclusion every sample would find itself: 100 % at k = 1
    assert knn_weighted(features, labels, features, labels, (1,), 0.1).top1[1] == 100.0

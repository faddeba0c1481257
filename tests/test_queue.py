"""FeatureQueue: initialisation, FIFO order with wrap-around, self-exclusion, top-k sampling, official layout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stars.methods.queue import FeatureQueue


def test_initial_state_is_unit_rows_without_ids_and_reproducible():
    queue = FeatureQueue(size=12, dim=5, generator=torch.Generator().manual_seed(3))
    again = FeatureQueue(size=12, dim=5, generator=torch.Generator().manual_seed(3))
    assert queue.features.shape == (12, 5)
    torch.testing.assert_close(queue.features.norm(dim=1), torch.ones(12))
    assert torch.equal(queue.features, again.features)
    assert queue.ids.tolist() == [-1] * 12
    assert int(queue.ptr) == 0
    assert float(queue.filled_fraction()) == 0.0
    assert set(queue.state_dict()) == {"features", "ids", "ptr"}


def test_enqueue_is_fifo_with_wrap_around_for_a_batch_that_does_not_divide_the_size():
    size, dim, batch = 10, 3, 4
    queue = FeatureQueue(size, dim, generator=torch.Generator().manual_seed(0))
    # Independent reference: a Python list of slots written one row at a time.
    reference_rows = [None] * size
    reference_ids = [-1] * size
    write_position = 0
    for step in range(4):  # 16 rows into 10 slots: wraps in step 2 (slots 8, 9, 0, 1) and again in step 3
        ids = torch.arange(step * batch, (step + 1) * batch)
        rows = F.normalize(
            torch.randn(batch, dim, generator=torch.Generator().manual_seed(100 + step)), dim=1
        )
        queue.enqueue(rows, ids)
        for row, sample_id in zip(rows, ids.tolist()):
            reference_rows[write_position] = row
            reference_ids[write_position] = sample_id
            write_position = (write_position + 1) % size
        assert int(queue.ptr) == (step + 1) * batch % size
        assert queue.ids.tolist() == reference_ids
    assert queue.ids.tolist() == [10, 11, 12, 13, 14, 15, 6, 7, 8, 9]
    torch.testing.assert_close(queue.features, torch.stack(reference_rows))
    assert float(queue.filled_fraction()) == 1.0


def test_enqueue_rejects_a_batch_larger_than_the_queue_and_bad_shapes():
    queue = FeatureQueue(4, 2)
    with pytest.raises(ValueError, match="does not fit"):
        queue.enqueue(torch.zeros(5, 2), torch.arange(5))
    with pytest.raises(ValueError, match="z must be"):
        queue.enqueue(torch.zeros(2, 3), torch.arange(2))
    with pytest.raises(ValueError, match="ids must be"):
        queue.enqueue(torch.zeros(2, 2), torch.arange(3))


def _queue_with(rows: np.ndarray, ids: list[int]) -> FeatureQueue:
    queue = FeatureQueue(len(rows), rows.shape[1])
    queue.enqueue(F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1), torch.tensor(ids))
    return queue


def test_hard_nearest_neighbour_equals_brute_force_argmax():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(20, 6))
    queue = _queue_with(rows, list(range(100, 120)))
    z = F.normalize(torch.tensor(rng.normal(size=(7, 6)), dtype=torch.float32), dim=1)
    neighbours, chosen = queue.nearest(z, torch.arange(7))
    unit_rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    expected = np.argmax(z.numpy() @ unit_rows.T, axis=1)
    assert chosen.tolist() == expected.tolist()
    torch.testing.assert_close(neighbours, queue.features[chosen])


def test_a_sample_never_gets_its_own_embedding_back():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(8, 4))
    ids = [5, 6, 7, 8, 9, 5, 10, 11]  # sample 5 sits in the queue twice (two earlier epochs)
    queue = _queue_with(rows, ids)
    own = queue.features[[0]]  # exactly sample 5's stored embedding, cosine 1 with itself
    _, chosen_without_exclusion = queue.nearest(own, None)
    assert chosen_without_exclusion.item() == 0
    _, chosen = queue.nearest(own, torch.tensor([5]))
    assert queue.ids[chosen].item() != 5
    similarities = (queue.features @ own[0]).numpy()
    similarities[[0, 5]] = -np.inf
    assert chosen.item() == int(np.argmax(similarities))
    # Unfilled rows carry id -1 and are never excluded.
    fresh = FeatureQueue(6, 4, generator=torch.Generator().manual_seed(0))
    _, chosen_fresh = fresh.nearest(fresh.features[[2]], torch.tensor([0]))
    assert chosen_fresh.item() == 2


def test_a_queue_holding_only_the_sample_itself_is_an_error():
    queue = _queue_with(np.eye(3), [4, 4, 4])
    with pytest.raises(RuntimeError, match="only its own"):
        queue.nearest(queue.features[[0]], torch.tensor([4]))
    with pytest.raises(RuntimeError, match="only its own"):
        queue.nearest(queue.features[[0]], torch.tensor([4]), topk=2)


def test_topk_sampling_stays_within_the_top_k_and_uses_all_of_them():
    # Query e0; the rows' cosine with e0 decreases with the row index; row 1 is the query's own entry.
    angles = np.linspace(0.0, 1.4, 10)
    rows = np.stack([np.cos(angles), np.sin(angles), np.zeros(10)], axis=1)
    ids = [20, 7, 21, 22, 23, 24, 25, 26, 27, 28]
    queue = _queue_with(rows, ids)
    query = torch.tensor([[1.0, 0.0, 0.0]]).repeat(300, 1)
    generator = torch.Generator().manual_seed(0)
    _, chosen = queue.nearest(query, torch.full((300,), 7), topk=3, generator=generator)
    counts = np.bincount(chosen.numpy(), minlength=10)
    # The top-3 without the own entry (row 1) are rows 0, 2, 3, each picked about 1/3 of the time.
    assert set(np.flatnonzero(counts)) == {0, 2, 3}
    assert counts[[0, 2, 3]].min() > 60
    _, hard = queue.nearest(query[:1], torch.tensor([7]), topk=0)
    assert hard.item() == 0


def test_load_official_accepts_the_dim_by_size_layout():
    rng = np.random.default_rng(2)
    official_queue = torch.tensor(rng.normal(size=(4, 9)), dtype=torch.float32)  # (dim, size)
    official_ids = torch.arange(9) * 3
    queue = FeatureQueue(9, 4)
    queue.load_official(official_queue, torch.tensor([5]), official_ids)
    torch.testing.assert_close(queue.features, official_queue.T)
    assert queue.ids.tolist() == official_ids.tolist()
    assert int(queue.ptr) == 5
    with pytest.raises(ValueError, match="official layout"):
        queue.load_official(official_queue.T, 0, official_ids)
    with pytest.raises(ValueError, match="outside"):
        queue.load_official(official_queue, 9, official_ids)

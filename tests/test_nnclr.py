"""nnclr_loss against an independent NumPy version of Algorithm 1, and the NNCLR module's forward, queue
updates and a decreasing loss on a toy problem."""

import numpy as np
import pytest
import torch
from stand_ins import TinyEncoder, TinyHead
from torch import nn

from stars.methods.nnclr import NNCLR, nnclr_loss


def _model(queue_size: int = 16, seed: int = 0, **kwargs) -> NNCLR:
    torch.manual_seed(seed)
    return NNCLR(
        TinyEncoder(),
        TinyHead(),
        queue_size=queue_size,
        queue_generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def _batch(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 4, 3, 2, generator=torch.Generator().manual_seed(seed))


def _reference_loss_and_grad(neighbours: np.ndarray, predictions: np.ndarray, tau: float, offset: int):
    """Algorithm 1 written as loops in float64: loss_i = -log softmax_j(<nn_i, p_j>/tau)[offset+i]."""
    batch, global_batch = neighbours.shape[0], predictions.shape[0]
    loss = 0.0
    grad = np.zeros_like(predictions)
    for i in range(batch):
        logits = np.array([neighbours[i] @ predictions[j] / tau for j in range(global_batch)])
        shifted = logits - logits.max()
        log_norm = np.log(np.exp(shifted).sum()) + logits.max()
        loss += log_norm - logits[offset + i]
        softmax = np.exp(logits - log_norm)
        for j in range(global_batch):
            grad[j] += (softmax[j] - (j == offset + i)) * neighbours[i] / tau
    return loss / batch, grad / batch


@pytest.mark.parametrize("offset", [0, 3])
def test_nnclr_loss_equals_loop_reference_including_gradient(offset):
    rng = np.random.default_rng(offset)
    neighbours = rng.normal(size=(3, 5))
    neighbours /= np.linalg.norm(neighbours, axis=1, keepdims=True)
    predictions = rng.normal(size=(6, 5))
    predictions /= np.linalg.norm(predictions, axis=1, keepdims=True)
    expected_loss, expected_grad = _reference_loss_and_grad(neighbours, predictions, 0.07, offset)

    neighbours_t = torch.tensor(neighbours, dtype=torch.float64, requires_grad=True)
    predictions_t = torch.tensor(predictions, dtype=torch.float64, requires_grad=True)
    loss = nnclr_loss(neighbours_t, predictions_t, temperature=0.07, offset=offset)
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-10)
    np.testing.assert_allclose(predictions_t.grad.numpy(), expected_grad, rtol=1e-9, atol=1e-12)
    assert neighbours_t.grad is None  # no gradient through the neighbours


def test_nnclr_loss_rejects_rows_outside_the_global_batch():
    with pytest.raises(ValueError, match="outside"):
        nnclr_loss(torch.zeros(3, 4), torch.zeros(4, 4), offset=2)
    with pytest.raises(ValueError, match="need neighbours"):
        nnclr_loss(torch.zeros(3, 4), torch.zeros(4, 5))


def test_forward_is_the_symmetric_cross_view_loss_and_enqueues_view1_projections():
    model = _model()
    view1, view2 = _batch(6, 1), _batch(6, 2)
    ids = torch.tensor([3, 9, 4, 0, 7, 12])
    queue_before = model.queue.features.clone()
    with torch.no_grad():
        z0, p0 = model.project_and_predict(view1)
        z1, p1 = model.project_and_predict(view2)
        nn0, _ = model.queue.nearest(z0, ids)
        nn1, _ = model.queue.nearest(z1, ids)
        expected = (nnclr_loss(nn1, p0) + nnclr_loss(nn0, p1)) / 2
    loss, metrics = model(view1, view2, ids)
    torch.testing.assert_close(loss, expected)
    assert set(metrics) == {"loss", "neighbour_similarity", "accuracy", "queue_filled"}
    expected_similarity = torch.cat([(z0 * nn0).sum(1), (z1 * nn1).sum(1)]).mean()
    torch.testing.assert_close(metrics["neighbour_similarity"], expected_similarity)
    # Training mode: view-1 projections written at slots 0..5, the pointer moved once by the batch.
    torch.testing.assert_close(model.queue.features[:6], z0)
    assert model.queue.ids[:6].tolist() == ids.tolist()
    assert torch.equal(model.queue.features[6:], queue_before[6:])
    assert int(model.queue.ptr) == 6


def test_identical_views_give_equal_halves_and_one_pass_matches_two():
    view = _batch(5, 3)
    ids = torch.arange(5)
    model = _model()
    with torch.no_grad():
        z, p = model.project_and_predict(view)
        nn_, _ = model.queue.nearest(z, ids)
        half = nnclr_loss(nn_, p)
    model_once = _model()
    loss_once, _ = model_once(view, view, ids)
    model_twice = _model(encode_identical_views_once=False)
    loss_twice, _ = model_twice(view, view.clone(), ids)
    torch.testing.assert_close(loss_once, half)
    torch.testing.assert_close(loss_twice, half)
    loss_once.backward()
    loss_twice.backward()
    for (name, a), b in zip(model_once.named_parameters(), model_twice.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_eval_mode_leaves_the_queue_alone_and_features_have_the_right_shapes():
    model = _model().eval()
    before = {key: value.clone() for key, value in model.queue.state_dict().items()}
    model(_batch(4, 0), _batch(4, 1), torch.arange(4))
    for key, value in model.queue.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = _batch(4, 5)
    assert model.features(x).shape == (4, 8)
    projection = model.features(x, "projection")
    torch.testing.assert_close(projection.norm(dim=1), torch.ones(4))
    assert model.features(x, "prediction").shape == (4, 8)
    with pytest.raises(ValueError, match="kind"):
        model.features(x, "logits")


def test_forward_rejects_mismatched_inputs():
    model = _model()
    with pytest.raises(ValueError, match="views differ"):
        model(_batch(4, 0), _batch(3, 1), torch.arange(4))
    with pytest.raises(ValueError, match="sample_ids"):
        model(_batch(4, 0), _batch(4, 1), torch.arange(3))


def test_a_few_optimisation_steps_lower_the_loss_on_a_toy_problem():
    torch.manual_seed(0)
    data = _batch(32, 42)
    ids = torch.arange(32)
    model = _model(queue_size=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        index = torch.randperm(32, generator=torch.Generator().manual_seed(step))[:16]
        view = data[index]
        loss, _ = model(view, view, ids[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)


def test_the_queue_is_sized_from_the_encoder_and_a_wrong_head_is_rejected():
    model = _model(queue_size=20)
    assert tuple(model.queue.features.shape) == (20, 8)
    with pytest.raises(ValueError, match="projector"):
        NNCLR(TinyEncoder(), nn.Linear(8, 8))
    wide = TinyHead()
    wide.predictor[-1] = nn.Linear(16, 5)
    with pytest.raises(ValueError, match="width"):
        NNCLR(TinyEncoder(), wide, queue_size=8)(_batch(4, 0), _batch(4, 1), torch.arange(4))


class LinearHead(nn.Module):
    """BatchNorm-free head (SyncBatchNorm needs a GPU), so per-rank and global-batch runs agree exactly."""

    def __init__(self, dim: int = 8, hidden: int = 16):
        super().__init__()
        self.projector = nn.Linear(dim, dim)
        self.predictor = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


def _bn_free_model() -> NNCLR:
    torch.manual_seed(0)
    return NNCLR(TinyEncoder(), LinearHead(), queue_size=16, queue_generator=torch.Generator().manual_seed(0))


def _distributed_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as torch_dist

    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        model = _bn_free_model()
        view1, view2, ids = _batch(8, 1), _batch(8, 2), torch.arange(8) + 100
        local = slice(rank * 4, (rank + 1) * 4)
        loss, _ = model(view1[local], view2[local], ids[local])
        loss.backward()
        grads = {}
        for name, parameter in model.named_parameters():
            torch_dist.all_reduce(parameter.grad)  # what DistributedDataParallel does: the mean over ranks
            grads[name] = parameter.grad / world_size
        torch.save(
            {"loss": loss.detach(), "grads": grads, "queue": model.queue.state_dict()}, f"{out_dir}/{rank}.pt"
        )
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_distributed_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]

    # Reference: the objective written out for one process holding the global batch of 8.
    model = _bn_free_model()
    view1, view2, ids = _batch(8, 1), _batch(8, 2), torch.arange(8) + 100
    queue_before = model.queue.features.clone()
    z0, p0 = model.project_and_predict(view1)
    z1, p1 = model.project_and_predict(view2)
    nn0, _ = model.queue.nearest(z0.detach(), ids)
    nn1, _ = model.queue.nearest(z1.detach(), ids)
    loss = (nnclr_loss(nn1, p0) + nnclr_loss(nn0, p1)) / 2
    loss.backward()
    # Softmax over the global batch of 8 on each rank: the mean of the two local losses is the global loss.
    torch.testing.assert_close((results[0]["loss"] + results[1]["loss"]) / 2, loss.detach())
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(results[0]["grads"][name], parameter.grad, msg=name)
    for rank in range(2):  # both ranks enqueue the gathered view-1 projections of all 8 samples, rank-major
        queue = results[rank]["queue"]
        torch.testing.assert_close(queue["features"][:8], z0.detach())
        torch.testing.assert_close(queue["features"][8:], queue_before[8:])
        assert queue["ids"][:8].tolist() == ids.tolist() and int(queue["ptr"]) == 8

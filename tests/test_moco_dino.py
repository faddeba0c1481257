"""MoCo (momentum update, identical teacher start, logits, single pointer advance) and DINO (Sinkhorn-Knopp,
KoLeo, cross-entropy pairs, momentum schedule, module forward)."""

import copy
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stand_ins import TinyEncoder
from stand_ins import TinyHead as _TinyHead
from torch import nn

from stars.methods.dino import (
    DINO,
    dino_cross_entropy,
    iterations_per_epoch,
    koleo_loss,
    sinkhorn_knopp,
    teacher_momentum_schedule,
)
from stars.methods.moco import MoCo, momentum_update

# MoCo's queue holds keys of a width (6) different from the encoder's (8)
TinyHead = functools.partial(_TinyHead, out_dim=6)


def _batch(n: int, seed: int, frames: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, frames, 3, 2, generator=torch.Generator().manual_seed(seed))


def _moco(queue_size: int = 10, **kwargs) -> MoCo:
    torch.manual_seed(0)
    return MoCo(
        TinyEncoder(),
        TinyHead(),
        queue_size=queue_size,
        feature_dim=6,
        queue_generator=torch.Generator().manual_seed(0),
        **kwargs,
    )


# ---------------------------------------------------------------- MoCo


def test_momentum_update_is_the_ema_formula_and_copies_buffers():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.add_(torch.randn_like(parameter))
    student(torch.randn(5, 4))  # changes the student's running statistics only
    teacher_before = {name: p.clone() for name, p in teacher.named_parameters()}
    momentum_update(student, teacher, 0.9)
    for name, parameter in student.named_parameters():
        torch.testing.assert_close(
            dict(teacher.named_parameters())[name], 0.9 * teacher_before[name] + 0.1 * parameter
        )
    for name, buffer in student.named_buffers():
        assert torch.equal(dict(teacher.named_buffers())[name], buffer), name
    with pytest.raises(ValueError, match="different"):
        momentum_update(student, nn.Linear(4, 3), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        momentum_update(student, teacher, 1.5)


def test_moco_teacher_starts_equal_and_frozen():
    model = _moco()
    for (name, s), t in zip(model.head.state_dict().items(), model.teacher_head.state_dict().values()):
        assert torch.equal(s, t), name
    for s, t in zip(model.encoder.parameters(), model.teacher_encoder.parameters()):
        assert torch.equal(s, t) and s is not t
    assert all(not p.requires_grad for p in model.teacher_encoder.parameters())
    assert all(not p.requires_grad for p in model.teacher_head.parameters())


def test_moco_logits_are_positive_then_queue_over_temperature_with_target_zero():
    model = _moco().eval()
    view1, view2, ids = _batch(4, 1), _batch(4, 2), torch.arange(4)
    with torch.no_grad():
        q = (
            F.normalize(model.head.predictor(model.head.projector(model.encoder(view1))), dim=1)
            .double()
            .numpy()
        )
        k = (
            F.normalize(
                model.teacher_head.predictor(model.teacher_head.projector(model.teacher_encoder(view2))),
                dim=1,
            )
            .double()
            .numpy()
        )
    queue = model.queue.features.double().numpy()
    expected = 0.0
    for i in range(4):  # loop reference: -log softmax over [q.k, q.queue] at index 0
        logits = np.concatenate([[q[i] @ k[i]], queue @ q[i]]) / 0.07
        expected += -(logits[0] - np.log(np.exp(logits).sum()))
    loss, metrics = model(view1, view2, ids)
    assert loss.item() == pytest.approx(expected / 4, rel=1e-5)
    assert set(metrics) == {"loss", "accuracy", "positive_similarity"}


def test_moco_pointer_moves_once_per_step_and_the_teacher_follows_the_ema():
    model = _moco(queue_size=10, momentum=0.9)
    optimizer = torch.optim.SGD(list(model.encoder.parameters()) + list(model.head.parameters()), lr=0.5)
    for step in range(3):  # batch 4 into 10 slots: pointer 4, 8, 2 (official: 4 + 4 extra per step)
        ids = torch.arange(4) + 4 * step
        teacher_before = [p.clone() for p in model.teacher_encoder.parameters()]
        student_before = [p.clone() for p in model.encoder.parameters()]
        loss, _ = model(_batch(4, step), _batch(4, 10 + step), ids)
        for t_new, t_old, s in zip(model.teacher_encoder.parameters(), teacher_before, student_before):
            torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * s)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert int(model.queue.ptr) == 4 * (step + 1) % 10
    assert model.queue.ids.tolist() == [10, 11, 2, 3, 4, 5, 6, 7, 8, 9]


def test_moco_enqueues_the_teacher_keys():
    model = _moco(queue_size=10)
    view2 = _batch(4, 2)
    model(_batch(4, 1), view2, torch.arange(4))
    with torch.no_grad():
        keys = F.normalize(
            model.teacher_head.predictor(model.teacher_head.projector(model.teacher_encoder(view2))), dim=1
        )
    torch.testing.assert_close(model.queue.features[:4], keys)


def test_moco_can_drop_the_samples_own_queue_entries_from_the_negatives():
    model = _moco(queue_size=6, exclude_own_negatives=True).eval()
    view1, view2 = _batch(2, 1), _batch(2, 2)
    model.queue.enqueue(
        F.normalize(torch.randn(6, 6, generator=torch.Generator().manual_seed(9)), dim=1),
        torch.tensor([0, 5, 1, 0, 7, 8]),
    )
    with torch.no_grad():
        q = F.normalize(model.head.predictor(model.head.projector(model.encoder(view1))), dim=1)
        k = F.normalize(
            model.teacher_head.predictor(model.teacher_head.projector(model.teacher_encoder(view2))), dim=1
        )
    expected = []
    for i, allowed in enumerate([[1, 2, 4, 5], [0, 1, 3, 4, 5]]):  # sample 0 owns slots 0, 3; sample 1 slot 2
        logits = torch.cat([(q[i] * k[i]).sum().view(1), model.queue.features[allowed] @ q[i]]) / 0.07
        expected.append(-torch.log_softmax(logits, dim=0)[0])
    loss, _ = model(view1, view2, torch.tensor([0, 1]))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


# ---------------------------------------------------------------- DINO losses


def _sinkhorn_reference(logits: np.ndarray, temperature: float, iterations: int) -> np.ndarray:
    q = np.exp(logits / temperature).T  # (K, B)
    num_prototypes, batch = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(axis=1, keepdims=True) / num_prototypes
        q = q / q.sum(axis=0, keepdims=True) / batch
    return (q * batch).T


def test_sinkhorn_knopp_matches_reference_rows_sum_to_one_and_balances_prototypes():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(24, 6))
    logits = raw / np.linalg.norm(raw, axis=1, keepdims=True)  # L2-normalised outputs, as in DINO
    result = sinkhorn_knopp(torch.tensor(logits, dtype=torch.float32), 0.04, 3).double().numpy()
    np.testing.assert_allclose(result, _sinkhorn_reference(logits, 0.04, 3), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.sum(axis=1), 1.0, atol=1e-5)
    softmax = np.exp(logits / 0.04) / np.exp(logits / 0.04).sum(axis=1, keepdims=True)

    def spread(assignment):  # relative spread of the prototype totals; perfectly balanced = 0
        mass = assignment.sum(axis=0)
        return (mass.max() - mass.min()) / mass.mean()

    assert spread(result) < 0.5 * spread(softmax)
    converged = sinkhorn_knopp(torch.tensor(logits), 0.04, 200).double().numpy()
    np.testing.assert_allclose(converged.sum(axis=0), 24 / 6, rtol=1e-3)
    np.testing.assert_allclose(converged.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="n_iterations"):
        sinkhorn_knopp(torch.tensor(logits), 0.04, 0)


def test_sinkhorn_knopp_does_not_overflow_on_large_logits():
    logits = torch.tensor([[30.0, 0.0, -30.0], [0.0, 30.0, 0.0], [-30.0, 0.0, 30.0]])
    result = sinkhorn_knopp(logits, 0.04, 3)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result.sum(dim=1), torch.ones(3))


def _koleo_reference(x: np.ndarray) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(x)):
        best_j, best_inner = None, -np.inf
        for j in range(len(x)):
            if j != i and x[i] @ x[j] > best_inner:
                best_j, best_inner = j, x[i] @ x[j]
        total += -np.log(np.sqrt(((x[i] - x[best_j]) ** 2).sum()) + 1e-8)
    return total / len(x)


def test_koleo_matches_a_double_loop_and_has_finite_gradients_for_duplicates():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 5))
    assert koleo_loss(torch.tensor(x)).item() == pytest.approx(_koleo_reference(x), rel=1e-10)
    duplicated = torch.tensor(np.concatenate([x[:3], x[:1]]), requires_grad=True)
    koleo_loss(duplicated).backward()
    assert torch.isfinite(duplicated.grad).all()
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(torch.ones(1, 4))


def test_dino_cross_entropy_averages_teacher_student_pairs_of_different_views():
    rng = np.random.default_rng(4)
    students = [rng.normal(size=(3, 4)) for _ in range(3)]  # 2 global + 1 local
    teachers = [rng.dirichlet(np.ones(4), size=3) for _ in range(2)]
    expected, pairs = 0.0, 0
    for i, target in enumerate(teachers):
        for v, logits in enumerate(students):
            if v == i:
                continue
            scaled = logits / 0.1
            log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
            expected += -(target * log_probs).sum(axis=1).mean()
            pairs += 1
    assert pairs == 4
    value = dino_cross_entropy([torch.tensor(s) for s in students], [torch.tensor(t) for t in teachers], 0.1)
    assert value.item() == pytest.approx(expected / pairs, rel=1e-10)
    with pytest.raises(ValueError, match="pair"):
        dino_cross_entropy([torch.tensor(students[0])], [torch.tensor(teachers[0])], 0.1)


def test_iterations_per_epoch_follows_the_distributed_sampler():
    assert iterations_per_epoch(40091, 32) == 1252  # official single-GPU assumption
    assert iterations_per_epoch(40091, 128, world_size=4) == 313  # real 4-GPU epoch
    assert iterations_per_epoch(10, 4, drop_last=False) == 3
    assert iterations_per_epoch(11, 4, drop_last=False, world_size=2) == 3  # 6 per process, batches of 2
    with pytest.raises(ValueError, match="divisible"):
        iterations_per_epoch(100, 6, world_size=4)


def test_teacher_momentum_schedule_endpoints_shape_and_world_size_dependence():
    schedule = teacher_momentum_schedule(20, 313)
    assert schedule.shape == (20 * 313,)
    assert schedule[0] == pytest.approx(0.996)
    assert schedule[-1] == pytest.approx(1.0)
    assert np.all(np.diff(schedule) >= 0)
    assert teacher_momentum_schedule(1, 3)[1] == pytest.approx(0.998)  # cosine midpoint
    one_gpu = teacher_momentum_schedule(20, iterations_per_epoch(40091, 32, world_size=1))
    four_gpus = teacher_momentum_schedule(20, iterations_per_epoch(40091, 128, world_size=4))
    last_step = len(four_gpus) - 1  # the last step of a 4-GPU run
    assert four_gpus[last_step] == pytest.approx(1.0)
    # What the official code did: a 1-GPU-length schedule read for 4-GPU steps barely leaves 0.996.
    assert one_gpu[last_step] == pytest.approx(
        0.996 + 0.004 * 0.5 * (1 - math.cos(math.pi * last_step / 25039))
    )
    assert one_gpu[last_step] < 0.9967


# ---------------------------------------------------------------- DINO module


def _dino(**kwargs) -> DINO:
    torch.manual_seed(0)
    return DINO(TinyEncoder(), out_dim=5, **kwargs)


def test_dino_teacher_starts_equal_to_the_student_and_is_frozen():
    model = _dino()
    for s, t in zip(model.encoder.parameters(), model.teacher_encoder.parameters()):
        assert torch.equal(s, t)
    assert torch.equal(model.head.weight, model.teacher_head.weight)
    assert model.head.weight.std().item() == pytest.approx(0.02, rel=0.5)
    assert all(not p.requires_grad for p in model.teacher_head.parameters())


def test_dino_forward_equals_the_composed_losses_and_the_teacher_sees_only_global_views():
    model = _dino()
    globals_ = [_batch(6, 1), _batch(6, 2)]
    locals_ = [_batch(6, 3, frames=2), _batch(6, 4, frames=2)]
    teacher_inputs, student_inputs = [], []
    model.teacher_encoder.register_forward_hook(lambda m, args, out: teacher_inputs.append(args[0].shape))
    model.encoder.register_forward_hook(lambda m, args, out: student_inputs.append(args[0].shape))
    loss, metrics = model(globals_, locals_, step=0)
    assert teacher_inputs == [(12, 3, 4, 3, 2)]  # both global views, one batch
    assert student_inputs == [(12, 3, 4, 3, 2), (12, 3, 2, 3, 2)]

    with torch.no_grad():
        student = [F.normalize(model.head(model.encoder(v)), dim=1) for v in globals_ + locals_]
        teacher = torch.cat(
            [F.normalize(model.teacher_head(model.teacher_encoder(v)), dim=1) for v in globals_]
        )
        targets = sinkhorn_knopp(teacher, 0.04, 3).split(6)
        expected_dino = dino_cross_entropy(student, list(targets), 0.1)
        expected_koleo = koleo_loss(student[0]) + koleo_loss(student[1])  # one term per global view
    torch.testing.assert_close(metrics["dino_loss"], expected_dino)
    torch.testing.assert_close(metrics["koleo_loss"], expected_koleo)
    torch.testing.assert_close(loss.detach(), expected_dino + 0.1 * expected_koleo)
    assert set(metrics) == {"loss", "dino_loss", "koleo_loss", "teacher_entropy"}
    loss.backward()
    assert model.head.weight.grad is not None
    assert all(p.grad is None for p in model.teacher_encoder.parameters())


def test_dino_update_teacher_and_temperature_warmup():
    model = _dino(warmup_teacher_temperature=0.02, teacher_temperature_warmup_steps=10)
    assert model.teacher_temperature_at(0) == pytest.approx(0.02)
    assert model.teacher_temperature_at(5) == pytest.approx(0.03)
    assert model.teacher_temperature_at(10) == pytest.approx(0.04)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    teacher_before = model.teacher_head.weight.clone()
    model.update_teacher(0.996)
    torch.testing.assert_close(model.teacher_head.weight, 0.996 * teacher_before + 0.004 * model.head.weight)
    model.reset_teacher()
    assert torch.equal(model.teacher_head.weight, model.head.weight)


def test_dino_rejects_bad_view_lists():
    model = _dino()
    with pytest.raises(ValueError, match="at least one global"):
        model([_batch(4, 0)], [])
    with pytest.raises(ValueError, match="same 4 samples"):
        model([_batch(4, 0), _batch(3, 1)], [])


def test_a_few_dino_steps_lower_the_loss():
    model = _dino()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    data = _batch(16, 7)
    losses = []
    for step in range(12):
        loss, _ = model([data, data], [], step=step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_teacher(0.9)
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


def _sinkhorn_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as torch_dist

    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        logits = F.normalize(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), dim=1)
        local = sinkhorn_knopp(logits[rank * 4 : (rank + 1) * 4], 0.04, 3)
        torch.save(local, f"{out_dir}/{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_sinkhorn_knopp_over_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_sinkhorn_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    gathered = torch.cat([torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)])
    logits = F.normalize(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    expected = _sinkhorn_reference(logits.double().numpy(), 0.04, 3)
    np.testing.assert_allclose(gathered.double().numpy(), expected, rtol=1e-4, atol=1e-7)
    # Per-process Sinkhorn (the official behaviour) would balance each half separately and differ.
    assert not np.allclose(sinkhorn_knopp(logits[:4], 0.04, 3).numpy(), expected[:4], rtol=1e-3)


# ---------------------------------------------------------------- official-behaviour switches


def test_moco_extra_pointer_advance_moves_the_pointer_a_second_time():
    plain, official = _moco(queue_size=64), _moco(queue_size=64, extra_pointer_advance=5)
    x = _batch(4, 1)
    plain(x, x, torch.arange(4))
    official(x, x, torch.arange(4))
    assert int(plain.queue.ptr) == 4 and int(official.queue.ptr) == 9
    assert (official.queue.ids[4:9] == -1).all()  # the skipped slots keep their old entries


def test_dino_koleo_chunks_split_the_stacked_global_rows():
    torch.manual_seed(0)
    model = DINO(TinyEncoder(), out_dim=5, koleo_chunks=4)
    views = [_batch(8, 2), _batch(8, 3)]
    _, metrics = model(views)
    outputs = [F.normalize(model.head(model.encoder(v)), dim=1) for v in views]
    expected = sum(koleo_loss(chunk) for chunk in torch.cat(outputs).chunk(4))
    torch.testing.assert_close(metrics["koleo_loss"], expected.detach())


def test_official_teacher_momentum_span_barely_leaves_its_base():
    """20 epochs of 313 steps read from a 25,040-step cosine starting at step 313: 0.99600 -> about 0.99664."""
    schedule = teacher_momentum_schedule(1, 25040, base=0.996, final=1.0)
    assert schedule[313] == pytest.approx(0.996, abs=1e-5)
    assert schedule[313 + 20 * 313 - 1] == pytest.approx(0.99664, abs=1e-5)


def _sinkhorn_process_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as torch_dist

    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        logits = F.normalize(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), dim=1)
        local = sinkhorn_knopp(logits[rank * 4 : (rank + 1) * 4], 0.04, 3, scope="process")
        torch.save(local, f"{out_dir}/{rank}.pt")
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_sinkhorn_scope_process_balances_each_process_alone_as_officially(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_sinkhorn_process_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    logits = F.normalize(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    for rank in range(2):
        local = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        expected = _sinkhorn_reference(logits[rank * 4 : (rank + 1) * 4].double().numpy(), 0.04, 3)
        np.testing.assert_allclose(local.double().numpy(), expected, rtol=1e-4, atol=1e-7)
    global_targets = _sinkhorn_reference(logits.double().numpy(), 0.04, 3)
    assert not np.allclose(torch.load(tmp_path / "0.pt", weights_only=True).numpy(), global_targets[:4], rtol=1e-3)


def test_dino_passes_its_sinkhorn_scope_and_rejects_unknown_ones():
    model = DINO(TinyEncoder(), out_dim=5, sinkhorn_scope="process")
    assert model.sinkhorn_scope == "process"
    with pytest.raises(ValueError, match="sinkhorn_scope"):
        DINO(TinyEncoder(), out_dim=5, sinkhorn_scope="gpu")
    with pytest.raises(ValueError, match="scope"):
        sinkhorn_knopp(torch.zeros(2, 3), 0.1, 1, scope="gpu")

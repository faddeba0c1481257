"""The shared training loop: schedule, checkpoint, exact resume, metrics on disk."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stars.train.engine import CHECKPOINT_NAME, FINAL_NAME, OptimConfig, RunConfig, Trainer, learning_rate


class ToyLoader:
    """Random regression batches that depend only on (epoch, batch index) — like BatchLoader."""

    def __init__(self, steps=4, batch=8):
        self.steps, self.batch, self.epoch = steps, batch, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.steps

    def __iter__(self):
        gen = torch.Generator().manual_seed(1000 + self.epoch)
        for _ in range(self.steps):
            x = torch.randn(self.batch, 4, generator=gen)
            yield {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0])}


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.Linear(16, 1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def toy_step(model, batch):
    model.steps += 1
    pred = model.net(batch["x"]).squeeze(-1)
    return ((pred - batch["y"]) ** 2).mean(), {}


def make_trainer(tmp_path, epochs):  # noqa: D103
    torch.manual_seed(0)
    model = ToyModel()
    optim = OptimConfig(lr=3e-2, min_lr=1e-2, warmup_epochs=1.0, weight_decay=0.01)
    run = RunConfig(epochs=epochs, batch_size=8, checkpoint_every=1, progress=False, device="cpu")
    groups = [{"params": list(model.parameters())}]
    return Trainer(model, groups, ToyLoader(), toy_step, optim, run, tmp_path, kind="toy")


def test_schedule_warmup_then_half_cosine():
    cfg = OptimConfig(lr=1e-3, min_lr=5e-4, warmup_epochs=20)
    assert learning_rate(cfg, 0, 400) == 0
    assert learning_rate(cfg, 10, 400) == pytest.approx(5e-4)
    assert learning_rate(cfg, 20, 400) == pytest.approx(1e-3)
    assert learning_rate(cfg, 210, 400) == pytest.approx(5e-4 + 5e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(cfg, 400, 400) == pytest.approx(5e-4)


def test_loss_decreases_and_files_written(tmp_path):
    trainer = make_trainer(tmp_path, epochs=10)
    history = trainer.fit()
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert (tmp_path / CHECKPOINT_NAME).exists() and (tmp_path / FINAL_NAME).exists()
    rows = trainer.metrics.rows()
    assert [int(r["epoch"]) for r in rows] == list(range(10))
    state = torch.load(tmp_path / FINAL_NAME, weights_only=True)
    assert state["epoch"] == 10 and state["kind"] == "toy"


def test_resumed_run_equals_uninterrupted(tmp_path):
    straight = make_trainer(tmp_path / "a", epochs=3)
    straight.fit()
    first = make_trainer(tmp_path / "b", epochs=3)
    first.fit(stop_after=2)  # interrupted after epoch 2, last checkpoint written at its end
    resumed = make_trainer(tmp_path / "b", epochs=3)
    assert resumed.resume() == 2
    resumed.fit()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [r["epoch"] for r in resumed.metrics.rows()] == ["0", "1", "2"]


def test_resume_refuses_other_kind_and_garbage(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit()
    other = make_trainer(tmp_path, epochs=2)
    other.kind = "mamp"
    with pytest.raises(ValueError, match="toy"):
        other.resume()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        make_trainer(tmp_path, epochs=2).resume(tmp_path / "bad.pt")


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.step_fn = lambda model, batch: (torch.tensor(float("nan"), requires_grad=True), {})
    with pytest.raises(FloatingPointError, match="epoch 0"):
        trainer.fit()


@pytest.mark.parametrize("mode", ["global", "per-parameter"])
def test_gradient_clipping_global_norm_or_each_tensor_alone(tmp_path, mode):
    """One SGD step at lr 1: the update is the clipped gradient, so its norms show the clipping rule."""
    torch.manual_seed(0)
    model = ToyModel()
    before = [p.detach().clone() for p in model.parameters()]
    optim = OptimConfig(optimizer="sgd", lr=1.0, min_lr=1.0, warmup_epochs=0.0, schedule="constant",
                        weight_decay=0.0, momentum=0.0, clip_grad=0.01, clip_mode=mode)
    run = RunConfig(epochs=1, batch_size=8, checkpoint_every=1, progress=False, device="cpu")
    trainer = Trainer(model, [{"params": list(model.parameters())}], ToyLoader(steps=1), toy_step, optim, run,
                      tmp_path, kind="toy")
    trainer.fit()
    norms = torch.stack([(p.detach() - b).norm() for p, b in zip(model.parameters(), before)])
    if mode == "global":
        assert norms.norm().item() == pytest.approx(0.01, rel=1e-4)
    else:
        assert torch.allclose(norms, torch.full_like(norms, 0.01), rtol=1e-4)

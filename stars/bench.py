"""`stars bench`: throughput of the batched feeder, MAMP pretraining and STARS tuning steps.

Measures steady-state speed (after warm-up steps) on the given dataset, or on a generated
synthetic one, at a model preset; writes JSON when --out is given.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from stars import dist
from stars.io import device_description, write_json


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def run_bench(data: str | None, preset: str = "paper", batch_size: int = 128, steps: int = 5,
              device: str | None = None) -> dict:
    if steps < 1:
        raise ValueError(f"bench: --steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"bench: --batch-size must be >= 1, got {batch_size}")
    from stars.data.augment import AugmentConfig
    from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit
    from stars.data.npz import load_split
    from stars.methods.param_groups import pretrain_param_groups
    from stars.models.mamp import MaskedMotionModel
    from stars.train.engine import build_optimizer
    from stars.train.pretrain import pretrain_preset
    from stars.train.tune import build_model, param_groups, tune_preset

    dev = dist.pick_device(device or "auto")
    if data is None:
        from stars.data.synthetic import prepare_synthetic

        folder = Path(tempfile.mkdtemp(prefix="stars-bench-"))
        prepare_synthetic(folder, seed=0)
        data = str(folder / "SYN_XSub.npz")
    split = load_split(data, "train")
    pre = pretrain_preset("mamp", preset)
    tune = tune_preset("stars", preset)
    frames = pre.encoder.num_frames
    results: dict = {"device": device_description(dev), "preset": preset, "batch_size": batch_size,
                     "dataset": str(data), "num_train": len(split)}

    train = DeviceSplit.from_split(split, dev)
    loader = BatchLoader(train, batch_size, train=True,
                         crop=CropConfig(train_interval=(0.5, 1.0), min_length=64, num_frames=frames),
                         augment=AugmentConfig(random_rot=0.3), layout=split.layout, seed=0)
    iterator = iter(loader)

    def next_batch():
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(loader)
            return next(iterator)

    seconds = _timed(next_batch, steps * 4, 2, dev)
    results["feeder_batches_per_s"] = 1.0 / seconds
    results["feeder_sequences_per_s"] = batch_size / seconds

    use_bf16 = dev.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else (
        lambda: torch.autocast("cpu", enabled=False))

    model = MaskedMotionModel(pre.encoder, pre.mamp).to(dev)
    optimizer = build_optimizer(pretrain_param_groups(model), pre.optim)
    batch = next_batch()

    def pretrain_step():
        with autocast():
            loss, _, _ = model(batch["x"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = _timed(pretrain_step, steps, 2, dev)
    results["pretrain_sequences_per_s"] = batch_size / seconds

    with tempfile.TemporaryDirectory() as tmp:
        from stars.config import to_dict
        from stars.models.checkpoint import build_checkpoint, save_checkpoint

        ckpt = Path(tmp) / "mamp.pt"
        save_checkpoint(ckpt, build_checkpoint("mamp", model.state_dict(), to_dict(pre)))
        nnclr, heads, encoder = build_model(tune, str(ckpt))
    nnclr = nnclr.to(dev)
    optimizer = build_optimizer(param_groups(tune, nnclr, heads, encoder), tune.optim)
    ids = torch.arange(batch_size, device=dev)

    def tune_step():
        with autocast():
            loss, _ = nnclr(batch["x"], batch["x"], ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = _timed(tune_step, steps, 2, dev)
    results["tune_sequences_per_s"] = batch_size / seconds
    return results


def main(args) -> int:
    results = run_bench(args.data, args.preset, args.batch_size, args.steps, args.device)
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return 0

"""Linear probe: a frozen encoder, a parameter-free BatchNorm + Linear head trained with SGD.

Recipe of MAMP `main_linprobe.py` (reference §6.1): encoder frozen and in eval mode, head in train mode;
training batches with the MAMP augmentation (random crop of 50-100 % of the valid frames resized to the
encoder's frame count + random rotation U(-0.3, 0.3) rad per axis); SGD momentum 0.9, weight decay 0,
lr 0.1 (absolute, for the global batch of 256), per-iteration cosine to 0 without warm-up, 100 epochs,
plain cross-entropy; test: centre crop 0.95. Reported number: see the selection policy in
`stars.eval.common` (last epoch by default; `test_max_over_epochs` only as an extra column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from stars import dist
from stars.data.augment import MAMP_AUGMENT, AugmentConfig
from stars.data.feeder import CropConfig
from stars.data.npz import SkeletonSplit, load_split
from stars.eval.common import (
    ClassifierTask,
    check_layout,
    classifier_config,
    fit_classifier,
    load_encoder_for_eval,
    resolve_device,
    write_result,
)
from stars.models.encoder import SkeletonEncoder
from stars.models.heads import Classifier
from stars.train.engine import OptimConfig, RunConfig


@dataclass(frozen=True)
class LinearConfig:
    """Linear-probe settings; defaults are the paper's (MAMP linprobe_t120_layer8.yaml, 2 GPUs x 128)."""

    epochs: int = 100
    batch_size: int = 256  # global batch
    lr: float = 0.1  # absolute peak lr (no batch-size scaling)
    momentum: float = 0.9
    weight_decay: float = 0.0
    train_crop: tuple[float, ...] = (0.5, 1.0)  # random crop ratio interval of the valid frames
    test_crop: float = 0.95  # centre crop ratio at evaluation
    augment: AugmentConfig = field(default_factory=lambda: MAMP_AUGMENT)  # random_rot 0.3
    select: Literal["last", "val"] = "last"  # see stars.eval.common
    val_fraction: float = 0.1  # part of the training split held out when select = "val"
    report_test_max: bool = False  # also evaluate the test split every epoch -> test_max_over_epochs
    eval_batch_size: int = 256
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16
    checkpoint_every: int = 1  # epochs between checkpoints (resume granularity)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.select not in ("last", "val"):
            raise ValueError(f"LinearConfig.select must be 'last' or 'val', got {self.select!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"LinearConfig.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"LinearConfig.val_fraction must lie in (0, 1), got {self.val_fraction}")


LINEAR_PRESETS = {
    "paper": LinearConfig(),
    "small": LinearConfig(epochs=20, batch_size=128),
    "tiny": LinearConfig(epochs=5, batch_size=32, eval_batch_size=64),
}


class LinearProbe(Classifier):
    """`Classifier(encoder, "linear")` whose encoder is frozen: no gradients, always in eval mode.

    x: (N, C, T, V, M) -> logits (N, num_classes). State dict keys `encoder.*`, `head.*`.
    """

    def __init__(self, encoder: SkeletonEncoder, num_classes: int):
        super().__init__(encoder, "linear", num_classes)
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pooled = self.encoder(x)
        return self.head(pooled.float())


def crop_config(train_crop: tuple[float, ...], test_crop: float, encoder: SkeletonEncoder) -> CropConfig:
    """Training interval and test centre crop, both resized to the encoder's frame count."""
    return CropConfig(train_interval=train_crop, eval_ratio=test_crop, num_frames=encoder.cfg.num_frames)


def run_config(cfg: Any, device: str | torch.device | None) -> RunConfig:
    """The Trainer's RunConfig from a protocol config with epochs/batch_size/seed/precision/... fields."""
    device = resolve_device(device)
    return RunConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, device=str(device),
        precision=cfg.precision, checkpoint_every=cfg.checkpoint_every, progress=cfg.progress,
    )


def train_linear_probe(
    encoder: SkeletonEncoder,
    train: SkeletonSplit,
    test: SkeletonSplit,
    out: str | Path,
    cfg: LinearConfig = LinearConfig(),
    device: str | torch.device | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Linear probe of `encoder` on `train`, evaluated on `test`; checkpoints and metrics.csv in `out`.

    -> metrics (see `fit_classifier`); {} when stopped early by `stop_after`.
    """
    check_layout(encoder, train)
    num_classes = max(train.num_classes, test.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # head initialisation
        model: nn.Module = LinearProbe(encoder, num_classes)
    groups = [{"params": list(model.head.parameters()), "weight_decay": cfg.weight_decay, "name": "head"}]
    optim = OptimConfig(
        optimizer="sgd", lr=cfg.lr, min_lr=0.0, warmup_epochs=0.0, schedule="cosine",
        weight_decay=cfg.weight_decay, momentum=cfg.momentum, clip_grad=0.0,
    )
    task = ClassifierTask(
        train=train, test=test, crop=crop_config(cfg.train_crop, cfg.test_crop, encoder), augment=cfg.augment,
        select=cfg.select, val_fraction=cfg.val_fraction, report_test_max=cfg.report_test_max,
        eval_batch_size=cfg.eval_batch_size,
    )
    return fit_classifier(
        model, groups, task, optim, run_config(cfg, device), out,
        config=classifier_config(cfg, encoder, "linear"), resume=resume, stop_after=stop_after,
    )


def run_linear(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: LinearConfig = LinearConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """`stars eval linear`: linear probe on the train split of `data`, top-1 on its test split.

    Writes metrics.json, config.yaml, run.json (+ metrics.csv, checkpoints, test predictions) to `out`.
    """
    device = resolve_device(device)
    encoder, info = load_encoder_for_eval(ckpt, preset, device, seed=cfg.seed, data=data)
    train, test = load_split(data, "train"), load_split(data, "test")
    metrics = train_linear_probe(encoder, train, test, out, cfg, device, resume=resume, stop_after=stop_after)
    if metrics and dist.is_main_process():
        write_result(out, "linear", metrics, cfg, data, cfg.seed, device, encoder=info)
    return metrics


__all__ = ["LinearConfig", "LINEAR_PRESETS", "LinearProbe", "crop_config", "run_config", "train_linear_probe",
           "run_linear"]

"""Full finetuning: encoder + finetune head trained end to end with layer-wise lr decay.

Recipe of MAMP `main_finetune.py` / `finetune_t120_layer8_decay.yaml` with the scripts' overrides
(reference §6.5): encoder drop-path 0.3 (linear over the blocks), head = Dropout 0.3 on token features ->
mean over time -> joints x channels -> mean over persons -> Linear -> BatchNorm -> ReLU -> Linear;
AdamW betas (0.9, 0.999), lr 3e-4, min_lr 1e-5, 5 warm-up epochs then per-iteration half-cosine,
layer decay 0.8 (embeddings 0.8^9 ... last block 0.8, norm and head 1), weight decay 0.05 on >= 2-D
weights only, label smoothing 0.1, batch 48, 100 epochs, MAMP augmentation; test centre crop 0.95.
From scratch (`from_scratch`): no checkpoint and layer decay 1.0, everything else equal.
Reported number: see the selection policy in `stars.eval.common`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from stars import dist
from stars.data.augment import MAMP_AUGMENT, AugmentConfig
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
from stars.eval.linear import crop_config, run_config
from stars.methods.param_groups import finetune_layer_decay_groups
from stars.models.encoder import SkeletonEncoder
from stars.models.heads import Classifier
from stars.train.engine import OptimConfig


@dataclass(frozen=True)
class FinetuneConfig:
    """Finetune settings; defaults are the paper's (MAMP finetune script: 2 GPUs x 24, lr 3e-4)."""

    epochs: int = 100
    batch_size: int = 48  # global batch
    lr: float = 3e-4  # peak lr (absolute)
    min_lr: float = 1e-5
    warmup_epochs: float = 5.0
    layer_decay: float = 0.8  # lr scale decay ** (depth + 1 - layer); 1.0 = from scratch
    weight_decay: float = 0.05  # on >= 2-D weights only
    betas: tuple[float, float] = (0.9, 0.999)
    drop_path: float = 0.3  # stochastic depth of the last block (linear from 0)
    head_dropout: float = 0.3  # dropout on token features in the finetune head
    label_smoothing: float = 0.1
    train_crop: tuple[float, ...] = (0.5, 1.0)
    test_crop: float = 0.95
    augment: AugmentConfig = field(default_factory=lambda: MAMP_AUGMENT)
    select: Literal["last", "val"] = "last"  # see stars.eval.common
    val_fraction: float = 0.1
    report_test_max: bool = False  # also evaluate the test split every epoch -> test_max_over_epochs
    eval_batch_size: int = 256
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto (bf16 autocast on CUDA) | fp32 | bf16; the official runs are fp32
    checkpoint_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.select not in ("last", "val"):
            raise ValueError(f"FinetuneConfig.select must be 'last' or 'val', got {self.select!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"FinetuneConfig.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"FinetuneConfig.val_fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"FinetuneConfig.layer_decay must lie in (0, 1], got {self.layer_decay}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"FinetuneConfig.head_dropout must lie in [0, 1), got {self.head_dropout}")


FINETUNE_PRESETS = {
    "paper": FinetuneConfig(),
    "small": FinetuneConfig(epochs=20, warmup_epochs=2.0, batch_size=32),
    "tiny": FinetuneConfig(epochs=3, warmup_epochs=1.0, batch_size=16, eval_batch_size=64),
}


def from_scratch(cfg: FinetuneConfig = FinetuneConfig()) -> FinetuneConfig:
    """The from-scratch recipe (script_finetune_scratch.sh): the same config with layer decay 1.0."""
    return dataclasses.replace(cfg, layer_decay=1.0)


def build_finetune_model(encoder: SkeletonEncoder, num_classes: int, cfg: FinetuneConfig) -> Classifier:
    """Encoder + FinetuneHead (head initialised from a generator seeded with cfg.seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Classifier(encoder, "finetune", num_classes)
    model.head.dropout.p = cfg.head_dropout
    return model


def train_finetune(
    encoder: SkeletonEncoder,
    train: SkeletonSplit,
    test: SkeletonSplit,
    out: str | Path,
    cfg: FinetuneConfig = FinetuneConfig(),
    device: str | torch.device | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Finetune `encoder` (built with drop-path cfg.drop_path) on `train`, evaluate on `test`.

    -> metrics (see `fit_classifier`); {} when stopped early by `stop_after`.
    """
    check_layout(encoder, train)
    if abs(encoder.cfg.drop_path_rate - cfg.drop_path) > 1e-12:
        raise ValueError(
            f"train_finetune: encoder drop_path_rate {encoder.cfg.drop_path_rate} differs from cfg.drop_path "
            f"{cfg.drop_path}; build it with load_encoder_for_eval(..., drop_path=cfg.drop_path)"
        )
    model = build_finetune_model(encoder, max(train.num_classes, test.num_classes), cfg)
    groups = finetune_layer_decay_groups(model.encoder, model.head, cfg.lr, cfg.layer_decay, cfg.weight_decay)
    optim = OptimConfig(
        optimizer="adamw", lr=cfg.lr, min_lr=cfg.min_lr, warmup_epochs=cfg.warmup_epochs, schedule="cosine",
        betas=cfg.betas, weight_decay=cfg.weight_decay, clip_grad=0.0,
    )
    task = ClassifierTask(
        train=train, test=test, crop=crop_config(cfg.train_crop, cfg.test_crop, encoder), augment=cfg.augment,
        select=cfg.select, val_fraction=cfg.val_fraction, report_test_max=cfg.report_test_max,
        eval_batch_size=cfg.eval_batch_size,
    )
    return fit_classifier(
        model, groups, task, optim, run_config(cfg, device), out,
        config=classifier_config(cfg, encoder, "finetune"), label_smoothing=cfg.label_smoothing,
        resume=resume, stop_after=stop_after,
    )


def run_finetune(
    ckpt: str | None,
    data: str,
    out: str | Path,
    cfg: FinetuneConfig = FinetuneConfig(),
    device: str | torch.device | None = None,
    preset: str | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """`stars eval finetune`: finetune on the train split of `data`, top-1 on its test split.

    ckpt None trains from a random initialisation of `preset` (pair it with `from_scratch(cfg)`).
    Writes metrics.json, config.yaml, run.json (+ metrics.csv, checkpoints, test predictions) to `out`.
    """
    device = resolve_device(device)
    encoder, info = load_encoder_for_eval(ckpt, preset, device, drop_path=cfg.drop_path, seed=cfg.seed,
                                          data=data)
    train, test = load_split(data, "train"), load_split(data, "test")
    metrics = train_finetune(encoder, train, test, out, cfg, device, resume=resume, stop_after=stop_after)
    if metrics and dist.is_main_process():
        write_result(out, "finetune", metrics, cfg, data, cfg.seed, device, encoder=info)
    return metrics


__all__ = [
    "FinetuneConfig", "FINETUNE_PRESETS", "from_scratch", "build_finetune_model", "train_finetune", "run_finetune",
]

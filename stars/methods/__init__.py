"""Stage-2 self-supervised tuning methods (NNCLR = STARS, MoCo and DINO ablations), their losses, the feature
queue, and the optimizer parameter groups shared by tuning, finetuning and pretraining."""

from __future__ import annotations

from torch import nn

from stars import dist
from stars.methods.dino import (
    DINO,
    dino_cross_entropy,
    iterations_per_epoch,
    koleo_loss,
    sinkhorn_knopp,
    teacher_momentum_schedule,
)
from stars.methods.moco import MoCo, frozen_copy, momentum_update
from stars.methods.nnclr import NNCLR, nnclr_loss
from stars.methods.param_groups import (
    finetune_layer_decay_groups,
    partial_tuning_groups,
    pretrain_param_groups,
)
from stars.methods.queue import FeatureQueue


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Under more than one process, replace every BatchNorm by SyncBatchNorm (statistics over the global batch,
    as in the official runs); call before wrapping in DistributedDataParallel. Alone, returns `model` unchanged
    (SyncBatchNorm needs a process group)."""
    if dist.is_distributed() and dist.get_world_size() > 1:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


__all__ = [
    "DINO",
    "FeatureQueue",
    "MoCo",
    "NNCLR",
    "convert_sync_batchnorm",
    "dino_cross_entropy",
    "finetune_layer_decay_groups",
    "frozen_copy",
    "iterations_per_epoch",
    "koleo_loss",
    "momentum_update",
    "nnclr_loss",
    "partial_tuning_groups",
    "pretrain_param_groups",
    "sinkhorn_knopp",
    "teacher_momentum_schedule",
]

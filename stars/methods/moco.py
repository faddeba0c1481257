"""MoCo contrastive tuning (the STARS ablation of Table 6): a momentum teacher gives the positive key, a queue of
past keys the negatives.

References: MoCo v2 (He et al., 2020; Chen et al., 2020); the official variant is specified in reference §5.8.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stars import dist
from stars.methods.queue import FeatureQueue
from stars.precision import at_least_fp32, fp32_island


@torch.no_grad()
def momentum_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """teacher_param <- momentum * teacher_param + (1 - momentum) * student_param; buffers copied from student.

    Both modules must have the same parameter and buffer names and shapes (the teacher is a copy of the student).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum_update: momentum must be in [0, 1], got {momentum}")
    student_parameters = dict(student.named_parameters())
    teacher_parameters = dict(teacher.named_parameters())
    student_buffers = dict(student.named_buffers())
    teacher_buffers = dict(teacher.named_buffers())
    if (
        student_parameters.keys() != teacher_parameters.keys()
        or student_buffers.keys() != teacher_buffers.keys()
    ):
        raise ValueError("momentum_update: student and teacher have different parameter or buffer names")
    for name, teacher_parameter in teacher_parameters.items():
        teacher_parameter.mul_(momentum).add_(student_parameters[name].detach(), alpha=1.0 - momentum)
    for name, teacher_buffer in teacher_buffers.items():
        teacher_buffer.copy_(student_buffers[name])


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters do not require gradients (a momentum teacher)."""
    teacher = copy.deepcopy(module)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


class MoCo(nn.Module):
    """Student encoder + projector/predictor head, EMA teacher copy, and a queue of teacher keys as negatives.

    encoder: (N, C, T, V, M) -> pooled (N, D); head: module with `projector` and `predictor` submodules
    (prediction width = `feature_dim`). The teacher is a copy of encoder and head made here, so teacher and
    student start identical (the official code re-initialises the heads after copying, reference §8.2 item 13):
    load pretrained weights into `encoder` before building MoCo, or call `reset_teacher()` after loading.
    Differences from the official code: the queue pointer moves once per step, by the global batch (the
    official processor moves it a second time); no batch shuffle of the key view (a no-op under SyncBatchNorm,
    which the trainer installs with `stars.methods.convert_sync_batchnorm`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        queue_size: int = 32768,
        feature_dim: int = 256,
        temperature: float = 0.07,
        momentum: float = 0.999,
        exclude_own_negatives: bool = False,
        queue_generator: torch.Generator | None = None,
        extra_pointer_advance: int = 0,
    ):
        super().__init__()
        for attribute in ("projector", "predictor"):
            if not hasattr(head, attribute):
                raise ValueError(f"MoCo: head {type(head).__name__} has no `{attribute}` submodule")
        if temperature <= 0:
            raise ValueError(f"MoCo: temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MoCo: momentum must be in [0, 1], got {momentum}")
        self.encoder = encoder
        self.head = head
        self.teacher_encoder = frozen_copy(encoder)
        self.teacher_head = frozen_copy(head)
        self.queue = FeatureQueue(queue_size, feature_dim, generator=queue_generator)
        self.temperature = temperature
        self.momentum = momentum
        # Official: every queue entry is a negative, including the sample's own key from an earlier epoch.
        self.exclude_own_negatives = exclude_own_negatives
        # Official quirk, off by default: the processor moved the pointer again by the per-GPU batch (32)
        # after every enqueue, leaving stale slots (reference §5.8).
        if extra_pointer_advance < 0:
            raise ValueError(f"MoCo: extra_pointer_advance must be >= 0, got {extra_pointer_advance}")
        self.extra_pointer_advance = extra_pointer_advance

    @torch.no_grad()
    def update_teacher(self, momentum: float | None = None) -> None:
        """EMA step of teacher encoder and head towards the student (default momentum: `self.momentum`)."""
        momentum = self.momentum if momentum is None else momentum
        momentum_update(self.encoder, self.teacher_encoder, momentum)
        momentum_update(self.head, self.teacher_head, momentum)

    def reset_teacher(self) -> None:
        """Make the teacher an exact copy of the student (after loading weights into the student)."""
        self.update_teacher(0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> pooled student encoder features (N, D)."""
        return self.encoder(x)

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, sample_ids: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """view1 (queries), view2 (keys): (B, C, T, V, M); sample_ids: (B,) dataset indices.

        In training mode the teacher first takes its EMA step (as in MoCo and the official code), then
        logits = [q . k, q . queue^T] / temperature with target 0, and finally the all-gathered keys are
        enqueued. Returns (loss, metrics) with detached 0-d metrics `loss`, `accuracy` (positive ranked first),
        `positive_similarity` (mean q . k).
        """
        if view1.shape != view2.shape:
            raise ValueError(f"MoCo: views differ in shape, {tuple(view1.shape)} vs {tuple(view2.shape)}")
        if sample_ids.shape != (view1.shape[0],):
            raise ValueError(f"MoCo: sample_ids must be ({view1.shape[0]},), got {tuple(sample_ids.shape)}")
        sample_ids = sample_ids.to(view1.device)
        if self.training:
            self.update_teacher()
        queries = F.normalize(self.head.predictor(self.head.projector(self.encoder(view1))), dim=1)
        with torch.no_grad():
            teacher_projection = self.teacher_head.projector(self.teacher_encoder(view2))
            keys = F.normalize(self.teacher_head.predictor(teacher_projection), dim=1)
        if queries.shape[1] != self.queue.dim:
            raise ValueError(
                f"MoCo: predictions have width {queries.shape[1]}, queue width is {self.queue.dim}"
            )

        negatives = self.queue.features.clone()  # (K, D); a copy, since enqueue below writes in place
        with fp32_island(queries.device):  # logits and softmax in fp32, also under bf16 autocast
            queries, keys = at_least_fp32(queries), at_least_fp32(keys)
            positive_logits = (queries * keys).sum(dim=1, keepdim=True)  # (B, 1)
            negative_logits = queries @ negatives.to(queries.dtype).T  # (B, K)
            if self.exclude_own_negatives:
                own_entry = self.queue.ids.unsqueeze(0) == sample_ids.to(self.queue.ids.device).unsqueeze(1)
                negative_logits = negative_logits.masked_fill(own_entry, float("-inf"))
            logits = torch.cat([positive_logits, negative_logits], dim=1) / self.temperature
            targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            loss = F.cross_entropy(logits, targets)

        with torch.no_grad():
            metrics = {
                "loss": loss.detach(),
                "accuracy": (logits.argmax(dim=1) == 0).float().mean(),
                "positive_similarity": positive_logits.mean(),
            }
            if self.training:
                self.queue.enqueue(dist.all_gather_no_grad(keys), dist.all_gather_no_grad(sample_ids))
                if self.extra_pointer_advance:
                    self.queue.ptr.copy_((self.queue.ptr + self.extra_pointer_advance) % self.queue.size)
        return loss, metrics

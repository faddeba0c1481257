"""DINO self-distillation tuning (the STARS ablation of supplementary Tables 2-3): a momentum teacher's
Sinkhorn-Knopp-centred assignments over prototypes are the targets of the student, plus a KoLeo spreading term.

References: DINO (Caron et al., 2021) and DINOv2 (Oquab et al., 2023) for the loss, the Sinkhorn-Knopp centring
(from SwAV, Caron et al., 2020) and the KoLeo regulariser (Sablayrolles et al., 2018); the official STARS
variant is specified in reference §5.9.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from stars import dist
from stars.methods.moco import frozen_copy, momentum_update
from stars.precision import at_least_fp32, fp32_island

SINKHORN_SCOPES = ("global", "process")


def _all_reduce_(tensor: torch.Tensor, op: torch_dist.ReduceOp = torch_dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce across processes; identity when not distributed."""
    if dist.is_distributed() and dist.get_world_size() > 1:
        torch_dist.all_reduce(tensor, op=op)
    return tensor


def _local(tensor: torch.Tensor, op: torch_dist.ReduceOp = torch_dist.ReduceOp.SUM) -> torch.Tensor:
    return tensor


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, n_iterations: int = 3,
                   scope: str = "global") -> torch.Tensor:
    """Balanced soft assignment of samples to prototypes over the global batch.

    teacher_logits: (B, K) local rows (B samples on this process, K prototypes). Starting from
    exp(teacher_logits / temperature), alternately rescale so that every prototype holds 1/K of the total mass
    and every sample 1/B_global of it, `n_iterations` times; sums run over all processes. The last rescaling is
    per sample, so each row of the returned (B, K) target sums to 1; prototype totals are equal up to the
    residual of the finite number of iterations.
    scope="process": every process balances its own B rows alone, as the official code does (its sums are
    per GPU), so the result depends on how the global batch is split over processes.
    """
    if teacher_logits.ndim != 2:
        raise ValueError(f"sinkhorn_knopp: teacher_logits must be (B, K), got {tuple(teacher_logits.shape)}")
    if n_iterations < 1:
        raise ValueError(f"sinkhorn_knopp: n_iterations must be >= 1, got {n_iterations}")
    if scope not in SINKHORN_SCOPES:
        raise ValueError(f"sinkhorn_knopp: scope must be one of {SINKHORN_SCOPES}, got {scope!r}")
    with fp32_island(teacher_logits.device):
        return _sinkhorn_knopp_fp32(at_least_fp32(teacher_logits), temperature, n_iterations, scope)


def _sinkhorn_knopp_fp32(teacher_logits: torch.Tensor, temperature: float, n_iterations: int,
                         scope: str = "global") -> torch.Tensor:
    reduce_ = _all_reduce_ if scope == "global" else _local
    scores = teacher_logits / temperature
    global_batch = scores.shape[0] * (dist.get_world_size() if scope == "global" else 1)
    num_prototypes = scores.shape[1]
    largest = reduce_(scores.max().clone(), torch_dist.ReduceOp.MAX)
    assignment = torch.exp(scores - largest).T  # (K, B); the shift cancels in the normalisations
    assignment /= reduce_(assignment.sum())
    for _ in range(n_iterations):
        prototype_mass = reduce_(assignment.sum(dim=1, keepdim=True))  # (K, 1)
        assignment /= prototype_mass * num_prototypes
        assignment /= assignment.sum(dim=0, keepdim=True) * global_batch  # (1, B) sums are local per sample
    return (assignment * global_batch).T


def koleo_loss(x: torch.Tensor) -> torch.Tensor:
    """Kozachenko-Leonenko spreading term: x (B, D) -> -mean_i log(||x_i - x_nn(i)|| + 1e-8) after L2 norm.

    nn(i) is the other row with the largest inner product with row i (nearest on the sphere).
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"koleo_loss: need (B, D) with B >= 2 rows, got {tuple(x.shape)}")
    with fp32_island(x.device):  # the nearest-row choice and the log distance in fp32, also under autocast
        x = F.normalize(at_least_fp32(x), dim=1, eps=1e-8)
        with torch.no_grad():
            inner = x @ x.T
            inner.fill_diagonal_(float("-inf"))
            nearest = inner.argmax(dim=1)
        distances = torch.linalg.vector_norm(x - x[nearest], dim=1)
        return -torch.log(distances + 1e-8).mean()


def dino_cross_entropy(
    student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor], student_temperature: float
) -> torch.Tensor:
    """Mean over pairs (teacher view i, student view v != i) of mean_b sum_k -q_ik log softmax(s_v / tau)_k.

    student_logits: one (B, K) tensor per student view, global views first (in the teacher's order);
    teacher_probs: one (B, K) target distribution per global view.
    """
    total = 0.0
    pairs = 0
    for teacher_index, target in enumerate(teacher_probs):
        for student_index, logits in enumerate(student_logits):
            if student_index == teacher_index:
                continue
            with fp32_island(logits.device):  # softmax over temperature-sharpened logits in fp32
                log_probs = F.log_softmax(at_least_fp32(logits) / student_temperature, dim=1)
                total = total + (-(at_least_fp32(target) * log_probs).sum(dim=1)).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino_cross_entropy: needs at least one (teacher view, other student view) pair")
    return total / pairs


def iterations_per_epoch(
    num_samples: int, global_batch: int, drop_last: bool = True, world_size: int = 1
) -> int:
    """Optimizer steps per epoch with `world_size` processes each loading global_batch / world_size samples.

    Matches a DistributedSampler (drop_last: floor(N / W) samples per process, else ceil) and a DataLoader with
    the same drop_last. NTU-60 XSub (40,091 samples), batch 32 per GPU: 1,252 on 1 GPU, 313 on 4 GPUs.
    """
    if num_samples < 1 or global_batch < 1 or world_size < 1:
        raise ValueError(
            f"iterations_per_epoch: need positive sizes, got num_samples={num_samples}, "
            f"global_batch={global_batch}, world_size={world_size}"
        )
    if global_batch % world_size:
        raise ValueError(
            f"iterations_per_epoch: global batch {global_batch} not divisible by {world_size} processes"
        )
    per_process_batch = global_batch // world_size
    if drop_last:
        per_process_samples = num_samples // world_size
        return per_process_samples // per_process_batch
    per_process_samples = math.ceil(num_samples / world_size)
    return math.ceil(per_process_samples / per_process_batch)


def teacher_momentum_schedule(
    epochs: int, iterations_per_epoch: int, base: float = 0.996, final: float = 1.0
) -> np.ndarray:
    """Per-step teacher EMA momentum (epochs * iterations_per_epoch,), cosine from `base` (step 0) to `final`
    (last step). Pass the real steps per epoch (see `iterations_per_epoch`): the official code assumed a single
    GPU on NTU-60 XSub, so on 4 GPUs its momentum barely moved from 0.996 (reference §8.2 item 12)."""
    total = epochs * iterations_per_epoch
    if total < 1:
        raise ValueError(f"teacher_momentum_schedule: needs >= 1 step, got {epochs} x {iterations_per_epoch}")
    if total == 1:
        return np.array([base], dtype=np.float64)
    progress = np.arange(total, dtype=np.float64) / (total - 1)
    return final + (base - final) * 0.5 * (1.0 + np.cos(np.pi * progress))


def _normalised_outputs(encoder: nn.Module, head: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """L2-normalised head(encoder(view)) (B_v, K) per view, the head in fp32; runs of consecutive equal-shape
    views are one batch (exact for the per-sample encoder and linear head used here)."""
    outputs: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        batch = torch.cat(views[start:end]) if end - start > 1 else views[start]
        features = encoder(batch)
        with fp32_island(features.device):  # the prototype scores (logits) in fp32, also under autocast
            out = F.normalize(head(at_least_fp32(features)), dim=1)
        outputs.extend(out.split(views[start].shape[0]))
        start = end
    return outputs


class DINO(nn.Module):
    """Student encoder + Linear(D, out_dim) head and an EMA teacher copy of both (official `dino_head: False`).

    encoder: (N, C, T, V, M) -> pooled (N, D) with attribute `embed_dim` = D. Head outputs of both networks are
    L2-normalised before the temperatures. The teacher sees the global views only, the student all views. The
    teacher is copied here, so both start identical (officially the heads differ, reference §8.2 item 12): load
    pretrained weights into `encoder` before building DINO, or call `reset_teacher()` after loading.
    KoLeo: one term per global view over that view's B student outputs on this process, summed over global
    views and weighted by `koleo_weight` (the official code split the 2B rows into 4 chunks of B/2 by mistake).
    Sinkhorn-Knopp runs jointly over the teacher outputs of all global views, with sums over all processes.
    The teacher temperature warms up linearly from `warmup_teacher_temperature` over
    `teacher_temperature_warmup_steps` steps (official: 0 steps, i.e. constant 0.04).
    """

    def __init__(
        self,
        encoder: nn.Module,
        out_dim: int = 128,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        koleo_weight: float = 0.1,
        sinkhorn_iterations: int = 3,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature_warmup_steps: int = 0,
        koleo_chunks: int = 0,
        sinkhorn_scope: str = "global",
    ):
        super().__init__()
        if min(student_temperature, teacher_temperature, warmup_teacher_temperature) <= 0:
            raise ValueError("DINO: temperatures must be > 0")
        if sinkhorn_scope not in SINKHORN_SCOPES:
            raise ValueError(f"DINO: sinkhorn_scope must be one of {SINKHORN_SCOPES}, got {sinkhorn_scope!r}")
        self.sinkhorn_scope = sinkhorn_scope  # global: over all processes; process: per GPU (official)
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.embed_dim), out_dim)
        # Official `weights_init` for Linear layers: N(0, 0.02) weights, zero bias.
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.teacher_encoder = frozen_copy(encoder)
        self.teacher_head = frozen_copy(self.head)
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.teacher_temperature_warmup_steps = teacher_temperature_warmup_steps
        self.koleo_weight = koleo_weight
        self.sinkhorn_iterations = sinkhorn_iterations
        if koleo_chunks < 0:
            raise ValueError(f"DINO: koleo_chunks must be >= 0, got {koleo_chunks}")
        # 0: one KoLeo term per global view; n > 0: the stacked global-view rows split into n chunks, one term
        # each (official: 4 chunks of B/2 for 2 views, reference §5.9)
        self.koleo_chunks = koleo_chunks

    def teacher_temperature_at(self, step: int) -> float:
        if step >= self.teacher_temperature_warmup_steps:
            return self.teacher_temperature
        fraction = step / self.teacher_temperature_warmup_steps
        return self.warmup_teacher_temperature + fraction * (
            self.teacher_temperature - self.warmup_teacher_temperature
        )

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step of teacher encoder and head (momentum from `teacher_momentum_schedule`, after the optimizer)."""
        momentum_update(self.encoder, self.teacher_encoder, momentum)
        momentum_update(self.head, self.teacher_head, momentum)

    def reset_teacher(self) -> None:
        """Make the teacher an exact copy of the student (after loading weights into the student)."""
        self.update_teacher(0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> pooled student encoder features (N, D)."""
        return self.encoder(x)

    def forward(
        self, global_views: Sequence[torch.Tensor], local_views: Sequence[torch.Tensor] = (), step: int = 0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """global_views: list of (B, C, T, V, M) (all the same shape); local_views: list of (B, C, T', V, M)
        temporal crops (student only); step: global optimizer step (teacher temperature warm-up).

        Returns (loss, metrics): loss = dino cross-entropy + koleo_weight * sum of per-global-view KoLeo terms;
        detached 0-d metrics `loss`, `dino_loss`, `koleo_loss`, `teacher_entropy` (mean entropy of the targets).
        """
        global_views, local_views = list(global_views), list(local_views)
        if not global_views or len(global_views) + len(local_views) < 2:
            raise ValueError("DINO: needs at least one global view and two views in total")
        batch = global_views[0].shape[0]
        for view in global_views + local_views:
            if view.shape[0] != batch:
                raise ValueError(
                    f"DINO: every view must hold the same {batch} samples, got {tuple(view.shape)}"
                )
        if any(view.shape != global_views[0].shape for view in global_views):
            raise ValueError("DINO: global views must share one shape")

        student_outputs = _normalised_outputs(self.encoder, self.head, global_views + local_views)
        with torch.no_grad():
            teacher_outputs = torch.cat(
                _normalised_outputs(self.teacher_encoder, self.teacher_head, global_views)
            )
            targets = sinkhorn_knopp(
                teacher_outputs, self.teacher_temperature_at(step), self.sinkhorn_iterations, self.sinkhorn_scope
            )
            teacher_probs = list(targets.split(batch))
        dino_loss = dino_cross_entropy(student_outputs, teacher_probs, self.student_temperature)
        if self.koleo_chunks:
            stacked = torch.cat(student_outputs[: len(global_views)])
            koleo = sum(koleo_loss(chunk) for chunk in stacked.chunk(self.koleo_chunks))
        else:
            koleo = sum(koleo_loss(student_outputs[index]) for index in range(len(global_views)))
        loss = dino_loss + self.koleo_weight * koleo

        with torch.no_grad():
            entropy = -(targets * torch.log(targets.clamp_min(1e-12))).sum(dim=1).mean()
            metrics = {
                "loss": loss.detach(),
                "dino_loss": dino_loss.detach(),
                "koleo_loss": koleo.detach(),
                "teacher_entropy": entropy,
            }
        return loss, metrics

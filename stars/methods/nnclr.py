"""NNCLR contrastive tuning, the STARS stage-2 objective.

Each sample's prediction of one view has to pick out, among the predictions of the whole global batch, the
queue nearest neighbour of the sample's projection of the other view.

References: NNCLR (Dwibedi et al., "With a little help from my friends", 2021); STARS supplementary
Algorithm 1; the official forward pass is specified in reference §5.3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stars import dist
from stars.methods.queue import FeatureQueue
from stars.precision import at_least_fp32, fp32_island


def nnclr_logits(neighbours: torch.Tensor, predictions: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """neighbours (B, D), predictions (G, D) -> (B, G) logits <neighbours_i, predictions_j> / temperature,
    computed in fp32 also under bf16 autocast (`stars.precision`); the neighbours are constants."""
    with fp32_island(predictions.device):
        predictions = at_least_fp32(predictions)
        return neighbours.detach().to(predictions.dtype) @ predictions.T / temperature


def nnclr_loss(
    neighbours: torch.Tensor, predictions: torch.Tensor, temperature: float = 0.07, offset: int = 0
) -> torch.Tensor:
    """Cross-entropy of neighbour-to-prediction similarities; the target of local row i is prediction offset+i.

    neighbours: (B, D) L2-normalised queue neighbours of this process's B samples (treated as constants).
    predictions: (G, D) L2-normalised predictions of the other view for the global batch (rank-major, G >= B).
    offset: position of this process's first sample in `predictions` (rank * B).
    Returns the mean over i of -log softmax_j(<neighbours_i, predictions_j> / temperature)[offset + i].
    Logits and softmax are computed in fp32, also under bf16 autocast (`stars.precision`).
    """
    if neighbours.ndim != 2 or predictions.ndim != 2 or neighbours.shape[1] != predictions.shape[1]:
        raise ValueError(
            f"nnclr_loss: need neighbours (B, D) and predictions (G, D), got {tuple(neighbours.shape)} "
            f"and {tuple(predictions.shape)}"
        )
    batch = neighbours.shape[0]
    if offset < 0 or offset + batch > predictions.shape[0]:
        raise ValueError(
            f"nnclr_loss: rows offset..offset+B = {offset}..{offset + batch} outside the "
            f"{predictions.shape[0]} predictions"
        )
    logits = nnclr_logits(neighbours, predictions, temperature)  # (B, G), fp32
    targets = torch.arange(offset, offset + batch, device=logits.device)
    with fp32_island(logits.device):
        return F.cross_entropy(logits, targets)


class NNCLR(nn.Module):
    """Encoder + projector/predictor head + queue of view-1 projections.

    encoder: (N, C, T, V, M) -> pooled (N, D), with an integer attribute `embed_dim` = D.
    head: module with `projector` ((N, D) -> projection (N, D)) and `predictor` (projection -> prediction
        (N, D)); the queue holds projections, so the prediction width must equal D.
    Under DistributedDataParallel convert the BatchNorms of the whole model to SyncBatchNorm first
    (`stars.methods.convert_sync_batchnorm`): batch statistics then cover the global batch, as officially.
    Differences from the official code (reference §5.3, §8.2 item 3): no batch shuffle of view 2 (with
    SyncBatchNorm it has no numerical effect) and a queue wrap-around that works for every global batch size.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        queue_size: int = 32768,
        temperature: float = 0.07,
        topk: int = 0,
        encode_identical_views_once: bool = True,
        queue_generator: torch.Generator | None = None,
    ):
        super().__init__()
        for attribute in ("projector", "predictor"):
            if not hasattr(head, attribute):
                raise ValueError(f"NNCLR: head {type(head).__name__} has no `{attribute}` submodule")
        if temperature <= 0:
            raise ValueError(f"NNCLR: temperature must be > 0, got {temperature}")
        if not 0 <= topk <= queue_size:
            raise ValueError(f"NNCLR: topk must be in [0, queue_size={queue_size}], got {topk}")
        self.encoder = encoder
        self.head = head
        self.queue = FeatureQueue(queue_size, int(encoder.embed_dim), generator=queue_generator)
        self.temperature = temperature
        self.topk = topk
        # The released configs feed the same tensor as both views; encoding it once gives the same loss and
        # gradients, and updates the head's BatchNorm running statistics once instead of twice.
        self.encode_identical_views_once = encode_identical_views_once

    def project_and_predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C, T, V, M) -> (projection (N, D), prediction (N, D)), both L2-normalised."""
        projection = self.head.projector(self.encoder(x))
        prediction = self.head.predictor(projection)
        return F.normalize(projection, dim=1), F.normalize(prediction, dim=1)

    def features(self, x: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """x: (N, C, T, V, M) -> (N, D): `pooled` encoder output (the KNN / t-SNE representation), or the
        L2-normalised `projection` or `prediction` (what the official training-time KNN monitor uses)."""
        if kind == "pooled":
            return self.encoder(x)
        if kind not in ("projection", "prediction"):
            raise ValueError(f"NNCLR.features: kind must be pooled, projection or prediction, got {kind!r}")
        projection, prediction = self.project_and_predict(x)
        return projection if kind == "projection" else prediction

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, sample_ids: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """view1, view2: (B, C, T, V, M) local batch; sample_ids: (B,) dataset indices of the samples.

        Returns (loss, metrics) with loss = (loss0 + loss1) / 2, where loss0 scores the queue neighbours of
        view-2 projections against the all-gathered view-1 predictions (softmax over the global batch G) and
        loss1 the reverse. In training mode the all-gathered view-1 projections are then enqueued with their ids.
        Metrics (detached 0-d tensors): `loss`, `neighbour_similarity` (mean cosine of a projection and its
        neighbour), `accuracy` (fraction of rows whose own prediction scores highest), `queue_filled`.
        """
        if view1.shape != view2.shape:
            raise ValueError(f"NNCLR: views differ in shape, {tuple(view1.shape)} vs {tuple(view2.shape)}")
        batch = view1.shape[0]
        if sample_ids.shape != (batch,):
            raise ValueError(f"NNCLR: sample_ids must be ({batch},), got {tuple(sample_ids.shape)}")
        sample_ids = sample_ids.to(view1.device)  # gathered with the features (NCCL needs device tensors)
        projection0, prediction0 = self.project_and_predict(view1)
        if view2 is view1 and self.encode_identical_views_once:
            projection1, prediction1 = projection0, prediction0
        else:
            projection1, prediction1 = self.project_and_predict(view2)
        if prediction0.shape[1] != self.queue.dim:
            raise ValueError(
                f"NNCLR: predictions have width {prediction0.shape[1]} but the queue holds projections of "
                f"width {self.queue.dim}; the predictor output must equal the encoder width"
            )

        neighbours0, _ = self.queue.nearest(projection0.detach(), sample_ids, self.topk)
        neighbours1, _ = self.queue.nearest(projection1.detach(), sample_ids, self.topk)
        all_predictions0 = dist.all_gather_with_grad(prediction0)  # (G, D)
        all_predictions1 = dist.all_gather_with_grad(prediction1)
        offset = dist.get_rank() * batch
        loss0 = nnclr_loss(neighbours1, all_predictions0, self.temperature, offset)
        loss1 = nnclr_loss(neighbours0, all_predictions1, self.temperature, offset)
        loss = (loss0 + loss1) / 2

        with torch.no_grad(), fp32_island(view1.device):
            targets = torch.arange(offset, offset + batch, device=view1.device)
            hits0 = nnclr_logits(neighbours1, all_predictions0).argmax(dim=1) == targets
            hits1 = nnclr_logits(neighbours0, all_predictions1).argmax(dim=1) == targets
            similarity = torch.cat(
                [(at_least_fp32(projection0) * neighbours0).sum(dim=1), (at_least_fp32(projection1) * neighbours1).sum(dim=1)]
            )
            metrics = {
                "loss": loss.detach(),
                "neighbour_similarity": similarity.mean(),
                "accuracy": torch.cat([hits0, hits1]).float().mean(),
                "queue_filled": self.queue.filled_fraction(),
            }
            if self.training:
                self.queue.enqueue(
                    dist.all_gather_no_grad(projection0.detach()), dist.all_gather_no_grad(sample_ids)
                )
        return loss, metrics

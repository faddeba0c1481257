"""MAMP + NNCLR (Table 4): the masked-motion loss and the NNCLR loss trained together in stage 2.

Absent from the official code; our design:
- one encoder, initialised from the stage-1 MAMP checkpoint together with its decoder (the MAMP
  branch continues from where pretraining stopped instead of from a random decoder);
- each step feeds the same unmasked batch to the NNCLR branch (pooled features -> projector ->
  predictor, queue neighbours, symmetric InfoNCE) and a masked copy to the MAMP branch (motion-aware
  masking, per-token normalised motion targets, MSE on masked tokens);
- loss = nnclr + mamp_weight * mamp with mamp_weight = 1.0 (both terms are O(1) at the start of
  tuning: NNCLR ~ log(global batch), the normalised motion MSE ~ 1), so neither dominates;
- the same partial tuning as STARS (second half of the blocks with layer decay, final norm, head),
  plus the decoder at the base learning rate.
"""

from __future__ import annotations

import torch

from stars.methods.nnclr import NNCLR
from stars.models.encoder import SkeletonEncoder
from stars.models.mamp import MaskedMotionModel

DECODER_PREFIXES = ("decoder_", "mask_token")


class MaskedMotionEncoder(MaskedMotionModel):
    """A MAMP model whose `forward` is the encoder's (pooled features, (N, D)); the masked-motion
    objective is `masked_motion_loss(x) -> (loss, pred, mask)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SkeletonEncoder.forward(self, x)

    def masked_motion_loss(self, x: torch.Tensor):
        return MaskedMotionModel.forward(self, x)


class MAMPNNCLR(NNCLR):
    """NNCLR over a `MaskedMotionEncoder`, adding `mamp_weight` x the masked-motion loss of view 1."""

    def __init__(self, encoder: MaskedMotionEncoder, head, mamp_weight: float = 1.0, **kwargs):
        super().__init__(encoder, head, **kwargs)
        if mamp_weight < 0:
            raise ValueError(f"mamp_weight must be >= 0, got {mamp_weight}")
        self.mamp_weight = mamp_weight

    def forward(self, view1, view2, sample_ids):
        contrastive, metrics = super().forward(view1, view2, sample_ids)
        motion, _, _ = self.encoder.masked_motion_loss(view1)
        metrics = dict(metrics)
        metrics["nnclr_loss"] = contrastive.detach()
        metrics["motion_loss"] = motion.detach()
        return contrastive + self.mamp_weight * motion, metrics

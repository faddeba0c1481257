"""Heads on top of the skeleton encoder: the STARS projector/predictor, the linear-probe head, the
finetune head, and `Classifier` (encoder + classification head) used by the evaluation protocols."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from stars.models.encoder import SkeletonEncoder


def stars_weights_init(module: nn.Module) -> None:
    """STARS' initialisation of freshly built modules, applied with `module.apply(...)`:
    Conv/Linear weight N(0, 0.02) and bias 0; BatchNorm weight N(1, 0.02) and bias 0.

    References: STARS processor `weights_init` (applied to the whole model before loading weights).
    """
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        nn.init.normal_(module.weight, mean=1.0, std=0.02)
        nn.init.zeros_(module.bias)


class ProjectorPredictor(nn.Module):
    """NNCLR head of STARS: projector = BatchNorm1d (affine), predictor = 2-layer MLP.

    References: STARS `PretrainHead` (NNCLR, Dwibedi et al. 2021): predictor =
    Linear(D, 4096, no bias) -> BatchNorm1d(4096) -> ReLU -> Linear(4096, out_dim).
    Parameters start from `stars_weights_init`, as in the official code.
    """

    def __init__(self, embed_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256):
        super().__init__()
        self.projector = nn.BatchNorm1d(embed_dim)
        self.predictor = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.apply(stars_weights_init)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pooled: (B, D) -> (prediction (B, out_dim), projection (B, D)), both NOT L2-normalised."""
        projection = self.projector(pooled)
        return self.predictor(projection), projection


class LinearProbeHead(nn.Module):
    """Linear-probe classifier on the pooled feature: parameter-free BatchNorm, then Linear.

    References: MAMP main_linprobe (BatchNorm1d(affine=False, eps=1e-6) before the linear head,
    weight trunc-normal std 0.01, MAE linear-probing recipe).
    """

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6)
        self.fc = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: (N, D) -> logits (N, num_classes)."""
        return self.fc(self.norm(pooled))


class FinetuneHead(nn.Module):
    """Finetune classifier on per-joint features.

    Dropout on token features -> mean over time -> flatten joints x channels (V*D) -> mean over persons
    -> Linear(V*D, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, num_classes).
    References: MAMP finetune head (model/transformer.py, `protocol: finetune`); Linear layers use the
    encoder's xavier-uniform / zero-bias initialisation.
    """

    def __init__(
        self, embed_dim: int, num_joints: int, num_classes: int, hidden_dim: int = 2048, dropout: float = 0.3
    ):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(num_joints * embed_dim, hidden_dim)
        self.norm = nn.BatchNorm1d(hidden_dim)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden_dim, num_classes)
        for linear in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(
        self, tokens: torch.Tensor, batch: int, persons: int, temporal_patches: int, joints: int
    ) -> torch.Tensor:
        """tokens: (N*M, TP*V, D) -> logits (N, num_classes), with N=batch, M=persons, TP, V as given."""
        dim = tokens.shape[-1]
        features = self.dropout(tokens).reshape(batch, persons, temporal_patches, joints, dim)
        features = features.mean(dim=2).reshape(batch, persons, joints * dim).mean(dim=1)
        return self.fc2(self.act(self.norm(self.fc1(features))))


HeadKind = Literal["linear", "finetune"]


class Classifier(nn.Module):
    """Encoder + classification head, as used by the linear-probe, finetune and semi-supervised protocols.

    `head_kind="linear"`: `LinearProbeHead` on the pooled (N, D) feature.
    `head_kind="finetune"`: `FinetuneHead` on the token features (N*M, TP*V, D).
    State dict keys: `encoder.*` and `head.*`.
    """

    def __init__(self, encoder: SkeletonEncoder, head_kind: HeadKind, num_classes: int):
        super().__init__()
        if head_kind not in ("linear", "finetune"):
            raise ValueError(f"head_kind must be 'linear' or 'finetune', got {head_kind!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.encoder = encoder
        self.head_kind = head_kind
        cfg = encoder.cfg
        if head_kind == "linear":
            self.head: nn.Module = LinearProbeHead(cfg.embed_dim, num_classes)
        else:
            self.head = FinetuneHead(cfg.embed_dim, cfg.num_joints, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> logits (N, num_classes)."""
        if self.head_kind == "linear":
            return self.head(self.encoder(x))
        tokens = self.encoder.forward_tokens(x)
        cfg = self.encoder.cfg
        return self.head(tokens, x.shape[0], x.shape[-1], cfg.num_temporal_patches, cfg.num_joints)

"""Tiny stand-ins for the encoder and the projector/predictor head, for fast method tests:
same attribute names as `SkeletonEncoder` / `ProjectorPredictor`, toy sizes (4 frames, 3 joints)."""

import torch
from torch import nn


class TinyBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.fc(self.norm1(x))


class TinyEncoder(nn.Module):
    """Stand-in for SkeletonEncoder: (N, C, T, V, M) -> pooled (N, D), same attribute names."""

    def __init__(self, dim: int = 8, depth: int = 2, frames: int = 4, joints: int = 3):
        super().__init__()
        self.embed_dim, self.depth = dim, depth
        self.joints_embed = nn.Linear(3, dim)
        self.temp_embed = nn.Parameter(0.02 * torch.randn(1, frames, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1, joints, dim))
        self.blocks = nn.ModuleList(TinyBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        n, c, t, v, m = x.shape
        tokens = x.permute(0, 4, 2, 3, 1).reshape(n * m, t, v, c)
        tokens = self.joints_embed(tokens) + self.temp_embed[:, :t] + self.pos_embed
        tokens = tokens.reshape(n * m, t * v, -1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens).mean(dim=1).reshape(n, m, -1).mean(dim=1)


class TinyHead(nn.Module):
    """Stand-in for ProjectorPredictor: projector = BatchNorm1d, predictor = Linear-BN-ReLU-Linear."""

    def __init__(self, dim: int = 8, hidden: int = 16, out_dim: int | None = None):
        super().__init__()
        self.projector = nn.BatchNorm1d(dim)
        self.predictor = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out_dim or dim)
        )


def random_batch(cfg, batch: int = 2, persons: int = 2, seed: int = 0) -> torch.Tensor:
    """A seeded random (N, C, T, V, M) input for an encoder config."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg.in_channels, cfg.num_frames, cfg.num_joints, persons, generator=generator)

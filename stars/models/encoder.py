"""Spatio-temporal transformer encoder over skeleton patches (the backbone of MAMP and STARS).

A sequence `(C, T, V)` of one person is cut into `T / t_patch_size` x `V` tokens (4 frames x 1 joint
each), embedded by a strided convolution, given learned temporal and spatial embeddings, and encoded by
`depth` pre-norm transformer blocks with global attention over all tokens of that person. Persons are
folded into the batch and never attend to each other.

Parameter names equal those of the official MAMP/STARS code (`joints_embed.proj.*`, `temp_embed`,
`pos_embed`, `blocks.{i}.*`, `norm.*`) so checkpoints transfer by key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stars.models.blocks import Block, init_transformer_weights


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder hyper-parameters; defaults are the paper's (NTU, 120 frames, 8 x 256-d blocks)."""

    num_joints: int = 25  # V: joints per skeleton
    num_frames: int = 120  # T: frames per input sequence (after the feeder's resize)
    in_channels: int = 3  # C: coordinates per joint
    t_patch_size: int = 4  # frames per token; T must be divisible by it
    embed_dim: int = 256  # D: token width
    depth: int = 8  # number of transformer blocks
    num_heads: int = 8  # attention heads (head dim = embed_dim / num_heads)
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * embed_dim
    drop_path_rate: float = 0.0  # stochastic depth of the last block (linear 0 .. rate over blocks)

    def __post_init__(self) -> None:
        for name in (
            "num_joints",
            "num_frames",
            "in_channels",
            "t_patch_size",
            "embed_dim",
            "depth",
            "num_heads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
        for name in ("mlp_ratio", "drop_path_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"EncoderConfig.{name} must be a number, got {value!r}")
        if self.num_frames % self.t_patch_size != 0:
            raise ValueError(
                f"EncoderConfig.num_frames={self.num_frames} is not divisible by t_patch_size={self.t_patch_size}"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"EncoderConfig.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"EncoderConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"EncoderConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def num_temporal_patches(self) -> int:
        """TP = T / t_patch_size."""
        return self.num_frames // self.t_patch_size

    @property
    def num_tokens(self) -> int:
        """L = TP * V tokens per person (750 for the paper config)."""
        return self.num_temporal_patches * self.num_joints

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        """Build from a plain dict; unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "paper": EncoderConfig(),
    "small": EncoderConfig(embed_dim=64, depth=4, num_heads=4, num_frames=32),
    "tiny": EncoderConfig(embed_dim=32, depth=2, num_heads=2, num_frames=32),
}


def encoder_preset(name: str, **overrides: Any) -> EncoderConfig:
    """A preset from `ENCODER_PRESETS` with optional field overrides (validated like the config)."""
    if name not in ENCODER_PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; choose one of {sorted(ENCODER_PRESETS)}")
    return EncoderConfig.from_dict({**ENCODER_PRESETS[name].to_dict(), **overrides})


class SkeletonPatchEmbed(nn.Module):
    """Embed 4-frame x 1-joint patches with a strided convolution.

    References: MAMP `SkeleEmbed` (Conv2d over (T, V) with kernel = stride = (t_patch_size, 1)).
    """

    def __init__(self, in_channels: int, embed_dim: int, t_patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=(t_patch_size, 1), stride=(t_patch_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, V, C) -> (B, TP, V, D)."""
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def fold_persons(x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, T, V, M) -> (N*M, T, V, C), row n*M + m is person m of sample n."""
    batch, channels, frames, joints, persons = x.shape
    return x.permute(0, 4, 2, 3, 1).reshape(batch * persons, frames, joints, channels)


class SkeletonEncoder(nn.Module):
    """Transformer encoder over skeleton patch tokens.

    Input batches are `(N, C, T, V, M)` with `(C, T, V)` equal to the config; persons are folded into
    the batch. Token index within a person is `t * V + v`.
    """

    def __init__(self, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.depth = cfg.depth
        self.embed_dim = cfg.embed_dim
        self.joints_embed = SkeletonPatchEmbed(cfg.in_channels, cfg.embed_dim, cfg.t_patch_size)
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.num_temporal_patches, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, cfg.num_joints, cfg.embed_dim))
        drop_path_rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            [Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, drop_path=rate) for rate in drop_path_rates]
        )
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.apply(init_transformer_weights)
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless x is (N, C, T, V, M) with C, T, V as configured."""
        cfg = self.cfg
        expected = (cfg.in_channels, cfg.num_frames, cfg.num_joints)
        if x.ndim != 5 or tuple(x.shape[1:4]) != expected:
            raise ValueError(
                f"encoder input must have shape (N, C={expected[0]}, T={expected[1]}, V={expected[2]}, M), "
                f"got {tuple(x.shape)}"
            )

    def patchify_embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> tokens (N*M, TP, V, D) with temporal and spatial embeddings added."""
        self.check_input(x)
        return self.embed_sequences(fold_persons(x))

    def embed_sequences(self, sequences: torch.Tensor) -> torch.Tensor:
        """sequences: (B, T, V, C) -> tokens (B, TP, V, D) with temporal and spatial embeddings added."""
        return self.joints_embed(sequences) + self.temp_embed + self.pos_embed

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L', D) -> (B, L', D) after all blocks and the final norm (any subset of tokens)."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> token features (N*M, TP*V, D) after the blocks and final norm.

        Sequences that are entirely zero (the absent second person of a one-person sample, about 80 % of
        NTU RGB+D's and of the synthetic sets' second persons) all give the same tokens, so only one of them
        is encoded and its tokens stand for the others: the same function with fewer sequences to encode.
        This holds while the encoder is deterministic per sequence (eval mode, or no stochastic depth); with
        gradients the copies' gradients add up in the one encoded sequence, as they would over the copies.
        """
        self.check_input(x)
        sequences = fold_persons(x)
        if x.shape[-1] > 1 and self._can_share_empty_sequences(sequences):
            empty = ~sequences.flatten(1).any(dim=1)  # (B,)
            empty_rows = torch.nonzero(empty).flatten()
            if empty_rows.numel() > 1:
                keep = ~empty
                keep[empty_rows[0]] = True
                encoded = self.encode_tokens(self.embed_sequences(sequences[keep]).flatten(1, 2))
                row_of = torch.cumsum(keep, dim=0) - 1  # each sequence's row in `encoded`
                row_of[empty] = row_of[empty_rows[0]]
                return encoded[row_of]
        return self.encode_tokens(self.embed_sequences(sequences).flatten(1, 2))

    def _can_share_empty_sequences(self, sequences: torch.Tensor) -> bool:
        """True when equal input sequences give equal outputs (no stochastic depth is being sampled) and the
        values can be looked at: not on the meta device, where Table 11 counts the full computation by shape,
        and not while torch.compile traces, where a data-dependent row count would break the graph."""
        if sequences.is_meta or torch.compiler.is_compiling():
            return False
        return not self.training or all(block.drop_path.drop_prob == 0.0 for block in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, T, V, M) -> pooled representation (N, D): mean over all tokens and persons."""
        tokens = self.forward_tokens(x)
        batch, persons = x.shape[0], x.shape[-1]
        return tokens.reshape(batch, persons * tokens.shape[1], self.embed_dim).mean(dim=1)

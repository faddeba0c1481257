"""Pre-norm transformer building blocks shared by the skeleton encoder and the MAMP decoder.

References: ViT / timm `Block` (pre-norm attention + MLP with stochastic depth), as used by the MAE
and MAMP encoders. Attention runs through `torch.nn.functional.scaled_dot_product_attention`
(fused kernels where available) with the usual `head_dim ** -0.5` scale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability `drop_prob`.

    References: Huang et al. 2016 "Deep networks with stochastic depth" (timm `DropPath`).
    Surviving samples are scaled by `1 / (1 - drop_prob)` so the expectation is unchanged.
    Identity in eval mode or when `drop_prob == 0`.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) -> (B, ...), one keep/drop decision per sample (first dim)."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        keep.bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Two-layer feed-forward network `fc2(GELU(fc1(x)))`.

    References: ViT MLP block (timm `Mlp`), dropout omitted (0 in every MAMP/STARS config).
    """

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        return self.fc2(self.act(self.fc1(x)))


_EXPLICIT_ATTENTION = False


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Inside this block every `Attention` computes softmax(q k^T * scale) v with explicit matrix products
    (the official code's way) instead of the fused kernel: the reference path of `stars bench`."""
    global _EXPLICIT_ATTENTION
    previous, _EXPLICIT_ATTENTION = _EXPLICIT_ATTENTION, True
    try:
        yield
    finally:
        _EXPLICIT_ATTENTION = previous


class Attention(nn.Module):
    """Multi-head self-attention over all tokens of a sequence.

    References: ViT attention (timm `Attention`): one `qkv` projection with bias, softmax(q k^T * scale) v,
    output projection `proj`. Attention dropout omitted (0 in every MAMP/STARS config).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # each (B, H, L, head_dim)
        if _EXPLICIT_ATTENTION:
            attended = ((query @ key.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: `x + DropPath(Attn(LN(x)))`, then `x + DropPath(MLP(LN(x)))`.

    References: ViT / timm `Block`; LayerNorm eps 1e-5 as in the MAMP encoder.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_transformer_weights(module: nn.Module) -> None:
    """Initialisation applied with `model.apply(...)`: Linear xavier-uniform weight and zero bias,
    LayerNorm weight 1 and bias 0; every other module keeps PyTorch's default.

    References: MAE / MAMP `_init_weights`.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

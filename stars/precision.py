"""Numeric precision: bf16 autocast for the network, fp32 islands where a result depends on the last bits.

`run.precision` (and the `precision` field of every evaluation config) is one of
    auto  bf16 autocast on CUDA, fp32 on the CPU (our default; the official runs were fp32 throughout)
    bf16  bf16 autocast on any device
    fp32  no autocast, and on CUDA no TF32 either: fp32 end to end

Under bf16 autocast a matmul rounds its inputs to 8 significant bits. That is harmless inside the network,
but not where a decision is taken on near-equal numbers: the nearest neighbour of a projection among 32,768
queue entries, a top-k of KNN similarities, a contrastive logit divided by a temperature of 0.07. Those run
in an fp32 island: `with fp32_island(x.device): ...` turns autocast off and the code casts its inputs with
`at_least_fp32` (float64 stays float64), so the result is the same under autocast as without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`: torch.bfloat16, or None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and device_type == "cuda"):
        return torch.bfloat16
    return None


def set_full_fp32(device: torch.device | str) -> None:
    """On CUDA, disable TF32 in matmuls and cuDNN convolutions (PyTorch enables it for cuDNN by default)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str = "auto") -> Iterator[None]:
    """The network's numeric context for `precision` on `device` (see the module docstring)."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        if precision == "fp32":
            set_full_fp32(device)
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` as float32, or unchanged when it is float64 (reference computations stay in float64)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


@contextlib.contextmanager
def fp32_island(device: torch.device | str) -> Iterator[None]:
    """Autocast off on `device`'s type: operations run in their inputs' dtype; cast them with `at_least_fp32`."""
    with torch.autocast(torch.device(device).type, enabled=False):
        yield


__all__ = ["PRECISIONS", "Precision", "at_least_fp32", "autocast", "autocast_dtype", "fp32_island", "set_full_fp32"]

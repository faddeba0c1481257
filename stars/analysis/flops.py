"""Parameter and multiply-accumulate (MAC) counts in the style of `thop.profile`, and the paper's Table 11.

Counting rules (per call of a leaf module, from its input/output shapes):
* Linear: in_features x output elements (bias not counted).
* Conv1d/2d/3d: output elements x (in_channels / groups x kernel elements + 1 if bias).
* LayerNorm / BatchNorm: 2 x input elements, doubled when the norm is affine (thop's rule; every norm in
  the Table 11 models is affine, i.e. 4 x input elements).
* ReLU, GELU, Dropout, DropPath, Identity, Softmax: 0. Attention matmuls (inside scaled_dot_product_attention,
  not a module) and bare `nn.Parameter` additions are not counted.
* params = parameters owned by leaf modules, so bare `nn.Parameter`s (temporal/spatial embeddings, mask
  token) are excluded, exactly what thop reports and what the paper's Table 11 shows.

Models run on the meta device: only shapes flow, so the paper-size batches cost no memory or time.

References: Lyken17/pytorch-OpCounter (thop) counting rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from stars.models.blocks import DropPath
from stars.models.encoder import EncoderConfig, SkeletonEncoder
from stars.models.heads import ProjectorPredictor
from stars.models.mamp import MAMPConfig, MaskedMotionModel

ZERO_COST_MODULES = (nn.ReLU, nn.GELU, nn.Dropout, DropPath, nn.Identity, nn.Softmax, nn.Flatten)
NORM_MODULES = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
COUNTED_MODULES = (nn.Linear, nn.modules.conv._ConvNd, *NORM_MODULES, *ZERO_COST_MODULES)


def module_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """MACs of one call of a leaf module (rules in the module docstring); ValueError for unknown types."""
    if isinstance(module, nn.Linear):
        return module.in_features * output.numel()
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel_ops = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output.numel() * (kernel_ops + (1 if module.bias is not None else 0))
    if isinstance(module, NORM_MODULES):
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return 2 * inputs[0].numel() * (2 if affine else 1)
    if isinstance(module, ZERO_COST_MODULES):
        return 0
    raise ValueError(f"no MAC counting rule for leaf module {type(module).__name__}")


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> tuple[int, int]:
    """Run `model(*inputs)` once without gradients and -> (params, MACs), thop-style.

    Every leaf module (one without children) is hooked; a module called several times is counted at each
    call. Put model and inputs on the meta device to count paper-size batches for free.
    """
    leaves = [module for module in model.modules() if not list(module.children())]
    for module in leaves:  # fail before running anything if a rule is missing
        if not isinstance(module, COUNTED_MODULES):
            raise ValueError(f"no MAC counting rule for leaf module {type(module).__name__}")
    total = 0

    def hook(module: nn.Module, module_inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += module_macs(module, module_inputs, output)

    handles = [module.register_forward_hook(hook) for module in leaves]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for module in leaves for p in module.parameters(recurse=False))
    return params, total


# ------------------------------------------------------------------------------------------ Table 11
TABLE11_SAMPLES = 32  # one training batch of 32 samples (per GPU in the official runs)
TABLE11_PERSONS = 2
TABLE11_MAMP = MAMPConfig(decoder_depth=5, mask_ratio=0.8, visible_rounding="official")  # 149 visible tokens


@dataclass(frozen=True)
class ComplexityCount:
    method: str
    params: int
    macs: int

    @property
    def params_millions(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


class TwoViewTuningStep(nn.Module):
    """The forward of one STARS tuning step: both views through the encoder, each pooled feature through
    the projector and predictor (nearest-neighbour search and loss add no counted MACs)."""

    def __init__(self, encoder: SkeletonEncoder, head: ProjectorPredictor):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """view1, view2: (N, C, T, V, M) -> (prediction, projection) of each view, each (N, D)."""
        return (*self.head(self.encoder(view1)), *self.head(self.encoder(view2)))


def _meta_batch(cfg: EncoderConfig) -> torch.Tensor:
    return torch.zeros(
        TABLE11_SAMPLES, cfg.in_channels, cfg.num_frames, cfg.num_joints, TABLE11_PERSONS, device="meta"
    )


def table11(which: Literal["mamp", "stars"]) -> ComplexityCount:
    """Params and MACs of the paper's Table 11 setups (paper encoder, one training batch of 32 samples, M=2).

    "mamp": MAMP pretraining model with a 5-layer decoder, forward at mask ratio 0.8 with the official
    truncation (149 visible tokens) on 64 sequences -> 10,340,108 params, 250.38 GMACs.
    "stars": encoder + ProjectorPredictor, two views of 32 samples (128 sequences, 64 pooled vectors through
    the heads) -> 8,428,032 params, 606.11 GMACs.
    """
    cfg = EncoderConfig()
    with torch.device("meta"):
        if which == "mamp":
            model: nn.Module = MaskedMotionModel(cfg, TABLE11_MAMP)
            inputs: tuple[torch.Tensor, ...] = (_meta_batch(cfg),)
            name = "MAMP"
        elif which == "stars":
            model = TwoViewTuningStep(SkeletonEncoder(cfg), ProjectorPredictor(cfg.embed_dim))
            inputs = (_meta_batch(cfg), _meta_batch(cfg))
            name = "STARS"
        else:
            raise ValueError(f"table11 setup must be 'mamp' or 'stars', got {which!r}")
    params, macs = count_macs(model.train(), *inputs)
    return ComplexityCount(method=name, params=params, macs=macs)


def format_table11(which: Literal["mamp", "stars"] | None = None) -> list[tuple[str, float, float]]:
    """Rows (method, params in millions rounded to 2 decimals, GMACs rounded to 1 decimal), as in the paper;
    both methods when `which` is None."""
    names = ("mamp", "stars") if which is None else (which,)
    rows = []
    for name in names:
        count = table11(name)
        rows.append((count.method, round(count.params_millions, 2), round(count.gmacs, 1)))
    return rows


PAPER_TABLE11 = {"MAMP": (10.34, 250.4), "STARS": (8.43, 606.1)}


def main(args) -> int:
    """`stars flops mamp|stars|all`: Table 11 rows with the paper's values beside ours."""
    which = None if args.model == "all" else args.model
    print(f"{'method':<8} {'params (M)':>11} {'MACs (G)':>9}   paper")
    for method, params_m, gmacs in format_table11(which):
        paper = PAPER_TABLE11.get(method.upper(), ("-", "-"))
        print(f"{method:<8} {params_m:>11.2f} {gmacs:>9.1f}   {paper[0]} M / {paper[1]} G")
    return 0

"""Where the time of one training step goes, by kind of work, and how fast it could be at most.

`stars bench --profile` records one step with `torch.profiler` and sums the self time of every operator
(device time on CUDA, CPU time on the CPU) into a few categories:

    gemm          matrix products of the linear layers (mm, addmm, bmm, matmul, linear)
    attention     everything inside scaled_dot_product_attention, forward and backward
    normalisation LayerNorm / BatchNorm / GroupNorm, forward and backward
    movement      copies and dtype casts, cat / stack, gather / scatter / index, fills
    reduction     sums, means, variances, maxima, softmax outside attention, norms
    elementwise   adds, multiplies, activations and their backward, random draws
    optimiser     the optimiser step (foreach kernels, fused AdamW)
    other         the rest

An operator without a rule of its own (views, allocations, launch calls) takes the category of the
nearest enclosing operator that has one; anything under attention counts as attention.

With the nominal FLOPs of the linear layers and of the attention products, the achieved rate of each is
known, and so is a ceiling: the step's speed if everything but GEMM and attention cost nothing, at the
GEMM and attention rates measured. Against a device's bf16 peak this is the highest MFU that fusing the
memory-bound work could reach without faster GEMM or attention kernels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CATEGORIES = ("gemm", "attention", "normalisation", "movement", "reduction", "elementwise", "optimiser", "other")

_ATTENTION = re.compile(r"attention|scaled_dot_product|sdpa|fmha|flash", re.IGNORECASE)
_OPTIMISER = re.compile(r"_foreach_|fused_adam|optimizer\.step|adamw?\b", re.IGNORECASE)
_RULES = (
    ("gemm", {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_addmm_activation", "mv", "addmv", "dot",
              "einsum", "linear_backward", "convolution", "_convolution", "convolution_backward",
              "mkldnn_convolution", "cudnn_convolution", "conv1d", "conv2d"}),
    ("normalisation", {"layer_norm", "native_layer_norm", "native_layer_norm_backward", "batch_norm",
                       "native_batch_norm", "native_batch_norm_backward", "_batch_norm_impl_index",
                       "cudnn_batch_norm", "cudnn_batch_norm_backward", "group_norm", "native_group_norm",
                       "native_group_norm_backward", "batch_norm_backward_elemt", "batch_norm_backward_reduce",
                       "batch_norm_stats", "batch_norm_elemt", "batch_norm_gather_stats_with_counts",
                       "_native_batch_norm_legit", "_native_batch_norm_legit_no_training"}),
    ("movement", {"copy_", "_to_copy", "to", "clone", "contiguous", "cat", "stack", "gather", "scatter",
                  "scatter_add", "scatter_add_", "scatter_", "index", "index_select", "index_put_",
                  "_index_put_impl_", "index_add_", "masked_select", "take_along_dim", "fill_", "zero_", "zeros",
                  "zeros_like", "ones_like", "full", "narrow_copy", "embedding", "embedding_dense_backward",
                  "masked_fill", "masked_fill_", "repeat", "expand_as", "flip", "roll", "constant_pad_nd",
                  "slice_backward", "select_backward", "unbind_backward", "new_zeros", "_unsafe_index",
                  "grid_sampler_2d", "upsample_linear1d", "upsample_bilinear2d", "_pin_memory"}),
    ("reduction", {"sum", "mean", "var", "std", "var_mean", "amax", "amin", "max", "min", "argmax", "argmin",
                   "norm", "linalg_vector_norm", "softmax", "_softmax", "log_softmax", "_log_softmax",
                   "_softmax_backward_data", "_log_softmax_backward_data", "logsumexp", "topk", "sort", "argsort",
                   "cumsum", "nll_loss", "nll_loss_forward", "nll_loss_backward", "cross_entropy_loss", "mse_loss",
                   "mse_loss_backward", "any", "all", "_local_scalar_dense", "item", "nonzero"}),
    ("elementwise", {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "pow", "sqrt", "rsqrt",
                     "exp", "log", "abs", "sign", "sgn", "gelu", "gelu_backward", "relu", "threshold_backward",
                     "silu", "silu_backward", "tanh", "tanh_backward", "sigmoid", "sigmoid_backward", "where",
                     "clamp", "clamp_", "clamp_min", "clamp_max", "addcmul", "addcmul_", "addcdiv", "addcdiv_",
                     "lerp_", "lerp", "bernoulli_", "bernoulli", "rand", "randn", "uniform_", "normal_", "eq", "ne",
                     "lt", "le", "gt", "ge", "ne_", "maximum", "minimum", "reciprocal", "square", "rsub", "erf",
                     "erfinv", "floor", "round", "sin", "cos", "atan2", "lt_", "logical_not", "logical_and",
                     "_amp_foreach_non_finite_check_and_unscale_", "_fused_dropout", "native_dropout"}),
)
_BY_NAME = {name: category for category, names in _RULES for name in names}
_AUTOGRAD_NODE = re.compile(r"^(?:autograd::engine::evaluate_function: )?([A-Z][A-Za-z]*)Backward\d+$")


def own_category(name: str) -> str | None:
    """The category of a profiler event by its own name, or None when it has no rule (views, allocations,
    launch calls, autograd nodes: these take the category of an enclosing operator)."""
    if _ATTENTION.search(name):
        return "attention"
    if _OPTIMISER.search(name):
        return "optimiser"
    if name.startswith("aten::"):
        return _BY_NAME.get(name[len("aten::"):].split(".")[0])
    node = _AUTOGRAD_NODE.match(name)  # e.g. "AddmmBackward0", "NativeLayerNormBackward0"
    if node:
        return _BY_NAME.get(re.sub(r"(?<!^)(?=[A-Z])", "_", node.group(1)).lower())
    return None


def event_category(chain: list[str]) -> str:
    """chain: the event's name, then its enclosing operators' names, innermost first -> its category.

    Attention or the optimiser anywhere in the chain wins (their internals are their cost); otherwise the
    first name with a rule decides; `other` when none has one."""
    for name in chain:
        if _ATTENTION.search(name):
            return "attention"
        if _OPTIMISER.search(name):
            return "optimiser"
    for name in chain:
        category = own_category(name)
        if category is not None:
            return category
    return "other"


def time_by_category(events: Iterable, device: bool) -> dict[str, float]:
    """Self time in seconds per category over the host-side events of a `torch.profiler` run.

    device=True sums each operator's self device time (the kernels it launched), else its self CPU
    time. Events recorded on the device itself (kernel rows) are skipped: their time is already the
    self device time of the operator that launched them."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if getattr(event.device_type, "name", str(event.device_type)) != "CPU":
            continue
        micros = event.self_device_time_total if device else event.self_cpu_time_total
        if micros <= 0:
            continue
        chain, parent = [event.name], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        totals[event_category(chain)] += micros * 1e-6
    return totals


@dataclass(frozen=True)
class Breakdown:
    """One profiled step: seconds per category, and the nominal FLOPs of its GEMMs and attention products."""

    seconds: dict[str, float]
    gemm_flops: float
    attention_flops: float
    total_flops: float

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def rate(self, category: str) -> float | None:
        """Achieved FLOP/s of `gemm` or `attention` while their own operators run."""
        flops = {"gemm": self.gemm_flops, "attention": self.attention_flops}[category]
        seconds = self.seconds[category]
        return flops / seconds if seconds > 0 and flops > 0 else None

    @property
    def compute_seconds(self) -> float:
        return self.seconds["gemm"] + self.seconds["attention"]

    @property
    def ceiling_speedup(self) -> float | None:
        """How much faster the step would be if only GEMM and attention took time."""
        return self.total_seconds / self.compute_seconds if self.compute_seconds > 0 else None

    def ceiling_mfu(self, peak_flops: float | None) -> float | None:
        """MFU of the step if everything but GEMM and attention were free, at their measured rates."""
        if not peak_flops or self.compute_seconds <= 0:
            return None
        return self.total_flops / self.compute_seconds / peak_flops

    def to_dict(self, peak_flops: float | None = None) -> dict:
        out = {"seconds": {k: round(v, 7) for k, v in self.seconds.items()},
               "profiled_seconds": round(self.total_seconds, 7),
               "gemm_tflops": _tera(self.rate("gemm")), "attention_tflops": _tera(self.rate("attention")),
               "ceiling_speedup": self.ceiling_speedup}
        if peak_flops:
            out["ceiling_mfu"] = self.ceiling_mfu(peak_flops)
        return out

    def summary(self, peak_flops: float | None = None) -> str:
        """Two lines: the share of each category, then the GEMM / attention rates and the ceiling."""
        total = self.total_seconds or 1.0
        shares = ", ".join(f"{name} {100 * seconds / total:.1f} %" for name, seconds in
                           sorted(self.seconds.items(), key=lambda item: -item[1]) if seconds > 0)
        rates = []
        for name in ("gemm", "attention"):
            rate = self.rate(name)
            if rate:
                rates.append(f"{name} {rate / 1e12:.1f} TFLOP/s" if rate >= 1e12 else f"{name} {rate / 1e9:.1f} GFLOP/s")
        ceiling = ""
        if self.ceiling_speedup:
            ceiling = f"; with everything else free the step would be {self.ceiling_speedup:.2f}x as fast"
            mfu = self.ceiling_mfu(peak_flops)
            if mfu is not None:
                ceiling += f" (MFU ceiling {100 * mfu:.1f} %)"
        return (f"time by kind ({1e3 * self.total_seconds:.2f} ms profiled): {shares}\n"
                f"achieved: {', '.join(rates) or 'no FLOP counts'}{ceiling}")


def _tera(rate: float | None) -> float | None:
    return None if rate is None else rate / 1e12

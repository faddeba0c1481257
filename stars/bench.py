"""`stars bench`: our training and evaluation steps timed side by side with a baseline, in one process.

    stars bench                                     # ours vs our reference path, paper-size model
    stars bench --against-official ~/src/STARS      # ours vs the official code (a checkout you provide)

Workloads (every one on the same input batch for both sides):

    feeder    one training batch: crop + resize + rotation (ours: batched on the device; reference:
              the per-sample official-semantics feeder)
    pretrain  one MAMP pretraining step: forward, backward, AdamW
    tune      one STARS tuning step: two (identical, as in the released configs) views, NNCLR head and
              queue, backward through the tuned half, clipping, AdamW
    eval      one evaluation forward (pooled features, no gradients)

The baseline is either the official code (`--against-official DIR`, see `stars.official`) or our own
reference path: fp32, explicit attention (softmax(q k^T) v), both views encoded, per-sample feeder.
Steps of the two sides alternate (rounds of `steps` each, sides swapping order every round) and the
median round is kept, so machine load affects both alike. Reported per side: sequences/s, seconds per
step, peak memory (CUDA: allocator peak of that side; CPU: not tracked per side), and on CUDA the
achieved TFLOP/s (6 x forward MACs per training sequence, 2 x for evaluation; the same nominal work for
both sides) and MFU against the device's dense bf16 peak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stars import dist
from stars.analysis.step_profile import Breakdown, time_by_category
from stars.io import device_description, write_json

WORKLOADS = ("feeder", "pretrain", "tune", "eval")

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a name fragment of the device.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
                   "A10G": 70e12, "L4": 121e12}


class BenchError(ValueError):
    """Bad bench arguments."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a CUDA device (STARS_PEAK_TFLOPS overrides), None when unknown or on a CPU."""
    if "STARS_PEAK_TFLOPS" in os.environ:
        return float(os.environ["STARS_PEAK_TFLOPS"]) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peak in BF16_PEAK_FLOPS.items():
        if fragment in name:
            return peak
    return None


@dataclass
class Side:
    """One implementation of a workload: `step()` runs one step on the fixed batch of `sequences`."""

    label: str
    step: Callable[[], object]
    sequences: int
    precision: str
    times: list[float] = field(default_factory=list)
    peak_bytes: int = 0


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise BenchError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


def time_sides(sides: list[Side], device: torch.device, rounds: int, steps: int, warmup: int) -> None:
    """Warm every side up, then `rounds` rounds of `steps` steps per side, alternating the order."""
    for side in sides:
        for _ in range(warmup):
            side.step()
    _sync(device)
    for round_index in range(rounds):
        order = sides if round_index % 2 == 0 else list(reversed(sides))
        for side in order:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                side.step()
            _sync(device)
            side.times.append((time.perf_counter() - start) / steps)
            if device.type == "cuda":
                side.peak_bytes = max(side.peak_bytes, torch.cuda.max_memory_allocated(device))


def _summary(side: Side, flops_per_step: float | None, peak: float | None) -> dict:
    seconds = statistics.median(side.times)
    out = {"implementation": side.label, "precision": side.precision, "seconds_per_step": seconds,
           "sequences_per_s": side.sequences / seconds,
           "round_seconds": [round(t, 6) for t in side.times]}
    if side.peak_bytes:
        out["peak_memory_mib"] = side.peak_bytes / 2**20
    if flops_per_step:
        out["tflops"] = flops_per_step / seconds / 1e12
        if peak:
            out["mfu"] = flops_per_step / seconds / peak
    return out


@dataclass(frozen=True)
class Work:
    """Multiply-accumulates of one forward: all layers counted as for Table 11 plus the two attention
    products (q k^T and attention x v: 2 B H L^2 head_dim, which Table 11's convention leaves out), and
    of those the linear layers' and the attention products' own."""

    total: int
    linear: int
    attention: int


def _forward_work(model: torch.nn.Module, *inputs: torch.Tensor) -> Work:
    from stars.analysis.flops import count_macs, module_macs
    from stars.models.blocks import Attention

    attention, linear = [], []

    def attention_hook(module, module_inputs, output):
        batch, length, dim = module_inputs[0].shape
        attention.append(2 * batch * length * length * dim)

    def linear_hook(module, module_inputs, output):
        linear.append(module_macs(module, module_inputs, output))

    handles = [m.register_forward_hook(attention_hook) for m in model.modules() if isinstance(m, Attention)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            layers = count_macs(model, *inputs)[1]
    finally:
        for handle in handles:
            handle.remove()
    return Work(total=layers + sum(attention), linear=sum(linear), attention=sum(attention))


SDPA_BACKENDS = ("auto", "cudnn", "flash", "efficient", "math")


def _attention_backend(name: str):
    """Restrict our side's scaled_dot_product_attention to one kernel family (`auto`: PyTorch's choice)."""
    if name not in SDPA_BACKENDS:
        raise BenchError(f"--sdpa must be one of {', '.join(SDPA_BACKENDS)}, got {name!r}")
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]
    return sdpa_kernel(backend)


def run_bench(*args, sdpa: str = "auto", **kwargs) -> dict:
    """Time `workloads` for ours and the baseline; -> a JSON-ready dict (see the module docstring).

    Arguments as `_run_bench`; `sdpa` restricts our attention to one kernel family (the baselines use
    explicit attention, which it does not touch). A process group started for the official NNCLR is
    closed again."""
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    try:
        with _attention_backend(sdpa):
            results = _run_bench(*args, **kwargs)
        results["sdpa"] = sdpa
        return results
    except RuntimeError as error:
        if sdpa != "auto" and re.search(r"available kernel|viable backend", str(error)):
            raise BenchError(f"--sdpa {sdpa}: no {sdpa} attention kernel runs these inputs here "
                             f"({str(error).splitlines()[0]})") from None
        raise
    finally:
        if not had_group and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run_bench(data: str | None = None, preset: str = "paper", batch_size: int = 32, steps: int = 3,
              device: str | None = None, against_official: str | None = None, workloads=WORKLOADS,
              rounds: int = 3, warmup: int = 1, precision: str = "auto", compile: bool | str = False,
              profile: bool = False) -> dict:
    from stars.data.augment import AugmentConfig
    from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, ReferenceFeeder
    from stars.data.npz import load_split
    from stars.methods.param_groups import pretrain_param_groups
    from stars.models.blocks import explicit_attention
    from stars.models.mamp import MaskedMotionModel
    from stars.train.engine import CompileStats, build_optimizer
    from stars.train.pretrain import pretrain_preset
    from stars.train.tune import build_model, param_groups, tune_preset

    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown or not workloads:
        raise BenchError(f"unknown workload(s) {unknown or 'none given'}; choose from {list(WORKLOADS)}")
    if isinstance(compile, bool):
        compile = "blocks" if compile else "off"
    if compile not in COMPILE_MODES:
        raise BenchError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {compile!r}")
    if steps < 1 or rounds < 1 or batch_size < 2 or warmup < 0:
        raise BenchError(f"need --steps >= 1, --rounds >= 1, --batch-size >= 2, warmup >= 0; got steps={steps}, "
                         f"rounds={rounds}, batch_size={batch_size}, warmup={warmup}")
    dev = dist.pick_device(device or "auto")
    ours_precision = _resolve_precision(precision, dev)
    official = None
    if against_official:
        from stars.official import load_official

        official = load_official(against_official)
    pre = pretrain_preset("mamp", preset)
    tune = tune_preset("stars", preset)
    if data is None:
        from stars.data.synthetic import prepare_synthetic

        folder = Path(tempfile.mkdtemp(prefix="stars-bench-"))
        prepare_synthetic(folder, seed=0, num_subjects=10)
        data = str(folder / "SYN_XSub.npz")
    split = load_split(data, "train")
    if len(split) < batch_size:
        raise BenchError(f"{data}: {len(split)} training sequences, fewer than --batch-size {batch_size}")
    enc_cfg = pre.encoder
    if split.layout.num_joints != enc_cfg.num_joints:
        raise BenchError(f"{data}: {split.layout.num_joints} joints, the {preset} preset has {enc_cfg.num_joints}")
    peak = device_peak_flops(dev)
    baseline = f"official {official.kind} code at {official.root}" if official else "our reference path"
    results: dict = {
        "device": device_description(dev), "preset": preset, "batch_size": batch_size, "dataset": str(data),
        "baseline": baseline, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "steps_per_round": steps, "rounds": rounds, "compile": compile, "bf16_peak_tflops": peak / 1e12 if peak else None,
        "workloads": {},
    }
    crop = CropConfig(train_interval=(0.5, 1.0), min_length=64 if enc_cfg.num_frames >= 64 else 1,
                      num_frames=enc_cfg.num_frames)
    train = DeviceSplit.from_split(split, dev)
    loader = BatchLoader(train, batch_size, train=True, crop=crop, augment=AugmentConfig(random_rot=0.3),
                         layout=split.layout, seed=0)
    iterator = iter(loader)

    def next_batch():
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(loader)
            return next(iterator)

    batch = next_batch()
    x = batch["x"]
    ids = torch.arange(batch_size, device=dev)
    sequences = batch_size

    count_work = dev.type == "cuda" or profile

    def record(name: str, sides: list[Side], work: Work | None = None, passes: int = 6) -> None:
        """passes: FLOPs per forward MAC (6: forward and backward of a training step, 2: a forward)."""
        compiled_from = CompileStats.now() if compile != "off" else None
        time_sides(sides, dev, rounds, steps, warmup)
        flops = passes * work.total if work is not None and dev.type == "cuda" else None
        ours, other = (_summary(s, flops, peak) for s in sides)
        if profile:
            table, breakdown = profile_step(sides[0].step, dev, work, passes)
            results.setdefault("profiles", {})[name] = table
            if breakdown is not None:
                step_seconds = ours["seconds_per_step"]
                results.setdefault("breakdowns", {})[name] = {
                    **breakdown.to_dict(peak), "step_seconds": step_seconds,
                    "summary": breakdown.summary(peak, step_seconds)}
        results["workloads"][name] = {"ours": ours, "baseline": other,
                                      "speedup": other["seconds_per_step"] / ours["seconds_per_step"]}
        if compiled_from is not None:  # a "compiled" figure must come from compiled code
            # no frame may have fallen back to eager, and the process must have compiled something (not so
            # with dynamo switched off); a step may add no graph when it reuses variants compiled earlier
            now = CompileStats.now()
            compiled = now.since(compiled_from)
            if compiled.fallbacks or now.graphs == 0:
                raise BenchError(f"--compile {compile}: our {name} step did not run compiled ({compiled.summary()}; "
                                 "TORCH_LOGS=recompiles,graph_breaks shows why)")
            results["workloads"][name]["compile"] = dataclasses.asdict(compiled)

    if "feeder" in workloads:
        reference = ReferenceFeeder(split, train=True, crop=crop, random_rot=0.3, seed=0)

        def reference_batch():
            items = [reference[i] for i in range(batch_size)]
            return torch.stack([torch.from_numpy(item[0]) for item in items]).to(dev)

        record("feeder", [Side("ours (batched, on the device)", next_batch, sequences, "fp32"),
                          Side("reference (per sample)", reference_batch, sequences, "fp32")])

    mamp_model = MaskedMotionModel(enc_cfg, pre.mamp).to(dev)
    if "pretrain" in workloads:
        optimizer = build_optimizer(pretrain_param_groups(mamp_model), pre.optim)
        compiled = _maybe_compile(mamp_model, compile)

        def ours_pretrain():
            with _autocast(dev, ours_precision):
                loss, _, _ = compiled(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        if official is not None:
            from stars.official import official_mamp_model, official_mamp_step

            theirs = official_mamp_model(official, enc_cfg, pre.mamp).to(dev)
            their_step = official_mamp_step(theirs, pre.mamp)
            other = Side(f"official {official.kind}", lambda: their_step(x), sequences, "fp32")
        else:
            ref_model = MaskedMotionModel(enc_cfg, pre.mamp).to(dev)
            ref_optimizer = build_optimizer(pretrain_param_groups(ref_model), pre.optim)

            def reference_pretrain():
                with explicit_attention():
                    loss, _, _ = ref_model(x)
                ref_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                ref_optimizer.step()

            other = Side("reference (fp32, explicit attention)", reference_pretrain, sequences, "fp32")
        work = _forward_work(mamp_model, x) if count_work else None
        record("pretrain", [Side("ours", ours_pretrain, sequences, ours_precision), other], work)

    if "tune" in workloads or "eval" in workloads:
        from stars.config import to_dict
        from stars.models.checkpoint import build_checkpoint, save_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "mamp.pt"
            save_checkpoint(ckpt, build_checkpoint("mamp", {k: v.cpu() for k, v in mamp_model.state_dict().items()},
                                                   to_dict(pre)))
            nnclr, heads, encoder = build_model(tune, str(ckpt))
            ref_nnclr, ref_heads, ref_encoder = build_model(tune, str(ckpt))
        nnclr, ref_nnclr = nnclr.to(dev), ref_nnclr.to(dev)
        tune_work = _forward_work(_EncoderAndHead(encoder, nnclr.head).to(dev), x) if count_work else None
        eval_work = _forward_work(encoder, x) if count_work else None

    if "tune" in workloads:
        optimizer = build_optimizer(param_groups(tune, nnclr, heads, encoder), tune.optim)
        tuned = [p for g in optimizer.param_groups for p in g["params"]]
        compiled = _maybe_compile(nnclr, compile)

        def ours_tune():
            with _autocast(dev, ours_precision):
                loss, _ = compiled(x, x, ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned, tune.optim.clip_grad or 3.0)
            optimizer.step()

        if official is not None and official.stars_nnclr is not None:
            from stars.official import official_stars_model, official_stars_step

            theirs = official_stars_model(official, enc_cfg, queue_size=tune.queue_size,
                                          hidden=tune.projector_hidden).to(dev)
            their_step = official_stars_step(theirs, enc_cfg.depth, dev, layer_decay=tune.alpha)
            other = Side("official STARS", lambda: their_step(x, ids), sequences, "fp32")
        else:
            ref_nnclr.encode_identical_views_once = False
            ref_optimizer = build_optimizer(param_groups(tune, ref_nnclr, ref_heads, ref_encoder), tune.optim)
            ref_tuned = [p for g in ref_optimizer.param_groups for p in g["params"]]

            def reference_tune():
                with explicit_attention():
                    loss, _ = ref_nnclr(x, x, ids)
                ref_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ref_tuned, tune.optim.clip_grad or 3.0)
                ref_optimizer.step()

            other = Side("reference (fp32, explicit attention, views encoded twice)", reference_tune, sequences,
                         "fp32")
        record("tune", [Side("ours", ours_tune, sequences, ours_precision), other], tune_work)

    if "eval" in workloads:
        encoder.eval()
        compiled = _maybe_compile(encoder, compile)

        @torch.no_grad()
        def ours_eval():
            with _autocast(dev, ours_precision):
                return compiled(x)

        if official is not None and official.stars_encoder is not None:
            theirs = official.stars_encoder.Transformer(
                dim_in=3, num_class=60, dim_feat=enc_cfg.embed_dim, depth=enc_cfg.depth, num_heads=enc_cfg.num_heads,
                mlp_ratio=enc_cfg.mlp_ratio, num_frames=enc_cfg.num_frames, num_joints=enc_cfg.num_joints,
                patch_size=1, t_patch_size=enc_cfg.t_patch_size, qkv_bias=True, qk_scale=None,
            ).to(dev).eval()

            @torch.no_grad()
            def other_eval():
                return theirs(x, return_feature=True)

            other = Side("official STARS encoder", other_eval, sequences, "fp32")
        else:
            ref_encoder.eval()

            @torch.no_grad()
            def other_eval():
                with explicit_attention():
                    return ref_encoder(x)

            other = Side("reference (fp32, explicit attention)", other_eval, sequences, "fp32")
        record("eval", [Side("ours", ours_eval, sequences, ours_precision), other], eval_work, passes=2)
    if dev.type == "cpu":
        import resource

        results["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def profile_step(step: Callable[[], object], device: torch.device, work: Work | None = None, passes: int = 6,
                 rows: int = 15) -> tuple[str, Breakdown | None]:
    """torch.profiler of one step of ours -> (table of the operators taking the most time, device time on
    CUDA; its time by kind of work with the GEMM / attention rates when `work` is known, else None)."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    key = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
    if work is None:
        return table, None
    breakdown = Breakdown(time_by_category(prof.events(), device=on_cuda), gemm_flops=passes * work.linear,
                          attention_flops=passes * work.attention, total_flops=passes * work.total,
                          on_device=on_cuda)
    return table, breakdown


class _EncoderAndHead(torch.nn.Module):
    """encoder + projector/predictor on one view: the nominal forward work of a tuning step per view."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x):
        return self.head(self.encoder(x))


COMPILE_MODES = ("off", "blocks", "model")


def _maybe_compile(module: torch.nn.Module, mode: str):
    """`blocks`: the training loop's regional compilation, every transformer block in place; `model`: the
    whole module's forward in one compiled region (loss included where the module computes it); `off`:
    eager."""
    if mode == "blocks":
        from stars.train.engine import compile_regions

        compile_regions(module)
    elif mode == "model":
        module.compile()
    return module


def format_results(results: dict) -> str:
    """A plain-text table of the measurements."""
    from stars.train.engine import CompileStats

    options = f" · attention kernel: {results['sdpa']}" if results.get("sdpa", "auto") != "auto" else ""
    if results.get("compile", "off") != "off":
        options += f" · compiled: {results['compile']}"
    lines = [f"device {results['device']} · preset {results['preset']} · batch {results['batch_size']} · "
             f"baseline: {results['baseline']}{options}"]
    header = f"{'workload':<9} {'ours seq/s':>11} {'base seq/s':>11} {'speed-up':>9} {'ours MiB':>9} " \
             f"{'TFLOP/s':>8} {'MFU':>6}"
    lines.append(header)
    for name, row in results["workloads"].items():
        ours, base = row["ours"], row["baseline"]
        mem = f"{ours['peak_memory_mib']:.0f}" if "peak_memory_mib" in ours else "—"
        tflops = f"{ours['tflops']:.1f}" if "tflops" in ours else "—"
        mfu = f"{100 * ours['mfu']:.1f}%" if "mfu" in ours else "—"
        lines.append(f"{name:<9} {ours['sequences_per_s']:>11.1f} {base['sequences_per_s']:>11.1f} "
                     f"{row['speedup']:>8.2f}x {mem:>9} {tflops:>8} {mfu:>6}")
    compiled = [f"{name} {CompileStats(**row['compile']).summary(fallbacks=False)}"
                for name, row in results["workloads"].items() if "compile" in row]
    if compiled:
        lines.append(f"compiled ({results['compile']}): " + "; ".join(compiled) + "; no eager fallback")
    return "\n".join(lines)


def main(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    results = run_bench(args.data, args.preset, args.batch_size, args.steps, args.device,
                        against_official=args.against_official, workloads=workloads, rounds=args.rounds,
                        precision=args.precision, compile=args.compile, profile=args.profile, sdpa=args.sdpa)
    print(format_results(results))
    for name, table in results.get("profiles", {}).items():
        print(f"\n--- profile of our {name} step ---\n{table}")
        if name in results.get("breakdowns", {}):
            print(results["breakdowns"][name]["summary"])
    if args.out:
        write_json(args.out, results)
    else:
        print(json.dumps(results, indent=2))
    return 0

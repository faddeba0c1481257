"""The training loop shared by every method: pretraining, tuning and supervised evaluation.

It knows nothing about a method beyond `loss, metrics = step(model, batch)`. It owns devices and
processes (one CPU, one GPU, or torchrun + DistributedDataParallel with the same global batch),
bf16 autocast, optional torch.compile, the per-iteration learning-rate schedule, gradient
clipping, progress, per-epoch metrics CSV, and atomic checkpoints with exact resume.

Exact resume: every random draw of an epoch (data order, crops, augmentation, masking, dropout) is
seeded from (seed, epoch, rank) at the start of the epoch, and everything else that evolves
(weights, optimizer moments, queues and other buffers) is in the checkpoint, so a run resumed at
an epoch boundary ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from stars import dist
from stars.config import to_dict
from stars.io import MetricsCSV, atomic_torch_save
from stars.precision import autocast_dtype, set_full_fp32

CHECKPOINT_NAME = "checkpoint-last.pt"
FINAL_NAME = "final.pt"
# config fields (by name, at any depth) that may change on resume without changing what the run learns
# (`stop_epoch` only says where a run ends, not what any of its epochs learns: a run stopped early can be
# resumed with a later stop epoch, or none, and continues the same schedule)
RESUME_VOLATILE = ("progress", "device", "checkpoint_every", "compile", "stop_epoch")


class ResumeError(ValueError):
    """A checkpoint that cannot continue this run: another kind, another config or other data."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def config_changes(before: Any, after: Any, ignore: tuple[str, ...] = RESUME_VOLATILE) -> dict[str, list]:
    """Dotted key -> [before, after] for every field of two config (or data) dicts that both have and that
    differs (a field only one side has comes from another version of the code and is not compared)."""
    old, new = _flatten(before or {}), _flatten(after or {})
    return {
        key: [old[key], new[key]]
        for key in sorted(set(old) & set(new))
        if key.rsplit(".", 1)[-1] not in ignore and old[key] != new[key]
    }


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (per iteration)."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3  # peak learning rate (absolute, for the global batch)
    min_lr: float = 5e-4  # end of the half-cosine
    warmup_epochs: float = 20.0  # linear warm-up from 0
    schedule: Literal["cosine", "constant"] = "cosine"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05  # used by groups that do not set their own
    momentum: float = 0.9  # SGD only
    clip_grad: float = 0.0  # max L2 norm of the gradients; 0 = no clipping
    clip_mode: Literal["global", "per-parameter"] = "global"  # per-parameter: each tensor clipped alone (official STARS)

    def __post_init__(self) -> None:
        for name in ("lr", "min_lr", "warmup_epochs", "weight_decay", "momentum", "clip_grad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"optim.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """How a run executes (not what it learns)."""

    epochs: int = 400
    batch_size: int = 128  # global batch, split evenly over processes
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU (stars.precision)
    compile: bool = False  # torch.compile every transformer block in place (regional compilation)
    checkpoint_every: int = 20  # epochs between checkpoints (and always at the end)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1")


def learning_rate(cfg: OptimConfig, epoch: float, total_epochs: int) -> float:
    """Linear warm-up, then a half-cosine from `lr` to `min_lr` (or constant). `epoch` is fractional."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total_epochs - cfg.warmup_epochs, 1e-12)
    progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Each group may carry `lr_scale` (multiplies the scheduled lr) and its own `weight_decay`."""
    groups = [dict(g) for g in groups if any(p.requires_grad for p in g["params"])]
    if not groups:
        raise ValueError("no trainable parameters")
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group.setdefault("weight_decay", cfg.weight_decay)
        group["lr"] = cfg.lr * group["lr_scale"]
    if cfg.optimizer == "adamw":
        try:  # one fused kernel for every parameter (CUDA, and the CPU in recent PyTorch): same update rule
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed python, numpy and torch for one epoch of one process."""
    value = (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**31 - 1)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


# Compiled variants one block may need in a run: frozen or tuned weights, with or without gradients
# (training steps, feature extraction), train or eval mode, static then dynamic shapes (encoder and
# decoder lengths, batches whose absent persons are shared). torch's default of 8 can be reached by a
# tuning run, after which the block silently runs eager; `CompileStats.fallbacks` counts such frames.
RECOMPILE_LIMIT = 32


@dataclass(frozen=True)
class CompileStats:
    """What torch.compile did in this process (cumulative, from dynamo's counters); `since` gives the
    part of one run. `fallbacks` counts frames dynamo gave up on (recompile limit, an error): they ran
    eager, so a run or benchmark that says "compiled" was partly not."""

    graphs: int = 0
    graph_breaks: int = 0
    fallbacks: int = 0

    @classmethod
    def now(cls) -> CompileStats:
        from torch._dynamo.utils import counters

        frames = counters["frames"]
        return cls(graphs=int(counters["stats"]["unique_graphs"]),
                   graph_breaks=int(sum(counters["graph_break"].values())),
                   fallbacks=int(frames["total"] - frames["ok"]))

    def since(self, earlier: CompileStats) -> CompileStats:
        return CompileStats(self.graphs - earlier.graphs, self.graph_breaks - earlier.graph_breaks,
                            self.fallbacks - earlier.fallbacks)

    def summary(self, fallbacks: bool = True) -> str:
        """'3 graphs, 0 graph breaks, 0 eager fallbacks' (without the fallbacks when `fallbacks` is False)."""
        counts = [(self.graphs, "graph"), (self.graph_breaks, "graph break")]
        counts += [(self.fallbacks, "eager fallback")] if fallbacks else []
        return ", ".join(f"{n} {word}{'s' * (n != 1)}" for n, word in counts)


def compile_regions(model: nn.Module) -> list[str]:
    """torch.compile every transformer `Block` of `model` in place; -> the compiled module names.

    The compiled regions are the blocks (nearly all of the arithmetic): pure tensor code with no
    collective, no data-dependent branch and no host synchronisation, so they compile without graph
    breaks, and the compiled code of one block serves them all (one compilation, not one per block).
    Everything that must stay eager stays outside: the all-gathers of the contrastive losses, the queue
    look-ups with their checks, the losses. Compiling in place keeps parameter names (and checkpoint
    keys) unchanged. Call it before wrapping the model in DistributedDataParallel. Raises dynamo's
    recompile limit to at least RECOMPILE_LIMIT (process-wide) so that no variant falls back to eager.
    """
    import torch._dynamo

    from stars.models.blocks import Block

    config = torch._dynamo.config
    if config.recompile_limit < RECOMPILE_LIMIT:
        config.recompile_limit = RECOMPILE_LIMIT
    names = []
    for name, module in model.named_modules():
        if isinstance(module, Block):
            module.compile()
            names.append(name)
    return names


def wrap_model(model: nn.Module, device: torch.device, distributed: bool, *, compile: bool = False,
               sync_batchnorm: bool = True) -> nn.Module:
    """The module the training loop calls: compiled regions first, then (in a process group, as under
    torchrun) SyncBatchNorm on CUDA and DistributedDataParallel around the whole model, so the
    collectives of DDP and of the losses stay outside the compiled code."""
    if compile:
        compile_regions(model)
    if not distributed:
        return model
    module = model
    if sync_batchnorm and device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    elif sync_batchnorm and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        warnings.warn(
            "SyncBatchNorm needs CUDA: BatchNorm statistics are per process in this CPU run",
            stacklevel=3,
        )
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
    )


def unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


StepFn = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, "torch.Tensor | float"]]]


class Trainer:
    """Runs `epochs` of `step(model, batch)` over `loader` with checkpoints in `run_dir`.

    model: the module holding every trainable parameter and every evolving buffer.
    groups: optimiser parameter groups (see `build_optimizer`).
    loader: iterable of batch dicts with `set_epoch(e)` and `__len__`, already sharded per process.
    step: returns (loss, metrics) for one batch; called inside autocast.
    after_step(model, global_step): optional, e.g. a teacher's momentum update.
    end_of_epoch(model, epoch) -> metrics: optional, e.g. a KNN monitor.
    config: the resolved run config, stored in every checkpoint.
    data: what the run learns from (dataset and initial weights with their content fingerprints),
        stored in every checkpoint; `resume` refuses a checkpoint whose config or data differ.
    stop_epoch: end the run (final checkpoint) after this many epochs while the learning-rate schedule still
        spans `run.epochs`; 0, or any value >= run.epochs, trains the whole schedule.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: list[dict],
        loader,
        step: StepFn,
        optim: OptimConfig,
        run: RunConfig,
        run_dir: str | Path,
        *,
        kind: str,
        config: Any = None,
        info: dist.DistInfo | None = None,
        after_step: Callable[[nn.Module, int], None] | None = None,
        end_of_epoch: Callable[[nn.Module, int], dict[str, float]] | None = None,
        sync_batchnorm: bool = True,
        checkpoint_extra: Callable[[], dict] | None = None,
        data: dict[str, Any] | None = None,
        stop_epoch: int = 0,
    ):
        self.info = info or dist.DistInfo(0, 0, 1, dist.pick_device(run.device))
        self.device = self.info.device
        self.run_dir = Path(run_dir)
        self.optim_cfg, self.run_cfg = optim, run
        self.kind, self.config = kind, config
        self.step_fn, self.after_step, self.end_of_epoch = step, after_step, end_of_epoch
        self.checkpoint_extra = checkpoint_extra
        self.data = dict(data or {})
        self.resume_changes: dict[str, list] = {}
        if stop_epoch < 0:
            raise ValueError(f"stop_epoch must be >= 0 (0 = the whole schedule), got {stop_epoch}")
        self.end_epoch = min(stop_epoch, run.epochs) if stop_epoch else run.epochs  # the epoch of final.pt
        self.loader = loader
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(groups, optim)
        self.module = wrap_model(self.model, self.device, dist.is_distributed(), compile=run.compile,
                                 sync_batchnorm=sync_batchnorm)
        self.autocast_dtype = autocast_dtype(run.precision, self.device)
        if run.precision == "fp32":
            set_full_fp32(self.device)  # no TF32 either: fp32 end to end
        self.metrics = MetricsCSV(self.run_dir / "metrics.csv")
        self.start_epoch = 0
        self.last_saved_epoch: int | None = None
        self.should_stop = False  # set by end_of_epoch to end training early (e.g. on convergence)
        self.epoch_row: dict[str, float] = {}

    # --- checkpoints -------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        state = {
            "format": "stars",
            "kind": self.kind,
            "model": unwrap(self.module).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "config": self._config_dict(),
            "data": self.data,
            "world_size": self.info.world_size,
        }
        if self.checkpoint_extra is not None:
            state.update(self.checkpoint_extra())
        return state

    def save(self, epoch: int, final: bool = False) -> None:
        if not dist.is_main_process():
            return
        state = self.state(epoch)
        atomic_torch_save(state, self.run_dir / CHECKPOINT_NAME)
        self.last_saved_epoch = epoch
        if final:
            atomic_torch_save(
                {k: v for k, v in state.items() if k != "optimizer"}, self.run_dir / FINAL_NAME
            )

    def _config_dict(self) -> dict:
        if self.config is None:
            return {}
        return json.loads(json.dumps(to_dict(self.config) if not isinstance(self.config, dict) else self.config,
                                     default=str))

    def resume(self, path: str | Path | None = None, *, allow_changed: bool = False) -> int:
        """Load model, optimiser and epoch from `path` (default: the run's last checkpoint).

        Refuses (ResumeError naming every difference) a checkpoint of another kind, or one whose config
        (except RESUME_VOLATILE fields) or data differ from this run's, unless `allow_changed`; the
        differences are then kept in `resume_changes` for the run's records. Nothing is written here."""
        from stars.models.checkpoint import CheckpointError, load_checkpoint_file

        path = Path(path) if path is not None else self.run_dir / CHECKPOINT_NAME
        state = load_checkpoint_file(path)  # weights_only; clear errors naming the file; finite tensors
        if not isinstance(state, dict) or state.get("format") != "stars" or "optimizer" not in state:
            raise ResumeError(f"{path}: not a resumable stars checkpoint")
        if state.get("kind") != self.kind:
            raise ResumeError(f"{path}: checkpoint of a {state.get('kind')!r} run, this run is {self.kind!r}")
        changes = config_changes(state.get("config"), self._config_dict())
        changes.update({f"data.{k}": v for k, v in config_changes(state.get("data"), self.data, ()).items()})
        if changes and not allow_changed:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:6])
            more = f" (and {len(changes) - 6} more)" if len(changes) > 6 else ""
            raise ResumeError(
                f"{path}: the run differs from the checkpoint's: {shown}{more}; resume with the same data and "
                "config, or pass --allow-changed to continue anyway (both are recorded in run.json)"
            )
        if self.end_epoch < self.run_cfg.epochs and int(state["epoch"]) > self.end_epoch:
            raise ResumeError(
                f"{path}: the checkpoint is at epoch {state['epoch']}, past this run's last epoch {self.end_epoch} "
                f"(stop_epoch); resume with a stop_epoch of at least {state['epoch']}, or 0 for the whole schedule"
            )
        try:
            unwrap(self.module).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{path}: does not fit this run's model or optimiser: {str(err).splitlines()[0]}"
            ) from err
        self.start_epoch = self.last_saved_epoch = int(state["epoch"])
        self.resume_changes = changes
        return self.start_epoch

    # --- loop --------------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def fit(self, stop_after: int | None = None) -> list[dict[str, float]]:
        """Train from `start_epoch` to `end_epoch` (`run.epochs` unless a stop epoch ends the run earlier), or
        only up to epoch `stop_after`, as an interruption would. The lr schedule always spans `run.epochs`."""
        run, optim = self.run_cfg, self.optim_cfg
        end_epoch = self.end_epoch if stop_after is None else min(stop_after, self.end_epoch)
        steps_per_epoch = len(self.loader)
        if steps_per_epoch == 0:
            raise ValueError(
                f"the training split gives no full batch of {run.batch_size}; lower batch_size"
            )
        history = []
        compiled_from = CompileStats.now() if run.compile else None
        warned_fallbacks = 0
        if dist.is_main_process():
            self.metrics.truncate(self.start_epoch)  # rows of epochs after the checkpoint are redone
        for epoch in range(self.start_epoch, end_epoch):
            seed_epoch(run.seed, epoch, self.info.rank)
            self.loader.set_epoch(epoch)
            self.module.train()
            totals: dict[str, float] = {}
            count, seen, start = 0, 0, time.perf_counter()
            bar = tqdm(
                self.loader, total=steps_per_epoch, desc=f"{self.kind} {epoch + 1}/{run.epochs}",
                disable=not (run.progress and dist.is_main_process()), leave=False, dynamic_ncols=True,
                mininterval=2.0,
            )
            for it, batch in enumerate(bar):
                lr = learning_rate(optim, epoch + it / steps_per_epoch, run.epochs)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                with self._autocast():
                    loss, metrics = self.step_fn(self.module, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if optim.clip_grad > 0:
                    params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
                    if optim.clip_mode == "per-parameter":
                        for param in params:
                            torch.nn.utils.clip_grad_norm_(param, optim.clip_grad)
                    else:
                        torch.nn.utils.clip_grad_norm_(params, optim.clip_grad)
                self.optimizer.step()
                if self.after_step is not None:
                    self.after_step(unwrap(self.module), epoch * steps_per_epoch + it)
                seen += _batch_size(batch)
                count += 1
                # accumulated on the device: no host synchronisation per step
                for key, value in {"loss": loss, **metrics}.items():
                    value = value.detach().float() if torch.is_tensor(value) else float(value)
                    totals[key] = totals[key] + value if key in totals else value
                if bar.disable is False and it % 50 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            elapsed = time.perf_counter() - start
            if not math.isfinite(float(totals["loss"])):  # one check per epoch instead of a sync per step
                last = self.run_dir / CHECKPOINT_NAME
                where = (f"the last checkpoint ({last}, epoch {self.last_saved_epoch}) is from before it; "
                         "lower optim.lr or enable optim.clip_grad and rerun with --resume --allow-changed"
                         if self.last_saved_epoch is not None else
                         "no checkpoint was written; lower optim.lr or enable optim.clip_grad and start again with --overwrite")
                raise FloatingPointError(f"{self.kind}: the loss became non-finite in epoch {epoch}; {where}")
            row = {"epoch": epoch, **{k: float(v) / max(count, 1) for k, v in totals.items()}}
            row["lr"] = lr
            row["seq_per_s"] = seen * self.info.world_size / max(elapsed, 1e-9)
            row["epoch_time_s"] = elapsed
            if self.end_of_epoch is not None:
                self.epoch_row = row  # this epoch's training metrics, readable by the callback
                self.module.eval()
                row.update(self.end_of_epoch(unwrap(self.module), epoch))
            if compiled_from is not None:  # this run's compilation so far, monitor included
                compiled = CompileStats.now().since(compiled_from)
                row.update(compiled_graphs=compiled.graphs, graph_breaks=compiled.graph_breaks,
                           eager_fallbacks=compiled.fallbacks)
                if compiled.fallbacks > warned_fallbacks and dist.is_main_process():
                    warned_fallbacks = compiled.fallbacks
                    warnings.warn(f"{self.kind}: torch.compile gave up on {compiled.fallbacks} frame(s), which "
                                  "run eager (TORCH_LOGS=recompiles shows why)", stacklevel=2)
            if dist.is_main_process():
                self.metrics.append(row)
            history.append(row)
            last = epoch + 1 == self.end_epoch or self.should_stop
            if last or (epoch + 1) % run.checkpoint_every == 0:
                self.save(epoch + 1, final=last)
            dist.barrier()
            if self.should_stop:
                break
        if self.start_epoch >= self.end_epoch and dist.is_main_process() and not (self.run_dir / FINAL_NAME).exists():
            self.save(self.end_epoch, final=True)
        return history


def _batch_size(batch: dict) -> int:
    if "y" in batch:
        return int(batch["y"].shape[0])
    if "index" in batch:
        return int(batch["index"].shape[0])
    return 0

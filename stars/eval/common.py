"""What every evaluation protocol shares: loading an encoder to evaluate, pooled features of a split,
supervised training of a classifier with the shared `Trainer` (linear probe, finetune, semi, transfer),
and the result files of a protocol (metrics.json + config.yaml + run.json).

Model selection policy of the supervised protocols (`select`):
* "last" (default): the reported test accuracy is that of the model after the last epoch.
* "val": a class-stratified part of the TRAINING split (`val_fraction`) is held out; the model of the
  epoch with the best accuracy on it is evaluated on the test split once, at the end.
The test split never influences training or selection. `report_test_max=True` additionally evaluates
the test split after every epoch and reports the maximum as `test_max_over_epochs`: the official
MAMP/STARS habit (reference §6.1, §6.5, §8.2 item 5), an optimistic number kept in its own column.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stars import dist
from stars.config import to_dict
from stars.data.augment import AugmentConfig
from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, eval_loader
from stars.data.npz import SkeletonSplit, read_header
from stars.data.splits import validation_holdout
from stars.io import content_fingerprint, write_json, write_run_info
from stars.models.checkpoint import (
    build_checkpoint,
    check_checkpoint_data,
    detect_format,
    encoder_config_from_checkpoint,
    load_checkpoint_file,
    load_encoder,
    save_checkpoint,
)
from stars.models.encoder import SkeletonEncoder, encoder_preset
from stars.precision import autocast
from stars.rundir import run_folder
from stars.train.data_fit import adapt_batch_size
from stars.train.data_fit import report as report_adaptations
from stars.train.engine import CHECKPOINT_NAME, OptimConfig, RunConfig, Trainer, unwrap

ArrayLike = np.ndarray | torch.Tensor
SELECTED_NAME = "selected.pt"  # select="val": the weights of the selected epoch
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or "auto" -> CUDA when present, else CPU; otherwise the named device (checked)."""
    if isinstance(device, torch.device):
        return device
    return dist.pick_device(device or "auto")


# --------------------------------------------------------------------------------------------
# encoders and features


def load_encoder_for_eval(
    ckpt: str | Path | None,
    preset: str | None,
    device: str | torch.device | None,
    drop_path: float = 0.0,
    *,
    seed: int = 0,
    data: str | Path | None = None,
) -> tuple[SkeletonEncoder, dict[str, Any]]:
    """The encoder to evaluate, on `device`, and a description of where it came from.

    data: the dataset file it will see. Its layout sets the joint count of a random encoder and is
    checked against the layout a checkpoint records (`check_checkpoint_data`).
    ckpt None or "random": a randomly initialised encoder of `preset` (default "paper") with the data's
    joint count, weights drawn from a torch generator seeded with `seed` (the global RNG is left
    untouched). Our checkpoints carry
    `config["encoder"]` (EncoderConfig fields), official MAMP / STARS ones are inferred from their tensor
    shapes (8 attention heads assumed). Every encoder weight must be present (strict loading); decoder,
    heads and queues are dropped. drop_path: stochastic-depth rate for finetuning (0 for frozen uses).
    """
    device = resolve_device(device)
    header = read_header(data) if data is not None else None
    if is_random_init(ckpt):
        joints = {"num_joints": header["layout"].num_joints} if header else {}
        cfg = encoder_preset(preset or "paper", drop_path_rate=drop_path, **joints)
        rng_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            encoder = SkeletonEncoder(cfg)
        finally:
            torch.random.set_rng_state(rng_state)
        info = {"source": "random init", "preset": preset or "paper", "seed": seed, "encoder": cfg.to_dict()}
        if header:
            info["layout"] = header["layout"].name
        return encoder.to(device), info
    obj = load_checkpoint_file(ckpt)
    fmt = detect_format(obj, str(ckpt))
    if header:
        check_checkpoint_data(obj, header["layout"], header["num_persons"], str(ckpt), str(data))
    cfg = dataclasses.replace(encoder_config_from_checkpoint(obj), drop_path_rate=drop_path)
    encoder = SkeletonEncoder(cfg)
    report = load_encoder(obj, encoder, strict=True)
    info = {
        "source": str(ckpt),
        "format": fmt,
        "kind": obj.get("kind", ""),
        "epoch": obj.get("epoch", ""),
        "dropped_keys": len(report.dropped),
        "encoder": cfg.to_dict(),
    }
    return encoder.to(device), info


RANDOM_INIT = "random"  # `--ckpt random`: a randomly initialised encoder (a baseline)


def is_random_init(ckpt: str | Path | None) -> bool:
    """True for no checkpoint: None, "" or "random"."""
    return ckpt is None or str(ckpt) in ("", RANDOM_INIT)


def eval_crop(encoder: SkeletonEncoder, ratio: float = 0.95) -> CropConfig:
    """Centre crop `ratio` of the valid frames, resized to the encoder's frame count."""
    return CropConfig(eval_ratio=ratio, num_frames=encoder.cfg.num_frames)


def check_layout(encoder: SkeletonEncoder, split: SkeletonSplit | DeviceSplit, where: str = "") -> None:
    """ValueError unless the split has the encoder's joint count."""
    joints = split.layout.num_joints
    if joints != encoder.cfg.num_joints:
        name = where or getattr(split, "path", "") or split.name or "dataset"
        raise ValueError(
            f"{name}: layout {split.layout.name!r} has {joints} joints but the encoder expects "
            f"{encoder.cfg.num_joints}; evaluate on a dataset prepared in the encoder's layout"
        )


def to_device_split(split: SkeletonSplit | DeviceSplit, device: torch.device) -> DeviceSplit:
    if isinstance(split, DeviceSplit):
        return split
    return DeviceSplit.from_split(split, device)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    split: SkeletonSplit | DeviceSplit,
    crop: float | CropConfig = 0.95,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    *,
    feature_fn: FeatureFn | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of every sample of a split, in file order.

    Eval mode, no gradients, `precision` (`stars.precision`: auto = bf16 autocast on CUDA), centre crop
    (`crop` ratio, resized to the encoder's frame count). feature_fn maps a batch x: (B, C, T, V, M) to (B, D) (default: `encoder(x)`, the mean
    over persons and tokens after the final norm). -> (features (N, D) float32, labels (N,) int64).
    Only `encoder` is switched to eval mode (and restored afterwards); other modules that feature_fn
    uses must already be in the wanted mode.
    """
    device = resolve_device(device)
    base = unwrap(encoder)
    if isinstance(base, SkeletonEncoder):
        check_layout(base, split)
        crop_cfg = crop if isinstance(crop, CropConfig) else eval_crop(base, crop)
    elif isinstance(crop, CropConfig):
        crop_cfg = crop
    else:
        raise ValueError("extract_features: pass a CropConfig when the model is not a SkeletonEncoder")
    data = to_device_split(split, device)
    loader = eval_loader(data, batch_size, crop_cfg)
    forward = feature_fn or encoder
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    try:
        for batch in tqdm(loader, desc="features", leave=False, disable=not progress, mininterval=2.0):
            with autocast(device, precision):
                out = forward(batch["x"].to(device))
            features.append(out.float().cpu())
            labels.append(batch["y"].cpu())
    finally:
        encoder.train(was_training)
    features = torch.cat(features).numpy()
    if not np.isfinite(features).all():
        bad = int(np.flatnonzero(~np.isfinite(features).all(1))[0])
        raise FloatingPointError(
            f"the encoder gives NaN or inf features (first at sample {bad}); no accuracy is computed from them"
        )
    return features, torch.cat(labels).numpy().astype(np.int64)


# --------------------------------------------------------------------------------------------
# result files


@dataclass
class ProtocolResult:
    """The result of one protocol run: its name, metrics (top-1 in percent) and output folder."""

    protocol: str
    metrics: dict[str, Any]
    out: Path

    @classmethod
    def load(cls, out: str | Path) -> ProtocolResult:
        """Read `out/metrics.json` written by `write_result`."""
        import json

        path = Path(out) / "metrics.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot read protocol metrics ({err})") from err
        if "protocol" not in data or "metrics" not in data:
            raise ValueError(f"{path}: not a protocol result (needs 'protocol' and 'metrics')")
        return cls(data["protocol"], data["metrics"], Path(out))


def write_result(
    out: str | Path,
    name: str,
    metrics: Mapping[str, Any],
    cfg: Any,
    dataset_path: str | Path | None,
    seed: int,
    device: str | torch.device | None,
    **extra: Any,
) -> ProtocolResult:
    """metrics.json ({"protocol", "metrics"}), config.yaml (resolved config) and run.json (dataset, seed,
    commit, device, versions, command and `extra`) in `out`."""
    out = Path(out)
    device = resolve_device(device)
    write_run_info(out, cfg, device, protocol=name, dataset=str(dataset_path or ""), seed=seed, **extra)
    write_json(out / "metrics.json", {"protocol": name, "metrics": dict(metrics)})
    return ProtocolResult(name, dict(metrics), out)


# --------------------------------------------------------------------------------------------
# supervised classifiers (linear probe, finetune, semi-supervised, transfer)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, data: DeviceSplit, crop: CropConfig, batch_size: int = 256, *, progress: bool = False,
    precision: str = "auto",
) -> tuple[float, np.ndarray]:
    """Top-1 accuracy (%) and predictions (N,) of `model` on every sample of `data` (centre crop), under
    `precision` (`stars.precision`); the argmax is taken on fp32 logits."""
    module = unwrap(model)
    was_training = module.training
    module.eval()
    predictions = []
    try:
        for batch in tqdm(eval_loader(data, batch_size, crop), desc="evaluate", leave=False, disable=not progress):
            with autocast(data.device, precision):
                logits = module(batch["x"])
            predictions.append(logits.float().argmax(dim=1).cpu())
    finally:
        module.train(was_training)
    predicted = torch.cat(predictions).numpy().astype(np.int64)
    truth = data.y.cpu().numpy()
    return 100.0 * float((predicted == truth).mean()), predicted


def classification_step(label_smoothing: float = 0.0) -> Callable:
    """Trainer step: cross-entropy (with label smoothing) of model(x) against y; logs train top-1 (%)."""

    def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch["x"])
        loss = F.cross_entropy(logits.float(), batch["y"], label_smoothing=label_smoothing)
        accuracy = (logits.argmax(dim=1) == batch["y"]).float().mean()
        return loss, {"train_top1": 100.0 * accuracy}

    return step


class EpochSelection:
    """Per-epoch bookkeeping of the selection policy; its state travels in every checkpoint.

    best_val: best validation top-1 so far, its epoch and a CPU copy of the model state at that epoch.
    test_max: maximum test top-1 over epochs (only when the test split is evaluated every epoch).
    """

    def __init__(self) -> None:
        self.best_val = -1.0
        self.best_val_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.test_max = -1.0
        self.test_max_epoch = -1

    def update_val(self, accuracy: float, epoch: int, model: nn.Module) -> None:
        if accuracy > self.best_val:
            self.best_val, self.best_val_epoch = accuracy, epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}

    def update_test(self, accuracy: float, epoch: int) -> None:
        if accuracy > self.test_max:
            self.test_max, self.test_max_epoch = accuracy, epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_val": self.best_val,
            "best_val_epoch": self.best_val_epoch,
            "best_state": self.best_state if self.best_state is not None else {},
            "test_max": self.test_max,
            "test_max_epoch": self.test_max_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_val = float(state["best_val"])
        self.best_val_epoch = int(state["best_val_epoch"])
        self.best_state = dict(state["best_state"]) or None
        self.test_max = float(state["test_max"])
        self.test_max_epoch = int(state["test_max_epoch"])


@dataclass
class ClassifierTask:
    """What `fit_classifier` needs besides the model.

    train / test: the splits (the test split is only used for the final evaluation and, when asked,
    the per-epoch `test_max_over_epochs` column). crop.train_interval: training crop; crop.eval_ratio:
    the centre crop of validation and test.
    """

    train: SkeletonSplit
    test: SkeletonSplit
    crop: CropConfig
    augment: AugmentConfig
    select: str = "last"
    val_fraction: float = 0.1
    report_test_max: bool = False
    eval_batch_size: int = 256


def fit_classifier(
    model: nn.Module,
    groups: list[dict],
    task: ClassifierTask,
    optim: OptimConfig,
    run: RunConfig,
    out: str | Path,
    *,
    config: Mapping[str, Any],
    label_smoothing: float = 0.0,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train `model` (x: (N, C, T, V, M) -> logits) with `Trainer` and evaluate it on the test split.

    Checkpoints (every `run.checkpoint_every` epochs) carry the selection state, so `resume=True`
    continues exactly. stop_after: stop after that epoch as an interruption would (tests); the
    return value is then {} and nothing is evaluated.
    -> metrics: test_top1 (selected model), selected_epoch, and val_top1 / test_max_over_epochs when
    applicable; test predictions are written to `out/test_predictions.npy`, and with select="val" the
    selected weights to `out/selected.pt` (`final.pt` always holds the last epoch). A batch that leaves
    fewer than `MIN_STEPS_PER_EPOCH` updates per epoch is made smaller, with a `SmallDataWarning`.
    """
    out = Path(out)
    if task.select not in ("last", "val"):
        raise ValueError(f"select must be 'last' or 'val', got {task.select!r}")
    info = dist.init_distributed(run.device)
    if run.batch_size % info.world_size:
        raise ValueError(f"batch_size {run.batch_size} is not divisible by {info.world_size} processes")
    with run_folder(out, resume=resume) as folder:
        return _fit_classifier(model, groups, task, optim, run, out, info, config=config,
                               label_smoothing=label_smoothing, resume=folder.resume, stop_after=stop_after)


def _fit_classifier(model, groups, task, optim, run, out, info, *, config, label_smoothing, resume, stop_after):
    train_split, val_split = task.train, None
    if task.select == "val":
        train_idx, val_idx = validation_holdout(task.train.y, task.val_fraction, run.seed)
        train_split, val_split = task.train.subset(train_idx), task.train.subset(val_idx)
    batch_size, note = adapt_batch_size(run.batch_size, len(train_split), info.world_size, key="batch_size",
                                        keep="")
    if note is not None:
        report_adaptations([note], str(out))
        run = dataclasses.replace(run, batch_size=batch_size)
    device = info.device
    train_data = DeviceSplit.from_split(train_split, device)
    val_data = DeviceSplit.from_split(val_split, device) if val_split is not None else None
    test_data = DeviceSplit.from_split(task.test, device)
    loader = BatchLoader(
        train_data, run.batch_size // info.world_size, train=True, crop=task.crop, augment=task.augment,
        seed=run.seed, rank=info.rank, world_size=info.world_size,
    )
    selection = EpochSelection()

    def end_of_epoch(module: nn.Module, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if dist.is_main_process():
            if val_data is not None:
                metrics["val_top1"], _ = evaluate_classifier(
                    module, val_data, task.crop, task.eval_batch_size, precision=run.precision
                )
                selection.update_val(metrics["val_top1"], epoch, module)
            if task.report_test_max:
                metrics["test_top1"], _ = evaluate_classifier(
                    module, test_data, task.crop, task.eval_batch_size, precision=run.precision
                )
                selection.update_test(metrics["test_top1"], epoch)
        return dist.broadcast_object(metrics)

    trainer = Trainer(
        model, groups, loader, classification_step(label_smoothing), optim, run, out, kind="classifier",
        config=dict(config), info=info, end_of_epoch=end_of_epoch, sync_batchnorm=True,
        checkpoint_extra=lambda: {"selection": selection.state_dict()},
        data={"dataset_sha256": content_fingerprint(task.train.path)} if Path(task.train.path or "").is_file() else None,
    )
    if resume and (out / CHECKPOINT_NAME).exists():
        trainer.resume()
        state = load_checkpoint_file(out / CHECKPOINT_NAME)
        if "selection" not in state:
            raise ValueError(f"{out / CHECKPOINT_NAME}: no selection state; not a classifier run of this version")
        selection.load_state_dict(state["selection"])
    trainer.fit(stop_after=stop_after)
    if stop_after is not None and stop_after < run.epochs:
        return {}
    metrics: dict[str, Any] = {}
    if dist.is_main_process():
        final_model = unwrap(trainer.module)
        selected_epoch = run.epochs - 1
        if task.select == "val":
            evaluated = copy.deepcopy(final_model)
            evaluated.load_state_dict(selection.best_state)
            selected_epoch = selection.best_val_epoch
            metrics["val_top1"] = selection.best_val
            save_checkpoint(out / SELECTED_NAME, build_checkpoint(
                "classifier", selection.best_state, dict(config), epoch=selected_epoch + 1
            ))
        else:
            evaluated = final_model
        metrics["test_top1"], predictions = evaluate_classifier(
            evaluated, test_data, task.crop, task.eval_batch_size, precision=run.precision
        )
        metrics["selected_epoch"] = selected_epoch
        metrics["select"] = task.select
        if task.report_test_max:
            metrics["test_max_over_epochs"] = selection.test_max
            metrics["test_max_epoch"] = selection.test_max_epoch
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "test_predictions.npy", predictions)
        np.save(out / "test_labels.npy", task.test.y)
    dist.barrier()
    return dist.broadcast_object(metrics)


def classifier_config(cfg: Any, encoder: SkeletonEncoder, protocol: str) -> dict[str, Any]:
    """The config stored in classifier checkpoints: the protocol config plus `encoder` (EncoderConfig
    fields), so `load_encoder_for_eval` can rebuild the finetuned encoder exactly."""
    return {"protocol": protocol, **to_dict(cfg), "encoder": encoder.cfg.to_dict()}


__all__ = [
    "ArrayLike", "RANDOM_INIT", "is_random_init", "resolve_device", "load_encoder_for_eval", "eval_crop", "check_layout", "extract_features",
    "ProtocolResult", "write_result", "evaluate_classifier", "classification_step", "EpochSelection",
    "ClassifierTask", "fit_classifier", "classifier_config",
]

"""Stage 1: MAMP (masked motion prediction) or naive MAE pretraining.

    stars pretrain mamp --data NTU60_XSub.npz --out runs/mamp_xsub
    torchrun --nproc_per_node=4 -m stars pretrain mamp --data ... --out ...   # same global batch

Defaults are the paper's (§4.4 of the reference): AdamW (0.9, 0.95), weight decay 0.05 on >=2-D
weights only, lr 1e-3 -> 5e-4 with 20 warm-up epochs and a per-iteration half-cosine, 400 epochs,
global batch 128, crop [0.5, 1] + resize to 120 frames + random rotation of +-0.3 rad.
The encoder's joint count comes from the dataset file; the batch and the minimum crop are adapted
(with a warning naming the key) when the training split is small (`stars.train.data_fit`).

STARS' retrained PKU-MMD MAMP (reference §4.4, §4.6) differs in two ways, both switches here:
`weight_decay_scope=all` (AdamW's decay on every parameter) and `stop_epoch=300` (its PKU scripts tune
`checkpoint-300.pth` of the 400-epoch schedule). `released_recipe=true` (set by the paper profile) applies
them to PKU-MMD files only (`stars.recipes`, `pretrain:mamp:released`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stars import dist
from stars.config import apply_overrides, to_dict
from stars.data.augment import AugmentConfig
from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, valid_spans
from stars.data.npz import SkeletonSplit, load_split
from stars.io import content_fingerprint, resume_history, write_run_info
from stars.methods.param_groups import decay_all, pretrain_param_groups
from stars.models.checkpoint import data_record
from stars.models.encoder import ENCODER_PRESETS, EncoderConfig
from stars.models.mamp import MAMPConfig, MaskedMotionModel
from stars.recipes import DATASET_RECIPES, recipe_overrides, resolve_dataset_preset
from stars.rundir import run_folder
from stars.train.data_fit import (
    adapt_batch_size,
    adapt_min_crop_length,
    check_joint_override,
    describe,
    encoder_for_layout,
    warn,
)
from stars.train.engine import CHECKPOINT_NAME, FINAL_NAME, OptimConfig, RunConfig, Trainer


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a stage-1 run depends on; written to RUN_DIR/config.yaml and into checkpoints."""

    method: str = "mamp"  # mamp | mae
    # per-dataset released settings (stars.recipes): auto = from the dataset file name; none = off
    dataset_preset: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mamp: MAMPConfig = field(default_factory=MAMPConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, min_lr=5e-4, warmup_epochs=20.0))
    run: RunConfig = field(default_factory=lambda: RunConfig(epochs=400, batch_size=128, checkpoint_every=20))
    crop_interval: tuple[float, float] = (0.5, 1.0)  # random temporal crop ratio
    min_crop_length: int = 64  # frames, before resizing
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(random_rot=0.3))
    adapt_to_data: bool = True  # shrink batch / minimum crop that a small training split cannot use (warned)
    # AdamW weight decay on >=2-D weights only ("matrices", MAMP), or on every optimised parameter ("all";
    # STARS' retrained PKU-MMD MAMP, reference §4.6)
    weight_decay_scope: str = "matrices"
    # end the run after this many epochs while the lr schedule (warm-up + cosine) still spans run.epochs:
    # final.pt is the state after that epoch (STARS' PKU scripts: checkpoint-300 of 400); 0, or any value
    # >= run.epochs, trains the whole schedule
    stop_epoch: int = 0
    # also apply the dataset recipe's settings of the released code that differ from our defaults
    # (`stars.recipes`, `pretrain:<method>:released`; PKU-MMD MAMP: weight_decay_scope=all, stop_epoch=300)
    released_recipe: bool = False

    def __post_init__(self) -> None:
        if self.dataset_preset != "auto" and self.dataset_preset not in DATASET_RECIPES:
            raise ValueError(f"dataset_preset must be auto or one of {sorted(DATASET_RECIPES)}, "
                             f"got {self.dataset_preset!r}")
        if self.method not in ("mamp", "mae"):
            raise ValueError(f"method must be mamp or mae, got {self.method!r}")
        if self.weight_decay_scope not in ("matrices", "all"):
            raise ValueError(f"weight_decay_scope must be matrices or all, got {self.weight_decay_scope!r}")
        if self.stop_epoch < 0:
            raise ValueError(f"stop_epoch must be >= 0 (0 = the whole schedule), got {self.stop_epoch}")

    @property
    def trained_epochs(self) -> int:
        """Epochs the run trains: `stop_epoch` when it ends the run before `run.epochs`."""
        return min(self.stop_epoch, self.run.epochs) if self.stop_epoch else self.run.epochs


def _mae(cfg: MAMPConfig) -> MAMPConfig:
    return dataclasses.replace(cfg, masking="random", target="position")


def pretrain_preset(method: str = "mamp", preset: str = "paper") -> PretrainConfig:
    """paper: the published setup. small: a CPU-sized model and schedule. tiny: seconds, for tests."""
    if preset == "paper":
        cfg = PretrainConfig(method=method)
    elif preset == "small":
        cfg = PretrainConfig(
            method=method,
            encoder=ENCODER_PRESETS["small"],
            mamp=MAMPConfig(decoder_depth=2, decoder_dim=64, decoder_heads=4),
            optim=OptimConfig(lr=1e-3, min_lr=5e-4, warmup_epochs=2.0),
            run=RunConfig(epochs=20, batch_size=64, checkpoint_every=5),
        )
    elif preset == "tiny":
        cfg = PretrainConfig(
            method=method,
            encoder=ENCODER_PRESETS["tiny"],
            mamp=MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2),
            optim=OptimConfig(lr=1e-3, min_lr=5e-4, warmup_epochs=1.0),
            run=RunConfig(epochs=2, batch_size=16, checkpoint_every=1, progress=False),
            min_crop_length=16,
        )
    else:
        raise ValueError(f"unknown preset {preset!r}; choose paper, small or tiny")
    if method == "mae":
        cfg = dataclasses.replace(cfg, mamp=_mae(cfg.mamp))
    return cfg


def fit_to_data(cfg: PretrainConfig, split: SkeletonSplit, world_size: int = 1,
                where: str = "pretrain", *, warn_now: bool = True) -> tuple[PretrainConfig, list[str]]:
    """The config for this training split: the encoder's joints from its layout, and the batch and
    minimum crop adapted to a small dataset (`stars.train.data_fit`). -> (config, adaptation texts)."""
    if not cfg.adapt_to_data:
        return dataclasses.replace(cfg, encoder=encoder_for_layout(cfg.encoder, split.layout)), []
    batch, batch_note = adapt_batch_size(cfg.run.batch_size, len(split), world_size)
    _, lengths = valid_spans(split.x)
    crop, crop_note = adapt_min_crop_length(cfg.min_crop_length, lengths, cfg.crop_interval[0])
    cfg = dataclasses.replace(
        cfg, encoder=encoder_for_layout(cfg.encoder, split.layout), min_crop_length=crop,
        run=dataclasses.replace(cfg.run, batch_size=batch),
    )
    texts = describe([batch_note, crop_note])
    if warn_now:
        warn(texts, where)
    return cfg, texts


def resolve_pretrain_config(method: str, preset: str, data: str | Path | None, overrides=()) -> PretrainConfig:
    """Method and size preset, then the dataset's recipe (`stars.recipes`: decoder depth and motion-aware
    tau per dataset, and with `released_recipe` the released code's own settings), then the user's
    overrides; `dataset_preset` holds the recipe used."""
    base = pretrain_preset(method, preset)
    requested = apply_overrides(base, overrides)
    name = resolve_dataset_preset(requested.dataset_preset, data)
    cfg = apply_overrides(base, recipe_overrides(name, "pretrain", method, preset,
                                                 released=requested.released_recipe))
    return dataclasses.replace(apply_overrides(cfg, overrides), dataset_preset=name)


def param_groups(cfg: PretrainConfig, model) -> list[dict]:
    """AdamW groups: decay on >=2-D weights, none on biases and 1-D parameters; with weight_decay_scope=all
    (STARS' retrained PKU-MMD MAMP) the same groups all decay."""
    groups = pretrain_param_groups(model, weight_decay=cfg.optim.weight_decay)
    return decay_all(groups, cfg.optim.weight_decay) if cfg.weight_decay_scope == "all" else groups


def _mamp_step(model, batch):
    loss, _, mask = model(batch["x"])
    return loss, {"masked_fraction": mask.float().mean()}


def run_pretraining(
    cfg: PretrainConfig, data: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
    allow_changed: bool = False,
) -> Path:
    """Train, checkpoint and return the path of the final checkpoint (RUN_DIR/final.pt).

    An `out` that holds a run needs `resume` (continue it; a changed config or dataset is refused
    unless `allow_changed`) or `overwrite`; see `stars.rundir.run_folder`."""
    out = Path(out)
    with run_folder(out, resume=resume, overwrite=overwrite) as folder:
        return _pretrain(cfg, data, out, folder.resume, allow_changed)


def _pretrain(cfg: PretrainConfig, data: str | Path, out: Path, resume: bool, allow_changed: bool) -> Path:
    info = dist.init_distributed(cfg.run.device)
    world = info.world_size
    if cfg.run.batch_size % world:
        raise ValueError(f"global batch {cfg.run.batch_size} is not divisible by {world} processes")
    split = load_split(data, "train")
    cfg, adapted = fit_to_data(cfg, split, world, str(data), warn_now=False)  # warned once all is checked
    train = DeviceSplit.from_split(split, info.device)
    loader = BatchLoader(
        train,
        cfg.run.batch_size // world,
        train=True,
        crop=CropConfig(
            train_interval=cfg.crop_interval, min_length=cfg.min_crop_length, num_frames=cfg.encoder.num_frames
        ),
        augment=cfg.augment,
        layout=split.layout,
        seed=cfg.run.seed,
        rank=info.rank,
        world_size=world,
    )
    torch.manual_seed(cfg.run.seed)
    model = MaskedMotionModel(cfg.encoder, cfg.mamp)
    trainer = Trainer(
        model,
        param_groups(cfg, model),
        loader,
        _mamp_step,
        cfg.optim,
        cfg.run,
        out,
        kind=cfg.method,
        config=cfg,
        info=info,
        data={"dataset_sha256": content_fingerprint(data), **data_record(split.layout, split.num_persons)},
        stop_epoch=cfg.stop_epoch,
    )
    resumes = []
    if resume and (out / CHECKPOINT_NAME).exists():
        epoch = trainer.resume(allow_changed=allow_changed)  # validated before anything is written
        resumes = resume_history(out, epoch, trainer.resume_changes)
    if dist.is_main_process():
        write_run_info(out, cfg, info.device, dataset=str(data), seed=cfg.run.seed, world_size=world,
                       num_train=len(split), data=trainer.data, resumes=resumes, adapted_to_data=adapted)
    warn(adapted, str(data))
    trainer.fit()
    return out / FINAL_NAME


def main(args) -> int:
    overrides = list(args.overrides)
    check_joint_override(overrides, args.data)
    if args.device:
        overrides.append(f"run.device={args.device}")
    cfg = resolve_pretrain_config(args.method, args.preset, args.data, overrides)
    if dist.is_main_process():
        recipe = recipe_overrides(cfg.dataset_preset, "pretrain", cfg.method, args.preset,
                                  released=cfg.released_recipe)
        stop = f" (stops after {cfg.trained_epochs})" if cfg.trained_epochs < cfg.run.epochs else ""
        print(f"dataset preset: {cfg.dataset_preset} {recipe}; decoder depth {cfg.mamp.decoder_depth}, "
              f"tau {cfg.mamp.motion_aware_tau}, epochs {cfg.run.epochs}{stop}", flush=True)
    path = run_pretraining(cfg, args.data, args.out, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                           allow_changed=getattr(args, "allow_changed", False))
    if dist.is_main_process():
        print(f"final checkpoint: {path}")
        print(f"config: {to_dict(cfg)['run']}")
    return 0

"""Stage 2: self-supervised tuning of a stage-1 encoder (STARS) and the alternatives the paper compares.

    stars tune stars --init runs/mamp/final.pt --data NTU60_XSub.npz --out runs/stars
    stars tune stars-3stage | moco | dino | mamp-nnclr --init ... ;  stars tune nnclr --data ... (from scratch)

STARS defaults (reference §5, done right): NNCLR with a BatchNorm projector and a 256-4096-256
predictor, 32,768-entry queue without self-neighbours, hard nearest neighbour, symmetric InfoNCE at
0.07 over the global batch; head, final norm and the second half of the blocks tuned with
lr = 1e-3 * alpha^(depth - i) (alpha 0.45), everything else frozen (no gradients); AdamW (0.9, 0.95)
with weight decay 0.05 actually applied (not on 1-D parameters), constant lr, gradient clipping at 3
(global norm), 10 epochs, global batch 128, no augmentation (full-length views, as released), trained
on the whole training split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stars import dist
from stars.config import apply_overrides
from stars.data.augment import AugmentConfig
from stars.data.feeder import BatchLoader, CropConfig, DeviceSplit, valid_spans
from stars.data.layouts import SkeletonLayout
from stars.data.npz import SkeletonSplit, load_split
from stars.data.splits import validation_holdout
from stars.eval.knn import knn_monitor
from stars.io import atomic_torch_save, content_fingerprint, resume_history, write_run_info
from stars.methods.dino import DINO, teacher_momentum_schedule
from stars.methods.mamp_nnclr import DECODER_PREFIXES, MAMPNNCLR, MaskedMotionEncoder
from stars.methods.moco import MoCo
from stars.methods.nnclr import NNCLR
from stars.methods.param_groups import decay_all, partial_tuning_groups
from stars.models.checkpoint import (
    check_checkpoint_data,
    data_record,
    detect_format,
    encoder_config_from_checkpoint,
    extract_stars_head_and_queue,
    load_checkpoint_file,
    load_encoder,
)
from stars.models.encoder import ENCODER_PRESETS, EncoderConfig, SkeletonEncoder
from stars.models.heads import ProjectorPredictor, stars_weights_init
from stars.models.mamp import MAMPConfig
from stars.recipes import DATASET_RECIPES, recipe_overrides, resolve_dataset_preset
from stars.rundir import run_folder
from stars.train.data_fit import (
    adapt_batch_size,
    adapt_min_crop_length,
    adapt_queue_size,
    check_joint_override,
    describe,
    encoder_for_layout,
    warn,
)
from stars.train.engine import CHECKPOINT_NAME, FINAL_NAME, OptimConfig, RunConfig, Trainer

METHODS = ("stars", "stars-3stage", "moco", "dino", "mamp-nnclr", "nnclr")
WORKFLOWS = ("one-step", "two-step")
MIRROR_ROTATE = AugmentConfig(mirror=True, main_axis_rotation=True)


@dataclass(frozen=True)
class TuneConfig:
    """A stage-2 run. Method-specific fields are ignored by the other methods only where stated."""

    method: str = "stars"
    # per-dataset released settings (stars.recipes): auto = from the dataset file name; none = off
    dataset_preset: str = "auto"
    # one-step: partial tuning from stage 1 (the README's merged config); two-step: `head_epochs` of
    # head-only training on the frozen encoder, then partial tuning with head and queue carried over
    # (the released second + third stage configs; Appendix A's STARS-3stage)
    workflow: str = "one-step"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # used without --init; else from the checkpoint
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-3, min_lr=1e-3, warmup_epochs=0.0, schedule="constant",
                                            betas=(0.9, 0.95), weight_decay=0.05, clip_grad=3.0)
    )
    run: RunConfig = field(default_factory=lambda: RunConfig(epochs=10, batch_size=128, checkpoint_every=1))
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # none by default (released configs)
    crop_interval: tuple[float, float] = (1.0, 1.0)  # full-length views (released p_interval [1.0])
    min_crop_length: int = 64
    # which encoder parameters are tuned
    alpha: float = 0.45  # per-block lr factor: base * alpha^(depth - i); 1.0 = uniform
    tuned_blocks: str = "second_half"  # second_half | all | none | comma-separated block indices
    tune_embeddings: bool = False  # also the patch/temporal/joint embeddings (nnclr from scratch)
    # NNCLR / MoCo
    queue_size: int = 32768
    temperature: float = 0.07
    topk: int = 0  # 0 = hard nearest neighbour
    projector_hidden: int = 4096
    momentum: float = 0.999  # MoCo teacher EMA
    moco_extra_pointer_advance: int = 0  # official quirk: 32 (the per-GPU batch), a second pointer move per step
    teacher_head_init: str = "copy"  # MoCo / DINO: copy of the student head | independent (official re-init)
    # DINO (Table 2)
    dino_out_dim: int = 128
    student_temperature: float = 0.1
    teacher_temperature: float = 0.04
    teacher_momentum: float = 0.996
    koleo_weight: float = 0.1
    koleo_chunks: int = 0  # 0 = one term per global view; official: 4 (its chunk-count bug)
    sinkhorn_scope: str = "global"  # Sinkhorn-Knopp over the global batch | process (official: per GPU)
    # teacher momentum cosine over this phase's real steps (0), or, as officially, over this many steps read
    # from step `steps per epoch` on (official: 20 epochs x 1,252 NTU-60 XSub single-GPU steps = 25,040)
    teacher_momentum_span: int = 0
    local_views: int = 0  # student-only temporal crops of local_interval of the valid frames
    local_interval: tuple[float, float] = (0.4, 0.8)
    # MAMP + NNCLR (Table 4)
    mamp_weight: float = 1.0
    mamp: MAMPConfig = field(default_factory=MAMPConfig)
    # two-step workflow: the head-only phase before partial tuning (released second stage: 20 epochs)
    head_epochs: int = 20
    head_converge_tol: float = 0.0  # stop the head phase when the epoch loss improves by less (relative); 0 = off
    # KNN monitor, never on the test split. select=last: leave-one-out weighted KNN inside a fixed,
    # class-stratified `monitor_fraction` of the training split, which is still trained on in full (as
    # officially). select=monitor: that part is held out of training and scored against the rest.
    monitor_fraction: float = 0.1
    monitor_every: int = 1  # epochs; 0 = off
    # last | monitor (the epoch best on the held-out training part) | test (the official selection: the
    # epoch with the best test-split KNN; implies report_test_max; test-set selection, so labelled as such)
    select: str = "last"
    # the official selection signal, as an extra labelled column: weighted KNN (k 10/20/40) of the test
    # split against the whole training split after every epoch -> test_knn_* in metrics.csv and
    # test_knn_max_over_epochs in test_max.json; it selects only with select=test
    report_test_max: bool = False
    # features of the KNN monitors: pooled encoder output, or the L2-normalised projector output (the
    # official monitor's feature for NNCLR / MoCo partial tuning; DINO has no projector and stays pooled)
    monitor_feature: str = "pooled"
    # AdamW weight decay on >=2-D weights only ("matrices"), or on every optimised parameter ("all"; the
    # official processors passed no weight_decay, so PyTorch's 0.01 applied to everything)
    weight_decay_scope: str = "matrices"
    adapt_to_data: bool = True  # shrink batch / queue / minimum crop that a small training split cannot use (warned)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.dataset_preset != "auto" and self.dataset_preset not in DATASET_RECIPES:
            raise ValueError(f"dataset_preset must be auto or one of {sorted(DATASET_RECIPES)}, "
                             f"got {self.dataset_preset!r}")
        if self.workflow not in WORKFLOWS:
            raise ValueError(f"workflow must be one of {WORKFLOWS}, got {self.workflow!r}")
        if self.select not in ("last", "monitor", "test"):
            raise ValueError(f"select must be last, monitor or test, got {self.select!r}")
        if self.teacher_head_init not in ("copy", "independent"):
            raise ValueError(f"teacher_head_init must be copy or independent, got {self.teacher_head_init!r}")
        if self.sinkhorn_scope not in ("global", "process"):
            raise ValueError(f"sinkhorn_scope must be global or process, got {self.sinkhorn_scope!r}")
        if self.monitor_feature not in ("pooled", "projection"):
            raise ValueError(f"monitor_feature must be pooled or projection, got {self.monitor_feature!r}")
        if self.weight_decay_scope not in ("matrices", "all"):
            raise ValueError(f"weight_decay_scope must be matrices or all, got {self.weight_decay_scope!r}")
        if not 0.0 <= self.monitor_fraction < 1.0:
            raise ValueError("monitor_fraction must be in [0, 1)")


def tune_preset(method: str = "stars", preset: str = "paper") -> TuneConfig:
    """Method defaults (Tables 2, 5, 6 and the released configs) combined with a size preset (paper, small,
    tiny). MoCo and DINO (docs/reproduction.md lists each choice with its source): batch size 32 per GPU on
    4 GPUs = 128 global (read as for NNCLR), the released two-step workflow (20 head-only epochs, then
    partial tuning with alpha 0.45: 10 epochs MoCo, 20 DINO), mirroring and rotation (Tables 2 and 6)."""
    cfg = TuneConfig(method=method)
    if method == "stars-3stage":  # Appendix A = the released second + third stage
        cfg = dataclasses.replace(cfg, workflow="two-step")
    elif method == "moco":  # Table 6; mocotuning_* configs
        cfg = dataclasses.replace(cfg, augment=MIRROR_ROTATE, workflow="two-step", head_epochs=20,
                                  run=dataclasses.replace(cfg.run, epochs=10))
    elif method == "dino":  # Table 2; dinotuning_* configs
        cfg = dataclasses.replace(cfg, augment=MIRROR_ROTATE, alpha=0.45, workflow="two-step", head_epochs=20,
                                  run=dataclasses.replace(cfg.run, epochs=20))
    elif method == "nnclr":  # Table 5: from scratch, every parameter trained
        cfg = dataclasses.replace(cfg, augment=MIRROR_ROTATE, crop_interval=(0.5, 1.0), alpha=1.0,
                                  tuned_blocks="all", tune_embeddings=True,
                                  run=dataclasses.replace(cfg.run, epochs=300, checkpoint_every=10))
    if preset == "paper":
        return cfg
    if preset == "small":
        return dataclasses.replace(
            cfg, encoder=ENCODER_PRESETS["small"], queue_size=4096, projector_hidden=512,
            mamp=MAMPConfig(decoder_depth=2, decoder_dim=64, decoder_heads=4),
            run=dataclasses.replace(cfg.run, epochs=min(cfg.run.epochs, 10 if method != "nnclr" else 30),
                                    batch_size=min(cfg.run.batch_size, 128)),
            head_epochs=5,
        )
    if preset == "tiny":
        return dataclasses.replace(
            cfg, encoder=ENCODER_PRESETS["tiny"], queue_size=256, projector_hidden=64, min_crop_length=16,
            mamp=MAMPConfig(decoder_depth=1, decoder_dim=32, decoder_heads=2),
            run=dataclasses.replace(cfg.run, epochs=2, batch_size=16, progress=False),
            head_epochs=1,
        )
    raise ValueError(f"unknown preset {preset!r}; choose paper, small or tiny")


def resolve_tune_config(method: str, preset: str, data: str | Path | None, overrides=()) -> TuneConfig:
    """Method and size preset, then the dataset's recipe (`stars.recipes`, from the file name unless
    `dataset_preset` is overridden), then the user's overrides; `dataset_preset` holds the recipe used."""
    base = tune_preset(method, preset)
    requested = apply_overrides(base, overrides).dataset_preset
    name = resolve_dataset_preset(requested, data)
    cfg = apply_overrides(base, recipe_overrides(name, "tune", method, preset))
    return dataclasses.replace(apply_overrides(cfg, overrides), dataset_preset=name)


# --- model construction ----------------------------------------------------------------------------
def _tuned_blocks(spec: str, depth: int):
    if spec == "second_half":
        return None
    if spec == "all":
        return "all"
    if spec == "none":
        return []
    try:
        return [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"tuned_blocks: {spec!r} is not second_half, all, none or block indices") from None


def _load_init(init: str | None, cfg: TuneConfig, layout: SkeletonLayout | None = None, num_persons: int = 1,
               data: str = "data"):
    """-> (checkpoint object or None, encoder config). Without `init` the encoder takes the layout's joint
    count; with it, the checkpoint's recorded layout must match (`check_checkpoint_data`)."""
    if init is None:
        return None, cfg.encoder if layout is None else encoder_for_layout(cfg.encoder, layout)
    obj = load_checkpoint_file(init)
    if layout is not None:
        check_checkpoint_data(obj, layout, num_persons, str(init), data)
    return obj, encoder_config_from_checkpoint(obj, num_heads=cfg.encoder.num_heads)


def build_model(cfg: TuneConfig, init: str | None, split: SkeletonSplit | None = None):
    """The method's module with stage-1 weights loaded, and its optimiser groups.

    split: the training data; its layout sets the joints of an encoder trained from scratch and is
    checked against the layout a checkpoint records."""
    if split is None:
        obj, enc_cfg = _load_init(init, cfg)
    else:
        obj, enc_cfg = _load_init(init, cfg, split.layout, split.num_persons, split.path or split.name)
    enc_cfg = dataclasses.replace(enc_cfg, drop_path_rate=0.0)
    if cfg.method == "mamp-nnclr":
        encoder = MaskedMotionEncoder(enc_cfg, cfg.mamp)
        if obj is not None:
            # encoder keys checked strictly by load_encoder; the stage-1 decoder (when the file has one) is kept
            plain = SkeletonEncoder(enc_cfg)
            load_encoder(obj, plain, strict=True)
            state = obj.get("model", obj)
            decoder = {k: v for k, v in state.items() if k.startswith(DECODER_PREFIXES)}
            result = encoder.load_state_dict({**plain.state_dict(), **decoder}, strict=False)
            if result.unexpected_keys:
                raise ValueError(f"{init}: unexpected decoder keys {result.unexpected_keys}")
    else:
        encoder = SkeletonEncoder(enc_cfg)
        if obj is not None:
            load_encoder(obj, encoder, strict=True)
    dim = enc_cfg.embed_dim
    generator = torch.Generator().manual_seed(cfg.run.seed)
    if cfg.method == "dino":
        model = DINO(encoder, out_dim=cfg.dino_out_dim, student_temperature=cfg.student_temperature,
                     teacher_temperature=cfg.teacher_temperature, koleo_weight=cfg.koleo_weight,
                     koleo_chunks=cfg.koleo_chunks, sinkhorn_scope=cfg.sinkhorn_scope)
        heads = [model.head]
    else:
        head = ProjectorPredictor(dim, hidden_dim=cfg.projector_hidden, out_dim=dim)
        common = dict(queue_size=cfg.queue_size, temperature=cfg.temperature, queue_generator=generator)
        if cfg.method == "moco":
            model = MoCo(encoder, head, feature_dim=dim, momentum=cfg.momentum,
                         extra_pointer_advance=cfg.moco_extra_pointer_advance, **common)
        elif cfg.method == "mamp-nnclr":
            model = MAMPNNCLR(encoder, head, mamp_weight=cfg.mamp_weight, topk=cfg.topk, **common)
        else:
            model = NNCLR(encoder, head, topk=cfg.topk, **common)
        heads = [model.head]
        if obj is not None and detect_format(obj, init) in ("stars-official", "stars") and _has_head(obj):
            head_state, queue, ptr, ids = extract_stars_head_and_queue(obj)
            model.head.load_state_dict(head_state)
            if queue.shape[0] == model.queue.size:
                model.queue.features.copy_(queue)
                model.queue.ptr.fill_(int(ptr))
                model.queue.ids.copy_(ids)
    if cfg.teacher_head_init == "independent" and hasattr(model, "teacher_head"):
        # official: weights_init ran after the teacher copy, so the teacher head is its own random draw
        with torch.no_grad():
            model.teacher_head.apply(stars_weights_init)
    return model, heads, encoder


def _has_head(obj) -> bool:
    state = obj.get("model", obj)
    return any(k.startswith(("head.", "encoder_student.head.")) for k in state)


def param_groups(cfg: TuneConfig, model, heads, encoder, head_only: bool = False) -> list[dict]:
    depth = encoder.depth
    blocks = [] if head_only else _tuned_blocks(cfg.tuned_blocks, depth)
    also = ("joints_embed", "temp_embed", "pos_embed") if (cfg.tune_embeddings and not head_only) else ()
    groups = partial_tuning_groups(encoder, heads, cfg.optim.lr, alpha=cfg.alpha, tuned_blocks=blocks,
                                   weight_decay=cfg.optim.weight_decay, also_tune=also)
    if cfg.weight_decay_scope == "all":  # official: AdamW's decay on every optimised parameter
        decay_all(groups, cfg.optim.weight_decay)
    if cfg.method == "mamp-nnclr" and not head_only:
        decoder = [(n, p) for n, p in encoder.named_parameters() if n.startswith(DECODER_PREFIXES)]
        for _, p in decoder:
            p.requires_grad_(True)
        for name, decays in (("decoder", True), ("decoder_no_decay", False)):
            chosen = [(n, p) for n, p in decoder if (p.ndim >= 2 and not n.endswith(".bias")) == decays]
            groups.append({"params": [p for _, p in chosen], "param_names": [n for n, _ in chosen],
                           "lr_scale": 1.0, "lr": cfg.optim.lr, "name": name,
                           "weight_decay": cfg.optim.weight_decay if decays or cfg.weight_decay_scope == "all"
                           else 0.0})
    return groups


# --- running -----------------------------------------------------------------------------------------
def _step_fn(cfg: TuneConfig):
    def contrastive(model, batch):
        if "views" in batch:
            view1, view2 = batch["views"][0], batch["views"][1]
        else:  # identical views (no augmentation): one tensor, encoded once
            view1 = view2 = batch["x"]
        loss, metrics = model(view1, view2, batch["index"])
        return loss, {k: v for k, v in metrics.items() if k != "loss"}

    def dino(model, batch):
        views = batch["views"] if "views" in batch else [batch["x"], batch["x"]]
        loss, metrics = model(views, batch.get("local_views", []))
        return loss, {k: v for k, v in metrics.items() if k != "loss"}

    return dino if cfg.method == "dino" else contrastive


def run_tuning(cfg: TuneConfig, init: str | None, data: str | Path, out: str | Path, *,
               resume: bool = False, overwrite: bool = False, allow_changed: bool = False) -> Path:
    """Tune and return the selected checkpoint (RUN_DIR/final.pt, or best.pt with select=monitor).

    `out` may not contain `init`; an `out` that holds a run needs `resume` (a changed config, dataset or
    init is refused unless `allow_changed`) or `overwrite`; see `stars.rundir.run_folder`."""
    out = Path(out)
    if cfg.method != "nnclr" and init is None:
        raise ValueError(f"tune {cfg.method}: --init (a stage-1 checkpoint) is required")
    with run_folder(out, resume=resume, overwrite=overwrite, inputs=[("--init", init)]) as folder:
        return _tune(cfg, init, data, out, folder.resume, allow_changed)


def _tune(cfg: TuneConfig, init: str | None, data: str | Path, out: Path, resume: bool,
          allow_changed: bool) -> Path:
    info = dist.init_distributed(cfg.run.device)
    world = info.world_size
    if cfg.run.batch_size % world:
        raise ValueError(f"global batch {cfg.run.batch_size} is not divisible by {world} processes")
    split = load_split(data, "train")
    monitor_parts = None  # (bank, queries); queries None = leave-one-out inside the bank
    train_split = split  # the whole training split, as the official runs, unless select=monitor holds out
    if cfg.monitor_every > 0 and cfg.monitor_fraction > 0:
        keep, held = validation_holdout(split.y, cfg.monitor_fraction, seed=cfg.run.seed)
        if cfg.select == "monitor":
            train_split = split.subset(keep)
            monitor_parts = (train_split, split.subset(held))
        else:
            monitor_parts = (split.subset(held), None)
    test_split = load_split(data, "test") if (cfg.report_test_max or cfg.select == "test") else None
    cfg, adapted = fit_to_data(cfg, train_split, world, str(data), warn_now=False)  # warned once all is checked
    torch.manual_seed(cfg.run.seed)  # head initialisation (and the encoder when training from scratch)
    model, heads, encoder = build_model(cfg, init, split)
    enc_cfg = encoder.cfg
    if enc_cfg.num_joints != split.layout.num_joints:
        raise ValueError(
            f"{data}: {split.layout.num_joints} joints ({split.layout.name}) but the encoder has {enc_cfg.num_joints}"
        )
    same_views = cfg.augment == AugmentConfig() and cfg.method != "dino"
    loader = BatchLoader(
        DeviceSplit.from_split(train_split, info.device),
        cfg.run.batch_size // world,
        train=True,
        crop=CropConfig(train_interval=cfg.crop_interval, min_length=cfg.min_crop_length,
                        num_frames=enc_cfg.num_frames),
        augment=cfg.augment,
        layout=split.layout,
        views=1 if same_views else 2,
        local_views=cfg.local_views if cfg.method == "dino" else 0,
        local_interval=cfg.local_interval,
        seed=cfg.run.seed,
        rank=info.rank,
        world_size=world,
    )
    warn(adapted, str(data))  # the data and the init are read and valid
    data_id = {"dataset_sha256": content_fingerprint(data), "init_sha256": content_fingerprint(init) if init else None,
               **data_record(split.layout, split.num_persons)}
    config = dataclasses.replace(cfg, encoder=enc_cfg)
    kind = "stars" if cfg.method in ("stars", "stars-3stage") else cfg.method
    after_step = _teacher_update(cfg, cfg.run.epochs, len(loader))

    best = {"value": -1.0}

    def save_best(epoch):
        if dist.is_main_process():
            state = {k: v for k, v in trainer.state(epoch + 1).items() if k != "optimizer"}
            atomic_torch_save(state, out / "best.pt")

    def monitor(module, epoch):
        row = {}
        feature_fn = monitor_features(module, cfg.monitor_feature)
        if test_split is not None:  # the official (test-set) signal
            test = knn_monitor(module.encoder, split, test_split, device=info.device, feature_fn=feature_fn,
                               precision=cfg.run.precision)
            row.update({f"test_{k}": v for k, v in test.items()})
            if cfg.select == "test" and test["knn_best"] > best["value"]:
                best["value"] = test["knn_best"]
                save_best(epoch)
        if monitor_parts is None or (epoch + 1) % cfg.monitor_every:
            return row
        metrics = knn_monitor(module.encoder, monitor_parts[0], monitor_parts[1], device=info.device,
                              feature_fn=feature_fn, precision=cfg.run.precision)
        if cfg.select == "monitor" and metrics["knn_best"] > best["value"]:
            best["value"] = metrics["knn_best"]
            save_best(epoch)
        row.update({f"monitor_{k}": v for k, v in metrics.items()})
        return row

    if cfg.workflow == "two-step":
        head_dir = out / "head"
        if not (head_dir / FINAL_NAME).exists():
            _head_phase(cfg, model, heads, encoder, loader, head_dir, info, config, resume, kind, allow_changed,
                        data_id, split, test_split)
        # select=test: the head-only epoch with the best test-split KNN is carried over, as officially
        carried = head_dir / "best.pt" if cfg.select == "test" and (head_dir / "best.pt").exists() else None
        state = load_checkpoint_file(carried or head_dir / FINAL_NAME)
        model.load_state_dict(state["model"])

    groups = param_groups(cfg, model, heads, encoder)
    trainer = Trainer(model, groups, loader, _step_fn(cfg), cfg.optim, cfg.run, out, kind=kind, config=config,
                      info=info, after_step=after_step, end_of_epoch=monitor, data=data_id)
    resumes = []
    if resume and (out / CHECKPOINT_NAME).exists():
        epoch = trainer.resume(allow_changed=allow_changed)  # validated before anything is written
        resumes = resume_history(out, epoch, trainer.resume_changes)
        column = {"test": "test_knn_best", "monitor": "monitor_knn_best"}.get(cfg.select)
        scores = [float(r[column]) for r in trainer.metrics.rows() if r.get(column)] if column else []
        best["value"] = max(scores, default=-1.0)  # best.pt already holds that epoch
    if dist.is_main_process():
        write_run_info(out, cfg, info.device, dataset=str(data), init=str(init), seed=cfg.run.seed,
                       world_size=world, num_train=len(train_split),
                       num_monitor=len(monitor_parts[1] or monitor_parts[0]) if monitor_parts else 0,
                       monitor="none" if monitor_parts is None else (
                           "held-out" if monitor_parts[1] is not None else "leave-one-out"),
                       encoder=dataclasses.asdict(enc_cfg), data=data_id, resumes=resumes, adapted_to_data=adapted)
    trainer.fit()
    if test_split is not None and dist.is_main_process():
        write_test_max(out)
    if cfg.select in ("monitor", "test") and (out / "best.pt").exists():
        return out / "best.pt"
    return out / FINAL_NAME


def fit_to_data(cfg: TuneConfig, split: SkeletonSplit, world_size: int = 1,
                where: str = "tune", *, warn_now: bool = True) -> tuple[TuneConfig, list[str]]:
    """The config for this training split (`stars.train.data_fit`): the batch, the queue and (for random
    crops) the minimum crop adapted to a small dataset. -> (config, adaptation texts)."""
    if not cfg.adapt_to_data:
        return cfg, []
    batch, batch_note = adapt_batch_size(cfg.run.batch_size, len(split), world_size)
    queue, queue_note = (cfg.queue_size, None)
    if cfg.method != "dino":
        queue, queue_note = adapt_queue_size(cfg.queue_size, len(split), batch)
    crop, crop_note = (cfg.min_crop_length, None)
    if len(cfg.crop_interval) == 2:
        crop, crop_note = adapt_min_crop_length(cfg.min_crop_length, valid_spans(split.x)[1], cfg.crop_interval[0])
    cfg = dataclasses.replace(cfg, queue_size=queue, min_crop_length=crop,
                              run=dataclasses.replace(cfg.run, batch_size=batch))
    texts = describe([batch_note, queue_note, crop_note])
    if warn_now:
        warn(texts, where)
    return cfg, texts


def monitor_features(module, kind: str):
    """The KNN monitors' feature function: None (pooled encoder output) or the L2-normalised projector output
    of models that have one (NNCLR, MoCo, MAMP + NNCLR; the head must already be in eval mode)."""
    projector = getattr(getattr(module, "head", None), "projector", None)
    if kind == "pooled" or projector is None:
        return None
    return lambda x: torch.nn.functional.normalize(projector(module.encoder(x)), dim=1)


def write_test_max(out: Path) -> dict[str, float]:
    """RUN_DIR/test_max.json from the per-epoch test KNN columns of metrics.csv: for every k the maximum
    over epochs and its epoch, and `test_knn_max_over_epochs` (max over k and epochs, the official number)."""
    import pandas as pd

    from stars.io import write_json

    rows = pd.read_csv(out / "metrics.csv")
    columns = [c for c in rows.columns if c.startswith("test_knn_k")]
    summary: dict[str, float] = {}
    for column in columns + ["test_knn_best"]:
        best = int(rows[column].idxmax())
        summary[f"{column}_max_over_epochs"] = float(rows[column].iloc[best])
        summary[f"{column}_max_epoch"] = int(rows["epoch"].iloc[best])
    summary["test_knn_max_over_epochs"] = summary.pop("test_knn_best_max_over_epochs")
    summary["test_knn_max_epoch"] = summary.pop("test_knn_best_max_epoch")
    write_json(out / "test_max.json", summary)
    return summary


def _teacher_update(cfg: TuneConfig, epochs: int, steps_per_epoch: int):
    """DINO: the teacher EMA after every optimiser step, momentum on a cosine schedule over this phase's real
    steps (data size, global batch, world size; the official code hard-coded NTU-60 XSub on one GPU)."""
    if cfg.method != "dino":
        return None
    if cfg.teacher_momentum_span:  # the official schedule: fixed length, epoch counter starting at 1
        schedule = teacher_momentum_schedule(1, cfg.teacher_momentum_span, base=cfg.teacher_momentum, final=1.0)
        offset = steps_per_epoch
    else:
        schedule = teacher_momentum_schedule(epochs, steps_per_epoch, base=cfg.teacher_momentum, final=1.0)
        offset = 0

    def after_step(module, step):
        module.update_teacher(float(schedule[min(offset + step, len(schedule) - 1)]))

    return after_step


def _head_phase(cfg, model, heads, encoder, loader, head_dir, info, config, resume, kind, allow_changed,
                data_id, train_split=None, test_split=None) -> None:
    """Two-step workflow, first step (Appendix A phase 2, the released second stage): train only the head
    (and fill the queue) on the frozen encoder. With select=test (and a test split) every epoch is scored by
    the test-split KNN of the monitor features and the best one is kept as head/best.pt (official carry-over)."""
    groups = param_groups(cfg, model, heads, encoder, head_only=True)
    run = dataclasses.replace(cfg.run, epochs=cfg.head_epochs)
    losses: list[float] = []
    trainer = None
    best = {"value": -1.0}
    select_on_test = cfg.select == "test" and test_split is not None and train_split is not None

    def converge(module, epoch):
        losses.append(trainer.epoch_row["loss"])
        if cfg.head_converge_tol > 0 and len(losses) >= 2:
            previous, current = losses[-2], losses[-1]
            if (previous - current) / max(abs(previous), 1e-12) < cfg.head_converge_tol:
                trainer.should_stop = True
        if not select_on_test:
            return {}
        test = knn_monitor(module.encoder, train_split, test_split, device=info.device,
                           feature_fn=monitor_features(module, cfg.monitor_feature), precision=cfg.run.precision)
        if test["knn_best"] > best["value"] and dist.is_main_process():
            best["value"] = test["knn_best"]
            state = {k: v for k, v in trainer.state(epoch + 1).items() if k != "optimizer"}
            atomic_torch_save(state, head_dir / "best.pt")
        return {f"test_{k}": v for k, v in test.items()}

    trainer = Trainer(model, groups, loader, _step_fn(cfg), cfg.optim, run, head_dir, kind=f"{kind}-head",
                      config=config, info=info, end_of_epoch=converge,
                      after_step=_teacher_update(cfg, cfg.head_epochs, len(loader)), data=data_id)
    if resume and (head_dir / CHECKPOINT_NAME).exists():
        trainer.resume(allow_changed=allow_changed)
        scores = [float(r["test_knn_best"]) for r in trainer.metrics.rows() if r.get("test_knn_best")]
        best["value"] = max(scores, default=-1.0)  # head/best.pt already holds that epoch
    trainer.fit()


def main(args) -> int:
    overrides = list(args.overrides)
    check_joint_override(overrides, args.data)
    if args.device:
        overrides.append(f"run.device={args.device}")
    cfg = resolve_tune_config(args.method, args.preset, args.data, overrides)
    if dist.is_main_process():
        recipe = recipe_overrides(cfg.dataset_preset, "tune", cfg.method, args.preset)
        print(f"dataset preset: {cfg.dataset_preset} {recipe}; workflow {cfg.workflow}, alpha {cfg.alpha}, "
              f"lr {cfg.optim.lr}, epochs {cfg.run.epochs}, global batch {cfg.run.batch_size}", flush=True)
    path = run_tuning(cfg, args.init, args.data, args.out, resume=args.resume,
                      overwrite=getattr(args, "overwrite", False), allow_changed=getattr(args, "allow_changed", False))
    if dist.is_main_process():
        print(f"selected checkpoint: {path}")
    return 0


__all__ = ["TuneConfig", "tune_preset", "resolve_tune_config", "run_tuning", "build_model", "param_groups"]

"""Reading and writing model checkpoints: our own format and the official MAMP / STARS files.

Formats recognised by `detect_format`:

* "stars" (ours): `{"format": "stars", "kind": "encoder" | "mamp" | "mae" | "nnclr" | ..., "model": state_dict,
  "config": dict, ...}`. The state dict is either flat (encoder and MAMP models: `joints_embed.*`, `blocks.*`,
  ...) or, for models that wrap the encoder (`Classifier`, stage-2 methods), prefixed with `encoder.`.
  `config["encoder"]`, when present, holds the `EncoderConfig` fields; `data`, when present, the joint
  layout and person count of the dataset it was trained on (`data_record`), checked against the data
  it is tuned or evaluated on (`check_checkpoint_data`).
  Stage-2 models keep their head as `head.*` (ProjectorPredictor names) and their memory bank as the
  `FeatureQueue` buffers `queue.features` (K, D), `queue.ptr` and `queue.ids` (K,).
* "mamp-official": a dict with key "model" holding the flat MAMP state dict (encoder + `decoder*` +
  `mask_token`; finetune checkpoints carry `head.*` instead), plus "optimizer", "epoch", "args"
  (an `argparse.Namespace`), "scaler".
* "stars-official": a bare state dict of the STARS tuning model: `encoder_student.*` (encoder and
  `encoder_student.head.*`), `queue` (feature_dim, K) with L2-normalised columns, `queue_ptr` (1,),
  `queue_id` (K,).

Everything is loaded with `torch.load(..., weights_only=True)`; `argparse.Namespace` is the only extra
type allowed.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stars.data.layouts import SkeletonLayout, layout_from_dict
from stars.io import atomic_torch_save
from stars.models.encoder import EncoderConfig

CHECKPOINT_FORMAT = "stars"
STARS_STUDENT_PREFIX = "encoder_student."
DEFAULT_NUM_HEADS = 8
OFFICIAL_QUEUE_KEYS = ("queue", "queue_ptr", "queue_id")  # (D, K) features, pointer (1,), ids (K,)
OUR_QUEUE_KEYS = ("queue.features", "queue.ptr", "queue.ids")  # (K, D) features, pointer (), ids (K,)


class CheckpointError(ValueError):
    """A checkpoint file or object that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class LoadReport:
    """What `load_encoder` did: keys missing from / unexpected in the checkpoint, keys whose shapes
    differ ("key: checkpoint shape vs model shape"), keys deliberately dropped (decoder, heads, queue),
    and the detected checkpoint format."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    dropped: list[str]
    format: str


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else "<checkpoint object>"


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict from `path` on the CPU with `weights_only=True`.

    Raises `FileNotFoundError` for a missing file and `CheckpointError` (a ValueError) naming the file for
    anything that is not a readable torch checkpoint (truncated file, other file type, disallowed pickled
    objects) or whose top level is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure inside torch.load means the file is unusable
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated, not a torch file, or it holds objects other "
            f"than tensors, containers and argparse.Namespace): {type(error).__name__}: {error}"
        ) from error
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a dict at the top level of the checkpoint, got {type(obj).__name__}"
        )
    bad = first_non_finite(obj)
    if bad is not None:
        raise CheckpointError(
            f"{path}: tensor {bad} holds NaN or inf values; the weights are unusable (take an earlier checkpoint)"
        )
    return obj


def first_non_finite(obj: Any, prefix: str = "") -> str | None:
    """Dotted name of the first floating-point tensor in a (nested) checkpoint with a NaN or inf, or None."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            return prefix.rstrip(".") or "<tensor>"
        return None
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}{key}.")
        if found is not None:
            return found
    return None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in obj.items())
    )


def _strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a DistributedDataParallel `module.` prefix present on every key."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def detect_format(obj: Any, source: str = "<checkpoint object>") -> str:
    """-> "stars" | "mamp-official" | "stars-official"; CheckpointError naming `source` otherwise."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict checkpoint, got {type(obj).__name__}")
    if obj.get("format") == CHECKPOINT_FORMAT:
        if not _is_state_dict(obj.get("model")):
            raise CheckpointError(f"{source}: 'stars' checkpoint without a tensor state dict under 'model'")
        return "stars"
    if "model" in obj:
        if not _is_state_dict(obj["model"]):
            raise CheckpointError(f"{source}: key 'model' does not hold a state dict of tensors")
        return "mamp-official"
    if _is_state_dict(obj) and any(key.startswith(STARS_STUDENT_PREFIX) for key in _strip_module_prefix(obj)):
        return "stars-official"
    raise CheckpointError(
        f"{source}: unrecognised checkpoint structure (top-level keys {sorted(map(str, obj))[:10]}); expected our "
        "'stars' format, an official MAMP dict with 'model', or an official STARS state dict with "
        f"'{STARS_STUDENT_PREFIX}*' keys"
    )


def _is_encoder_key(key: str) -> bool:
    return not (key.startswith("decoder") or key.startswith("mask_token") or key.startswith("head."))


def _split_encoder_state(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """-> (encoder state dict, dropped keys under their checkpoint names, format)."""
    fmt = detect_format(obj, source)
    full = _strip_module_prefix(obj if fmt == "stars-official" else obj["model"])
    prefix = ""
    if fmt == "stars-official":
        prefix = STARS_STUDENT_PREFIX
    elif fmt == "stars" and any(key.startswith("encoder.") for key in full):
        prefix = "encoder."
    state, dropped = {}, []
    for key, value in full.items():
        if key.startswith(prefix) and _is_encoder_key(key[len(prefix) :]):
            state[key[len(prefix) :]] = value
        else:
            dropped.append(key)
    return state, dropped, fmt


def extract_encoder_state(obj: Any) -> dict[str, torch.Tensor]:
    """Encoder-only state dict (SkeletonEncoder names) from a checkpoint object of any known format:
    decoder*/mask_token and head.* dropped, `encoder_student.` / `encoder.` / `module.` prefixes stripped,
    queue buffers left out."""
    return _split_encoder_state(obj, "<checkpoint object>")[0]


def load_encoder(
    path_or_obj: str | os.PathLike | Mapping[str, Any], encoder: nn.Module, strict: bool = True
) -> LoadReport:
    """Load the encoder weights of a checkpoint (file path or loaded object) into `encoder`.

    With `strict=True` any missing, unexpected or shape-mismatched key raises a CheckpointError (a ValueError)
    naming every such key; with `strict=False` the keys that match in name and shape are loaded and the
    rest is reported.
    """
    source = _describe(path_or_obj)
    obj = load_checkpoint_file(path_or_obj) if isinstance(path_or_obj, str | os.PathLike) else path_or_obj
    state, dropped, fmt = _split_encoder_state(obj, source)
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if strict and (missing or unexpected or mismatched):
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches {mismatched}")
        raise CheckpointError(
            f"{source} ({fmt}): encoder weights do not fit the model: " + "; ".join(problems)
        )
    loadable = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    encoder.load_state_dict(loadable, strict=False)
    return LoadReport(
        missing=missing, unexpected=unexpected, mismatched=mismatched, dropped=sorted(dropped), format=fmt
    )


def extract_stars_head_and_queue(
    obj: Any,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, int, torch.Tensor]:
    """Head and memory bank of a STARS tuning checkpoint, for continuing tuning (second -> third stage).

    -> (head state with `projector.*` / `predictor.*` keys for `ProjectorPredictor`, queue (K, D) float32,
    queue pointer int, queue ids (K,) int64).
    Official checkpoints store the head under `encoder_student.head.*`; its inner names are assumed to
    mirror ours (projector = one BatchNorm1d, predictor = Sequential 0..3); a projector stored as a
    one-layer Sequential (`projector.0.*`) is mapped onto ours. Their queue is (D, K) and is transposed.
    Ours: `head.*` and the `FeatureQueue` buffers `queue.features` (K, D), `queue.ptr`, `queue.ids`.
    """
    fmt = detect_format(obj)
    if fmt == "mamp-official":
        raise CheckpointError("an official MAMP checkpoint has no STARS head or queue")
    if fmt == "stars-official":
        state = _strip_module_prefix(obj)
        head_prefix = STARS_STUDENT_PREFIX + "head."
        queue_keys = OFFICIAL_QUEUE_KEYS
    else:
        state = _strip_module_prefix(obj["model"])
        head_prefix = "head."
        queue_keys = OUR_QUEUE_KEYS
    head = {key[len(head_prefix) :]: value for key, value in state.items() if key.startswith(head_prefix)}
    head = {re.sub(r"^projector\.0\.", "projector.", key): value for key, value in head.items()}
    missing = [key for key in queue_keys if key not in state]
    if not head or missing:
        raise CheckpointError(
            f"{fmt} checkpoint has no STARS tuning state: head keys found {len(head)}, missing {missing}"
        )
    features_key, ptr_key, ids_key = queue_keys
    queue = state[features_key].float()
    if queue.ndim != 2:
        raise CheckpointError(f"{features_key} must be 2-D, got shape {tuple(queue.shape)}")
    if fmt == "stars-official":
        queue = queue.t()  # official layout (D, K) -> (K, D)
    queue_ids = state[ids_key].long().reshape(-1)
    if queue_ids.shape[0] != queue.shape[0]:
        raise CheckpointError(f"queue has {queue.shape[0]} entries but {ids_key} has {queue_ids.shape[0]}")
    return head, queue.contiguous(), int(state[ptr_key].reshape(-1)[0]), queue_ids


def build_checkpoint(
    kind: str, model_state: Mapping[str, torch.Tensor], config: Mapping[str, Any], **extra: Any
) -> dict:
    """Our checkpoint dict: `{"format": "stars", "kind": kind, "model": state, "config": config, **extra}`."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"checkpoint kind must be a non-empty string (e.g. 'encoder', 'mamp'), got {kind!r}")
    reserved = {"format", "kind", "model", "config"} & set(extra)
    if reserved:
        raise ValueError(f"extra checkpoint entries may not use the reserved keys {sorted(reserved)}")
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "model": dict(model_state),
        "config": dict(config),
        **extra,
    }


def save_checkpoint(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Write `obj` with torch.save atomically (see `stars.io.atomic_torch_save`)."""
    return atomic_torch_save(dict(obj), path)


def encoder_config_from_state(
    state: Mapping[str, torch.Tensor], num_heads: int = DEFAULT_NUM_HEADS
) -> EncoderConfig:
    """Infer the EncoderConfig of an encoder state dict from its tensor shapes.

    depth, embed_dim, in_channels, t_patch_size, num_frames (= temporal patches x t_patch_size), num_joints
    and mlp_ratio are read from shapes. The number of attention heads leaves no trace in the weights, so it
    is taken from `num_heads` (default 8, the paper's); drop_path_rate is a training setting (0 here).
    """
    required = ("joints_embed.proj.weight", "temp_embed", "pos_embed", "blocks.0.mlp.fc1.weight")
    absent = [key for key in required if key not in state]
    if absent:
        raise CheckpointError(f"cannot infer the encoder config: state dict lacks {absent}")
    embed_dim, in_channels, t_patch_size, _ = state["joints_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    return EncoderConfig(
        num_joints=int(state["pos_embed"].shape[2]),
        num_frames=int(state["temp_embed"].shape[1]) * int(t_patch_size),
        in_channels=int(in_channels),
        t_patch_size=int(t_patch_size),
        embed_dim=int(embed_dim),
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
    )


def encoder_config_from_checkpoint(
    obj: Mapping[str, Any], num_heads: int = DEFAULT_NUM_HEADS
) -> EncoderConfig:
    """Our checkpoints: the stored `config["encoder"]`; otherwise inferred by `encoder_config_from_state`."""
    if (
        detect_format(obj) == "stars"
        and isinstance(obj.get("config"), Mapping)
        and "encoder" in obj["config"]
    ):
        return EncoderConfig.from_dict(dict(obj["config"]["encoder"]))
    return encoder_config_from_state(extract_encoder_state(obj), num_heads=num_heads)


def data_record(layout: SkeletonLayout, num_persons: int) -> dict[str, Any]:
    """What a checkpoint says about its training data's skeletons (stored in its `data` entry beside the
    dataset fingerprint): `{"layout": layout.to_dict(), "num_persons": M}`."""
    return {"layout": layout.to_dict(), "num_persons": int(num_persons)}


def check_checkpoint_data(
    obj: Mapping[str, Any], layout: SkeletonLayout, num_persons: int, source: str = "checkpoint", data: str = "data"
) -> None:
    """CheckpointError unless the data has the joints the checkpoint was trained on (by name, in order).

    Checkpoints without a `data` record (official ones, older ones) are checked by joint count only, when
    the encoder is built. A different person count is allowed (persons are folded into the batch) and
    warned about, since pooled features then average over another number of persons.
    """
    import warnings

    record = obj.get("data") if isinstance(obj, Mapping) else None
    if not isinstance(record, Mapping) or "layout" not in record:
        return
    trained = layout_from_dict(dict(record["layout"]))
    if not trained.same_joints(layout):
        raise CheckpointError(
            f"{source} was trained on layout {trained.name!r} ({trained.num_joints} joints: "
            f"{', '.join(trained.joints[:4])}, ...) but {data} uses layout {layout.name!r} ({layout.num_joints} "
            f"joints: {', '.join(layout.joints[:4])}, ...); joints are tokens with learned embeddings, so "
            "prepare the data in the checkpoint's layout (same joints, same order)"
        )
    persons = int(record.get("num_persons", num_persons))
    if persons != num_persons:
        warnings.warn(
            f"{source} was trained on {persons}-person data, {data} has {num_persons} persons per sample",
            stacklevel=2,
        )

"""`stars features`: pooled encoder features of one split written as .npy files.

`--out FILE.npy` receives the features (N, D) float32 in file order; `<stem>_labels.npy` beside it the
labels (N,) int64. Centre crop 0.95, eval mode, `--precision` (auto: bf16 autocast on CUDA; fp32: fp32 end to
end; see `stars.precision`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stars.data.npz import load_split
from stars.eval.common import extract_features, load_encoder_for_eval, resolve_device
from stars.io import atomic_write, provenance, write_json
from stars.rundir import RUN_MARKERS


def labels_path(out: str | Path) -> Path:
    """FILE.npy -> FILE_labels.npy."""
    out = Path(out)
    return out.with_name(f"{out.stem}_labels.npy")


def write_features(
    ckpt: str | None, data: str, split: str, out: str | Path, *, batch_size: int = 256,
    preset: str | None = None, device: str | None = None, crop: float = 0.95, precision: str = "auto",
) -> tuple[Path, Path]:
    """Features of `split` of `data` -> (features file, labels file); also `<stem>.json` (provenance)."""
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file, got {out}")
    if out.with_suffix(".json").name in RUN_MARKERS:
        raise ValueError(f"--out {out}: its provenance file {out.with_suffix('.json').name} would replace a run's "
                         "records; choose another file name")
    resolved = resolve_device(device)
    encoder, info = load_encoder_for_eval(ckpt, preset, resolved, data=data)
    features, labels = extract_features(
        encoder, load_split(data, split), crop, batch_size, resolved, precision=precision
    )
    atomic_write(out, lambda handle: np.save(handle, features.astype(np.float32)))
    atomic_write(labels_path(out), lambda handle: np.save(handle, labels))
    write_json(out.with_suffix(".json"), provenance(
        resolved, dataset=data, split=split, crop=crop, precision=precision, encoder=info,
        shape=list(features.shape),
    ))
    return out, labels_path(out)


def main(args: argparse.Namespace) -> int:
    features, labels = write_features(
        args.ckpt, args.data, args.split, args.out, batch_size=args.batch_size, preset=args.preset,
        device=args.device, precision=getattr(args, "precision", "auto"),
    )
    print(f"wrote {features} and {labels}")
    return 0
